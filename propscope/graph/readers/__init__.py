"""Model readers, one module per format, registered in one table (as Netron registers its formats).

Each reader has `match(path) -> bool` and `open(path) -> Model`, and reports problems as
`ModelFormatError` with a sentence a user can act on. A state dict holds weights only: it opens
against an architecture (`load_target(path, arch=...)`, or `state_dict.apply_state_dict`).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from ..errors import ModelFormatError
from ..examples import EXAMPLES, UnknownExampleError, load_example
from ..gc_pause import paused_gc
from ..model import Model
from . import (
    diffusers_checkpoint,
    native,
    onnx_reader,
    state_dict,
    timm_arch,
    torch_export,
    torchscript,
    torchvision_arch,
    transformers_checkpoint,
    ultralytics_checkpoint,
)
from ._budget import memory_budget, parse_size, set_max_memory
from ._failure import capture_warnings, one_line
from .sizes import SizedModel, reading_at  # a file read again at the data's sizes (debugger.session)

# the libraries whose architectures open by name (`torchvision:resnet18`, `timm:convnext_tiny@64`), random weights
ARCHITECTURES: tuple[ModuleType, ...] = (torchvision_arch, timm_arch)


def architecture_library(text: object) -> ModuleType | None:
    """The module that opens `text` as an architecture by name (`torchvision:…`, `timm:…`), else None."""
    return next((library for library in ARCHITECTURES if library.is_spec(text)), None)


READERS: list[tuple[str, ModuleType]] = [
    ("propscope", native),
    ("torch.export (.pt2)", torch_export),
    ("ONNX (.onnx)", onnx_reader),
    ("state dict or checkpoint (.pt, .pth, .ckpt, .pth.tar, .bin, .safetensors)", state_dict),
    ("timm checkpoint", timm_arch),  # before transformers': both are folders with a config.json
    ("diffusers checkpoint", diffusers_checkpoint),  # before transformers' too, which takes any config.json
    ("transformers checkpoint", transformers_checkpoint),
]
# the readers that build a model with torch and export it (their garbage is collected as they go)
_BUILT_BY_TORCH: tuple[ModuleType, ...] = (transformers_checkpoint, timm_arch, diffusers_checkpoint,
                                           ultralytics_checkpoint)


def open_model(path: str | Path, arch: str | Path | None = None, seed: int = 0) -> Model:
    """The model in a file; a state dict needs `arch`, the example or model file it fills with weights.

    Everything the file makes is counted against one memory budget (`_budget`), and warnings third-party
    loaders raise meanwhile are captured, not printed."""
    with memory_budget(), capture_warnings():
        return _open_model(Path(path), arch, seed)


def _open_model(path: Path, arch: str | Path | None, seed: int) -> Model:
    if not path.exists() and not diffusers_checkpoint.match(path):  # a diffusers folder may be FOLDER@SIZE
        raise ModelFormatError(f"{path}: no such file")
    if not path.is_file() and not transformers_checkpoint.match(path) and not diffusers_checkpoint.match(path):
        raise ModelFormatError(f"{path}: not a file" + (" (nor a transformers checkpoint folder: no config.json)"
                                                        if path.is_dir() else ""))
    for _, reader in READERS:
        if reader.match(path):
            if reader is state_dict:
                if arch is None and torchscript.is_archive(path):  # its graph from its code, interpreted
                    with paused_gc():
                        return torchscript.open(path)
                if arch is None and ultralytics_checkpoint.match(path):  # a YOLO model object, built from its config
                    return ultralytics_checkpoint.open(path)
                return state_dict.open_with(path, arch, seed)
            if arch is not None:
                raise ModelFormatError(f"{path}: --arch is for state dict files; this model has its own architecture")
            if reader in _BUILT_BY_TORCH:  # build and export with torch: collect its garbage
                return reader.open(path)
            with paused_gc():
                return reader.open(path)
    known = ", ".join(name for name, _ in READERS)
    raise ModelFormatError(f"{path}: not a model format propscope reads (known: {known})")


def load_target(target: str | Path, seed: int = 0, arch: str | Path | None = None) -> Model:
    """An example by name, a torchvision or timm architecture (`torchvision:resnet18`, `timm:resnet50`, random
    weights), or a model file by path (a state dict with the architecture `arch`)."""
    text = str(target)
    library = architecture_library(text)
    if library is not None:
        if arch is not None:
            raise ModelFormatError(f"--arch is for state dict files; {text!r} is an architecture itself")
        with memory_budget(), capture_warnings():  # one budget for the whole open, as a file's
            return library.open_spec(text)
    if text in EXAMPLES:
        if arch is not None:
            raise ModelFormatError(f"--arch is for state dict files; {text!r} is an example with its own weights")
        return load_example(text, seed)
    path = Path(text)
    if path.exists() or path.suffix or "/" in text or diffusers_checkpoint.match(path):
        return open_model(path, arch, seed)
    raise UnknownExampleError(f"unknown example {text!r} and no such file; known examples: {', '.join(EXAMPLES)}")


def display_name(path: str | Path) -> str:
    """What a model file is called in the app (title, default save and export names): its stem; a transformers,
    timm or diffusers checkpoint, its folder's name; a torchvision or timm architecture, its name."""
    library = architecture_library(path)
    if library is not None:
        return library.parse(str(path))[0].split(".")[0]
    path = Path(path)
    if diffusers_checkpoint.match(path):  # FOLDER@SIZE too
        return diffusers_checkpoint.name_of(path)
    return transformers_checkpoint.name_of(path) if transformers_checkpoint.match(path) else path.stem


save_model = native.save

__all__ = ["ARCHITECTURES", "READERS", "SizedModel", "architecture_library", "display_name", "load_target",
           "memory_budget", "one_line", "open_model", "parse_size", "reading_at", "save_model", "set_max_memory"]

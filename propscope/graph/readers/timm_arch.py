"""timm's architectures by name (`timm:resnet50`, `timm:vit_small_patch16_224@96`) and timm checkpoint folders.

As a target (`propscope open timm:convnext_tiny`) it is the architecture with random weights; as the architecture of a
state dict (`--arch timm:resnet50`) it is built with as many classes as the state dict's classifier has, then filled
by name as any architecture is. A timm checkpoint folder (what timm's `push_to_hf_hub` and `save_for_hf` write, and
the Hugging Face hub serves for timm models: `config.json` naming its `architecture`, beside `model.safetensors` or
`pytorch_model.bin`) is that state dict and that architecture together.

The model is built by timm's own `create_model` (`pretrained=False`: nothing downloaded), sized first on torch's meta
device and charged to the memory budget, exported with torch.export on one image in evaluation mode, and read as a
`.pt2` (`torch_export.open_program`). The image is the size asked for (`@SIZE`; a vision transformer is built for
it, where its constructor takes `img_size`), else the architecture's own (its pretrained config's input size).
Nothing in a folder is run: the config is JSON and names a model timm registers; weights go through propscope's
own readers (safetensors, or the restricted unpickler), never `torch.load` of an unknown file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..model import Model, image_fit, image_normalization
from . import _torchvision, state_dict, torch_export
from ._budget import charge, human
from ._build import MAX_SIDE, MIN_SIDE, architecture_spec, file_size
from ._failure import first_line, quiet_torch
from .sizes import batch_sized, read_again_at, requested_batch, resizable_by

PREFIX = "timm:"
# timm's names are lower-case words, digits and underscores; a pretrained tag follows a dot (resnet50.a1_in1k)
_SPEC = re.compile(r"^timm:([a-z][a-z0-9_]{0,99}(?:\.[a-z0-9_]{1,64})?)(?:@(\d{1,9})(?:x(\d{1,9}))?)?$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,99}(?:\.[a-z0-9_]{1,64})?$")
MAX_CONFIG_BYTES = 1 << 20
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_ARG_TYPES = (bool, int, float, str)  # what a config's model_args may hold, as JSON gives them
MAX_ARG_ITEMS = 16


def is_spec(text: object) -> bool:
    return str(text).startswith(PREFIX)


def parse(spec: str) -> tuple[str, tuple[int, int] | None]:
    """The model name and the image size (None: the architecture's own)."""
    return architecture_spec(spec, _SPEC, "timm:NAME or timm:NAME@SIZE (timm:resnet50, timm:resnet50@64, "
                             "timm:vit_tiny_patch16_224@96)")


def _libraries(where: str) -> tuple[Any, Any]:
    try:
        import torch
    except ImportError:
        raise ModelFormatError(f"{where}: needs torch and timm (pip install torch timm)") from None
    _torchvision.models()  # timm imports torchvision: a CUDA build beside a CPU torch enters without its extension
    try:
        import timm
    except ImportError:
        raise ModelFormatError(f"{where}: needs timm (pip install timm)") from None
    except Exception as exc:  # an installation whose imports fail
        raise ModelFormatError(f"{where}: timm could not be imported ({first_line(exc, 120)})") from None
    return torch, timm


def _check_name(timm: Any, name: str, where: str) -> None:
    base = name.split(".")[0]
    if not timm.is_model(base):
        import difflib  # only for the message

        near = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6)
        also = f" (nearest: {', '.join(near)})" if near else ""
        raise ModelFormatError(f"{where}: timm {timm.__version__} has no model {name!r}{also}")


def _create(timm: Any, name: str, options: dict[str, Any]) -> Any:
    return timm.create_model(name, pretrained=False, **options)


def _sized(torch: Any, timm: Any, name: str, options: dict[str, Any], where: str) -> tuple[Any, dict[str, Any]]:
    """The architecture built on the meta device (no memory) and the options it took: an image size is passed as
    `img_size` to the constructors that take one (vision transformers, Swin), dropped for those that take any size."""
    try:
        with torch.device("meta"):
            return _create(timm, name, options), options
    except TypeError:
        if "img_size" not in options:
            raise
        rest = {k: v for k, v in options.items() if k != "img_size"}
        with torch.device("meta"):
            return _create(timm, name, rest), rest


def _classes_of(timm: Any, torch: Any, name: str, tensors: dict[str, np.ndarray]) -> int | None:
    """How many classes a state dict's head has: the first axis of its classifier's weight, found by the name the
    architecture built by default gives it (`fc.weight`, `head.fc.weight`, `classifier.weight`)."""
    with torch.device("meta"):
        net = _create(timm, name, {})
    head = net.get_classifier() if hasattr(net, "get_classifier") else None
    heads = head if isinstance(head, tuple) else (head,)  # a distilled model's two (DeiT, LeViT): the first
    weight = next((h.weight for h in heads if getattr(h, "weight", None) is not None), None)
    if weight is None:
        return None
    keys = [k for k, p in net.named_parameters() if p is weight]
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    _, tensors = state_dict.unwrapped(tensors, shapes)  # a DataParallel checkpoint's "module." names
    found = tensors.get(keys[0]) if keys else None
    return int(found.shape[0]) if found is not None and found.ndim >= 1 else None


def open_spec(spec: str, tensors: dict[str, np.ndarray] | None = None,
              model_args: dict[str, Any] | None = None) -> Model:
    """The architecture `spec` names, with random weights (seeded); `tensors` (a state dict) decides its classes,
    `model_args` (a checkpoint's config) what else its constructor is given."""
    name, size = parse(spec)
    torch, timm = _libraries(spec)
    _check_name(timm, name, spec)
    options: dict[str, Any] = dict(model_args or {})
    try:
        classes = _classes_of(timm, torch, name, tensors) if tensors else None
        if classes is not None:
            options["num_classes"] = classes
        if size is not None:
            options["img_size"] = size
        meta, options = _sized(torch, timm, name, options, spec)
    except ModelFormatError:
        raise
    except Exception as exc:  # a class count, a size or an argument the architecture cannot take
        raise ModelFormatError(f"{spec}: timm cannot build it ({first_line(exc, 160)})") from None
    nbytes = sum(t.numel() * 4 for t in meta.state_dict().values())
    charge(nbytes, f"{name}'s parameters and buffers ({human(nbytes)})", spec)
    if size is None:
        side = tuple(getattr(meta, "pretrained_cfg", {}).get("input_size") or (3, 224, 224))[1:]
        size = (int(side[0]), int(side[1]))
    del meta
    torch.manual_seed(0)
    model = _create(timm, name, options).eval()
    scores = getattr(model, "num_classes", 1) != 0  # num_classes=0: a feature extractor, no classes to score
    cfg = getattr(model, "pretrained_cfg", None) or {}  # the mean and std its weights' images were normalized by
    normalization = image_normalization(list(cfg.get("mean") or ()), list(cfg.get("std") or ()),
                                        "timm's pretrained_cfg")
    fit = pretrained_fit(cfg)
    channels = int(options.get("in_chans", 3))
    sample = torch.randn((requested_batch(), channels, *size), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), quiet_torch():
            program = torch.export.export(model, (sample,))
    except Exception as exc:
        raise ModelFormatError(f"{spec}: torch.export could not trace {name} on a {size[0]}×{size[1]} image "
                               f"({first_line(exc, 160)})") from None
    opened = torch_export.open_program(program, name.split(".")[0])
    opened.aliases = torch_export.tied_names(model, opened)  # CoaT's shared position encodings: one per stage
    del model
    heads = f", {options['num_classes']} classes" if "num_classes" in options else ""
    opened.description = (f"timm {name} ({size[0]}×{size[1]} input{heads}, timm {timm.__version__}), exported with "
                          f"torch.export: {len(opened.graph.ops)} ops")
    opened.loss = "cross_entropy" if scores else None
    opened.image_normalization, opened.image_fit = normalization, fit
    resizable_by(opened, f"{PREFIX}{name}@SIZE")
    return batch_sized(opened, read_again_at(open_spec, spec, tensors, model_args))


def pretrained_fit(cfg: Any) -> tuple[str, float, str, str] | None:
    """How a timm model's pretrained_cfg brings an image to its size for evaluation: the shorter side to
    ⌊size / crop_pct⌋ and the centre cut out (crop_mode "squash": stretched first), resampled as `interpolation` says;
    None (stretched) for a crop_mode of "border" or none it names."""
    crop_mode = {"center": "crop", "squash": "squash-crop"}.get(str(cfg.get("crop_mode", "center")))
    return image_fit(crop_mode, cfg.get("crop_pct"), "timm's pretrained_cfg", cfg.get("interpolation")) \
        if crop_mode else None


# -- checkpoint folders ---------------------------------------------------------------------------------------------
def _config(folder: Path) -> dict[str, Any] | None:
    """A folder's config.json when it is timm's (it names an `architecture`), else None."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    file_size(path, str(path), MAX_CONFIG_BYTES, "more than a model config holds")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None  # not this reader's: transformers' reader says what is wrong with it
    if not isinstance(config, dict) or not isinstance(config.get("architecture"), str):
        return None
    # transformers' TimmWrapperForImageClassification saves timm's model under `timm_model.`, its config naming
    # both; any other config with `architectures` is a transformers model's
    if "architectures" in config and config.get("model_type") != "timm_wrapper":
        return None
    return config


def folder_of(path: Path) -> Path | None:
    """The timm checkpoint folder `path` names (the folder itself, or its config.json), else None."""
    folder = path if path.is_dir() else path.parent if path.name == "config.json" else None
    return folder if folder is not None and _config(folder) is not None else None


def match(path: Path) -> bool:
    try:
        return folder_of(path) is not None
    except ModelFormatError:
        return False


def _plain(value: object) -> bool:
    """A constructor argument a config may give: a number, a string, a flag, None, or a short list of those (the
    `img_size` [224, 224] timm writes for a vision transformer)."""
    if isinstance(value, list):
        return len(value) <= MAX_ARG_ITEMS and all(v is None or isinstance(v, _ARG_TYPES) for v in value)
    return value is None or isinstance(value, _ARG_TYPES)


def _trained_size(config: dict[str, Any]) -> str:
    """`@HxW` for the image size the checkpoint's pretrained config names (its training size), else ""."""
    cfg = config.get("pretrained_cfg")
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    if (isinstance(size, list) and len(size) == 3 and all(type(v) is int for v in size)
            and all(MIN_SIDE <= v <= MAX_SIDE for v in size[1:])):
        return f"@{size[1]}x{size[2]}"
    return ""


def open(path: str | Path) -> Model:
    path = Path(path)
    folder = folder_of(path)
    config = _config(folder) if folder is not None else None
    if folder is None or config is None:
        raise ModelFormatError(f"{path}: not a timm checkpoint (no config.json naming an architecture)")
    where = str(path)
    name = config["architecture"]
    if not _NAME.match(name):
        raise ModelFormatError(f"{where}: its architecture {name[:60]!r} is not a timm model name")
    weights = next((folder / w for w in WEIGHTS if (folder / w).is_file()), None)
    if weights is None:
        raise ModelFormatError(f"{folder}: a timm checkpoint without weights (looked for {', '.join(WEIGHTS)})")
    args = config.get("model_args") or {}
    if not isinstance(args, dict) or not all(isinstance(k, str) and _plain(v) for k, v in args.items()):
        raise ModelFormatError(f"{where}: model_args holds more than names and plain values")
    tensors = state_dict.read_tensors(weights)
    spec = f"{PREFIX}{name}{_trained_size(config)}"
    try:
        model, report = state_dict.apply_state_dict(open_spec(spec, tensors, args), tensors, weights.name)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{where}: {exc}") from None
    if not report.matched:
        raise ModelFormatError(f"{where}: none of the {len(tensors)} tensors of {weights.name} is a parameter of "
                               f"timm's {name}; is config.json's architecture the right one?")
    model.description = f"{model.description} — weights from {folder.name}/{weights.name}"
    return model

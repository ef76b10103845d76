"""A diffusers checkpoint folder (`config.json` naming its `_class_name` and `_diffusers_version`, beside
`diffusion_pytorch_model.safetensors` or `.bin`, as `save_pretrained` writes it and the hub serves a pipeline's
`unet/` and `vae/`): the model class the config names, built by the installed diffusers, filled with the folder's
weights by diffusers' own loading, exported with torch.export on a sample the config describes, and read as any
`.pt2`.

Nothing in the folder is run: the config is JSON, and the class must be one of the few diffusers exports that
propscope builds sample inputs for (`CLASSES`); a config with `auto_map` (code shipped with the checkpoint) or a
`quantization_config` is refused. Weights are safetensors, or a `.bin` that propscope's restricted unpickler reads
first (refusing every global but tensor rebuilds) before diffusers' weights-only `torch.load` does; diffusers loads
with `local_files_only`: nothing is fetched. The model's size is counted against the open's memory budget before any
of it is allocated.

What is traced: a U-Net on one noisy sample (1, in_channels, sample_size, sample_size) at the constant timestep
`TIMESTEP` (its sinusoidal embedding a few steps on constants that no gradient reaches), a conditional U-Net also on
`TOKENS` text-encoder states of its cross-attention width (an input, as the sample is); AutoencoderKL's forward with
`sample_posterior=False`, decode(encode(x).mode()). The output is the tensor the model's output holds in `.sample`.
The default loss is MSE: for a U-Net against a generated target of the output's shape (the noise a diffusion U-Net
learns to predict), for an autoencoder against the sample itself (its reconstruction). `FOLDER@SIZE` traces at
another size (a multiple of the model's downsampling factor), as `timm:NAME@SIZE` does.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError
from ..model import TARGET, Model
from . import _torchvision, state_dict, torch_export
from ._build import charge_built, checkpoint_files, file_size, missing_weights_warning, read_json
from ._failure import first_line, quiet_library, quiet_torch, shorten

SUFFIXES = ("config.json",)  # the Open dialog's pattern: a checkpoint is opened by its config (or its folder)
MAX_CONFIG_BYTES = 1 << 20
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json",
           "diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json")
TIMESTEP = 500  # the diffusion step a U-Net is traced at: mid-way through the usual 1,000
TOKENS = 8  # the text-encoder states a conditional U-Net attends to
MAX_SIZE = 1 << 16  # `@SIZE`: an image side, or a 1-D sample's length
_SIZED = re.compile(r"^(.+)@(\d{1,9})$")


@dataclass(frozen=True)
class _Kind:
    """How a class is traced: its sample's spatial axes, whether its forward takes a timestep and text states, the
    arguments fixed for the trace, and what its MSE compares the output with."""

    axes: int = 2
    timestep: bool = True
    text: bool = False
    fixed: tuple[tuple[str, Any], ...] = ()
    target: str = "noise"  # "noise": a generated target; "sample": the input itself (a reconstruction)


CLASSES: dict[str, _Kind] = {
    "UNet2DModel": _Kind(),
    "UNet2DConditionModel": _Kind(text=True),
    "AutoencoderKL": _Kind(timestep=False, fixed=(("sample_posterior", False),), target="sample"),
    "UNet1DModel": _Kind(axes=1),
}


def split_size(path: Path) -> tuple[Path, int | None]:
    """`FOLDER@SIZE` as the folder and the size asked for; any other path as it is, with None."""
    found = None if path.exists() else _SIZED.match(str(path))
    if found is None:
        return path, None
    return Path(found.group(1)), int(found.group(2))


def _config(folder: Path) -> dict[str, Any] | None:
    """A folder's config.json when it is diffusers' (it names a `_class_name` and a `_diffusers_version`), else
    None (a config that is not valid JSON too: the transformers reader, next in the table, says what is wrong)."""
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        config = read_json(path, MAX_CONFIG_BYTES, "more than a model config holds")
    except ModelFormatError as exc:
        if "not valid JSON" in str(exc):
            return None
        raise
    if not isinstance(config, dict) or not isinstance(config.get("_class_name"), str) \
            or "_diffusers_version" not in config:
        return None
    return config


def folder_of(path: Path) -> Path | None:
    """The diffusers checkpoint folder `path` names (the folder, its config.json, either with `@SIZE`), else None."""
    path, _ = split_size(path)
    folder = path if path.is_dir() else path.parent if path.name == "config.json" else None
    return folder if folder is not None and _config(folder) is not None else None


def match(path: Path) -> bool:
    try:
        return folder_of(path) is not None
    except ModelFormatError:
        return False


def name_of(path: Path) -> str:
    """What a checkpoint is called in the app: its folder's name (`unet`, not `config`)."""
    folder = folder_of(path)
    return (folder or path).resolve().name or "checkpoint"


def _libraries(where: str) -> tuple[Any, Any]:
    try:
        import torch
    except ImportError:
        raise ModelFormatError(f"{where}: a diffusers checkpoint needs torch and diffusers "
                               "(pip install torch diffusers)") from None
    _torchvision.models()  # diffusers may import transformers, which imports torchvision where installed
    try:
        import diffusers
    except ImportError:
        raise ModelFormatError(f"{where}: a diffusers checkpoint needs diffusers (pip install diffusers)") from None
    except Exception as exc:  # an installation whose imports fail
        raise ModelFormatError(f"{where}: diffusers could not be imported ({first_line(exc, 120)})") from None
    return torch, diffusers


def _class(diffusers: Any, config: dict[str, Any], where: str) -> tuple[Any, _Kind]:
    name = config["_class_name"]
    if config.get("auto_map"):
        raise ModelFormatError(f"{where}: the model is code shipped with the checkpoint (auto_map); propscope runs no "
                               "code from a file")
    if config.get("quantization_config"):
        raise ModelFormatError(f"{where}: a quantized checkpoint; propscope opens float weights")
    kind = CLASSES.get(name)
    if kind is None:
        shown = name if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,99}", name) else repr(name[:60])
        raise ModelFormatError(f"{where}: propscope opens diffusers' {', '.join(CLASSES)}, not {shown}")
    cls = getattr(diffusers, name, None)
    if not isinstance(cls, type) or not issubclass(cls, diffusers.ModelMixin):
        raise ModelFormatError(f"{where}: diffusers {diffusers.__version__} has no model class {name}")
    return cls, kind


def _sizes(config: Mapping[str, Any], kind: _Kind, asked: int | None, where: str) -> tuple[int, ...]:
    """The sample's spatial sizes: the config's `sample_size`, or the size asked for, which must be a multiple of
    what the down blocks divide it by."""
    blocks = config.get("down_block_types") or ()
    factor = 2 ** max(len(blocks) - 1, 0) if kind.axes == 2 else 1
    if asked is not None:
        if not 1 <= asked <= MAX_SIZE or asked % factor:
            raise ModelFormatError(f"{where}: @{asked}: the sample's size must be a multiple of {factor} (its down "
                                   f"blocks halve it), from {factor} to {MAX_SIZE}")
        return (asked,) * kind.axes
    size = config.get("sample_size")
    sizes: tuple[Any, ...] = tuple(size) if isinstance(size, list | tuple) else (size,) * kind.axes
    if len(sizes) != kind.axes or not all(type(s) is int and 1 <= s <= MAX_SIZE for s in sizes):
        raise ModelFormatError(f"{where}: its sample_size {str(size)[:40]} is not {kind.axes} size(s) from 1 to "
                               f"{MAX_SIZE}; give one after the folder (FOLDER@SIZE)")
    return tuple(int(s) for s in sizes)


def _text_width(config: Mapping[str, Any], where: str) -> int:
    """How wide the text-encoder states a conditional U-Net attends to are (one width for every block)."""
    width = config.get("encoder_hid_dim") or config.get("cross_attention_dim")
    if isinstance(width, list | tuple) and width and all(w == width[0] for w in width):
        width = width[0]
    if type(width) is not int or not 1 <= width <= MAX_SIZE:
        raise ModelFormatError(f"{where}: a cross_attention_dim of one width is needed, not {str(width)[:40]}")
    return width


def _inputs(torch: Any, model: Any, kind: _Kind, sizes: tuple[int, ...], where: str) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    config = model.config
    inputs = {"sample": torch.randn((1, int(config["in_channels"]), *sizes), generator=generator)}
    if kind.text:
        inputs["encoder_hidden_states"] = torch.randn((1, TOKENS, _text_width(config, where)), generator=generator)
    return inputs


def _fixed(torch: Any, model: Any, kind: _Kind, where: str) -> dict[str, Any]:
    """The arguments fixed for the trace: the constant timestep, a class-conditional U-Net's class 0."""
    fixed = dict(kind.fixed)
    if kind.timestep:
        fixed["timestep"] = TIMESTEP
    if getattr(model, "class_embedding", None) is not None:
        if not isinstance(model.class_embedding, torch.nn.Embedding):
            raise ModelFormatError(f"{where}: class_embed_type {model.config.get('class_embed_type')!r}: propscope "
                                   "traces class-conditional U-Nets with a class table (num_class_embeds) only")
        fixed["class_labels"] = torch.zeros(1, dtype=torch.long)
    added = model.config.get("addition_embed_type")
    if added:
        raise ModelFormatError(f"{where}: addition_embed_type {str(added)[:40]!r} (SDXL's extra conditioning) is not "
                               "built by propscope; hand the module over in Python with its added_cond_kwargs")
    return fixed


@contextmanager
def sample_only(model: Any, fixed: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """While open, `model` returns the tensor its diffusers output holds in `.sample` (a U-Net's noise prediction,
    a VAE's reconstruction) for torch.export to trace, and takes its `fixed` arguments (a constant timestep) as
    given, so they leave its signature and become constants of the trace. The instance gets a subclass of its own
    class, named as it, whose forward picks (a wrapping module would prefix every parameter's name); its class is
    given back on leaving. It yields what `scores_only` does: {"gives": "sample"}."""
    cls = type(model)
    fixed = dict(fixed or {})
    signature = inspect.signature(cls.forward)
    kept = signature.replace(parameters=[p for n, p in signature.parameters.items() if n not in fixed])

    @functools.wraps(cls.forward)
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        named: dict[str, Any] = {}
        for key, value in list(kept.bind(self, *args, **kwargs).arguments.items())[1:]:  # after self
            if kept.parameters[key].kind is inspect.Parameter.VAR_KEYWORD:
                named.update(value)
            else:
                named[key] = value
        out = cls.forward(self, **named, **fixed)
        if isinstance(out, tuple | list):  # return_dict=False
            return out[0]
        sample = getattr(out, "sample", None)
        return out if sample is None else sample

    forward.__signature__ = kept  # type: ignore[attr-defined]  # torch.export names the inputs after it
    model.__class__ = type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__})
    try:
        yield {"gives": "sample"}
    finally:
        model.__class__ = cls


def _what_failed(exc: BaseException) -> str:
    """The line of a loading error that says what failed: torch's "Error(s) in loading state_dict for X:" is
    followed by the tensor and its shapes."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return shorten(f"{lines[0]} {lines[1]}", 200)
    return first_line(exc)


def open(path: str | Path) -> Model:
    path = Path(path)
    folder = folder_of(path)
    config_json = _config(folder) if folder is not None else None
    if folder is None or config_json is None:
        raise ModelFormatError(f"{path}: not a diffusers checkpoint (no config.json naming a _class_name)")
    where = str(path)  # as the user named it: the folder or its config.json, with @SIZE
    _, asked = split_size(path)
    files = checkpoint_files(folder, WEIGHTS, "a diffusers checkpoint")
    torch, diffusers = _libraries(where)
    cls, kind = _class(diffusers, config_json, where)
    for file in files:
        file_size(file, str(file), state_dict.MAX_FILE_BYTES, "more than propscope will load")
        if file.suffix == ".bin":  # a pickle: propscope's restricted unpickler reads it first, refusing any global
            state_dict.read_tensors(file)  # but the tensor rebuilds, before torch.load (weights-only) sees it
    name = cls.__name__
    with quiet_library(diffusers):
        try:
            config = cls.load_config(folder, local_files_only=True)
        except Exception as exc:
            raise ModelFormatError(f"{where}: diffusers cannot read this config ({first_line(exc, 160)})") from None
        charge_built(torch, lambda: cls.from_config(config), name, where)
        try:  # diffusers' own loading: its renames of older checkpoints' keys, shards
            with torch.random.fork_rng(devices=[]):  # what the checkpoint lacks gets the same values on every open
                torch.manual_seed(0)
                model, info = cls.from_pretrained(folder, local_files_only=True, torch_dtype=torch.float32,
                                                  use_safetensors=files[0].suffix == ".safetensors",
                                                  low_cpu_mem_usage=False, output_loading_info=True)
        except Exception as exc:  # a missing shard tensor, a wrong shape, a damaged file: diffusers says which
            raise ModelFormatError(f"{where}: diffusers could not load the weights into {name} "
                                   f"({_what_failed(exc)})") from None
    model.eval()
    sizes = _sizes(model.config, kind, asked, where)
    sample = _inputs(torch, model, kind, sizes, where)
    fixed = _fixed(torch, model, kind, where)
    shown = "×".join(str(s) for s in sizes)
    try:
        with torch.no_grad(), sample_only(model, fixed), quiet_torch():
            program = torch.export.export(model, (), sample)
    except Exception as exc:  # torch.export's messages run to pages: their first line says which
        raise ModelFormatError(f"{where}: {name} could not be run and traced on a {shown} sample "
                               f"({first_line(exc)})") from None
    opened = torch_export.open_program(program, name_of(path))  # the graph is named after the folder
    del program, model
    at = f" at timestep {TIMESTEP}" if kind.timestep else ""
    opened.description = (f"{name} from {folder.name} ({shown} sample{at}, diffusers {diffusers.__version__}, weights "
                          f"in {len(files)} file(s)), exported with torch.export: {len(opened.graph.ops)} ops")
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        opened.warnings = [*opened.warnings, missing_weights_warning(missing, name, "initial values")]
    default_loss(opened, cls)
    return opened


def default_loss(opened: Model, cls: type) -> None:
    """MSE, against a generated target for a U-Net (the noise it predicts), against its sample for an autoencoder
    (what it rebuilds), when its batch has one; `cls` is the diffusers class (or a subclass of one)."""
    opened.loss = "mse"
    kind = next((CLASSES[c.__name__] for c in cls.__mro__ if c.__name__ in CLASSES), None)
    inputs = [n.name for n in opened.graph.inputs]
    if kind is not None and kind.target == "sample" and inputs and inputs[0] in opened.batch:
        sample = opened.batch[inputs[0]]
        if tuple(sample.shape) == tuple(opened.graph.outputs[0].shape):
            opened.batch[TARGET] = sample.copy()

"""torchvision's architectures by name: `torchvision:resnet18` (or `torchvision:resnet18@64` for 64×64 images).

As a target (`propscope open torchvision:resnet18`) it is the architecture with random weights; as the architecture
of a state dict (`propscope open finetuned.pth --arch torchvision:resnet18`) it is built with as many classes as
the state dict's classifier has, then filled by name as any architecture is. The model is built by torchvision's
own constructor (`torchvision.models.get_model`, no weights downloaded), sized first on torch's meta device and
charged to the memory budget, exported with torch.export on one image (a clip of 8 frames for video models, or the
fewest its weights take) in evaluation mode, and read as a `.pt2`. Classifiers, segmentation and video models; a
segmentation model's output is its `out` map.

The image size is the spec's where the architecture allows it: a vision transformer is built for it (`image_size`,
square, a multiple of its patch; a state dict's position embedding decides it instead), MaxViT likewise
(`input_size`, square, a multiple of 224); MViT's builders fix 224×224 clips of 16 frames, so it takes only
those. Too small an image for the rest says the smallest its weights were made for.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..model import Model, image_fit, image_normalization
from . import _torchvision, state_dict, torch_export
from ._budget import charge, human
from ._build import architecture_spec
from ._failure import first_line, quiet_torch
from .sizes import batch_sized, read_again_at, requested_batch, resizable_by

PREFIX = "torchvision:"
_SPEC = re.compile(r"^torchvision:([a-z][a-z0-9_]{0,63})(?:@(\d{1,9})(?:x(\d{1,9}))?)?$")
FRAMES = 8  # a video model's sample clip (its graph is the same for any length its weights take)
USUAL_CLASSES = {"classification": 1000, "segmentation": 21, "video": 400}  # ImageNet, VOC, Kinetics-400


def is_spec(text: object) -> bool:
    return str(text).startswith(PREFIX)


def parse(spec: str) -> tuple[str, tuple[int, int] | None]:
    """The model name and the image size (None: the architecture's usual one)."""
    return architecture_spec(spec, _SPEC, "torchvision:NAME or torchvision:NAME@SIZE (torchvision:resnet18, "
                             "torchvision:resnet18@64, torchvision:resnet18@96x128)")


def _family(models: Any, name: str, spec: str) -> str:
    """Which of torchvision's families `name` is in (list_models of the top package lists them all)."""
    for family in ("segmentation", "video"):
        if name in models.list_models(module=getattr(models, family)):
            return family
    why = {"detection": "a detection model: its outputs are boxes whose number depends on the image, which no graph of "
                        "fixed shapes holds",
           "optical_flow": "an optical-flow model: its refinement loop runs a number of times set at run time",
           "quantization": "a quantized model, run by torchvision's integer kernels (open {float} and see the "
                           "README's Quantized models for fake quantization)"}
    others = {n: family for family in why for n in models.list_models(module=getattr(models, family))}
    if name in others:
        said = why[others[name]].format(float=f"torchvision:{name.removeprefix('quantized_')}")
        raise ModelFormatError(f"{spec}: torchvision's {name} is {said}; propscope opens its classification, "
                               "segmentation and video models")
    if name in models.list_models(module=models):
        return "classification"
    known = ", ".join(n for n in sorted(models.list_models(module=models)) if n not in others)
    raise ModelFormatError(f"{spec}: torchvision has no classification, segmentation or video model {name!r} "
                           f"(it has {known[:200]}…)")


def _options(family: str, classes: int | None, aux: bool, name: str = "") -> dict[str, Any]:
    """get_model's arguments: nothing downloaded (a segmentation net's backbone too), the classes asked for."""
    options: dict[str, Any] = {"weights": None}
    if name in ("googlenet", "inception_v3"):  # their default initialisation, said, so they warn of no change
        options["init_weights"] = True
    if family == "segmentation":
        options.update(weights_backbone=None, aux_loss=aux)
    if classes is not None:
        options["num_classes"] = classes
    return options


@contextmanager
def _registered_on_meta(torch: Any) -> Iterator[None]:
    """Every parameter and buffer moved to torch's meta device as a module registers it: for the constructors that
    compute with tensors while building (RegNet's widths: `.tolist()`), which a meta default device breaks."""
    module = torch.nn.Module
    register_parameter, register_buffer = module.register_parameter, module.register_buffer

    def parameter(self: Any, name: str, param: Any) -> None:
        if param is not None:
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self: Any, name: str, tensor: Any, persistent: bool = True) -> None:
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    module.register_parameter, module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        module.register_parameter, module.register_buffer = register_parameter, register_buffer


def _shapes(torch: Any, models: Any, name: str, options: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shapes of the architecture's state dict, built without its memory."""
    try:
        with torch.device("meta"):
            net = models.get_model(name, **options)
    except Exception:  # a constructor that computes with tensors; a class count it cannot take raises here again
        with _registered_on_meta(torch):
            net = models.get_model(name, **options)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _classes_of(torch: Any, models: Any, name: str, family: str, tensors: dict[str, np.ndarray]) -> int | None:
    """How many classes a state dict's head has: the first axis of the tensors that have the usual class count
    (ImageNet's 1,000, VOC's 21, Kinetics' 400) as first axis in the architecture built by default, where the
    state dict has another (the same one in all, aside from those left at the usual count); None where none differs.
    Only the class count's own tensors count, however many (GoogLeNet's two auxiliary heads, LR-ASPP's two)."""
    aux = any(k.startswith("aux_classifier") for k in tensors)
    shapes = _shapes(torch, models, name, _options(family, None, aux, name))
    _, tensors = state_dict.unwrapped(tensors, shapes)  # a DataParallel checkpoint's "module." names
    usual = USUAL_CLASSES[family]
    firsts = {int(tensors[k].shape[0]) for k, want in shapes.items()
              if want and want[0] == usual and k in tensors and tuple(tensors[k].shape[1:]) == want[1:]
              and tensors[k].ndim == len(want)}
    others = firsts - {usual}
    return others.pop() if len(others) == 1 else None


def _vit_side(name: str, tensors: dict[str, np.ndarray] | None) -> int | None:
    """The image side a vision transformer's state dict was trained at, from its position embedding (1, 1 + n², D)."""
    patch = int(name.rsplit("_", 1)[1])
    for key, value in (tensors or {}).items():
        if key.endswith("encoder.pos_embedding") and value.ndim == 3:
            grid = math.isqrt(max(int(value.shape[1]) - 1, 0))
            if grid and grid * grid == value.shape[1] - 1:
                return grid * patch
    return None


def _geometry(models: Any, name: str, size: tuple[int, int] | None, spec: str,
              tensors: dict[str, np.ndarray] | None) -> tuple[tuple[int, int] | None, int, dict[str, Any], str]:
    """The image size, the clip length (video) and get_model's size arguments for `name`, and a note where the
    state dict overrode the size asked for."""
    note = ""
    if name.startswith("mvit_"):  # its builders pass spatial_size and temporal_size themselves
        if size not in (None, (224, 224)):
            raise ModelFormatError(f"{spec}: {name} takes only 224×224 clips of 16 frames (torchvision builds it "
                                   f"so): write torchvision:{name}")
        return (224, 224), max(FRAMES, _min_frames(models, name)), {}, note
    if name.startswith("vit_"):
        patch = int(name.rsplit("_", 1)[1])
        trained = _vit_side(name, tensors)
        if trained and size and size != (trained, trained):
            note = (f"{name}: the state dict's position embedding is for {trained}×{trained} images, so it is built "
                    f"for those, not {size[0]}×{size[1]}")
        size = (trained, trained) if trained else size or (224, 224)
        if size[0] != size[1] or size[0] % patch:
            side = max(patch, size[0] // patch * patch)
            raise ModelFormatError(f"{spec}: {name} takes square images whose side is a multiple of its patch, "
                                   f"{patch} (torchvision:{name}@{side})")
        return size, FRAMES, {"image_size": size[0]}, note
    if name.startswith("maxvit_"):  # 7×7 windows on its last four halvings: sides of 7 × 32 pixels, square
        size = size or (224, 224)
        if size[0] != size[1] or size[0] % 224:
            raise ModelFormatError(f"{spec}: {name} takes square images whose side is a multiple of 224 (its 7×7 "
                                   f"windows at 1/32 scale): torchvision:{name}@224")
        return size, FRAMES, {"input_size": size}, note
    return size, max(FRAMES, _min_frames(models, name)), {}, note


def _sample(torch: Any, family: str, size: tuple[int, int] | None, models: Any, name: str, frames: int) -> Any:
    generator = torch.Generator().manual_seed(0)
    if size is None:
        size = (112, 112) if family == "video" else (224, 224)
        low = _min_size(models, name)
        size = (max(size[0], low[0]), max(size[1], low[1]))
    batch = requested_batch()  # the data's, where it asks for one (`reading_at`)
    shape = (batch, 3, frames, *size) if family == "video" else (batch, 3, *size)
    return torch.randn(shape, generator=generator)


def _min_size(models: Any, name: str) -> tuple[int, int]:
    """The smallest image an architecture takes, as its weights' metadata says (inception_v3: 75×75)."""
    try:
        for weights in models.get_model_weights(name):
            low = weights.meta.get("min_size")
            if low:
                return int(low[0]), int(low[1])
    except (ValueError, KeyError, AttributeError):
        pass
    return (1, 1)


def _min_frames(models: Any, name: str) -> int:
    """The shortest clip a video architecture takes, as its weights' metadata says (S3D: 14 frames; 0: not said)."""
    try:
        for weights in models.get_model_weights(name):
            return int(weights.meta.get("min_temporal_size") or 0)
    except (ValueError, KeyError, AttributeError, TypeError):
        pass
    return 0


def _one_output(model: Any, family: str) -> None:
    """A segmentation net returns {"out": ..., "aux": ...}: its class gets a subclass, named as it, whose forward
    returns the `out` map (a wrapping module would prefix every parameter's name)."""
    if family != "segmentation":
        return
    cls = type(model)

    def forward(self: Any, x: Any) -> Any:
        return cls.forward(self, x)["out"]

    model.__class__ = type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__})


def _weights_normalization(models: Any, name: str) -> tuple[tuple[float, ...], tuple[float, ...], str] | None:
    """The mean and std the transforms of `name`'s pretrained weights normalize an image by (ImageNet's for the
    classifiers and segmenters), or None where torchvision has no weights for it."""
    try:
        transforms = models.get_model_weights(name).DEFAULT.transforms  # a partial of ImageClassification and the like
        defaults = inspect.signature(transforms.func).parameters
        mean = transforms.keywords.get("mean", defaults["mean"].default)
        std = transforms.keywords.get("std", defaults["std"].default)
    except Exception:  # no weights, another transform: an image is then given as its pixels / 255
        return None
    return image_normalization(list(mean), list(std), "torchvision's weights")


def _weights_fit(models: Any, name: str) -> tuple[str, float, str, str] | None:
    """How the transforms of `name`'s pretrained weights bring an image to its size: a classifier's resized on its
    shorter side to resize_size and its centre crop_size cut out (256 and 224 for most); None (stretched) for the
    rest, or where torchvision has no weights for it."""
    try:
        transforms = models.get_model_weights(name).DEFAULT.transforms
        if getattr(transforms, "func", None) is None or transforms.func.__name__ != "ImageClassification":
            return None
        defaults = inspect.signature(transforms.func).parameters
        crop = transforms.keywords.get("crop_size", defaults["crop_size"].default)
        resize = transforms.keywords.get("resize_size", defaults["resize_size"].default)
        crop, resize = (v[0] if isinstance(v, list | tuple) and len(v) == 1 else v for v in (crop, resize))
        resampling = str(getattr(transforms.keywords.get("interpolation"), "value", "bilinear"))
    except Exception:  # no weights, another transform: an image is then stretched to the input's size
        return None
    if not isinstance(crop, int) or not isinstance(resize, int) or not 0 < crop <= resize:
        return None
    return image_fit("crop", crop / resize, "torchvision's weights", resampling)


def open_spec(spec: str, tensors: dict[str, np.ndarray] | None = None) -> Model:
    """The architecture `spec` names, with random weights (seeded); `tensors` (a state dict) decides its classes."""
    name, size = parse(spec)
    try:
        import torch
    except ImportError:
        raise ModelFormatError(f"{spec}: needs torch and torchvision (pip install torch torchvision)") from None
    models = _torchvision.models()
    if models is None:
        raise ModelFormatError(f"{spec}: needs torchvision (pip install torchvision)")
    family = _family(models, name, spec)
    aux = bool(tensors) and any(k.startswith("aux_classifier") for k in tensors or {})
    size, frames, sized, note = _geometry(models, name, size, spec, tensors)
    try:
        classes = _classes_of(torch, models, name, family, tensors) if tensors else None
        options = {**_options(family, classes, aux, name), **sized}
        shapes = _shapes(torch, models, name, options)
    except Exception as exc:  # a class count or a size the architecture cannot take
        raise ModelFormatError(f"{spec}: torchvision cannot build it ({first_line(exc, 160)})") from None
    nbytes = sum(math.prod(shape) * 4 for shape in shapes.values())
    charge(nbytes, f"{name}'s parameters and buffers ({human(nbytes)})", spec)
    torch.manual_seed(0)
    model = models.get_model(name, **options).eval()
    _one_output(model, family)
    sample = _sample(torch, family, size, models, name, frames)
    try:
        with torch.no_grad(), quiet_torch():
            program = torch.export.export(model, (sample,))
    except Exception as exc:
        low = _min_size(models, name)
        if sample.shape[-2] < low[0] or sample.shape[-1] < low[1]:
            raise ModelFormatError(f"{spec}: {name} takes images of at least {low[0]}×{low[1]} "
                                   f"(torchvision:{name}@{max(low)}); torch.export: {first_line(exc, 120)}") from None
        raise ModelFormatError(f"{spec}: torch.export could not trace {name} ({first_line(exc, 200)})") from None
    del model
    opened = torch_export.open_program(program, name)
    side = "×".join(str(s) for s in sample.shape[2:])
    heads = f", {classes} classes" if classes else ""
    opened.description = (f"torchvision {name} ({family}, {side} input{heads}), exported with torch.export: "
                          f"{len(opened.graph.ops)} ops")
    # every family scores classes: an image's, a clip's, or each pixel's (N, C, H, W: torch's layout, whose targets
    # are (N, H, W) class maps)
    opened.loss = "cross_entropy"
    if family != "video":
        opened.image_normalization = _weights_normalization(models, name)
        opened.image_fit = _weights_fit(models, name)
    if note:
        opened.warnings.append(note)
    if not name.startswith("mvit_"):  # built for 224×224 only
        resizable_by(opened, f"{PREFIX}{name}@SIZE")
    return batch_sized(opened, read_again_at(open_spec, spec, tensors))

"""torchvision's architectures by name: `torchvision:resnet18` (or `torchvision:resnet18@64` for 64×64 images).

As a target (`propscope open torchvision:resnet18`) it is the architecture with random weights; as the architecture
of a state dict (`propscope open finetuned.pth --arch torchvision:resnet18`) it is built with as many classes as
the state dict's classifier has, then filled by name as any architecture is. The model is built by torchvision's
own constructor (`torchvision.models.get_model`, no weights downloaded), sized first on torch's meta device and
charged to the memory budget, exported with torch.export on one image (a clip of 8 frames for video models) in
evaluation mode, and read as a `.pt2`. Classifiers, segmentation and video models; a segmentation model's output is
its `out` map.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..model import Model
from . import _torchvision, state_dict, torch_export
from ._budget import charge, human

PREFIX = "torchvision:"
_SPEC = re.compile(r"^torchvision:([a-z][a-z0-9_]{0,63})(?:@(\d{1,4})(?:x(\d{1,4}))?)?$")
FRAMES = 8  # a video model's sample clip (its graph is the same for any length)
MIN_SIDE, MAX_SIDE = 16, 1024


def is_spec(text: object) -> bool:
    return str(text).startswith(PREFIX)


def parse(spec: str) -> tuple[str, tuple[int, int] | None]:
    """The model name and the image size (None: the architecture's usual one)."""
    found = _SPEC.match(spec.strip())
    if not found:
        raise ModelFormatError(f"{spec!r}: write torchvision:NAME or torchvision:NAME@SIZE (torchvision:resnet18, "
                               "torchvision:resnet18@64, torchvision:resnet18@96x128)")
    name, h, w = found.groups()
    if h is None:
        return name, None
    size = (int(h), int(w or h))
    if not all(MIN_SIDE <= s <= MAX_SIDE for s in size):
        raise ModelFormatError(f"{spec!r}: image sides between {MIN_SIDE} and {MAX_SIDE} pixels, please")
    return name, size


def _family(models: Any, name: str, spec: str) -> str:
    """Which of torchvision's families `name` is in (list_models of the top package lists them all)."""
    for family in ("segmentation", "video"):
        if name in models.list_models(module=getattr(models, family)):
            return family
    others = {n for f in ("detection", "optical_flow", "quantization")
              for n in models.list_models(module=getattr(models, f))}
    if name in models.list_models(module=models) and name not in others:
        return "classification"
    known = ", ".join(n for n in sorted(models.list_models(module=models)) if n not in others)
    raise ModelFormatError(f"{spec}: torchvision has no classification, segmentation or video model {name!r} "
                           f"(it has {known[:200]}…)")


def _options(family: str, classes: int | None, aux: bool) -> dict[str, Any]:
    """get_model's arguments: nothing downloaded (a segmentation net's backbone too), the classes asked for."""
    options: dict[str, Any] = {"weights": None}
    if family == "segmentation":
        options.update(weights_backbone=None, aux_loss=aux)
    if classes is not None:
        options["num_classes"] = classes
    return options


def _classes_of(torch: Any, models: Any, name: str, family: str, tensors: dict[str, np.ndarray]) -> int | None:
    """How many classes a state dict's head has: the first axis its head tensors share where the architecture's
    default head differs (ImageNet's 1,000, or VOC's 21 for segmentation); None where nothing differs."""
    with torch.device("meta"):
        default = models.get_model(name, **_options(family, None, any(k.startswith("aux_classifier") for k in tensors)))
    shapes = {k: tuple(v.shape) for k, v in default.state_dict().items()}
    _, tensors = state_dict.unwrapped(tensors, shapes)  # a DataParallel checkpoint's "module." names
    differ = {k: tuple(tensors[k].shape) for k in tensors if k in shapes and tuple(tensors[k].shape) != shapes[k]}
    firsts = {got[0] for k, got in differ.items() if got and got[1:] == shapes[k][1:]}
    return firsts.pop() if len(firsts) == 1 and len(differ) <= 4 else None


def _sample(torch: Any, family: str, size: tuple[int, int] | None, models: Any, name: str) -> Any:
    generator = torch.Generator().manual_seed(0)
    if size is None:
        size = (112, 112) if family == "video" else (224, 224)
        low = _min_size(models, name)
        size = (max(size[0], low[0]), max(size[1], low[1]))
    shape = (1, 3, FRAMES, *size) if family == "video" else (1, 3, *size)
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


def _one_output(model: Any, family: str) -> None:
    """A segmentation net returns {"out": ..., "aux": ...}: its class gets a subclass, named as it, whose forward
    returns the `out` map (a wrapping module would prefix every parameter's name)."""
    if family != "segmentation":
        return
    cls = type(model)

    def forward(self: Any, x: Any) -> Any:
        return cls.forward(self, x)["out"]

    model.__class__ = type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__})


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
    classes = _classes_of(torch, models, name, family, tensors) if tensors else None
    options = _options(family, classes, aux)
    try:
        with torch.device("meta"):
            shape_only = models.get_model(name, **options)
    except Exception as exc:  # a class count the architecture cannot take
        raise ModelFormatError(f"{spec}: torchvision cannot build it ({str(exc).strip()[:160]})") from None
    nbytes = sum(t.numel() * 4 for t in (*shape_only.parameters(), *shape_only.buffers()))
    charge(nbytes, f"{name}'s parameters and buffers ({human(nbytes)})", spec)
    torch.manual_seed(0)
    model = models.get_model(name, **options).eval()
    _one_output(model, family)
    sample = _sample(torch, family, size, models, name)
    try:
        with torch.no_grad():
            program = torch.export.export(model, (sample,))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFormatError(f"{spec}: torch.export could not trace {name} ({first})") from None
    del model
    opened = torch_export.open_program(program, name)
    side = "×".join(str(s) for s in sample.shape[2:])
    heads = f", {classes} classes" if classes else ""
    opened.description = (f"torchvision {name} ({family}, {side} input{heads}), exported with torch.export: "
                          f"{len(opened.graph.ops)} ops")
    opened.loss = "cross_entropy" if family == "classification" else None
    return opened

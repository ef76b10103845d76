"""Ultralytics YOLO checkpoints (`best.pt`, `last.pt`, `yolo11n.pt`): the network the checkpoint's own config names,
built by ultralytics, with the checkpoint's weights.

What ultralytics saves is the whole model object (`{"model": DetectionModel, "train_args": {...}, ...}`, a training
run's EMA in half precision), not a state dict, so there was no architecture to pass with `--arch`. propscope never
unpickles it: its restricted reader gives the object as data (`_pickle.Pickled`): the class name, the `yaml` dict the
model was built from (the table of layers: where each reads from, how many, which module, with which arguments), the
weights. The config is checked first (plain data of bounded size, every layer a torch.nn or ultralytics module class,
the activation `nn.Name(literals)`: ultralytics `eval`s it), then the model is built by ultralytics' own class from it
(YOLO_OFFLINE: ultralytics downloads nothing; a torchvision backbone layer is built without its pretrained weights),
filled with the checkpoint's weights (all of them, by state-dict name), exported with torch.export in evaluation mode
on an image of the training size (`train_args.imgsz`, else 640; the data's batch and image size when data is given,
traced again at each new size) and read as a `.pt2` is.
"""

from __future__ import annotations

import ast
import copy
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..model import TARGET, Model
from . import _torchvision, state_dict, torch_export
from ._budget import charge, human
from ._build import MIN_SIDE, file_size
from ._failure import first_line, quiet_torch
from ._pickle import Pickled, load_weights_only
from .sizes import read_again_at, requested_shapes, sized

MARKER = b"ultralytics.nn.tasks"  # the module of every Ultralytics model class, named in the pickle that holds one
MAX_PICKLE_SCAN = 16 << 20  # bytes of data.pkl looked through for it (a checkpoint's object tree is well under this)
# the model classes a checkpoint may hold; each is built from its config as ultralytics builds it
CLASSES = ("DetectionModel", "SegmentationModel", "PoseModel", "OBBModel", "ClassificationModel",
           "RTDETRDetectionModel", "WorldModel", "YOLOEModel", "YOLOESegModel", "SemanticSegmentationModel",
           "DepthModel")
DEFAULT_SIZE = 640  # ultralytics' own default image size
MAX_SIDE = 2048  # a P6 model trains at 1280; the pass's memory is checked against the budget as any model's is
MAX_CONFIG_ITEMS = 20_000
MAX_CONFIG_DEPTH = 8
MAX_TEXT = 200
MAX_REPEATS = 100
TORCHVISION_LAYER = "TorchVision"  # its arguments: channels out, model name, weights ("DEFAULT" downloads), ...
TORCHVISION_WEIGHTS = 2
NN = ("nn", "torch.nn")  # how a config's activation may name torch.nn (ultralytics evaluates it where both mean it)


def match(path: Path) -> bool:
    """A torch.save zip whose pickle names an Ultralytics model class (read as bytes: nothing is unpickled)."""
    try:
        if not path.is_file() or not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            member = next((i for i in zf.infolist() if i.filename.endswith("data.pkl")), None)
            if member is None:
                return False
            with zf.open(member) as fh:
                return MARKER in fh.read(MAX_PICKLE_SCAN)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, RuntimeError):
        return False


def open(path: str | Path) -> Model:
    path = Path(path)
    where = str(path)
    file_size(path, where, state_dict.MAX_FILE_BYTES, "more than propscope will load")
    state_dict.zip_members(path, where)
    held = load_weights_only(path, where, "the checkpoint", stand_ins=set())
    found = _model_object(held, where)
    kind = found.name.rpartition(".")[2]
    if kind not in CLASSES:
        raise ModelFormatError(f"{where}: holds an Ultralytics {kind[:60]}, which propscope does not build (it builds "
                               f"{', '.join(CLASSES[:5])}...)")
    attributes = _attributes(found)
    _libraries(where)  # first: a checkpoint opens with ultralytics or not at all; its config is checked against it
    config = _checked_config(attributes.get("yaml"), where)
    tensors = state_dict.module_tensors(found)
    if not tensors:
        raise ModelFormatError(f"{where}: its Ultralytics {kind} holds no weights")
    arrays = {name: np.asarray(value) for name, value in tensors.items()}
    extras = {k: np.asarray(v) for k, v in attributes.items()
              if isinstance(k, str) and isinstance(v, np.ndarray) and k not in ("stride",)}
    train_args = held.get("train_args") if isinstance(held, dict) else None
    size = _trained_size(train_args)
    names = attributes.get("names")
    classes = len(names) if isinstance(names, dict | list) else None
    return _opened(where, kind, config, arrays, extras, size, classes)


def _opened(where: str, kind: str, config: dict[str, Any], arrays: dict[str, np.ndarray],
            extras: dict[str, np.ndarray], size: tuple[int, int], classes: int | None) -> Model:
    """The checkpoint's network at the sizes the data asks for (else one image of `size`), exported and read."""
    torch, tasks, version = _libraries(where)
    channels = int(config.get("channels", 3)) if isinstance(config.get("channels", 3), int) else 3
    _charge_layers(torch, tasks, config, channels, kind, where)
    nbytes = sum(int(a.size) * 4 for a in arrays.values())  # the exported program's float32 copy
    charge(nbytes, f"the {kind}'s exported parameters and buffers ({human(nbytes)})", where)
    asked = next((s for n, s in requested_shapes().items() if n != TARGET and len(s) == 4), None)
    batch, height, width = 1, *size
    if asked is not None and len(asked) == 4:
        batch, height, width = int(asked[0]), int(asked[2]), int(asked[3])
    try:
        with quiet_torch():
            module = getattr(tasks, kind)(cfg=copy.deepcopy(config), ch=channels, nc=config.get("nc"), verbose=False)
    except ModelFormatError:
        raise
    except Exception as exc:
        raise ModelFormatError(f"{where}: ultralytics cannot build its {kind} from the checkpoint's config "
                               f"({first_line(exc, 160)})") from None
    _fill(torch, module, arrays, extras, where)
    module = module.float().eval()
    stride = int(max(float(s) for s in np.atleast_1d(np.asarray(getattr(module, "stride", [32]), dtype=float))))
    if kind != "ClassificationModel" and (height % stride or width % stride):
        raise ModelFormatError(f"{where}: a {height}×{width} image does not tile into this model's stride {stride}; "
                               f"give it sides that are multiples of {stride}")
    sample = torch.rand((batch, channels, height, width), generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad(), quiet_torch():
            program = torch.export.export(module, (sample,))
    except Exception as exc:
        raise ModelFormatError(f"{where}: torch.export could not trace its {kind} on a {height}×{width} image "
                               f"({first_line(exc, 160)})") from None
    name = Path(where).stem
    opened = torch_export.open_program(program, name)
    del module, program
    scale = config.get("scale")
    family = Path(str(config.get("yaml_file", ""))).stem or kind
    what = f"{family}{'' if not isinstance(scale, str) or family.endswith(scale) else ' ' + scale}"
    heads = f", {classes} classes" if classes else ""
    opened.description = (f"Ultralytics {what} {kind} ({height}×{width} input{heads}, ultralytics {version}), "
                          f"weights from {Path(where).name}, exported with torch.export: {len(opened.graph.ops)} ops")
    opened.loss = None  # a detector's boxes and scores take the loss its user chooses (Debug ▸ Loss, --loss)
    opened.image_normalization = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "ultralytics takes them so")  # pixels / 255
    # its predictions letterbox an image (its shape kept, grey bars) where a plain resize would squash it; a classifier
    # takes the centre square of the image resized on its shorter side (classify_transforms, crop_fraction 1)
    opened.image_fit = ("crop", 1.0, "bilinear", "as ultralytics classifies") if kind == "ClassificationModel" else \
        ("letterbox", 1.0, "bilinear", "as ultralytics predicts")
    reread = read_again_at(_opened, where, kind, config, arrays, extras, size, classes)
    symbolic = {n.name: ("batch", None, "height", "width") for n in opened.graph.inputs if len(n.shape) == 4}
    return sized(opened, symbolic, reread)


def _charge_layers(torch: Any, tasks: Any, config: dict[str, Any], channels: int, kind: str, where: str) -> None:
    """Count the layers the config builds against the memory budget before they exist: ultralytics' own
    `parse_model` on torch's meta device (no memory), so a config whose widths ask for 10¹² parameters is refused
    instead of allocated (the class itself cannot be built there: it runs a pass to find its strides)."""
    try:
        with torch.device("meta"), quiet_torch():
            layers, _ = tasks.parse_model(copy.deepcopy(config), ch=channels, verbose=False)
    except Exception as exc:
        raise ModelFormatError(f"{where}: ultralytics cannot build its {kind} from the checkpoint's config "
                               f"({first_line(exc, 160)})") from None
    nbytes = sum(t.numel() * 4 for t in (*layers.parameters(), *layers.buffers()))  # built in float32
    charge(nbytes, f"the {kind}'s layers as its config builds them ({human(nbytes)})", where)


def _libraries(where: str) -> tuple[Any, Any, str]:
    try:
        import torch
    except ImportError:
        raise ModelFormatError(f"{where}: an Ultralytics YOLO checkpoint; building its network needs torch and "
                               "ultralytics (pip install torch ultralytics)") from None
    _torchvision.models()  # ultralytics imports torchvision: a CUDA build beside a CPU torch, entered without its C ops
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no DNS lookups, no downloads
    os.environ.setdefault("YOLO_VERBOSE", "False")
    try:
        with quiet_torch():
            import ultralytics
            import ultralytics.nn.tasks as tasks
    except ImportError:
        raise ModelFormatError(f"{where}: an Ultralytics YOLO checkpoint; building its network needs ultralytics "
                               "(pip install ultralytics); `propscope inspect` lists its weights without it") from None
    return torch, tasks, str(getattr(ultralytics, "__version__", "?"))


def _model_object(held: Any, where: str) -> Pickled:
    """The model a checkpoint holds: a training run's EMA where it kept one, else its `model`."""
    if isinstance(held, Pickled):
        found: Any = held
    elif isinstance(held, dict):
        found = next((held[k] for k in ("ema", "model") if isinstance(held.get(k), Pickled)), None)
    else:
        found = None
    if not isinstance(found, Pickled) or not found.name.startswith("ultralytics.nn.tasks."):
        raise ModelFormatError(f"{where}: names ultralytics' model classes but holds no Ultralytics model under "
                               "'model' or 'ema'")
    return found


def _attributes(found: Pickled) -> dict[str, Any]:
    state = found.state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):  # (__dict__, slots)
        state = state[0]
    return state if isinstance(state, dict) else {}


def _trained_size(train_args: Any) -> tuple[int, int]:
    """(height, width) the model was trained at (`train_args.imgsz`), else ultralytics' default 640."""
    imgsz = train_args.get("imgsz") if isinstance(train_args, dict) else None
    if type(imgsz) is int:
        imgsz = [imgsz, imgsz]
    if (isinstance(imgsz, list | tuple) and len(imgsz) == 2 and all(type(v) is int for v in imgsz)
            and all(MIN_SIDE <= v <= MAX_SIDE for v in imgsz)):
        return int(imgsz[0]), int(imgsz[1])
    return DEFAULT_SIZE, DEFAULT_SIZE


# -- the config, checked before ultralytics sees it ------------------------------------------------------------------
def _checked_config(config: Any, where: str) -> dict[str, Any]:
    """A copy of the model's `yaml` dict that ultralytics may build from: plain data of bounded size, each layer a
    module class, the activation a plain constructor call; a torchvision backbone's pretrained weights dropped (the
    checkpoint's fill it)."""
    if not isinstance(config, dict):
        raise ModelFormatError(f"{where}: its Ultralytics model keeps no config (`yaml`) to build it from")
    _check_plain(config, where, [0])
    layers = [*_layers(config, "backbone", where), *_layers(config, "head", where)]
    if not layers:
        raise ModelFormatError(f"{where}: its Ultralytics config lists no layers")
    config = copy.deepcopy(config)
    for index, layer in enumerate([*config.get("backbone", []), *config.get("head", [])]):
        module = layer[2]
        _check_module(module, where, index)
        if module == TORCHVISION_LAYER and len(layer[3]) > TORCHVISION_WEIGHTS:
            layer[3][TORCHVISION_WEIGHTS] = None  # built with random weights, not downloaded: the checkpoint's fill it
    activation = config.get("activation")
    if activation is not None:
        _check_activation(activation, where)
    return config


def _check_plain(value: Any, where: str, count: list[int], depth: int = 0) -> None:
    count[0] += 1
    if count[0] > MAX_CONFIG_ITEMS or depth > MAX_CONFIG_DEPTH:
        raise ModelFormatError(f"{where}: its Ultralytics config is larger or deeper than a model's")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int) or (isinstance(key, str) and len(key) > MAX_TEXT):
                raise ModelFormatError(f"{where}: its Ultralytics config has a key that is not a name")
            _check_plain(item, where, count, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_plain(item, where, count, depth + 1)
    elif isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise ModelFormatError(f"{where}: its Ultralytics config holds a text of {len(value)} characters")
    elif not (value is None or isinstance(value, bool | int | float)):
        raise ModelFormatError(f"{where}: its Ultralytics config holds a {type(value).__name__[:40]}, not plain data")


def _layers(config: dict[str, Any], part: str, where: str) -> list[Any]:
    layers = config.get(part, [])
    if not isinstance(layers, list):
        raise ModelFormatError(f"{where}: its Ultralytics config's {part} is not a list of layers")
    for layer in layers:
        if not (isinstance(layer, list) and len(layer) == 4 and isinstance(layer[2], str)
                and isinstance(layer[3], list) and type(layer[1]) is int and 0 < layer[1] <= MAX_REPEATS
                and (type(layer[0]) is int or (isinstance(layer[0], list) and all(type(f) is int for f in layer[0])))):
            raise ModelFormatError(f"{where}: its Ultralytics config's {part} has a layer that is not "
                                   "[from, repeats, module, arguments]")
    return layers


def _check_module(name: str, where: str, index: int) -> None:
    """Layer `index`'s module: a torch.nn or ultralytics nn.Module class (ultralytics looks the name up and calls
    it; any other function its module defines could be named there)."""
    import torch
    import ultralytics.nn.tasks as tasks

    if name.startswith("nn."):
        found = getattr(torch.nn, name[3:], None)
    elif name.startswith("torchvision.ops."):
        found = getattr(__import__("torchvision.ops").ops, name[16:], None)
    else:
        found = getattr(tasks, name, None) if name.isidentifier() else None
    if found is None and name.isidentifier() and name[:1].isupper():  # a layer class of another ultralytics
        import ultralytics

        raise ModelFormatError(f"{where}: layer {index} of its Ultralytics config is a {name[:60]}, which ultralytics "
                               f"{ultralytics.__version__} does not define (saved by another version?)")
    if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
        raise ModelFormatError(f"{where}: layer {index} of its Ultralytics config names {name[:60]!r}, which is not "
                               "a torch.nn or ultralytics module")


def _check_activation(text: Any, where: str) -> None:
    """The config's activation, which ultralytics evaluates: only `nn.Name(...)` of a torch.nn module with literal
    arguments passes (`nn.SiLU()`, `nn.LeakyReLU(0.1)`, YOLOv6's `torch.nn.ReLU()`)."""
    import torch

    refused = ModelFormatError(f"{where}: its Ultralytics config's activation {str(text)[:60]!r} is not a torch.nn "
                               "module made from plain values")
    if not isinstance(text, str):
        raise refused
    try:
        call = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError):
        raise refused from None
    func = call.func if isinstance(call, ast.Call) else None
    if not (isinstance(call, ast.Call) and isinstance(func, ast.Attribute) and ast.unparse(func.value) in NN):
        raise refused
    found = getattr(torch.nn, func.attr, None)
    if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
        raise refused
    for argument in [*call.args, *(k.value for k in call.keywords)]:
        try:
            ast.literal_eval(argument)
        except ValueError:
            raise refused from None


# -- the weights ----------------------------------------------------------------------------------------------------
def _fill(torch: Any, module: Any, arrays: Mapping[str, np.ndarray], extras: Mapping[str, np.ndarray],
          where: str) -> None:
    """The checkpoint's weights into the built module, every one by name and shape (a config that builds another
    network is refused); its tensor attributes too (YOLO-World's class embeddings, `txt_feats`)."""
    own = module.state_dict()
    missing = [k for k in own if k not in arrays]
    unexpected = [k for k in arrays if k not in own]
    wrong = [k for k in own if k in arrays and tuple(own[k].shape) != tuple(arrays[k].shape)]
    if missing or unexpected or wrong:
        said = "; ".join(f"{what} {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}" for what, names in
                         (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong)) if names)
        raise ModelFormatError(f"{where}: its weights do not fit the network its config builds ({said})")
    with torch.no_grad():
        module.load_state_dict({k: torch.from_numpy(np.array(a, dtype=np.float32 if a.dtype.kind == "f" else a.dtype))
                                for k, a in arrays.items()})
        for name, value in extras.items():
            current = getattr(module, name, None)
            if isinstance(current, torch.Tensor) and tuple(current.shape) == value.shape and value.dtype.kind == "f":
                setattr(module, name, torch.from_numpy(np.array(value, dtype=np.float32)))

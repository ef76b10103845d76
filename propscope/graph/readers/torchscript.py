"""TorchScript archives (`torch.jit.trace(...).save`, `torch.jit.script(...).save`) opened as a graph, their code
interpreted, never run.

The archive is a zip: `data.pkl` is the module tree with its parameters and buffers (read with the restricted
torch-free unpickler of `_pickle`, whose stand-ins keep each module's class name and attributes), `constants.pkl`
the tensors the code names as `CONSTANTS.cN`, and `code/__torch__/**.py` one file of Python-syntax TorchScript per
module package. `torch.jit.load` is never called and nothing of the code is compiled or executed: it is parsed with
`ast` and walked symbolically by `torchscript_code`, from the root module's `forward`.

An archive records no input shape, except what a traced one keeps of its example inputs (`traced_inputs.pkl`:
their shapes; their values are not saved): the shapes come from the data (`sizes.reading_at`, by the forward's
parameter names, `x` for a single input), else from the traced inputs, else the open is refused in one line that
says how to give them.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..model import Model
from ..ops.shapes import fmt
from . import aten  # noqa: F401  (registers the ATen handlers)
from ._budget import ZIP_ERRORS, charge, memory_budget, open_zip, read_member
from ._build import check_shape
from ._pickle import MAX_PICKLE_BYTES, Pickled, _flat, _restricted, _Storage, _Unpickler, plain
from .sizes import requested_shapes, sized
from .torchscript_code import ClassInfo, Interpreter, Refusal, ScriptModule, parse_code

MAX_CODE_FILE = 8 * 2**20  # one code file; real ones are a few KB
MAX_CODE_BYTES = 64 * 2**20  # all code files parsed in one open
_QUALIFIED = re.compile(r"__torch__(\.[A-Za-z_][A-Za-z0-9_]{0,200}){1,32}")
DAMAGED = "a damaged zip archive ({})"  # what a zip that will not open is said to be


def is_archive(path: Path) -> bool:
    """Whether `path` is a zip with TorchScript code (`<root>/code/...`) beside its `data.pkl`."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except ZIP_ERRORS:
        return False
    return any("/code/__torch__/" in n or n.startswith("code/__torch__/") for n in names) and \
        any(n.endswith("data.pkl") for n in names)


class _Archive:
    """One TorchScript zip: its pickles and its code files, read on demand and bounded."""

    def __init__(self, zf: zipfile.ZipFile, where: str) -> None:
        self.zf, self.where = zf, where
        self.infos = {i.filename: i for i in zf.infolist()}
        roots = [n[: -len("data.pkl")] for n in self.infos if n.endswith("data.pkl") and n.count("/") <= 1]
        if len(roots) != 1:
            raise ModelFormatError(f"{where}: not a TorchScript archive (no single data.pkl at its top)")
        self.root = roots[0]
        self.parsed: dict[str, dict[str, ClassInfo | Any]] = {}
        self.code_bytes = 0
        self.frozen: list[np.ndarray] = []  # the module tree's tensors saved with requires_grad=False

    def pickle(self, member: str, folder: str, what: str, shapes_only: bool = False) -> Any:
        """A pickle of the archive, its tensors' storages in `folder`, as plain Python (NumPy for tensors);
        `shapes_only`: storages the archive leaves empty (traced inputs) read as zeros."""
        info = self.infos.get(f"{self.root}{member}")
        if info is None:
            return None
        storages: dict[str, _Storage] = {}

        def storage(key: str, dtype: str, numel: int) -> _Storage:
            if key not in storages:
                if not re.fullmatch(r"[0-9A-Za-z_]{1,64}", key):
                    raise ModelFormatError(f"{self.where}: {what} names a storage {key[:40]!r} that is not a name")
                if shapes_only:
                    charge(numel * 8, f"{what} storage {key!r}", self.where)
                    flat = np.zeros(numel, dtype=np.float32 if dtype in ("bfloat16", "float16") else dtype)
                else:
                    found = self.infos.get(f"{self.root}{folder}/{key}")
                    if found is None:
                        raise ModelFormatError(f"{self.where}: {what} has no storage {key!r}")
                    flat = _flat(read_member(self.zf, found, self.where), dtype, numel, False, self.where,
                                 f"storage {key!r}")
                storages[key] = _Storage(flat, dtype)
            return storages[key]

        body = read_member(self.zf, info, self.where, MAX_PICKLE_BYTES)
        with _restricted(self.where, what, torch_fallback=False):
            try:
                # only the module tree's weights can be parameters: the other pickles' tensors go unnoted
                frozen = self.frozen if member == "data.pkl" and not shapes_only else None
                value = _FrozenNoting(body, storage, self.where, frozen).load()
            except ModelFormatError:
                raise
            except RecursionError:
                raise ModelFormatError(f"{self.where}: {what} is nested too deeply to read") from None
            except Exception as exc:  # a broken pickle raises anything from struct.error to TypeError
                if type(exc).__name__ in ("Refused", "NeedsTorch"):
                    raise
                raise ModelFormatError(f"{self.where}: {what} is not a readable pickle "
                                       f"({type(exc).__name__}: {str(exc)[:100]})") from None
            return plain(value, self.where, what)

    def module_tree(self) -> Pickled:
        tree = self.pickle("data.pkl", "data", "the module tree (data.pkl)")
        if not isinstance(tree, Pickled) or not tree.name.startswith("__torch__."):
            raise ModelFormatError(f"{self.where}: data.pkl does not hold a TorchScript module")
        return tree

    def constants(self) -> list[Any]:
        value = self.pickle("constants.pkl", "constants", "the code's constants (constants.pkl)")
        if value is None:
            return []
        if not isinstance(value, tuple | list):
            raise ModelFormatError(f"{self.where}: constants.pkl does not hold a tuple of constants")
        return list(value)

    def traced_inputs(self) -> list[tuple[tuple[int, ...], str]] | None:
        """The shapes and dtypes of the example inputs `forward` was traced with, where the archive keeps them."""
        try:
            value = self.pickle("traced_inputs.pkl", "traced_inputs", "the traced inputs", shapes_only=True)
        except ModelFormatError:
            return None
        inputs = value.get("forward") if isinstance(value, dict) else None
        if not isinstance(inputs, list | tuple) or not all(isinstance(v, np.ndarray) for v in inputs):
            return None
        return [(tuple(int(d) for d in v.shape), "bool" if v.dtype.kind == "b" else str(v.dtype)) for v in inputs]

    def lookup(self, qualified: str) -> ClassInfo | Any:
        """A class or function of the code by its qualified name (`__torch__.torch.nn.modules.conv.Conv2d`)."""
        if not _QUALIFIED.fullmatch(qualified):
            raise Refusal(f"{qualified[:80]!r} is not a name of the archive's code")
        package, _, name = qualified.rpartition(".")
        member = f"{self.root}code/{package.replace('.', '/')}.py"
        if member not in self.parsed:
            info = self.infos.get(member)
            if info is None:
                raise Refusal(f"the archive has no code for {qualified[:80]}")
            self.code_bytes += info.file_size
            if self.code_bytes > MAX_CODE_BYTES:
                raise Refusal(f"the archive's code is larger than {MAX_CODE_BYTES // 2**20} MiB")
            data = read_member(self.zf, info, self.where, MAX_CODE_FILE)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise ModelFormatError(f"{self.where}: {member} is not UTF-8 text") from None
            self.parsed[member] = parse_code(text, self.where, member.removeprefix(self.root))
        found = self.parsed[member].get(name)
        if found is None:
            raise Refusal(f"the archive's code has no {qualified[:80]}")
        return found


class _FrozenNoting(_Unpickler):
    """The restricted unpickler, noting the tensors saved with requires_grad=False: a parameter the model does not
    train (`requires_grad_(False)`, Whisper's sinusoidal positions) is a constant, as a `.pt2`'s frozen one is."""

    def __init__(self, data: bytes, storages: Any, where: str, frozen: list[np.ndarray] | None) -> None:
        super().__init__(data, storages, where, set())
        self.frozen = frozen

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                        hooks: Any = None, metadata: Any = None) -> Any:
        tensor = super()._rebuild_tensor(storage, offset, size, stride, requires_grad, hooks, metadata)
        if requires_grad is False and self.frozen is not None:
            self.frozen.append(tensor.array)
        return tensor


def open(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Model:
    """The graph of a TorchScript archive, its inputs at `input_shapes` (by the forward's parameter names; by default
    the data's, `sizes.reading_at`, else the traced example inputs')."""
    with memory_budget():  # one running total for the open (open_model's own where it called this)
        return _open(Path(path), input_shapes)


def _open(path: Path, input_shapes: Mapping[str, tuple[int, ...]] | None) -> Model:
    where = str(path)
    with open_zip(path, where, DAMAGED) as zf:
        archive = _Archive(zf, where)
        root = ScriptModule(archive.module_tree(), "")
        interpreter = Interpreter(archive.lookup, archive.constants(), where, path.stem, archive.frozen)
        try:
            names = interpreter.inputs_of(root)
        except Refusal as exc:
            raise ModelFormatError(f"{where}: {exc}") from None
        asked = requested_shapes() if input_shapes is None else input_shapes
        traced = archive.traced_inputs()
        shapes = _input_shapes(names, asked, None if traced is None else [s for s, _ in traced], where)
        dtypes = {} if traced is None or len(traced) != len(names) else \
            {name: dtype for name, (_, dtype) in zip(names, traced, strict=True)}
        try:
            outputs = interpreter.run(root, shapes, dtypes)
        except ModelFormatError as exc:  # the data's shapes, not the archive, where an op refused their shape
            misfit = _data_misfit(str(exc), shapes, asked, None if traced is None else [s for s, _ in traced], where,
                                  "the data's shape" if input_shapes is None else "the shape")
            raise (misfit or exc) from None
        if interpreter.integer_inputs and traced is None:  # token ids of a scripted archive: read again as int64
            dtypes = dict.fromkeys(interpreter.integer_inputs, "int64")
            interpreter = Interpreter(archive.lookup, archive.constants(), where, path.stem, archive.frozen)
            outputs = interpreter.run(root, shapes, dtypes)
    kind = "traced" if traced is not None else "scripted"
    symbolic = {name: tuple(f"{name}.{axis}" for axis in range(len(shape))) for name, shape in shapes.items()}
    try:
        return _model(interpreter, outputs, f"TorchScript archive {path.name} ({kind})", symbolic, path)
    except ModelFormatError:
        raise
    except Exception as exc:  # what the code made, put together, is one line too (never a traceback)
        raise ModelFormatError(f"{where}: the graph the code makes cannot be built ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:160]})") from None


def _model(interpreter: Interpreter, outputs: list[Any], title: str, symbolic: dict[str, tuple[str, ...]],
           path: Path) -> Model:
    """The model of the graph the interpreter made, its outputs `outputs`; a forward that makes no op (it returns
    its input, or a weight, as it is) opens, said so."""
    builder = interpreter.t.b
    if not any(not n.is_leaf for n in builder.graph):
        returned = ", ".join(repr(n.name) for n in outputs[:3])
        builder.warnings.append(f"the model's forward makes no op: it returns {returned} as it is, so there is "
                                "nothing to step")
    model = builder.model(outputs, None, "")
    model.description = f"{title}: {len(model.graph.ops)} ops, its code interpreted, never run"
    return sized(model, symbolic, partial(open, path))


@dataclass
class ArchiveInputs:
    """What an archive says of its inputs before it is opened: their names, whether it records their shapes
    (traced), and a guess at a shape for the first one from the first weight of the module tree (`guess`: a Conv2d
    taking 3 channels, `(1, 3, 224, 224)`; an Embedding, `(1, 16)` token ids, `integer`), for a dialog to offer."""

    names: list[str]
    recorded: bool
    guess: tuple[int, ...] | None = None
    integer: bool = False


def inputs(path: str | Path) -> ArchiveInputs:
    """The inputs of the TorchScript archive at `path` (`ArchiveInputs`), read from its module tree (its tensors as
    shapes only) and its root's code, never run."""
    path = Path(path)
    where = str(path)
    with open_zip(path, where, DAMAGED) as zf:
        archive = _Archive(zf, where)
        tree = archive.pickle("data.pkl", "data", "the module tree (data.pkl)", shapes_only=True)
        if not isinstance(tree, Pickled) or not tree.name.startswith("__torch__."):
            raise ModelFormatError(f"{where}: data.pkl does not hold a TorchScript module")
        interpreter = Interpreter(archive.lookup, [], where, path.stem)
        try:
            names = interpreter.inputs_of(ScriptModule(tree, ""))
        except Refusal as exc:
            raise ModelFormatError(f"{where}: {exc}") from None
        recorded = archive.traced_inputs() is not None
        batch_first = _batch_first(tree, archive)  # the code's constants are read while the zip is open
    first = _first_weight(ScriptModule(tree, ""))
    if first is None:
        return ArchiveInputs(names, recorded)
    kind, shape = first
    if kind in ("Embedding", "EmbeddingBag"):
        return ArchiveInputs(names, recorded, (1, 16), integer=True)
    spatial = {"Conv1d": (128,), "Conv2d": (224, 224), "Conv3d": (8, 112, 112)}.get(kind)
    if spatial is not None and len(shape) == len(spatial) + 2:
        return ArchiveInputs(names, recorded, (1, shape[1], *spatial))
    if kind == "Linear" and len(shape) == 2:
        return ArchiveInputs(names, recorded, (1, shape[1]))
    if kind in ("LSTM", "GRU", "RNN") and len(shape) == 2:  # 16 steps of one sequence, either layout
        return ArchiveInputs(names, recorded, (1, 16, shape[1]) if batch_first else (16, 1, shape[1]))
    return ArchiveInputs(names, recorded)


def _first_weight(module: ScriptModule, depth: int = 0) -> tuple[str, tuple[int, ...]] | None:
    """The class (`Conv2d`, its TorchScript mangling dropped) and the shape of the first `weight` in the module tree,
    depth first in the order the modules were registered: usually the first layer the input meets."""
    if depth > 64:
        return None
    # a recurrent layer's first weight is `weight_ih_l0`, (gates * hidden, input size)
    weight = module.state.get("weight", module.state.get("weight_ih_l0"))
    if isinstance(weight, np.ndarray):
        return module.obj.name.rpartition(".")[2], tuple(int(d) for d in weight.shape)
    for name, value in module.state.items():
        if isinstance(value, Pickled) and value.name.startswith("__torch__."):
            found = _first_weight(ScriptModule(value, name), depth + 1)
            if found is not None:
                return found
    return None


def _batch_first(tree: Pickled, archive: _Archive) -> bool:
    """Whether the first recurrent layer of the module tree takes (batch, time, features): its attribute, or
    the constant its class declares in the code (a scripted `nn.LSTM`'s)."""
    stack, seen = [tree], 0
    while stack and seen < 10_000:
        obj = stack.pop(0)
        seen += 1
        state = ScriptModule(obj, "").state
        if "weight_ih_l0" in state:
            if "batch_first" in state:
                return state["batch_first"] is True
            try:
                info = archive.lookup(obj.name)
            except (Refusal, ModelFormatError):
                return False
            return isinstance(info, ClassInfo) and info.constants.get("batch_first") is True
        stack.extend(v for v in state.values() if isinstance(v, Pickled) and v.name.startswith("__torch__."))
    return False


def _input_shapes(names: list[str], asked: Mapping[str, tuple[int, ...]], traced: list[tuple[int, ...]] | None,
                  where: str) -> dict[str, tuple[int, ...]]:
    """Each input's shape: the data's (a single input also as `x`), else the traced example's, else refused."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, name in enumerate(names):
        shape = asked.get(name)
        if shape is None and len(names) == 1:
            shape = asked.get("x")
        if shape is None and traced is not None and len(traced) == len(names):
            shape = traced[i]
        if shape is None:
            listed = ", ".join(repr(n) for n in names)
            raise ModelFormatError(
                f"{where}: a TorchScript archive records no input shape; give the input"
                f"{'s' if len(names) > 1 else ''} {listed} with data: --data an .npz holding an array named "
                f"{names[0]!r}{' and the others' if len(names) > 1 else ''} (in the app, File ▸ Load data)")
        shapes[name] = check_shape(shape, f"input {name!r}", where)
    return shapes


_SHAPE_REASON = "ShapeError: "


def _shape_reason(message: str) -> str:
    """The first shape refusal a reading failure carries, "conv2d node 'conv1.conv2d': weight (64, 3, 7, 7) expects 3
    input channels (groups=1), got 1", from within the parentheses that wrap it; "" where it carries none. The layers
    between cut long reasons short: a cut one (its parentheses do not balance) ends at its last whole word, with …."""
    start = message.find(_SHAPE_REASON)
    if start < 0:
        return ""
    start += len(_SHAPE_REASON)
    depth, end = 0, len(message)
    for i in range(start, len(message)):
        depth += {"(": 1, ")": -1}.get(message[i], 0)
        if depth < 0:
            end = i
            break
    reason = message[start:end]
    if message.count("(") != message.count(")"):
        reason = reason.rsplit(" ", 1)[0].rstrip(",;:") + " …"
    return reason


def _data_misfit(message: str, shapes: Mapping[str, tuple[int, ...]], asked: Mapping[str, tuple[int, ...]],
                 traced: list[tuple[int, ...]] | None, where: str, whose: str) -> ModelFormatError | None:
    """Where the archive was read at the shapes asked for (the data's, or typed in the app) and an op refused them,
    that said as the input not fitting the archive (traced at another shape, where it records one), with the op's
    reason; None where the shapes were the traced ones (the archive's own trouble) or no op refused a shape."""
    reason = _shape_reason(message)
    given = {name: shape for name, shape in shapes.items() if name in asked or (len(shapes) == 1 and "x" in asked)}
    at_traced = traced is not None and len(traced) == len(shapes) and list(shapes.values()) == traced
    if not reason or not given or at_traced:
        return None
    recorded = traced if traced is not None and len(traced) == len(shapes) else None
    fits = "; ".join(
        f"input {name!r}: {whose} {fmt(shape)} does not fit the archive"
        + (f", traced at {fmt(recorded[i])}" if recorded is not None else "")
        for i, (name, shape) in enumerate(shapes.items())
        if name in given and (recorded is None or shape != recorded[i]))
    return ModelFormatError(f"{where}: {fits} ({reason})") if fits else None

"""State dicts and checkpoints (`.pt`, `.pth`, `.ckpt`, `.pth.tar`, `.bin`, `.safetensors`): weights only, opened
against an architecture.

A state dict has no graph, so it fills the parameters of one: a built-in example or a model file.
`.pt`/`.pth` zips go through the restricted torch-free unpickler of `_pickle` (weights-only semantics:
tensor-rebuild globals only), after the zip's declared sizes are checked; `torch.load(weights_only=True)`
is the fallback only for the legacy non-zip format and for what only torch can rebuild (tensor
subclasses). A training checkpoint's other contents (Lightning's hyperparameters, an `argparse.Namespace`, an
optimizer's state, NumPy scalars, a whole `torch.save(model)`) are read as inert stand-ins, never imported or called,
so that its weights open where torch's weights-only loader refuses the file; a whole pickled module gives its
parameters and buffers under their state-dict names. `.safetensors` is parsed here (8-byte header length, a JSON
header, raw bytes), every offset and size checked against the file before anything is read.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError, PropscopeError
from ..model import Model
from ._budget import ZIP_ERRORS, charge
from ._build import MAX_TENSOR_BYTES, check_shape, file_size, from_bytes
from ._pickle import Pickled, is_tensor, load_weights_only, to_numpy
from .sizes import SizedModel

# .ckpt: PyTorch Lightning's; .tar: `checkpoint.pth.tar`, as torchvision's ImageNet script saves; .bin: a
# transformers `pytorch_model.bin` on its own
SUFFIXES = (".pt", ".pth", ".ckpt", ".tar", ".bin", ".safetensors")
MAX_FILE_BYTES = 64 * 2**30
MAX_HEADER_BYTES = 100 * 2**20
SAFETENSORS_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
}
SCRIPTED = "(TorchScript)"  # said among a checkpoint's stand-ins where it is a TorchScript archive
# Where training scripts nest the weights in a checkpoint dict, and prefixes wrappers add to every name.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "timm_model.")


def match(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


@dataclass
class StateDictReport:
    """How a state dict's tensors met the architecture's parameters and constants, by name."""

    source: str
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the architecture, not in the file: values kept
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the architecture
    wrong_shape: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)  # name, want, got
    prefix: str = ""  # a wrapper prefix stripped from every name ("module.")

    @property
    def ok(self) -> bool:
        return not self.missing and not self.wrong_shape

    def summary(self) -> str:
        """One sentence for a status bar or a warning line."""
        parts = [f"{len(self.matched)} matched"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing (kept the architecture's: {_names(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected (ignored: {_names(self.unexpected)})")
        if self.wrong_shape:
            shapes = ", ".join(f"{n} {got} vs {want}" for n, want, got in self.wrong_shape[:4])
            parts.append(f"{len(self.wrong_shape)} of the wrong shape (ignored: {shapes})")
        stripped = f", prefix {self.prefix!r} stripped" if self.prefix else ""
        return f"state dict {self.source}: " + "; ".join(parts) + stripped

    def as_dict(self) -> dict[str, Any]:
        return {"matched": self.matched, "missing": self.missing, "unexpected": self.unexpected,
                "wrong_shape": [{"name": n, "expected": list(w), "got": list(g)} for n, w, g in self.wrong_shape]}


def _names(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f", … {len(names) - limit} more" if len(names) > limit else "")


def unwrapped(tensors: dict[str, np.ndarray], names: Collection[str]) -> tuple[str, dict[str, np.ndarray]]:
    """The wrapper prefix (`module.`, DataParallel's) whose removal matches the most of `names`, and the tensors
    without it ("" and the tensors as they are where none helps)."""
    prefix, best = "", sum(k in names for k in tensors)
    for p in WRAPPER_PREFIXES:
        hits = sum(k.removeprefix(p) in names for k in tensors)
        if hits > best:
            prefix, best = p, hits
    return prefix, {k.removeprefix(prefix): v for k, v in tensors.items()} if prefix else tensors


def apply_state_dict(model: Model, tensors: dict[str, np.ndarray], source: str = "",
                     note: str = "") -> tuple[Model, StateDictReport]:
    """`model` with the values of `tensors` put in by name, and the report of what matched (`note`, what else the
    checkpoint held, goes into the model's warnings after it).

    Parameters and constants (running statistics) both match; missing ones keep the model's values.
    A wrapper prefix such as `module.` (DataParallel) is stripped when that matches more names.
    """
    targets = {n.name: n.shape for n in model.graph.leaves if n.op.name != "input" and not n.meta.get("inline")}
    prefix, tensors = unwrapped(tensors, targets)
    report = StateDictReport(source, prefix=prefix)
    arrays = dict(model.arrays)
    # a parameter the module holds under several names (tied weights, CoaT's shared position encodings) is in the
    # state dict under each: one is the graph's, the others are that one, not unexpected
    aliases = {other: kept for other, kept in model.aliases.items() if kept in targets}
    folded = {n.name: n.meta["folded_norm"] for n in model.graph.parameters if n.meta.get("folded_norm")}
    folded.update(export_folds(model, tensors, targets))
    used: set[str] = set()  # the tensors a folded batch norm was made of
    notes_rows: list[str] = []  # rows of a table the exporter picked, taken where the values do not say which
    for name, shape in targets.items():
        if name in folded:  # a convolution's weight or bias with a batch norm folded in: folded from the tensors
            value, sources = refolded(folded[name], tensors)
            if value is None or value.shape != tuple(shape):
                report.missing.append(f"{name} (holds {folded[name]['batch_norm']} folded in: needs "
                                      f"{', '.join(s for s in sources if s not in tensors) or 'other shapes'})")
            else:
                arrays[name] = value
                report.matched.append(name)
                used.update(sources)
            continue
        found = name if name in tensors else next((a for a, k in aliases.items() if k == name and a in tensors), None)
        if found is None:
            report.missing.append(name)
            continue
        value = np.asarray(tensors[found])
        if tuple(value.shape) != tuple(shape):
            rows = picked_rows(model, name, value)
            if rows is None:
                report.wrong_shape.append((name, tuple(shape), tuple(value.shape)))
                continue
            value, said = rows
            notes_rows.extend([said] if said else [])
        arrays[name] = value
        report.matched.append(name)
    # a matrix the file holds twice, equal (an exporter that unties GPT-2's table and output layer), and the state
    # dict once (as save_pretrained writes tied weights): the missing one is its twin
    for name in [m for m in report.missing if m in targets and len(targets[m]) >= 2]:
        held = np.asarray(model.arrays[name])
        twin = next((k for k in report.matched if k != name and tuple(targets[k]) == tuple(targets[name])
                     and np.array_equal(np.asarray(model.arrays[k]), held)), None)
        if twin is not None:
            arrays[name] = arrays[twin]
            report.missing.remove(name)
            report.matched.append(name)
    # a BatchNorm's count of training batches is bookkeeping no forward or backward pass reads: not "unexpected"
    report.unexpected = [k for k in tensors if k not in targets and k not in aliases and k not in used
                         and not k.endswith(".num_batches_tracked")]
    clean = report.ok and not report.unexpected and not report.prefix  # every name met its tensor: nothing to say
    notes = [*([] if clean else [report.summary()]), *notes_rows, *([note] if note else [])]
    filled = replace(model, arrays=arrays, warnings=[*model.warnings, *notes])
    if isinstance(filled, SizedModel) and filled.reread is not None:  # read again at other sizes: these weights again
        reread = filled.reread
        filled = replace(filled, reread=lambda shapes: apply_state_dict(reread(shapes), tensors, source, note)[0])
    return filled, report


def refolded(record: dict[str, Any], tensors: dict[str, np.ndarray]) -> tuple[np.ndarray | None, list[str]]:
    """A convolution's weight or bias with its batch norm folded in as the exporter folded it (an ONNX file's
    `folded_norm` record, onnx_reader.folded_norms), from a state dict's unfolded tensors: W·γ/√(σ² + ε) and
    (b − μ)·γ/√(σ² + ε) + β. Returns it (None where a tensor is missing) and the tensors it reads."""
    part = record["part"]
    names = {"gamma": record["gamma"], "beta": record["beta"], "mean": record["mean"], "var": record["var"],
             "conv": record["conv_weight"] if part == "weight" else record["conv_bias"]}
    sources = [n for n in names.values() if n]
    if any(n not in tensors for n in sources) or (part == "weight" and not names["conv"]):
        return None, sources
    var = np.asarray(tensors[names["var"]], dtype=np.float64)
    gamma = np.asarray(tensors[names["gamma"]], dtype=np.float64) if names["gamma"] else np.ones_like(var)
    scale = gamma / np.sqrt(var + float(record["eps"]))
    dtype = np.asarray(tensors[names["var"]]).dtype
    if part == "weight":
        weight = np.asarray(tensors[names["conv"]])
        return (weight * scale.reshape(-1, *[1] * (weight.ndim - 1))).astype(weight.dtype), sources
    bias = np.asarray(tensors[names["conv"]], dtype=np.float64) if names["conv"] else 0.0
    beta = np.asarray(tensors[names["beta"]], dtype=np.float64) if names["beta"] else 0.0
    return ((bias - np.asarray(tensors[names["mean"]], dtype=np.float64)) * scale + beta).astype(dtype), sources


def picked_rows(model: Model, name: str, table: np.ndarray) -> tuple[np.ndarray, str] | None:
    """A state dict's table for a parameter the exporter folded to the rows it picked (the dynamo exporter computes
    GPT-2's `wpe(positions)` at export: (1, T, C) rows of the (P, C) table, recorded as folded from it): the T rows
    the file's are (found by their values), else the first T (the positions 0 … T − 1 a model counts from), said.
    None where `name` is no such parameter or the shapes do not fit."""
    node = model.graph[name]
    shape = tuple(node.shape)
    if node.meta.get("folded_from") != name or table.ndim != 2 or not shape or shape[-1] != table.shape[1]:
        return None
    count = int(np.prod(shape[:-1]))
    if not 0 < count <= table.shape[0]:
        return None
    held = np.asarray(model.arrays[name]).reshape(count, -1)
    firsts = np.flatnonzero(np.isclose(table[:table.shape[0] - count + 1], held[0], rtol=1e-6, atol=0.0).all(axis=1))
    for start in firsts:  # where the file's first row is, the rest checked
        if np.allclose(table[start:start + count], held, rtol=1e-6, atol=0.0):
            return table[start:start + count].reshape(shape), ""
    return table[:count].reshape(shape), (
        f"{name}: the file holds {count} of its rows (picked at export); the state dict's values are not the "
        f"file's, so rows 0 … {count - 1} are taken (the positions a model counts from)")


# the ε a batch norm may have been made with (BatchNorm2d's default first, then MobileNetV3's and EfficientNet's...):
# the TorchScript exporter folds it in without recording it
_NORM_EPS = (1e-5, 1e-3, 1e-4, 1e-6, 1e-2, 1e-1, 1e-8, 0.0)


def export_folds(model: Model, tensors: dict[str, np.ndarray], targets: Collection[str]) -> dict[str, dict[str, Any]]:
    """`folded_norm` records (as `refolded` reads them) for the convolutions the TorchScript exporter folded a batch
    norm into (`export_folded`, onnx_reader.mark_export_folded), whose batch norm the file does not name: each is
    matched to the state dict's batch norm (one the graph has no use for, with the convolution's channels) whose
    values, with the convolution's, give the file's weight and bias, and the ε that does. A state dict whose
    convolutions are not the file's cannot be folded so (which batch norm, which ε?): refused, saying how to export
    instead, rather than loaded unfolded and wrong."""
    marked = {n.name: n.meta["export_folded"] for n in model.graph.parameters
              if n.meta.get("export_folded", {}).get("part") == "weight"}
    if not marked:
        return {}
    order = {k: i for i, k in enumerate(tensors)}
    norms = [k[:-len(".running_var")] for k in tensors if k.endswith(".running_var")
             and f"{k[:-len('.running_var')]}.running_mean" in tensors and k not in targets]
    out: dict[str, dict[str, Any]] = {}
    unmatched = []
    used: set[str] = set()
    for weight_name, mark in marked.items():
        conv = mark["conv"]
        if f"{conv}.weight" not in tensors:
            continue  # reported missing as any other parameter
        file_weight, file_bias = model.arrays[weight_name], model.arrays[mark["bias"]]
        start = order[f"{conv}.weight"]
        # the batch norm after the convolution in the state dict's order first (a module registers them so)
        for norm in sorted((n for n in norms if n not in used),
                           key=lambda n: (order[f"{n}.running_var"] < start, order[f"{n}.running_var"])):
            record = _matching_fold(conv, norm, tensors, file_weight, file_bias)
            if record is not None:
                used.add(norm)
                out[weight_name] = {**record, "part": "weight"}
                out[mark["bias"]] = {**record, "part": "bias"}
                break
        else:
            if norms:
                unmatched.append(conv)
    if unmatched:
        raise ModelFormatError(
            f"the ONNX file holds {len(unmatched)} convolution(s) "
            f"({_names(unmatched, 3)}) with a batch norm the TorchScript exporter folded in (eval mode), and the state "
            "dict's weights for them are not the file's: they cannot be folded the same way (the file keeps neither "
            "which batch norm nor its ε); export the model again with training=torch.onnx.TrainingMode.PRESERVE (or "
            "the dynamo exporter) and open these weights against that file")
    return out


def _matching_fold(conv: str, norm: str, tensors: dict[str, np.ndarray], file_weight: np.ndarray,
                   file_bias: np.ndarray) -> dict[str, Any] | None:
    """The `folded_norm` record of batch norm `norm` folded into convolution `conv` as the file holds it (its
    weight and bias to the file's precision, with one of the usual ε), else None."""
    var = tensors[f"{norm}.running_var"]
    weight = tensors[f"{conv}.weight"]
    if var.ndim != 1 or np.shape(weight) != file_weight.shape or var.shape[0] != file_weight.shape[0]:
        return None
    gamma, beta = (f"{norm}.{p}" if f"{norm}.{p}" in tensors else None for p in ("weight", "bias"))
    if any(n is not None and np.shape(tensors[n]) != var.shape for n in (gamma, beta)):
        return None
    record = {"batch_norm": norm, "gamma": gamma, "beta": beta, "mean": f"{norm}.running_mean",
              "var": f"{norm}.running_var", "conv_weight": f"{conv}.weight",
              "conv_bias": f"{conv}.bias" if f"{conv}.bias" in tensors else ""}
    # the file's precision: a float32 fold rounds each value once more than ours
    tolerance = 8 * np.finfo(file_weight.dtype if file_weight.dtype.kind == "f" else np.float32).eps
    for eps in _NORM_EPS:
        candidate = {**record, "eps": eps}
        folded_weight, _ = refolded({**candidate, "part": "weight"}, tensors)
        folded_bias, _ = refolded({**candidate, "part": "bias"}, tensors)
        if folded_weight is None or folded_bias is None or folded_bias.shape != file_bias.shape:
            return None
        if _close(folded_weight, file_weight, tolerance) and _close(folded_bias, file_bias, tolerance):
            return candidate
    return None


def _close(ours: np.ndarray, theirs: np.ndarray, tolerance: float) -> bool:
    theirs = np.asarray(theirs, dtype=np.float64)
    scale = float(np.max(np.abs(theirs), initial=0.0))
    return bool(np.all(np.abs(np.asarray(ours, dtype=np.float64) - theirs) <= tolerance * (np.abs(theirs) + scale)))


def open_with(path: Path, arch: str | Path | None, seed: int = 0) -> Model:
    """The architecture `arch` (example name, model file, torchvision:NAME or timm:NAME) with this file's weights, or
    a clear error."""
    return open_reported(path, arch, seed)[0]


def open_reported(path: Path, arch: str | Path | None, seed: int = 0) -> tuple[Model, StateDictReport]:
    """`open_with`, and the report of what matched (the app shows it in a dialog)."""
    where = str(path)
    if arch is None:
        if _damaged_zip(path):  # a truncated download: asking for its architecture would not help
            raise ModelFormatError(f"{where}: a damaged zip archive; the file may be truncated")
        raise ModelFormatError(
            f"{where}: a state dict holds weights only; pass the architecture it belongs to with "
            "--arch EXAMPLE_OR_FILE (a built-in example, a .pt2/.onnx/.propscope model, torchvision:NAME or "
            "timm:NAME); `propscope inspect` lists its tensors without one"
        )
    checkpoint = read_checkpoint(path)
    tensors = checkpoint.tensors
    model, report = apply_state_dict(architecture(arch, tensors, seed), tensors, path.name, checkpoint.note)
    if not report.matched:
        raise ModelFormatError(
            f"{where}: none of its {len(tensors)} tensors ({_names(list(tensors))}) match a parameter of "
            f"{arch} ({_names(report.missing)}); is it the right architecture?"
        )
    model.description = f"{model.description} — weights from {path.name}".strip(" —")
    return model, report


def architecture(arch: str | Path, tensors: dict[str, np.ndarray], seed: int = 0) -> Model:
    """The model a state dict's `tensors` go into: an example, a model file, or a torchvision or timm architecture
    (built with as many classes as the tensors' classifier has)."""
    from . import architecture_library, load_target

    try:
        library = architecture_library(arch)
        if library is not None:
            return library.open_spec(str(arch), tensors)
        return load_target(arch, seed=seed)
    except PropscopeError as exc:
        said = str(exc)  # torchvision's and timm's messages name the spec already
        raise ModelFormatError(said if said.startswith(str(arch)) else f"architecture {arch}: {said}") from None


def read_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """The named tensors of a `.pt`/`.pth` state dict (nothing but tensor rebuilds: a file with anything else is
    refused, as before torch.load sees it) or a `.safetensors` file, as NumPy arrays."""
    path = Path(path)
    where = str(path)
    size = file_size(path, where, MAX_FILE_BYTES, "more than propscope will load")
    if path.suffix.lower() == ".safetensors":
        return _safetensors(path, where, size)
    return _torch_file(path, where, None)


@dataclass
class Checkpoint:
    """A checkpoint's weights by state-dict name, and one line on what else it held (its stand-ins)."""

    tensors: dict[str, np.ndarray]
    note: str = ""
    # the dtype a tensor was stored in where it is read wider (float16 and bfloat16 are read as float32)
    stored: dict[str, str] = field(default_factory=dict)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The weights of a state dict or of a training checkpoint as people save them: nested under a usual key
    (`state_dict`, `model`...), beside an optimizer's state, hyperparameters and settings objects, or a whole
    `torch.save(model)`; what is not a tensor is read as an inert stand-in (see `_pickle.Inert`), named in the note."""
    path = Path(path)
    where = str(path)
    size = file_size(path, where, MAX_FILE_BYTES, "more than propscope will load")
    origins: dict[int, str] = {}
    if path.suffix.lower() == ".safetensors":
        tensors = _safetensors(path, where, size, origins)
        return Checkpoint(tensors, stored=_stored(tensors, origins))
    stand_ins: set[str] = set()
    tensors = _torch_file(path, where, stand_ins, origins)
    stored = _stored(tensors, origins)
    scripted = SCRIPTED in stand_ins
    stand_ins.discard(SCRIPTED)
    if scripted:  # its classes are TorchScript's own: naming them says nothing
        return Checkpoint(tensors, f"{path.name} is a TorchScript archive: here its weights are read as a state dict "
                                   "(without --arch, `propscope open` reads its graph from its code, interpreted, "
                                   "never run)", stored)
    if not stand_ins:
        return Checkpoint(tensors, stored=stored)
    names = sorted(stand_ins)
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return Checkpoint(tensors, f"{path.name} also pickles {shown}: read as inert stand-ins, nothing of them imported "
                               "or run", stored)


def _stored(tensors: dict[str, np.ndarray], origins: dict[int, str]) -> dict[str, str]:
    return {name: origins[id(a)] for name, a in tensors.items() if id(a) in origins}


# -- .pt / .pth ---------------------------------------------------------------------------------------
def _damaged_zip(path: Path) -> bool:
    """Whether `path` starts as a zip (torch.save's format, a TorchScript archive) that cannot be read as one."""
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
    except OSError:
        return False
    return head == b"PK" and not zipfile.is_zipfile(path)


def zip_members(path: Path, where: str) -> list[zipfile.ZipInfo]:
    """A torch.save zip's members, their declared sizes within what propscope loads (each is checked again as it
    is read: `_budget.read_member`)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except ZIP_ERRORS as exc:
        raise ModelFormatError(f"{where}: a damaged zip archive ({str(exc)[:100]})") from None
    total = sum(i.file_size for i in infos)
    if any(i.file_size > MAX_TENSOR_BYTES for i in infos) or total > MAX_FILE_BYTES:
        raise ModelFormatError(f"{where}: its members claim {total} bytes, more than propscope will load")
    return infos


def _torch_file(path: Path, where: str, stand_ins: set[str] | None,
                origins: dict[int, str] | None = None) -> dict[str, np.ndarray]:
    if zipfile.is_zipfile(path):
        infos = zip_members(path, where)
        if any(i.filename.endswith("constants.pkl") or "/code/" in i.filename for i in infos):
            if stand_ins is None:
                raise ModelFormatError(f"{where}: a TorchScript archive, not a state dict: open it as the model "
                                       "itself (propscope reads its graph from its code), or save model.state_dict()")
            # its weights only: data.pkl is the module tree, read with stand-ins; its code is never compiled or run
            stand_ins.add(SCRIPTED)
        if not any(i.filename.endswith("data.pkl") for i in infos):
            raise ModelFormatError(f"{where}: a zip archive but not a torch.save file (no data.pkl)")
    else:
        with path.open("rb") as fh:
            head = fh.read(2)
        if head == b"PK":
            raise ModelFormatError(f"{where}: a damaged zip archive; the file may be truncated")
        if not head or head[0] != 0x80:  # torch's legacy format starts with a pickle protocol byte
            raise ModelFormatError(f"{where}: not a PyTorch file (neither a torch.save zip nor a pickle)")
    value = load_weights_only(path, where, "the file", stand_ins=stand_ins, origins=origins)
    try:
        return _flatten(value, where)
    except RecursionError:
        raise ModelFormatError(f"{where}: the file is nested too deeply to read") from None


def _flatten(value: Any, where: str) -> dict[str, np.ndarray]:
    """The tensors of a state dict, of a checkpoint that nests one under a usual key, or of a whole pickled module
    (by itself or under such a key, as YOLOv5's `{"model": model, ...}`)."""
    if isinstance(value, Pickled):
        tensors = module_tensors(value)
        if not tensors:
            raise ModelFormatError(f"{where}: holds a pickled {value.name}, with no module's parameters in it")
        return _named(tensors, where)
    if not isinstance(value, dict):
        raise ModelFormatError(f"{where}: holds a {type(value).__name__}, not a state dict (a dict of tensors)")
    tensors = {str(k): v for k, v in value.items() if is_tensor(v)}
    for key in NESTED_KEYS:  # the weights nested under a usual key win over a few tensors beside them (best_acc1)
        inner = value.get(key)
        nested = {str(k): v for k, v in inner.items() if is_tensor(v)} if isinstance(inner, dict) else \
            module_tensors(inner) if isinstance(inner, Pickled) else {}
        if len(nested) > len(tensors):
            tensors = nested
            break
    if not tensors:
        keys = ", ".join(ascii(str(k)[:40]) for k in list(value)[:6])
        raise ModelFormatError(f"{where}: no tensors found in the dict (keys: {keys or 'none'})")
    return _named(tensors, where)


def _named(tensors: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    """The tensors as NumPy arrays, each name checked as safetensors' are: a name is printed on the terminal and in
    the app, and a pickle's may hold anything (a newline and a forged line, a terminal's escape codes)."""
    for name in tensors:
        if not _NAME.match(name):
            raise ModelFormatError(f"{where}: tensor name {name[:60]!a} is not a parameter name")
    return {k: to_numpy(v, where, f"tensor {k!r}") for k, v in tensors.items()}


def module_tensors(module: Pickled, prefix: str = "", seen: set[int] | None = None) -> dict[str, Any]:
    """A pickled `nn.Module`'s parameters and persistent buffers by state-dict name ("layer1.0.conv1.weight"), read
    from the `_parameters`, `_buffers` and `_modules` of its pickled `__dict__`, its submodules' in turn; a
    TorchScript module's (whose pickled state holds its tensors and submodules as plain attributes) from those."""
    seen = set() if seen is None else seen
    if id(module) in seen:  # a pickle's memo can make a module its own child
        return {}
    seen.add(id(module))
    state = module.state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):  # (__dict__, slots)
        state = state[0]
    if not isinstance(state, dict):
        return {}
    if "_parameters" not in state and module.name.startswith("__torch__."):  # TorchScript's module object
        out: dict[str, Any] = {}
        for name, value in state.items():
            if isinstance(name, str) and is_tensor(value):
                out[f"{prefix}{name}"] = value
            elif isinstance(name, str) and isinstance(value, Pickled):
                out.update(module_tensors(value, f"{prefix}{name}.", seen))
        return out
    transient = state.get("_non_persistent_buffers_set")
    transient = transient if isinstance(transient, set | frozenset) else set()
    out = {}
    for group in ("_parameters", "_buffers"):
        members = state.get(group)
        if isinstance(members, dict):
            out.update((f"{prefix}{name}", value) for name, value in members.items()
                       if isinstance(name, str) and is_tensor(value)
                       and not (group == "_buffers" and name in transient))
    children = state.get("_modules")
    if isinstance(children, dict):
        for name, child in children.items():
            if isinstance(name, str) and isinstance(child, Pickled):
                out.update(module_tensors(child, f"{prefix}{name}.", seen))
    return out


# -- .safetensors -----------------------------------------------------------------------------------------
def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape in a safetensors file, from its header alone (checked as when it is read: a truncated or
    damaged file is a ModelFormatError naming it)."""
    size = file_size(path, str(path), MAX_FILE_BYTES, "more than propscope will load")
    with path.open("rb") as fh:
        return {name: shape for name, _, shape, _, _ in _safetensors_header(fh, str(path), size)[1]}


def _safetensors_header(fh: Any, where: str, size: int) -> tuple[int, list[tuple[str, str, tuple[int, ...], int, int]]]:
    """The header's length and its entries (name, dtype, shape, first and last byte), each checked against the file."""
    head = fh.read(8)
    if len(head) < 8:
        raise ModelFormatError(f"{where}: too short to be a safetensors file ({size} bytes)")
    length = int.from_bytes(head, "little")
    if length < 2 or length > MAX_HEADER_BYTES or 8 + length > size:
        raise ModelFormatError(f"{where}: not a safetensors file (header length {length} does not fit the "
                               f"{size}-byte file)")
    raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{where}: the safetensors header is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(header, dict):
        raise ModelFormatError(f"{where}: the safetensors header is not a JSON object")
    data_size = size - 8 - length
    return length, [_entry(name, spec, data_size, where) for name, spec in header.items() if name != "__metadata__"]


def _safetensors(path: Path, where: str, size: int, origins: dict[int, str] | None = None) -> dict[str, np.ndarray]:
    with path.open("rb") as fh:
        length, entries = _safetensors_header(fh, where, size)
        out: dict[str, np.ndarray] = {}
        for name, dtype, shape, begin, end in sorted(entries, key=lambda e: e[3]):
            charge(end - begin, f"tensor {name[:60]!r}", where)
            fh.seek(8 + length + begin)
            data = bytearray(end - begin)  # the tensor's own: the array is a view of it, not a second copy
            if fh.readinto(data) != end - begin:  # the file shrank while being read
                raise ModelFormatError(f"{where}: tensor {name[:60]!r} is cut short; the file may be truncated")
            out[name] = from_bytes(data, dtype, shape, where, f"tensor {name!r}")
            if origins is not None and out[name].dtype.name != dtype:  # float16, bfloat16: read as float32
                origins[id(out[name])] = dtype
    if not out:
        raise ModelFormatError(f"{where}: the safetensors file holds no tensors")
    return out


_NAME = re.compile(r"^[\w.\-/:]{1,512}\Z")  # \Z: `$` would let a name end in a newline


def _entry(name: str, spec: Any, data_size: int, where: str) -> tuple[str, str, tuple[int, ...], int, int]:
    if not _NAME.match(name):
        raise ModelFormatError(f"{where}: tensor name {name[:60]!r} is not a parameter name")
    if not isinstance(spec, dict):
        raise ModelFormatError(f"{where}: tensor {name!r} has a malformed header entry")
    code = spec.get("dtype")
    dtype = SAFETENSORS_DTYPES.get(code) if isinstance(code, str) else None
    if dtype is None:
        raise ModelFormatError(f"{where}: tensor {name!r} has dtype {spec.get('dtype')!r}, which propscope cannot use")
    shape = check_shape(spec.get("shape", ()), f"tensor {name!r}", where)
    offsets = spec.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        raise ModelFormatError(f"{where}: tensor {name!r} has malformed data_offsets {offsets!r}")
    begin, end = offsets
    item = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
    need = math.prod(shape) * item
    if not 0 <= begin <= end <= data_size:
        raise ModelFormatError(f"{where}: tensor {name!r} claims bytes {begin}..{end}, outside the file's "
                               f"{data_size} data bytes; the file may be truncated")
    if end - begin != need:
        raise ModelFormatError(f"{where}: tensor {name!r} declares shape {shape} {dtype} ({need} bytes) "
                               f"but spans {end - begin} bytes")
    return name, dtype, shape, begin, end


def write_safetensors(tensors: dict[str, np.ndarray], path: str | Path) -> Path:
    """Write arrays as a .safetensors file (for tests and for exporting propscope's weights)."""
    codes = {v: k for k, v in SAFETENSORS_DTYPES.items()}
    header: dict[str, Any] = {}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": codes[arr.dtype.name], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path = Path(path)
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))
    return path

"""propscope's own model format: one zip file holding `model.json` and one `.npy` per array.

Reading it never executes code: JSON is parsed, arrays are read with `allow_pickle=False`,
and every declared shape is checked against the bytes actually present before allocating.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError, PropscopeError
from ..ir import Graph
from ..model import FIT_KINDS, Model, TrainingDefaults, image_fit, image_normalization
from ..ops import CATALOG, get_op
from . import snapshots as _snapshots
from ._budget import CHUNK, ZIP_ERRORS, charge, open_zip, read_member
from .decisions import MAX_DECISIONS, summary_of

SUFFIX = ".propscope"
FORMAT = "propscope-model"
VERSION = 3  # 2 adds training snapshots (readers/snapshots.py); 3 what a session held (see `_session_entries`);
# older files still open
MANIFEST = "model.json"
MAX_MEMBER_BYTES = 8 * 2**30  # refuse arrays over 8 GiB before reading them
MAX_MANIFEST_BYTES = 64 * 2**20
_MALFORMED: tuple[type[BaseException], ...] = (KeyError, TypeError, AttributeError, OverflowError, RecursionError,
                                               *ZIP_ERRORS)
MAX_NAME_CHARS = 1024  # a node name: it becomes a zip member name in a trace, which has a 64 KiB limit


def match(path: Path) -> bool:
    if path.suffix.lower() == SUFFIX:
        return True
    try:  # runs on every file whatever its suffix: any failure just means "not ours"
        with zipfile.ZipFile(path) as zf:
            return MANIFEST in zf.namelist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError, RuntimeError):
        return False


# -- writing -------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


class SaveCancelled(PropscopeError):
    """`save` was asked to stop (an app's Cancel); nothing was written."""


def save(model: Model, path: str | Path, cancelled: Callable[[], bool] | None = None) -> Path:
    """Write `model` to `path` (one file); returns the path written. `cancelled`, asked between arrays, stops the save
    (SaveCancelled) and leaves no file behind, and the one at `path` as it was."""
    path = Path(path)
    nodes = [
        {
            "name": n.name,
            "op": n.op.name,
            "inputs": [a.name for a in n.inputs],
            "attrs": _jsonable(dict(n.attrs)),
            "meta": _jsonable({k: v for k, v in n.meta.items() if k != "shape" or n.is_leaf}),
        }
        for n in model.graph
    ]
    arrays = {f"arrays/{k}.npy": np.asarray(v) for k, v in model.arrays.items()}
    batch = {f"batch/{k}.npy": np.asarray(v) for k, v in model.batch.items()}
    snapshot_entry, snapshot_arrays = _snapshots.members(model)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "graph": {"name": model.graph.name, "nodes": nodes, "outputs": [o.name for o in model.graph.outputs]},
        "arrays": {k: f"arrays/{k}.npy" for k in model.arrays},
        "batch": {k: f"batch/{k}.npy" for k in model.batch},
        "loss": model.loss,
        "metrics": list(model.metrics),
        "training": asdict(model.training),
        "description": model.description,
        "dataset": _jsonable(model.dataset),
        **_session_entries(model),
        **snapshot_entry,
    }
    tmp = path.with_name(path.name + ".part")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(MANIFEST, json.dumps(manifest, indent=1))
            for member, arr in {**arrays, **batch, **snapshot_arrays}.items():
                if cancelled is not None and cancelled():
                    raise SaveCancelled(f"{path}: saving was cancelled; nothing was written")
                buf = io.BytesIO()
                # ascontiguousarray alone would turn a 0-D array (a scalar bias) into shape (1,)
                np.lib.format.write_array(buf, np.ascontiguousarray(arr).reshape(arr.shape), allow_pickle=False)
                zf.writestr(member, buf.getvalue())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or a cancel leaves no half-written file beside the model
        raise
    tmp.replace(path)  # never leave a half-written model under the real name
    return path


def _session_entries(model: Model) -> dict[str, Any]:
    """What a session adds to a model that a reopened file must keep (version 3), each only where it says something:
    the decisions of a module traced along one path (without them the file would take other data and train), the
    outputs' order in the file it came from once another output carries the loss, the other names of a tied
    parameter, whether the batch's target was drawn rather than given, and how a photo is normalized for it."""
    entries: dict[str, Any] = {}
    if model.decisions:
        entries["decisions"] = list(model.decisions)
    if model.output_order is not None and sorted(model.output_order) == sorted(o.name for o in model.graph.outputs):
        entries["output_order"] = list(model.output_order)
    if model.aliases:
        entries["aliases"] = dict(model.aliases)
    if model.target_drawn:
        entries["target_drawn"] = True
    if model.image_normalization is not None:
        mean, std, source = model.image_normalization
        entries["image_normalization"] = {"mean": list(mean), "std": list(std), "source": source}
    if model.image_fit is not None:
        kind, fraction, resampling, source = model.image_fit
        entries["image_fit"] = {"kind": kind, "fraction": fraction, "resampling": resampling, "source": source}
    return entries


# -- reading -------------------------------------------------------------------------------
def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def _read_array(zf: zipfile.ZipFile, member: str, where: str) -> np.ndarray:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise ModelFormatError(f"{where}: the file has no member {member!r}") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise ModelFormatError(f"{where}: {member} claims {info.file_size} bytes, more than propscope will load")
    with zf.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = header(fh, max_header_size=10_000)
        except Exception as exc:  # numpy parses the header with Python's tokenizer: anything can come out
            # numpy's message for an oversize header spans lines: say it in one
            reason = " ".join(str(exc).split())[:100]
            raise ModelFormatError(f"{where}: {member} is not a valid .npy array ({reason})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ModelFormatError(f"{where}: {member} holds {dtype} values; only numbers are allowed")
        count = int(np.prod(shape, dtype=object))
        offset = fh.tell()
        if count * dtype.itemsize != info.file_size - offset:
            raise ModelFormatError(
                f"{where}: {member} declares shape {tuple(shape)} ({count * dtype.itemsize} bytes) "
                f"but holds {info.file_size - offset} bytes"
            )
        charge(2 * count * dtype.itemsize, f"array {member}", where)  # the bytes read, and the array's copy
        data = _read_bounded(fh, count * dtype.itemsize, member, where)
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C").copy()


def _read_bounded(fh: Any, size: int, member: str, where: str) -> bytes:
    """Exactly `size` bytes of a member, read in bounded chunks (a member inflating past it is refused)."""
    parts, total = [], 0
    while total < size:
        chunk = fh.read(min(CHUNK, size - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    if total != size or fh.read(1):
        raise ModelFormatError(f"{where}: {member} does not hold the {size} bytes its header declares")
    return b"".join(parts)


def open(path: str | Path) -> Model:
    path = Path(path)
    where = str(path)
    with open_zip(path, where, "not a propscope model file (not a zip archive: {})") as zf:
        try:
            info = zf.getinfo(MANIFEST)
        except KeyError:
            raise ModelFormatError(f"{where}: not a propscope model file ({MANIFEST} is missing)") from None
        if info.file_size > MAX_MANIFEST_BYTES:
            raise ModelFormatError(f"{where}: {MANIFEST} is {info.file_size} bytes, too large to be a model")
        try:
            manifest = json.loads(read_member(zf, info, where, MAX_MANIFEST_BYTES).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise ModelFormatError(f"{where}: {MANIFEST} is not valid JSON ({str(exc)[:120]})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ModelFormatError(f"{where}: {MANIFEST} does not describe a propscope model")
        version = manifest.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise ModelFormatError(
                f"{where}: format version {version!r} is newer than this propscope reads ({VERSION}); upgrade propscope"
            )
        try:
            graph = _graph(manifest["graph"])
            members = [*dict(manifest.get("arrays", {})).values(), *dict(manifest.get("batch", {})).values()]
            names = set(zf.namelist())
            total = sum(zf.getinfo(m).file_size for m in members if m in names)
            if total > MAX_MEMBER_BYTES:
                raise ModelFormatError(f"{where}: its arrays claim {total} bytes in all, more than propscope will load")
            arrays = {k: _read_array(zf, m, where) for k, m in dict(manifest.get("arrays", {})).items()}
            batch = {k: _read_array(zf, m, where) for k, m in dict(manifest.get("batch", {})).items()}
            for node in graph.leaves:
                if node.name in arrays and arrays[node.name].shape != node.shape:
                    raise ModelFormatError(
                        f"{where}: array {node.name!r} has shape {arrays[node.name].shape}, "
                        f"the graph declares {node.shape}"
                    )
            model = Model(
                graph,
                arrays,
                batch=batch,
                loss=_loss(manifest.get("loss"), where),
                metrics=tuple(str(m) for m in manifest.get("metrics", ())),
                training=_training(manifest.get("training", {}), where),
                description=str(manifest.get("description", ""))[:2000],
                dataset=_dataset(manifest.get("dataset"), where),
                **_session_fields(manifest, graph, where),
            )
            if model.decisions:  # said again on every open, as when the module was traced
                model.warnings.append(summary_of(model.decisions))
            return _snapshots.read(model, manifest, zf, where, _read_array)
        except ModelFormatError:
            raise
        except PropscopeError as exc:
            raise ModelFormatError(f"{where}: {exc}") from None
        except _MALFORMED as exc:
            raise ModelFormatError(f"{where}: malformed model ({type(exc).__name__}: {str(exc)[:150]})") from None


MAX_DECISION_CHARS = 2000  # one decision's text: a file name, a line of code, a value


def _session_fields(manifest: dict[str, Any], graph: Graph, where: str) -> dict[str, Any]:
    """`_session_entries` read back, each checked against the graph (absent in files before version 3: defaults)."""
    fields: dict[str, Any] = {}
    decisions = manifest.get("decisions", [])
    if not isinstance(decisions, list) or len(decisions) > MAX_DECISIONS or not all(
            isinstance(d, str) and 0 < len(d) <= MAX_DECISION_CHARS for d in decisions):
        raise ModelFormatError(f"{where}: decisions should be a list of up to {MAX_DECISIONS} short texts")
    fields["decisions"] = tuple(decisions)
    outputs = [o.name for o in graph.outputs]
    order = manifest.get("output_order")
    if order is not None:
        named = isinstance(order, list) and all(isinstance(n, str) for n in order)
        if not named or sorted(order) != sorted(outputs):
            raise ModelFormatError(f"{where}: output_order should list the graph's outputs, each once")
        fields["output_order"] = tuple(order)
    aliases = manifest.get("aliases", {})
    if not isinstance(aliases, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v in graph for k, v in aliases.items()):
        raise ModelFormatError(f"{where}: aliases should map other names to nodes of the graph")
    fields["aliases"] = dict(aliases)
    drawn = manifest.get("target_drawn", False)
    if not isinstance(drawn, bool):
        raise ModelFormatError(f"{where}: target_drawn should be true or false")
    fields["target_drawn"] = drawn
    norm = manifest.get("image_normalization")
    if norm is not None:
        source = norm.get("source") if isinstance(norm, dict) else None
        checked = image_normalization(norm.get("mean"), norm.get("std"), source) \
            if isinstance(source, str) and 0 < len(source) <= 80 else None
        if checked is None:
            raise ModelFormatError(f"{where}: image_normalization should give a mean and a std (one or three finite "
                                   "numbers each, every std above 0) and a source of up to 80 characters")
        fields["image_normalization"] = checked
    fit = manifest.get("image_fit")
    if fit is not None:
        source = fit.get("source") if isinstance(fit, dict) else None
        fitted = image_fit(fit.get("kind"), fit.get("fraction"), source, fit.get("resampling")) \
            if isinstance(source, str) and 0 < len(source) <= 80 and fit.get("resampling") in ("bilinear", "bicubic") \
            else None
        if fitted is None:
            raise ModelFormatError(f"{where}: image_fit should give a kind ({', '.join(FIT_KINDS)}), a fraction in "
                                   "0.25..1, a resampling (bilinear or bicubic) and a source of up to 80 characters")
        fields["image_fit"] = fitted
    return fields


def _loss(value: Any, where: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 40):
        raise ModelFormatError(f"{where}: loss should be the name of a loss, not {str(value)[:30]!r}")
    return value


# Ranges for the settings a file may suggest: a widget shows them, and a data set is generated from them.
MAX_EPOCHS = 1_000_000
MAX_BATCH = 1_000_000
MAX_SAMPLES = 1_000_000
DATASET_NUMBERS = {"n": (1, MAX_SAMPLES), "noise": (0.0, 10.0), "seed": (0, 2**31 - 1),
                   "test_fraction": (0.0, 0.99), "classes": (2, 100)}


def _training(spec: Any, where: str) -> TrainingDefaults:
    """The training defaults, each checked: a type the app can use, within a range a spin box can show."""
    if not isinstance(spec, dict):
        raise ModelFormatError(f"{where}: training settings should be an object")
    unknown = sorted(set(spec) - {"optimizer", "lr", "epochs", "batch_size"})
    if unknown:
        names = ", ".join(repr(k[:30]) for k in unknown[:4])
        raise ModelFormatError(f"{where}: malformed model: training has unknown settings {names}")
    out = TrainingDefaults()
    if "optimizer" in spec:
        if not isinstance(spec["optimizer"], str) or not 0 < len(spec["optimizer"]) <= 40:
            raise ModelFormatError(f"{where}: training.optimizer should be a short name")
        out.optimizer = spec["optimizer"]
    if "lr" in spec:
        lr = spec["lr"]
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr <= 1e6:
            raise ModelFormatError(f"{where}: training.lr should be a number in (0, 1e6], not {str(lr)[:30]}")
        out.lr = float(lr)
    for key, top in (("epochs", MAX_EPOCHS), ("batch_size", MAX_BATCH)):
        if key not in spec or (key == "batch_size" and spec[key] is None):
            continue
        value = spec[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise ModelFormatError(f"{where}: training.{key} should be a whole number from 1 to {top}, "
                                   f"not {str(value)[:30]}")
        setattr(out, key, value)
    return out


def _dataset(spec: Any, where: str = "") -> tuple[str, dict[str, Any]] | None:
    """The generated data set a model trains on by default: [name, {keyword: value}] in the file, each
    number within the range a generator (and the app's spin boxes) can take."""
    if spec is None:
        return None
    if not (isinstance(spec, list | tuple) and len(spec) == 2 and isinstance(spec[0], str)
            and isinstance(spec[1], dict) and len(spec[0]) <= 40):
        raise ModelFormatError(f"{where}: dataset should be [name, {{settings}}]")
    name, kwargs = spec
    for key, value in kwargs.items():
        low_high = DATASET_NUMBERS.get(key)
        if low_high is None:
            raise ModelFormatError(f"{where}: dataset setting {str(key)[:30]!r} is not one propscope knows")
        low, high = low_high
        whole = isinstance(low, int)
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float) \
                or not low <= value <= high:
            raise ModelFormatError(f"{where}: dataset setting {key} should be a {'whole ' if whole else ''}number "
                                   f"from {low} to {high}, not {str(value)[:30]}")
    charge(int(kwargs.get("n", 200)) * 3 * 8, "the generated data set", where)
    return str(name), dict(kwargs)


def _graph(spec: dict[str, Any]) -> Graph:
    graph = Graph(str(spec.get("name", "model")))
    for i, n in enumerate(spec["nodes"]):
        if not isinstance(n, dict) or "name" not in n or "op" not in n:
            raise GraphError(f"node #{i} needs a name and an op")
        if not isinstance(n["name"], str) or not 0 < len(n["name"]) <= MAX_NAME_CHARS:
            raise GraphError(f"node #{i} needs a name of 1 to {MAX_NAME_CHARS} characters")
        meta = _tuples(dict(n.get("meta", {})))
        shape = meta.pop("shape", None)
        attrs = dict(n.get("attrs", {}))
        known = get_op(str(n["op"])).default_attrs if str(n["op"]) in CATALOG else attrs
        unknown = sorted(set(attrs) - set(known))
        if unknown:
            raise GraphError(f"node {n['name']!r}: op {n['op']} has no attribute {', '.join(map(repr, unknown))}")
        try:
            graph.add(str(n["op"]), *[str(a) for a in n.get("inputs", [])], name=str(n["name"]),
                      attrs=_tuples(attrs), shape=shape, **meta)
        except GraphError as exc:
            raise GraphError(f"node {n['name']!r}: {exc}") from None  # open() prefixes the file's path
    graph.set_outputs(*[str(o) for o in spec.get("outputs", [])])
    return graph

"""propscope's own model format: one zip file holding `model.json` and one `.npy` per array.

Reading it never executes code: JSON is parsed, arrays are read with `allow_pickle=False`,
and every declared shape is checked against the bytes actually present before allocating.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError, PropscopeError
from ..ir import Graph
from ..model import Model, TrainingDefaults
from ..ops import CATALOG, get_op

SUFFIX = ".propscope"
FORMAT = "propscope-model"
VERSION = 1
MANIFEST = "model.json"
MAX_MEMBER_BYTES = 8 * 2**30  # refuse arrays over 8 GiB before reading them
MAX_MANIFEST_BYTES = 64 * 2**20


def match(path: Path) -> bool:
    if path.suffix.lower() == SUFFIX:
        return True
    try:
        with zipfile.ZipFile(path) as zf:
            return MANIFEST in zf.namelist()
    except (OSError, zipfile.BadZipFile):
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


def save(model: Model, path: str | Path) -> Path:
    """Write `model` to `path` (one file); returns the path written."""
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
    }
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1))
        for member, arr in {**arrays, **batch}.items():
            buf = io.BytesIO()
            # ascontiguousarray alone would turn a 0-D array (a scalar bias) into shape (1,)
            np.lib.format.write_array(buf, np.ascontiguousarray(arr).reshape(arr.shape), allow_pickle=False)
            zf.writestr(member, buf.getvalue())
    tmp.replace(path)  # never leave a half-written model under the real name
    return path


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
        except ValueError as exc:
            raise ModelFormatError(f"{where}: {member} is not a valid .npy array ({exc})") from None
        if dtype.hasobject or dtype.kind not in "biuf":
            raise ModelFormatError(f"{where}: {member} holds {dtype} values; only numbers are allowed")
        count = int(np.prod(shape, dtype=object))
        offset = fh.tell()
        if count * dtype.itemsize != info.file_size - offset:
            raise ModelFormatError(
                f"{where}: {member} declares shape {tuple(shape)} ({count * dtype.itemsize} bytes) "
                f"but holds {info.file_size - offset} bytes"
            )
        data = fh.read()
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C").copy()


def open(path: str | Path) -> Model:
    path = Path(path)
    where = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ModelFormatError(f"{where}: no such file") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ModelFormatError(f"{where}: not a propscope model file (not a zip archive: {exc})") from None
    with zf:
        try:
            info = zf.getinfo(MANIFEST)
        except KeyError:
            raise ModelFormatError(f"{where}: not a propscope model file ({MANIFEST} is missing)") from None
        if info.file_size > MAX_MANIFEST_BYTES:
            raise ModelFormatError(f"{where}: {MANIFEST} is {info.file_size} bytes, too large to be a model")
        try:
            manifest = json.loads(zf.read(info).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelFormatError(f"{where}: {MANIFEST} is not valid JSON ({exc})") from None
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
            return Model(
                graph,
                arrays,
                batch=batch,
                loss=manifest.get("loss"),
                metrics=tuple(str(m) for m in manifest.get("metrics", ())),
                training=TrainingDefaults(**dict(manifest.get("training", {}))),
                description=str(manifest.get("description", "")),
                dataset=_dataset(manifest.get("dataset")),
            )
        except ModelFormatError:
            raise
        except PropscopeError as exc:
            raise ModelFormatError(f"{where}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError, zipfile.BadZipFile,
                OSError, EOFError) as exc:
            raise ModelFormatError(f"{where}: malformed model ({type(exc).__name__}: {exc})") from None


def _dataset(spec: Any) -> tuple[str, dict[str, Any]] | None:
    """The generated data set a model trains on by default: [name, {keyword: value}] in the file."""
    if spec is None:
        return None
    name, kwargs = spec
    return str(name), dict(kwargs)


def _graph(spec: dict[str, Any]) -> Graph:
    graph = Graph(str(spec.get("name", "model")))
    for i, n in enumerate(spec["nodes"]):
        if not isinstance(n, dict) or "name" not in n or "op" not in n:
            raise GraphError(f"node #{i} needs a name and an op")
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

"""torch.export programs (`.pt2`, written by `torch.export.save`), read without running anything in them.

`torch.export.load` is never called: on torch 2.13 it retries a failed weights-only unpickle with
`weights_only=False`, so a crafted archive runs code. Instead the zip is read here: the program is
JSON, raw weights are bytes laid out as their JSON metadata says (checked against the member's size
before anything is allocated), and the few members that are pickles (sample inputs, archives from
older torch versions) go through the restricted torch-free unpickler of `_pickle` (sample inputs
never import torch; weights fall back to `torch.load(weights_only=True)` only for tensor subclasses).
Every allocation is counted against the open's memory budget. The ATen graph is mapped onto catalog
ops in `_aten`.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ..gc_pause import paused_gc
from ..model import Model
from . import aten, torchscript  # noqa: F401  (aten registers the ATen handlers)
from ._aten import SCALAR_TYPES, Translator, in_place, json_int, sizes
from ._budget import charge, open_zip, read_member
from ._build import MAX_JSON_BYTES, MAX_TENSOR_BYTES, NUMPY_DTYPES, check_shape
from ._pickle import load_weights_only, to_numpy
from .sizes import requested_shapes, sized

SUFFIX = ".pt2"
_MODEL_JSON = re.compile(r"^(?P<root>(?:[^/]+/)?)models/(?P<name>[^/]+)\.json$")
_LEGACY_JSON = re.compile(r"^(?P<root>(?:[^/]+/)?)serialized_exported_program\.json$")
TORCH_INSTALL = "pip install 'propscope[torch]'"
__all__ = ["load_weights_only", "match", "open", "to_numpy"]  # the pickle helpers live in _pickle


def match(path: Path) -> bool:
    return path.suffix.lower() == SUFFIX


def _read(zf: zipfile.ZipFile, member: str, where: str, limit: int = MAX_TENSOR_BYTES) -> bytes:
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise ModelFormatError(f"{where}: the archive has no member {member!r}") from None
    return read_member(zf, info, where, limit)


def _json(zf: zipfile.ZipFile, member: str, where: str) -> Any:
    data = _read(zf, member, where, MAX_JSON_BYTES)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"{where}: {member} is not valid JSON ({str(exc)[:120]})") from None


_MAX_EXPANDED_BYTES = 256 * 2**20  # a broadcast (stride 0) tensor may grow beyond its data, up to this

_COMPLEX = {10: "complex64", 11: "complex128"}  # torch's complex types (a rotary embedding's buffer)

class _Archive:
    """One model of a `.pt2` zip: its program JSON and its tensors, read lazily and checked."""

    def __init__(self, zf: zipfile.ZipFile, where: str) -> None:
        self.zf, self.where = zf, where
        names = zf.namelist()
        self.names = set(names)
        found = [m for m in (_MODEL_JSON.match(n) for n in names) if m]
        legacy = [m for m in (_LEGACY_JSON.match(n) for n in names) if m]
        if found:
            chosen = next((m for m in found if m["name"] == "model"), found[0])
            self.root, self.model_name, self.legacy = chosen["root"], chosen["name"], False
            self.program_member = chosen.group(0)
        elif legacy:
            self.root, self.model_name, self.legacy = legacy[0]["root"], "model", True
            self.program_member = legacy[0].group(0)
        else:
            raise ModelFormatError(f"{where}: not a torch.export program ({self._what_is_it(names)})")
        self.program = _json(zf, self.program_member, where)
        if not isinstance(self.program, dict):
            raise ModelFormatError(f"{where}: {self.program_member} does not hold a program object")
        self._configs: dict[str, dict[str, Any]] = {}
        self._pickled: dict[str, dict[str, Any]] = {}
        self._raw: dict[str, bytes | bytearray] = {}
        self._lent: set[str] = set()  # members whose buffer a tensor already is (a second tensor gets a copy)

    @staticmethod
    def _what_is_it(names: list[str]) -> str:
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return "it looks like a TorchScript archive without its code or its module tree (data.pkl)"
        if any(n.endswith("data.pkl") for n in names):
            return "it looks like a torch.save file; open it as a state dict with --arch"
        if any("aotinductor" in n for n in names):
            return "it is an AOTInductor package without an exported program"
        return "no models/*.json program in the archive"

    # -- tensors ----------------------------------------------------------------------------------
    def _config(self, kind: str) -> dict[str, Any]:
        """The payload config of weights or constants ({} when the archive has none)."""
        if kind not in self._configs:
            folder = "weights" if kind == "weights" else "constants"
            member = f"{self.root}data/{folder}/{self.model_name}_{folder}_config.json"
            if member not in self.names:
                self._configs[kind] = {}
            else:
                spec = _json(self.zf, member, self.where)
                config = spec.get("config") if isinstance(spec, dict) else None
                if not isinstance(config, dict):
                    raise ModelFormatError(f"{self.where}: {member} has no config object")
                self._configs[kind] = config
        return self._configs[kind]

    def _legacy_dict(self, kind: str) -> dict[str, Any]:
        """Older archives keep every weight (or constant) in one torch.save pickle."""
        if kind not in self._pickled:
            folder = "weights" if kind == "weights" else "constants"
            candidates = [f"{self.root}data/{folder}/{self.model_name}.pt"]
            if self.legacy:
                candidates.append(f"{self.root}serialized_{'state_dict' if kind == 'weights' else 'constants'}.pt")
            found: dict[str, Any] = {}
            for member in candidates:
                if member in self.names:
                    value = load_weights_only(_read(self.zf, member, self.where), self.where, member)
                    if not isinstance(value, dict):
                        raise ModelFormatError(f"{self.where}: {member} does not hold a dict of tensors")
                    found = value
                    break
            self._pickled[kind] = found
        return self._pickled[kind]

    def tensor(self, kind: str, fqn: str) -> np.ndarray:
        """A parameter, buffer or constant by its state-dict name."""
        order = ("weights", "constants") if kind in ("parameter", "buffer") else ("constants", "weights")
        for group in order:
            entry = self._config(group).get(fqn)
            if entry is not None:
                return self._payload(group, fqn, entry)
            legacy = self._legacy_dict(group)
            if fqn in legacy:
                return to_numpy(legacy[fqn], self.where, f"{kind} {fqn!r}")
        raise ModelFormatError(f"{self.where}: the archive has no value for {kind} {fqn!r}")

    def real_tensor(self, kind: str, fqn: str) -> np.ndarray:
        """`tensor`, refusing a complex weight (a buffer's complex rotations are read as constants, never leaves)."""
        value = self.tensor(kind, fqn)
        if kind == "parameter" and np.iscomplexobj(value):
            raise ModelFormatError(f"{self.where}: parameter {fqn!r} is complex; propscope trains real weights only")
        return value

    def _payload(self, group: str, fqn: str, entry: Any) -> np.ndarray:
        folder = "weights" if group == "weights" else "constants"
        what = f"tensor {fqn!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("path_name"), str):
            raise ModelFormatError(f"{self.where}: {what} has a malformed entry")
        path_name = entry["path_name"]
        if "/" in path_name or path_name.startswith("."):
            raise ModelFormatError(f"{self.where}: {what} points outside its folder ({path_name!r})")
        member = f"{self.root}data/{folder}/{path_name}"
        if entry.get("use_pickle") or path_name.startswith(("custom_obj", "opaque_obj")):
            if path_name.startswith(("custom_obj", "opaque_obj")):
                raise ModelFormatError(f"{self.where}: {what} is a pickled Python object, which propscope refuses")
            return to_numpy(load_weights_only(_read(self.zf, member, self.where), self.where, what), self.where, what)
        meta = entry.get("tensor_meta")
        if not isinstance(meta, dict):
            raise ModelFormatError(f"{self.where}: {what} has no tensor metadata")
        code = meta.get("dtype")
        dtype = (SCALAR_TYPES.get(code) or _COMPLEX.get(code)) if isinstance(code, int) else None
        if dtype is None or (dtype not in NUMPY_DTYPES and dtype not in _COMPLEX.values()):
            raise ModelFormatError(f"{self.where}: {what} has a dtype propscope cannot use (code {meta.get('dtype')})")
        shape = sizes(meta.get("sizes"), what, self.where)
        strides = sizes(meta.get("strides"), f"{what} strides", self.where)
        offset_spec = meta.get("storage_offset") or {"as_int": 0}
        offset = offset_spec.get("as_int", 0) if isinstance(offset_spec, dict) else -1
        offset = json_int(offset, f"{what} storage offset", self.where)
        if len(strides) != len(shape) or offset < 0:
            raise ModelFormatError(f"{self.where}: {what} has strides {strides} or offset {offset} that do not fit "
                                   f"its shape {shape}")
        item = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        try:
            nbytes = self.zf.getinfo(member).file_size
        except KeyError:
            raise ModelFormatError(f"{self.where}: the archive has no member {member!r} for {what}") from None
        count = math.prod(shape)
        extent = 0 if count == 0 else offset + 1 + sum((d - 1) * s for d, s in zip(shape, strides, strict=True))
        if extent * item > nbytes:
            raise ModelFormatError(f"{self.where}: {what} declares shape {shape} reaching {extent * item} bytes, "
                                   f"but its data holds {nbytes} bytes")
        if count * item > max(nbytes, _MAX_EXPANDED_BYTES):  # zero strides could blow a few bytes up to gigabytes
            raise ModelFormatError(f"{self.where}: {what} would expand {nbytes} bytes of data to {count * item} bytes "
                                   "through its strides; propscope refuses it")
        charge(count * max(item, 4 if dtype in ("bfloat16", "float16") else item), what, self.where)
        if count == 0:
            return np.zeros(shape, dtype=np.dtype("float32" if dtype == "bfloat16" else dtype))
        if member not in self._raw:
            self._raw[member] = self._stored(member) or _read(self.zf, member, self.where)
        data = self._raw[member]
        if len(data) != nbytes:
            raise ModelFormatError(f"{self.where}: {member} is shorter than its zip entry says; the file is truncated")
        flat: np.ndarray
        if dtype == "bfloat16":
            flat = (np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            flat = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=nbytes // item)
        if dtype != "bfloat16" and _lendable(flat, data, shape, strides) and member not in self._lent:
            # the member's own buffer, read once and writable, is the tensor: no second copy of every weight
            # (a third of a big model's open); a later tensor on the same storage gets its own copy
            self._lent.add(member)
            return flat[offset:offset + count].reshape(shape)
        view = np.lib.stride_tricks.as_strided(flat[offset:], shape=shape,
                                               strides=tuple(s * flat.itemsize for s in strides))
        out = np.array(view, dtype=flat.dtype.newbyteorder("="))
        return out.astype(np.float32) if out.dtype == np.float16 else out

    def _stored(self, member: str) -> bytearray | None:
        """An uncompressed member's bytes straight from the file (torch stores weights so): a zip member
        opened one by one costs ~0.1 ms, which a model with thousands of weights notices. None: use zipfile."""
        info = self.zf.getinfo(member)
        fp = self.zf.fp
        if info.compress_type != zipfile.ZIP_STORED or fp is None or info.flag_bits & 0x1:
            return None
        if info.header_offset + 30 + info.file_size > self._file_bytes:
            return None  # claims more than the file holds: zipfile reads it in bounded chunks and says so
        fp.seek(info.header_offset)
        header = fp.read(30)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            return None
        start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + int.from_bytes(header[28:30],
                                                                                                    "little")
        charge(info.file_size, f"member {member}", self.where)
        fp.seek(start)
        data = bytearray(info.file_size)  # writable: a tensor can be a view of it (`_lendable`)
        return data if fp.readinto(data) == info.file_size else None  # type: ignore[attr-defined]

    @cached_property
    def _file_bytes(self) -> int:
        fp = self.zf.fp
        try:
            return os.fstat(fp.fileno()).st_size if fp is not None else 0
        except (OSError, AttributeError, ValueError):
            return 0

    def sample_inputs(self) -> list[np.ndarray] | None:
        """The example inputs the program was exported with, as arrays in input order (None if unusable)."""
        member = f"{self.root}data/sample_inputs/{self.model_name}.pt"
        if self.legacy:
            member = f"{self.root}serialized_example_inputs.pt"
        if member not in self.names:
            return None
        try:  # never torch: sample inputs only it could read are skipped, not worth its import
            value = load_weights_only(_read(self.zf, member, self.where), self.where, "the sample inputs",
                                      torch_fallback=False)
        except ModelFormatError:
            return None
        flat: list[np.ndarray] = []

        def walk(v: Any, depth: int = 0) -> None:
            if isinstance(v, np.ndarray):
                flat.append(to_numpy(v, self.where, "a sample input"))
            elif depth > 32:
                return
            elif isinstance(v, list | tuple):
                for item in v:
                    walk(item, depth + 1)
            elif isinstance(v, dict):
                for item in v.values():
                    walk(item, depth + 1)

        walk(value)
        return flat


def _lendable(flat: np.ndarray, data: bytes | bytearray, shape: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """Whether a tensor can be a view of its member's bytes as they are (`flat`, not widened from bfloat16): a
    writable buffer (not `bytes`), in the machine's byte order, not float16 (widened too), laid out C-contiguous."""
    if not isinstance(data, bytearray) or not flat.dtype.isnative or flat.dtype == np.float16:
        return False
    expected, step = [], 1
    for size in reversed(shape):
        expected.append(step)
        step *= size
    return all(size == 1 or got == want for size, got, want in zip(shape, strides, reversed(expected), strict=True))


def open(path: str | Path, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Model:
    """The program in a `.pt2` archive; a program exported with dynamic shapes is read with its inputs at
    `input_shapes` (by input name; by default the shapes `sizes.reading_at` asks for, else the example inputs')."""
    path = Path(path)
    where = str(path)
    if torchscript.is_archive(path):  # a TorchScript archive saved as .pt2: its own reader reads its code
        return torchscript.open(path, input_shapes)
    zf = open_zip(path, where, "not a torch.export archive (not a zip file: {})")
    with zf:
        archive = _Archive(zf, where)
        return _model(archive.program, archive.real_tensor, archive.sample_inputs, where, path.stem,
                      f"from {path.name}", input_shapes, partial(open, path))


def _model(program: dict[str, Any], fetch: Callable[[str, str], np.ndarray],
           samples: Callable[[], list[np.ndarray] | None], where: str, name: str, source: str,
           input_shapes: Mapping[str, tuple[int, ...]] | None = None,
           reread: Callable[[Mapping[str, tuple[int, ...]]], Model] | None = None) -> Model:
    """The Model of a program's JSON (as `torch.export.save` writes it), its tensors by state-dict name from
    `fetch`, and its sample inputs (the batch, where their shapes are the inputs'). Dynamic (symbolic) input sizes
    are read at `input_shapes` where given; `reread` reads the program again at other ones (`SizedModel`)."""
    schema = program.get("schema_version")
    translator = Translator(_without_buffer_updates(program), fetch, where, name,
                            requested_shapes() if input_shapes is None else input_shapes)
    model = translator.translate(None, "")
    batch: dict[str, np.ndarray] = {}
    values = samples()
    if values is not None and len(values) == len(translator.user_inputs):
        for input_name, value in zip(translator.user_inputs, values, strict=True):
            if tuple(value.shape) == model.graph[input_name].shape:
                batch[input_name] = value
    model.batch = batch
    ops = len(model.graph.ops)
    version = program.get("torch_version", "an unknown torch version")
    model.description = (f"torch.export program {source} ({version}, schema "
                         f"{schema.get('major', '?') if isinstance(schema, dict) else '?'}): {ops} ops")
    if translator.bound:
        said = ", ".join(f"{symbol} = {value}" for symbol, (value, _, _) in translator.bound.items())
        model.description += (f"; dynamic sizes {said} (the " + ("data's" if translator.symbols is not None else
                                                                  "example inputs'; data sets them") + ")")
    for node in model.graph.inputs:
        check_shape(node.shape, f"input {node.name!r}", where)
    return sized(model, translator.symbolic, reread)


def _without_buffer_updates(program: dict[str, Any]) -> dict[str, Any]:
    """The program without the nodes whose only work is updating a buffer: a module exported in training mode
    counts its batches (`num_batches_tracked += 1`, one `add` a batch norm) and writes new running statistics,
    as in-place ops on the buffer or, after `run_decompositions()`, as outputs the program gives back as buffer
    mutations. None of it reaches the model's outputs, and as steps they were bookkeeping between the layers
    (20 in resnet18); the module's buffers are left as they are, as the batch norm op leaves them. A node stays
    where anything else reads what it makes, or reads the buffer after it. Anything malformed is left for the
    translator to name."""
    try:
        gm = program["graph_module"]
        nodes, signature = gm["graph"]["nodes"], gm["signature"]
        buffers = {spec["buffer"]["arg"]["name"] for spec in signature.get("input_specs", []) if "buffer" in spec}
        live: set[str] = set()
        sink: set[str] = set()
        for spec in signature.get("output_specs", []):
            (sink if "buffer_mutation" in spec else live).update(_tensor_names(spec))
        kept: list[Any] = []
        for node in reversed(nodes):
            made = _tensor_names(node.get("outputs", []))
            read = _tensor_names(node.get("inputs", []))
            parts = str(node.get("target", "")).split(".")
            mutated = next((_tensor_names(item.get("arg")) for item in node.get("inputs", [])
                            if item.get("name") == "self"), set()) if len(parts) >= 4 and in_place(parts[3]) else set()
            updates_buffer = bool(mutated) and mutated <= buffers and not mutated & live
            if not made & live and (made & sink or updates_buffer):
                sink.update(read)
                continue
            live.update(read)
            kept.append(node)
    except (KeyError, TypeError, AttributeError):
        return program
    if len(kept) == len(nodes):
        return program
    return {**program, "graph_module": {**gm, "graph": {**gm["graph"], "nodes": kept[::-1]}}}


def _tensor_names(value: Any) -> set[str]:
    """Every tensor name an argument or output of the program JSON mentions (`{"as_tensor": {"name": ...}}`,
    lists of them, a signature's `arg`)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            name = item.get("name")
            if isinstance(name, str) and not ({"arg", "kind"} & item.keys()):  # not an argument's own name
                found.add(name)
            stack.extend(v for k, v in item.items() if k != "name")
        elif isinstance(item, list):
            stack.extend(item)
    return found


def open_program(program: Any, name: str) -> Model:
    """An ExportedProgram made in this process (a module handed over in Python, a transformers checkpoint, a
    torchvision architecture), named `name`. Its graph goes through torch's own serializer to the JSON that
    `torch.export.save` writes into an archive, and then through the same translator as a `.pt2`, so there is one
    reader; its tensors are copied from the program instead of being written to an archive and read back (4 of the
    6 s a 124M-parameter GPT-2 took). A torch whose serializer takes other arguments gets the archive round trip."""
    try:
        from torch._export.serde.serialize import serialize

        artifact = serialize(program, serialize_state_dict=False, serialize_constants=False,
                             serialize_example_inputs=False)
    except (ImportError, TypeError):  # another torch's private serializer: the public archive instead
        return _open_saved(program, name)
    document = json.loads(artifact.exported_program)
    tensors = _ProgramTensors(program, name)

    def reread(shapes: Mapping[str, tuple[int, ...]]) -> Model:
        return _model(document, tensors.fetch, tensors.sample_inputs, name, name, "made in this process", shapes,
                      reread)

    with paused_gc():  # the graph's objects all live on (graph/gc_pause.py)
        return _model(document, tensors.fetch, tensors.sample_inputs, name, name, "made in this process", None,
                      reread)


def tied_names(module: Any, model: Model) -> dict[str, str]:
    """Every other name of a parameter the module holds under several (tied weights), mapped to the one the graph
    keeps (torch.export keeps one)."""
    names: dict[int, list[str]] = {}
    for name, param in module.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    aliases = {}
    for group in names.values():
        kept = next((n for n in group if n in model.arrays), None)
        if kept is not None:
            aliases.update({n: kept for n in group if n != kept})
    return aliases


def _open_saved(program: Any, name: str) -> Model:
    """The program saved to a temporary `name`.pt2 (which names the graph) and read back as a user's file."""
    import torch

    with tempfile.TemporaryDirectory(prefix="propscope-") as tmp:
        path = Path(tmp) / f"{name}.pt2"
        torch.export.save(program, str(path))
        with paused_gc():
            return open(path)


class _ProgramTensors:
    """An in-memory program's parameters, buffers, constants and sample inputs as NumPy arrays: copies (the
    session must not write into a module's own weights, nor see the module's later changes), charged to the
    open's memory budget; half-precision ones in float32, as from an archive."""

    def __init__(self, program: Any, where: str) -> None:
        self.program, self.where = program, where

    def fetch(self, kind: str, fqn: str) -> np.ndarray:
        groups = (self.program.state_dict, self.program.constants)
        for group in groups if kind in ("parameter", "buffer") else groups[::-1]:
            if fqn in group:  # a buffer or constant may be complex (a rotary embedding's rotations); a weight not
                return self._array(group[fqn], f"{kind} {fqn!r}", charged=True, complex_ok=kind != "parameter")
        raise ModelFormatError(f"{self.where}: the program has no value for {kind} {fqn!r}")

    def _array(self, value: Any, what: str, charged: bool, complex_ok: bool = False) -> np.ndarray:
        import torch

        if not isinstance(value, torch.Tensor) or value.is_quantized or (value.is_complex() and not complex_ok):
            raise ModelFormatError(f"{self.where}: {what} is not a real-valued tensor ({type(value).__name__})")
        tensor = value.detach()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()
        if charged:
            charge(tensor.numel() * tensor.element_size(), what, self.where)
        try:
            return np.array(tensor.cpu().numpy())  # a copy
        except (TypeError, RuntimeError) as exc:  # a tensor subclass or a dtype NumPy has no match for
            raise ModelFormatError(f"{self.where}: {what} cannot be read as an array ({exc})") from None

    def sample_inputs(self) -> list[np.ndarray] | None:
        """The inputs the program was exported with, flattened in the order the archive's pickle holds them."""
        import torch

        flat: list[np.ndarray] = []

        def walk(value: Any, depth: int = 0) -> None:
            if isinstance(value, torch.Tensor):
                flat.append(self._array(value, "a sample input", charged=False))
            elif depth <= 32 and isinstance(value, list | tuple):
                for item in value:
                    walk(item, depth + 1)
            elif depth <= 32 and isinstance(value, dict):
                for item in value.values():
                    walk(item, depth + 1)

        try:
            walk(self.program.example_inputs)
        except ModelFormatError:
            return None
        return flat

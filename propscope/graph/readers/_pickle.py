"""torch.save files read without torch: a restricted unpickler that maps tensor rebuilding to NumPy.

A `torch.save` zip holds `data.pkl` (a pickle whose tensors are persistent ids naming storages) and
one raw member per storage. The unpickler here resolves only the globals a plain state dict or a
tuple of sample inputs uses (`torch._utils._rebuild_tensor_v2`, the storage classes,
`collections.OrderedDict`, ...), to NumPy; any other global is refused before anything is called,
so a crafted pickle cannot run code. Globals torch's own weights-only loader accepts but this one
does not implement (tensor subclasses, sparse or quantized tensors) raise `NeedsTorch`: there, and
for the legacy non-zip format, `load_weights_only` falls back to `torch.load(weights_only=True)`.
Every storage and every view is counted against the open's memory budget before it is made.
"""

from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError
from ._budget import ZIP_ERRORS, charge, read_member

TORCH_INSTALL = "pip install 'propscope[torch]'"

# torch's storage classes -> NumPy dtypes (bfloat16 has none: it is widened to float32 when viewed)
STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "UInt16Storage": "uint16", "UInt32Storage": "uint32",
    "UInt64Storage": "uint64", "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
}  # complex: a buffer of rotations (TorchScript reads it as a constant; a state dict refuses it in `to_numpy`)
MAX_PICKLE_BYTES = 64 * 2**20  # the pickle holds names and sizes only; the tensors' bytes are members
MAX_PICKLE_PLACES = 2**22  # the values of the tree a pickle spells out, each shared one counted every time


class NeedsTorch(Exception):
    """A global torch's weights-only loader allows but this reader does not implement."""


class Refused(Exception):
    """A global outside the weights-only set: loading it could run code."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


# Modules whose allow-listed globals torch's weights-only loader knows and we do not: worth a fallback.
_TORCH_KNOWN = ("torch", "collections", "builtins", "_codecs", "numpy")
_BUILTINS_TORCH_ALLOWS = frozenset({"set", "frozenset", "bytearray", "slice", "complex"})
# Read as what they are where a checkpoint's other contents are stood in for (`inert`): plain data constructors.
# Read as what they are where a checkpoint's other contents are stood in for (`inert`): containers of what the pickle
# has already made, their elements counted against the pickle's places (`_Counted`); scalars of a plain value
_CONTAINERS = {"set": set, "frozenset": frozenset, "dict": dict, "list": list, "tuple": tuple, "bytearray": bytearray,
               "bytes": bytes}
_SCALARS = {"int": int, "float": float, "bool": bool, "complex": complex, "slice": slice}
# Modules a checkpoint's data never comes from: a pickle naming one means to run something, and is refused outright
# even where other globals are stood in for (nothing would be called either way; the user is told what it tried).
_NEVER_DATA = frozenset({
    "os", "posix", "nt", "subprocess", "sys", "builtins", "__builtin__", "shutil", "socket", "importlib", "runpy",
    "pickle", "_pickle", "marshal", "types", "code", "codeop", "ctypes", "pty", "webbrowser", "operator",
    "functools", "io", "_io", "multiprocessing", "threading", "_thread", "signal", "asyncio", "tempfile", "glob",
    "platform", "urllib", "http", "ftplib", "smtplib", "telnetlib", "timeit", "pdb", "bdb", "cProfile", "profile",
    "trace", "site", "zipimport", "pkgutil", "inspect", "posixpath", "ntpath", "codecs", "_codecs", "eval", "exec",
    "dill", "cloudpickle", "joblib", "torch", "numpy", "_operator", "_posixsubprocess", "select", "resource",
})
# torch's own module classes, optimizers and their kin: a whole pickled model's or optimizer's class, stood in for
# (never torch's tensor rebuilding, which only torch may do)
_TORCH_STAND_INS = ("torch.nn.", "torch.optim.", "torch.ao.", "torch.fx.", "torch.utils.data.")


class _StorageType:
    """`torch.FloatStorage` as the pickle names it: only its dtype matters."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("BUILD on a storage type")


class _Callable:
    """What a global the reader implements is handed to the pickle as: a call, and nothing a BUILD could write
    attributes onto (a plain function has a __dict__ that would outlive the load)."""

    __slots__ = ("call",)

    def __init__(self, call: Callable[..., Any]) -> None:
        self.call = call

    def __call__(self, *args: Any) -> Any:
        return self.call(*args)

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("BUILD on a function")


class _StateDict(OrderedDict[Any, Any]):
    """`collections.OrderedDict` as a state dict pickles it: BUILD sets `_metadata`, kept aside, never run."""

    def __setstate__(self, state: Any) -> None:
        self.metadata = state


class Tensor:
    """A rebuilt tensor: a NumPy array (bfloat16 and float16 widened to float32), its origin's dtype name."""

    __slots__ = ("array", "dtype")

    def __init__(self, array: np.ndarray, dtype: str) -> None:
        self.array, self.dtype = array, dtype

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("BUILD on a tensor (a tensor subclass)")


class Inert:
    """What a global outside the weights-only set is read as where a checkpoint's other contents are stood in for
    (`load_weights_only(..., stand_ins=...)`): a class of this name, made here, never the one the pickle names, so
    nothing of the file is imported or called. An instance keeps what the pickle hands it (constructor arguments,
    BUILD's state, SETITEMS' and APPENDS' values), so that the tensors inside (a whole pickled model's parameters)
    can still be found."""

    pickled_as = ""
    args: tuple[Any, ...]
    state: Any
    mapping: dict[Any, Any]
    items: list[Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:  # NEWOBJ makes one without calling __init__
        self = super().__new__(cls)
        self.args, self.state, self.mapping, self.items = args, None, {}, []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.mapping[key] = value

    def append(self, value: Any) -> None:
        self.items.append(value)

    def extend(self, values: Any) -> None:
        self.items.extend(values)


class Pickled:
    """An `Inert` as `plain` hands it on: the name the pickle gave its class, and its contents made plain."""

    __slots__ = ("args", "items", "mapping", "name", "state")

    def __init__(self, name: str, args: Any, state: Any, mapping: Any, items: Any) -> None:
        self.name, self.args, self.state, self.mapping, self.items = name, args, state, mapping, items

    def __repr__(self) -> str:
        return f"<pickled {self.name}>"


def _scalar(kind: type) -> Callable[..., Any]:
    """`int(x)` and kin on a number or a short string only (`int("9" * 10**6)` is a long computation)."""
    def make(*args: Any) -> Any:
        if len(args) > 3 or any(not isinstance(a, int | float | bool | complex | str | None) or
                                (isinstance(a, str) and len(a) > 100) for a in args):
            raise pickle.UnpicklingError(f"{kind.__name__} of something other than a plain number")
        return kind(*args)

    return make


def _default_dict(*_factory: Any) -> dict[Any, Any]:
    """`collections.defaultdict(factory)` as data: its items, without the factory (nothing of it is called)."""
    return {}


def _script_list(values: Any, *_type: Any) -> Any:
    """TorchScript's `build_intlist` and kin (and `restore_type_tag`): the value as pickled, its type tag dropped."""
    return values


_SCRIPT_LISTS = {name: _script_list for name in ("build_intlist", "build_doublelist", "build_boollist",
                                                 "build_tensorlist", "build_genericlist", "restore_type_tag")}


def _encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode`, as protocol 2 pickles bytes; only text encodings."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise pickle.UnpicklingError("_codecs.encode of something other than text")
    return text.encode(encoding)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, storages: Callable[[str, str, int], _Storage], where: str,
                 stand_ins: set[str] | None = None) -> None:
        super().__init__(io.BytesIO(data))
        self.storages, self.where = storages, where
        self.stand_ins = stand_ins  # None: refuse what is not a tensor's; a set: stand in for it, named here
        self._types: dict[str, type[Inert]] = {}
        self._made = 0  # elements the containers handed to the pickle have made (`_counted`)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol 2 spells Python 3's names as Python 2's
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module == "torch._utils":
            known: dict[str, Callable[..., Any]] = {
                "_rebuild_tensor_v2": self._rebuild_tensor, "_rebuild_parameter": _rebuild_parameter,
                "_rebuild_parameter_with_state": _rebuild_parameter}
            if name in known:
                return _Callable(known[name])
        elif module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        elif module == "collections" and name == "OrderedDict":
            return _StateDict
        elif module == "_codecs" and name == "encode":
            return _Callable(self._encode)
        top = module.split(".")[0]
        if module == "builtins" and name in _BUILTINS_TORCH_ALLOWS:  # read here, not by torch: its bytearray(N) would
            # allocate N bytes for a 20-byte pickle
            return _Callable(self._counted(_CONTAINERS[name]) if name in _CONTAINERS else _scalar(_SCALARS[name]))
        if self.stand_ins is not None:
            found = self._stand_in(module, name, top)
            if found is not None:
                return found
        if top in _TORCH_KNOWN and (top != "builtins" or name in _BUILTINS_TORCH_ALLOWS):
            raise NeedsTorch(f"{module}.{name}")
        raise Refused(f"{module}.{name}")

    def _encode(self, text: str, encoding: str = "latin1") -> bytes:
        """`_codecs.encode` (protocol 2's bytes), its length counted as `_counted` counts a container's."""
        self._made += len(text) // 64 + 1 if isinstance(text, str) else 1
        self._check_made()
        return _encode(text, encoding)

    def _check_made(self) -> None:
        if self._made > MAX_PICKLE_PLACES:
            raise ModelFormatError(f"{self.where}: the pickle makes more than {MAX_PICKLE_PLACES} values "
                                   "(the same objects copied over and over); refused")

    def _counted(self, container: type) -> Callable[..., Any]:
        """`container(items)` with its elements counted against MAX_PICKLE_PLACES as it is made: a pickle that copies
        one memoised list over and over (`list(big)` a million times) is refused before it has made them all."""
        def make(*args: Any) -> Any:
            if len(args) > 1 or (args and (not hasattr(args[0], "__len__") or isinstance(args[0], Inert))):
                raise pickle.UnpicklingError(f"{container.__name__} of something other than a container")
            size = len(args[0]) if args else 0
            self._made += (size // 64 if isinstance(args[0], bytes | bytearray | str) else size) + 1 if args else 1
            self._check_made()
            return container(*args)

        return make

    def _stand_in(self, module: str, name: str, top: str) -> Any:
        """What a checkpoint's non-tensor global is read as (None: not stood in for; refused or left to torch)."""
        if module == "builtins" and name in _CONTAINERS:
            return _Callable(self._counted(_CONTAINERS[name]))
        if module == "builtins" and name in _SCALARS:
            return _Callable(_scalar(_SCALARS[name]))
        if module == "collections" and name == "defaultdict":
            return _Callable(_default_dict)
        if module == "torch.jit._pickle" and name in _SCRIPT_LISTS:  # TorchScript's typed lists: the list itself
            return _Callable(_SCRIPT_LISTS[name])
        if module.startswith(_TORCH_STAND_INS) or (top == "numpy" and name in ("scalar", "dtype", "_reconstruct",
                                                                                "ndarray")):
            pass  # a torch module's or optimizer's class, a NumPy scalar's: data around the weights
        elif top in _NEVER_DATA or not re.fullmatch(r"[\w.]{1,200}", f"{module}.{name}"):
            return None
        key = f"{module}.{name}"
        if key not in self._types:
            if len(self._types) >= 10_000:
                raise pickle.UnpicklingError("a pickle naming more than 10,000 classes")
            self._types[key] = type(name if name.isidentifier() else "Inert", (Inert,), {"pickled_as": key})
            assert self.stand_ins is not None
            self.stand_ins.add(key)
        return self._types[key]

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"an unknown persistent id {str(pid)[:60]}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str) or not isinstance(numel, int) \
                or numel < 0:
            raise pickle.UnpicklingError("a malformed storage reference")
        return self.storages(key, kind.dtype, numel)

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                        hooks: Any = None, metadata: Any = None) -> Tensor:
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor without a storage")
        return storage.view(offset, size, stride, self.where)


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, state: Any = None) -> Any:
    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError("a parameter that is not a tensor")
    return data


class _Storage:
    """One storage's flat array; views of it become arrays of their own."""

    __slots__ = ("dtype", "flat")

    def __init__(self, flat: np.ndarray, dtype: str) -> None:
        self.flat, self.dtype = flat, dtype

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError("BUILD on a storage")

    def view(self, offset: Any, size: Any, stride: Any, where: str) -> Tensor:
        if not (isinstance(offset, int) and isinstance(size, tuple | list) and isinstance(stride, tuple | list)
                and all(isinstance(v, int) for v in (*size, *stride)) and len(size) == len(stride) <= 16):
            raise pickle.UnpicklingError("a tensor with a malformed size, stride or offset")
        shape, strides = tuple(size), tuple(stride)
        if offset < 0 or any(d < 0 for d in shape) or any(s < 0 for s in strides):
            raise pickle.UnpicklingError(f"a tensor with negative sizes {shape} or strides {strides}")
        count = math.prod(shape)
        item = 4 if self.dtype in ("bfloat16", "float16") else np.dtype(self.dtype).itemsize
        if count:
            extent = offset + 1 + sum((d - 1) * s for d, s in zip(shape, strides, strict=True))
            if extent > len(self.flat):
                raise pickle.UnpicklingError(f"a tensor of shape {shape} reaching element {extent} of a storage "
                                             f"of {len(self.flat)}")
        charge(count * item, f"a tensor of shape {shape}", where)
        if count == 0:
            out = np.zeros(shape, dtype=np.float32 if item == 4 and self.dtype != "float32" else self.flat.dtype)
        else:
            view = np.lib.stride_tricks.as_strided(self.flat[offset:], shape=shape,
                                                   strides=tuple(s * self.flat.itemsize for s in strides))
            out = np.array(view, dtype=self.flat.dtype.newbyteorder("="))
        if self.dtype == "bfloat16":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        elif self.dtype == "float16":
            out = out.astype(np.float32)
        return Tensor(out, self.dtype)


def _flat(data: bytes, dtype: str, numel: int, big_endian: bool, where: str, what: str) -> np.ndarray:
    raw = "<u2" if dtype == "bfloat16" else ("u1" if dtype == "bool" else dtype)
    npdtype = np.dtype(raw).newbyteorder(">" if big_endian else "<")
    if len(data) < numel * npdtype.itemsize:
        raise ModelFormatError(f"{where}: {what} holds {len(data)} bytes, less than its {numel} {dtype} values")
    flat = np.frombuffer(data, dtype=npdtype, count=numel)
    return flat.view(bool) if dtype == "bool" else flat


def is_torch_zip(data: bytes) -> bool:
    return data[:4] == b"PK\x03\x04"


def load_torch_zip(data: bytes | zipfile.ZipFile, where: str, what: str, stand_ins: set[str] | None = None) -> Any:
    """A `torch.save` zip's object with every tensor as a `Tensor` (NumPy inside); torch is never imported.

    Raises `Refused` for a global that could run code, `NeedsTorch` for one only torch can rebuild. With `stand_ins`
    (a set), a checkpoint's other globals (an `argparse.Namespace` of settings, a whole pickled model's classes)
    are read as `Inert` stand-ins instead, and their names added to it.
    """
    zf = data if isinstance(data, zipfile.ZipFile) else _open_zip(data, where, what)
    infos = {i.filename: i for i in zf.infolist()}
    pkl = [n for n in infos if n.endswith("/data.pkl") or n == "data.pkl"]
    if len(pkl) != 1:
        raise ModelFormatError(f"{where}: {what} is a zip archive but not a torch.save file (no single data.pkl)")
    root = pkl[0][: -len("data.pkl")]
    order = infos.get(f"{root}byteorder")
    big = order is not None and read_member(zf, order, where, 16).strip() == b"big"
    storages: dict[str, _Storage] = {}

    def storage(key: str, dtype: str, numel: int) -> _Storage:
        if key not in storages:
            if not re.fullmatch(r"[0-9A-Za-z_]{1,64}", key):
                raise pickle.UnpicklingError(f"a storage key {key[:40]!r} that is not a name")
            info = infos.get(f"{root}data/{key}")
            if info is None:
                raise ModelFormatError(f"{where}: {what} has no storage {key!r}")
            flat = _flat(read_member(zf, info, where), dtype, numel, big, where, f"storage {key!r}")
            storages[key] = _Storage(flat, dtype)
        found = storages[key]
        if found.dtype != dtype:
            raise pickle.UnpicklingError(f"storage {key!r} used as {found.dtype} and {dtype}")
        return found

    body = read_member(zf, infos[pkl[0]], where, MAX_PICKLE_BYTES)
    try:
        return _Unpickler(body, storage, where, stand_ins).load()
    except (Refused, NeedsTorch, ModelFormatError):
        raise
    except RecursionError:
        raise ModelFormatError(f"{where}: {what} is nested too deeply to read") from None
    except Exception as exc:  # a broken pickle raises anything from struct.error to TypeError: all mean "broken"
        # a damaged length field makes Python try a huge allocation, whose MemoryError says nothing
        said = str(exc)[:100] or ("a length in it asks for more memory than there is" if isinstance(exc, MemoryError)
                                  else "")
        raise ModelFormatError(f"{where}: {what} is not a readable torch.save pickle "
                               f"({type(exc).__name__}{': ' + said if said else ''})") from None


def _open_zip(data: bytes, where: str, what: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except ZIP_ERRORS as exc:
        raise ModelFormatError(f"{where}: {what} is a damaged zip archive ({str(exc)[:100]})") from None


def plain(value: Any, where: str = "the file", what: str = "the pickle", origins: dict[int, str] | None = None) -> Any:
    """Tensors as NumPy arrays, state dicts as plain dicts, all the way down.

    A pickle's memo lets a 100-byte file make a list hold one object twice, that one the next twice, and
    so on: the tree it spells has 2^depth leaves. Each shared container is converted once (the result
    shares it too) while the size of the tree it spells is added up, and a file whose tree passes
    MAX_PICKLE_PLACES is refused in one line, before anyone walks it for hours.
    """
    done: dict[int, tuple[Any, int]] = {}

    def convert(item: Any) -> tuple[Any, int]:
        if isinstance(item, Tensor):
            if origins is not None and item.dtype != item.array.dtype.name:  # float16, bfloat16: widened to read
                origins[id(item.array)] = item.dtype
            return item.array, 1
        if not isinstance(item, dict | list | tuple | Inert):
            return item, 1
        key = id(item)
        if key not in done:
            if isinstance(item, Inert):
                parts = [convert(v) for v in (item.args, item.state, item.mapping, item.items)]
                out: Any = Pickled(item.pickled_as, *(v for v, _ in parts))
                places = 1 + sum(n for _, n in parts)
            elif isinstance(item, dict):
                pairs = [(k, convert(v)) for k, v in item.items()]
                out = {k: v for k, (v, _) in pairs}
                places = 1 + sum(n for _, (_, n) in pairs)
            else:
                parts = [convert(v) for v in item]
                out = [v for v, _ in parts] if isinstance(item, list) else tuple(v for v, _ in parts)
                places = 1 + sum(n for _, n in parts)
            if places > MAX_PICKLE_PLACES:
                raise ModelFormatError(f"{where}: {what} spells out more than {MAX_PICKLE_PLACES} nested values "
                                       "(the same objects referenced over and over); refused")
            done[key] = out, places
        return done[key]

    return convert(value)[0]


def load_weights_only(data: bytes | Path, where: str, what: str, torch_fallback: bool = True,
                      stand_ins: set[str] | None = None, origins: dict[int, str] | None = None) -> Any:
    """A pickle (member bytes, or a file) as plain Python with NumPy arrays for tensors: torch-free for
    torch.save zips, `torch.load(weights_only=True)` only for what the restricted reader leaves to it. With
    `stand_ins` (a set), globals around the weights are read as `Pickled` stand-ins, named in the set (see
    `load_torch_zip`)."""
    if isinstance(data, Path):
        return _load_file(data, where, what, torch_fallback, stand_ins, origins)
    if is_torch_zip(data):
        with _restricted(where, what, torch_fallback):
            return plain(load_torch_zip(data, where, what, stand_ins), where, what, origins)
    return torch_load(data, where, what)


def _load_file(path: Path, where: str, what: str, torch_fallback: bool, stand_ins: set[str] | None = None,
               origins: dict[int, str] | None = None) -> Any:
    """A torch.save file read member by member from disk (never the whole file in memory at once)."""
    if zipfile.is_zipfile(path):
        with _restricted(where, what, torch_fallback):
            try:
                with zipfile.ZipFile(path) as zf:
                    return plain(load_torch_zip(zf, where, what, stand_ins), where, what, origins)
            except RecursionError:
                raise  # a RuntimeError, but not a damaged zip: said by _restricted
            except ZIP_ERRORS as exc:
                raise ModelFormatError(f"{where}: a damaged zip archive ({str(exc)[:100]})") from None
    size = path.stat().st_size
    charge(2 * size, what, where)  # torch's loader holds the bytes and the tensors made from them
    return torch_load(path.read_bytes(), where, what)


@contextmanager
def _restricted(where: str, what: str, torch_fallback: bool) -> Iterator[None]:
    """The restricted reader's refusals in one line each; a global only torch can rebuild is passed over
    (the caller goes on to torch's own weights-only loader) where `torch_fallback` allows it."""
    try:
        yield
    except RecursionError:
        raise ModelFormatError(f"{where}: {what} is nested too deeply to read") from None
    except Refused as exc:
        raise ModelFormatError(f"{where}: {what} is a pickle that calls {exc.name}, not plain tensors; "
                               "refused, since loading it could run code") from None
    except NeedsTorch as exc:
        if not torch_fallback:
            raise ModelFormatError(f"{where}: {what} holds {exc}, which propscope reads only with PyTorch") from None


def torch_load(data: bytes, where: str, what: str) -> Any:
    """torch's own weights-only unpickler (never the full one), its warnings kept off the terminal."""
    try:
        import torch
    except ImportError:
        raise ModelFormatError(f"{where}: {what} is a pickle and reading it safely needs PyTorch: "
                               f"{TORCH_INSTALL}") from None
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # the unpickler raises many kinds; every one means "not plain tensors"
        text = str(exc)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:
            raise ModelFormatError(f"{where}: {what} is a pickle that calls {found.group(1)}, not plain tensors; "
                                   "refused, since loading it could run code") from None
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        useful = [ln for ln in lines if not ln.startswith(("Weights only load failed", "Check the documentation"))]
        reason = (useful or lines or [type(exc).__name__])[0]
        raise ModelFormatError(f"{where}: {what} cannot be read as plain tensors ({reason[:160]})") from None


def is_tensor(value: Any) -> bool:
    """A NumPy array from the restricted reader, or a torch tensor from the fallback."""
    if isinstance(value, np.ndarray):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def to_numpy(value: Any, where: str, what: str) -> np.ndarray:
    """A tensor from either loader as NumPy (bfloat16 and half widened to float32); torch only for its own."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise ModelFormatError(f"{where}: {what} holds {value.dtype} values, which propscope cannot use")
        return value.astype(np.float32) if value.dtype == np.float16 else value
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(value, torch.Tensor):
        raise ModelFormatError(f"{where}: {what} is a {type(value).__name__}, not a tensor")
    if value.is_complex() or value.is_quantized or value.layout != torch.strided:
        raise ModelFormatError(f"{where}: {what} is a {value.dtype} {value.layout} tensor, which propscope cannot use")
    t = value.detach().cpu()
    charge(t.numel() * max(4, t.element_size()), what, where)
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.float()
    try:
        return t.numpy().copy()
    except TypeError:  # float8, 4-bit, unsigned 16-64 bit: types NumPy has no array for
        raise ModelFormatError(f"{where}: {what} holds {str(t.dtype).removeprefix('torch.')} values, which propscope "
                               "cannot use (it reads floats of 16 to 64 bits and integers)") from None

"""Writers for the hostile-file corpus and the fuzzer, torch-free.

`torch_save_zip` writes a `torch.save` zip by hand (protocol-2 pickle opcodes, one member per storage),
so tests of `.pt` files and of a `.pt2`'s sample inputs run without torch; `evil_pickle` writes one that
would run a command. `patch_zip` rewrites members of a zip; `claim_size` makes a member claim a size it
does not hold; `utf8_flagged_junk_name` gives a member a name that is not UTF-8 although flagged so.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SEEDS = Path(__file__).parent / "seeds"
MARKER = "PROPSCOPE_PWNED"
STORAGE_CLASS = {"float32": "FloatStorage", "float64": "DoubleStorage", "int64": "LongStorage", "int32": "IntStorage",
                 "uint8": "ByteStorage", "bool": "BoolStorage", "float16": "HalfStorage", "int8": "CharStorage"}


# -- pickles, opcode by opcode ------------------------------------------------------------------------
def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    if 0 <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _empty_ordered_dict() -> bytes:
    return _global("collections", "OrderedDict") + b")R"


def tensor_opcodes(key: str, dtype: str, numel: int, shape: tuple[int, ...], strides: tuple[int, ...],
                   offset: int = 0) -> bytes:
    """`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`."""
    storage = _tuple([_str("storage"), _global("torch", STORAGE_CLASS[dtype]), _str(key), _str("cpu"), _int(numel)])
    args = _tuple([storage + b"Q", _int(offset), _tuple([_int(d) for d in shape]),
                   _tuple([_int(s) for s in strides]), b"\x89", _empty_ordered_dict()])
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def torch_save_zip(tensors: dict[str, np.ndarray], root: str = "archive",
                   views: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], int]] | None = None,
                   body: bytes | None = None) -> bytes:
    """A `torch.save` zip of an OrderedDict of contiguous tensors (plus `views`: name -> (storage name,
    shape, strides, offset) of one of them); `body` replaces the pickle entirely."""
    keys = {name: str(i) for i, name in enumerate(tensors)}
    items = []
    for name, arr in tensors.items():
        items.append(_str(name) + tensor_opcodes(keys[name], arr.dtype.name, arr.size, arr.shape,
                                                 tuple(s // arr.itemsize for s in arr.strides) if arr.ndim else ()))
    for name, (source, shape, strides, offset) in (views or {}).items():
        arr = tensors[source]
        items.append(_str(name) + tensor_opcodes(keys[source], arr.dtype.name, arr.size, shape, strides, offset))
    pickle = body if body is not None else b"\x80\x02" + _empty_ordered_dict() + b"(" + b"".join(items) + b"u."
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{root}/data.pkl", pickle)
        zf.writestr(f"{root}/byteorder", "little")
        for name, arr in tensors.items():
            zf.writestr(f"{root}/data/{keys[name]}", np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"))
                        .tobytes())
        zf.writestr(f"{root}/version", "3\n")
    return buf.getvalue()


def evil_pickle(command: str) -> bytes:
    """A pickle whose loading calls os.system(command) (GLOBAL posix system + REDUCE)."""
    return b"\x80\x02" + _global("posix", "system") + _tuple([_str(command)]) + b"R."


def evil_torch_zip(command: str) -> bytes:
    return torch_save_zip({}, body=evil_pickle(command))


# -- zips ------------------------------------------------------------------------------------------------
def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def patch_zip(data: bytes, change: Callable[[str, bytes], bytes | None], extra: dict[str, bytes] | None = None,
              compression: int = zipfile.ZIP_STORED) -> bytes:
    """A copy of a zip with members changed (None drops one) and members added (named from the root)."""
    members = read_zip(data)
    root = next(iter(members)).split("/")[0] + "/" if "/" in next(iter(members)) else ""
    out: dict[str, bytes] = {}
    for name, body in members.items():
        changed = change(name, body)
        if changed is not None:
            out[name] = changed
    for name, body in (extra or {}).items():
        out[root + name] = body
    return write_zip(out, compression)


def edit_json_member(data: bytes, suffix: str, edit: Callable[[Any], Any]) -> bytes:
    """A zip whose JSON member ending in `suffix` is edited (`edit` returns the new value, or changes it)."""
    def change(name: str, body: bytes) -> bytes:
        if not name.endswith(suffix):
            return body
        value = json.loads(body)
        new = edit(value)
        return json.dumps(value if new is None else new).encode()

    return patch_zip(data, change)


def claim_size(data: bytes, member_suffix: str, size: int) -> bytes:
    """The zip with one stored member's uncompressed size field set to `size` (local and central headers)."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(member_suffix))
    struct.pack_into("<I", out, info.header_offset + 22, min(size, 0xFFFFFFFF))
    central = data.find(b"PK\x01\x02")
    while central != -1:
        name_len = struct.unpack_from("<H", data, central + 28)[0]
        name = data[central + 46: central + 46 + name_len].decode("utf-8", "replace")
        if name == info.filename:
            struct.pack_into("<I", out, central + 24, min(size, 0xFFFFFFFF))
        central = data.find(b"PK\x01\x02", central + 4)
    return bytes(out)


def utf8_flagged_junk_name(data: bytes, member_suffix: str) -> bytes:
    """The zip with one member's name replaced by bytes that are not UTF-8, its UTF-8 flag set."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(member_suffix))
    raw = info.filename.encode()
    junk = bytes([0xFF, 0xFE] * (len(raw) // 2 + 1))[: len(raw)]
    out = bytearray(data.replace(raw, junk))
    pos = out.find(b"PK\x03\x04")
    while pos != -1:
        struct.pack_into("<H", out, pos + 6, struct.unpack_from("<H", out, pos + 6)[0] | 0x800)
        pos = out.find(b"PK\x03\x04", pos + 4)
    pos = out.find(b"PK\x01\x02")
    while pos != -1:
        struct.pack_into("<H", out, pos + 8, struct.unpack_from("<H", out, pos + 8)[0] | 0x800)
        pos = out.find(b"PK\x01\x02", pos + 4)
    return bytes(out)


def deflate_bomb_member(name: str, nbytes: int) -> tuple[zipfile.ZipInfo, bytes]:
    """A deflated member of `nbytes` zeros, compressed in chunks (a few hundred KB on disk)."""
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(2**20)
    parts, crc = [], 0
    for _ in range(nbytes // len(chunk)):
        parts.append(comp.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    parts.append(comp.flush())
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    return info, b"".join(parts) + struct.pack("<I", crc)  # the CRC rides along for the writer below


def write_zip_with_bomb(members: dict[str, bytes], bomb_name: str, nbytes: int) -> bytes:
    """A zip with `members` stored and one member of `nbytes` zeros deflated, written header by header."""
    _, packed = deflate_bomb_member(bomb_name, nbytes)
    compressed, crc = packed[:-4], struct.unpack("<I", packed[-4:])[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    body = buf.getvalue()
    end_at = body.rfind(b"PK\x05\x06")  # the end record says where the central directory starts
    cd_start = struct.unpack_from("<I", body, end_at + 16)[0]
    head, central, end = body[:cd_start], body[cd_start:end_at], body[end_at:]
    name = bomb_name.encode()
    offset = len(head)
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(compressed), nbytes, len(name), 0)
    cent = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(compressed), nbytes,
                       len(name), 0, 0, 0, 0, 0, offset)
    new_central = central + cent + name
    count = struct.unpack_from("<H", end, 10)[0] + 1
    new_end = bytearray(end)
    struct.pack_into("<HHIIH", new_end, 8, count, count, len(new_central), offset + 30 + len(name) + len(compressed),
                     0)
    return head + local + name + compressed + new_central + bytes(new_end)


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def seed(name: str) -> bytes:
    return (SEEDS / name).read_bytes()

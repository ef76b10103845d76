"""ONNX's protobuf messages read straight from the file's bytes: the part of `onnx.proto` the reader uses.

Netron reads ONNX with a protobuf reader of its own; so does propscope, for three reasons. Opening an ONNX file
needs no `onnx` package (importing it costs ~50 ms of a small file's ~0.4 s open, and it is an optional
dependency); a tensor's `raw_data` is a view of the file's bytes until the reader copies it into its array once
(protobuf's parse copies every tensor into the message and again on each read of the field), so a big model
costs about its size once; and what a hostile file can make is bounded here: lengths are checked against the
bytes, varints against ten bytes, the objects made against the open's memory budget, and the repeated numbers of
a tensor come out as one NumPy array instead of a Python object each. Nesting is bounded by the schema, except
for subgraphs (an attribute's graph: control flow, the only recursive messages), which are read, and charged,
as the main graph is, to at most MAX_GRAPH_DEPTH graphs within graphs (a file nesting them deeper is refused,
so a hostile file cannot exhaust Python's stack).

Each message class names its fields by number (`FIELDS`: number -> (name, kind, message class)); a field the
file does not set reads as protobuf's default (0, "", an empty list, or an empty message), and `HasField` says
whether it was set, as on a protobuf message. Unknown fields are skipped, as protobuf skips them. The field
numbers are those of `onnx.proto` (IR version 10); `tests/test_onnx_proto.py` checks each against the `onnx`
package's own descriptors and opens every model of ONNX's backend node tests both ways (this reader, and
`onnx`'s parse) to the same graph.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import numpy as np

from ..errors import ModelFormatError

# wire types
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5
# field kinds
INT, FLOAT, STRING, BYTES, RAW, MESSAGE, INTS, UINTS, FLOATS, DOUBLES, STRINGS, BYTES_LIST, MESSAGES = range(13)
_REPEATED = frozenset({INTS, UINTS, FLOATS, DOUBLES, STRINGS, BYTES_LIST, MESSAGES})
_FIXED_WIDTH: dict[int, np.dtype[Any]] = {FLOATS: np.dtype("<f4"), DOUBLES: np.dtype("<f8")}
SHORT_RUN = 64  # a packed run of varints up to this many values is a list (dims, an attribute), longer an array
OBJECT_BYTES = 128  # what one message or list item costs in memory, charged against the open's budget
# graphs within graphs, the model's own the first: exporters nest a few (an If in a Loop's body); each level costs
# four Python frames of parse, so this keeps a hostile file far from the interpreter's recursion limit
MAX_GRAPH_DEPTH = 16
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


Schema = dict[int, tuple[str, int, Any]]  # field number -> (name, kind, message class or None)


class DecodeError(ModelFormatError):
    """The bytes are not a well-formed protobuf message."""


class Message:
    """A protobuf message read from bytes. Fields the file sets are instance attributes; the others read as the
    class's defaults (0, "", an empty tuple, or an empty message, shared and never written)."""

    FIELDS: ClassVar[Schema] = {}
    # tag (field number and wire type) -> (name, what parse does, message class) for text, messages and numbers
    COMMON_TAGS: ClassVar[dict[int, tuple[str, int, Any]]] = {}
    # a message that can hold itself (GraphProto, through a node's attribute): read by _other_field, which
    # counts how deep it is
    RECURSIVE: ClassVar[bool] = False

    def __init_subclass__(cls) -> None:
        cls.compile()

    @classmethod
    def compile(cls) -> None:
        """The parse tables and defaults from FIELDS (again after FIELDS gains a field of a later class)."""
        actions = {STRING: (_LENGTH, _TEXT), STRINGS: (_LENGTH, _TEXTS), MESSAGE: (_LENGTH, _CHILD),
                   MESSAGES: (_LENGTH, _CHILDREN), INT: (_VARINT, _NUMBER)}
        cls.COMMON_TAGS = {number << 3 | actions[kind][0]: (name, actions[kind][1], sub)
                           for number, (name, kind, sub) in cls.FIELDS.items()
                           if kind in actions and not (sub is not None and sub.RECURSIVE)}
        for name, kind, sub in cls.FIELDS.values():
            default: Any = () if kind in _REPEATED else 0.0 if kind == FLOAT else "" if kind == STRING else \
                b"" if kind in (BYTES, RAW) else 0 if kind == INT else None
            if kind == MESSAGE:
                assert sub is not None
                default = sub()
            setattr(cls, name, default)

    def HasField(self, name: str) -> bool:  # protobuf's name: the reader calls it on either kind
        return name in self.__dict__


class _Budget:
    """Counts the Python objects a parse makes, and charges them to the open's memory budget in batches: a file
    of empty messages or unpacked numbers makes some 100 bytes of objects per 2 bytes read."""

    __slots__ = ("charge", "depth", "made")
    BATCH = 1 << 16

    def __init__(self, charge: Any) -> None:
        self.charge, self.made = charge, 0
        self.depth = 0  # graphs being read, one inside the other

    def add(self, count: int) -> None:
        self.made += count
        if self.made >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        if self.charge is not None:
            self.charge(self.made * OBJECT_BYTES)
        self.made = 0


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("a number is longer than ten bytes")
    raise DecodeError("a number runs past the end of its message")


def _signed(value: int) -> int:
    """A varint as int64 (negative numbers are written as ten bytes of two's complement)."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


# what parse does with a field whose tag it knows: most fields of most messages (the rest go to _other_field)
_TEXT, _TEXTS, _CHILD, _CHILDREN, _NUMBER = range(5)


def parse(cls: type[Message], buf: bytes, start: int, end: int, budget: _Budget) -> Message:
    """Message `cls` from `buf[start:end]`."""
    msg = cls()
    values = msg.__dict__
    common = cls.COMMON_TAGS
    made = 1
    pos = start
    while pos < end:
        tag = buf[pos]
        if tag < 0x80:  # a one-byte tag: field numbers up to 15 (almost every field)
            pos += 1
        else:
            tag, pos = _varint(buf, pos, end)
        known = common.get(tag)
        if known is None:
            pos, more = _other_field(cls, tag, buf, pos, end, values, budget)
            made += more
            continue
        name, action, sub = known
        size = buf[pos] if pos < end else 0x80  # a length or a number: one byte, mostly
        if size < 0x80:
            pos += 1
        else:
            size, pos = _varint(buf, pos, end)
        if action == _NUMBER:
            values[name] = size - (1 << 64) if size >= 1 << 63 else size
            continue
        stop = pos + size
        if stop > end:
            raise DecodeError(f"a field of {cls.__name__} claims {size} bytes where {end - pos} are left")
        if action <= _TEXTS:
            try:
                text = buf[pos:stop].decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError(f"{name} in {cls.__name__} is not valid UTF-8 text") from None
            if action == _TEXT:
                values[name] = text
            else:
                made += 1
                run = values.get(name)  # not setdefault: that makes an empty list on every call
                if run is None:
                    values[name] = [text]
                else:
                    run.append(text)
        elif action == _CHILD:
            values[name] = parse(sub, buf, pos, stop, budget)
        else:
            child = parse(sub, buf, pos, stop, budget)
            run = values.get(name)
            if run is None:
                values[name] = [child]
            else:
                run.append(child)
        pos = stop
    if pos != end:
        raise DecodeError(f"the last field of {cls.__name__} runs past the end of its message")
    budget.made += made  # budget.add, inlined: once per message
    if budget.made >= _Budget.BATCH:
        budget.flush()
    return msg


def _other_field(cls: type[Message], tag: int, buf: bytes, pos: int, end: int, values: dict[str, Any],
                 budget: _Budget) -> tuple[int, int]:
    """A field `parse` does not handle itself: numbers, bytes, floats, packed runs, unknown fields (skipped) and
    wrong wire types (refused). Returns where the field ends and how many objects it made."""
    number, wire = tag >> 3, tag & 7
    spec = cls.FIELDS.get(number)
    name, kind = (spec[0], spec[1]) if spec is not None else ("", -1)
    if wire == _VARINT:
        value, pos = _varint(buf, pos, end)
        if kind in (INTS, UINTS):
            _more(values, name, _signed(value) if kind == INTS else value)
            return pos, 1
        if spec is not None and kind != INT:
            raise DecodeError(f"{name} in {cls.__name__} has the wrong wire type")
        return pos, 0
    if wire in (_FIXED32, _FIXED64):
        width = 4 if wire == _FIXED32 else 8
        if pos + width > end:
            raise DecodeError(f"a field of {cls.__name__} runs past the end of its message")
        if spec is None:
            return pos + width, 0
        if wire == _FIXED32 and kind == FLOAT:
            values[name] = _F32.unpack_from(buf, pos)[0]
            return pos + width, 0
        if (wire, kind) in ((_FIXED32, FLOATS), (_FIXED64, DOUBLES)):
            _more(values, name, (_F32 if width == 4 else _F64).unpack_from(buf, pos)[0])
            return pos + width, 1
        raise DecodeError(f"{name} in {cls.__name__} has the wrong wire type")
    if wire != _LENGTH:  # 3 and 4 (groups, long deprecated), 6 and 7 (none)
        raise DecodeError(f"a field of {cls.__name__} has wire type {wire}, which ONNX files do not use")
    length, pos = _varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise DecodeError(f"a field of {cls.__name__} claims {length} bytes where {end - pos} are left")
    if spec is None:
        return stop, 0
    if kind == RAW:  # a tensor's bytes: a view, copied once into its array by the reader
        values[name] = memoryview(buf)[pos:stop]
    elif kind in (MESSAGE, MESSAGES):  # a graph (the others are COMMON_TAGS'): the only recursion a file controls
        if budget.depth >= MAX_GRAPH_DEPTH:
            raise DecodeError(f"graphs are nested more than {MAX_GRAPH_DEPTH} deep (subgraphs of control flow)")
        budget.depth += 1
        child = parse(spec[2], buf, pos, stop, budget)
        budget.depth -= 1
        if kind == MESSAGE:
            values[name] = child
        else:
            values.setdefault(name, []).append(child)
            return stop, 1
    elif kind == BYTES:
        values[name] = buf[pos:stop]
    elif kind == BYTES_LIST:
        values.setdefault(name, []).append(buf[pos:stop])
        return stop, 1
    elif kind in _FIXED_WIDTH:
        values[name] = _packed_fixed(values.get(name), buf, pos, stop, _FIXED_WIDTH[kind], name)
    elif kind in (INTS, UINTS):
        values[name] = _packed_varints(values.get(name), buf, pos, stop, kind == INTS, budget)
    else:
        raise DecodeError(f"{name} in {cls.__name__} has the wrong wire type")
    return stop, 0


def _more(values: dict[str, Any], name: str, value: Any) -> None:
    """One more number of a repeated field written unpacked (one tag each, as older writers do)."""
    run = values.get(name)
    if run is None:
        values[name] = [value]
    elif isinstance(run, list):
        run.append(value)
    else:  # a packed run before it (an array)
        values[name] = [*run.tolist(), value]


def _packed_fixed(before: Any, buf: bytes, pos: int, stop: int, dtype: np.dtype, name: str) -> Any:
    """A packed run of floats or doubles (a tensor's float_data): one array, not an object per number."""
    if (stop - pos) % dtype.itemsize:
        raise DecodeError(f"the packed field {name} is not a whole number of {dtype.itemsize}-byte values")
    run = np.frombuffer(buf, dtype=dtype, count=(stop - pos) // dtype.itemsize, offset=pos).copy()
    return run if before is None or not len(before) else np.concatenate([np.asarray(before, dtype=dtype), run])


def _packed_varints(before: Any, buf: bytes, pos: int, stop: int, signed: bool, budget: _Budget) -> Any:
    """A packed run of varints: a list when short (dims, an attribute's ints), else one int64/uint64 array
    decoded all at once (a tensor's int64_data: millions of numbers would be millions of objects)."""
    raw = np.frombuffer(buf, dtype=np.uint8, count=stop - pos, offset=pos)
    last = np.flatnonzero(raw < 0x80)  # the last byte of each number
    if len(raw) and (not len(last) or last[-1] != len(raw) - 1):
        raise DecodeError("a packed number runs past the end of its field")
    if len(last) <= SHORT_RUN:
        numbers: list[int] = []
        at = pos
        while at < stop:
            value, at = _varint(buf, at, stop)
            numbers.append(_signed(value) if signed else value)
        budget.add(len(numbers))
        run: Any = numbers
    else:
        first = np.concatenate([[0], last[:-1] + 1])
        sizes = last - first + 1
        if sizes.max() > 10:
            raise DecodeError("a number is longer than ten bytes")
        out = np.zeros(len(last), dtype=np.uint64)
        for k in range(int(sizes.max())):  # the k-th 7-bit group of every number at least k+1 bytes long
            having = sizes > k
            out[having] |= (raw[first[having] + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        run = out.view(np.int64) if signed else out
    if before is None or not len(before):
        return run
    return [*(before.tolist() if isinstance(before, np.ndarray) else before),
            *(run.tolist() if isinstance(run, np.ndarray) else run)]


# -- the messages of onnx.proto that the reader uses ----------------------------------------------------------
class StringStringEntryProto(Message):
    FIELDS: ClassVar[Schema] = {1: ("key", STRING, None), 2: ("value", STRING, None)}


class OperatorSetIdProto(Message):
    FIELDS: ClassVar[Schema] = {1: ("domain", STRING, None), 2: ("version", INT, None)}


class TensorProto(Message):
    FIELDS: ClassVar[Schema] = {
        1: ("dims", INTS, None), 2: ("data_type", INT, None), 4: ("float_data", FLOATS, None),
        5: ("int32_data", INTS, None), 6: ("string_data", BYTES_LIST, None), 7: ("int64_data", INTS, None),
        8: ("name", STRING, None), 9: ("raw_data", RAW, None), 10: ("double_data", DOUBLES, None),
        11: ("uint64_data", UINTS, None), 13: ("external_data", MESSAGES, StringStringEntryProto),
        14: ("data_location", INT, None)}


class Dimension(Message):  # TensorShapeProto.Dimension
    FIELDS: ClassVar[Schema] = {1: ("dim_value", INT, None), 2: ("dim_param", STRING, None)}


class TensorShapeProto(Message):
    FIELDS: ClassVar[Schema] = {1: ("dim", MESSAGES, Dimension)}


class TensorTypeProto(Message):  # TypeProto.Tensor
    FIELDS: ClassVar[Schema] = {1: ("elem_type", INT, None), 2: ("shape", MESSAGE, TensorShapeProto)}


class TypeProto(Message):  # sequences, maps, optionals and sparse tensors are not tensors: left unread
    FIELDS: ClassVar[Schema] = {1: ("tensor_type", MESSAGE, TensorTypeProto)}


class ValueInfoProto(Message):  # metadata_props: where torch's exporter says what each initializer was in the module
    FIELDS: ClassVar[Schema] = {1: ("name", STRING, None), 2: ("type", MESSAGE, TypeProto),
                                4: ("metadata_props", MESSAGES, StringStringEntryProto)}


class AttributeProto(Message):  # subgraphs (g, graphs) join below GraphProto; sparse tensors, type protos: unread
    FIELDS: ClassVar[Schema] = {
        1: ("name", STRING, None), 2: ("f", FLOAT, None), 3: ("i", INT, None), 4: ("s", BYTES, None),
        5: ("t", MESSAGE, TensorProto), 7: ("floats", FLOATS, None), 8: ("ints", INTS, None),
        9: ("strings", BYTES_LIST, None), 10: ("tensors", MESSAGES, TensorProto), 20: ("type", INT, None),
        21: ("ref_attr_name", STRING, None)}


class NodeProto(Message):
    FIELDS: ClassVar[Schema] = {
        1: ("input", STRINGS, None), 2: ("output", STRINGS, None), 3: ("name", STRING, None),
        4: ("op_type", STRING, None), 5: ("attribute", MESSAGES, AttributeProto), 7: ("domain", STRING, None),
        9: ("metadata_props", MESSAGES, StringStringEntryProto)}


class GraphProto(Message):
    RECURSIVE: ClassVar[bool] = True
    FIELDS: ClassVar[Schema] = {
        1: ("node", MESSAGES, NodeProto), 2: ("name", STRING, None), 5: ("initializer", MESSAGES, TensorProto),
        11: ("input", MESSAGES, ValueInfoProto), 12: ("output", MESSAGES, ValueInfoProto),
        13: ("value_info", MESSAGES, ValueInfoProto),
        16: ("metadata_props", MESSAGES, StringStringEntryProto)}  # torch's exporter: the program's signature


AttributeProto.FIELDS.update({6: ("g", MESSAGE, GraphProto), 11: ("graphs", MESSAGES, GraphProto)})
AttributeProto.compile()


class FunctionProto(Message):  # a model's local functions: only their names are shown
    FIELDS: ClassVar[Schema] = {1: ("name", STRING, None), 10: ("domain", STRING, None)}


class ModelProto(Message):
    FIELDS: ClassVar[Schema] = {
        1: ("ir_version", INT, None), 2: ("producer_name", STRING, None), 3: ("producer_version", STRING, None),
        7: ("graph", MESSAGE, GraphProto), 8: ("opset_import", MESSAGES, OperatorSetIdProto),
        25: ("functions", MESSAGES, FunctionProto)}


def read_model(data: bytes, charge: Any = None) -> Any:
    """A ModelProto from a file's bytes (its fields are set from the file: typed Any, as protobuf's messages are
    to the reader); DecodeError (one line) where the bytes are not a protobuf message.

    `charge(nbytes)`, where given, is called as the parse makes objects (OBJECT_BYTES each), in batches."""
    budget = _Budget(charge)
    model = parse(ModelProto, data, 0, len(data), budget)
    assert isinstance(model, ModelProto)
    return model

"""propscope's own ONNX protobuf reader (`readers/onnx_proto.py`) against the `onnx` package.

The field numbers are checked against onnx's own message descriptors; every model of ONNX's node test cases
(about 1,500, serialized as an exporter would write them) and every model file shipped with ONNX's backend tests
opens from its bytes to the same graph as `open_proto` makes from `onnx`'s parse of them: same nodes, ops,
shapes, attributes, inputs and values. Broken and hostile bytes are refused in one line.
"""

from __future__ import annotations

import glob
import os
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from propscope.graph.errors import ModelFormatError  # noqa: E402
from propscope.graph.readers import memory_budget  # noqa: E402
from propscope.graph.readers import onnx_proto as P  # noqa: E402
from propscope.graph.readers.onnx_reader import open_bytes, open_proto  # noqa: E402

KINDS = {  # our field kinds -> (protobuf label repeated?, protobuf types that fit)
    P.INT: (False, {"TYPE_INT64", "TYPE_INT32", "TYPE_ENUM"}), P.FLOAT: (False, {"TYPE_FLOAT"}),
    P.STRING: (False, {"TYPE_STRING"}), P.BYTES: (False, {"TYPE_BYTES"}), P.RAW: (False, {"TYPE_BYTES"}),
    P.MESSAGE: (False, {"TYPE_MESSAGE"}), P.INTS: (True, {"TYPE_INT64", "TYPE_INT32"}),
    P.UINTS: (True, {"TYPE_UINT64"}), P.FLOATS: (True, {"TYPE_FLOAT"}), P.DOUBLES: (True, {"TYPE_DOUBLE"}),
    P.STRINGS: (True, {"TYPE_STRING"}), P.BYTES_LIST: (True, {"TYPE_BYTES"}), P.MESSAGES: (True, {"TYPE_MESSAGE"}),
}
DESCRIPTORS = {P.ModelProto: onnx.ModelProto, P.GraphProto: onnx.GraphProto, P.NodeProto: onnx.NodeProto,
               P.AttributeProto: onnx.AttributeProto, P.TensorProto: onnx.TensorProto,
               P.ValueInfoProto: onnx.ValueInfoProto, P.TypeProto: onnx.TypeProto,
               P.TensorTypeProto: onnx.TypeProto.Tensor, P.TensorShapeProto: onnx.TensorShapeProto,
               P.Dimension: onnx.TensorShapeProto.Dimension, P.OperatorSetIdProto: onnx.OperatorSetIdProto,
               P.StringStringEntryProto: onnx.StringStringEntryProto, P.FunctionProto: onnx.FunctionProto}


@pytest.mark.parametrize("ours", list(DESCRIPTORS), ids=lambda c: c.__name__)
def test_every_field_has_onnx_s_number_name_and_type(ours: type[P.Message]) -> None:
    from google.protobuf.descriptor import FieldDescriptor

    theirs = DESCRIPTORS[ours].DESCRIPTOR.fields_by_number
    type_names = {v: k for k, v in vars(FieldDescriptor).items() if k.startswith("TYPE_")}
    for number, (name, kind, sub) in ours.FIELDS.items():
        field = theirs[number]
        assert field.name == name, (ours.__name__, number)
        repeated, types = KINDS[kind]
        assert field.is_repeated == repeated and type_names[field.type] in types, (ours.__name__, name)
        if sub is not None:
            assert DESCRIPTORS[sub].DESCRIPTOR.full_name == field.message_type.full_name, (ours.__name__, name)


def _signature(model: Any) -> list[Any]:
    rows: list[Any] = []
    for node in model.graph.nodes:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in sorted(node.attrs.items())}
        rows.append((node.name, node.op.name, node.shape, tuple(i.name for i in node.inputs), repr(attrs),
                     node.module))
    return rows


def _same(a: Any, b: Any) -> None:
    assert _signature(a) == _signature(b)
    assert a.arrays.keys() == b.arrays.keys()
    for name, value in a.arrays.items():
        assert value.dtype == b.arrays[name].dtype and np.array_equal(value, b.arrays[name], equal_nan=True), name
    assert a.warnings == b.warnings


def _models() -> list[tuple[str, bytes]]:
    from onnx.backend.test.case import node as node_cases

    cases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in node_cases.collect_testcases(None):
            if case.model is not None:
                cases.append((case.name, case.model.SerializeToString()))
    root = os.path.dirname(onnx.backend.test.__file__)
    for file in sorted(glob.glob(f"{root}/data/**/*.onnx", recursive=True)):
        cases.append((os.path.relpath(file, root), Path(file).read_bytes()))
    return cases


def test_onnx_s_test_models_read_from_bytes_as_from_onnx_s_parse() -> None:
    compared = refused = 0
    for name, data in _models():
        try:
            want = open_proto(onnx.load_from_string(data), name)
        except ModelFormatError as exc:
            with pytest.raises(ModelFormatError) as ours:
                open_bytes(data, name)
            assert str(ours.value).split(":")[0] == str(exc).split(":")[0]
            refused += 1
            continue
        _same(open_bytes(data, name), want)
        compared += 1
    assert compared > 1400 and refused < 100, (compared, refused)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    def varint(v: int) -> bytes:
        out = b""
        while True:
            byte, v = v & 0x7F, v >> 7
            out += bytes([byte | (0x80 if v else 0)])
            if not v:
                return out

    return varint(number << 3 | wire) + (varint(len(payload)) + payload if wire == 2 else payload)


@pytest.mark.parametrize("data, says", [
    (b"\x08", "runs past the end"),  # ir_version's tag, no number
    (b"\x08" + b"\xff" * 11, "longer than ten bytes"),
    (b"\x3a\x10\x0a", "claims 16 bytes"),  # graph: 16 bytes promised, 1 there
    (b"\x0b", "wire type 3"),  # a group
    (b"\x3d\x00\x00\x00\x00", "wrong wire type"),  # graph as a fixed32
    (_field(7, 2, _field(2, 2, b"\xff\xfe")), "not valid UTF-8"),  # the graph's name
])
def test_broken_bytes_are_refused_in_one_line(data: bytes, says: str) -> None:
    with pytest.raises(ModelFormatError) as exc:
        open_bytes(data, "broken.onnx")
    assert says in str(exc.value) and "\n" not in str(exc.value) and str(exc.value).startswith("broken.onnx: ")


def test_nested_subgraphs_and_objects_are_bounded() -> None:
    # an If node whose branch nests graphs 10,000 deep: refused at the depth limit, in one line, not a RecursionError
    deep = b""
    for _ in range(10_000):
        deep = _field(1, 2, _field(5, 2, _field(6, 2, deep) + _field(20, 0, b"\x05")))  # node > attribute g > graph
    branch = _field(1, 2, b"then_branch") + _field(6, 2, deep) + _field(20, 0, b"\x05")
    node = _field(4, 2, b"If") + _field(1, 2, b"c") + _field(2, 2, b"y") + _field(5, 2, branch)
    value = _field(1, 2, b"c") + _field(2, 2, _field(1, 2, _field(1, 0, b"\x09") + _field(2, 2, b"")))
    graph = _field(1, 2, node) + _field(11, 2, value) + _field(12, 2, _field(1, 2, b"y"))
    with pytest.raises(ModelFormatError, match=rf"^if\.onnx: not a valid ONNX file \(graphs are nested more than "
                                               rf"{P.MAX_GRAPH_DEPTH} deep") as deep_exc:
        open_bytes(_field(1, 0, b"\x08") + _field(7, 2, graph), "if.onnx")
    assert "\n" not in str(deep_exc.value)
    # a million empty nodes: 2 bytes each in the file, a Python object each in memory: charged, and refused
    many = _field(7, 2, _field(1, 2, b"") * 1_000_000)
    with memory_budget(50_000_000), pytest.raises(ModelFormatError) as exc:
        open_bytes(many, "many.onnx")
    assert "many.onnx" in str(exc.value) and "protobuf messages" in str(exc.value)


def test_numbers_come_back_as_written() -> None:
    """Negative int64s (ten-byte varints), long packed runs (decoded as one array), unpacked runs (older writers)
    and packed floats read as onnx reads them."""
    ints = [0, 1, -1, 127, 128, 2**31, -(2**31), 2**63 - 1, -(2**63), *range(-300, 300, 7)]
    tensor = onnx.helper.make_tensor("t", onnx.TensorProto.INT64, [len(ints)], ints)
    floats = onnx.helper.make_tensor("f", onnx.TensorProto.FLOAT, [3], [0.1, -2.5, 1e30])
    mine = P.parse(P.TensorProto, tensor.SerializeToString(), 0, tensor.ByteSize(), P._Budget(None))
    assert isinstance(mine.int64_data, np.ndarray) and mine.int64_data.tolist() == ints
    short = onnx.helper.make_tensor("s", onnx.TensorProto.INT64, [3], [-5, 0, 300])
    data = short.SerializeToString()
    assert P.parse(P.TensorProto, data, 0, len(data), P._Budget(None)).int64_data == [-5, 0, 300]
    data = floats.SerializeToString()
    assert P.parse(P.TensorProto, data, 0, len(data), P._Budget(None)).float_data.tolist() == \
        list(floats.float_data)
    unpacked = b"".join(_field(7, 0, b"") + bytes([v]) for v in (1, 2, 3)) + \
        b"".join(_field(4, 5, struct.pack("<f", v)) for v in (0.5, 1.5))
    mine = P.parse(P.TensorProto, unpacked, 0, len(unpacked), P._Budget(None))
    assert mine.int64_data == [1, 2, 3] and mine.float_data == [0.5, 1.5]


def test_onnx_files_open_and_step_without_the_onnx_package(tmp_path: Path) -> None:
    """Reading ONNX needs neither `onnx` nor protobuf: a small CNN written by onnx's helpers opens, steps to
    the end, and matches the same file opened through onnx's own parse."""
    import subprocess
    import sys
    import textwrap

    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "conv.weight"),
             numpy_helper.from_array(rng.normal(size=(4,)).astype(np.float32), "conv.bias"),
             numpy_helper.from_array(rng.normal(size=(3, 4 * 4 * 4)).astype(np.float32), "fc.weight")]
    nodes = [helper.make_node("Conv", ["x", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="/Relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
             helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="/fc/Gemm", transB=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 1, 8, 8))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 3))], inits)
    path = tmp_path / "cnn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    want = _signature(open_proto(onnx.load(str(path))))
    code = textwrap.dedent(f"""
        import importlib.abc, sys
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("onnx", "google", "torch"):
                    raise ImportError(name + " is blocked in this test")
        sys.meta_path.insert(0, Blocker())
        from propscope.debugger import open_session
        s = open_session({str(path)!r}, dtype="float64", loss="cross_entropy")
        s.run_to_end()
        assert s.grad("conv.weight") is not None
        print("NODES", [(n.name, n.op.name) for n in s.model.graph.nodes])
        print("BLOCKED", sorted(m for m in sys.modules if m.split(".")[0] in ("onnx", "google", "torch")))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "BLOCKED []" in result.stdout
    assert f"NODES {[(row[0], row[1]) for row in want]}" in result.stdout

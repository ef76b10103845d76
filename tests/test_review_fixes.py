"""Regression tests for the defects a review of the readers, the op families and the backends found.

Each test failed before its fix; the docstring says what a user met.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opcheck import one_op

from propscope.backends.numpy import NumpyBackend
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import open_model
from propscope.graph.readers._pickle import load_weights_only


# -- a pickle whose memo spells out a tree of 2^depth values ------------------------------------------------
def _shared_reference_zip(depth: int, extra: object = None) -> bytes:
    """A torch.save zip whose pickle is a few hundred bytes but whose object, read as a tree, has 2^depth leaves."""
    value: object = [0.0]
    for _ in range(depth):
        value = (value, value)  # pickle's memo writes the second reference as one GET
    body = pickle.dumps({"laughs": value, "extra": extra}, protocol=2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", body)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_a_pickle_of_shared_references_is_refused_in_one_line(tmp_path: Path) -> None:
    """A 150-byte state dict made the reader expand 2^depth copies: depth 22 took 25 s, depth 40 never ended."""
    data = _shared_reference_zip(23)
    assert len(data) < 1000
    with pytest.raises(ModelFormatError, match="nested values"):
        load_weights_only(data, "evil.pt", "the file")
    path = tmp_path / "evil.pt"
    path.write_bytes(_shared_reference_zip(60))
    with pytest.raises(ModelFormatError, match="nested values") as err:
        open_model(path, arch="xor")
    assert "\n" not in str(err.value)


def test_shared_and_long_plain_values_still_load() -> None:
    """The guard counts the tree, not the file: a long list and a little sharing are fine, and stay equal."""
    history = [float(i) for i in range(200_000)]
    value = load_weights_only(_shared_reference_zip(12, extra=history), "ok.pt", "the file")
    assert value["extra"] == history
    leaf = value["laughs"]
    for _ in range(12):
        assert isinstance(leaf, tuple) and leaf[0] == leaf[1]
        leaf = leaf[0]
    assert leaf == [0.0]


# -- triu / tril keep the other triangle at 0 even where x is infinite -------------------------------------------
@pytest.mark.parametrize(("op", "diagonal"), [("triu", 1), ("tril", -1), ("triu", 0)])
def test_a_causal_mask_of_minus_infinity_keeps_zeros(op: str, diagonal: int) -> None:
    """torch.full((T, T), -inf).triu(1), every causal attention mask, gave NaN below the diagonal on NumPy."""
    import torch

    x = np.full((2, 4, 4), -np.inf, dtype=np.float32)
    x[0, 1, 2] = np.nan
    node = one_op(op, [x], {"diagonal": diagonal})
    backend = NumpyBackend("float32")
    out = backend.forward(node, [backend.asarray(x)])
    expected = getattr(torch, op)(torch.tensor(x), diagonal).numpy()
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32


# -- folds of small constants into big arrays are refused before NumPy makes them --------------------------------
def _onnx_fold_model(path: Path, kind: str, n: int) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def constant(name: str, value: np.ndarray) -> object:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value))

    if kind == "Tile":
        nodes = [constant("c", np.ones((1,), np.float32)), constant("reps", np.array([n], np.int64)),
                 helper.make_node("Tile", ["c", "reps"], ["t"])]
    elif kind == "MatMul":
        nodes = [constant("c", np.ones((n, 1), np.float32)), constant("d", np.ones((1, n), np.float32)),
                 helper.make_node("MatMul", ["c", "d"], ["t"])]
    else:
        nodes = [constant("c", np.ones((n, 1), np.float32)), constant("d", np.ones((1, n), np.float32)),
                 helper.make_node(kind, ["c", "d"], ["t"])]
    nodes += [helper.make_node("ReduceSum", ["t"], ["s"], keepdims=0), helper.make_node("Add", ["x", "s"], ["y"])]
    graph = helper.make_graph(nodes, "fold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize(("kind", "n"), [("Tile", 2**24), ("Add", 4096), ("Where", 4096), ("MatMul", 4096)])
def test_a_fold_past_the_budget_is_refused_before_it_is_made(tmp_path: Path, kind: str, n: int) -> None:
    """A 300-byte ONNX file folding (n, 1) + (1, n) or a Tile of 10⁸ made propscope allocate 1.5 GiB under a
    256 MiB --max-memory, and only then refuse it."""
    import tracemalloc

    from propscope.graph.readers import set_max_memory

    path = tmp_path / "fold.onnx"
    if kind == "Where":  # Where of three constants: cond (n, 1), x (1, n), y scalar
        onnx = pytest.importorskip("onnx")
        from onnx import TensorProto, helper, numpy_helper

        nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(v)) for name, v in (
            ("cond", np.ones((n, 1), bool)), ("a", np.ones((1, n), np.float32)), ("b", np.zeros((), np.float32)))]
        nodes += [helper.make_node("Where", ["cond", "a", "b"], ["t"]),
                  helper.make_node("ReduceSum", ["t"], ["s"], keepdims=0), helper.make_node("Add", ["x", "s"], ["y"])]
        graph = helper.make_graph(nodes, "fold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    else:
        _onnx_fold_model(path, kind, n)
    set_max_memory(16 * 2**20)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match="memory budget"):
            open_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        set_max_memory(None)
    assert peak < 32 * 2**20, f"{kind}: {peak / 2**20:.0f} MiB allocated before the refusal"


def test_fold_room_sizes_broadcast_matmul_and_tile() -> None:
    from propscope.graph.readers._budget import fold_room, matmul_room, memory_budget, tile_room

    with memory_budget(1000):
        fold_room((np.ones((10, 1)), np.ones((1, 12))), "a fold", "f")  # 960 bytes: fits
        with pytest.raises(ModelFormatError):
            fold_room((np.ones((11, 1)), np.ones((1, 12))), "a fold", "f")
        matmul_room(np.ones((3, 10, 2)), np.ones((2, 4)), "a product", "f")  # 3·10·4·8 = 960
        with pytest.raises(ModelFormatError):
            matmul_room(np.ones((2, 3, 10, 2)), np.ones((2, 4)), "a product", "f")
        tile_room(np.ones((2, 3)), (4, 5), "a tile", "f")  # 8·15·8 = 960
        with pytest.raises(ModelFormatError):
            tile_room(np.ones((2, 3)), (2, 4, 5), "a tile", "f")


def test_a_pad_of_a_billion_is_refused_before_it_is_made(tmp_path: Path) -> None:
    """ONNX Pad's amounts are numbers in the file: pads of 10⁸ on a constant made NumPy fill 800 MB first."""
    import tracemalloc

    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from propscope.graph.readers import set_max_memory

    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones((1,), np.float32))),
             helper.make_node("Constant", [], ["p"], value=numpy_helper.from_array(np.array([2**23, 0], np.int64))),
             helper.make_node("Pad", ["c", "p"], ["t"]), helper.make_node("ReduceSum", ["t"], ["s"], keepdims=0),
             helper.make_node("Add", ["x", "s"], ["y"])]
    graph = helper.make_graph(nodes, "pad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "pad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    set_max_memory(16 * 2**20)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match="memory budget"):
            open_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        set_max_memory(None)
    assert peak < 24 * 2**20, f"{peak / 2**20:.0f} MiB allocated before the refusal"


def test_an_exclusive_cumsum_over_an_empty_axis_is_empty() -> None:
    """ONNX CumSum(exclusive=1) over a length-0 axis raised IndexError on NumPy (torch gives the empty tensor)."""
    x = np.zeros((2, 0), dtype=np.float32)
    node = one_op("cumsum", [x], {"axis": 1, "exclusive": True})
    backend = NumpyBackend("float32")
    out = backend.forward(node, [backend.asarray(x)])
    assert out.shape == (2, 0) and out.dtype == np.float32
    (grad,) = backend.vjp(node, [backend.asarray(x)], out, backend.ones(out.shape))
    assert grad is not None and grad.shape == (2, 0)


@pytest.mark.parametrize("kind", ["ConstantOfShape", "Expand"])
def test_a_folded_constant_counts_once_against_the_budget(tmp_path: Path, kind: str) -> None:
    """ConstantOfShape and Expand charged their result before making it, and the reader charged it again once
    made: a 4 MiB constant needed 8 MiB of budget. Now it is checked before, charged once after."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from propscope.graph.readers import set_max_memory

    n = 2**20  # float32: 4 MiB
    shape = numpy_helper.from_array(np.array([n], np.int64))
    if kind == "ConstantOfShape":
        nodes = [helper.make_node("Constant", [], ["shape"], value=shape),
                 helper.make_node("ConstantOfShape", ["shape"], ["t"],
                                  value=numpy_helper.from_array(np.ones((1,), np.float32)))]
    else:
        nodes = [helper.make_node("Constant", [], ["shape"], value=shape),
                 helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.ones((1,), np.float32))),
                 helper.make_node("Expand", ["one", "shape"], ["t"])]
    nodes += [helper.make_node("ReduceSum", ["t"], ["s"], keepdims=0), helper.make_node("Add", ["x", "s"], ["y"])]
    graph = helper.make_graph(nodes, "fold", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "fold.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    try:
        set_max_memory(6 * 2**20)  # room for it once, not twice
        model = open_model(path)
        assert len(model.graph) > 0
        set_max_memory(3 * 2**20)  # no room for it at all: refused before it is made
        with pytest.raises(ModelFormatError, match="memory budget"):
            open_model(path)
    finally:
        set_max_memory(None)


def test_a_folded_torch_constant_counts_once_against_the_budget(tmp_path: Path) -> None:
    """The same for a .pt2: `torch.ones(2**20)` in forward is folded at load time and charged once."""
    torch = pytest.importorskip("torch")

    from propscope.graph.readers import set_max_memory

    class OnesSum(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return x + torch.ones(2**20).sum()

    path = tmp_path / "ones.pt2"
    torch.export.save(torch.export.export(OnesSum(), (torch.zeros(1),)), str(path))
    try:
        set_max_memory(12 * 2**20)  # folded in float64: 8 MiB once, not 16
        assert len(open_model(path).graph) > 0
        set_max_memory(6 * 2**20)
        with pytest.raises(ModelFormatError, match="memory budget"):
            open_model(path)
    finally:
        set_max_memory(None)

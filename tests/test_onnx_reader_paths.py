"""The ONNX reader's fast paths give the graph the general path gives, and ONNX's shape inference runs only
where a placeholder needs a shape the file leaves out (it cost a 20,000-op chain more than reading it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from propscope.graph.readers import onnx_reader, open_model  # noqa: E402


def _save(path: Path, nodes: list[Any], value_info: tuple[Any, ...] = (), opset: int = 17) -> Path:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3))],
                              [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, (2, 3))],
                              value_info=list(value_info))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), str(path))
    return path


def _chain(path: Path, kinds: tuple[str, ...] = ("Relu", "Tanh", "Sigmoid", "Abs", "Neg")) -> Path:
    nodes, prev = [], "x"
    for i, kind in enumerate(kinds):
        nodes.append(helper.make_node(kind, [prev], [f"v{i}"], name=f"/block{i}/{kind}"))
        prev = f"v{i}"
    return _save(path, nodes)


def _signature(path: Path) -> list[tuple[Any, ...]]:
    model = open_model(path)
    return [(n.name, n.op.name, tuple(a.name for a in n.inputs), dict(n.attrs), dict(n.meta)) for n in model.graph]


def test_a_chain_of_catalog_ops_opens_without_shape_inference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []  # counted, not raised: the reader takes a failing inference as no inference
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", lambda *args, **kwargs: calls.append(args))
    model = open_model(_chain(tmp_path / "chain.onnx"))
    assert not calls, "shape inference ran though no placeholder needed a shape"
    assert [n.op.name for n in model.graph.ops] == ["relu", "tanh", "sigmoid", "abs", "neg"]
    assert [n.module for n in model.graph.ops] == [f"block{i}" for i in range(5)]
    assert all(n.shape == (2, 3) for n in model.graph.ops) and not model.warnings


def test_the_unary_shortcut_makes_the_graph_the_handler_makes(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = _chain(tmp_path / "chain.onnx")
    fast = _signature(path)
    monkeypatch.setattr(onnx_reader, "CATALOG_UNARY", {})
    assert _signature(path) == fast


def test_a_placeholder_still_gets_its_shape_from_inference(tmp_path: Path) -> None:
    """BitCast (opset 26: the bits read as another type) has no mapping and the file does not declare its output:
    ONNX's inference says (2, 3)."""
    path = _save(tmp_path / "bitcast.onnx", [helper.make_node("BitCast", ["x"], ["h"], name="hm", to=TensorProto.FLOAT),
                                             helper.make_node("Relu", ["h"], ["y"], name="r")], opset=26)
    model = open_model(path)
    placeholder = model.graph["hm"]
    assert placeholder.op.name == "unsupported" and placeholder.shape == (2, 3)
    assert model.graph["r"].inputs == (placeholder,) and "BitCast" in model.warnings[0]


def test_a_shape_the_file_declares_is_still_checked_against_the_mapping(tmp_path: Path) -> None:
    """A declared shape the mapped op does not produce makes the node a placeholder of the declared shape."""
    wrong = helper.make_tensor_value_info("h", TensorProto.FLOAT, (3, 2))
    path = _save(tmp_path / "wrong.onnx", [helper.make_node("Relu", ["x"], ["h"], name="r"),
                                           helper.make_node("Transpose", ["h"], ["t"], name="t"),
                                           helper.make_node("Transpose", ["t"], ["y"], name="y")], (wrong,))
    model = open_model(path)
    node = model.graph["t"].inputs[0]
    assert node.op.name == "unsupported" and node.shape == (3, 2)
    assert "the file declares (3, 2)" in node.meta["reason"]
    assert any(w.startswith("Relu at 'r': partial mapping dropped") for w in model.warnings)


@pytest.mark.parametrize("text, scopes", [
    ("['', 'layer1', 'layer1.0', 'layer1.0.conv1']", ["", "layer1", "layer1.0", "layer1.0.conv1"]),  # the usual
    ("[]", []),
    ("['it\\'s', \"b\"]", ["it's", "b"]),  # escapes and double quotes: the general reader
    ("['a', 3]", ["a", 3]),  # not all strings: the caller ignores it
    ("['a'] + ['b']", None), ("__import__('os')", None),
    ("[" * 50 + "]" * 50, "nested"),
])
def test_name_scopes_are_read_as_a_list_literal_and_nothing_else(text: str, scopes: Any) -> None:
    got = onnx_reader._string_list(text)
    if scopes == "nested":  # lists in lists: a list (the caller finds no strings in it) or refused, never code
        assert got is None or isinstance(got, list)
    else:
        assert got == scopes


def test_module_paths_from_the_torch_exporters_name_scopes(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["v0"], name="node_relu")
    node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value="['', 'encoder', 'encoder.act']")
    model = open_model(_save(tmp_path / "scoped.onnx", [node]))
    (relu,) = [n for n in model.graph.nodes if n.op.name == "relu"]
    assert relu.module == "encoder"


# -- scatters of constants (Swin's shifted-window mask, as the dynamo exporter writes it) ---------------------
def _scatter_model(path: Path, op: str, data: Any, idx: Any, updates: Any, **attrs: Any) -> Path:
    import numpy as np
    from onnx import numpy_helper

    consts = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(v), name))
              for name, v in (("data", data), ("idx", idx))]
    init = numpy_helper.from_array(np.asarray(updates, dtype=np.float32), "updates")  # a float initializer
    nodes = [*consts, helper.make_node(op, ["data", "idx", "updates"], ["mask"], **attrs),
             helper.make_node("Mul", ["x", "mask"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, (2, 3))], initializer=[init])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


@pytest.mark.parametrize("op, idx, updates, attrs", [
    ("ScatterND", [[1, 2], [0, 0]], [5.0, 7.0], {}),
    ("ScatterND", [[1], [-2]], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], {"reduction": "add"}),
    ("ScatterND", [[0, 1], [0, 1]], [2.0, 3.0], {"reduction": "mul"}),
    ("ScatterElements", [[2, 0], [1, -1]], [[5.0, 6.0], [7.0, 8.0]], {"axis": 1}),
    ("ScatterElements", [[1, 0, 1]], [[3.0, 4.0, 5.0]], {"axis": 0, "reduction": "max"}),
])
def test_a_scatter_of_constants_folds_to_onnxs_own_result(tmp_path: Path, op: str, idx: Any, updates: Any,
                                                          attrs: dict[str, Any]) -> None:
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    data = np.arange(6, dtype=np.float32).reshape(2, 3) / 4 + 1
    path = _scatter_model(tmp_path / "scatter.onnx", op, data, np.asarray(idx, dtype=np.int64), updates, **attrs)
    model = open_model(path)
    assert [n.op.name for n in model.graph.ops] == ["mul"], model.warnings  # the mask is a constant
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    (want,) = ReferenceEvaluator(str(path)).run(None, {"x": x})
    mask = next(n for n in model.graph.leaves if n.op.name == "constant")
    np.testing.assert_array_equal(model.arrays[mask.name] * x, want)


def test_a_scatter_into_a_computed_tensor_is_an_index_put(tmp_path: Path) -> None:
    """At positions known when the file is read (tests/test_onnx_scatter.py: the numbers, and what is refused)."""
    path = _save(tmp_path / "scatter.onnx", [
        helper.make_node("Constant", [], ["idx"], value=helper.make_tensor("idx", TensorProto.INT64, (1, 1), [0])),
        helper.make_node("Constant", [], ["u"], value=helper.make_tensor("u", TensorProto.FLOAT, (1, 3), [1, 2, 3])),
        helper.make_node("ScatterND", ["x", "idx", "u"], ["y"], name="scatter")])
    model = open_model(path)
    assert not [n for n in model.graph if n.op.name == "unsupported"]
    (put,) = [n for n in model.graph if n.op.name == "index_put"]
    assert put.attrs["axes"] == (0,) and put.attrs["accumulate"] is False


@pytest.mark.parametrize(("name", "path"), [
    ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),  # the TorchScript exporter names a Sequential's child after it
    ("/layer2/layer2.0/downsample/downsample.0/Conv", "layer2.0.downsample.0"),
    ("/features/features.0/features.0.0/Conv", "features.0.0"),
    ("/features/features.10/block/block.2/fc1/Conv", "features.10.block.2.fc1"),
    ("/bert/encoder/layer.0/attention/self/query/MatMul", "bert.encoder.layer.0.attention.self.query"),
    ("/fc/Gemm", "fc"),
    ("Gemm_3", ""),
])
def test_module_paths_from_node_names(name: str, path: str) -> None:
    assert onnx_reader._name_scope(name) == path


def test_a_torchscript_export_keeps_the_state_dicts_names(tmp_path: Path) -> None:
    """resnet18 through `torch.onnx.export(dynamo=False)`: parameters named as in its state dict (the exporter's
    `onnx::Conv_193` initializers take their module's path), not `layer1.layer1.0.conv1.weight`."""
    torch = pytest.importorskip("torch")
    import warnings

    from propscope.graph.readers import _torchvision

    torch.manual_seed(0)
    net = _torchvision.models().resnet18(num_classes=4).eval()
    path = tmp_path / "r18.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), str(path), dynamo=False)
    names = {n.name for n in open_model(path).graph.parameters}
    assert {"layer1.0.conv1.weight", "layer2.0.downsample.0.weight", "fc.weight"} <= names, sorted(names)[:12]
    assert not any(n.startswith("layer1.layer1") for n in names)

"""ONNX If nodes: one whose condition folds to a constant when the file is read is the branch it picks, read into the
main graph; one decided at run time is refused in one line, as are Loop and Scan (`onnx_ops/control.py`).

The TorchScript exporter writes `x.squeeze(d)` of a tensor whose size it lost as `If(Equal(Gather(Shape(x), d), 1))`
with a Squeeze branch and an Identity branch (nn.LocalResponseNorm does so at opset 11+): such a file steps as the
network, with autograd's gradients.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from propscope.debugger.onnx_backend import NumpyOnnxBackend, TorchOnnxBackend  # noqa: E402
from propscope.graph.errors import ModelFormatError  # noqa: E402
from propscope.graph.readers import onnx_proto  # noqa: E402
from propscope.graph.readers.onnx_backend import OnnxRunError  # noqa: E402
from propscope.graph.readers.onnx_reader import open_bytes, open_proto  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
BACKENDS = (NumpyOnnxBackend, TorchOnnxBackend) if HAS_TORCH else (NumpyOnnxBackend,)
X = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
BIAS = np.float32([0.5, -1.0, 2.0])
node = helper.make_node


def _value(name: str, shape: list[int] | None = None, elem: int = TensorProto.FLOAT) -> Any:
    return helper.make_tensor_value_info(name, elem, shape)


def _if_model(width: int) -> Any:
    """y = If(x.shape[1] == width): the condition is shape plumbing, folded when the file is read.

    then: x * 2 (a branch initializer) + bias (an outer initializer), through an inner If whose condition is always
    true (branches nest); else: relu(x - bias). Both branches name a node `Add` as the main graph does, and the
    then branch names a value `t` as the main graph does after the If (branch names are the branch's own)."""
    inner = node("If", ["always"], ["inner_y"], then_branch=helper.make_graph(
        [node("Add", ["scaled", "bias"], ["sum"], name="Add")], "inner_then", [], [_value("sum", [2, 3])]),
        else_branch=helper.make_graph([node("Neg", ["scaled"], ["neg"])], "inner_else", [], [_value("neg", [2, 3])]))
    then_branch = helper.make_graph(
        [node("Mul", ["x", "two"], ["scaled"]), node("Constant", [], ["always"], value=helper.make_tensor(
            "always", TensorProto.BOOL, [], [True])), inner, node("Identity", ["inner_y"], ["t"])],
        "then", [], [_value("t", [2, 3])], initializer=[numpy_helper.from_array(np.float32(2.0), "two")])
    else_branch = helper.make_graph(
        [node("Sub", ["x", "bias"], ["diff"], name="Add"), node("Relu", ["diff"], ["rectified"])],
        "else", [], [_value("rectified", [2, 3])])
    nodes = [node("Shape", ["x"], ["shape"]), node("Gather", ["shape", "one"], ["size"], axis=0),
             node("Equal", ["size", "width"], ["cond"]),
             node("If", ["cond"], ["picked"], then_branch=then_branch, else_branch=else_branch),
             node("Add", ["picked", "bias"], ["t"], name="Add"), node("Mul", ["t", "t"], ["y"])]
    inits = [numpy_helper.from_array(np.int64(1), "one"), numpy_helper.from_array(np.int64(width), "width"),
             numpy_helper.from_array(BIAS, "bias")]
    graph = helper.make_graph(nodes, "if_model", [_value("x", [2, 3])], [_value("y", [2, 3])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)


def _onnxruntime(model: Any, x: np.ndarray) -> np.ndarray | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


@pytest.mark.parametrize("width, branch", [(3, "then"), (4, "else")])
def test_an_if_on_a_folded_condition_is_the_branch_it_picks(width: int, branch: str) -> None:
    model = _if_model(width)
    x = X.astype(np.float64)
    picked = x * 2 + BIAS if branch == "then" else np.maximum(x - BIAS, 0)
    want = (picked + BIAS) ** 2
    graph = open_proto(model).graph
    assert {n.op.name for n in graph}.isdisjoint({"unsupported"}), [(n.name, n.op.name) for n in graph]
    assert len({n.name for n in graph}) == len(list(graph))  # the branch's `Add` renamed beside the main one
    runtime = _onnxruntime(model, X)
    if runtime is not None:
        np.testing.assert_allclose(runtime, want, rtol=1e-5, atol=1e-6)
    for backend in BACKENDS:
        got = backend.prepare(model).run([X])
        np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-6, err_msg=backend.__name__)


def test_an_if_decided_at_run_time_is_refused_in_one_line() -> None:
    branch = helper.make_graph([node("Identity", ["x"], ["same"])], "then", [], [_value("same", [2, 3])])
    nodes = [node("ReduceSum", ["x"], ["total"], keepdims=0), node("Greater", ["total", "zero"], ["cond"]),
             node("If", ["cond"], ["y"], then_branch=branch,
                  else_branch=helper.make_graph([node("Neg", ["x"], ["neg"])], "else", [], [_value("neg", [2, 3])]))]
    graph = helper.make_graph(nodes, "dynamic_if", [_value("x", [2, 3])], [_value("y", [2, 3])],
                              initializer=[numpy_helper.from_array(np.float32(0), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    with pytest.raises(OnnxRunError, match=r"^If: .*condition is computed at run time") as exc:
        NumpyOnnxBackend.prepare(model).run([X])
    assert "\n" not in str(exc.value)


def _nested_ifs(depth: int) -> bytes:
    """A model whose If's then branch holds an If, `depth` graphs deep counting the model's, all conditions true."""
    body = helper.make_graph([node("Relu", ["x"], ["r"])], "leaf", [], [_value("r", [2, 3])])
    for level in range(depth - 1):
        out = f"y{level}"
        body = helper.make_graph(
            [node("If", ["yes"], [out], then_branch=body,
                  else_branch=helper.make_graph([node("Neg", ["x"], [f"n{level}"])], "else", [],
                                                [_value(f"n{level}", [2, 3])]))],
            f"level{level}", [], [_value(out, [2, 3])])
    graph = helper.make_graph(list(body.node), "nested", [_value("x", [2, 3])], list(body.output),
                              initializer=[numpy_helper.from_array(np.bool_(True), "yes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    return model.SerializeToString()


def test_nested_branches_open_to_the_depth_limit_and_are_refused_past_it() -> None:
    limit = onnx_proto.MAX_GRAPH_DEPTH
    model = open_bytes(_nested_ifs(limit), "nested.onnx")
    assert [n.op.name for n in model.graph if n.op.name not in ("input", "constant")] == ["relu"]
    with pytest.raises(ModelFormatError, match=rf"^deep\.onnx: .*nested more than {limit} deep") as exc:
        open_bytes(_nested_ifs(limit + 1), "deep.onnx")
    assert "\n" not in str(exc.value)


def test_a_branch_s_messages_count_against_the_memory_budget() -> None:
    from propscope.graph.readers import memory_budget

    empty_nodes = helper.make_graph([], "big", [], [_value("x", [2, 3])])
    empty_nodes.node.extend([onnx.NodeProto() for _ in range(400_000)])
    nodes = [node("If", ["yes"], ["y"], then_branch=empty_nodes, else_branch=empty_nodes)]
    graph = helper.make_graph(nodes, "big_branch", [_value("x", [2, 3])], [_value("y", [2, 3])],
                              initializer=[numpy_helper.from_array(np.bool_(True), "yes")])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7).SerializeToString()
    with memory_budget(50_000_000), pytest.raises(ModelFormatError, match=r"^big\.onnx: .*protobuf messages"):
        open_bytes(data, "big.onnx")


# -- the TorchScript exporter's squeeze guard, stepped against autograd ---------------------------------------------
def _lrn_net() -> Any:
    """A LocalResponseNorm (whose export squeezes through an If at opset 11+) and an explicit squeeze of an axis of
    size 1, between a convolution and a linear head; float64, weights nudged off their initial values."""
    import torch

    class LrnNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.lrn = torch.nn.LocalResponseNorm(3, alpha=0.1, k=1.5)
            self.fc = torch.nn.Linear(24, 10)

        def forward(self, x: Any) -> Any:
            a = self.lrn(torch.relu(self.conv(x)))
            return self.fc(a.mean(dim=2, keepdim=True).squeeze(2).flatten(1))

    torch.manual_seed(0)
    return zoo._jitter(LrnNet()).double().eval()


@pytest.mark.torch
@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_torchscript_squeeze_guard_at_opset_13_steps_with_autograds_gradients(tmp_path: Path) -> None:
    from propscope.debugger import open_session

    model = _lrn_net()
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6))
    y = np.array([1, 7])
    path = zoo.export_onnx(model, (x,), tmp_path / "lrn13.onnx", False, opset_version=13)
    exported = onnx.load(str(path))
    assert "If" in {n.op_type for n in exported.graph.node}
    image = exported.graph.input[0].name
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data={image: x, "y": y}, loss="cross_entropy")
        assert "unsupported" not in {n.op.name for n in s.graph}
        s.run_to_end()
        assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-9 * max(1.0, abs(loss))
        assert zoo.relative(s.backend.to_numpy(s.grad(image)), input_grad) <= 1e-9
        names = {n.name for n in s.graph.leaves}
        assert {"conv.weight", "fc.weight"} <= names, sorted(names)
        for p in ("conv.weight", "conv.bias", "fc.weight", "fc.bias"):
            assert zoo.relative(s.backend.to_numpy(s.grad(p)), grads[p]) <= 1e-9, f"{backend}: {p}"

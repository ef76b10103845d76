"""ONNX integer arithmetic on computed values, which propscope computes in floats: Div of integers truncates
toward zero (7/2 = 3, −7/2 = −3), Mod keeps ONNX's integer signs (fmod=0 the divisor's, fmod=1 the dividend's),
and a cast to a narrower integer type wraps around (int16 200 → int8 −56). Which values are integers comes from
the file: declared types, constants, and the types ONNX's rules imply (the TorchScript exporter declares none).
Expected values come from ONNX's reference evaluator (onnxruntime's semantics; onnxruntime itself is not
installed here), and for exported models also from torch, forward and gradient."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo
from opcheck import chained_vjps

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.torch


def _reference(path: Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference's own casts overflow on purpose here
        return np.asarray(ReferenceEvaluator(str(path)).run(None, inputs)[0])


def _values(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The prediction on both backends, float64."""
    out = {}
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data=inputs, loss="none")
        s.run_to_end()
        out[backend] = s.backend.to_numpy(s.value(s.prediction_node.name))
    return out


def _save(path: Path, nodes: list[Any], inputs: list[Any], inits: list[Any] = ()) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "ints", inputs, [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
                              list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    return path


A = np.array([7, -7, 7, -7, 0, 9, -9, 1, -1, 6], dtype=np.int64)
B = np.array([2, 2, -2, -2, 3, 4, 4, -5, 5, -3], dtype=np.int64)


def test_integer_div_truncates_and_mod_keeps_onnx_signs(tmp_path: Path) -> None:
    """Div, Mod (fmod=0 and 1) of int64 inputs, and Div by an int64 constant, times x: exactly the reference's
    values (the plain float quotient would be 3.5 for 7/2)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Div", ["a", "b"], ["q"]),
             helper.make_node("Div", ["a", "two"], ["h"]),
             helper.make_node("Mod", ["a", "b"], ["m"]),
             helper.make_node("Mod", ["a", "b"], ["f"], fmod=1),
             helper.make_node("Sum", ["q", "h", "m", "f"], ["s"]),
             helper.make_node("Sub", ["q", "m"], ["d"]),  # a second integer path, scaled apart from the first
             helper.make_node("Mul", ["d", "hundred"], ["d100"]),
             helper.make_node("Add", ["s", "d100"], ["si"]),
             helper.make_node("Cast", ["si"], ["sf"], to=TensorProto.DOUBLE),
             helper.make_node("Mul", ["sf", "x"], ["y"])]
    path = _save(tmp_path / "divmod.onnx", nodes,
                 [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [10]),
                  helper.make_tensor_value_info("a", TensorProto.INT64, [10]),
                  helper.make_tensor_value_info("b", TensorProto.INT64, [10])],
                 [numpy_helper.from_array(np.array(2, dtype=np.int64), "two"),
                  numpy_helper.from_array(np.array(100, dtype=np.int64), "hundred")])
    x = np.linspace(-1.3, 2.1, 10)
    inputs = {"x": x, "a": A, "b": B}
    want = _reference(path, inputs)
    q = np.trunc(A / B)
    m = np.mod(A, B)
    np.testing.assert_array_equal(want, (q + np.trunc(A / 2) + m + np.fmod(A, B) + 100 * (q - m)) * x)
    for backend, got in _values(path, inputs).items():
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0, err_msg=backend)
    ops = [n.op.name for n in open_model(path).graph.ops]
    assert ops.count("div") == 2 and ops.count("fmod") == 3, ops  # two quotients truncated, Mod fmod=1


def test_float_div_is_unchanged(tmp_path: Path) -> None:
    """Div of float values stays one `div`, also of whole-valued floats (Floor's): 3/2 = 1.5."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Floor", ["x"], ["f"]),
             helper.make_node("Div", ["f", "x2"], ["q"]),
             helper.make_node("Div", ["x", "q"], ["y"])]
    path = _save(tmp_path / "floatdiv.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [4]),
                                                     helper.make_tensor_value_info("x2", TensorProto.DOUBLE, [4])])
    assert [n.op.name for n in open_model(path).graph.ops] == ["floor", "div", "div"]
    inputs = {"x": np.array([3.5, -3.5, 5.2, 7.9]), "x2": np.array([2.0, 2.0, 2.0, -2.0])}
    for got in _values(path, inputs).values():
        np.testing.assert_allclose(got, inputs["x"] / (np.floor(inputs["x"]) / inputs["x2"]), rtol=1e-15)


@pytest.mark.parametrize("to", ["INT8", "UINT8", "INT16", "UINT16", "INT32", "UINT32"])
def test_narrowing_integer_casts_wrap(to: str, tmp_path: Path) -> None:
    """int64 (declared), int64·int64 (implied: no value_info) and int16 (an earlier cast) cast narrower keep the low
    bits, as the reference; a bool cast to int8 stays 0/1 without steps."""
    from onnx import TensorProto, helper, numpy_helper

    code = getattr(TensorProto, to)
    nodes = [helper.make_node("Cast", ["n"], ["direct"], to=code),
             helper.make_node("Mul", ["n", "k"], ["big"]),  # untyped: int64 by ONNX's rules
             helper.make_node("Cast", ["big"], ["implied"], to=code),
             helper.make_node("Cast", ["n"], ["short"], to=TensorProto.INT16),
             helper.make_node("Cast", ["short"], ["from16"], to=code),
             helper.make_node("Less", ["n", "k"], ["mask"]),
             helper.make_node("Cast", ["mask"], ["from_bool"], to=TensorProto.INT8),
             *(helper.make_node("Cast", [v], [f"{v}_f"], to=TensorProto.DOUBLE)
               for v in ("direct", "implied", "from16", "from_bool")),
             helper.make_node("Sum", ["direct_f", "implied_f", "from16_f", "from_bool_f"], ["s"]),
             helper.make_node("Mul", ["s", "x"], ["y"])]
    path = _save(tmp_path / "wrap.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [8]),
                                                 helper.make_tensor_value_info("n", TensorProto.INT64, [8])],
                 [numpy_helper.from_array(np.array(1000, dtype=np.int64), "k")])
    n = np.array([200, -1, 127, -129, 70000, -40000, 2**40 + 5, 3], dtype=np.int64)
    x = np.linspace(0.5, 1.2, 8)
    inputs = {"x": x, "n": n}
    want = _reference(path, inputs)
    for backend, got in _values(path, inputs).items():
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0, err_msg=backend)
    graph = open_model(path).graph
    assert "fmod" not in [n.op.name for n in graph.ops]  # integers are not truncated again
    wraps = 3 if to in ("INT16", "INT32") else 4  # int64 → int16 wraps too; int16 → int8 or unsigned again
    assert sum(n.meta.get("original_op") == "Cast" and n.op.name == "remainder" for n in graph.ops) == wraps


class IntMath(torch.nn.Module):
    """Integer arithmetic on computed values inside a float64 model: `//`, torch.div's trunc and floor, `%`, and
    casts of a computed int64 to int8 and uint8 that overflow. The TorchScript exporter writes `//` as a Div of
    int64 tensors, which ONNX (and onnxruntime) truncates where torch floors: `trunc_floordiv` computes what the
    file says."""

    def __init__(self, trunc_floordiv: bool = False) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 5)
        self.trunc_floordiv = trunc_floordiv

    def forward(self, x: Any) -> Any:
        h = self.fc(x) * 3.75
        a = h.long()
        b = ((h.abs() * 2).long() + 1) * (1 - 2 * (h.roll(1, 1) < 0).long())  # never 0, both signs
        q = torch.div(a, 2, rounding_mode="trunc") if self.trunc_floordiv else a // 2
        t = torch.div(a, b, rounding_mode="trunc")
        f = torch.div(a, b, rounding_mode="floor")
        return (h * q + h * t + h * f + h * (a % 3) + h * (a % b) + h * (a * 50).to(torch.int8)
                + h * (a * 50).to(torch.uint8))


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_exported_integer_math_matches_the_reference_and_autograd(dynamo: bool, tmp_path: Path) -> None:
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = IntMath().double().eval()
    x = np.random.default_rng(3).standard_normal((6, 4))
    path = tmp_path / "intmath.onnx"
    zoo.export_onnx(model, (x,), path, dynamo)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    name = graph.inputs[0].name
    want = _reference(path, {name: x})
    file_model = IntMath(trunc_floordiv=not dynamo).double().eval()
    file_model.load_state_dict(model.state_dict())
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    params = dict(file_model.named_parameters())
    torch_out = torch.func.functional_call(file_model, params, (xt,))
    np.testing.assert_allclose(torch_out.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    q = torch.from_numpy(x) @ model.fc.weight.detach().T + model.fc.bias.detach()
    a = (q * 3.75).long()
    assert ((a * 50) > 127).any() and ((a * 50) < 0).any()  # both casts overflow somewhere
    assert (a % 2 != 0).logical_and(a < 0).any() or dynamo  # `//` truncating differs from flooring here
    for backend, got in _values(path, {name: x}).items():
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=backend)
    upstream = np.random.default_rng(1).standard_normal(want.shape)
    grads = torch.autograd.grad(torch_out, [xt, params["fc.weight"], params["fc.bias"]], torch.from_numpy(upstream))
    s = open_session(path, backend="numpy", dtype="float64", data={name: x}, loss="none")
    s.run_to_end()
    found = chained_vjps(s, upstream)
    np.testing.assert_allclose(found[name], grads[0].numpy(), rtol=1e-10, atol=1e-12)
    checked = 0
    for p in graph:
        if p.op.name == "parameter" and p.name.replace("_", ".").endswith(("fc.weight", "fc.bias")):
            want_grad = grads[1] if p.name.endswith("weight") else grads[2]
            np.testing.assert_allclose(found[p.name], want_grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=p.name)
            checked += 1
    assert checked == 2

"""ONNX Cast (and CastLike) of computed values to an integer or bool type: the fraction dropped (x − fmod(x, 1),
derivative 0) or a mask (x ≠ 0), as torch's `.long()` and `.to(torch.bool)` do; values already integer or bool
(the file declares so, or their op makes them) keep their values without extra steps. Files written by hand and
by both of torch's exporters, stepped on both backends and compared with torch autograd."""

from __future__ import annotations

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


def _check(path: Path, inputs: dict[str, np.ndarray], want: Any, wrt: dict[str, Any]) -> None:
    """Both backends' values against torch's `want`, and the NumPy VJPs against torch's gradients of `wrt`."""
    upstream = np.random.default_rng(1).standard_normal(tuple(want.shape))
    grads = torch.autograd.grad(want, list(wrt.values()), torch.from_numpy(upstream))
    for backend in ("numpy", "torch"):
        s = open_session(path, backend=backend, dtype="float64", data=inputs, loss="none")
        s.run_to_end()
        np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)
        found = chained_vjps(s, upstream)
        for name, grad in zip(wrt, grads, strict=True):
            np.testing.assert_allclose(found[name], grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def _save(path: Path, nodes: list[Any], inputs: list[Any], inits: list[Any] = (), value_info: list[Any] = (),
          out_shape: tuple[int, ...] = (2, 5)) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "casts", inputs, [helper.make_tensor_value_info("y", TensorProto.DOUBLE,
                                                                                    list(out_shape))],
                              list(inits), value_info=list(value_info))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    return path


def _x(shape: tuple[int, ...] = (2, 5)) -> np.ndarray:
    """Values whose 3.7-fold lies clear of whole numbers (so central differences see no jump), both signs."""
    rng = np.random.default_rng(0)
    whole = rng.integers(-4, 5, shape)
    return (whole + rng.uniform(0.15, 0.85, shape)) / 3.7


@pytest.mark.parametrize("to", ["INT64", "INT32", "UINT8"])
def test_cast_of_a_computed_float_to_an_integer_truncates(to: str, tmp_path: Path) -> None:
    """y = Cast(Cast(3.7·x, int), double) · x: truncation toward zero (−2.7 → −2), no gradient through it."""
    from onnx import TensorProto, helper, numpy_helper

    x = np.abs(_x()) if to == "UINT8" else _x()
    nodes = [helper.make_node("Mul", ["x", "k"], ["h"]),
             helper.make_node("Cast", ["h"], ["whole"], to=getattr(TensorProto, to)),
             helper.make_node("Cast", ["whole"], ["back"], to=TensorProto.DOUBLE),
             helper.make_node("Mul", ["back", "x"], ["y"])]
    path = _save(tmp_path / "trunc.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 5])],
                 [numpy_helper.from_array(np.array(3.7), "k")])
    graph = open_model(path).graph
    assert [n.op.name for n in graph.ops] == ["mul", "fmod", "sub", "mul"]
    xt = torch.from_numpy(x).requires_grad_(True)
    want = (xt * 3.7).long().double() * xt
    assert (want.detach().numpy() != (x * 3.7) * x).all()  # the cast changed every value
    _check(path, {"x": x}, want, {"x": xt})


def test_cast_of_a_computed_float_to_bool_is_a_mask(tmp_path: Path) -> None:
    """y = Where(Cast(Floor(x), bool), x, −x): the values of Floor(x) that are not 0 pick x."""
    from onnx import TensorProto, helper

    x = _x() * 3
    nodes = [helper.make_node("Floor", ["x"], ["f"]),
             helper.make_node("Cast", ["f"], ["mask"], to=TensorProto.BOOL),
             helper.make_node("Neg", ["x"], ["minus"]),
             helper.make_node("Where", ["mask", "x", "minus"], ["y"])]
    path = _save(tmp_path / "bool.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 5])])
    assert [n.op.name for n in open_model(path).graph.ops] == ["floor", "compare", "neg", "where"]
    xt = torch.from_numpy(x).requires_grad_(True)
    want = torch.where(torch.floor(xt).to(torch.bool), xt, -xt)
    assert (torch.floor(xt) == 0).any() and (torch.floor(xt) != 0).any()  # both branches taken
    _check(path, {"x": x}, want, {"x": xt})


def test_castlike_takes_the_type_of_its_second_input(tmp_path: Path) -> None:
    """CastLike to an int64 initializer truncates; to a double one it is the value itself."""
    from onnx import TensorProto, helper, numpy_helper

    x = _x()
    nodes = [helper.make_node("Mul", ["x", "k"], ["h"]),
             helper.make_node("CastLike", ["h", "int_like"], ["whole"]),
             helper.make_node("CastLike", ["whole", "x"], ["back"]),
             helper.make_node("Mul", ["back", "h"], ["y"])]
    path = _save(tmp_path / "castlike.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 5])],
                 [numpy_helper.from_array(np.array(3.7), "k"), numpy_helper.from_array(np.array(0), "int_like")])
    xt = torch.from_numpy(x).requires_grad_(True)
    h = xt * 3.7
    _check(path, {"x": x}, h.long().double() * h, {"x": xt})


def test_values_already_integer_or_bool_keep_their_values_without_steps(tmp_path: Path) -> None:
    """ArgMax, a comparison and an int64 input cast to int32 or bool add no truncation (int64 to int32 only its
    wrap, test_onnx_integer_arith.py); a declared int64 value cast to bool is still ≠ 0, and constants cast fold
    (3.7 → 3, −2.5 → −2)."""
    from onnx import TensorProto, helper, numpy_helper

    x = _x()
    nodes = [helper.make_node("ArgMax", ["x"], ["arg"], axis=1, keepdims=1),  # int64 (2, 1)
             helper.make_node("Cast", ["arg"], ["arg32"], to=TensorProto.INT32),
             helper.make_node("Cast", ["arg32"], ["argf"], to=TensorProto.DOUBLE),
             helper.make_node("Greater", ["x", "zero"], ["pos"]),
             helper.make_node("Cast", ["pos"], ["pos_b"], to=TensorProto.BOOL),
             helper.make_node("Cast", ["pos_b"], ["posf"], to=TensorProto.DOUBLE),
             helper.make_node("Cast", ["n"], ["n_b"], to=TensorProto.BOOL),  # an int64 input: ≠ 0
             helper.make_node("Cast", ["n_b"], ["nf"], to=TensorProto.DOUBLE),
             helper.make_node("Cast", ["n"], ["n32"], to=TensorProto.INT32),  # an int64 input: kept
             helper.make_node("Cast", ["n32"], ["n32f"], to=TensorProto.DOUBLE),
             helper.make_node("Constant", [], ["c"],
                              value=numpy_helper.from_array(np.array([3.7, -2.5, 0.2, -0.9, 1.0]))),
             helper.make_node("Cast", ["c"], ["c_int"], to=TensorProto.INT64),  # a constant: folded
             helper.make_node("Cast", ["c_int"], ["cf"], to=TensorProto.DOUBLE),
             helper.make_node("Sum", ["argf", "posf", "nf", "n32f", "cf"], ["s"]),
             helper.make_node("Mul", ["s", "x"], ["y"])]
    path = _save(tmp_path / "kept.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 5]),
                                                 helper.make_tensor_value_info("n", TensorProto.INT64, [2, 5])],
                 [numpy_helper.from_array(np.array(0.0), "zero")])
    ops = [n.op.name for n in open_model(path).graph.ops]
    assert "fmod" not in ops and ops.count("compare") == 2, ops  # Greater, and the int64 input's ≠ 0
    n = np.array([[0, 3, -1, 0, 2], [5, 0, 0, -7, 1]])
    xt = torch.from_numpy(x).requires_grad_(True)
    nt = torch.from_numpy(n)
    s = (xt.argmax(1, keepdim=True).int().double() + (xt > 0).double() + nt.bool().double() + nt.int().double()
         + torch.tensor([3.7, -2.5, 0.2, -0.9, 1.0], dtype=torch.float64).long().double())
    _check(path, {"x": x, "n": n}, s * xt, {"x": xt})


def test_whole_numbers_and_unknown_types(tmp_path: Path) -> None:
    """Floor's values are whole already (no truncation step); a cast to a string is refused by name."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Floor", ["x"], ["f"]),
             helper.make_node("Cast", ["f"], ["i"], to=TensorProto.INT64),
             helper.make_node("Cast", ["i"], ["s"], to=TensorProto.STRING),
             helper.make_node("Cast", ["s"], ["y"], to=TensorProto.DOUBLE)]
    graph = open_model(_save(tmp_path / "floor.onnx", nodes,
                             [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 5])])).graph
    assert [n.op.name for n in graph.ops] == ["floor", "unsupported"]
    assert "Cast to ONNX type 8" in graph.ops[1].meta["reason"]


def test_a_declared_integer_value_keeps_its_values(tmp_path: Path) -> None:
    """The file's value_info says the Cast's input is int64 (an op the reader computes in floats, Relu of an int
    input): no truncation step, only int32's wrap (test_onnx_integer_arith.py)."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("Cast", ["r"], ["r32"], to=TensorProto.INT32),
             helper.make_node("Cast", ["r32"], ["y"], to=TensorProto.DOUBLE)]
    path = _save(tmp_path / "declared.onnx", nodes, [helper.make_tensor_value_info("n", TensorProto.INT64, [2, 5])],
                 value_info=[helper.make_tensor_value_info("r", TensorProto.INT64, [2, 5])])
    assert [n.op.name for n in open_model(path).graph.ops] == ["relu", "add", "remainder", "sub", "sub"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_mask_cast_to_int32_keeps_its_values_in_float32(tmp_path: Path, dtype: str) -> None:
    """onnxruntime's transformer optimizer casts the int64 attention mask to int32: the wrap into int32's range must
    leave 0 and 1 (and every value in range) as they are in a float32 session too, where 2^31 + 1 rounds to 2^31."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Cast", ["mask"], ["m32"], to=TensorProto.INT32),
             helper.make_node("Cast", ["m32"], ["mf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["mf", "x"], ["y"])]
    path = _save(tmp_path / "mask.onnx", nodes, [helper.make_tensor_value_info("mask", TensorProto.INT64, [2, 4]),
                                                 helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                 out_shape=(2, 4))
    mask = np.array([[1, 1, 0, 0], [1, -3, 70000, -(2**31)]], dtype=np.int64)
    x = np.linspace(0.5, 1.2, 8).reshape(2, 4)
    s = open_session(path, data={"mask": mask, "x": x}, loss="none", dtype=dtype)
    s.run_to_end()
    np.testing.assert_array_equal(np.asarray(s.value("y"), dtype=np.float64), (mask * x.astype(dtype)).astype(dtype))


class Buckets(torch.nn.Module):
    """T5's bucket arithmetic on computed values (a log scale truncated to int64, capped), a `.long()` of a computed
    float and a bool mask of one. Its scalars are exact in float32: the dynamo exporter writes them so."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x: Any) -> Any:
        h = self.fc(x) * 3.75
        whole = h.long()  # −2.7 → −2
        large = 2 + (torch.log(h.abs() + 1) * 1.25).to(torch.long)
        capped = torch.minimum(large, torch.full_like(large, 5))
        mask = (h - whole).to(torch.bool)
        return torch.where(mask, h, 0.5) + whole * h + capped * h


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_exported_casts_match_autograd(dynamo: bool, tmp_path: Path) -> None:
    if dynamo:
        pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = Buckets().double().eval()
    x = np.random.default_rng(3).standard_normal((3, 4))
    path = tmp_path / "buckets.onnx"
    zoo.export_onnx(model, (x,), path, dynamo)
    graph = open_model(path).graph
    assert not [n for n in graph if n.op.name == "unsupported"]
    assert sum(n.op.name == "fmod" for n in graph) == 2  # .long() twice; the int64 arithmetic after adds none
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    params = dict(model.named_parameters())
    want = torch.func.functional_call(model, params, (xt,))
    names = {n.name: n for n in graph.inputs}
    wrt = {next(iter(names)): xt}
    for p in graph:
        if p.op.name == "parameter" and p.name.replace("_", ".").endswith(("fc.weight", "fc.bias")):
            wrt[p.name] = params["fc.weight" if p.name.endswith("weight") else "fc.bias"]
    assert len(wrt) == 3, [p.name for p in graph if p.op.name == "parameter"]
    _check(path, {graph.inputs[0].name: x}, want, wrt)

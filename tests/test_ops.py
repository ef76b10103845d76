"""Every op of the catalog on the NumPy backend: forward and hand-written VJP, against finite differences
and torch.

One table of cases drives three parametrized checks (tinygrad style): the VJP against central differences in
float64, forward and gradients against torch autograd in float64, and float32 staying float32. Hypothesis then
varies the shapes: broadcasting, reductions, matrix products, reshape and transpose.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from propscope.backends.numpy import KERNELS, NumpyBackend
from propscope.debugger.gradcheck import numeric_gradient, relative_error
from propscope.graph.ir import Graph, Node
from propscope.graph.ops import CATALOG

Array = np.ndarray
Maker1 = Callable[[np.random.Generator], Array]
HYPOTHESIS = settings(max_examples=25, deadline=None)


# -- inputs ---------------------------------------------------------------------------------
def normal(*shape: int) -> Maker1:
    return lambda rng: rng.standard_normal(shape)


def away_from_zero(*shape: int, low: float = 0.2, high: float = 2.0) -> Maker1:
    """Values with |v| in [low, high]: kinks (relu, step) and poles (1/b) stay well outside the stencil."""
    return lambda rng: rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def positive(*shape: int, low: float = 0.5, high: float = 2.0) -> Maker1:
    return lambda rng: rng.uniform(low, high, shape)


def probabilities(*shape: int) -> Maker1:
    return lambda rng: rng.uniform(0.1, 0.9, shape)


def class_indices(n: int, classes: int) -> Maker1:
    return lambda rng: rng.integers(0, classes, n) if n else np.array(rng.integers(0, classes))


def one_hot(n: int, classes: int) -> Maker1:
    return lambda rng: np.eye(classes)[rng.integers(0, classes, n)]


def soft_targets(n: int, classes: int) -> Maker1:
    def make(rng: np.random.Generator) -> Array:
        t = rng.uniform(0.1, 1.0, (n, classes))
        return t / t.sum(axis=1, keepdims=True)

    return make


@dataclass(frozen=True)
class Case:
    op: str
    makers: tuple[Maker1, ...]
    torch_fn: Callable[..., Any]  # (F, torch, *tensors) -> tensor, the same function in torch
    attrs: dict[str, Any] = field(default_factory=dict)
    tag: str = ""
    torch_grad: bool = True  # False where torch defines no derivative (Heaviside step)

    @property
    def id(self) -> str:
        return f"{self.op}-{self.tag}" if self.tag else self.op

    def arrays(self, seed: int = 0) -> list[Array]:
        rng = np.random.default_rng(seed)
        return [make(rng) for make in self.makers]


def _sse(F: Any, torch: Any, p: Any, y: Any) -> Any:
    return 0.5 * ((p - y) ** 2).sum()


# One row (or more) per op of the catalog; a new op needs its rows here (test_every_op_has_a_case_here).
CASES = [
    Case("add", (normal(3, 4), normal(4)), lambda F, t, a, b: a + b),
    Case("add", (normal(3, 1), normal(1, 4)), lambda F, t, a, b: a + b, tag="outer"),
    Case("sub", (normal(2, 3), normal(2, 1)), lambda F, t, a, b: a - b),
    Case("mul", (normal(3, 1), normal(1, 4)), lambda F, t, a, b: a * b),
    Case("mul", (normal(), normal(2, 3)), lambda F, t, a, b: a * b, tag="scalar"),
    Case("div", (normal(2, 3), away_from_zero(3, low=0.5)), lambda F, t, a, b: a / b),
    Case("neg", (normal(2, 3),), lambda F, t, a: -a),
    Case("pow", (normal(2, 3),), lambda F, t, a: a**2.0, {"exponent": 2.0}, "square"),
    Case("pow", (normal(2, 3),), lambda F, t, a: a**3.0, {"exponent": 3.0}, "cube"),
    Case("pow", (positive(2, 3),), lambda F, t, a: a**0.5, {"exponent": 0.5}, "sqrt"),
    Case("pow", (positive(2, 3),), lambda F, t, a: a**-1.5, {"exponent": -1.5}, "negative"),
    Case("exp", (normal(2, 3),), lambda F, t, z: t.exp(z)),
    Case("log", (positive(2, 3),), lambda F, t, z: t.log(z)),
    Case("matmul", (normal(3, 4), normal(4, 2)), lambda F, t, a, b: a @ b),
    Case("matmul", (normal(4), normal(2, 4, 3)), lambda F, t, a, b: t.matmul(a, b), tag="vector-batched"),
    Case("linear", (normal(5, 3), normal(3, 4), normal(4)), lambda F, t, x, w, b: x @ w + b, tag="tutorial"),
    Case("linear", (normal(5, 3), normal(4, 3), normal(4)), lambda F, t, x, w, b: F.linear(x, w, b),
         {"transpose_weight": True}, "torch"),
    Case("linear", (normal(3), normal(3), normal()), lambda F, t, x, w, b: x @ w + b, tag="perceptron"),
    Case("linear", (normal(2, 5, 3), normal(4, 3), normal(4)), lambda F, t, x, w, b: F.linear(x, w, b),
         {"transpose_weight": True}, "torch-batched"),
    Case("linear", (normal(5, 3), normal(3, 4), normal(1, 4)), lambda F, t, x, w, b: x @ w + b,
         tag="row-bias"),
    Case("sum", (normal(2, 3, 4),), lambda F, t, x: x.sum()),
    Case("sum", (normal(2, 3, 4),), lambda F, t, x: x.sum(dim=1), {"axis": 1}, "axis"),
    Case("sum", (normal(2, 3, 4),), lambda F, t, x: x.sum(dim=(0, 2), keepdim=True),
         {"axis": (0, -1), "keepdims": True}, "axes-keepdims"),
    Case("mean", (normal(2, 3, 4),), lambda F, t, x: x.mean()),
    Case("mean", (normal(2, 3, 4),), lambda F, t, x: x.mean(dim=-1, keepdim=True),
         {"axis": -1, "keepdims": True}, "axis-keepdims"),
    Case("mean", (normal(2, 3, 4),), lambda F, t, x: x.mean(dim=(0, 1)), {"axis": (0, 1)}, "axes"),
    Case("reshape", (normal(2, 3, 4),), lambda F, t, x: x.reshape(4, -1), {"shape": (4, -1)}),
    Case("transpose", (normal(2, 3, 4),), lambda F, t, x: x.permute(1, 2, 0), {"axes": (1, 2, 0)}),
    Case("transpose", (normal(2, 3),), lambda F, t, x: x.T, tag="default"),
    Case("step", (away_from_zero(3, 4),), lambda F, t, z: t.heaviside(z, t.zeros_like(z)), torch_grad=False),
    Case("sigmoid", (normal(3, 4),), lambda F, t, z: t.sigmoid(z)),
    Case("tanh", (normal(3, 4),), lambda F, t, z: t.tanh(z)),
    Case("relu", (away_from_zero(3, 4),), lambda F, t, z: F.relu(z)),
    Case("leaky_relu", (away_from_zero(3, 4),), lambda F, t, z: F.leaky_relu(z, 0.01)),
    Case("leaky_relu", (away_from_zero(3, 4),), lambda F, t, z: F.leaky_relu(z, 0.2), {"negative_slope": 0.2},
         "0.2"),
    Case("gelu", (normal(3, 4),), lambda F, t, z: F.gelu(z), tag="exact"),
    Case("gelu", (normal(3, 4),), lambda F, t, z: F.gelu(z, approximate="tanh"), {"approximate": "tanh"},
         "tanh"),
    Case("silu", (normal(3, 4),), lambda F, t, z: F.silu(z)),
    Case("silu", (normal(3, 4),), lambda F, t, z: z * t.sigmoid(1.5 * z), {"beta": 1.5}, "beta"),
    Case("softmax", (normal(3, 4),), lambda F, t, z: F.softmax(z, dim=-1)),
    Case("softmax", (normal(3, 4),), lambda F, t, z: F.softmax(z, dim=0), {"axis": 0}, "axis0"),
    Case("log_softmax", (normal(3, 4),), lambda F, t, z: F.log_softmax(z, dim=-1)),
    Case("log_softmax", (normal(3, 4),), lambda F, t, z: F.log_softmax(z, dim=0), {"axis": 0}, "axis0"),
    Case("mse", (normal(4, 2), normal(4, 2)), lambda F, t, p, y: F.mse_loss(p, y)),
    Case("sse", (normal(4, 2), normal(4, 2)), _sse),
    Case("bce", (probabilities(4, 1), probabilities(4, 1)), lambda F, t, p, y: F.binary_cross_entropy(p, y),
         tag="soft"),
    Case("bce", (probabilities(6), lambda rng: rng.integers(0, 2, 6).astype(float)),
         lambda F, t, p, y: F.binary_cross_entropy(p, y), tag="labels"),
    Case("cross_entropy", (normal(5, 3), class_indices(5, 3)),
         lambda F, t, z, y: F.cross_entropy(z, y.long()), tag="indices"),
    Case("cross_entropy", (normal(5, 3), one_hot(5, 3)), lambda F, t, z, y: F.cross_entropy(z, y),
         tag="one-hot"),
    Case("cross_entropy", (normal(5, 3), soft_targets(5, 3)), lambda F, t, z, y: F.cross_entropy(z, y),
         tag="probabilities"),
    Case("cross_entropy", (normal(4), class_indices(0, 4)), lambda F, t, z, y: F.cross_entropy(z, y.long()),
         tag="unbatched"),
]


# -- running one op ---------------------------------------------------------------------------
def one_op(op: str, arrays: list[Array], attrs: dict[str, Any] | None = None) -> Node:
    """A graph holding one op on input leaves shaped like `arrays`; returns the op's node."""
    g = Graph(op)
    leaves = [g.input(f"in{i}", np.shape(a)) for i, a in enumerate(arrays)]
    node = g.add(op, *leaves, name="out", attrs=attrs or {})
    g.set_outputs(node)
    return node


def check_vjp(op: str, arrays: list[Array], attrs: dict[str, Any] | None = None, seed: int = 0) -> list[Any]:
    """VJP of `op` against central differences of sum(out * upstream), in float64; returns the gradients."""
    node = one_op(op, arrays, attrs)
    backend = NumpyBackend("float64")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    assert out.shape == node.shape, f"{op}: forward gave {out.shape}, the shape rule says {node.shape}"
    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape)
    grads = backend.vjp(node, inputs, out, upstream)
    assert len(grads) == len(inputs)
    for i, (x, grad) in enumerate(zip(inputs, grads, strict=True)):
        if not node.op.differentiable(i):
            assert grad is None, f"{op}: the target {node.op.role(i)} must get no gradient"
            continue
        assert grad is not None and grad.shape == x.shape, f"{op}: gradient of input {i} has the wrong shape"
        numeric = numeric_gradient(lambda: np.sum(backend.forward(node, inputs) * upstream), x)
        if max(np.linalg.norm(grad), np.linalg.norm(numeric)) < 1e-9:
            # a zero gradient (softmax over one class): the numeric one is rounding noise
            assert np.max(np.abs(grad - numeric), initial=0.0) < 1e-10
            continue
        err = relative_error(grad, numeric)
        assert err < 1e-7, f"{op} input {i} ({node.op.role(i)}): relative error {err:.3g}\n{grad}\n{numeric}"
    return grads


# -- the catalog --------------------------------------------------------------------------------
NON_LEAF = sorted(name for name, op in CATALOG.items() if not op.is_leaf)


def family_case_ops() -> set[str]:
    """The ops of every case table: this file's, test_nn_ops.py's and each op family's `test_ops_*.py`."""
    import importlib

    from test_nn_ops import NN_OPS  # the network-layer ops (conv, norms, cells, attention) have their own table

    ops = {c.op for c in CASES} | set(NN_OPS)
    for path in sorted(Path(__file__).parent.glob("test_ops_*.py")):
        ops |= {c.op for c in importlib.import_module(path.stem).CASES}
    return ops


def test_every_op_has_a_case_here() -> None:
    assert NON_LEAF, "the catalog is empty"
    missing = set(NON_LEAF) - family_case_ops()
    assert not missing, f"ops without a test case in test_ops.py, test_nn_ops.py or test_ops_*.py: {sorted(missing)}"


@pytest.mark.parametrize("name", NON_LEAF)
def test_catalog_row_is_complete(name: str) -> None:
    op = CATALOG[name]
    assert name in KERNELS, f"{name} has no NumPy kernel"
    assert op.formula.strip() and op.summary.strip(), f"{name} has no display formula or summary"
    assert op.roles, f"{name} names no inputs"
    assert set(op.derivatives) <= set(op.roles), f"{name}: derivative formulas for unknown roles"
    assert op.nondifferentiable <= set(op.roles), f"{name}: non-differentiable roles that it does not have"
    for i, role in enumerate(op.roles):
        if op.differentiable(i):  # integer inputs (a loss's class indices) need no formula
            assert op.derivatives.get(role, "").strip(), f"{name}: no derivative formula for {role}"
            assert op.derivative(i) == op.derivatives[role]
    if op.elementwise:
        assert KERNELS[name].elementwise, f"{name} is elementwise but its kernel gives no partials"


def test_leaves_take_no_inputs() -> None:
    for name in ("input", "parameter", "constant"):
        assert CATALOG[name].is_leaf and not CATALOG[name].roles


# -- the table of cases -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_vjp_matches_finite_differences(case: Case) -> None:
    grads = check_vjp(case.op, case.arrays(), case.attrs)
    if case.op == "step":  # its derivative is zero almost everywhere, and shown honestly as zero
        assert not np.any(grads[0])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float32_stays_float32(case: Case) -> None:
    arrays = case.arrays()
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend("float32")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    assert out.dtype == np.float32, f"{case.id}: forward gave {out.dtype}"
    grads = backend.vjp(node, inputs, out, backend.ones(out.shape))
    for i, g in enumerate(grads):
        if g is not None:
            assert g.dtype == np.float32, f"{case.id}: gradient of input {i} is {g.dtype}"
    reference = NumpyBackend("float64").forward(node, [np.asarray(a, dtype=np.float64) for a in arrays])
    np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", [c for c in CASES if KERNELS[c.op].elementwise], ids=lambda c: c.id)
def test_partials_give_the_vjp(case: Case) -> None:
    """The chain-rule view shows upstream × local per element; summed over broadcast axes it is the VJP."""
    arrays = case.arrays()
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend("float64")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    upstream = np.random.default_rng(7).standard_normal(out.shape)
    partials = backend.partials(node, inputs, out)
    assert partials is not None and len(partials) == len(inputs)
    for x, local, grad in zip(inputs, partials, backend.vjp(node, inputs, out, upstream), strict=True):
        if local is None:  # a loss's target
            assert grad is None
            continue
        assert grad is not None
        full = np.broadcast_to(upstream * local, np.broadcast_shapes(out.shape, local.shape))
        lead = out.ndim - x.ndim
        summed = full.sum(axis=tuple(range(lead))) if lead else full
        summed = summed.sum(axis=tuple(i for i, d in enumerate(x.shape) if d == 1), keepdims=True)
        np.testing.assert_allclose(summed.reshape(x.shape), grad, rtol=1e-13, atol=1e-13)


def test_non_elementwise_ops_give_no_partials() -> None:
    arrays = [np.ones((2, 3)), np.ones((3, 2))]
    node = one_op("matmul", arrays)
    backend = NumpyBackend("float64")
    assert backend.partials(node, arrays, backend.forward(node, arrays)) is None


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_torch(case: Case) -> None:
    import torch
    import torch.nn.functional as F

    arrays = case.arrays(seed=3)
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend("float64")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    upstream = np.random.default_rng(4).standard_normal(out.shape)
    grads = backend.vjp(node, inputs, out, upstream)

    tensors = [torch.tensor(a) for a in arrays]
    wants_grad = [case.torch_grad and node.op.differentiable(i) for i in range(len(arrays))]
    for t, wants in zip(tensors, wants_grad, strict=True):
        t.requires_grad_(wants)
    expected = case.torch_fn(F, torch, *tensors)
    assert tuple(expected.shape) == out.shape
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    if not case.torch_grad:
        assert all(g is None or not np.any(g) for g in grads)
        return
    wrt = [t for t, wants in zip(tensors, wants_grad, strict=True) if wants]
    torch_grads = iter(torch.autograd.grad(expected, wrt, grad_outputs=torch.tensor(upstream)))
    for i, wants in enumerate(wants_grad):
        if wants:
            np.testing.assert_allclose(grads[i], next(torch_grads).numpy(), rtol=1e-10, atol=1e-12,
                                       err_msg=f"{case.id}: gradient of input {i}")
        else:
            assert grads[i] is None


# -- shapes from hypothesis -----------------------------------------------------------------------
seeds = st.integers(0, 2**16)


@HYPOTHESIS
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       op=st.sampled_from(["add", "sub", "mul", "div"]), seed=seeds)
def test_broadcasting_gradients_sum_back(shapes: Any, op: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a_shape, b_shape = shapes.input_shapes
    b = away_from_zero(*b_shape, low=0.5)(rng) if op == "div" else rng.standard_normal(b_shape)
    grads = check_vjp(op, [rng.standard_normal(a_shape), b], seed=seed)
    assert grads[0].shape == a_shape and grads[1].shape == b_shape


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((3, 1), (1, 4)), ((4,), (2, 3, 4)), ((), (2, 3)), ((2, 3), ()), ((), ()), ((2, 1, 4), (3, 1))],
)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_broadcasting_named_shapes(op: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    grads = check_vjp(op, [rng.standard_normal(a_shape), away_from_zero(*b_shape, low=0.5)(rng)])
    assert grads[0].shape == a_shape and grads[1].shape == b_shape


@st.composite
def reductions(draw: st.DrawFn) -> tuple[tuple[int, ...], Any, bool]:
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3))
    ndim = len(shape)
    axis = draw(st.one_of(
        st.none(),
        st.integers(-ndim, ndim - 1),
        st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple),
    ))
    return shape, axis, draw(st.booleans())


@HYPOTHESIS
@given(spec=reductions(), op=st.sampled_from(["sum", "mean"]), seed=seeds)
def test_reductions(spec: tuple[tuple[int, ...], Any, bool], op: str, seed: int) -> None:
    shape, axis, keepdims = spec
    x = np.random.default_rng(seed).standard_normal(shape)
    node = one_op(op, [x], {"axis": axis, "keepdims": keepdims})
    np_axis = axis if axis is None or isinstance(axis, int) else tuple(axis)
    expected = getattr(np, op)(x, axis=np_axis, keepdims=keepdims)
    assert node.shape == np.shape(expected)
    np.testing.assert_allclose(NumpyBackend("float64").forward(node, [x]), expected, rtol=1e-14)
    check_vjp(op, [x], {"axis": axis, "keepdims": keepdims}, seed=seed)


@HYPOTHESIS
@given(shapes=hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2, max_side=3),
       seed=seeds)
def test_matmul_shapes(shapes: Any, seed: int) -> None:
    """1-D operands on either side and broadcast batch axes, as np.matmul defines them."""
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(s) for s in shapes.input_shapes)
    node = one_op("matmul", [a, b])
    assert node.shape == shapes.result_shape == np.matmul(a, b).shape
    grads = check_vjp("matmul", [a, b], seed=seed)
    assert grads[0].shape == a.shape and grads[1].shape == b.shape


@pytest.mark.parametrize(
    ("a_shape", "b_shape"), [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 1, 3, 4), (5, 4, 2))]
)
def test_matmul_named_shapes(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    check_vjp("matmul", [rng.standard_normal(a_shape), rng.standard_normal(b_shape)])


@HYPOTHESIS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=3), data=st.data(), seed=seeds)
def test_reshape_with_minus_one(shape: tuple[int, ...], data: st.DataObject, seed: int) -> None:
    size = int(np.prod(shape))
    divisors = [d for d in range(1, size + 1) if size % d == 0]
    first = data.draw(st.sampled_from(divisors))
    target = data.draw(st.sampled_from([(first, -1), (-1, first), (-1,), (first, -1, 1)]))
    x = np.random.default_rng(seed).standard_normal(shape)
    node = one_op("reshape", [x], {"shape": target})
    assert node.shape == x.reshape(target).shape
    check_vjp("reshape", [x], {"shape": target}, seed=seed)


@HYPOTHESIS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, max_side=3), data=st.data(), seed=seeds)
def test_transpose_with_axes(shape: tuple[int, ...], data: st.DataObject, seed: int) -> None:
    ndim = len(shape)
    perm = data.draw(st.permutations(range(ndim)))
    negative = data.draw(st.lists(st.booleans(), min_size=ndim, max_size=ndim))
    axes = tuple(p - ndim if neg else p for p, neg in zip(perm, negative, strict=True))
    x = np.random.default_rng(seed).standard_normal(shape)
    node = one_op("transpose", [x], {"axes": axes})
    assert node.shape == np.transpose(x, axes).shape
    np.testing.assert_array_equal(NumpyBackend("float64").forward(node, [x]), np.transpose(x, axes))
    check_vjp("transpose", [x], {"axes": axes}, seed=seed)


@HYPOTHESIS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
       op=st.sampled_from(["softmax", "log_softmax"]), data=st.data(), seed=seeds)
def test_softmax_along_any_axis(shape: tuple[int, ...], op: str, data: st.DataObject, seed: int) -> None:
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    check_vjp(op, [x], {"axis": axis}, seed=seed)


# -- a shape rule that accepts a node promises the kernel can run it -----------------------------
@pytest.mark.parametrize(
    ("op", "shapes", "attrs"),
    [
        ("sum", [()], {"axis": 0}),  # NumPy has no axis 0 on a 0-D array
        ("mean", [(2, 3)], {"axis": 2}),
        ("sum", [(2, 3)], {"axis": (0, -3)}),
        ("transpose", [(2, 3)], {"axes": (1, 2)}),  # axis 2 does not exist, even if 2 % 2 == 0
        ("transpose", [(2, 3)], {"axes": (0, -2)}),
        ("transpose", [(2, 3)], {"axes": (0, 1, 2)}),
        ("softmax", [()], {}),
        ("log_softmax", [(2, 3)], {"axis": 2}),
        ("reshape", [(2, 3)], {"shape": (4, -1)}),
        ("reshape", [(2, 3)], {"shape": (-1, -1)}),
        ("add", [(2, 3), (3, 2)], {}),
        ("matmul", [(2, 3), (2, 3)], {}),
        ("matmul", [(), (3,)], {}),
        ("linear", [(5, 3), (3, 4), (4,)], {"transpose_weight": True}),
        ("mse", [(4, 1), (4,)], {}),
        ("cross_entropy", [(2, 3, 4), (2, 3)], {}),
        ("cross_entropy", [(5, 3), (5, 2)], {}),
    ],
)
def test_shape_rule_refuses_what_the_kernel_cannot_run(op: str, shapes: list[tuple[int, ...]],
                                                       attrs: dict[str, Any]) -> None:
    from propscope.graph.errors import ShapeError

    with pytest.raises(ShapeError, match=op):
        one_op(op, [np.ones(s) for s in shapes], attrs)


@pytest.mark.parametrize(
    ("op", "shape", "attrs"),
    [("sum", (2, 3), {"axis": ()}), ("mean", (2, 3), {"axis": (1, -1)}), ("transpose", (), {}),
     ("transpose", (), {"axes": ()}), ("reshape", (), {"shape": (1, 1)}), ("reshape", (1, 1), {"shape": ()}),
     ("sum", (), {})],
)
def test_degenerate_axes_and_shapes(op: str, shape: tuple[int, ...], attrs: dict[str, Any]) -> None:
    check_vjp(op, [np.random.default_rng(5).standard_normal(shape)], attrs)


def test_formulas_have_no_combining_hat_or_tilde():
    """Qt 6.11's text layout (with DejaVu Sans, Linux's usual font) draws a combining circumflex or tilde
    (x̂ = x + U+0302, c̃) a line away from its letter: the chain-rule dock showed LayerNorm's hats over the step
    header and none on the formula. Precomposed letters (ĉ, xₙ) and the macron of x̄ are drawn where they belong."""
    for op in CATALOG.values():
        for text in (op.formula, op.summary, op.symbol, op.out, *op.derivatives.values()):
            assert "\u0302" not in text and "\u0303" not in text, f"{op.name}: {text}"

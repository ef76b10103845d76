"""Selections, not products: an infinite or NaN upstream gradient gives exactly torch autograd's input gradient.

Where torch's backward selects (relu's threshold_backward, clamp's and hardtanh's where(), maximum's
masked_fill, where(), triu applied to the gradient, the zeros of floor/sign/step), the dropped part is 0
whatever the upstream; where it multiplies (sigmoid, abs, leaky_relu, elu, ...), inf × 0 is NaN in torch
too. Each case crosses every input value (kinks and both sides of them included) with an upstream of
+inf, −inf, NaN and a finite number, and compares the NaN/±inf pattern exactly and the finite values
closely, in float64 and float32, through both NumPy paths: the Session's `vjp` and the trainer's
compiled program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from opcheck import one_op

from propscope.backends.numpy import NumpyBackend
from propscope.backends.numpy.kernels import KERNELS
from propscope.graph.ir import Graph

INF, NAN = np.inf, np.nan
SPECIAL = (INF, -INF, NAN, 0.75)  # the upstream rows: each input value meets each of these


@dataclass(frozen=True)
class Sel:
    op: str
    values: tuple[Any, ...]  # per input: the values to cross with the upstream rows (a row each)
    torch_fn: Callable[..., Any]  # (F, torch, *tensors) -> tensor
    attrs: dict[str, Any] = field(default_factory=dict)
    tag: str = ""
    selects: bool = True  # False: a product op, a control
    shapes: tuple[tuple[int, ...] | None, ...] = ()  # per input, a shape to broadcast from (None: the full grid)

    @property
    def id(self) -> str:
        return f"{self.op}-{self.tag}" if self.tag else self.op


def kinks(*points: float) -> tuple[float, ...]:
    """The points themselves, values just either side and far out on both sides."""
    vals = {-50.0, -7.0, 0.0, 7.0, 50.0}
    for p in points:
        vals |= {p - 0.5, p, p + 0.5}
    return tuple(sorted(vals))


ZERO = kinks(0.0)
ROUNDING = (-2.5, -1.5, -0.5, -0.3, 0.0, 0.4, 0.5, 1.5, 2.7)

CASES = [
    # selecting ops
    Sel("step", (ZERO,), lambda F, t, z: (z > 0).to(z.dtype)),
    Sel("relu", (ZERO,), lambda F, t, z: t.relu(z)),
    Sel("clamp", (kinks(-0.5, 0.75),), lambda F, t, z: t.clamp(z, -0.5, 0.75), {"min": -0.5, "max": 0.75}),
    Sel("clamp", (kinks(0.25),), lambda F, t, z: t.clamp(z, min=0.25), {"min": 0.25}, "min-only"),
    Sel("clamp", (kinks(0.25),), lambda F, t, z: t.clamp(z, max=0.25), {"max": 0.25}, "max-only"),
    Sel("clamp", (kinks(-1.0, 1.0),), lambda F, t, z: F.hardtanh(z), {"min": -1.0, "max": 1.0, "inclusive": False},
        "hardtanh"),
    Sel("clamp", (kinks(0.0, 6.0),), lambda F, t, z: F.relu6(z), {"min": 0.0, "max": 6.0, "inclusive": False},
        "relu6"),
    Sel("hardswish", (kinks(-3.0, -1.5, 3.0),), lambda F, t, z: F.hardswish(z)),
    Sel("hardsigmoid", (kinks(-3.0, 3.0),), lambda F, t, z: F.hardsigmoid(z)),
    Sel("shrink", (kinks(-0.5, 0.5),), lambda F, t, z: F.softshrink(z, 0.5), {"lambd": 0.5, "bias": 0.5},
        "softshrink"),
    Sel("shrink", (kinks(-0.5, 0.5),), lambda F, t, z: F.hardshrink(z, 0.5), {"lambd": 0.5, "bias": 0.0},
        "hardshrink"),
    Sel("sign", (ZERO,), lambda F, t, z: t.sign(z)),
    Sel("floor", (ROUNDING,), lambda F, t, z: t.floor(z)),
    Sel("ceil", (ROUNDING,), lambda F, t, z: t.ceil(z)),
    Sel("round", (ROUNDING,), lambda F, t, z: t.round(z)),
    Sel("maximum", ((-1.0, 0.0, 0.0, 2.0, 3.0), (0.0, 0.0, 1.0, 2.0, -3.0)), lambda F, t, a, b: t.maximum(a, b)),
    Sel("minimum", ((-1.0, 0.0, 0.0, 2.0, 3.0), (0.0, 0.0, 1.0, 2.0, -3.0)), lambda F, t, a, b: t.minimum(a, b)),
    Sel("maximum", ((-1.0, 0.0, 0.5, 2.0, 3.0), (0.5,)), lambda F, t, a, b: t.maximum(a, b), tag="broadcast",
        shapes=(None, (1, 1))),
    Sel("where", ((1, 0, 1, 0, 1), (1.0, -2.0, 0.0, 4.0, -5.0), (-1.0, 2.0, 3.0, 0.0, 5.0)),
        lambda F, t, c, a, b: t.where(c != 0, a, b)),
    Sel("where", ((1, 0, 1, 1, 0), (1.0, -2.0, 0.0, 4.0, -5.0), (2.5,)),
        lambda F, t, c, a, b: t.where(c != 0, a, b), tag="broadcast", shapes=(None, None, (1, 1))),
    Sel("triu", ((1.0, -2.0, 3.0, 0.0),), lambda F, t, x: t.triu(x, 0), {"diagonal": 0}),
    Sel("tril", ((1.0, -2.0, 3.0, 0.0),), lambda F, t, x: t.tril(x, 1), {"diagonal": 1}),
    Sel("pow", ((-2.0, 0.0, 1.5),), lambda F, t, z: z**0, {"exponent": 0.0}, "zero"),
    Sel("pow", ((-2.0, 0.0, 1.5),), lambda F, t, z: z**2, {"exponent": 2.0}, "square"),
    Sel("power", ((-2.0, 0.0, 0.0, 1.5, 2.0, 0.0), (0.0, 0.0, 2.0, 0.0, 3.0, -1.0)),
        lambda F, t, a, b: t.pow(a, b)),
    # products: torch multiplies too, so inf × 0 is NaN on both sides
    Sel("sigmoid", (kinks(0.0),), lambda F, t, z: t.sigmoid(z), selects=False),
    Sel("tanh", (kinks(0.0),), lambda F, t, z: t.tanh(z), selects=False),
    Sel("abs", (ZERO,), lambda F, t, z: t.abs(z), selects=False),
    Sel("leaky_relu", (ZERO,), lambda F, t, z: F.leaky_relu(z, 0.0), {"negative_slope": 0.0}, "slope0",
        selects=False),
    Sel("leaky_relu", (ZERO,), lambda F, t, z: F.leaky_relu(z, 0.1), {"negative_slope": 0.1}, selects=False),
    Sel("exp", ((-800.0, -1.0, 0.0, 2.0),), lambda F, t, z: t.exp(z), selects=False),
    Sel("mul", ((0.0, 1.0, -2.0), (3.0, 0.0, 0.0)), lambda F, t, a, b: a * b, selects=False),
    Sel("elu", ((-800.0, -1.0, 0.0, 2.0),), lambda F, t, z: F.elu(z), selects=False),
    Sel("softplus", ((-800.0, -1.0, 0.0, 30.0),), lambda F, t, z: F.softplus(z), selects=False),
]


def grid(case: Sel, dtype: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Inputs shaped (4, n), each column one combination of input values, and the upstream: row r all SPECIAL[r]."""
    n = max(len(v) for v in case.values)
    arrays = []
    for i, vals in enumerate(case.values):
        col = np.resize(np.asarray(vals, dtype=np.float64), n)
        full = np.broadcast_to(col, (len(SPECIAL), n))
        if case.op in ("triu", "tril"):
            full = np.broadcast_to(col, (len(SPECIAL), n, n))
        shape = case.shapes[i] if i < len(case.shapes) else None
        a = np.asarray(vals[0]) * np.ones(shape) if shape is not None else full.copy()
        arrays.append(a.astype(dtype) if not (case.op == "where" and i == 0) else a.astype(bool))
    out_shape = np.broadcast_shapes(*(a.shape for a in arrays))
    upstream = np.empty(out_shape, dtype=dtype)
    for r, v in enumerate(SPECIAL):
        upstream[r] = v
    return arrays, upstream


def torch_grads(case: Sel, arrays: list[np.ndarray], upstream: np.ndarray) -> list[np.ndarray | None]:
    import torch
    import torch.nn.functional as F

    tensors = [torch.tensor(a) for a in arrays]
    for t in tensors:
        t.requires_grad_(t.is_floating_point())
    out = case.torch_fn(F, torch, *tensors)
    wrt = [t for t in tensors if t.requires_grad]
    if not out.requires_grad:  # no derivative at all (step): torch's backend gives zeros
        found: Any = iter([torch.zeros_like(t) for t in wrt])
    else:
        found = iter(torch.autograd.grad(out, wrt, grad_outputs=torch.tensor(upstream), allow_unused=True,
                                         materialize_grads=True))
    return [next(found).numpy() if t.requires_grad else None for t in tensors]


def assert_same(got: np.ndarray, want: np.ndarray, dtype: str, what: str) -> None:
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, torch {want.dtype}"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN pattern")
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want), err_msg=f"{what}: +inf pattern")
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want), err_msg=f"{what}: -inf pattern")
    fin = np.isfinite(want)
    rtol, atol = (1e-10, 1e-12) if dtype == "float64" else (1e-5, 1e-6)
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=atol, err_msg=f"{what}: finite values")


def program_grads(case: Sel, arrays: list[np.ndarray], upstream: np.ndarray, dtype: str) -> list[np.ndarray]:
    """The trainer's path: L = Σ op(inputs) · u, so the op's upstream is u, through NumpyProgram."""
    g = Graph(case.op)
    leaves = [g.parameter(f"in{i}", a.shape, dtype=str(a.dtype)) for i, a in enumerate(arrays)]
    y = g.add(case.op, *leaves, name="y", attrs=case.attrs)
    u = g.input("u", upstream.shape, dtype=dtype)
    loss = g.add("sum", g.add("mul", y, u, name="yu"), name="loss")
    g.set_outputs(loss)
    backend = NumpyBackend(dtype)
    wrt = [leaf.name for i, leaf in enumerate(leaves) if y.op.differentiable(i)]
    feed = {leaf.name: a for leaf, a in zip(leaves, arrays, strict=True)} | {"u": upstream}
    _, grads = backend.compile(g).loss_and_grads(feed, wrt)
    return [grads.get(f"in{i}") for i in range(len(arrays))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_non_finite_upstream_as_torch(case: Sel, dtype: str) -> None:
    assert KERNELS[case.op].selects == case.selects, f"{case.id}: selects should be {case.selects}"
    arrays, upstream = grid(case, dtype)
    want = torch_grads(case, arrays, upstream)
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend(dtype)
    out = backend.forward(node, arrays)
    got = backend.vjp(node, arrays, out, upstream)
    program = program_grads(case, arrays, upstream, dtype)
    for i, w in enumerate(want):
        if w is None or not node.op.differentiable(i):
            continue
        assert got[i] is not None
        assert_same(np.asarray(got[i]), w, dtype, f"{case.id} vjp, input {i}")
        assert_same(np.asarray(program[i]), w, dtype, f"{case.id} program, input {i}")
    if case.selects:  # the chain-rule view's partials are as before: what a ones upstream gives, per element
        ones = backend.vjp(node, arrays, out, np.ones_like(upstream))
        parts = backend.partials(node, arrays, out)
        assert parts is not None
        for i, (p, o) in enumerate(zip(parts, ones, strict=True)):
            if p is not None and o is not None and o.shape == out.shape:
                np.testing.assert_array_equal(np.broadcast_to(p, out.shape), o, err_msg=f"{case.id}: partials {i}")


def test_every_selecting_kernel_is_covered() -> None:
    """A kernel that selects is in the table above, so its non-finite upstream is checked against torch."""
    covered = {c.op for c in CASES if c.selects}
    assert {name for name, k in KERNELS.items() if k.selects} <= covered


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("op", "torch_name"), [("relu", "relu"), ("abs", "abs"), ("sign", "sign")])
def test_nan_input_as_torch(op: str, torch_name: str, dtype: str) -> None:
    """Where torch is consistent about a NaN input (its scalar and vectorised loops agree): relu passes
    the gradient (threshold_backward asks NaN <= 0), torch.sign(NaN) is 0, so abs's gradient there is 0
    for a finite upstream. (elu and hardtanh are not: their two loops give different answers.)"""
    import torch

    z = np.array([np.nan, -2.0, 0.0, np.nan, 3.0, np.inf, -np.inf, np.nan] * 5, dtype=dtype)
    upstream = np.resize(np.array([0.75, INF, -1.5, NAN, 2.0], dtype=dtype), z.shape)
    t = torch.tensor(z, requires_grad=True)
    y = getattr(torch, torch_name)(t)
    want = torch.autograd.grad(y, t, torch.tensor(upstream))[0].numpy()
    node = one_op(op, [z])
    backend = NumpyBackend(dtype)
    out = backend.forward(node, [z])
    np.testing.assert_array_equal(out, y.detach().numpy())
    assert_same(np.asarray(backend.vjp(node, [z], out, upstream)[0]), want, dtype, op)

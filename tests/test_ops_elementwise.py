"""The elementwise family's op table: one-input math, maximum/minimum/power/fmod/remainder and where.

Three checks per case (opcheck.py): derivative against central differences, NumPy against torch under
autograd, the two backends against each other in float32 and float64. Inputs keep clear of kinks (0 for
abs and sign, integers for floor/ceil, halves for round, ties for maximum, multiples of b for fmod);
the conventions at the kinks themselves (abs at 0, ties, 0 ** b, negative bases) are checked against
torch in KINKS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from opcheck import (
    Case,
    away_from_zero,
    check_against_torch,
    check_backends_agree,
    check_gradient,
    fixed,
    ints,
    normal,
    one_op,
    positive,
)

from propscope.backends.numpy import NumpyBackend
from propscope.graph.errors import ShapeError
from propscope.graph.ir import Graph


def off_integers(*shape: int, low: float = 0.1, high: float = 0.9) -> Any:
    """Whole numbers plus a fraction in [low, high]: clear of the jumps of floor, ceil (and round's halves)."""
    return lambda rng: rng.integers(-3, 3, shape) + rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def grid(*shape: int, gap: float = 0.1, offset: float = 0.0) -> Any:
    """Distinct values `gap` apart, shuffled; two grids with different offsets never tie."""
    return lambda rng: (rng.permutation(int(np.prod(shape))) * gap - 1.0 + offset).reshape(shape)


def mask(*shape: int) -> Any:
    return lambda rng: rng.random(shape) < 0.5


def torch_method(name: str) -> Any:
    """(F, torch, a, b) -> torch.<name>(a, b): the same comparison or logic written with torch."""
    return lambda F, t, a, b: getattr(t, name)(a, b)


MASK_OPS = ("compare", "logical", "isnan", "isinf")  # boolean outputs, whatever the float dtype

DIVISORS = np.array([[0.7], [-1.3], [2.0]])


def dividends(*shape: int) -> Any:
    """a = b·(k + f) with f in [0.2, 0.8] for the DIVISORS b: fmod and remainder stay clear of their jumps."""
    return lambda rng: DIVISORS * (rng.integers(-3, 3, shape) + rng.uniform(0.2, 0.8, shape))


CASES = [
    Case("abs", (away_from_zero(3, 4),), lambda F, t, a: t.abs(a)),
    Case("sign", (away_from_zero(3, 4),), lambda F, t, a: t.sign(a)),
    Case("sin", (normal(3, 4, scale=3.0),), lambda F, t, a: t.sin(a)),
    Case("cos", (normal(3, 4, scale=3.0),), lambda F, t, a: t.cos(a)),
    Case("asin", (positive(3, 4, low=-0.8, high=0.8),), lambda F, t, a: t.asin(a)),
    Case("acos", (positive(3, 4, low=-0.8, high=0.8),), lambda F, t, a: t.acos(a)),
    Case("atan", (normal(3, 4, scale=2.0),), lambda F, t, a: t.atan(a)),
    Case("sinh", (normal(3, 4, scale=2.0),), lambda F, t, a: t.sinh(a)),
    Case("cosh", (normal(3, 4, scale=2.0),), lambda F, t, a: t.cosh(a)),
    Case("asinh", (normal(3, 4, scale=2.0),), lambda F, t, a: t.asinh(a)),
    Case("acosh", (positive(3, 4, low=1.2, high=3.0),), lambda F, t, a: t.acosh(a)),
    Case("atanh", (positive(3, 4, low=-0.8, high=0.8),), lambda F, t, a: t.atanh(a)),
    Case("sqrt", (positive(3, 4),), lambda F, t, a: t.sqrt(a)),
    Case("rsqrt", (positive(3, 4),), lambda F, t, a: t.rsqrt(a)),
    Case("reciprocal", (away_from_zero(3, 4, low=0.5),), lambda F, t, a: t.reciprocal(a)),
    Case("log1p", (positive(3, 4, low=-0.5, high=3.0),), lambda F, t, a: t.log1p(a)),
    Case("log1p", (fixed([1e-18, -1e-12, 3e-9]),), lambda F, t, a: t.log1p(a), tag="tiny"),
    Case("expm1", (normal(3, 4),), lambda F, t, a: t.expm1(a)),
    Case("expm1", (fixed([1e-18, -1e-12, 3e-9]),), lambda F, t, a: t.expm1(a), tag="tiny"),
    Case("floor", (off_integers(3, 4),), lambda F, t, a: t.floor(a)),
    Case("ceil", (off_integers(3, 4),), lambda F, t, a: t.ceil(a)),
    Case("round", (off_integers(3, 4, high=0.4),), lambda F, t, a: t.round(a)),
    Case("maximum", (grid(3, 4), grid(3, 4, offset=0.05)), lambda F, t, a, b: t.maximum(a, b)),
    Case("maximum", (grid(3, 1), grid(1, 4, offset=0.05)), lambda F, t, a, b: t.maximum(a, b), tag="outer"),
    Case("maximum", (grid(2, 3, 4), fixed(0.025)), lambda F, t, a, b: t.maximum(a, b), tag="scalar"),
    Case("minimum", (grid(3, 4), grid(4, offset=0.05)), lambda F, t, a, b: t.minimum(a, b), tag="row"),
    Case("minimum", (fixed(-0.125), grid(2, 3)), lambda F, t, a, b: t.minimum(a, b), tag="scalar-first"),
    Case("power", (positive(3, 4), normal(3, 4)), lambda F, t, a, b: t.pow(a, b)),
    Case("power", (positive(3, 1), normal(1, 4)), lambda F, t, a, b: t.pow(a, b), tag="outer"),
    Case("power", (positive(2, 3, 4), normal(4)), lambda F, t, a, b: t.pow(a, b), tag="row-exponent"),
    Case("power", (positive(), normal(2, 3)), lambda F, t, a, b: t.pow(a, b), tag="scalar-base"),
    Case("atan2", (normal(3, 4), away_from_zero(3, 4)), lambda F, t, a, b: t.atan2(a, b)),
    Case("atan2", (normal(3, 1), normal(4)), lambda F, t, a, b: t.atan2(a, b), tag="outer"),
    Case("fmod", (dividends(3, 4), fixed(DIVISORS)), lambda F, t, a, b: t.fmod(a, b)),
    Case("remainder", (dividends(3, 4), fixed(DIVISORS)), lambda F, t, a, b: t.remainder(a, b)),
    Case("where", (mask(3, 4), normal(3, 4), normal(3, 4)), lambda F, t, c, a, b: t.where(c, a, b)),
    Case("where", (mask(3, 1), normal(1, 4), normal(4)), lambda F, t, c, a, b: t.where(c, a, b),
         tag="broadcast-all"),
    Case("where", (mask(2, 1, 4), normal(3, 1), normal()), lambda F, t, c, a, b: t.where(c, a, b),
         tag="scalar-b"),
    Case("where", (lambda rng: rng.integers(0, 2, (3, 4)).astype(float), normal(3, 4), normal(1)),
         lambda F, t, c, a, b: t.where(c != 0, a, b), tag="float-mask"),
    # masks: boolean outputs and no gradient into either side
    *(Case("compare", (ints(3, 3, 4), ints(3, 4)), torch_method(op), {"op": op}, op)
      for op in ("gt", "ge", "lt", "le", "eq", "ne")),
    Case("compare", (normal(3, 1), normal(4)), lambda F, t, a, b: a > b, {"op": "gt"}, "broadcast"),
    *(Case("logical", (mask(3, 4), mask(1, 4)), torch_method(f"logical_{op}"), {"op": op}, op)
      for op in ("and", "or", "xor")),
    Case("logical", (mask(3, 4),), lambda F, t, a: t.logical_not(a != 0), {"op": "not"}, "not"),
    Case("isnan", (fixed([[1.0, np.nan], [np.inf, -2.0]]),), lambda F, t, a: t.isnan(a)),
    Case("isinf", (fixed([[1.0, np.nan], [np.inf, -np.inf]]),), lambda F, t, a: t.isinf(a)),
    Case("isinf", (fixed([[1.0, np.nan], [np.inf, -np.inf]]),), lambda F, t, a: t.isposinf(a),
         {"detect_negative": False}, "positive"),
]

# Exactly at a kink or outside a domain: the conventions are torch's (checked against torch only).
KINKS = [
    Case("abs", (fixed([0.0, -0.0, 1.0]),), lambda F, t, a: t.abs(a), tag="at-0"),
    Case("sign", (fixed([0.0, -2.0, 3.0]),), lambda F, t, a: t.sign(a), tag="at-0"),
    Case("maximum", (fixed([1.0, 2.0, 3.0]), fixed([1.0, 1.0, 3.0])), lambda F, t, a, b: t.maximum(a, b),
         tag="ties"),
    Case("minimum", (fixed([[1.0], [2.0]]), fixed([1.0, 2.0, 3.0])), lambda F, t, a, b: t.minimum(a, b),
         tag="ties-broadcast"),
    Case("power", (fixed([0.0, 0.0, 0.0, 2.0, 3.0]), fixed([0.0, 2.0, 0.5, 0.0, 1.0])),
         lambda F, t, a, b: t.pow(a, b), tag="zero-base-and-exponent"),
    Case("floor", (fixed([1.0, -2.0]),), lambda F, t, a: t.floor(a), tag="at-integers"),
    Case("round", (fixed([0.5, 1.5, 2.5, -0.5, -2.5]),), lambda F, t, a: t.round(a), tag="halves-to-even"),
]
# NaN in, NaN out; ∂/∂b = a^b·ln a is NaN for a negative base. Against torch only: opcheck's backend
# comparison counts NaN as unequal.
NANS = [
    Case("power", (fixed([-2.0, -1.5, -3.0]), fixed([2.0, 3.0, -1.0])), lambda F, t, a, b: t.pow(a, b),
         tag="negative-base-whole-exponent"),
    Case("power", (fixed([-2.0, 0.0]), fixed([0.5, -1.0])), lambda F, t, a, b: t.pow(a, b), tag="nan-inf"),
    Case("maximum", (fixed([np.nan, 1.0, 2.0]), fixed([1.0, np.nan, 1.0])), lambda F, t, a, b: t.maximum(a, b),
         tag="nan"),
    Case("minimum", (fixed([np.nan, 1.0]), fixed([1.0, np.nan])), lambda F, t, a, b: t.minimum(a, b), tag="nan"),
    Case("sqrt", (fixed([0.0, -1.0, 4.0]),), lambda F, t, a: t.sqrt(a), tag="zero-negative"),
    Case("asin", (fixed([-1.0, 1.0, 1.5, 0.5]),), lambda F, t, a: t.asin(a), tag="edge-outside"),
    Case("acos", (fixed([-1.0, 1.0, -2.0, 0.5]),), lambda F, t, a: t.acos(a), tag="edge-outside"),
    Case("acosh", (fixed([1.0, 0.5, 2.0]),), lambda F, t, a: t.acosh(a), tag="edge-outside"),
    Case("atanh", (fixed([1.0, -1.0, 2.0, 0.5]),), lambda F, t, a: t.atanh(a), tag="edge-outside"),
    # the origin (and squares that underflow to 0) gets 0 from torch, a subnormal a² + b² ∞ (and 0 · ∞ = NaN)
    Case("atan2", (fixed([0.0, -0.0, 0.0, -0.0, 1e-200, 3e-160, 2.0]),
                   fixed([0.0, 0.0, -0.0, -0.0, 1e-200, 0.0, -1.0])), lambda F, t, a, b: t.atan2(a, b), tag="origin"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradient(case: Case) -> None:
    grads = check_gradient(case)
    if case.op in ("sign", "floor", "ceil", "round"):  # step functions: the derivative is 0, shown as 0
        assert not np.any(grads[0])


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES + KINKS + NANS, ids=lambda c: c.id)
def test_against_torch(case: Case) -> None:
    check_against_torch(case)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES + KINKS, ids=lambda c: c.id)
def test_backends_agree(case: Case, dtype: str) -> None:
    check_backends_agree(case, dtype)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_float32_stays_float32(case: Case) -> None:
    arrays = case.arrays()
    node = one_op(case.op, arrays, case.attrs)
    backend = NumpyBackend("float32")
    inputs = [backend.asarray(a) for a in arrays]
    out = backend.forward(node, inputs)
    expected = np.bool_ if case.op in MASK_OPS else np.float32
    assert out.dtype == expected, f"{case.id}: forward gave {out.dtype}"
    for part in backend.partials(node, inputs, out) or []:
        assert part is None or part.dtype == np.float32, f"{case.id}: a local derivative is {part.dtype}"
    for grad in backend.vjp(node, inputs, out, backend.ones(out.shape)):
        assert grad is None or grad.dtype == np.float32


def test_the_tie_and_zero_conventions() -> None:
    """What a learner sees at a tie and at 0 (the numbers behind KINKS)."""
    b = NumpyBackend("float64")

    def grads(op: str, *arrays: list[float]) -> list[list[float]]:
        node = one_op(op, [np.array(a) for a in arrays])
        xs = [b.asarray(a) for a in arrays]
        out = b.forward(node, xs)
        return [list(np.asarray(g)) for g in b.vjp(node, xs, out, b.ones(out.shape)) if g is not None]

    assert grads("maximum", [1.0, 2.0], [1.0, 3.0]) == [[0.5, 0.0], [0.5, 1.0]]
    assert grads("abs", [0.0, -2.0]) == [[0.0, -1.0]]
    assert grads("power", [0.0, 0.0], [0.0, 2.0]) == [[0.0, 0.0], [0.0, 0.0]]


def test_where_gives_the_condition_no_gradient() -> None:
    node = one_op("where", [np.ones((2, 1)), np.ones((1, 3)), np.ones(())])
    assert node.shape == (2, 3) and not node.op.differentiable(0)
    b = NumpyBackend("float64")
    cond, a, other = b.asarray([[1.0], [0.0]]), b.asarray([[1.0, 2.0, 3.0]]), b.asarray(7.0)
    out = b.forward(node, [cond, a, other])
    assert out.tolist() == [[1.0, 2.0, 3.0], [7.0, 7.0, 7.0]]
    g_cond, g_a, g_b = b.vjp(node, [cond, a, other], out, b.ones((2, 3)))
    assert g_cond is None and g_a.tolist() == [[1.0, 1.0, 1.0]] and float(g_b) == 3.0


@pytest.mark.parametrize(("op", "shapes"), [
    ("maximum", [(3, 4), (2, 4)]),
    ("power", [(3,), (4,)]),
    ("where", [(2, 3), (3,), (4,)]),
    ("fmod", [(2, 2), (3, 1, 3)]),
])
def test_shapes_that_do_not_broadcast_are_refused(op: str, shapes: list[tuple[int, ...]]) -> None:
    g = Graph()
    leaves = [g.input(f"x{i}", s) for i, s in enumerate(shapes)]
    with pytest.raises(ShapeError, match="cannot broadcast") as info:
        g.add(op, *leaves, name="bad")
    assert f"{op} node 'bad'" in str(info.value)

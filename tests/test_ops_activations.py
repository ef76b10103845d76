"""The activation family's op table (round 2 activations), the kink conventions against torch, and erf.

Each case runs three checks from opcheck.py: the hand-written derivative against central differences,
NumPy against torch's own function under autograd, and propscope's two backends against each other in
float32 and float64. Inputs keep clear of kinks (the bounds of clamp, ±3 of the hard activations, 0 of
the ELUs, softplus's threshold); the conventions exactly at a kink are checked against torch separately.
The NumPy erf is our own (no scipy), so it is checked against libm's to 1e-15 relative.
"""

from __future__ import annotations

import math
import subprocess
import sys
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
    normal,
    one_op,
)

from propscope.backends.numpy import NumpyBackend
from propscope.backends.numpy.activations import erf
from propscope.graph.errors import ShapeError
from propscope.graph.ir import Graph

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def avoiding(*shape: int, low: float, high: float, kinks: tuple[float, ...], gap: float = 0.05) -> Any:
    """Uniform values in [low, high], each at least `gap` away from every kink (a bound, a threshold)."""

    def make(rng: np.random.Generator) -> np.ndarray:
        v = rng.uniform(low, high, shape)
        for k in kinks:
            v = np.where(np.abs(v - k) < gap, k + np.copysign(2 * gap, v - k), v)
        return v

    return make


CASES = [
    Case("clamp", (avoiding(4, 5, low=-2, high=2, kinks=(-0.5, 0.75)),),
         lambda F, t, z: t.clamp(z, -0.5, 0.75), {"min": -0.5, "max": 0.75}),
    Case("clamp", (avoiding(4, 5, low=-2, high=8, kinks=(0.0, 6.0)),), lambda F, t, z: F.relu6(z),
         {"min": 0.0, "max": 6.0, "inclusive": False}, "relu6"),
    Case("clamp", (avoiding(3, 4, low=-2, high=2, kinks=(-1.0, 1.0)),), lambda F, t, z: F.hardtanh(z),
         {"min": -1.0, "max": 1.0, "inclusive": False}, "hardtanh"),
    Case("clamp", (avoiding(3, 4, low=-2, high=2, kinks=(0.25,)),), lambda F, t, z: t.clamp(z, min=0.25),
         {"min": 0.25}, "min-only"),
    Case("clamp", (avoiding(3, 4, low=-2, high=2, kinks=(0.25,)),), lambda F, t, z: t.clamp(z, max=0.25),
         {"max": 0.25}, "max-only"),
    Case("clamp", (normal(3, 4),), lambda F, t, z: z.clone(), tag="no-bounds"),
    Case("clamp", (normal(3, 4),), lambda F, t, z: t.clamp(z, 1.0, -1.0), {"min": 1.0, "max": -1.0}, "min>max"),
    Case("hardswish", (avoiding(4, 5, low=-5, high=5, kinks=(-3.0, 3.0)),), lambda F, t, z: F.hardswish(z)),
    Case("hardsigmoid", (avoiding(4, 5, low=-5, high=5, kinks=(-3.0, 3.0)),), lambda F, t, z: F.hardsigmoid(z)),
    Case("hardsigmoid", (avoiding(4, 5, low=-5, high=5, kinks=(-2.5, 2.5)),),
         lambda F, t, z: t.clamp(0.2 * z + 0.5, 0.0, 1.0), {"alpha": 0.2, "beta": 0.5}, "onnx"),
    Case("elu", (away_from_zero(3, 4),), lambda F, t, z: F.elu(z)),
    Case("elu", (away_from_zero(3, 4),), lambda F, t, z: F.elu(z, 0.3), {"alpha": 0.3}, "alpha"),
    Case("elu", (away_from_zero(3, 4),), lambda F, t, z: t.ops.aten.elu(z, 0.7, 1.5, 2.0),
         {"alpha": 0.7, "scale": 1.5, "input_scale": 2.0}, "scales"),
    Case("elu", (away_from_zero(3, 4),), lambda F, t, z: F.selu(z), {"alpha": SELU_ALPHA, "scale": SELU_SCALE},
         "as-selu"),
    Case("selu", (away_from_zero(3, 4),), lambda F, t, z: F.selu(z)),
    Case("celu", (away_from_zero(3, 4),), lambda F, t, z: F.celu(z)),
    Case("celu", (away_from_zero(3, 4),), lambda F, t, z: F.celu(z, 2.5), {"alpha": 2.5}, "alpha"),
    Case("softplus", (normal(3, 4, scale=3.0),), lambda F, t, z: F.softplus(z)),
    Case("softplus", (avoiding(4, 5, low=-3, high=3, kinks=(0.5,)),), lambda F, t, z: F.softplus(z, 2.0, 1.0),
         {"beta": 2.0, "threshold": 1.0}, "beta-threshold"),
    Case("softplus", (fixed([-800.0, -30.0, 25.0, 800.0]),), lambda F, t, z: F.softplus(z), tag="extremes"),
    Case("mish", (normal(3, 4, scale=2.0),), lambda F, t, z: F.mish(z)),
    Case("mish", (fixed([-800.0, -40.0, 40.0, 800.0]),), lambda F, t, z: F.mish(z), tag="extremes"),
    Case("erf", (normal(3, 4, scale=2.0),), lambda F, t, z: t.erf(z)),
    Case("erf", (fixed([-7.0, -4.5, -0.46875, 1e-300, 0.3, 2.0, 4.0, 5.5, 30.0]),), lambda F, t, z: t.erf(z),
         tag="intervals"),
    Case("softsign", (away_from_zero(3, 4),), lambda F, t, z: F.softsign(z)),
    Case("log_sigmoid", (normal(3, 4, scale=3.0),), lambda F, t, z: F.logsigmoid(z)),
    Case("log_sigmoid", (fixed([-800.0, -40.0, 40.0, 800.0]),), lambda F, t, z: F.logsigmoid(z), tag="extremes"),
    Case("shrink", (avoiding(4, 5, low=-2, high=2, kinks=(-0.5, 0.5)),), lambda F, t, z: F.softshrink(z, 0.5),
         {"lambd": 0.5, "bias": 0.5}, "soft"),
    Case("shrink", (avoiding(4, 5, low=-2, high=2, kinks=(-0.7, 0.7)),), lambda F, t, z: F.hardshrink(z, 0.7),
         {"lambd": 0.7, "bias": 0.0}, "hard"),
    Case("shrink", (avoiding(4, 5, low=-2, high=2, kinks=(-0.4, 0.4)),),
         lambda F, t, z: t.where(z > 0.4, z - 1.5, t.where(z < -0.4, z + 1.5, t.zeros_like(z))),
         {"lambd": 0.4, "bias": 1.5}, "onnx-bias"),
]

# Exactly at a kink: the derivative is a convention, torch's (checked against torch only, no finite differences).
KINKS = [
    Case("clamp", (fixed([-1.0, 1.0, 0.0, -2.0, 2.0]),), lambda F, t, z: t.clamp(z, -1.0, 1.0),
         {"min": -1.0, "max": 1.0}, "at-bounds"),
    Case("clamp", (fixed([0.0, 6.0, 3.0, -1.0, 7.0]),), lambda F, t, z: F.relu6(z),
         {"min": 0.0, "max": 6.0, "inclusive": False}, "relu6-at-bounds"),
    Case("clamp", (fixed([-1.0, 1.0, 0.0]),), lambda F, t, z: F.hardtanh(z),
         {"min": -1.0, "max": 1.0, "inclusive": False}, "hardtanh-at-bounds"),
    Case("clamp", (fixed([0.0, 1.0]),), lambda F, t, z: F.hardtanh(z, 0.0, float("inf")),
         {"min": 0.0, "inclusive": False}, "strict-min-only"),
    Case("hardswish", (fixed([-3.0, 3.0, 0.0]),), lambda F, t, z: F.hardswish(z), tag="at-kinks"),
    Case("hardsigmoid", (fixed([-3.0, 3.0, 0.0]),), lambda F, t, z: F.hardsigmoid(z), tag="at-kinks"),
    Case("elu", (fixed([0.0, -0.0]),), lambda F, t, z: F.elu(z, 2.0), {"alpha": 2.0}, "at-0"),
    Case("selu", (fixed([0.0]),), lambda F, t, z: F.selu(z), tag="at-0"),
    Case("celu", (fixed([0.0]),), lambda F, t, z: F.celu(z, 2.0), {"alpha": 2.0}, "at-0"),
    Case("softplus", (fixed([10.0, 9.999]),), lambda F, t, z: F.softplus(z, 2.0, 20.0),
         {"beta": 2.0, "threshold": 20.0}, "at-threshold"),
    Case("shrink", (fixed([-0.5, 0.5, 0.0, 1.0, -1.0]),), lambda F, t, z: F.softshrink(z, 0.5),
         {"lambd": 0.5, "bias": 0.5}, "soft-at-bounds"),
    Case("shrink", (fixed([-0.5, 0.5, 0.0, 1.0, -1.0]),), lambda F, t, z: F.hardshrink(z, 0.5),
         {"lambd": 0.5, "bias": 0.0}, "hard-at-bounds"),
]
# NaN in, NaN out, and no gradient through it (opcheck's backend comparison treats NaN as unequal: torch only)
NANS = [
    Case("clamp", (fixed([np.nan, 1.0]),), lambda F, t, z: t.clamp(z, -1.0, 1.0), {"min": -1.0, "max": 1.0}, "nan"),
    Case("erf", (fixed([np.nan, 1.0]),), lambda F, t, z: t.erf(z), tag="nan"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradient(case: Case) -> None:
    check_gradient(case)


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
    assert out.dtype == np.float32, f"{case.id}: forward gave {out.dtype}"
    (local,) = backend.partials(node, inputs, out) or [None]
    assert local is not None and local.dtype == np.float32, f"{case.id}: local derivative is not float32"
    (grad,) = backend.vjp(node, inputs, out, backend.ones(out.shape))
    assert grad is not None and grad.dtype == np.float32


def test_kink_conventions_are_torchs() -> None:
    """The numbers behind KINKS, spelled out: what a learner sees at a bound."""
    def local(op: str, values: list[float], **attrs: Any) -> list[float]:
        node = one_op(op, [np.array(values)], attrs)
        b = NumpyBackend("float64")
        x = b.asarray(values)
        (p,) = b.partials(node, [x], b.forward(node, [x])) or [None]
        return list(np.asarray(p))

    assert local("clamp", [-1.0, 1.0], min=-1.0, max=1.0) == [1.0, 1.0]  # torch.clamp: passes at the bounds
    assert local("clamp", [0.0, 6.0], min=0.0, max=6.0, inclusive=False) == [0.0, 0.0]  # ReLU6: not at them
    assert local("hardswish", [-3.0, 3.0]) == [0.0, 1.0]
    assert local("selu", [0.0]) == [pytest.approx(SELU_SCALE * SELU_ALPHA, rel=1e-15)]


# -- erf without scipy --------------------------------------------------------------------------
def test_erf_matches_libm_to_1e_15() -> None:
    grid = np.linspace(-30.0, 30.0, 120_001)
    tiny = np.logspace(-320, 0, 2_000)
    edges = np.array([0.46875, 4.0, 6.0])
    edges = np.concatenate([edges, np.nextafter(edges, 0.0), np.nextafter(edges, np.inf)])
    x = np.concatenate([grid, tiny, -tiny, edges, -edges, [0.0, 5e-324, 1e-16, 0.5, 1.0, 2.0, 3.5, 5.0]])
    got = erf(x)
    want = np.array([math.erf(v) for v in x])
    assert got.dtype == np.float64
    rel = np.abs(got - want) / np.maximum(np.abs(want), np.finfo(np.float64).tiny)
    assert rel.max() <= 1e-15, f"erf({x[np.argmax(rel)]!r}) is off by {rel.max():.3g} relative"
    assert np.all(np.signbit(erf(np.array([-0.0, -1e-300]))))


def test_erf_special_values_and_float32() -> None:
    out = erf(np.array([np.nan, np.inf, -np.inf, 0.0]))
    assert np.isnan(out[0]) and list(out[1:]) == [1.0, -1.0, 0.0]
    x = np.linspace(-6, 6, 10_001, dtype=np.float32)
    got = erf(x)
    assert got.dtype == np.float32
    want = np.array([math.erf(float(v)) for v in x], dtype=np.float32)  # the float64 answer, rounded once
    assert np.array_equal(got, want)
    assert erf(np.array(0.5)).shape == ()


def test_numpy_backend_imports_no_scipy() -> None:
    """Issue 14: scipy cost ~0.35 s of start-up for one erf."""
    code = "import sys, propscope.backends.numpy; sys.exit('scipy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0, "the NumPy backend imports scipy"


# -- shape rules and attributes -------------------------------------------------------------------------
@pytest.mark.parametrize(("op", "attrs", "words"), [
    ("clamp", {"min": "0"}, "min must be a number or None"),
    ("clamp", {"max": [6.0]}, "max must be a number or None"),
    ("celu", {"alpha": 0.0}, "must not be 0"),
    ("softplus", {"beta": 0}, "must not be 0"),
    ("softplus", {"threshold": None}, "threshold must be a number"),
    ("elu", {"scale": True}, "scale must be a number"),
    ("hardsigmoid", {"alpha": "0.2"}, "alpha must be a number"),
])
def test_bad_attributes_are_refused(op: str, attrs: dict[str, Any], words: str) -> None:
    g = Graph()
    x = g.input("x", (2, 3))
    with pytest.raises(ShapeError, match=words) as info:
        g.add(op, x, name="act", attrs=attrs)
    assert f"{op} node 'act'" in str(info.value)


def test_int_bounds_are_numbers_too() -> None:
    g = Graph()
    node = g.add("clamp", g.input("x", (2,)), attrs={"min": 0, "max": 6})
    assert node.shape == (2,)

"""The NumPy backend's erf (Cody's CALERF approximations, activations.py) in units in the last place, and the chunks
it and GELU are computed in.

The error bounds are those the function had when it was first written (one pass over the whole array): each
branch's largest error against libm's erf on a dense grid that takes in the branch points 0.46875, 4 and 6, their
neighbours and the tails. Computing chunk by chunk must change no bit of erf, GELU or GELU's derivative.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from propscope.backends.numpy import activations
from propscope.backends.numpy.activations import erf

EDGES = np.array([0.46875, 4.0, 6.0])
NEAR_EDGES = np.concatenate([EDGES, *[np.nextafter(EDGES, to) for to in (0.0, np.inf)]])


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got − want| in units of the last place of `want` rounded to got's dtype."""
    exact = want.astype(got.dtype)
    return np.abs(got.astype(np.float64) - want) / np.spacing(np.abs(exact)).astype(np.float64)


def _grid64() -> np.ndarray:
    half = np.concatenate([
        np.linspace(0.0, 8.0, 200_001),
        np.logspace(-320, 1, 4_000),
        NEAR_EDGES,
        *[np.linspace(e - 0.01, e + 0.01, 4_001) for e in EDGES],
    ])
    return np.concatenate([half, -half])


@pytest.mark.parametrize(("low", "high", "bound"), [
    (0.0, 0.46875, 3),  # x·P(x²)/Q(x²)
    (0.46875, 4.0, 5),  # 1 − erfc, e^(−x²)·P(x)/Q(x): the cancellation next to 0.46875
    (4.0, 6.0, 0),  # 1 − erfc, the asymptotic form
    (6.0, np.inf, 0),  # ±1
])
def test_erf_float64_ulps_per_branch(low: float, high: float, bound: int) -> None:
    x = _grid64()
    x = x[(np.abs(x) > low) & (np.abs(x) <= high)]
    want = np.array([math.erf(v) for v in x])
    errors = _ulps(erf(x), want)
    worst = int(np.argmax(errors))
    assert errors[worst] <= bound, f"erf({x[worst]!r}): {errors[worst]} ulps from libm's (at most {bound})"


def test_erf_float32_is_the_float64_answer_rounded_once() -> None:
    half = np.concatenate([np.linspace(0.0, 8.0, 100_001, dtype=np.float32), NEAR_EDGES.astype(np.float32),
                           np.logspace(-45, 1, 2_000).astype(np.float32),
                           *[np.linspace(e - 0.01, e + 0.01, 2_001, dtype=np.float32) for e in EDGES]])
    x = np.concatenate([half, -half])
    got = erf(x)
    assert got.dtype == np.float32
    want = np.array([math.erf(float(v)) for v in x])
    assert _ulps(got, want).max() <= 0.5 + 1e-9
    np.testing.assert_array_equal(got, want.astype(np.float32))


def test_erf_against_scipy() -> None:
    special = pytest.importorskip("scipy.special")
    x = _grid64()
    assert _ulps(erf(x), special.erf(x)).max() <= 5
    x32 = x.astype(np.float32)
    assert _ulps(erf(x32), special.erf(x32).astype(np.float64)).max() == 0


def _values(dtype: type) -> np.ndarray:
    rng = np.random.default_rng(0)
    special = [0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 1e-300, -5e-324, 30.0, -1e300]
    x = np.concatenate([rng.standard_normal(3_000) * 3, NEAR_EDGES, -NEAR_EDGES, special])
    with np.errstate(over="ignore"):
        return rng.permutation(x).astype(dtype)


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # NaN where NaN
    numbers = ~np.isnan(want)
    np.testing.assert_array_equal(np.signbit(got[numbers]), np.signbit(want[numbers]))  # erf(−0) = −0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunks_change_no_bit(dtype: type, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    z = _values(dtype)
    with np.errstate(all="ignore"):  # as the backend computes: infinite inputs make NaN on the way
        whole = {
            "erf": erf(z),
            "gelu": activations.gelu.forward(z, "none"),
            "gelu'": activations.gelu.partials([z], z, {"approximate": "none"})[0],
        }
    monkeypatch.setattr(activations, "_ERF_CHUNK", chunk)
    with np.errstate(all="ignore"):
        _same(erf(z), whole["erf"])
        _same(activations.gelu.forward(z, "none"), whole["gelu"])
        _same(activations.gelu.partials([z], z, {"approximate": "none"})[0], whole["gelu'"])
    # one value at a time: no value's result depends on its neighbours
    singles = np.concatenate([erf(z[i: i + 1]) for i in range(0, z.size, 97)])
    _same(singles, whole["erf"][::97])


def test_erf_keeps_shapes_and_takes_any_layout() -> None:
    x = np.linspace(-5, 5, 60).reshape(3, 4, 5)
    np.testing.assert_array_equal(erf(x.transpose(2, 0, 1)), erf(x).transpose(2, 0, 1))
    np.testing.assert_array_equal(erf(x[:, ::2, 1:]), erf(x)[:, ::2, 1:])
    assert erf(np.array(0.25)).shape == () and erf(np.zeros((0, 3))).shape == (0, 3)
    assert erf(np.arange(3)).dtype == np.float64 and erf(np.ones(2, np.float16)).dtype == np.float16
    assert float(erf(np.arange(3))[2]) == math.erf(2.0)

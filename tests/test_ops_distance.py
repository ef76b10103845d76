"""The distance family: cdist (every row of x1 against every row of x2) and pdist (every pair of rows).

Every case runs the three op checks (hand-written VJP against central differences, NumPy against torch's own
function under autograd, propscope's torch backend against its NumPy backend), for p = 2 both ways torch computes
it (row differences, and the matrix product it uses past 25 rows), 1, ∞, fractional and larger p, and batched rows
that broadcast. Zero distances (a set against itself) get torch's zero gradient, not NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from opcheck import Case, Maker, check_against_torch, check_backends_agree, check_gradient, normal, one_op, spaced

from propscope.backends.numpy import NumpyBackend
from propscope.backends.numpy import distance as numpy_distance
from propscope.graph.errors import ShapeError


def _cdist(p: float, mm: bool = False) -> Any:
    mode = "use_mm_for_euclid_dist" if mm else "donot_use_mm_for_euclid_dist"
    return lambda F, t, a, b: t.cdist(a, b, p=p, compute_mode=mode)


def _pdist(p: float) -> Any:
    return lambda F, t, x: F.pdist(x, p=p)


def apart(*shape: int) -> Maker:
    """Values on a grid of 0.1 shifted by 0.05: no coordinate of one set is within 0.05 of the other's (for p < 2
    |δ|^(p−1) is steep near δ = 0, where a difference stencil would straddle it)."""
    return lambda rng: spaced(*shape, gap=0.1)(rng) + 0.05


CASES = [
    Case("cdist", (normal(5, 3), normal(4, 3)), _cdist(2.0)),
    Case("cdist", (normal(5, 3), normal(4, 3)), _cdist(2.0, mm=True), {"use_mm": True}, "matrix-product"),
    Case("cdist", (normal(5, 3), normal(4, 3)), _cdist(1.0), {"p": 1.0}, "p1"),
    Case("cdist", (normal(5, 3), normal(4, 3)), _cdist(3.0), {"p": 3.0}, "p3"),
    Case("cdist", (spaced(5, 3, gap=0.1), apart(4, 3)), _cdist(1.5), {"p": 1.5}, "p1.5"),
    Case("cdist", (spaced(5, 3, gap=0.1), apart(4, 3)), _cdist(0.5), {"p": 0.5}, "p0.5"),
    Case("cdist", (normal(5, 3), normal(4, 3)), _cdist(float("inf")), {"p": float("inf")}, "inf"),
    Case("cdist", (normal(2, 5, 3), normal(4, 3)), _cdist(2.0), tag="batch-broadcast"),
    Case("cdist", (normal(2, 1, 5, 3), normal(3, 4, 3)), _cdist(3.0), {"p": 3.0}, "batches-broadcast-p3"),
    Case("cdist", (normal(2, 5, 3), normal(2, 4, 3)), _cdist(2.0, mm=True), {"use_mm": True}, "batched-mm"),
    Case("pdist", (normal(6, 3),), _pdist(2.0)),
    Case("pdist", (normal(6, 3),), _pdist(1.0), {"p": 1.0}, "p1"),
    Case("pdist", (normal(6, 3),), _pdist(4.0), {"p": 4.0}, "p4"),
    Case("pdist", (normal(6, 3),), _pdist(float("inf")), {"p": float("inf")}, "inf"),
    Case("pdist", (normal(2, 3),), _pdist(2.0), tag="one-pair"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradient_matches_finite_differences(case: Case) -> None:
    check_gradient(case)


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_torch(case: Case) -> None:
    check_against_torch(case)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_backends_agree(case: Case, dtype: str) -> None:
    check_backends_agree(case, dtype)


@pytest.mark.torch
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, float("inf")])
def test_a_set_against_itself_has_zero_distances_and_torchs_finite_gradient(p: float) -> None:
    """cdist(x, x): the diagonal is 0 and its gradient 0 (torch's convention), where the norm's own steps give NaN."""
    import torch

    x = np.random.default_rng(0).standard_normal((5, 3))
    node = one_op("cdist", [x, x], {"p": p})
    b = NumpyBackend("float64")
    out = b.forward(node, [x, x])
    assert np.all(np.diag(out) == 0)
    upstream = np.random.default_rng(1).standard_normal(out.shape)
    g1, g2 = b.vjp(node, [x, x], out, upstream)
    a, c = torch.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    torch.cdist(a, c, p=p, compute_mode="donot_use_mm_for_euclid_dist").backward(torch.tensor(upstream))
    assert np.isfinite(g1).all() and np.isfinite(g2).all()
    np.testing.assert_allclose(g1, a.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g2, c.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_blocks_of_row_differences_give_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The differences are made a block of rows at a time: tiny blocks change no number."""
    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_normal((2, 7, 4)), rng.standard_normal((2, 6, 4))
    node = one_op("cdist", [x1, x2], {"p": 3.0})
    b = NumpyBackend("float64")
    whole = b.forward(node, [x1, x2])
    g = rng.standard_normal(whole.shape)
    grads = b.vjp(node, [x1, x2], whole, g)
    monkeypatch.setattr(numpy_distance, "BLOCK", 1)
    np.testing.assert_array_equal(b.forward(node, [x1, x2]), whole)
    for got, want in zip(b.vjp(node, [x1, x2], whole, g), grads, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize(("op", "shapes", "message"), [
    ("cdist", [(5, 3), (4, 2)], "rows of one length"),
    ("cdist", [(3,), (4, 3)], "(..., rows, features)"),
    ("cdist", [(2, 5, 3), (3, 4, 3)], "do not broadcast"),
    ("pdist", [(2, 5, 3)], "(rows, features)"),
])
def test_shape_rule_says_what_is_wrong(op: str, shapes: list[tuple[int, ...]], message: str) -> None:
    with pytest.raises(ShapeError) as info:
        one_op(op, [np.zeros(s) for s in shapes])
    assert message in str(info.value)

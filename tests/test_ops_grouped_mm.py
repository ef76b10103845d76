"""The two ops a mixture of experts adds: grouped_mm (each expert's matrix applied to its consecutive rows of tokens
sorted by expert) and histc (how many tokens each expert got, the running sum of which is grouped_mm's offsets).

Every case runs the three op checks (hand-written VJP against central differences, NumPy against torch's own
function under autograd, propscope's torch backend against its NumPy backend): groups of several rows, an empty
group (an expert no token chose), rows past the last offset (left 0, as transformers' fallback leaves them). histc
is checked to the last count against torch.histc, bin edges and values a rounding away from them included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from opcheck import Case, check_against_torch, check_backends_agree, check_gradient, fixed, normal, one_op

from propscope.backends.numpy import NumpyBackend
from propscope.graph.errors import ShapeError


def _grouped(F: Any, t: Any, x: Any, w: Any, offs: Any) -> Any:
    """The product as a loop over groups, written with torch: the reference transformers' fallback computes."""
    rows, start = [], 0
    for g, end in enumerate(offs.long().tolist()):
        rows.append(x[start:end] @ w[g])
        start = end
    rows.append(x.new_zeros(x.shape[0] - start, w.shape[2]))
    return t.cat(rows)


def _histc(bins: int, low: float, high: float) -> Any:
    return lambda F, t, x: t.histc(x, bins=bins, min=low, max=high)


EDGES = fixed(np.concatenate([np.linspace(-1.0, 2.0, 8), np.nextafter(np.linspace(-1.0, 2.0, 8), -9),
                              np.nextafter(np.linspace(-1.0, 2.0, 8), 9), [-3.0, 5.0, np.nan]]))

CASES = [
    Case("grouped_mm", (normal(7, 4), normal(3, 4, 5), fixed([2, 5, 7])), _grouped),
    Case("grouped_mm", (normal(7, 4), normal(3, 4, 5), fixed([3, 3, 7])), _grouped, tag="empty-group"),
    Case("grouped_mm", (normal(7, 4), normal(3, 4, 5), fixed([1, 2, 5])), _grouped, tag="rows-past-the-last"),
    Case("grouped_mm", (normal(4, 3), normal(1, 3, 2), fixed([4])), _grouped, tag="one-group"),
    Case("histc", (normal(40),), _histc(5, -1.0, 1.0), {"bins": 5, "min": -1.0, "max": 1.0}),
    Case("histc", (fixed([3.0, 0.0, 1.0, 3.0, 2.0, 1.0, 3.0]),), _histc(4, 0.0, 3.0), {"bins": 4, "min": 0.0,
                                                                                       "max": 3.0}, "expert-ids"),
    Case("histc", (EDGES,), _histc(7, -1.0, 2.0), {"bins": 7, "min": -1.0, "max": 2.0}, "edges"),
    Case("histc", (normal(3, 5),), _histc(6, 0.0, 0.0), {"bins": 6, "min": 0.0, "max": 0.0}, "range-from-data"),
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
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_histc_counts_as_torch_to_the_last_entry(dtype: type) -> None:
    """Values on the bin edges and one rounding either side of them, in both float types, many ranges: torch.histc
    bins by one division without searching the edges, so a value next to an edge falls where that division puts it."""
    import torch

    rng = np.random.default_rng(0)
    backend = NumpyBackend("float64")
    for _ in range(200):
        bins, low = int(rng.integers(1, 30)), float(rng.normal())
        high = low + float(rng.uniform(0.01, 5.0))
        edges = np.linspace(low, high, bins + 1)
        x = np.concatenate([rng.uniform(low - 1, high + 1, 30), edges, np.nextafter(edges, -np.inf),
                            np.nextafter(edges, np.inf)]).astype(dtype)
        node = one_op("histc", [x], {"bins": bins, "min": low, "max": high})
        want = torch.histc(torch.from_numpy(x), bins=bins, min=low, max=high).numpy()
        np.testing.assert_array_equal(backend.forward(node, [x]), want)


def test_offsets_that_fall_are_named() -> None:
    arrays = [np.ones((4, 2)), np.ones((2, 2, 3)), np.array([3, 1])]
    node = one_op("grouped_mm", arrays)
    with pytest.raises(ValueError, match="must rise from 0"):
        NumpyBackend("float64").forward(node, arrays)


@pytest.mark.parametrize(("shapes", "message"), [
    (((4, 2), (3, 2, 5), (2,)), "2 offsets for 3 groups"),
    (((4, 3), (3, 2, 5), (3,)), "3 features"),
    (((4, 2, 1), (3, 2, 5), (3,)), "takes rows"),
])
def test_shapes_that_do_not_fit_are_refused(shapes: tuple[tuple[int, ...], ...], message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        one_op("grouped_mm", [np.zeros(s) for s in shapes])


@pytest.mark.parametrize(("attrs", "message"), [({"bins": 0}, "bins"), ({"min": 2.0, "max": 1.0}, "below min"),
                                               ({"max": float("inf")}, "finite")])
def test_histc_attributes_are_checked(attrs: dict[str, Any], message: str) -> None:
    with pytest.raises(ShapeError, match=message):
        one_op("histc", [np.zeros(3)], {"bins": 4, "min": 0.0, "max": 1.0, **attrs})

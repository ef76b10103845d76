"""embedding_bag (nn.EmbeddingBag): the rows of a table looked up for bags of ids, summed, averaged or maxed.

Every case runs the three op checks (hand-written VJP against central differences, NumPy against torch's own
function under autograd, propscope's torch backend against its NumPy backend): the three modes, per-sample weights,
padding entries left out, include_last_offset, repeated ids, and an empty bag. Max-mode tables have distinct values,
so each bag's largest row is clear under the difference stencil.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from opcheck import Case, check_against_torch, check_backends_agree, check_gradient, fixed, normal, one_op, spaced

from propscope.backends.numpy import NumpyBackend
from propscope.graph.errors import ShapeError

IDS = fixed([1, 2, 4, 5, 4, 3, 2, 9, 0, 4])
OFFSETS = fixed([0, 3, 3, 7])  # bags of 3, 0 (empty), 4 and 3 entries


def _bag(mode: str = "sum", **kw: Any) -> Any:
    def fn(F: Any, t: Any, ids: Any, table: Any, offsets: Any, w: Any = None) -> Any:
        return F.embedding_bag(ids.long(), table, offsets.long(), mode=mode, per_sample_weights=w, **kw)

    return fn


CASES = [
    Case("embedding_bag", (IDS, normal(10, 4), OFFSETS), _bag()),
    Case("embedding_bag", (IDS, normal(10, 4), OFFSETS), _bag("mean"), {"mode": "mean"}, "mean"),
    Case("embedding_bag", (IDS, spaced(10, 4), OFFSETS), _bag("max"), {"mode": "max"}, "max"),
    Case("embedding_bag", (IDS, normal(10, 4), OFFSETS, normal(10)), _bag(), tag="per-sample-weights"),
    Case("embedding_bag", (IDS, normal(10, 4), OFFSETS), _bag("mean", padding_idx=4),
         {"mode": "mean", "padding_idx": 4}, "mean-padding"),
    Case("embedding_bag", (IDS, spaced(10, 4), OFFSETS), _bag("max", padding_idx=2),
         {"mode": "max", "padding_idx": 2}, "max-padding"),
    Case("embedding_bag", (IDS, normal(10, 4), fixed([0, 4, 10])), _bag(include_last_offset=True),
         {"include_last_offset": True}, "last-offset"),
    Case("embedding_bag", (IDS, normal(10, 4), OFFSETS, normal(10)), _bag(padding_idx=4), {"padding_idx": 4},
         "weights-padding"),
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


def test_an_empty_bag_is_zeros_in_every_mode() -> None:
    for mode in ("sum", "mean", "max"):
        arrays = [np.array([3, 1]), np.arange(12.0).reshape(4, 3) - 5, np.array([0, 0, 2])]
        node = one_op("embedding_bag", arrays, {"mode": mode})
        out = NumpyBackend("float64").forward(node, arrays)
        assert out.shape == (3, 3) and not out[[0, 2]].any() and out[1].any(), mode


def test_offsets_out_of_order_are_named() -> None:
    arrays = [np.array([3, 1, 2]), np.ones((4, 3)), np.array([0, 2, 1])]
    node = one_op("embedding_bag", arrays)
    with pytest.raises(ValueError, match="never decrease"):
        NumpyBackend("float64").forward(node, arrays)


@pytest.mark.parametrize(("shapes", "attrs", "message"), [
    ([(2, 3), (5, 4), (2,)], {}, "1-D ids and offsets"),
    ([(6,), (5,), (2,)], {}, "(vocabulary, dim)"),
    ([(6,), (5, 4), (2,), (5,)], {}, "per-sample weights"),
    ([(6,), (5, 4), (2,), (6,)], {"mode": "max"}, "need mode 'sum'"),
    ([(6,), (5, 4), (2,)], {"mode": "median"}, "not sum, mean or max"),
])
def test_shape_rule_says_what_is_wrong(shapes: list[tuple[int, ...]], attrs: dict[str, Any], message: str) -> None:
    with pytest.raises(ShapeError) as info:
        one_op("embedding_bag", [np.zeros(s) for s in shapes], attrs)
    assert message in str(info.value)

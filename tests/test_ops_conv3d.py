"""3-D convolution and pooling (video clips, medical volumes): each case runs the three op checks of the conv
family (the hand-written VJP against central differences, NumPy against torch's own function under autograd,
propscope's torch backend against its NumPy backend): strides, dilation, groups and depthwise filters, padding
on each side (six-sided as ONNX), ceil_mode, count_include_pad, adaptive sizes that do not divide.
Max-pool inputs are `spaced` so no window has a tie, even under the difference stencil.
"""

from __future__ import annotations

from typing import Any

import pytest
from opcheck import Case, check_against_torch, check_backends_agree, check_gradient, normal, one_op, spaced

from propscope.graph.errors import ShapeError


def _conv(**kw: Any) -> Any:
    return lambda F, t, x, w, b=None: F.conv3d(x, w, b, **kw)


def _tpad(pads: tuple[int, ...]) -> tuple[int, ...]:
    """(front, back, top, bottom, left, right) in F.pad's order (last axis first)."""
    return pads[4], pads[5], pads[2], pads[3], pads[0], pads[1]


CASES = [
    Case("conv3d", (normal(2, 2, 4, 5, 5), normal(3, 2, 3, 3, 3), normal(3)), _conv(), {}),
    Case("conv3d", (normal(1, 2, 5, 6, 5), normal(4, 2, 3, 2, 3), normal(4)), _conv(stride=(2, 1, 2), padding=1),
         {"stride": (2, 1, 2), "padding": 1}, "stride-padding"),
    Case("conv3d", (normal(1, 4, 5, 5, 6), normal(4, 2, 2, 3, 2)), _conv(dilation=(2, 1, 2), groups=2),
         {"dilation": (2, 1, 2), "groups": 2}, "dilation-groups"),
    Case("conv3d", (normal(2, 3, 3, 4, 4), normal(3, 1, 3, 3, 3), normal(3)), _conv(groups=3, padding=(1, 1, 1)),
         {"groups": 3, "padding": (1, 1, 1)}, "depthwise"),
    Case("conv3d", (normal(1, 2, 4, 4, 5), normal(2, 2, 2, 3, 3), normal(2)),
         lambda F, t, x, w, b: F.conv3d(F.pad(x, _tpad((1, 0, 0, 1, 2, 1))), w, b),
         {"padding": (1, 0, 0, 1, 2, 1)}, "six-sided-pads"),
    Case("max_pool3d", (spaced(2, 2, 4, 4, 4),), lambda F, t, x: F.max_pool3d(x, 2), {"kernel_size": 2}),
    Case("max_pool3d", (spaced(1, 2, 5, 6, 5),), lambda F, t, x: F.max_pool3d(x, 3, 2, 1, ceil_mode=True),
         {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, "k3-s2-p1-ceil"),
    Case("max_pool3d", (spaced(1, 2, 6, 5, 6),), lambda F, t, x: F.max_pool3d(x, (2, 3, 2), (1, 2, 2), (1, 1, 0), 2),
         {"kernel_size": (2, 3, 2), "stride": (1, 2, 2), "padding": (1, 1, 0), "dilation": 2}, "dilation"),
    Case("avg_pool3d", (normal(2, 2, 4, 4, 4),), lambda F, t, x: F.avg_pool3d(x, 2), {"kernel_size": 2}),
    Case("avg_pool3d", (normal(1, 2, 5, 5, 6),), lambda F, t, x: F.avg_pool3d(x, 3, 2, 1, count_include_pad=False),
         {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, "exclude-pad"),
    Case("avg_pool3d", (normal(1, 2, 5, 6, 5),), lambda F, t, x: F.avg_pool3d(x, (3, 2, 3), 2, (1, 1, 0),
                                                                           ceil_mode=True),
         {"kernel_size": (3, 2, 3), "stride": 2, "padding": (1, 1, 0), "ceil_mode": True}, "ceil"),
    Case("avg_pool3d", (normal(1, 2, 4, 5, 5),), lambda F, t, x: F.avg_pool3d(F.pad(x, _tpad((1, 0, 0, 1, 1, 1))), 2),
         {"kernel_size": 2, "padding": (1, 0, 0, 1, 1, 1)}, "six-sided-pads"),
    Case("max_pool3d", (spaced(1, 2, 4, 5, 4),),
         lambda F, t, x: F.max_pool3d(F.pad(x, _tpad((0, 1, 1, 0, 0, 1)), value=-float("inf")), 2),
         {"kernel_size": 2, "padding": (0, 1, 1, 0, 0, 1)}, "six-sided-pads"),
    Case("adaptive_avg_pool3d", (normal(2, 3, 3, 4, 5),), lambda F, t, x: F.adaptive_avg_pool3d(x, 1),
         {"output_size": (1, 1, 1)}, "global"),
    Case("adaptive_avg_pool3d", (normal(1, 2, 5, 7, 4),), lambda F, t, x: F.adaptive_avg_pool3d(x, (2, 3, None)),
         {"output_size": (2, 3, None)}, "non-divisible"),
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


@pytest.mark.parametrize("op, shapes, attrs, says", [
    ("conv3d", [(1, 2, 4, 4), (3, 2, 3, 3, 3)], {}, "volumes as"),
    ("conv3d", [(1, 2, 4, 4, 4), (3, 3, 3, 3, 3)], {}, "does not fit 2 input channels"),
    ("conv3d", [(1, 2, 2, 4, 4), (3, 2, 3, 3, 3)], {}, "does not fit in a volume 2 deep"),
    ("max_pool3d", [(1, 2, 4, 4, 4)], {"kernel_size": 2, "padding": 2}, "at most half the kernel"),
    ("adaptive_avg_pool3d", [(1, 2, 4, 4, 4)], {"output_size": (2, 2)}, "depth, height, width"),
])
def test_shapes_that_do_not_fit_are_refused_with_a_reason(op: str, shapes: list[tuple[int, ...]],
                                                          attrs: dict[str, Any], says: str) -> None:
    import numpy as np

    with pytest.raises(ShapeError, match=says):
        one_op(op, [np.zeros(s) for s in shapes], attrs)

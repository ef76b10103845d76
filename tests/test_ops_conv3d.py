"""3-D convolution, transposed convolution and pooling (video clips, medical volumes): each case runs the three
op checks of the conv family (the hand-written VJP against central differences, NumPy against torch's own
function under autograd, propscope's torch backend against its NumPy backend): strides, dilation, groups and
depthwise filters, output_padding, padding on each side (six-sided as ONNX), ceil_mode, count_include_pad,
adaptive sizes that do not divide.
Max-pool inputs are `spaced` so no window has a tie, even under the difference stencil.
"""

from __future__ import annotations

from typing import Any

import pytest
from opcheck import Case, check_against_torch, check_backends_agree, check_gradient, normal, one_op, spaced

from propscope.graph.errors import ShapeError


def _conv(**kw: Any) -> Any:
    return lambda F, t, x, w, b=None: F.conv3d(x, w, b, **kw)


def _convT(**kw: Any) -> Any:
    return lambda F, t, x, w, b=None: F.conv_transpose3d(x, w, b, **kw)


def _convT_six(pads: tuple[int, ...], **kw: Any) -> Any:
    """A transposed convolution with (front, back, top, bottom, left, right) padding: the full output, cropped."""
    def fn(F: Any, t: Any, x: Any, w: Any, b: Any = None) -> Any:
        full = F.conv_transpose3d(x, w, b, **kw)
        return full[:, :, pads[0]: full.shape[2] - pads[1], pads[2]: full.shape[3] - pads[3],
                    pads[4]: full.shape[4] - pads[5]]

    return fn


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
    Case("conv_transpose3d", (normal(2, 3, 2, 3, 3), normal(3, 2, 2, 2, 2), normal(2)), _convT(stride=2),
         {"stride": 2}, "stride2-k2-unet"),
    Case("conv_transpose3d", (normal(1, 2, 3, 3, 2), normal(2, 2, 3, 3, 3), normal(2)),
         _convT(stride=(2, 1, 2), padding=1, output_padding=(1, 0, 1)),
         {"stride": (2, 1, 2), "padding": 1, "output_padding": (1, 0, 1)}, "stride-pad-outpad"),
    Case("conv_transpose3d", (normal(1, 4, 2, 3, 3), normal(4, 1, 2, 3, 2), normal(2)),
         _convT(groups=2, dilation=(2, 1, 2), output_padding=(1, 0, 0)),
         {"groups": 2, "dilation": (2, 1, 2), "output_padding": (1, 0, 0)}, "groups-dilation-outpad"),
    Case("conv_transpose3d", (normal(2, 3, 2, 2, 3), normal(3, 2, 3, 2, 2)), _convT(groups=3, stride=(1, 2, 2)),
         {"groups": 3, "stride": (1, 2, 2)}, "depthwise-multiplier2-no-bias"),
    Case("conv_transpose3d", (normal(1, 2, 2, 3, 3), normal(2, 2, 3, 3, 3), normal(2)),
         _convT_six((1, 0, 0, 2, 1, 1), stride=2), {"stride": 2, "padding": (1, 0, 0, 2, 1, 1)}, "six-sided-pads"),
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
    # upsampling volumes (3-D U-Net decoders without transposed convolutions)
    Case("upsample_nearest3d", (normal(2, 2, 2, 3, 3),), lambda F, t, x: F.interpolate(x, scale_factor=2),
         {"scales": 2.0}, "x2"),
    Case("upsample_nearest3d", (normal(1, 2, 3, 4, 3),), lambda F, t, x: F.interpolate(x, size=(5, 4, 7)),
         {"output_size": (5, 4, 7)}, "sizes-that-do-not-divide"),
    Case("upsample_trilinear3d", (normal(2, 2, 2, 3, 3),),
         lambda F, t, x: F.interpolate(x, scale_factor=2, mode="trilinear"), {"scales": 2.0}, "x2"),
    Case("upsample_trilinear3d", (normal(1, 2, 3, 4, 3),),
         lambda F, t, x: F.interpolate(x, scale_factor=(1.5, 2.5, 1.0), mode="trilinear"),
         {"scales": (1.5, 2.5, 1.0)}, "scales"),
    Case("upsample_trilinear3d", (normal(1, 2, 3, 4, 2),),
         lambda F, t, x: F.interpolate(x, size=(5, 3, 4), mode="trilinear", align_corners=True),
         {"output_size": (5, 3, 4), "align_corners": True}, "align-corners-shrinks-height"),
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
    ("conv_transpose3d", [(1, 3, 2, 2, 2), (2, 2, 2, 2, 2)], {}, "expects 2 input channels"),
    ("conv_transpose3d", [(1, 2, 2, 2), (2, 2, 2, 2, 2)], {}, "volumes as"),
    ("conv_transpose3d", [(1, 2, 2, 2, 2), (2, 2, 2, 2)], {}, "in_channels, out_channels / groups, kd"),
    ("conv_transpose3d", [(1, 3, 2, 2, 2), (3, 2, 2, 2, 2)], {"groups": 2}, "groups=2"),
    ("conv_transpose3d", [(1, 2, 2, 2, 2), (2, 2, 2, 2, 2)], {"stride": 2, "output_padding": (0, 2, 0)},
     "output_padding"),
    ("conv_transpose3d", [(1, 2, 1, 1, 1), (2, 2, 1, 1, 1)], {"padding": 1}, "crops the whole"),
    ("conv_transpose3d", [(1, 2, 2, 2, 2), (2, 2, 2, 2, 2), (2,)], {"groups": 2}, r"bias must be \(4,\)"),
    ("conv_transpose3d", [(1, 2, 2, 2, 2), (2, 2, 2, 2, 2)], {"stride": (1, 0, 1)}, "must be positive"),
    ("conv_transpose3d", [(1, 2, 2, 2, 2), (2, 2, 2, 2, 2)], {"padding": (1, 1)}, "six ints"),
    ("max_pool3d", [(1, 2, 4, 4, 4)], {"kernel_size": 2, "padding": 2}, "at most half the kernel"),
    ("adaptive_avg_pool3d", [(1, 2, 4, 4, 4)], {"output_size": (2, 2)}, "depth, height, width"),
    ("upsample_trilinear3d", [(1, 2, 4, 4)], {"scales": 2.0}, "volumes as"),
    ("upsample_nearest3d", [(1, 2, 4, 4, 4)], {}, "needs an output_size or scales"),
    ("upsample_nearest3d", [(1, 2, 4, 4, 4)], {"output_size": (2, 2)}, "depth, height, width"),
    ("upsample_trilinear3d", [(1, 2, 4, 4, 4)], {"scales": (0.1, 1, 1)}, "must be positive"),
])
def test_shapes_that_do_not_fit_are_refused_with_a_reason(op: str, shapes: list[tuple[int, ...]],
                                                          attrs: dict[str, Any], says: str) -> None:
    import numpy as np

    with pytest.raises(ShapeError, match=says):
        one_op(op, [np.zeros(s) for s in shapes], attrs)


# -- the window matrix in slabs: bounded memory, the same numbers ------------------------------------------------
SLABBED = [
    ("conv3d", (2, 4, 5, 7, 6), (6, 4, 3, 3, 3), {"stride": 1, "padding": 1, "dilation": 1, "groups": 1}),
    ("conv3d", (3, 4, 5, 9, 6), (4, 2, 2, 3, 2), {"stride": (2, 1, 2), "padding": (1, 0, 1), "dilation": (1, 2, 1),
                                                  "groups": 2}),
    ("conv3d", (1, 3, 6, 5, 5), (3, 1, 3, 3, 3), {"stride": 1, "padding": (1, 0, 1, 1, 0, 2), "dilation": 1,
                                                  "groups": 3}),
    ("conv_transpose3d", (2, 4, 3, 4, 3), (4, 3, 3, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1,
                                                            "dilation": 1, "groups": 1}),
    ("conv_transpose3d", (1, 4, 3, 3, 4), (4, 1, 2, 3, 2), {"stride": (1, 2, 2), "padding": (1, 0, 0, 1, 1, 0),
                                                            "output_padding": (0, 1, 1), "dilation": (2, 1, 1),
                                                            "groups": 2}),
]


def _forward_and_vjp(op: str, arrays: list[Any], attrs: dict[str, Any], upstream: Any = None) -> list[Any]:
    """The output and the VJP of every input (for `upstream`, or ones)."""
    import numpy as np

    from propscope.backends.numpy import NumpyBackend

    b = NumpyBackend("float64")
    node = one_op(op, arrays, attrs)
    out = b.forward(node, arrays)
    return [out, *b.vjp(node, arrays, out, np.ones(out.shape) if upstream is None else upstream)]


@pytest.mark.parametrize("limit", [1, 3000, 40000], ids=["rows", "depth-slices", "samples"])
@pytest.mark.parametrize("op, x, w, attrs", SLABBED, ids=[f"{c[0]}-{i}" for i, c in enumerate(SLABBED)])
def test_window_matrix_in_slabs_gives_the_same_numbers(op: str, x: tuple[int, ...], w: tuple[int, ...],
                                                       attrs: dict[str, Any], limit: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A bound of one byte forces one row of one depth slice per product (and one depth tap of one channel per
    weight-gradient slab); the numbers are those of one product over everything, but for the last bits that
    OpenBLAS's size-dependent kernels may round differently."""
    import numpy as np

    import propscope.backends.numpy.conv3d as kernels

    rng = np.random.default_rng(7)
    channels = w[1] * attrs["groups"] if op == "conv_transpose3d" else w[0]
    arrays = [rng.standard_normal(x), rng.standard_normal(w), rng.standard_normal(channels)]
    upstream = rng.standard_normal(_forward_and_vjp(op, arrays, attrs)[0].shape)
    reference = _forward_and_vjp(op, arrays, attrs, upstream)
    monkeypatch.setattr(kernels, "IM2COL_BYTES", limit)
    slabbed = _forward_and_vjp(op, arrays, attrs, upstream)
    for name, got, want in zip(["out", "x", "W", "b"], slabbed, reference, strict=True):
        assert got.shape == want.shape, name
        err = float(np.max(np.abs(got - want))) / float(np.max(np.abs(want)))
        assert err <= 1e-14, f"{name}: relative difference {err:.3g} in slabs of {limit} bytes"


def test_window_matrix_memory_stays_under_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 16³ volume of 8 channels and a 3³ kernel: the window matrix alone is 27 times the input (7 MB in
    float64); under a 256 kB bound, forward and backward never hold more than a few times the input. (The kernels'
    reused working memory is turned off here, so that every window matrix is allocated where tracemalloc sees it.)"""
    import tracemalloc

    import numpy as np

    import propscope.backends.numpy.conv3d as kernels
    import propscope.backends.numpy.kernels as table

    monkeypatch.setattr(table, "SCRATCH_BYTES", 0)

    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 8, 16, 16, 16)), rng.standard_normal((8, 8, 3, 3, 3)), rng.standard_normal(8)
    attrs = {"stride": 1, "padding": 1, "dilation": 1, "groups": 1}
    default = kernels.IM2COL_BYTES
    for op in ("conv3d", "conv_transpose3d"):
        _forward_and_vjp(op, [x, w, b], attrs)  # shape rules and caches warmed outside the measurement
        peaks = []
        for limit in (default, 256 * 1024):
            monkeypatch.setattr(kernels, "IM2COL_BYTES", limit)
            tracemalloc.start()
            _forward_and_vjp(op, [x, w, b], attrs)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
        assert peaks[0] > 27 * x.nbytes, f"{op}: the whole window matrix was expected at once ({peaks[0]} bytes)"
        assert peaks[1] < 8 * x.nbytes, f"{op}: {peaks[1]} bytes at the peak in slabs of 256 kB"


def test_slabs_of_a_large_volume_fit_the_default_bound() -> None:
    """The case that motivated the bound (64³, 32 channels, 3³ kernel: 1.8 GB at once) in slabs of ≤ 256 MB."""
    import propscope.backends.numpy.conv3d as kernels

    per_position = 32 * 27 * 8
    slabs = kernels._position_slabs(2, (64, 64, 64), per_position)
    sizes = [len(range(*s.indices(2))) * len(range(*d.indices(64))) * len(range(*r.indices(64))) * 64 * per_position
             for s, d, r in slabs]
    assert max(sizes) <= kernels.IM2COL_BYTES and sum(sizes) == 2 * 64 ** 3 * per_position


@pytest.mark.torch
def test_max_pool3d_ties_go_to_the_first_largest_as_torch() -> None:
    """Whole numbers tie in almost every window: the gradient goes to the first largest (depth, row, column order)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(11)
    x = np.round(rng.standard_normal((2, 3, 5, 6, 7)))
    attrs = {"kernel_size": 3, "stride": (1, 2, 1), "padding": 1, "dilation": 1, "ceil_mode": True}
    upstream = rng.standard_normal(_forward_and_vjp("max_pool3d", [x], attrs)[0].shape)
    out, gx = _forward_and_vjp("max_pool3d", [x], attrs, upstream)
    xt = torch.from_numpy(x).requires_grad_(True)
    want = F.max_pool3d(xt, 3, (1, 2, 1), 1, ceil_mode=True)
    want.backward(torch.from_numpy(upstream))
    np.testing.assert_array_equal(out, want.detach().numpy())
    np.testing.assert_array_equal(gx != 0, xt.grad.numpy() != 0)  # the same winners (sums differ in rounding)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-13, atol=1e-14)


def test_max_pool3d_gradient_holds_no_window_matrix() -> None:
    """A 3³ window at stride 1 reads every cell 27 times; the gradient finds each window's winner tap by tap, so
    forward and backward hold a few times the input (the window matrix alone would be 27 times it)."""
    import tracemalloc

    import numpy as np

    x = np.random.default_rng(2).standard_normal((2, 8, 16, 16, 16))
    attrs = {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1, "ceil_mode": False}
    out = _forward_and_vjp("max_pool3d", [x], attrs)[0]
    tracemalloc.start()
    _forward_and_vjp("max_pool3d", [x], attrs, np.ones(out.shape))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 12 * x.nbytes, f"{peak / x.nbytes:.1f} times the input at the peak"

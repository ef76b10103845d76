"""The conv family: convolutions (2-D, transposed, 1-D), pooling, adaptive pooling, upsampling and pad.

Every case runs the three op checks (hand-written VJP against central differences, NumPy against
torch's own function under autograd, propscope's torch backend against its NumPy backend). The
original conv2d/pool cases stay in test_nn_ops.py; the rows here cover the variants PyTorch and
ONNX models use: groups and depthwise filters, asymmetric padding, ceil_mode, count_include_pad,
align_corners, sizes that do not divide. Random geometries against torch close the file.
Max-pool inputs are `spaced` so no window has a tie, even under the difference stencil.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opcheck import Case, check_against_torch, check_backends_agree, check_gradient, normal, one_op, spaced

from propscope.backends.numpy import NumpyBackend
from propscope.graph.errors import ShapeError

INF = float("inf")


def _tpad(pads: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) in F.pad's order (last axis first)."""
    top, bottom, left, right = pads
    return left, right, top, bottom


def _conv(**kw: Any) -> Any:
    return lambda F, t, x, w, b=None: F.conv2d(x, w, b, **kw)


def _conv_asym(pads: tuple[int, int, int, int], **kw: Any) -> Any:
    return lambda F, t, x, w, b=None: F.conv2d(F.pad(x, _tpad(pads)), w, b, **kw)


def _convT(**kw: Any) -> Any:
    return lambda F, t, x, w, b=None: F.conv_transpose2d(x, w, b, **kw)


def _convT_asym(pads: tuple[int, int, int, int], **kw: Any) -> Any:
    def fn(F: Any, t: Any, x: Any, w: Any, b: Any = None) -> Any:
        full = F.conv_transpose2d(x, w, b, **kw)
        return full[:, :, pads[0]: full.shape[2] - pads[1], pads[2]: full.shape[3] - pads[3]]

    return fn


def _conv1(**kw: Any) -> Any:
    return lambda F, t, x, w, b=None: F.conv1d(x, w, b, **kw)


def _avg_asym(pads: tuple[int, int, int, int], k: Any, s: Any, include: bool) -> Any:
    """Asymmetric average pooling written independently: window sums over the zero-padded image,
    divided by the kernel area (counting the padding) or by the count of real cells."""
    def fn(F: Any, t: Any, x: Any) -> Any:
        if include:
            return F.avg_pool2d(F.pad(x, _tpad(pads)), k, s)
        sums = F.avg_pool2d(F.pad(x, _tpad(pads)), k, s, divisor_override=1)
        counts = F.avg_pool2d(F.pad(t.ones_like(x), _tpad(pads)), k, s, divisor_override=1)
        return sums / counts

    return fn


def _pad(pads: tuple[tuple[int, int], ...], mode: str = "constant", value: float = 0.0) -> Any:
    flat = [amount for pair in reversed(pads) for amount in pair]
    if mode == "constant":
        return lambda F, t, x: F.pad(x, flat, value=value)
    trailing = [amount for pair in reversed(pads[2:]) for amount in pair]  # F.pad's other modes: no batch/channel
    return lambda F, t, x: F.pad(x, trailing, mode=mode)


def _interp(**kw: Any) -> Any:
    return lambda F, t, x: F.interpolate(x, **kw)


CASES = [
    # conv2d: what test_nn_ops.py lacks: depthwise with a channel multiplier, groups with stride and dilation,
    # ONNX's asymmetric padding
    Case("conv2d", (normal(2, 3, 6, 6), normal(6, 1, 3, 3), normal(6)), _conv(groups=3, padding=1),
         {"groups": 3, "padding": 1}, "depthwise-multiplier2"),
    Case("conv2d", (normal(1, 4, 9, 8), normal(4, 2, 3, 2), normal(4)), _conv(groups=2, stride=2, dilation=2),
         {"groups": 2, "stride": 2, "dilation": 2}, "groups2-stride2-dilation2"),
    Case("conv2d", (normal(2, 2, 5, 6), normal(3, 2, 3, 3), normal(3)), _conv_asym((1, 0, 2, 1)),
         {"padding": (1, 0, 2, 1)}, "asymmetric-pads"),
    Case("conv2d", (normal(1, 4, 7, 7), normal(4, 1, 3, 3)), _conv_asym((0, 1, 0, 1), stride=2, groups=4),
         {"padding": (0, 1, 0, 1), "stride": 2, "groups": 4}, "asymmetric-pads-depthwise-stride2"),
    # conv_transpose2d
    Case("conv_transpose2d", (normal(2, 3, 4, 4), normal(3, 2, 3, 3), normal(2)), _convT()),
    Case("conv_transpose2d", (normal(2, 3, 4, 5), normal(3, 2, 3, 3), normal(2)),
         _convT(stride=2, padding=1, output_padding=1), {"stride": 2, "padding": 1, "output_padding": 1},
         "stride2-pad1-outpad1"),
    Case("conv_transpose2d", (normal(1, 2, 3, 3), normal(2, 3, 2, 2), normal(3)), _convT(stride=2),
         {"stride": 2}, "stride2-k2-unet"),
    Case("conv_transpose2d", (normal(1, 2, 4, 3), normal(2, 2, 3, 3), normal(2)),
         _convT(dilation=2, output_padding=1), {"dilation": 2, "output_padding": 1}, "dilation2-outpad1"),
    Case("conv_transpose2d", (normal(2, 4, 3, 3), normal(4, 3, 3, 3), normal(6)), _convT(groups=2, padding=1),
         {"groups": 2, "padding": 1}, "groups2"),
    Case("conv_transpose2d", (normal(1, 3, 4, 4), normal(3, 2, 2, 2), normal(6)), _convT(groups=3, stride=2),
         {"groups": 3, "stride": 2}, "depthwise-multiplier2"),
    Case("conv_transpose2d", (normal(2, 2, 4, 5), normal(2, 3, 3, 2)),
         _convT(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), dilation=(1, 2)),
         {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0), "dilation": (1, 2)}, "rectangular-no-bias"),
    Case("conv_transpose2d", (normal(1, 2, 3, 4), normal(2, 2, 3, 3), normal(2)),
         _convT_asym((1, 0, 0, 2), stride=2), {"stride": 2, "padding": (1, 0, 0, 2)}, "asymmetric-pads"),
    # max_unpool2d: the values y put back where the maxima of the pool's input x sat (x: no gradient)
    Case("max_unpool2d", (normal(2, 3, 3, 4), spaced(2, 3, 6, 8)),
         lambda F, t, y, x: F.max_unpool2d(y, F.max_pool2d(x, 2, return_indices=True)[1], 2),
         {"kernel_size": 2}, "segnet"),
    Case("max_unpool2d", (normal(1, 2, 2, 2), spaced(1, 2, 5, 6)),
         lambda F, t, y, x: F.max_unpool2d(y, F.max_pool2d(x, 3, 3, 1, return_indices=True)[1], 3, 3, 1, (5, 6)),
         {"kernel_size": 3, "stride": 3, "padding": 1, "output_size": (5, 6)}, "k3-padding"),
    Case("max_unpool2d", (normal(1, 2, 2, 2), spaced(1, 2, 5, 5)),
         lambda F, t, y, x: F.max_unpool2d(y, F.max_pool2d(x, 2, return_indices=True)[1], 2, output_size=(5, 5)),
         {"kernel_size": 2, "output_size": (5, 5)}, "odd-size-back"),
    # im2col and col2im (F.unfold, F.fold)
    Case("im2col", (normal(2, 3, 5, 6),), lambda F, t, x: F.unfold(x, 3, padding=1, stride=2),
         {"kernel_size": 3, "padding": 1, "stride": 2}, "k3-p1-s2"),
    Case("im2col", (normal(1, 2, 7, 6),), lambda F, t, x: F.unfold(x, (2, 3), dilation=(2, 1), stride=(1, 2)),
         {"kernel_size": (2, 3), "dilation": (2, 1), "stride": (1, 2)}, "dilation-rectangular"),
    Case("im2col", (normal(2, 2, 4, 5),), lambda F, t, x: F.unfold(F.pad(x, _tpad((1, 0, 2, 1))), 2, stride=2),
         {"kernel_size": 2, "padding": (1, 0, 2, 1), "stride": 2}, "asymmetric-pads"),
    Case("col2im", (normal(2, 27, 9),), lambda F, t, x: F.fold(x, (5, 6), 3, padding=1, stride=2),
         {"output_size": (5, 6), "kernel_size": 3, "padding": 1, "stride": 2}, "k3-p1-s2-overlapping"),
    Case("col2im", (normal(1, 12, 10),), lambda F, t, x: F.fold(x, (7, 6), (2, 3), dilation=(2, 1), stride=(1, 2)),
         {"output_size": (7, 6), "kernel_size": (2, 3), "dilation": (2, 1), "stride": (1, 2)}, "dilation-rectangular"),
    Case("col2im", (normal(2, 8, 12),),
         lambda F, t, x: F.fold(x, (6, 8), 2, stride=2)[:, :, 1:5, 2:7],
         {"output_size": (4, 5), "kernel_size": 2, "padding": (1, 1, 2, 1), "stride": 2}, "asymmetric-pads"),
    # conv1d
    Case("conv1d", (normal(2, 3, 9), normal(4, 3, 3), normal(4)), _conv1()),
    Case("conv1d", (normal(2, 3, 9), normal(4, 3, 3), normal(4)), _conv1(stride=2, padding=1),
         {"stride": 2, "padding": 1}, "stride2-pad1"),
    Case("conv1d", (normal(1, 2, 10), normal(3, 2, 3)), _conv1(dilation=3, padding=2),
         {"dilation": 3, "padding": 2}, "dilation3-no-bias"),
    Case("conv1d", (normal(2, 4, 8), normal(8, 1, 3), normal(8)), _conv1(groups=4, padding=1),
         {"groups": 4, "padding": 1}, "depthwise-multiplier2"),
    Case("conv1d", (normal(2, 4, 8), normal(2, 2, 2), normal(2)), _conv1(groups=2), {"groups": 2}, "groups2"),
    Case("conv1d", (normal(2, 2, 7), normal(3, 2, 3), normal(3)),
         lambda F, t, x, w, b: F.conv1d(F.pad(x, (2, 0)), w, b), {"padding": (2, 0)}, "causal-left-pad"),
    # max_pool2d: ceil_mode (with and without a dropped last window), asymmetric pads
    Case("max_pool2d", (spaced(2, 2, 6, 6),), lambda F, t, x: F.max_pool2d(x, 3, 2, ceil_mode=True),
         {"kernel_size": 3, "stride": 2, "ceil_mode": True}, "ceil"),
    Case("max_pool2d", (spaced(1, 2, 5, 5),), lambda F, t, x: F.max_pool2d(x, 2, 2, 1, ceil_mode=True),
         {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}, "ceil-drops-window-in-padding"),
    Case("max_pool2d", (spaced(1, 2, 7, 6),), lambda F, t, x: F.max_pool2d(x, 3, 2, 1, 2, ceil_mode=True),
         {"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2, "ceil_mode": True}, "ceil-dilation2"),
    Case("max_pool2d", (spaced(2, 2, 5, 6),),
         lambda F, t, x: F.max_pool2d(F.pad(x, _tpad((0, 1, 1, 0)), value=-INF), 2, 2),
         {"kernel_size": 2, "stride": 2, "padding": (0, 1, 1, 0)}, "asymmetric-pads"),
    # avg_pool2d: ceil_mode × count_include_pad, asymmetric pads
    Case("avg_pool2d", (normal(2, 2, 7, 7),), lambda F, t, x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
         {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, "exclude-pad"),
    Case("avg_pool2d", (normal(1, 2, 6, 5),), lambda F, t, x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
         {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, "ceil-include-pad"),
    Case("avg_pool2d", (normal(1, 2, 6, 5),),
         lambda F, t, x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
         {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
         "ceil-exclude-pad"),
    Case("avg_pool2d", (normal(1, 1, 5, 5),), lambda F, t, x: F.avg_pool2d(x, 2, 2, 1, ceil_mode=True),
         {"kernel_size": 2, "stride": 2, "padding": 1, "ceil_mode": True}, "ceil-drops-window-in-padding"),
    Case("avg_pool2d", (normal(1, 2, 4, 7),), lambda F, t, x: F.avg_pool2d(x, (2, 3), (1, 2), ceil_mode=True),
         {"kernel_size": (2, 3), "stride": (1, 2), "ceil_mode": True}, "ceil-rectangular"),
    Case("avg_pool2d", (normal(2, 2, 5, 6),), _avg_asym((1, 0, 0, 1), 2, 2, True),
         {"kernel_size": 2, "stride": 2, "padding": (1, 0, 0, 1)}, "asymmetric-pads-include"),
    Case("avg_pool2d", (normal(2, 2, 6, 6),), _avg_asym((1, 1, 0, 1), 3, 2, False),
         {"kernel_size": 3, "stride": 2, "padding": (1, 1, 0, 1), "count_include_pad": False},
         "asymmetric-pads-exclude"),
    # 1-D pooling
    Case("max_pool1d", (spaced(2, 3, 8),), lambda F, t, x: F.max_pool1d(x, 2), {"kernel_size": 2}),
    Case("max_pool1d", (spaced(2, 2, 9),), lambda F, t, x: F.max_pool1d(x, 3, 2, 1),
         {"kernel_size": 3, "stride": 2, "padding": 1}, "k3-s2-p1"),
    Case("max_pool1d", (spaced(1, 2, 10),), lambda F, t, x: F.max_pool1d(x, 3, 1, 1, 2),
         {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 2}, "dilation2"),
    Case("max_pool1d", (spaced(1, 2, 8),), lambda F, t, x: F.max_pool1d(x, 3, 2, ceil_mode=True),
         {"kernel_size": 3, "stride": 2, "ceil_mode": True}, "ceil"),
    Case("avg_pool1d", (normal(2, 3, 8),), lambda F, t, x: F.avg_pool1d(x, 2), {"kernel_size": 2}),
    Case("avg_pool1d", (normal(2, 2, 9),), lambda F, t, x: F.avg_pool1d(x, 3, 2, 1, count_include_pad=False),
         {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, "exclude-pad"),
    Case("avg_pool1d", (normal(1, 2, 8),), lambda F, t, x: F.avg_pool1d(x, 3, 2, 1, ceil_mode=True),
         {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, "ceil"),
    Case("avg_pool1d", (normal(1, 2, 7),), lambda F, t, x: F.avg_pool1d(F.pad(x, (1, 0)), 2, 2),
         {"kernel_size": 2, "stride": 2, "padding": (1, 0)}, "asymmetric-pads"),
    # adaptive pooling: global, sizes that do not divide (windows overlap and differ), larger than the input
    Case("adaptive_avg_pool2d", (normal(2, 3, 5, 4),), lambda F, t, x: F.adaptive_avg_pool2d(x, 1),
         {"output_size": (1, 1)}, "global"),
    Case("adaptive_avg_pool2d", (normal(2, 2, 7, 5),), lambda F, t, x: F.adaptive_avg_pool2d(x, (3, 2)),
         {"output_size": (3, 2)}, "non-divisible"),
    Case("adaptive_avg_pool2d", (normal(1, 2, 3, 4),), lambda F, t, x: F.adaptive_avg_pool2d(x, (5, 6)),
         {"output_size": (5, 6)}, "larger-than-input"),
    Case("adaptive_avg_pool2d", (normal(1, 2, 6, 5),), lambda F, t, x: F.adaptive_avg_pool2d(x, (4, None)),
         {"output_size": (4, None)}, "keep-width"),
    Case("adaptive_max_pool2d", (spaced(2, 2, 7, 5),), lambda F, t, x: F.adaptive_max_pool2d(x, (3, 2)),
         {"output_size": (3, 2)}, "non-divisible"),
    Case("adaptive_max_pool2d", (spaced(1, 3, 4, 4),), lambda F, t, x: F.adaptive_max_pool2d(x, 1),
         {"output_size": (1, 1)}, "global"),
    # nearest upsampling: by whole factors, by fractions, down; sizes from scales as F.interpolate passes them
    Case("upsample_nearest2d", (normal(2, 2, 4, 3),), _interp(size=(8, 9), mode="nearest"),
         {"output_size": (8, 9)}, "x2-x3"),
    Case("upsample_nearest2d", (normal(1, 2, 3, 4),), _interp(size=(5, 7), mode="nearest"),
         {"output_size": (5, 7)}, "fractional"),
    Case("upsample_nearest2d", (normal(1, 2, 7, 5),), _interp(size=(3, 2), mode="nearest"),
         {"output_size": (3, 2)}, "down"),
    Case("upsample_nearest2d", (normal(1, 2, 3, 4),), _interp(scale_factor=2.0, mode="nearest"),
         {"scales": (2.0, 2.0)}, "scale2"),
    Case("upsample_nearest2d", (normal(1, 2, 5, 3),), _interp(scale_factor=(1.7, 2.5), mode="nearest"),
         {"scales": (1.7, 2.5)}, "scale-fractional"),
    # bilinear: align_corners both ways, up and down, scales
    Case("upsample_bilinear2d", (normal(2, 2, 4, 5),), _interp(size=(8, 11), mode="bilinear"),
         {"output_size": (8, 11)}, "up"),
    Case("upsample_bilinear2d", (normal(2, 2, 4, 5),), _interp(size=(8, 11), mode="bilinear", align_corners=True),
         {"output_size": (8, 11), "align_corners": True}, "up-align-corners"),
    Case("upsample_bilinear2d", (normal(1, 2, 7, 6),), _interp(size=(3, 4), mode="bilinear"),
         {"output_size": (3, 4)}, "down"),
    Case("upsample_bilinear2d", (normal(1, 2, 7, 6),), _interp(size=(3, 1), mode="bilinear", align_corners=True),
         {"output_size": (3, 1), "align_corners": True}, "down-align-corners-to-one"),
    Case("upsample_bilinear2d", (normal(1, 2, 3, 4),), _interp(scale_factor=2.0, mode="bilinear"),
         {"scales": (2.0, 2.0)}, "scale2"),
    Case("upsample_bilinear2d", (normal(1, 2, 3, 4),), _interp(scale_factor=(1.7, 2.5), mode="bilinear"),
         {"scales": (1.7, 2.5)}, "scale-fractional"),
    # pad: every mode, cropping, every axis
    Case("pad", (normal(2, 3, 4, 5),), _pad(((0, 0), (0, 0), (1, 2), (2, 1)), value=0.5),
         {"pads": ((0, 0), (0, 0), (1, 2), (2, 1)), "value": 0.5}, "constant"),
    Case("pad", (normal(2, 3, 4, 5),), _pad(((1, 0), (0, 2), (-1, 2), (1, -2))),
         {"pads": ((1, 0), (0, 2), (-1, 2), (1, -2))}, "constant-crop-every-axis"),
    Case("pad", (normal(2, 3, 5, 6),), _pad(((0, 0), (0, 0), (2, 1), (1, 3)), "reflect"),
         {"pads": ((0, 0), (0, 0), (2, 1), (1, 3)), "mode": "reflect"}, "reflect"),
    Case("pad", (normal(2, 3, 4, 5),), _pad(((0, 0), (0, 0), (3, 1), (2, 4)), "replicate"),
         {"pads": ((0, 0), (0, 0), (3, 1), (2, 4)), "mode": "replicate"}, "replicate"),
    Case("pad", (normal(2, 3, 4, 5),), _pad(((0, 0), (0, 0), (2, 1), (3, 5)), "circular"),
         {"pads": ((0, 0), (0, 0), (2, 1), (3, 5)), "mode": "circular"}, "circular"),
    Case("pad", (normal(2, 3, 6),), _pad(((0, 0), (0, 0), (3, 2)), "reflect"),
         {"pads": ((0, 0), (0, 0), (3, 2)), "mode": "reflect"}, "reflect-1d"),
    Case("pad", (normal(2, 3, 6),), _pad(((0, 0), (0, 0), (1, 2)), "replicate"),
         {"pads": ((0, 0), (0, 0), (1, 2)), "mode": "replicate"}, "replicate-1d"),
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


@pytest.mark.parametrize(
    ("op", "shapes", "attrs", "message"),
    [
        ("conv2d", [(1, 1, 5, 5), (1, 1, 3, 3)], {"padding": (1, 2, 3)}, "(top, bottom, left, right)"),
        ("conv2d", [(1, 1, 5, 5), (1, 1, 3, 3)], {"padding": (1, -1, 0, 0)}, "must not be negative"),
        ("conv2d", [(1, 4, 5, 5), (4, 3, 3, 3)], {"groups": 4}, "expects 12 input channels"),
        ("conv_transpose2d", [(1, 3, 4, 4), (2, 2, 3, 3)], {}, "expects 2 input channels"),
        ("conv_transpose2d", [(1, 3, 4, 4), (3, 2, 3, 3)], {"groups": 2}, "groups=2"),
        ("conv_transpose2d", [(1, 2, 4, 4), (2, 2, 3, 3)], {"stride": 2, "output_padding": 2}, "output_padding"),
        ("conv_transpose2d", [(1, 2, 1, 1), (2, 2, 1, 1)], {"padding": 1}, "crops the whole"),
        ("conv_transpose2d", [(1, 2, 4, 4), (2, 2, 3, 3), (2,)], {"groups": 2}, "bias must be (4,)"),
        ("conv1d", [(1, 2, 5, 5), (3, 2, 3)], {}, "(batch, channels, length)"),
        ("conv1d", [(1, 2, 2), (3, 2, 3)], {}, "does not fit"),
        ("conv1d", [(1, 2, 6), (3, 2, 3)], {"padding": (1, 2, 3)}, "(left, right)"),
        ("max_pool2d", [(1, 1, 4, 4)], {"kernel_size": 2, "padding": (0, 2, 0, 0)}, "at most half"),
        ("avg_pool1d", [(1, 1, 4)], {"kernel_size": 2, "padding": 2}, "at most half"),
        ("max_pool1d", [(1, 4, 4, 4)], {"kernel_size": 2}, "(batch, channels, length)"),
        ("adaptive_avg_pool2d", [(1, 2, 4)], {"output_size": (2, 2)}, "(batch, channels, height, width)"),
        ("adaptive_max_pool2d", [(1, 2, 4, 4)], {"output_size": (0, 2)}, "must be positive"),
        ("max_unpool2d", [(1, 2, 3, 3), (1, 2, 6, 8)], {"kernel_size": 2}, "are not the 2×2 max pool"),
        ("max_unpool2d", [(1, 2, 3, 4), (1, 2, 6, 8)], {"kernel_size": 2, "output_size": (0, 4)}, "must be positive"),
        ("im2col", [(1, 2, 4)], {"kernel_size": 2}, "(batch, channels, height, width)"),
        ("im2col", [(1, 2, 2, 2)], {"kernel_size": 3}, "does not fit"),
        ("col2im", [(1, 2, 4, 4)], {"output_size": (4, 4), "kernel_size": 2}, "(batch, channels·kh·kw, windows)"),
        ("col2im", [(1, 7, 9)], {"output_size": (4, 4), "kernel_size": 2}, "a multiple of 4 rows"),
        ("col2im", [(1, 8, 8)], {"output_size": (4, 4), "kernel_size": 2}, "9 columns"),
        ("upsample_nearest2d", [(1, 2, 4, 4)], {}, "needs an output_size or scales"),
        ("upsample_bilinear2d", [(1, 2, 4, 4)], {"output_size": (2, 3, 4)}, "(height, width)"),
        ("pad", [(2, 3)], {"pads": ((1, 1),)}, "2 pairs"),
        ("pad", [(2, 3)], {"pads": ((0, 0), (1, 1)), "mode": "mirror"}, "not one of"),
        ("pad", [(2, 3)], {"pads": ((0, 0), (3, 0)), "mode": "reflect"}, "smaller than axis 1"),
        ("pad", [(2, 3)], {"pads": ((0, 0), (0, 4)), "mode": "circular"}, "may not exceed"),
        ("pad", [(2, 3)], {"pads": ((0, 0), (-1, 0)), "mode": "replicate"}, "only in constant mode"),
        ("pad", [(2, 3)], {"pads": ((0, 0), (-2, -1))}, "away entirely"),
    ],
)
def test_shape_rule_says_what_is_wrong(op: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any],
                                       message: str) -> None:
    with pytest.raises(ShapeError) as info:
        one_op(op, [np.zeros(s) for s in shapes], attrs)
    assert message in str(info.value)


def test_padding_forms_mean_the_same() -> None:
    """One int, a (height, width) pair and the 4-tuple it stands for give the same convolution."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((3, 2, 3, 3))
    b = NumpyBackend("float64")
    outs = [b.forward(one_op("conv2d", [x, w], {"padding": p}), [x, w]) for p in (1, (1, 1), (1, 1, 1, 1))]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    rect = b.forward(one_op("conv2d", [x, w], {"padding": (2, 0)}), [x, w])
    np.testing.assert_array_equal(rect, b.forward(one_op("conv2d", [x, w], {"padding": (2, 2, 0, 0)}), [x, w]))


def test_conv_transpose_is_the_gradient_of_conv() -> None:
    """The formula the app shows: conv_transpose2d(y, W) = ∂⟨conv2d(x, W), y⟩/∂x."""
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 3))
    attrs = {"stride": 2, "padding": 1, "dilation": 1, "groups": 2}
    b = NumpyBackend("float64")
    conv = one_op("conv2d", [x, w], attrs)
    out = b.forward(conv, [x, w])
    y = rng.standard_normal(out.shape)
    gx = b.vjp(conv, [x, w], out, y)[0]
    assert gx is not None
    back = one_op("conv_transpose2d", [y, w], {**attrs, "output_padding": (0, 1)})  # the width the stride lost
    np.testing.assert_allclose(b.forward(back, [y, w]), gx, rtol=1e-12, atol=1e-12)


def test_float32_stays_float32() -> None:
    b = NumpyBackend("float32")
    for case in CASES:
        arrays = [b.asarray(a) for a in case.arrays()]
        node = one_op(case.op, arrays, case.attrs)
        out = b.forward(node, arrays)
        assert out.dtype == np.float32, case.id
        for grad in b.vjp(node, arrays, out, b.ones(out.shape)):
            assert grad is None or grad.dtype == np.float32, case.id


# -- random geometries against torch ------------------------------------------------------------
def _against_torch(op: str, arrays: list[np.ndarray], attrs: dict[str, Any], expected_fn: Any, seed: int) -> None:
    import torch

    node = one_op(op, arrays, attrs)
    b = NumpyBackend("float64")
    out = b.forward(node, arrays)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    expected = expected_fn(*tensors)
    assert out.shape == tuple(expected.shape), (out.shape, tuple(expected.shape))
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape)
    for got, want in zip(b.vjp(node, arrays, out, upstream),
                         torch.autograd.grad(expected, tensors, torch.tensor(upstream)), strict=True):
        assert got is not None
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-10, atol=1e-12)


@st.composite
def transposed_geometries(draw: st.DrawFn) -> dict[str, Any]:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    out_pad = tuple(draw(st.integers(0, max(stride[i], dilation[i]) - 1)) for i in range(2))
    size = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    full = [(size[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + out_pad[i] + 1 for i in range(2)]
    padding = tuple(draw(st.integers(0, min(2, (full[i] - 1) // 2))) for i in range(2))
    return {"x": (draw(st.integers(1, 2)), c_in, *size), "W": (c_in, c_out // groups, *kernel),
            "bias": draw(st.booleans()),
            "attrs": {"stride": stride, "padding": padding, "output_padding": out_pad, "dilation": dilation,
                      "groups": groups}}


@pytest.mark.torch
@settings(max_examples=30, deadline=None)
@given(geo=transposed_geometries(), seed=st.integers(0, 2**16))
def test_conv_transpose2d_any_geometry_matches_torch(geo: dict[str, Any], seed: int) -> None:
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(geo["x"]), rng.standard_normal(geo["W"])]
    if geo["bias"]:
        arrays.append(rng.standard_normal(geo["W"][1] * geo["attrs"]["groups"]))
    _against_torch("conv_transpose2d", arrays, geo["attrs"],
                   lambda x, w, b=None: F.conv_transpose2d(x, w, b, **geo["attrs"]), seed)


@pytest.mark.torch
@settings(max_examples=25, deadline=None)
@given(pads=st.tuples(*[st.integers(0, 2)] * 4), k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), groups=st.sampled_from([1, 2]),
       hw=st.tuples(st.integers(3, 7), st.integers(3, 7)), seed=st.integers(0, 2**16))
def test_conv2d_asymmetric_padding_matches_torch(pads: tuple[int, int, int, int], k: tuple[int, int],
                                                 stride: tuple[int, int], groups: int, hw: tuple[int, int],
                                                 seed: int) -> None:
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((2, 2 * groups, *hw)), rng.standard_normal((2 * groups, 2, *k)),
              rng.standard_normal(2 * groups)]
    _against_torch("conv2d", arrays, {"padding": pads, "stride": stride, "groups": groups},
                   lambda x, w, b: F.conv2d(F.pad(x, _tpad(pads)), w, b, stride, groups=groups), seed)


@pytest.mark.torch
@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["max", "avg"]), k=st.integers(1, 4), s=st.integers(1, 3), p=st.integers(0, 2),
       ceil=st.booleans(), include=st.booleans(), one_d=st.booleans(),
       hw=st.tuples(st.integers(4, 9), st.integers(4, 9)), seed=st.integers(0, 2**16))
def test_pools_any_geometry_and_mode_match_torch(kind: str, k: int, s: int, p: int, ceil: bool, include: bool,
                                                 one_d: bool, hw: tuple[int, int], seed: int) -> None:
    import torch.nn.functional as F

    p = min(p, k // 2)
    shape = (2, 2, hw[1]) if one_d else (2, 2, *hw)
    x = np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape) * 0.05 - 1.0
    attrs: dict[str, Any] = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil}
    dims = "1d" if one_d else "2d"
    if kind == "avg":
        attrs["count_include_pad"] = include
        fn = getattr(F, f"avg_pool{dims}")
        _against_torch(f"avg_pool{dims}", [x], attrs,
                       lambda t: fn(t, k, s, p, ceil_mode=ceil, count_include_pad=include), seed)
    else:
        fn = getattr(F, f"max_pool{dims}")
        _against_torch(f"max_pool{dims}", [x], attrs, lambda t: fn(t, k, s, p, ceil_mode=ceil), seed)


@pytest.mark.torch
@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(["avg", "max"]), hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       out=st.tuples(st.integers(1, 6), st.integers(1, 6)), seed=st.integers(0, 2**16))
def test_adaptive_pools_any_size_match_torch(kind: str, hw: tuple[int, int], out: tuple[int, int],
                                             seed: int) -> None:
    import torch.nn.functional as F

    x = np.random.default_rng(seed).permutation(2 * 3 * hw[0] * hw[1]).reshape(2, 3, *hw) * 0.05 - 1.0
    fn = getattr(F, f"adaptive_{kind}_pool2d")
    _against_torch(f"adaptive_{kind}_pool2d", [x], {"output_size": out}, lambda t: fn(t, out), seed)


@pytest.mark.torch
@settings(max_examples=40, deadline=None)
@given(mode=st.sampled_from(["nearest", "bilinear"]), align=st.booleans(), by_scale=st.booleans(),
       hw=st.tuples(st.integers(1, 8), st.integers(1, 8)), out=st.tuples(st.integers(1, 13), st.integers(1, 13)),
       scales=st.tuples(st.sampled_from([0.5, 0.75, 1.3, 1.5, 2.0, 2.5, 3.0]),
                        st.sampled_from([0.6, 1.0, 1.25, 2.0, 3.7])),
       seed=st.integers(0, 2**16))
def test_upsampling_any_size_matches_torch(mode: str, align: bool, by_scale: bool, hw: tuple[int, int],
                                           out: tuple[int, int], scales: tuple[float, float], seed: int) -> None:
    import torch.nn.functional as F

    if by_scale and min(int(hw[0] * scales[0]), int(hw[1] * scales[1])) < 1:
        by_scale = False
    x = np.random.default_rng(seed).standard_normal((2, 2, *hw))
    size_kw: dict[str, Any] = {"scale_factor": scales} if by_scale else {"size": out}
    attrs: dict[str, Any] = {"scales": scales} if by_scale else {"output_size": out}
    if mode == "bilinear":
        attrs["align_corners"] = align
        _against_torch("upsample_bilinear2d", [x], attrs,
                       lambda t: F.interpolate(t, mode="bilinear", align_corners=align, **size_kw), seed)
    else:
        _against_torch("upsample_nearest2d", [x], attrs, lambda t: F.interpolate(t, mode="nearest", **size_kw), seed)


@pytest.mark.torch
@settings(max_examples=40, deadline=None)
@given(mode=st.sampled_from(["constant", "reflect", "replicate", "circular"]),
       hw=st.tuples(st.integers(1, 6), st.integers(1, 6)), amounts=st.tuples(*[st.integers(-3, 6)] * 4),
       value=st.floats(-2, 2), seed=st.integers(0, 2**16))
def test_pad_any_amount_and_mode_matches_torch(mode: str, hw: tuple[int, int], amounts: tuple[int, ...],
                                               value: float, seed: int) -> None:
    import torch.nn.functional as F

    limit = {"constant": None, "reflect": (0, -1), "replicate": (0, 10**6), "circular": (0, 0)}[mode]
    sizes = (hw[0], hw[0], hw[1], hw[1])
    if limit is not None:  # keep each amount inside what the mode allows
        amounts = tuple(min(max(a, 0), size + limit[1]) for a, size in zip(amounts, sizes, strict=True))
    elif (min(hw[0] + amounts[0] + amounts[1], hw[1] + amounts[2] + amounts[3]) < 1
          or min(hw[0] + min(amounts[0], 0) + min(amounts[1], 0), hw[1] + min(amounts[2], 0) + min(amounts[3], 0)) < 0):
        # torch crops the input first (narrow), so it refuses crops longer than the axis even when padding
        # on the other side would make up for them: keep to what torch can compare against
        amounts = tuple(max(a, 0) for a in amounts)
    pads = ((0, 0), (0, 0), (amounts[0], amounts[1]), (amounts[2], amounts[3]))
    flat = [amounts[2], amounts[3], amounts[0], amounts[1]]
    x = np.random.default_rng(seed).standard_normal((2, 2, *hw))
    attrs = {"pads": pads, "mode": mode, "value": value}
    if mode == "constant":
        _against_torch("pad", [x], attrs, lambda t: F.pad(t, flat, value=value), seed)
    else:
        _against_torch("pad", [x], attrs, lambda t: F.pad(t, flat, mode=mode), seed)


# -- the window matrix in slabs: bounded memory, the same numbers ------------------------------------------------
SLABBED = [
    ("conv2d", (2, 4, 9, 8), (6, 4, 3, 3), {"stride": 1, "padding": 1, "dilation": 1, "groups": 1}),
    ("conv2d", (3, 4, 11, 7), (4, 2, 3, 2), {"stride": (2, 1), "padding": (1, 0, 2, 1), "dilation": (1, 2),
                                             "groups": 2}),
    ("conv1d", (2, 3, 17), (4, 3, 3), {"stride": 2, "padding": 1, "dilation": 1, "groups": 1}),
    ("conv_transpose2d", (2, 4, 5, 6), (4, 3, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1,
                                                      "dilation": 1, "groups": 1}),
    ("conv_transpose2d", (1, 4, 4, 5), (4, 2, 2, 3), {"stride": (1, 2), "padding": (1, 0, 0, 1),
                                                      "output_padding": (0, 1), "dilation": (2, 1), "groups": 2}),
]


def _forward_and_vjp(op: str, arrays: list[np.ndarray], attrs: dict[str, Any],
                     upstream: np.ndarray | None = None) -> list[np.ndarray]:
    b = NumpyBackend("float64")
    node = one_op(op, arrays, attrs)
    out = b.forward(node, arrays)
    return [out, *b.vjp(node, arrays, out, np.ones(out.shape) if upstream is None else upstream)]


@pytest.mark.parametrize("limit", [1, 600, 6000], ids=["rows", "few-rows", "samples"])
@pytest.mark.parametrize("op, x, w, attrs", SLABBED, ids=[f"{c[0]}-{i}" for i, c in enumerate(SLABBED)])
def test_window_matrix_in_slabs_gives_the_same_numbers(op: str, x: tuple[int, ...], w: tuple[int, ...],
                                                       attrs: dict[str, Any], limit: int,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A bound of one byte forces one output row per product (and one kernel row of one channel per weight-gradient
    slab); the numbers are those of one product over everything, but for the last bits that OpenBLAS's
    size-dependent kernels may round differently."""
    import propscope.backends.numpy.conv as kernels

    rng = np.random.default_rng(7)
    channels = w[1] * attrs["groups"] if op == "conv_transpose2d" else w[0]
    arrays = [rng.standard_normal(x), rng.standard_normal(w), rng.standard_normal(channels)]
    upstream = rng.standard_normal(_forward_and_vjp(op, arrays, attrs)[0].shape)
    reference = _forward_and_vjp(op, arrays, attrs, upstream)
    monkeypatch.setattr(kernels, "IM2COL_BYTES", limit)
    slabbed = _forward_and_vjp(op, arrays, attrs, upstream)
    for name, got, want in zip(["out", "x", "W", "b"], slabbed, reference, strict=True):
        assert got.shape == want.shape, name
        err = float(np.max(np.abs(got - want))) / float(np.max(np.abs(want)))
        assert err <= 1e-14, f"{name}: relative difference {err:.3g} in slabs of {limit} bytes"


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_window_matrix_memory_stays_under_the_bound(op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64×64 image of 16 channels and a 5×5 filter: the window matrix alone is 25 times the input (4 MB in
    float64); under a 64 kB bound, forward and backward hold a few times the input. (The kernels' reused working
    memory is turned off here, so that every window matrix is allocated where tracemalloc sees it.)"""
    import tracemalloc

    import propscope.backends.numpy.conv as kernels
    import propscope.backends.numpy.kernels as table

    monkeypatch.setattr(table, "SCRATCH_BYTES", 0)

    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 16, 64, 64)), rng.standard_normal((16, 16, 5, 5)), rng.standard_normal(16)
    attrs = {"stride": 1, "padding": 2, "dilation": 1, "groups": 1}
    if op == "conv_transpose2d":
        attrs["output_padding"] = 0
    _forward_and_vjp(op, [x, w, b], attrs)  # shape rules and caches warmed outside the measurement
    peaks = []
    for limit in (kernels.IM2COL_BYTES, 64 * 1024):
        monkeypatch.setattr(kernels, "IM2COL_BYTES", limit)
        tracemalloc.start()
        _forward_and_vjp(op, [x, w, b], attrs)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[0] > 25 * x.nbytes, f"the whole window matrix was expected at once ({peaks[0] / x.nbytes:.1f}×)"
    assert peaks[1] < 8 * x.nbytes, f"{peaks[1] / x.nbytes:.1f} times the input at the peak in slabs of 64 kB"


@pytest.mark.parametrize("one_d", [False, True], ids=["2d", "1d"])
def test_max_pool_ties_and_nan_go_to_the_first_largest(one_d: bool) -> None:
    """Whole numbers tie in most windows: the gradient goes to the first largest (row, column order), as torch's;
    a NaN wins its window (the first NaN, as argmax)."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    rng = np.random.default_rng(11)
    x = np.round(rng.standard_normal((2, 3, 9) if one_d else (2, 3, 7, 9)))
    attrs = {"kernel_size": 3, "stride": 1 if one_d else (1, 2), "padding": 1, "dilation": 1, "ceil_mode": True}
    op = "max_pool1d" if one_d else "max_pool2d"
    upstream = rng.standard_normal(_forward_and_vjp(op, [x], attrs)[0].shape)
    out, gx = _forward_and_vjp(op, [x], attrs, upstream)
    xt = torch.from_numpy(x).requires_grad_(True)
    pool = F.max_pool1d if one_d else F.max_pool2d
    want = pool(xt, 3, attrs["stride"], 1, ceil_mode=True)
    want.backward(torch.from_numpy(upstream))
    np.testing.assert_array_equal(out, want.detach().numpy())
    np.testing.assert_array_equal(gx != 0, xt.grad.numpy() != 0)  # the same winners (sums differ in rounding)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-13, atol=1e-14)
    x[..., 0, 4] = np.nan
    x[..., 0, 5] = np.nan  # two NaNs in one window: the first one takes its gradient
    single = one_op(op, [x], {**attrs, "stride": 1})
    b = NumpyBackend("float64")
    y = b.forward(single, [x])
    (gx,) = b.vjp(single, [x], y, np.ones(y.shape))
    reach = 1 if one_d else 2  # the windows of 3 rows (padding 1) that hold row 0: output rows 0 and 1
    assert np.isnan(y[..., 0, 4]).all()
    np.testing.assert_array_equal(gx[..., 0, 4], 3 * reach)  # columns 3, 4 and 5's windows: 4 comes first
    np.testing.assert_array_equal(gx[..., 0, 5], reach)  # column 6's window holds 5 but not 4


def test_max_pool_gradient_holds_no_window_matrix() -> None:
    """A 5×5 window at stride 1 reads every pixel 25 times; the gradient finds each window's winner tap by tap."""
    import tracemalloc

    x = np.random.default_rng(2).standard_normal((2, 8, 64, 64))
    attrs = {"kernel_size": 5, "stride": 1, "padding": 2, "dilation": 1, "ceil_mode": False}
    out = _forward_and_vjp("max_pool2d", [x], attrs)[0]
    tracemalloc.start()
    _forward_and_vjp("max_pool2d", [x], attrs, np.ones(out.shape))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 12 * x.nbytes, f"{peak / x.nbytes:.1f} times the input at the peak"

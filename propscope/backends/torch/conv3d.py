"""3-D convolution, transposed convolution and pooling in torch (NCDHW, PyTorch's own functions). Padding is
applied with `F.pad` first and the op runs unpadded (a transposed convolution is cropped instead), so
six-sided (ONNX) pads work too and a max-pool window made only of padding
reads −∞ cells inside the tensor (torch's own padding scatters such a window's gradient through index −1).
Window positions come from the same `Volume` as the NumPy kernels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...graph.ops.conv3d import Volume, adaptive_size3d, transposed_volume, triple, volume
from .kernels import Tensor, kernel


def _torch_pad(v: Volume) -> tuple[int, ...]:
    """(left, right, top, bottom, front, back): F.pad's order, last axis first."""
    top, bottom, left, right = v.plane.pads
    return left, right, top, bottom, v.before, v.after


def _padded(x: Tensor, v: Volume, fill: float = 0.0) -> Tensor:
    pads = _torch_pad(v)
    return F.pad(x, pads, value=fill) if any(pads) else x


def _cropped(y: Tensor, v: Volume) -> Tensor:
    """ceil_mode may count a last window that reaches past the explicit padding: torch then makes one more."""
    return y[:, :, : v.out, : v.plane.out[0], : v.plane.out[1]]


@kernel("conv3d")
def conv3d(x: Tensor, W: Tensor, b: Tensor | None = None, *, stride: Any, padding: Any, dilation: Any,
           groups: int) -> Tensor:
    v = volume(x.shape[2:], W.shape[2:], stride, padding, dilation)
    return F.conv3d(_padded(x, v), W, b, (v.stride, *v.plane.stride), 0, (v.dilation, *v.plane.dilation), groups)


@kernel("conv_transpose3d")
def conv_transpose3d(x: Tensor, W: Tensor, b: Tensor | None = None, *, stride: Any, padding: Any,
                     output_padding: Any, dilation: Any, groups: int) -> Tensor:
    v = transposed_volume(x.shape[2:], W.shape[2:], stride, padding, output_padding, dilation)
    extra, p = triple(output_padding, "output_padding"), v.plane.pads
    strides, dilations = (v.stride, *v.plane.stride), (v.dilation, *v.plane.dilation)
    if v.before == v.after and v.plane.symmetric:
        return F.conv_transpose3d(x, W, b, strides, (v.before, p[0], p[2]), extra, groups, dilations)
    full = F.conv_transpose3d(x, W, b, strides, 0, extra, groups, dilations)
    return full[:, :, v.before: v.before + v.size, p[0]: p[0] + v.plane.size[0], p[2]: p[2] + v.plane.size[1]]


@kernel("max_pool3d")
def max_pool3d(x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> Tensor:
    v = volume(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode, "max_pool3d")
    y = F.max_pool3d(_padded(x, v, float("-inf")), (v.kernel, *v.plane.kernel), (v.stride, *v.plane.stride), 0,
                     (v.dilation, *v.plane.dilation), ceil_mode)
    return _cropped(y, v)


@kernel("avg_pool3d")
def avg_pool3d(x: Tensor, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
               count_include_pad: bool) -> Tensor:
    v = volume(x.shape[2:], kernel_size, stride, padding, 1, ceil_mode, "avg_pool3d")
    if v.before == v.after and v.plane.symmetric:  # torch's own padding and divisors (count_include_pad)
        return F.avg_pool3d(x, (v.kernel, *v.plane.kernel), (v.stride, *v.plane.stride),
                            (v.before, v.plane.pads[0], v.plane.pads[2]), ceil_mode, count_include_pad)
    sums = F.avg_pool3d(_padded(x, v), (v.kernel, *v.plane.kernel), (v.stride, *v.plane.stride), 0, ceil_mode,
                        True, divisor_override=1)
    rows, cols = v.plane.window_counts(count_include_pad)
    depth = torch.tensor(v.counts(count_include_pad), dtype=x.dtype)
    divisor = depth[:, None, None] * torch.outer(torch.tensor(rows, dtype=x.dtype), torch.tensor(cols, dtype=x.dtype))
    return _cropped(sums, v) / divisor.to(x.device)


@kernel("adaptive_avg_pool3d")
def adaptive_avg_pool3d(x: Tensor, output_size: Any) -> Tensor:
    return F.adaptive_avg_pool3d(x, adaptive_size3d(tuple(x.shape), output_size))

"""Convolution and pooling in torch (NCHW, PyTorch's own functions).

PyTorch pads both sides of an axis alike; ONNX's asymmetric pads are applied with `F.pad` first and
the op then runs unpadded (a transposed convolution is cropped instead). Window positions come
from the same `Grid` as the NumPy kernels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...graph.ops.conv import Grid, adaptive_size, grid, grid1d, pair, transposed_grid
from .kernels import Tensor, kernel


def _torch_pad(g: Grid) -> tuple[int, int, int, int]:
    """Grid pads (top, bottom, left, right) in F.pad's order: last axis first."""
    top, bottom, left, right = g.pads
    return left, right, top, bottom


@kernel("conv2d")
def conv2d(x: Tensor, W: Tensor, b: Tensor | None = None, *, stride: Any, padding: Any, dilation: Any,
           groups: int) -> Tensor:
    g = grid(x.shape[2:], W.shape[2:], stride, padding, dilation)
    if g.symmetric:
        return F.conv2d(x, W, b, g.stride, (g.pads[0], g.pads[2]), g.dilation, groups)
    return F.conv2d(F.pad(x, _torch_pad(g)), W, b, g.stride, 0, g.dilation, groups)


@kernel("conv1d")
def conv1d(x: Tensor, W: Tensor, b: Tensor | None = None, *, stride: Any, padding: Any, dilation: Any,
           groups: int) -> Tensor:
    g = grid1d(x.shape[2], W.shape[2], stride, padding, dilation)
    left, right = g.pads[2:]
    if left == right:
        return F.conv1d(x, W, b, g.stride[1], left, g.dilation[1], groups)
    return F.conv1d(F.pad(x, (left, right)), W, b, g.stride[1], 0, g.dilation[1], groups)


@kernel("conv_transpose2d")
def conv_transpose2d(x: Tensor, W: Tensor, b: Tensor | None = None, *, stride: Any, padding: Any,
                     output_padding: Any, dilation: Any, groups: int) -> Tensor:
    g = transposed_grid(x.shape[2:], W.shape[2:], stride, padding, output_padding, dilation)
    extra = pair(output_padding, "output_padding")
    if g.symmetric:
        return F.conv_transpose2d(x, W, b, g.stride, (g.pads[0], g.pads[2]), extra, groups, g.dilation)
    full = F.conv_transpose2d(x, W, b, g.stride, 0, extra, groups, g.dilation)
    return full[:, :, g.pads[0]: g.pads[0] + g.size[0], g.pads[2]: g.pads[2] + g.size[1]]


# -- pooling: the 1-D ops run as 2-D ones on a 1×length image, as PyTorch does ----------------------
def _max_pool(x: Tensor, g: Grid, ceil_mode: bool) -> Tensor:
    # torch's own padding is not used where a window holds no pixel: its backward then scatters through the
    # index −1 (heap corruption, the process aborts); with the −∞ cells made by F.pad the index stays inside
    if g.symmetric and not g.has_window_without_pixel:
        return F.max_pool2d(x, g.kernel, g.stride, (g.pads[0], g.pads[2]), g.dilation, ceil_mode)
    padded = F.pad(x, _torch_pad(g), value=float("-inf"))
    return F.max_pool2d(padded, g.kernel, g.stride, 0, g.dilation, ceil_mode)[:, :, : g.out[0], : g.out[1]]


def _avg_pool(x: Tensor, g: Grid, ceil_mode: bool, count_include_pad: bool) -> Tensor:
    if g.symmetric:
        return F.avg_pool2d(x, g.kernel, g.stride, (g.pads[0], g.pads[2]), ceil_mode, count_include_pad)
    sums = F.avg_pool2d(F.pad(x, _torch_pad(g)), g.kernel, g.stride, 0, ceil_mode, True, divisor_override=1)
    rows, cols = g.window_counts(count_include_pad)
    divisor = torch.outer(torch.tensor(rows, dtype=x.dtype), torch.tensor(cols, dtype=x.dtype)).to(x.device)
    return sums[:, :, : g.out[0], : g.out[1]] / divisor


@kernel("max_pool2d")
def max_pool2d(x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> Tensor:
    return _max_pool(x, grid(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode), ceil_mode)


@kernel("max_pool1d")
def max_pool1d(x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> Tensor:
    g = grid1d(x.shape[2], kernel_size, stride, padding, dilation, ceil_mode)
    return _max_pool(x.unsqueeze(2), g, ceil_mode).squeeze(2)


@kernel("avg_pool2d")
def avg_pool2d(x: Tensor, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
               count_include_pad: bool) -> Tensor:
    g = grid(x.shape[2:], kernel_size, stride, padding, 1, ceil_mode)
    return _avg_pool(x, g, ceil_mode, count_include_pad)


@kernel("avg_pool1d")
def avg_pool1d(x: Tensor, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
               count_include_pad: bool) -> Tensor:
    g = grid1d(x.shape[2], kernel_size, stride, padding, 1, ceil_mode)
    return _avg_pool(x.unsqueeze(2), g, ceil_mode, count_include_pad).squeeze(2)


@kernel("adaptive_avg_pool2d")
def adaptive_avg_pool2d(x: Tensor, output_size: Any) -> Tensor:
    return F.adaptive_avg_pool2d(x, adaptive_size(tuple(x.shape), output_size))


@kernel("adaptive_max_pool2d")
def adaptive_max_pool2d(x: Tensor, output_size: Any) -> Tensor:
    return F.adaptive_max_pool2d(x, adaptive_size(tuple(x.shape), output_size))


@kernel("max_unpool2d")
def max_unpool2d(y: Tensor, x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
                 output_size: Any) -> Tensor:
    g = grid(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode, "max_unpool2d")
    out = tuple(int(v) for v in (output_size or x.shape[2:]))
    with torch.no_grad():  # the positions only: torch's max-pool indices, over the −∞-padded image, then unpadded
        padded = F.pad(x, _torch_pad(g), value=float("-inf"))
        _, index = F.max_pool2d(padded, g.kernel, g.stride, 0, g.dilation, ceil_mode, return_indices=True)
        index = index[:, :, : g.out[0], : g.out[1]]
        width = padded.shape[3]
        flat = (index // width - g.pads[0]) * x.shape[3] + index % width - g.pads[2]
    result = y.new_zeros((*y.shape[:2], out[0] * out[1]))
    return result.scatter(2, flat.flatten(2), y.flatten(2)).reshape(*y.shape[:2], *out)


@kernel("im2col")
def im2col(x: Tensor, kernel_size: Any, dilation: Any, padding: Any, stride: Any) -> Tensor:
    g = grid(x.shape[2:], kernel_size, stride, padding, dilation)
    if g.symmetric:
        return F.unfold(x, g.kernel, g.dilation, (g.pads[0], g.pads[2]), g.stride)
    return F.unfold(F.pad(x, _torch_pad(g)), g.kernel, g.dilation, 0, g.stride)


@kernel("col2im")
def col2im(x: Tensor, output_size: Any, kernel_size: Any, dilation: Any, padding: Any, stride: Any) -> Tensor:
    g = grid(output_size, kernel_size, stride, padding, dilation)
    if g.symmetric:
        return F.fold(x, g.size, g.kernel, g.dilation, (g.pads[0], g.pads[2]), g.stride)
    full = F.fold(x, g.padded, g.kernel, g.dilation, 0, g.stride)  # onto the padded image, then cropped
    return full[:, :, g.pads[0]: g.pads[0] + g.size[0], g.pads[2]: g.pads[2] + g.size[1]]


@kernel("flatten")
def flatten(x: Tensor, start_dim: int, end_dim: int) -> Tensor:
    return torch.flatten(x, start_dim, end_dim)

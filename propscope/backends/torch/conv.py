"""Convolution and pooling in torch (NCHW, PyTorch's own functions)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...graph.ops.conv import pair
from .kernels import Tensor, kernel


@kernel("conv2d")
def conv2d(x: Tensor, W: Tensor, b: Tensor | None = None, *, stride: Any, padding: Any, dilation: Any,
           groups: int) -> Tensor:
    stride = (W.shape[2], W.shape[3]) if stride is None else pair(stride)
    return F.conv2d(x, W, b, stride, pair(padding), pair(dilation), groups)


@kernel("max_pool2d")
def max_pool2d(x: Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> Tensor:
    size = pair(kernel_size)
    return F.max_pool2d(x, size, size if stride is None else pair(stride), pair(padding), pair(dilation))


@kernel("avg_pool2d")
def avg_pool2d(x: Tensor, kernel_size: Any, stride: Any, padding: Any) -> Tensor:
    size = pair(kernel_size)  # count_include_pad=True: zero padding counts towards the mean
    return F.avg_pool2d(x, size, size if stride is None else pair(stride), pair(padding))


@kernel("flatten")
def flatten(x: Tensor, start_dim: int, end_dim: int) -> Tensor:
    return torch.flatten(x, start_dim, end_dim)


"""Upsampling, grid sampling and padding in torch: PyTorch's own ATen ops, so output size and source positions are
its own."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...graph.ops.resize import pad_pairs, pad_sources, scale_pair, scale_triple, upsample_size, upsample_size3d
from .kernels import Tensor, kernel


@kernel("upsample_nearest2d")
def upsample_nearest2d(x: Tensor, output_size: Any, scales: Any) -> Tensor:
    size = list(upsample_size(tuple(x.shape), output_size, scales, "upsample_nearest2d"))
    return torch.ops.aten.upsample_nearest2d.default(x, size, *scale_pair(scales))


@kernel("upsample_bilinear2d")
def upsample_bilinear2d(x: Tensor, output_size: Any, align_corners: bool, scales: Any, antialias: bool = False
                        ) -> Tensor:
    size = list(upsample_size(tuple(x.shape), output_size, scales, "upsample_bilinear2d"))
    resize = torch.ops.aten._upsample_bilinear2d_aa if antialias else torch.ops.aten.upsample_bilinear2d
    return resize.default(x, size, bool(align_corners), *scale_pair(scales))


@kernel("upsample_bicubic2d")
def upsample_bicubic2d(x: Tensor, output_size: Any, align_corners: bool, scales: Any, antialias: bool = False
                       ) -> Tensor:
    size = list(upsample_size(tuple(x.shape), output_size, scales, "upsample_bicubic2d"))
    resize = torch.ops.aten._upsample_bicubic2d_aa if antialias else torch.ops.aten.upsample_bicubic2d
    return resize.default(x, size, bool(align_corners), *scale_pair(scales))


@kernel("grid_sample")
def grid_sample(x: Tensor, grid: Tensor, mode: str, padding_mode: str, align_corners: bool) -> Tensor:
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=bool(align_corners))


@kernel("upsample_nearest3d")
def upsample_nearest3d(x: Tensor, output_size: Any, scales: Any) -> Tensor:
    size = list(upsample_size3d(tuple(x.shape), output_size, scales, "upsample_nearest3d"))
    return torch.ops.aten.upsample_nearest3d.default(x, size, *scale_triple(scales))


@kernel("upsample_trilinear3d")
def upsample_trilinear3d(x: Tensor, output_size: Any, align_corners: bool, scales: Any) -> Tensor:
    size = list(upsample_size3d(tuple(x.shape), output_size, scales, "upsample_trilinear3d"))
    return torch.ops.aten.upsample_trilinear3d.default(x, size, bool(align_corners), *scale_triple(scales))


@kernel("pad")
def pad(x: Tensor, pads: Any, mode: str, value: float) -> Tensor:
    pairs = pad_pairs(pads, x.dim())
    if mode == "constant":  # F.pad lists the last axis first; negative amounts crop
        return F.pad(x, [amount for pair in reversed(pairs) for amount in pair], value=value)
    for axis, (before, after) in enumerate(pairs):  # the other modes gather, one axis at a time
        if before or after:
            sources = torch.tensor(pad_sources(x.shape[axis], before, after, mode), device=x.device)
            x = x.index_select(axis, sources)
    return x

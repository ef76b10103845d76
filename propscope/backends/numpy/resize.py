"""Upsampling and padding on NumPy: each is a fixed linear map along each axis, applied one axis at a time.

Upsampling multiplies by per-axis matrices A (output × input): out = A_h · x · A_wᵀ, and the gradient
is the transposed map A_hᵀ · ∂L/∂out · A_w (volumes: one more matrix, A_d, along depth). Nearest
upsampling copies by index in the forward (no arithmetic on the values at all). Padding gathers by
index; its gradient adds each output's gradient back onto the input cell it was read from.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ...graph.ops.resize import (
    linear_sources,
    nearest_sources,
    pad_pairs,
    pad_sources,
    scale_pair,
    scale_triple,
    upsample_size,
    upsample_size3d,
)
from .kernels import Array, kernel


def _frozen(matrix: Array) -> Array:
    matrix.flags.writeable = False
    return matrix


@functools.lru_cache(maxsize=256)
def _nearest(size: int, out: int, scale: float | None) -> tuple[Array, Array]:
    """Source indices, and the (out, size) 0/1 matrix that sums gradients back onto them."""
    sources = np.array(nearest_sources(size, out, scale))
    onehot = np.zeros((out, size))
    onehot[np.arange(out), sources] = 1.0
    return _frozen(sources), _frozen(onehot)


@functools.lru_cache(maxsize=256)
def _bilinear(size: int, out: int, align_corners: bool, scale: float | None, dtype: str) -> Array:
    """The (out, size) matrix of (1 − λ, λ) weights of PyTorch's bilinear rule, in `dtype`."""
    matrix = np.zeros((out, size))
    for i, (i0, i1, lam) in enumerate(linear_sources(size, out, align_corners, scale, dtype)):
        matrix[i, i0] += 1.0 - lam
        matrix[i, i1] += lam
    return _frozen(matrix.astype(dtype))


def _nearest_maps(x: Array, output_size: Any, scales: Any) -> tuple[tuple[Array, Array], tuple[Array, Array]]:
    oh, ow = upsample_size(x.shape, output_size, scales, "upsample_nearest2d")
    sh, sw = scale_pair(scales)
    return _nearest(x.shape[2], oh, sh), _nearest(x.shape[3], ow, sw)


@kernel("upsample_nearest2d")
def upsample_nearest2d(x: Array, output_size: Any, scales: Any) -> Array:
    (rows, _), (cols, _) = _nearest_maps(x, output_size, scales)
    return x[:, :, rows[:, None], cols[None, :]]


@upsample_nearest2d.gradient
def _(g: Array, x: Array, out: Array, output_size: Any, scales: Any) -> tuple[Array]:
    (_, rows), (_, cols) = _nearest_maps(x, output_size, scales)
    return (np.matmul(np.matmul(rows.T.astype(g.dtype), g), cols.astype(g.dtype)),)


def _bilinear_maps(x: Array, output_size: Any, align_corners: bool, scales: Any) -> tuple[Array, Array]:
    oh, ow = upsample_size(x.shape, output_size, scales, "upsample_bilinear2d")
    sh, sw = (None, None) if align_corners else scale_pair(scales)
    dtype = x.dtype.name
    return (_bilinear(x.shape[2], oh, bool(align_corners), sh, dtype),
            _bilinear(x.shape[3], ow, bool(align_corners), sw, dtype))


@kernel("upsample_bilinear2d")
def upsample_bilinear2d(x: Array, output_size: Any, align_corners: bool, scales: Any) -> Array:
    rows, cols = _bilinear_maps(x, output_size, align_corners, scales)
    return np.matmul(np.matmul(rows, x), cols.T)


@upsample_bilinear2d.gradient
def _(g: Array, x: Array, out: Array, output_size: Any, align_corners: bool, scales: Any) -> tuple[Array]:
    rows, cols = _bilinear_maps(x, output_size, align_corners, scales)
    return (np.matmul(np.matmul(rows.T, g), cols),)


# -- volumes: one map per axis of depth, height and width ----------------------------------------------------
def _nearest_maps3d(x: Array, output_size: Any, scales: Any) -> list[tuple[Array, Array]]:
    out = upsample_size3d(x.shape, output_size, scales, "upsample_nearest3d")
    return [_nearest(x.shape[2 + i], out[i], s) for i, s in enumerate(scale_triple(scales))]


@kernel("upsample_nearest3d")
def upsample_nearest3d(x: Array, output_size: Any, scales: Any) -> Array:
    (depth, _), (rows, _), (cols, _) = _nearest_maps3d(x, output_size, scales)
    return x[:, :, depth[:, None, None], rows[None, :, None], cols[None, None, :]]


@upsample_nearest3d.gradient
def _(g: Array, x: Array, out: Array, output_size: Any, scales: Any) -> tuple[Array]:
    (_, depth), (_, rows), (_, cols) = _nearest_maps3d(x, output_size, scales)
    maps = [m.astype(g.dtype) for m in (depth, rows, cols)]
    return (np.einsum("ncDHW,Dd,Hh,Ww->ncdhw", g, *maps, optimize=True),)


def _trilinear_maps(x: Array, output_size: Any, align_corners: bool, scales: Any) -> list[Array]:
    out = upsample_size3d(x.shape, output_size, scales, "upsample_trilinear3d")
    factors = (None, None, None) if align_corners else scale_triple(scales)
    return [_bilinear(x.shape[2 + i], out[i], bool(align_corners), factors[i], x.dtype.name) for i in range(3)]


@kernel("upsample_trilinear3d")
def upsample_trilinear3d(x: Array, output_size: Any, align_corners: bool, scales: Any) -> Array:
    depth, rows, cols = _trilinear_maps(x, output_size, align_corners, scales)
    return np.einsum("Dd,Hh,Ww,ncdhw->ncDHW", depth, rows, cols, x, optimize=True)


@upsample_trilinear3d.gradient
def _(g: Array, x: Array, out: Array, output_size: Any, align_corners: bool, scales: Any) -> tuple[Array]:
    depth, rows, cols = _trilinear_maps(x, output_size, align_corners, scales)
    return (np.einsum("ncDHW,Dd,Hh,Ww->ncdhw", g, depth, rows, cols, optimize=True),)


# -- pad ---------------------------------------------------------------------------------------
def _constant_windows(shape: tuple[int, ...], pads: Any) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Where x's kept part sits in x (negative pads crop it) and in the output."""
    pairs = pad_pairs(pads, len(shape))
    inside = tuple(slice(max(-b, 0), size - max(-a, 0)) for size, (b, a) in zip(shape, pairs, strict=True))
    placed = tuple(slice(max(b, 0), max(b, 0) + s.stop - s.start) for (b, _), s in zip(pairs, inside, strict=True))
    return inside, placed


def _padded_axes(shape: tuple[int, ...], pads: Any, mode: str) -> list[tuple[int, Array]]:
    return [(axis, np.array(pad_sources(size, b, a, mode)))
            for axis, (size, (b, a)) in enumerate(zip(shape, pad_pairs(pads, len(shape)), strict=True)) if b or a]


@kernel("pad")
def pad(x: Array, pads: Any, mode: str, value: float) -> Array:
    if mode == "constant":
        inside, placed = _constant_windows(x.shape, pads)
        out_shape = tuple(s.stop - s.start + max(b, 0) + max(a, 0)
                          for s, (b, a) in zip(inside, pad_pairs(pads, x.ndim), strict=True))
        out = np.full(out_shape, value, dtype=x.dtype)
        out[placed] = x[inside]
        return out
    out = x
    for axis, sources in _padded_axes(x.shape, pads, mode):
        out = np.take(out, sources, axis=axis)
    return out


@pad.gradient
def _(g: Array, x: Array, out: Array, pads: Any, mode: str, value: float) -> tuple[Array]:
    if mode == "constant":
        inside, placed = _constant_windows(x.shape, pads)
        gx = np.zeros(x.shape, dtype=g.dtype)
        gx[inside] = g[placed]
        return (gx,)
    for axis, sources in reversed(_padded_axes(x.shape, pads, mode)):  # undo the gathers, last axis first
        moved = np.moveaxis(g, axis, 0)
        summed = np.zeros((x.shape[axis], *moved.shape[1:]), dtype=g.dtype)
        np.add.at(summed, sources, moved)
        g = np.moveaxis(summed, 0, axis)
    return (np.ascontiguousarray(g),)

"""Upsampling, grid sampling and padding on NumPy.

Upsampling multiplies by per-axis matrices A (output × input): out = A_h · x · A_wᵀ, and the gradient
is the transposed map A_hᵀ · ∂L/∂out · A_w (volumes: one more matrix, A_d, along depth). Nearest
upsampling copies by index in the forward (no arithmetic on the values at all). Padding gathers by
index; its gradient adds each output's gradient back onto the input cell it was read from.
Grid sampling gathers the 2×2 pixels around each point with bilinear weights; its gradient scatters the
output's gradient back by the same weights (the image) and takes the image's slope at the point (the grid).
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import numpy as np

from ...graph.ops.resize import (
    CUBIC_A,
    antialias_sources,
    cubic_sources,
    cubic_weights,
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


@functools.lru_cache(maxsize=256)
def _antialiased(kind: str, size: int, out: int, align_corners: bool, scale: float | None, dtype: str) -> Array:
    """The (out, size) matrix of PyTorch's antialiased weights, in `dtype` (each row sums to 1)."""
    matrix = np.zeros((out, size))
    for i, (first, weights) in enumerate(antialias_sources(size, out, kind, align_corners, scale, dtype)):
        matrix[i, first:first + len(weights)] = weights
    return _frozen(matrix.astype(dtype))


def _separable_maps(x: Array, output_size: Any, align_corners: bool, scales: Any, op: str,
                    matrix: Any) -> tuple[Array, Array]:
    """The row and column matrices of a separable resize (`matrix(size, out, align_corners, scale, dtype)`):
    out = rows · x · colsᵀ, and its gradient rowsᵀ · g · cols."""
    oh, ow = upsample_size(x.shape, output_size, scales, op)
    sh, sw = (None, None) if align_corners else scale_pair(scales)
    dtype = x.dtype.name
    return (matrix(x.shape[2], oh, bool(align_corners), sh, dtype),
            matrix(x.shape[3], ow, bool(align_corners), sw, dtype))


def _bilinear_maps(x: Array, output_size: Any, align_corners: bool, scales: Any, antialias: bool
                   ) -> tuple[Array, Array]:
    matrix = functools.partial(_antialiased, "bilinear") if antialias else _bilinear
    return _separable_maps(x, output_size, align_corners, scales, "upsample_bilinear2d", matrix)


@kernel("upsample_bilinear2d")
def upsample_bilinear2d(x: Array, output_size: Any, align_corners: bool, scales: Any, antialias: bool = False
                        ) -> Array:
    rows, cols = _bilinear_maps(x, output_size, align_corners, scales, antialias)
    return np.matmul(np.matmul(rows, x), cols.T)


@upsample_bilinear2d.gradient
def _(g: Array, x: Array, out: Array, output_size: Any, align_corners: bool, scales: Any, antialias: bool = False
      ) -> tuple[Array]:
    rows, cols = _bilinear_maps(x, output_size, align_corners, scales, antialias)
    return (np.matmul(np.matmul(rows.T, g), cols),)


@functools.lru_cache(maxsize=256)
def _bicubic(size: int, out: int, align_corners: bool, scale: float | None, dtype: str) -> Array:
    """The (out, size) matrix of PyTorch's bicubic weights, in `dtype` (taps past the edge add to the edge)."""
    matrix = np.zeros((out, size))
    for i, (taps, weights) in enumerate(cubic_sources(size, out, align_corners, scale, dtype)):
        for tap, weight in zip(taps, weights, strict=True):
            matrix[i, tap] += weight
    return _frozen(matrix.astype(dtype))


def _bicubic_maps(x: Array, output_size: Any, align_corners: bool, scales: Any, antialias: bool
                  ) -> tuple[Array, Array]:
    matrix = functools.partial(_antialiased, "bicubic") if antialias else _bicubic
    return _separable_maps(x, output_size, align_corners, scales, "upsample_bicubic2d", matrix)


@kernel("upsample_bicubic2d")
def upsample_bicubic2d(x: Array, output_size: Any, align_corners: bool, scales: Any, antialias: bool = False
                       ) -> Array:
    rows, cols = _bicubic_maps(x, output_size, align_corners, scales, antialias)
    return np.matmul(np.matmul(rows, x), cols.T)


@upsample_bicubic2d.gradient
def _(g: Array, x: Array, out: Array, output_size: Any, align_corners: bool, scales: Any, antialias: bool = False
      ) -> tuple[Array]:
    rows, cols = _bicubic_maps(x, output_size, align_corners, scales, antialias)
    return (np.matmul(np.matmul(rows.T, g), cols),)


# -- grid_sample -------------------------------------------------------------------------------------------------
# A point's position along each spatial axis of x (depth, height, width order; the grid lists them the other way
# round: x along the width first); a tap is (the pixel's index along each axis, its weight, ∂weight/∂position
# along each axis).
Tap = tuple[list[Array], Array, list[Array]]


def _reflect(v: Array, low2: int, high2: int) -> tuple[Array, Array]:
    """v mirrored into [low2/2, high2/2] (PyTorch's reflect_coordinates), and ∂(mirrored)/∂v (±1)."""
    if low2 == high2:
        return np.zeros_like(v), np.zeros_like(v)
    low, span = low2 / 2, (high2 - low2) / 2
    shifted = v - low
    sign = np.where(shifted < 0, -1.0, 1.0)
    distance = np.abs(shifted)
    extra = np.fmod(distance, span)
    even = np.fmod(np.floor(distance / span), 2) == 0
    return (np.where(even, extra + low, span - extra + low).astype(v.dtype),
            np.where(even, sign, -sign).astype(v.dtype))


def _pixel(coord: Array, size: int, padding: str, align_corners: bool) -> tuple[Array, Array]:
    """A grid coordinate in [−1, 1] as a pixel position of an axis of `size` pixels, and its derivative."""
    scale = (size - 1) / 2 if align_corners else size / 2
    v = ((coord + 1) * (size - 1) / 2) if align_corners else (((coord + 1) * size - 1) / 2)
    slope = np.full_like(v, scale)
    if padding == "reflection":
        v, flip = _reflect(v, 0, 2 * (size - 1)) if align_corners else _reflect(v, -1, 2 * size - 1)
        slope = slope * flip
    if padding in ("border", "reflection"):  # clamped into the image; the clamp's derivative is 0 outside
        inside = (v > 0) & (v < size - 1)
        v = np.clip(v, 0, size - 1)
        slope = np.where(inside, slope, 0.0).astype(v.dtype)
    return v, slope


def _positions(x: Array, grid: Array, padding: str, align_corners: bool, far: float
               ) -> list[tuple[Array, Array]]:
    """Each point's (position, ∂position/∂grid coordinate) along each spatial axis of x. Positions further than
    `far` off the image (or NaN) are moved to `far` off it: they read what they read there, and the indices stay
    small integers."""
    dims = x.ndim - 2
    found = []
    for k in range(dims):
        size = x.shape[2 + k]
        v, dv = _pixel(grid[..., dims - 1 - k], size, padding, bool(align_corners))
        found.append((np.where(np.isfinite(v), np.clip(v, -far, size - 1 + far), -far).astype(v.dtype), dv))
    return found


def _nearest_tap(x: Array, grid: Array, padding: str, align_corners: bool) -> Tap:
    """The pixel nearest each point (round half to even, as PyTorch's nearbyint); the points move no pixel."""
    positions = _positions(x, grid, padding, align_corners, 2.0)
    return [np.rint(v).astype(np.int64) for v, _ in positions], np.ones(grid.shape[:-1], dtype=x.dtype), []


def _linear_taps(x: Array, grid: Array, padding: str, align_corners: bool) -> tuple[list[Tap], list[Array]]:
    """The 2×2 (volumes: 2×2×2) pixels around each point with their (bi/tri)linear weights."""
    positions = _positions(x, grid, padding, align_corners, 2.0)
    lows = [np.floor(v) for v, _ in positions]
    fractions = [v - low for (v, _), low in zip(positions, lows, strict=True)]
    taps = []
    for corner in itertools.product((0, 1), repeat=len(positions)):
        factors = [f if up else 1 - f for f, up in zip(fractions, corner, strict=True)]
        slopes = [np.prod([factors[m] for m in range(len(factors)) if m != k], axis=0) * (1 if up else -1)
                  for k, up in enumerate(corner)]
        indices = [low.astype(np.int64) + up for low, up in zip(lows, corner, strict=True)]
        taps.append((indices, np.prod(factors, axis=0), slopes))
    return taps, [dv for _, dv in positions]


def _cubic_slopes(t: Array) -> tuple[Array, Array, Array, Array]:
    """∂/∂t of the 4 cubic weights of `cubic_weights(t)`."""
    a = CUBIC_A

    def near(d: Array) -> Array:
        return (3 * (a + 2) * d - 2 * (a + 3)) * d

    def far(d: Array) -> Array:
        return (3 * a * d - 10 * a) * d + 8 * a

    return far(t + 1), near(t), -near(1 - t), -far(2 - t)


def _tap(index: Array, size: int, padding: str, align_corners: bool) -> Array:
    """Where a bicubic tap at pixel `index` reads: itself (zeros), the nearest edge pixel (border) or its mirror."""
    if padding == "border":
        return np.clip(index, 0, size - 1)
    if padding == "reflection":
        mirrored, _ = _reflect(index, 0, 2 * (size - 1)) if align_corners else _reflect(index, -1, 2 * size - 1)
        return np.clip(mirrored, 0, size - 1)
    return index


def _bicubic_taps(x: Array, grid: Array, padding: str, align_corners: bool) -> tuple[list[Tap], list[Array]]:
    """The 4×4 taps around each point, PyTorch's bicubic sampling (images): the point unnormalised without padding,
    each tap's position then padded. Far outside, zeros and border padding read what they read 3 pixels off the
    image (nothing, or the edge); reflection mirrors any distance back in (kept below 2⁴⁰, where the taps are
    still whole numbers)."""
    far = 2.0**40 if padding == "reflection" else 3.0
    (v, dv), (u, du) = _positions(x, grid, "zeros", align_corners, far)
    _, _, height, width = x.shape
    p0, q0 = np.floor(v), np.floor(u)
    wv, wu = cubic_weights(v - p0), cubic_weights(u - q0)
    sv, su = _cubic_slopes(v - p0), _cubic_slopes(u - q0)
    taps = []
    for j in range(4):
        rows = _tap(p0 - 1 + j, height, padding, bool(align_corners)).astype(np.int64)
        for i in range(4):
            cols = _tap(q0 - 1 + i, width, padding, bool(align_corners)).astype(np.int64)
            taps.append(([rows, cols], wv[j] * wu[i], [sv[j] * wu[i], wv[j] * su[i]]))
    return taps, [dv, du]


def _taps(x: Array, grid: Array, mode: str, padding: str, align_corners: bool) -> tuple[list[Tap], list[Array]]:
    """The pixels each point reads, their weights and the weights' slopes, and ∂position/∂grid per axis."""
    if mode == "bicubic":
        return _bicubic_taps(x, grid, padding, align_corners)
    if mode == "nearest":
        return [_nearest_tap(x, grid, padding, align_corners)], []
    return _linear_taps(x, grid, padding, align_corners)


def _pick(x: Array, indices: list[Array]) -> tuple[Array, Array]:
    """x[n, :, *indices] as (N, *points, C), 0 where the indices fall outside x, and that mask."""
    inside = np.ones(indices[0].shape, dtype=bool)
    for k, index in enumerate(indices):
        inside &= (index >= 0) & (index < x.shape[2 + k])
    batch = np.arange(x.shape[0]).reshape(-1, *[1] * (indices[0].ndim - 1))
    picked = x[(batch, slice(None), *(np.clip(i, 0, x.shape[2 + k] - 1) for k, i in enumerate(indices)))]
    return np.where(inside[..., None], picked, 0.0).astype(x.dtype), inside


@kernel("grid_sample")
def grid_sample(x: Array, grid: Array, mode: str, padding_mode: str, align_corners: bool) -> Array:
    taps, _ = _taps(x, grid, mode, padding_mode, align_corners)
    out = np.zeros((*grid.shape[:-1], x.shape[1]), dtype=x.dtype)
    for indices, weight, _ in taps:
        out += weight[..., None] * _pick(x, indices)[0]
    return np.ascontiguousarray(np.moveaxis(out, -1, 1)).astype(x.dtype)


def _scatter(gx: Array, indices: list[Array], inside: Array, values: Array) -> None:
    """gx[n, :, *indices] += values (N, *points, C) at the points inside x."""
    n, channels, *sizes = gx.shape
    flat = np.broadcast_to(np.arange(n).reshape(-1, *[1] * (indices[0].ndim - 1)), indices[0].shape)
    for size, index in zip(sizes, indices, strict=True):
        flat = flat * size + index
    target = np.zeros((n * math.prod(sizes), channels), dtype=gx.dtype)
    np.add.at(target, flat[inside], values[inside])
    gx += np.moveaxis(target.reshape(n, *sizes, channels), -1, 1)


@grid_sample.gradient
def _(g: Array, x: Array, grid: Array, out: Array, mode: str, padding_mode: str, align_corners: bool
      ) -> tuple[Array, Array]:
    upstream = np.moveaxis(g, 1, -1)  # (N, *points, C)
    taps, moves = _taps(x, grid, mode, padding_mode, align_corners)
    gx = np.zeros_like(x, dtype=g.dtype)
    along = [np.zeros(grid.shape[:-1], dtype=g.dtype) for _ in moves]  # ∂L/∂position per axis
    for indices, weight, slopes in taps:
        values, inside = _pick(x, indices)
        _scatter(gx, indices, inside, upstream * weight[..., None])
        if slopes:
            seen = np.sum(upstream * values, axis=-1)  # Σ_c ∂L/∂out · x at this pixel
            for k, slope in enumerate(slopes):
                along[k] += seen * slope
    if not moves:  # nearest: the points move no pixel, no gradient for the grid
        return gx, np.zeros_like(grid, dtype=g.dtype)
    # the grid lists x (the width) first: its coordinate c is the position along axis dims − 1 − c
    return gx, np.stack([along[k] * moves[k] for k in reversed(range(len(moves)))], axis=-1).astype(g.dtype)


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

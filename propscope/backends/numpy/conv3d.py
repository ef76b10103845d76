"""3-D convolution and pooling on NumPy, by im2col as the 2-D ops (backends/numpy/conv.py): every window of
the padded volume as a strided view (N, C, out_d, out_h, out_w, kd, kh, kw), the forward one product with
the filters, the backward (col2im) one vectorised addition per kernel offset. Where the windows sit
(`Volume`) comes from the op's shape rule module, graph/ops/conv3d.py.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...graph.ops.conv3d import Volume, adaptive_size3d, volume
from .conv import _averaging  # the adaptive windows' averaging matrix of one axis, shared with the 2-D pools
from .kernels import Array, kernel


def _geometry(v: Volume) -> tuple[tuple[int, ...], ...]:
    """kernel, stride, dilation, out, padded size and the padding before, each for (depth, height, width)."""
    g = v.plane
    return ((v.kernel, *g.kernel), (v.stride, *g.stride), (v.dilation, *g.dilation), (v.out, *g.out),
            (v.padded, *g.padded), (v.before, g.pads[0], g.pads[2]))


def _pad(x: Array, v: Volume, fill: float = 0.0) -> Array:
    *_, padded, before = _geometry(v)
    if padded == x.shape[2:]:
        return x
    xp = np.full((*x.shape[:2], *padded), fill, dtype=x.dtype)
    xp[:, :, before[0]: before[0] + x.shape[2], before[1]: before[1] + x.shape[3],
       before[2]: before[2] + x.shape[4]] = x
    return xp


def _crop(gxp: Array, v: Volume, shape: tuple[int, ...]) -> Array:
    before = _geometry(v)[5]
    if gxp.shape == shape:
        return gxp
    return np.ascontiguousarray(gxp[:, :, before[0]: before[0] + shape[2], before[1]: before[1] + shape[3],
                                    before[2]: before[2] + shape[4]])


def _windows(xp: Array, v: Volume) -> Array:
    """Every window of the padded volume, read-only: (N, C, out_d, out_h, out_w, kd, kh, kw)."""
    k, s, d, out, *_ = _geometry(v)
    s0, s1, s2, s3, s4 = xp.strides
    return as_strided(xp, (*xp.shape[:2], *out, *k),
                      (s0, s1, s2 * s[0], s3 * s[1], s4 * s[2], s2 * d[0], s3 * d[1], s4 * d[2]), writeable=False)


def _fold(gwin: Array, v: Volume) -> Array:
    """col2im: each window's gradient added back where the window sat (one addition per kernel offset)."""
    k, s, d, out, padded, _ = _geometry(v)
    gxp = np.zeros((*gwin.shape[:2], *padded), dtype=gwin.dtype)
    for r in range(k[0]):
        for u in range(k[1]):
            for w in range(k[2]):
                gxp[:, :, r * d[0]: r * d[0] + s[0] * (out[0] - 1) + 1: s[0],
                    u * d[1]: u * d[1] + s[1] * (out[1] - 1) + 1: s[1],
                    w * d[2]: w * d[2] + s[2] * (out[2] - 1) + 1: s[2]] += gwin[..., r, u, w]
    return gxp


# -- convolution ------------------------------------------------------------------------------------
def _grouped(win: Array, groups: int) -> Array:
    """Windows as (groups, N·out_d·out_h·out_w, C/groups·kd·kh·kw) rows."""
    n, c = win.shape[:2]
    cols = win.reshape(n, groups, c // groups, *win.shape[2:])
    cols = cols.transpose(1, 0, 3, 4, 5, 2, 6, 7, 8)  # (G, N, od, oh, ow, C/G, kd, kh, kw)
    return cols.reshape(groups, -1, (c // groups) * int(np.prod(win.shape[5:])))


def _geo(x: Array, W: Array, stride: Any, padding: Any, dilation: Any) -> Volume:
    return volume(x.shape[2:], W.shape[2:], stride, padding, dilation)


@kernel("conv3d")
def conv3d(x: Array, W: Array, b: Array | None = None, *, stride: Any, padding: Any, dilation: Any,
           groups: int) -> Array:
    v = _geo(x, W, stride, padding, dilation)
    out = v.out, *v.plane.out
    filters = W.reshape(groups, W.shape[0] // groups, -1)  # (G, O/G, C/G·kd·kh·kw)
    y = np.matmul(_grouped(_windows(_pad(x, v), v), groups), filters.transpose(0, 2, 1))  # (G, N·out, O/G)
    y = y.reshape(groups, x.shape[0], *out, W.shape[0] // groups).transpose(1, 0, 5, 2, 3, 4)
    y = np.ascontiguousarray(y.reshape(x.shape[0], W.shape[0], *out))
    if b is not None:
        y += b.reshape(1, -1, 1, 1, 1)
    return y


@conv3d.gradient
def _(g: Array, x: Array, W: Array, *rest: Array, stride: Any, padding: Any, dilation: Any, groups: int,
      needs: tuple[bool, ...] = (True, True, True)) -> tuple[Any, ...]:
    v = _geo(x, W, stride, padding, dilation)
    n, c, o = x.shape[0], x.shape[1], W.shape[0]
    rows = g.reshape(n, groups, o // groups, -1).transpose(1, 0, 3, 2).reshape(groups, -1, o // groups)
    gx = gw = None
    if needs[1]:  # Σ over samples and positions of ∂L/∂out times the window: one product per group
        cols = _grouped(_windows(_pad(x, v), v), groups)
        gw = np.matmul(rows.transpose(0, 2, 1), cols).reshape(W.shape)
    if needs[0]:  # each window's gradient (filtersᵀ · ∂L/∂out), then added back where the window sat
        filters = W.reshape(groups, o // groups, -1)
        gcols = np.matmul(rows, filters)  # (G, N·out, C/G·kd·kh·kw)
        k = W.shape[2:]
        out = v.out, *v.plane.out
        gwin = gcols.reshape(groups, n, *out, c // groups, *k).transpose(1, 0, 5, 2, 3, 4, 6, 7, 8)
        gx = _crop(_fold(np.ascontiguousarray(gwin.reshape(n, c, *out, *k)), v), v, x.shape)
    if len(rest) == 2:  # rest is (b, out) or (out,)
        return gx, gw, (g.sum(axis=(0, 2, 3, 4)) if len(needs) < 3 or needs[2] else None)
    return gx, gw


# -- pooling ------------------------------------------------------------------------------------------
def _pool_geo(x: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
              what: str) -> Volume:
    return volume(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode, what)


@kernel("max_pool3d")
def max_pool3d(x: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> Array:
    v = _pool_geo(x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool3d")
    return _windows(_pad(x, v, -np.inf), v).max(axis=(5, 6, 7))


@max_pool3d.gradient
def _(g: Array, x: Array, out: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
      ceil_mode: bool) -> tuple[Array]:
    v = _pool_geo(x, kernel_size, stride, padding, dilation, ceil_mode, "max_pool3d")
    win = _windows(_pad(x, v, -np.inf), v)
    size = int(np.prod(win.shape[5:]))
    winner = win.reshape(*win.shape[:5], size).argmax(axis=-1)  # the first maximum, as PyTorch picks
    gwin = np.zeros(win.shape, dtype=g.dtype)
    np.put_along_axis(gwin.reshape(*win.shape[:5], size), winner[..., None], g[..., None], axis=-1)
    return (_crop(_fold(gwin, v), v, x.shape),)


@functools.lru_cache(maxsize=128)
def _divisors(v: Volume, count_include_pad: bool) -> Array:
    """(out_d, out_h, out_w): how many cells each window averages over (PyTorch's rule, axis by axis)."""
    rows, cols = v.plane.window_counts(count_include_pad)
    divisor = np.multiply.outer(np.asarray(v.counts(count_include_pad)), np.outer(rows, cols)).astype(np.float64)
    divisor.flags.writeable = False
    return divisor


@kernel("avg_pool3d")
def avg_pool3d(x: Array, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
               count_include_pad: bool) -> Array:
    v = _pool_geo(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool3d")
    sums = _windows(_pad(x, v), v).sum(axis=(5, 6, 7))
    return sums / _divisors(v, bool(count_include_pad)).astype(x.dtype, copy=False)


@avg_pool3d.gradient
def _(g: Array, x: Array, out: Array, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
      count_include_pad: bool) -> tuple[Array]:
    v = _pool_geo(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool3d")
    share = g / _divisors(v, bool(count_include_pad)).astype(g.dtype, copy=False)
    k = (v.kernel, *v.plane.kernel)
    return (_crop(_fold(np.broadcast_to(share[..., None, None, None], (*share.shape, *k)), v), v, x.shape),)


def _matrices(x: Array, output_size: Any) -> list[Array]:
    out = adaptive_size3d(x.shape, output_size)
    return [_averaging(x.shape[2 + i], out[i], x.dtype.str) for i in range(3)]


@kernel("adaptive_avg_pool3d")
def adaptive_avg_pool3d(x: Array, output_size: Any) -> Array:
    if adaptive_size3d(x.shape, output_size) == (1, 1, 1):  # global average pooling, the common case
        return x.mean(axis=(2, 3, 4), keepdims=True)
    depth, rows, cols = _matrices(x, output_size)
    return np.einsum("ncdhw,Dd,Hh,Ww->ncDHW", x, depth, rows, cols, optimize=True)


@adaptive_avg_pool3d.gradient
def _(g: Array, x: Array, out: Array, output_size: Any) -> tuple[Array]:
    if adaptive_size3d(x.shape, output_size) == (1, 1, 1):
        return (np.broadcast_to(g / (x.shape[2] * x.shape[3] * x.shape[4]), x.shape).copy(),)
    depth, rows, cols = _matrices(x, output_size)
    return (np.einsum("ncDHW,Dd,Hh,Ww->ncdhw", g, depth, rows, cols, optimize=True),)

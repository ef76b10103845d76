"""Convolution and pooling on NumPy, by im2col: every window as a strided view, then one matrix product.

`_windows` views the padded image as (N, C, out_h, out_w, kh, kw) without copying; the forward
multiplies those windows by the filters, and the backward `_fold` (col2im) adds gradients back
into the image with one slice per kernel offset: kh·kw vectorised additions, never a loop over
pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...graph.ops.conv import pair, window_out
from .kernels import Array, kernel

Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]


def _geometry(x: Array, kernel_hw: tuple[int, int], stride: Any, padding: Any, dilation: Any) -> Geometry:
    """kernel, stride, padding, dilation and output size, each as (height, width)."""
    s = kernel_hw if stride is None else pair(stride)
    p, d = pair(padding), pair(dilation)
    out = tuple(window_out(x.shape[2 + i], kernel_hw[i], s[i], p[i], d[i]) for i in range(2))
    return kernel_hw, s, p, d, (out[0], out[1])


def _pad(x: Array, padding: tuple[int, int], fill: float = 0.0) -> Array:
    ph, pw = padding
    if not ph and not pw:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)


def _windows(xp: Array, geo: Geometry) -> Array:
    """Every window of the padded image as a read-only view: (N, C, out_h, out_w, kh, kw)."""
    (kh, kw), (sh, sw), _, (dh, dw), (oh, ow) = geo
    n, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, (n, c, oh, ow, kh, kw), (s0, s1, s2 * sh, s3 * sw, s2 * dh, s3 * dw), writeable=False)


def _fold(gwin: Array, padded_shape: tuple[int, ...], geo: Geometry) -> Array:
    """col2im: add each window's gradient (N, C, out_h, out_w, kh, kw) back where the window sat."""
    (kh, kw), (sh, sw), _, (dh, dw), (oh, ow) = geo
    gxp = np.zeros(padded_shape, dtype=gwin.dtype)
    for u in range(kh):  # one vectorised add per kernel offset; overlapping windows sum up
        for v in range(kw):
            gxp[:, :, u * dh: u * dh + sh * (oh - 1) + 1: sh, v * dw: v * dw + sw * (ow - 1) + 1: sw] += gwin[..., u, v]
    return gxp


def _unpad(gxp: Array, padding: tuple[int, int]) -> Array:
    ph, pw = padding
    return gxp[:, :, ph: gxp.shape[2] - ph, pw: gxp.shape[3] - pw]


def _columns(x: Array, geo: Geometry, groups: int) -> Array:
    """im2col: (N, groups, C/groups·kh·kw, out_h·out_w), one column per output pixel, in NCHW order.

    With this layout the filters multiply from the left and the product is already (N, O, out_h·out_w),
    so neither the output nor the incoming gradient needs a transposing copy.
    """
    win = _windows(_pad(x, geo[2]), geo)  # (N, C, oh, ow, kh, kw), a view
    n, c, oh, ow, kh, kw = win.shape
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, groups, (c // groups) * kh * kw, oh * ow)


@kernel("conv2d")
def conv2d(x: Array, W: Array, b: Array | None = None, *, stride: Any, padding: Any, dilation: Any,
           groups: int) -> Array:
    geo = _geometry(x, (W.shape[2], W.shape[3]), stride, padding, dilation)
    n, (oh, ow), o = x.shape[0], geo[4], W.shape[0]
    filters = W.reshape(groups, o // groups, -1)  # (groups, O/groups, C/groups·kh·kw)
    out = np.matmul(filters, _columns(x, geo, groups)).reshape(n, o, oh, ow)
    if b is not None:
        out += b.reshape(1, o, 1, 1)  # in place: `out` is a fresh array
    return out


@conv2d.gradient
def _(g: Array, x: Array, W: Array, *rest: Array, stride: Any, padding: Any, dilation: Any, groups: int,
      needs: tuple[bool, ...] = (True, True, True)) -> tuple[Any, ...]:
    has_bias = len(rest) == 2  # (b, out) or just (out,)
    geo = _geometry(x, (W.shape[2], W.shape[3]), stride, padding, dilation)
    n, c = x.shape[:2]
    (kh, kw), (oh, ow), o = geo[0], geo[4], W.shape[0]
    g_cols = g.reshape(n, groups, o // groups, oh * ow)
    filters = W.reshape(groups, o // groups, -1)
    gx = gw = None
    if needs[1]:  # Σ_n ∂L/∂out_n · columns_nᵀ
        cols = _columns(x, geo, groups)
        gw = np.matmul(g_cols, cols.transpose(0, 1, 3, 2)).sum(axis=0).reshape(W.shape)
    if needs[0]:  # filtersᵀ · ∂L/∂out gives each window's gradient; col2im adds them back into the image
        gcols = np.matmul(filters.transpose(0, 2, 1), g_cols)  # (N, groups, C/groups·kh·kw, oh·ow)
        gwin = gcols.reshape(n, c, kh, kw, oh, ow).transpose(0, 1, 4, 5, 2, 3)
        padded = (n, c, x.shape[2] + 2 * geo[2][0], x.shape[3] + 2 * geo[2][1])
        gx = np.ascontiguousarray(_unpad(_fold(gwin, padded, geo), geo[2]))
    if not has_bias:
        return gx, gw
    return gx, gw, (g.sum(axis=(0, 2, 3)) if len(needs) < 3 or needs[2] else None)


@kernel("max_pool2d")
def max_pool2d(x: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> Array:
    geo = _geometry(x, pair(kernel_size), stride, padding, dilation)
    return _windows(_pad(x, geo[2], -np.inf), geo).max(axis=(4, 5))


@max_pool2d.gradient
def _(g: Array, x: Array, out: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> tuple[Array]:
    geo = _geometry(x, pair(kernel_size), stride, padding, dilation)
    xp = _pad(x, geo[2], -np.inf)
    win = _windows(xp, geo)
    kh, kw = geo[0]
    winner = win.reshape(*win.shape[:4], kh * kw).argmax(axis=-1)  # the first maximum, as PyTorch picks
    gwin = np.zeros(win.shape, dtype=g.dtype)
    np.put_along_axis(gwin.reshape(*win.shape[:4], kh * kw), winner[..., None], g[..., None], axis=-1)
    return (np.ascontiguousarray(_unpad(_fold(gwin, xp.shape, geo), geo[2])),)


@kernel("avg_pool2d")
def avg_pool2d(x: Array, kernel_size: Any, stride: Any, padding: Any) -> Array:
    geo = _geometry(x, pair(kernel_size), stride, padding, 1)
    kh, kw = geo[0]
    return _windows(_pad(x, geo[2]), geo).sum(axis=(4, 5)) / (kh * kw)


@avg_pool2d.gradient
def _(g: Array, x: Array, out: Array, kernel_size: Any, stride: Any, padding: Any) -> tuple[Array]:
    geo = _geometry(x, pair(kernel_size), stride, padding, 1)
    kh, kw = geo[0]
    gwin = np.broadcast_to((g / (kh * kw))[..., None, None], (*g.shape, kh, kw))
    padded = (*x.shape[:2], x.shape[2] + 2 * geo[2][0], x.shape[3] + 2 * geo[2][1])
    return (np.ascontiguousarray(_unpad(_fold(gwin, padded, geo), geo[2])),)


@kernel("flatten")
def flatten(x: Array, start_dim: int, end_dim: int) -> Array:
    ndim = max(x.ndim, 1)
    start, end = start_dim % ndim, end_dim % ndim
    return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:])


@flatten.gradient
def _(g: Array, x: Array, out: Array, start_dim: int, end_dim: int) -> tuple[Array]:
    return (g.reshape(x.shape),)

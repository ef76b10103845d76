"""Convolution and pooling on NumPy, by im2col: every window as a strided view, then one matrix product.

`_windows` views the padded image as (N, C, out_h, out_w, kh, kw) without copying; the forward
multiplies those windows by the filters, and the backward `_fold` (col2im) adds gradients back
into the image with one slice per kernel offset: kh·kw vectorised additions, never a loop over
pixels. A transposed convolution is the same two halves swapped: its forward is conv2d's
input gradient (a fold), its input gradient a conv2d (an unfold). 1-D ops run as 2-D ops on a
1×length image. Where the windows sit (`Grid`) comes from the op's shape rule module.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...graph.ops.conv import Grid, adaptive_size, adaptive_windows, grid, grid1d, transposed_grid
from .kernels import Array, kernel


# -- windows -----------------------------------------------------------------------------------
def _pad(x: Array, g: Grid, fill: float = 0.0) -> Array:
    """The image inside its padding (and ceil_mode's extra rows after it), filled with `fill`."""
    (hp, wp), (h, w), top, left = g.padded, g.size, g.pads[0], g.pads[2]
    if (hp, wp) == (h, w):
        return x
    xp = np.full((*x.shape[:2], hp, wp), fill, dtype=x.dtype)
    xp[:, :, top: top + h, left: left + w] = x
    return xp


def _crop(gxp: Array, g: Grid) -> Array:
    """The image's part of a padded-image gradient, contiguous."""
    (h, w), top, left = g.size, g.pads[0], g.pads[2]
    if gxp.shape[2:] == (h, w):
        return gxp
    return np.ascontiguousarray(gxp[:, :, top: top + h, left: left + w])


def _windows(xp: Array, g: Grid) -> Array:
    """Every window of the padded image as a read-only view: (N, C, out_h, out_w, kh, kw)."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = g.kernel, g.stride, g.dilation, g.out
    n, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, (n, c, oh, ow, kh, kw), (s0, s1, s2 * sh, s3 * sw, s2 * dh, s3 * dw), writeable=False)


def _fold(gwin: Array, g: Grid) -> Array:
    """col2im: add each window's gradient (N, C, out_h, out_w, kh, kw) back where the window sat."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = g.kernel, g.stride, g.dilation, g.out
    gxp = np.zeros((*gwin.shape[:2], *g.padded), dtype=gwin.dtype)
    for u in range(kh):  # one vectorised add per kernel offset; overlapping windows sum up
        for v in range(kw):
            gxp[:, :, u * dh: u * dh + sh * (oh - 1) + 1: sh, v * dw: v * dw + sw * (ow - 1) + 1: sw] += gwin[..., u, v]
    return gxp


def _columns(xp: Array, g: Grid, groups: int) -> Array:
    """im2col of a padded image: (groups, C/groups·kh·kw, N·out_h·out_w), one column per output pixel.

    The batch sits among the columns, so each product below is one matrix product per group whose
    inner dimension runs over every pixel of every sample: the weight gradient needs no sum over
    samples afterwards.
    """
    win = _windows(xp, g)  # (N, C, oh, ow, kh, kw), a view
    n, c, oh, ow, kh, kw = win.shape
    return win.transpose(1, 4, 5, 0, 2, 3).reshape(groups, (c // groups) * kh * kw, n * oh * ow)


def _fold_columns(cols: Array, n: int, channels: int, g: Grid) -> Array:
    """The inverse of `_columns`: (groups, C/groups·kh·kw, N·out_h·out_w) added back into the image."""
    (kh, kw), (oh, ow) = g.kernel, g.out
    gwin = cols.reshape(channels, kh, kw, n, oh, ow).transpose(3, 0, 4, 5, 1, 2)
    return _crop(_fold(gwin, g), g)


def _batch_last(t: Array, groups: int) -> Array:
    """(N, C, h, w) → (groups, C/groups, N·h·w): the layout of `_columns`' rows."""
    n, c = t.shape[:2]
    return t.reshape(n, groups, c // groups, -1).transpose(1, 2, 0, 3).reshape(groups, c // groups, -1)


def _batch_first(y: Array, n: int, hw: tuple[int, int]) -> Array:
    """(groups, C/groups, N·h·w) → (N, C, h, w), contiguous."""
    groups, per = y.shape[:2]
    return np.ascontiguousarray(y.reshape(groups, per, n, -1).transpose(2, 0, 1, 3)).reshape(n, groups * per, *hw)


# -- depthwise convolution: one filter per channel is kh·kw multiply-adds, no matrix product -------
def _offsets(g: Grid) -> list[tuple[int, int, tuple[slice, slice]]]:
    """Each kernel offset (u, v) and the strided slice of the padded image its weight multiplies."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = g.kernel, g.stride, g.dilation, g.out
    return [(u, v, (slice(u * dh, u * dh + sh * (oh - 1) + 1, sh), slice(v * dw, v * dw + sw * (ow - 1) + 1, sw)))
            for u in range(kh) for v in range(kw)]


def _depthwise(x: Array, W: Array, g: Grid) -> Array:
    """groups = C: out[n, c·m + j] = Σ_(u, v) W[c·m + j, 0, u, v] · x[n, c] shifted by (u, v)."""
    n, c = x.shape[:2]
    filters = W.reshape(c, -1, *g.kernel)  # (C, multiplier, kh, kw)
    xp = _pad(x, g)[:, :, None]
    out = np.zeros((n, c, filters.shape[1], *g.out), dtype=x.dtype)
    for u, v, (rows, cols) in _offsets(g):
        out += filters[None, :, :, u, v, None, None] * xp[:, :, :, rows, cols]
    return out.reshape(n, W.shape[0], *g.out)


def _depthwise_grad(gout: Array, x: Array, W: Array, g: Grid, needs: tuple[bool, ...]
                    ) -> tuple[Array | None, Array | None]:
    n, c = x.shape[:2]
    filters = W.reshape(c, -1, *g.kernel)
    g5 = gout.reshape(n, c, filters.shape[1], *g.out)
    gx = gw = None
    if needs[1]:  # ∂L/∂W[c·m + j, 0, u, v] = Σ_(n, i, j) ∂L/∂out · x shifted by (u, v)
        xp = _pad(x, g)
        gw = np.empty(filters.shape, dtype=x.dtype)
        for u, v, (rows, cols) in _offsets(g):
            gw[:, :, u, v] = np.einsum("ncmij,ncij->cm", g5, xp[:, :, rows, cols])
        gw = gw.reshape(W.shape)
    if needs[0]:  # each output's gradient, weighted, added back at every offset it read
        gxp = np.zeros((n, c, *g.padded), dtype=gout.dtype)
        for u, v, (rows, cols) in _offsets(g):
            gxp[:, :, rows, cols] += np.einsum("ncmij,cm->ncij", g5, filters[:, :, u, v])
        gx = _crop(gxp, g)
    return gx, gw


# -- convolution, shared by conv2d and conv1d ----------------------------------------------------
def _conv(x: Array, W: Array, b: Array | None, g: Grid, groups: int) -> Array:
    o = W.shape[0]
    if groups > 1 and groups == x.shape[1]:
        out = _depthwise(x, W, g)
        if b is not None:
            out += b.reshape(1, o, 1, 1)
        return out
    filters = W.reshape(groups, o // groups, -1)  # (groups, O/groups, C/groups·kh·kw)
    out = _batch_first(np.matmul(filters, _columns(_pad(x, g), g, groups)), x.shape[0], g.out)
    if b is not None:
        out += b.reshape(1, o, 1, 1)  # in place: `out` is a fresh array
    return out


def _conv_grad(gout: Array, x: Array, W: Array, g: Grid, groups: int, needs: tuple[bool, ...]
               ) -> tuple[Array | None, Array | None]:
    n, c, o = x.shape[0], x.shape[1], W.shape[0]
    if groups > 1 and groups == c:
        return _depthwise_grad(gout, x, W, g, needs)
    g_rows = _batch_last(gout, groups)  # (groups, O/groups, N·oh·ow)
    gx = gw = None
    if needs[1]:  # ∂L/∂out · columnsᵀ, summed over samples and pixels in one product
        cols = _columns(_pad(x, g), g, groups)
        gw = np.matmul(g_rows, cols.transpose(0, 2, 1)).reshape(W.shape)
    if needs[0]:  # filtersᵀ · ∂L/∂out gives each window's gradient; col2im adds them back into the image
        filters = W.reshape(groups, o // groups, -1)
        gx = _fold_columns(np.matmul(filters.transpose(0, 2, 1), g_rows), n, c, g)
    return gx, gw


def _with_bias(gx: Array | None, gw: Array | None, gout: Array, has_bias: bool, needs: tuple[bool, ...],
               axes: tuple[int, ...]) -> tuple[Any, ...]:
    if not has_bias:
        return gx, gw
    return gx, gw, (gout.sum(axis=axes) if len(needs) < 3 or needs[2] else None)


@kernel("conv2d")
def conv2d(x: Array, W: Array, b: Array | None = None, *, stride: Any, padding: Any, dilation: Any,
           groups: int) -> Array:
    return _conv(x, W, b, grid(x.shape[2:], W.shape[2:], stride, padding, dilation), groups)


@conv2d.gradient
def _(g: Array, x: Array, W: Array, *rest: Array, stride: Any, padding: Any, dilation: Any, groups: int,
      needs: tuple[bool, ...] = (True, True, True)) -> tuple[Any, ...]:
    geo = grid(x.shape[2:], W.shape[2:], stride, padding, dilation)
    gx, gw = _conv_grad(g, x, W, geo, groups, needs)
    return _with_bias(gx, gw, g, len(rest) == 2, needs, (0, 2, 3))  # rest is (b, out) or (out,)


@kernel("conv1d")
def conv1d(x: Array, W: Array, b: Array | None = None, *, stride: Any, padding: Any, dilation: Any,
           groups: int) -> Array:
    geo = grid1d(x.shape[2], W.shape[2], stride, padding, dilation)
    return _conv(x[:, :, None, :], W[:, :, None, :], b, geo, groups)[:, :, 0, :]


@conv1d.gradient
def _(g: Array, x: Array, W: Array, *rest: Array, stride: Any, padding: Any, dilation: Any, groups: int,
      needs: tuple[bool, ...] = (True, True, True)) -> tuple[Any, ...]:
    geo = grid1d(x.shape[2], W.shape[2], stride, padding, dilation)
    gx, gw = _conv_grad(g[:, :, None, :], x[:, :, None, :], W[:, :, None, :], geo, groups, needs)
    gx = None if gx is None else gx.reshape(x.shape)
    gw = None if gw is None else gw.reshape(W.shape)
    return _with_bias(gx, gw, g, len(rest) == 2, needs, (0, 2))


# -- transposed convolution: conv2d's input gradient as a forward --------------------------------
@kernel("conv_transpose2d")
def conv_transpose2d(x: Array, W: Array, b: Array | None = None, *, stride: Any, padding: Any,
                     output_padding: Any, dilation: Any, groups: int) -> Array:
    geo = transposed_grid(x.shape[2:], W.shape[2:], stride, padding, output_padding, dilation)
    n, c_in = x.shape[:2]
    c_out = W.shape[1] * groups
    filters = W.reshape(groups, c_in // groups, -1)  # (groups, C_in/groups, C_out/groups·kh·kw)
    out = _fold_columns(np.matmul(filters.transpose(0, 2, 1), _batch_last(x, groups)), n, c_out, geo)
    if b is not None:
        out += b.reshape(1, c_out, 1, 1)  # `out` is a fresh array: the fold made it
    return out


@conv_transpose2d.gradient
def _(g: Array, x: Array, W: Array, *rest: Array, stride: Any, padding: Any, output_padding: Any, dilation: Any,
      groups: int, needs: tuple[bool, ...] = (True, True, True)) -> tuple[Any, ...]:
    geo = transposed_grid(x.shape[2:], W.shape[2:], stride, padding, output_padding, dilation)
    n, c_in = x.shape[:2]
    cols = _columns(_pad(g, geo), geo, groups)  # the windows of ∂L/∂out that each input pixel stamped onto
    gx = gw = None
    if needs[0]:  # conv2d(∂L/∂out, W)
        gx = _batch_first(np.matmul(W.reshape(groups, c_in // groups, -1), cols), n, x.shape[2:])
    if needs[1]:
        gw = np.matmul(_batch_last(x, groups), cols.transpose(0, 2, 1)).reshape(W.shape)
    return _with_bias(gx, gw, g, len(rest) == 2, needs, (0, 2, 3))


# -- max and average pooling, shared by the 2-D and 1-D ops --------------------------------------
def _max_pool(x: Array, g: Grid) -> Array:
    return _windows(_pad(x, g, -np.inf), g).max(axis=(4, 5))


def _max_pool_grad(gout: Array, x: Array, g: Grid) -> Array:
    win = _windows(_pad(x, g, -np.inf), g)
    kh, kw = g.kernel
    winner = win.reshape(*win.shape[:4], kh * kw).argmax(axis=-1)  # the first maximum, as PyTorch picks
    gwin = np.zeros(win.shape, dtype=gout.dtype)
    np.put_along_axis(gwin.reshape(*win.shape[:4], kh * kw), winner[..., None], gout[..., None], axis=-1)
    return _crop(_fold(gwin, g), g)


@functools.lru_cache(maxsize=256)
def _divisors(g: Grid, count_include_pad: bool) -> Array:
    """(out_h, out_w): how many cells each window averages over (PyTorch's rule, see `Grid.window_counts`)."""
    rows, cols = g.window_counts(count_include_pad)
    divisor = np.outer(rows, cols).astype(np.float64)
    divisor.flags.writeable = False
    return divisor


def _avg_pool(x: Array, g: Grid, count_include_pad: bool) -> Array:
    return _windows(_pad(x, g), g).sum(axis=(4, 5)) / _divisors(g, count_include_pad).astype(x.dtype, copy=False)


def _avg_pool_grad(gout: Array, g: Grid, count_include_pad: bool) -> Array:
    share = gout / _divisors(g, count_include_pad).astype(gout.dtype, copy=False)
    return _crop(_fold(np.broadcast_to(share[..., None, None], (*share.shape, *g.kernel)), g), g)


def _pool_grid(x: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> Grid:
    if x.ndim == 3:
        return grid1d(x.shape[2], kernel_size, stride, padding, dilation, ceil_mode)
    return grid(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)


def _image(x: Array) -> Array:
    """A 1-D op's (N, C, L) input as a (N, C, 1, L) image; a 2-D op's as it is."""
    return x[:, :, None, :] if x.ndim == 3 else x


def _back(y: Array, like: Array) -> Array:
    return y.reshape(like.shape[0], like.shape[1], -1) if like.ndim == 3 else y


@kernel("max_pool2d")
def max_pool2d(x: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> Array:
    return _max_pool(x, _pool_grid(x, kernel_size, stride, padding, dilation, ceil_mode))


@max_pool2d.gradient
def _(g: Array, x: Array, out: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
      ceil_mode: bool) -> tuple[Array]:
    return (_max_pool_grad(g, x, _pool_grid(x, kernel_size, stride, padding, dilation, ceil_mode)),)


@kernel("max_pool1d")
def max_pool1d(x: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> Array:
    return _back(_max_pool(_image(x), _pool_grid(x, kernel_size, stride, padding, dilation, ceil_mode)), x)


@max_pool1d.gradient
def _(g: Array, x: Array, out: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
      ceil_mode: bool) -> tuple[Array]:
    geo = _pool_grid(x, kernel_size, stride, padding, dilation, ceil_mode)
    return (_back(_max_pool_grad(_image(g), _image(x), geo), x),)


@kernel("avg_pool2d")
def avg_pool2d(x: Array, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
               count_include_pad: bool) -> Array:
    return _avg_pool(x, _pool_grid(x, kernel_size, stride, padding, 1, ceil_mode), count_include_pad)


@avg_pool2d.gradient
def _(g: Array, x: Array, out: Array, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
      count_include_pad: bool) -> tuple[Array]:
    return (_avg_pool_grad(g, _pool_grid(x, kernel_size, stride, padding, 1, ceil_mode), count_include_pad),)


@kernel("avg_pool1d")
def avg_pool1d(x: Array, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
               count_include_pad: bool) -> Array:
    geo = _pool_grid(x, kernel_size, stride, padding, 1, ceil_mode)
    return _back(_avg_pool(_image(x), geo, count_include_pad), x)


@avg_pool1d.gradient
def _(g: Array, x: Array, out: Array, kernel_size: Any, stride: Any, padding: Any, ceil_mode: bool,
      count_include_pad: bool) -> tuple[Array]:
    geo = _pool_grid(x, kernel_size, stride, padding, 1, ceil_mode)
    return (_back(_avg_pool_grad(_image(g), geo, count_include_pad), x),)


# -- adaptive pooling: windows of PyTorch's adaptive sizes ---------------------------------------
@functools.lru_cache(maxsize=256)
def _averaging(size: int, out: int, dtype: str) -> Array:
    """(out, size): row i holds 1/(window size) over adaptive window i, so a mean is one matrix product."""
    matrix = np.zeros((out, size))
    for i, (start, end) in enumerate(adaptive_windows(size, out)):
        matrix[i, start:end] = 1.0 / (end - start)
    matrix = matrix.astype(dtype)
    matrix.flags.writeable = False
    return matrix


def _adaptive_matrices(x: Array, output_size: Any) -> tuple[Array, Array]:
    oh, ow = adaptive_size(x.shape, output_size)
    return _averaging(x.shape[2], oh, x.dtype.str), _averaging(x.shape[3], ow, x.dtype.str)


@kernel("adaptive_avg_pool2d")
def adaptive_avg_pool2d(x: Array, output_size: Any) -> Array:
    if adaptive_size(x.shape, output_size) == (1, 1):  # global average pooling, the common case
        return x.mean(axis=(2, 3), keepdims=True)
    rows, cols = _adaptive_matrices(x, output_size)
    return np.matmul(np.matmul(rows, x), cols.T)


@adaptive_avg_pool2d.gradient
def _(g: Array, x: Array, out: Array, output_size: Any) -> tuple[Array]:
    if adaptive_size(x.shape, output_size) == (1, 1):
        return (np.broadcast_to(g / (x.shape[2] * x.shape[3]), x.shape).copy(),)
    rows, cols = _adaptive_matrices(x, output_size)
    return (np.matmul(np.matmul(rows.T, g), cols),)


def _adaptive_winners(x: Array, output_size: Any) -> list[tuple[tuple[int, int], Array, Array]]:
    """For each window (i, j): its position, and per (n, c) the largest value and its flat index in x."""
    oh, ow = adaptive_size(x.shape, output_size)
    n, c, h, w = x.shape
    found = []
    for i, (r0, r1) in enumerate(adaptive_windows(h, oh)):
        for j, (c0, c1) in enumerate(adaptive_windows(w, ow)):
            patch = x[:, :, r0:r1, c0:c1].reshape(n, c, -1)
            best = patch.argmax(axis=-1)  # the first maximum in row-major order, as PyTorch picks
            value = np.take_along_axis(patch, best[..., None], axis=-1)[..., 0]
            found.append(((i, j), value, (r0 + best // (c1 - c0)) * w + c0 + best % (c1 - c0)))
    return found


@kernel("adaptive_max_pool2d")
def adaptive_max_pool2d(x: Array, output_size: Any) -> Array:
    out = np.empty((*x.shape[:2], *adaptive_size(x.shape, output_size)), dtype=x.dtype)
    for (i, j), value, _ in _adaptive_winners(x, output_size):
        out[:, :, i, j] = value
    return out


@adaptive_max_pool2d.gradient
def _(g: Array, x: Array, out: Array, output_size: Any) -> tuple[Array]:
    gx = np.zeros((*x.shape[:2], x.shape[2] * x.shape[3]), dtype=g.dtype)
    for (i, j), _, index in _adaptive_winners(x, output_size):  # windows may overlap: add, don't overwrite
        here = np.take_along_axis(gx, index[..., None], axis=-1)
        np.put_along_axis(gx, index[..., None], here + g[:, :, i, j, None], axis=-1)
    return (gx.reshape(x.shape),)


# -- flatten -----------------------------------------------------------------------------------
@kernel("flatten")
def flatten(x: Array, start_dim: int, end_dim: int) -> Array:
    ndim = max(x.ndim, 1)
    start, end = start_dim % ndim, end_dim % ndim
    return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:])


@flatten.gradient
def _(g: Array, x: Array, out: Array, start_dim: int, end_dim: int) -> tuple[Array]:
    return (g.reshape(x.shape),)


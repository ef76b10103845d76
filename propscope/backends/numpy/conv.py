"""Convolution and pooling on NumPy, by im2col: every window copied into a window matrix, then one matrix product.

The forward multiplies the window matrix by the filters, and the backward `_fold` (col2im) adds gradients back
into the image with one slice per kernel offset: kh·kw vectorised additions, never a loop over pixels. A
convolution's window matrix is built from the image itself (`_unfold_into`: one strided copy per kernel offset,
zeros where a window reaches into the padding) and its fold adds straight into the image's gradient, dropping
what falls on the padding: neither the padded image nor a padded gradient to crop is made. A transposed
convolution is the same two halves swapped: its forward is conv2d's input gradient (a fold), its input gradient
a conv2d (an unfold). 1-D ops run as 2-D ops on a 1×length image. Where the windows sit (`Grid`) comes from the
op's shape rule module. Pooling still pads (with -inf for the max) and reads the padded image's strided windows.

The window matrix is kh·kw times its image (9 times for a 3×3 filter), so no product builds more than
`IM2COL_BYTES` of it at once, as in the 3-D kernels (conv3d.py): the columns go in slabs of whole samples,
else of output rows of one sample, the weight gradient's rows in slabs of channels (else kernel rows), and
the fold adds the slabs back last one first, which keeps the order of each cell's additions. Below the bound
nothing changes; above it products may round differently in the last bits (OpenBLAS picks its kernels by
size), which is why the bound stays where it was. The window matrices live in memory the process keeps
(`kernels.scratch`): touching 231 MB of fresh memory for VGG-16's second convolution cost more than its
products on a VM after a pause. The max pool's gradient finds each window's winner tap by tap, never copying
the window matrix.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...graph.ops.conv import Grid, adaptive_size, adaptive_windows, grid, grid1d, transposed_grid
from .kernels import Array, borrowed, kernel, scratch

IM2COL_BYTES = 256 * 2**20  # the most of a window matrix one product builds
_SMALL_IMAGE = 2**16  # values: an image this small is padded whole for im2col (a copy per kernel offset costs more)


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


def _inside(first: int, stop: int, tap: int, stride: int, dilation: int, before: int, size: int
            ) -> tuple[int, int, int]:
    """The windows i in [first, stop) along one axis whose tap `tap` reads the image itself, not its padding
    (0 <= i·stride + tap·dilation − before < size): (i0, i1, the image index i0's tap reads)."""
    offset = tap * dilation - before
    i0 = max(first, -(offset // stride))
    i1 = max(i0, min(stop, (size - 1 - offset) // stride + 1))
    return i0, i1, i0 * stride + offset


def _along(start: int, count: int, stride: int) -> slice:
    return slice(start, start + stride * (count - 1) + 1, stride)


def _unfold_into(cols: Array, x: Array, g: Grid, channels: slice, samples: slice, rows: slice,
                 taps: slice = slice(None)) -> None:
    """im2col with the padding implied: `cols` (channels, kernel rows `taps`, kw, samples, rows, out_w) gets every
    window's values, 0 where a window reaches into the padding. One strided copy per kernel offset; the padded
    image is never made."""
    (kh, kw), (sh, sw), (dh, dw), (_, ow) = g.kernel, g.stride, g.dilation, g.out
    (h, w), top, left = g.size, g.pads[0], g.pads[2]
    image = x[samples, channels].transpose(1, 0, 2, 3)  # (channels, samples, h, w), a view
    r0 = rows.start or 0
    r1 = r0 + cols.shape[4]
    if image.size <= _SMALL_IMAGE or not any(g.pads):  # one copy of the windows (of the padded image, if small)
        win = _windows(_pad(x[samples, channels], g), g)[:, :, r0:r1, :, taps]  # (samples, channels, rows, ow, ...)
        np.copyto(cols, win.transpose(1, 4, 5, 0, 2, 3))
        return
    across = [_inside(0, ow, v, sw, dw, left, w) for v in range(kw)]
    for u in range(*taps.indices(kh)):
        i0, i1, y = _inside(r0, r1, u, sh, dh, top, h)
        for v, (j0, j1, z) in enumerate(across):
            tap = cols[:, u - (taps.start or 0), v]  # (channels, samples, rows, out_w)
            a, b = i0 - r0, i1 - r0
            if b <= a or j1 <= j0:
                tap[...] = 0
                continue
            tap[:, :, :a] = 0
            tap[:, :, b:] = 0
            tap[:, :, a:b, :j0] = 0
            tap[:, :, a:b, j1:] = 0
            tap[:, :, a:b, j0:j1] = image[:, :, _along(y, b - a, sh), _along(z, j1 - j0, sw)]


def _fold_into(gx: Array, gwin: Array, g: Grid, row: int = 0) -> None:
    """col2im: add windows' values (N, C, rows, out_w, kh, kw) into the image gradient `gx` (N, C, h, w) where they
    sat, the first row of windows being output row `row`: one vectorised add per kernel offset, in offset order;
    overlapping windows sum up, and what falls on the padding is dropped (never added)."""
    (kh, kw), (sh, sw), (dh, dw) = g.kernel, g.stride, g.dilation
    (h, w), top, left = g.size, g.pads[0], g.pads[2]
    rows, ow = gwin.shape[2:4]
    across = [_inside(0, ow, v, sw, dw, left, w) for v in range(kw)]
    for u in range(kh):
        i0, i1, y = _inside(row, row + rows, u, sh, dh, top, h)
        if i1 <= i0:
            continue
        for v, (j0, j1, z) in enumerate(across):
            if j1 > j0:
                gx[:, :, _along(y, i1 - i0, sh), _along(z, j1 - j0, sw)] += gwin[:, :, i0 - row: i1 - row, j0:j1, u, v]


def _fold(gwin: Array, g: Grid) -> Array:
    """col2im: add each window's gradient (N, C, out_h, out_w, kh, kw) back where the window sat: the image's."""
    gx = np.zeros((*gwin.shape[:2], *g.size), dtype=gwin.dtype)
    _fold_into(gx, gwin, g)
    return gx


# -- slabs: window matrices of at most IM2COL_BYTES -----------------------------------------------------------
def _slabs(n: int, out: tuple[int, int], per_position: int) -> list[tuple[slice, slice]]:
    """Blocks of output positions (samples, output rows), in row-major order, whose windows take at most
    IM2COL_BYTES (`per_position` bytes each): whole samples where one fits, else rows of one sample (one at
    least)."""
    oh, ow = out
    row = max(per_position * ow, 1)
    whole = row * oh
    if whole * n <= IM2COL_BYTES:
        return [(slice(0, n), slice(0, oh))]
    if whole <= IM2COL_BYTES:
        step = IM2COL_BYTES // whole
        return [(slice(a, min(a + step, n)), slice(0, oh)) for a in range(0, n, step)]
    step = max(1, IM2COL_BYTES // row)
    return [(slice(b, b + 1), slice(a, min(a + step, oh))) for b in range(n) for a in range(0, oh, step)]


def _extent(s: slice) -> int:
    return s.stop - s.start


def _per_position(c: int, g: Grid, t: Array) -> int:
    """Bytes of one output position's windows over `c` channels."""
    return c * g.kernel[0] * g.kernel[1] * t.itemsize


def _unfold_product(x: Array, g: Grid, groups: int, filters: Array) -> Array:
    """`filters` (groups, M, C/groups·kh·kw) times every window of the image in its padding: (N, groups·M, out_h,
    out_w). The window matrix is built slab by slab in borrowed memory; a slab of one sample's rows is multiplied
    straight into its place in the output."""
    n, c = x.shape[:2]
    (kh, kw), (oh, ow), m = g.kernel, g.out, filters.shape[1]
    slabs = _slabs(n, g.out, _per_position(c, g, x))
    most = max(_extent(samples) * _extent(rows) for samples, rows in slabs) * ow * _per_position(c, g, x)
    out = np.empty((n, groups * m, oh, ow), dtype=np.result_type(x, filters))
    with scratch(most) as buf:
        for samples, rows in slabs:
            nb, nr = _extent(samples), _extent(rows)
            cols = borrowed(buf, (c, kh, kw, nb, nr, ow), x.dtype)
            _unfold_into(cols, x, g, slice(None), samples, rows)
            by_group = cols.reshape(groups, -1, nb * nr * ow)
            for group in range(groups):
                if nb == 1:  # straight into the output: its sample as a (channels, positions) matrix, a view
                    plane = out[samples.start].reshape(groups * m, oh * ow)
                    np.matmul(filters[group], by_group[group],
                              out=plane[group * m: (group + 1) * m, rows.start * ow: rows.stop * ow])
                else:
                    part = np.matmul(filters[group], by_group[group]).reshape(m, nb, nr, ow)
                    out[samples, group * m: (group + 1) * m, rows] = part.transpose(1, 0, 2, 3)
    return out


def _weight_product(t_rows: Array, x: Array, g: Grid, groups: int) -> Array:
    """Σ over positions of `t_rows` (groups, M, N·out_h·out_w) times each position's window of the image in its
    padding: (groups, M, C/groups·kh·kw). The positions are the product's inner dimension, so slabs split the
    columns (whole channels, else kernel rows of one channel) rather than the positions.

    Not taken transposed, (windows · t_rowsᵀ)ᵀ, though that dodges a stall of OpenBLAS's two threads on this
    long, narrow product when other processes share the cores (VGG-16's second convolution at 224×224, load 4:
    0.3-0.9 s this way, 0.05-0.11 s transposed): for some shapes (a 7×7 stride-2 stem in float64) it rounds the
    last bit differently."""
    n, c = x.shape[:2]
    cg, (kh, kw), (oh, ow) = c // groups, g.kernel, g.out
    positions, item = t_rows.shape[2], x.itemsize
    out = np.empty((groups, t_rows.shape[1], cg * kh * kw), dtype=np.result_type(x, t_rows))
    everything = slice(0, n), slice(0, oh)
    if groups * positions * cg * kh * kw * item <= IM2COL_BYTES:
        with scratch(c * kh * kw * positions * item) as buf:
            cols = borrowed(buf, (c, kh, kw, n, oh, ow), x.dtype)
            _unfold_into(cols, x, g, slice(None), *everything)
            np.matmul(t_rows, cols.reshape(groups, -1, positions).transpose(0, 2, 1), out=out)
        return out
    if positions * kh * kw * item <= IM2COL_BYTES:  # whole channels
        step = IM2COL_BYTES // (positions * kh * kw * item)
        blocks = [(a, min(a + step, cg), slice(0, kh)) for a in range(0, cg, step)]
    else:  # kernel rows of one channel
        step = max(1, IM2COL_BYTES // (positions * kw * item))
        blocks = [(a, a + 1, slice(u, min(u + step, kh))) for a in range(cg) for u in range(0, kh, step)]
    most = max((c1 - c0) * _extent(taps) for c0, c1, taps in blocks) * kw * positions * item
    with scratch(most) as buf:
        for group in range(groups):
            for c0, c1, taps in blocks:
                cols = borrowed(buf, (c1 - c0, _extent(taps), kw, n, oh, ow), x.dtype)
                _unfold_into(cols, x, g, slice(group * cg + c0, group * cg + c1), *everything, taps)
                first = c0 * kh * kw + taps.start * kw
                np.matmul(t_rows[group], cols.reshape(-1, positions).T,
                          out=out[group, :, first: first + cols.shape[0] * cols.shape[1] * kw])
    return out


def _fold_product(left: Array, t: Array, groups: int, channels: int, g: Grid) -> Array:
    """`left` (groups, C/groups·kh·kw, M) times `t` (N, groups·M, out_h, out_w) gives every window's values, added
    back where the windows sat (col2im) into an image of `channels`. One fold adds a cell's terms in kernel-offset
    order; a later row of windows reaches a cell through an earlier kernel row, so the slabs go last one first."""
    n = t.shape[0]
    (kh, kw), (oh, ow), m = g.kernel, g.out, t.shape[1] // groups
    dtype = np.result_type(left, t)
    slabs = _slabs(n, g.out, _per_position(channels, g, t))  # as ever: a product of another shape may round apart
    most = max(_extent(samples) * _extent(rows) for samples, rows in slabs) * ow * channels * kh * kw * dtype.itemsize
    by_group = t.reshape(n, groups, m, oh, ow).transpose(1, 2, 0, 3, 4)  # (groups, M, N, oh, ow), a view
    gx = np.zeros((n, channels, *g.size), dtype=dtype)
    with scratch(most) as buf:
        for samples, rows in reversed(slabs):
            block = by_group[:, :, samples, rows]
            nb, nr = block.shape[2:4]
            cols = borrowed(buf, (groups, channels // groups * kh * kw, nb * nr * ow), dtype)
            for group in range(groups):
                np.matmul(left[group], block[group].reshape(m, -1), out=cols[group])
            _fold_into(gx[samples], cols.reshape(channels, kh, kw, nb, nr, ow).transpose(3, 0, 4, 5, 1, 2), g,
                       rows.start)
    return gx


def _batch_last(t: Array, groups: int) -> Array:
    """(N, C, h, w) → (groups, C/groups, N·h·w): the layout of the window matrix's columns."""
    n, c = t.shape[:2]
    return t.reshape(n, groups, c // groups, -1).transpose(1, 2, 0, 3).reshape(groups, c // groups, -1)


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
    out = _unfold_product(x, g, groups, filters)
    if b is not None:
        out += b.reshape(1, o, 1, 1)  # in place: `out` is a fresh array
    return out


def _conv_grad(gout: Array, x: Array, W: Array, g: Grid, groups: int, needs: tuple[bool, ...]
               ) -> tuple[Array | None, Array | None]:
    c, o = x.shape[1], W.shape[0]
    if groups > 1 and groups == c:
        return _depthwise_grad(gout, x, W, g, needs)
    gx = gw = None
    if needs[1]:  # ∂L/∂out · columnsᵀ, summed over samples and pixels in one product
        gw = _weight_product(_batch_last(gout, groups), x, g, groups).reshape(W.shape)
    if needs[0]:  # filtersᵀ · ∂L/∂out gives each window's gradient; col2im adds them back into the image
        filters = W.reshape(groups, o // groups, -1)
        gx = _fold_product(filters.transpose(0, 2, 1), gout, groups, c, g)
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
    c_in = x.shape[1]
    c_out = W.shape[1] * groups
    filters = W.reshape(groups, c_in // groups, -1)  # (groups, C_in/groups, C_out/groups·kh·kw)
    out = _fold_product(filters.transpose(0, 2, 1), x, groups, c_out, geo)
    if b is not None:
        out += b.reshape(1, c_out, 1, 1)  # `out` is a fresh array: the fold made it
    return out


@conv_transpose2d.gradient
def _(g: Array, x: Array, W: Array, *rest: Array, stride: Any, padding: Any, output_padding: Any, dilation: Any,
      groups: int, needs: tuple[bool, ...] = (True, True, True)) -> tuple[Any, ...]:
    geo = transposed_grid(x.shape[2:], W.shape[2:], stride, padding, output_padding, dilation)
    c_in = x.shape[1]
    gx = gw = None
    if needs[0]:  # conv2d(∂L/∂out, W): the windows of ∂L/∂out that each input pixel stamped onto
        gx = _unfold_product(g, geo, groups, W.reshape(groups, c_in // groups, -1))
    if needs[1]:
        gw = _weight_product(_batch_last(x, groups), g, geo, groups).reshape(W.shape)
    return _with_bias(gx, gw, g, len(rest) == 2, needs, (0, 2, 3))


# -- max and average pooling, shared by the 2-D and 1-D ops --------------------------------------
def _max_pool(x: Array, g: Grid) -> Array:
    return _windows(_pad(x, g, -np.inf), g).max(axis=(4, 5))


def _winners(x: Array, g: Grid) -> Array:
    """Each window's winning tap (u·kw + v), found tap by tap (never the kh·kw copies of the window matrix): the
    first largest in row, column order, as PyTorch picks; a NaN wins over numbers, and the first NaN over later
    ones."""
    win = _windows(_pad(x, g, -np.inf), g)
    best, winner = win[..., 0, 0].copy(), np.zeros(win.shape[:4], dtype=np.intp)
    for i in range(1, g.kernel[0] * g.kernel[1]):
        tap = win[..., i // g.kernel[1], i % g.kernel[1]]
        better = (tap > best) | (np.isnan(tap) & ~np.isnan(best))
        np.copyto(best, tap, where=better)
        winner[better] = i
    return winner


def _max_pool_grad(gout: Array, x: Array, g: Grid) -> Array:
    winner = _winners(x, g)
    gxp = np.zeros((*x.shape[:2], *g.padded), dtype=gout.dtype)
    for i, (_, _, (rows, cols)) in enumerate(_offsets(g)):  # ∂L/∂out where each winner sat, tap by tap
        gxp[:, :, rows, cols] += np.where(winner == i, gout, 0.0)
    return _crop(gxp, g)


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
    return _fold(np.broadcast_to(share[..., None, None], (*share.shape, *g.kernel)), g)


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


# -- max unpooling: each pooled value put back where its window's maximum sat ------------------------------------
def _unpool_positions(x: Array, g: Grid, out: tuple[int, int]) -> Array:
    """(N, C, windows): the flat position in each plane of x of each window's winner, as PyTorch's max-pool
    indices, checked to fall inside an output plane of `out` (PyTorch reads them as flat positions there)."""
    winner = _winners(x, g)
    (_, kw), (sh, sw), (dh, dw), (oh, ow) = g.kernel, g.stride, g.dilation, g.out
    rows = np.arange(oh)[:, None] * sh + (winner // kw) * dh - g.pads[0]
    cols = np.arange(ow)[None, :] * sw + (winner % kw) * dw - g.pads[2]
    if rows.min() < 0 or cols.min() < 0 or rows.max() >= x.shape[2] or cols.max() >= x.shape[3]:
        raise ValueError("max_unpool2d: a pooling window holds only padding, so its maximum has no position")
    flat = (rows * x.shape[3] + cols).reshape(*x.shape[:2], -1)
    if flat.max() >= out[0] * out[1]:
        raise ValueError(f"max_unpool2d: a max-pool index {int(flat.max())} lies beyond the {out[0]}×{out[1]} output")
    return flat


def _unpool_geo(x: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
                output_size: Any) -> tuple[Grid, tuple[int, int]]:
    g = grid(x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode, "max_unpool2d")
    out = output_size or x.shape[2:]
    return g, (int(out[0]), int(out[1]))


@kernel("max_unpool2d")
def max_unpool2d(y: Array, x: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool,
                 output_size: Any) -> Array:
    g, out = _unpool_geo(x, kernel_size, stride, padding, dilation, ceil_mode, output_size)
    result = np.zeros((*y.shape[:2], out[0] * out[1]), dtype=y.dtype)
    np.put_along_axis(result, _unpool_positions(x, g, out), y.reshape(*y.shape[:2], -1), axis=2)
    return result.reshape(*y.shape[:2], *out)


@max_unpool2d.gradient
def _(g: Array, y: Array, x: Array, out: Array, kernel_size: Any, stride: Any, padding: Any, dilation: Any,
      ceil_mode: bool, output_size: Any) -> tuple[Array, None]:
    geo, size = _unpool_geo(x, kernel_size, stride, padding, dilation, ceil_mode, output_size)
    taken = np.take_along_axis(g.reshape(*g.shape[:2], -1), _unpool_positions(x, geo, size), axis=2)
    return taken.reshape(y.shape), None  # x only places the values: no gradient, as PyTorch's indices have none


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


# -- im2col and col2im: the two halves of a convolution as ops of their own --------------------------------------
def _unfold_geo(x: Array, kernel_size: Any, dilation: Any, padding: Any, stride: Any) -> Grid:
    return grid(x.shape[2:], kernel_size, stride, padding, dilation)


def _as_columns(win: Array) -> Array:
    """Windows (N, C, oh, ow, kh, kw) as im2col's (N, C·kh·kw, oh·ow), contiguous."""
    n, c, oh, ow, kh, kw = win.shape
    return np.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3)).reshape(n, c * kh * kw, oh * ow)


def _as_windows(cols: Array, g: Grid) -> Array:
    """im2col's (N, C·kh·kw, oh·ow) as windows (N, C, oh, ow, kh, kw), a view."""
    (kh, kw), (oh, ow) = g.kernel, g.out
    return cols.reshape(cols.shape[0], -1, kh, kw, oh, ow).transpose(0, 1, 4, 5, 2, 3)


@kernel("im2col")
def im2col(x: Array, kernel_size: Any, dilation: Any, padding: Any, stride: Any) -> Array:
    geo = _unfold_geo(x, kernel_size, dilation, padding, stride)
    return _as_columns(_windows(_pad(x, geo), geo))


@im2col.gradient
def _(g: Array, x: Array, out: Array, kernel_size: Any, dilation: Any, padding: Any, stride: Any) -> tuple[Array]:
    geo = _unfold_geo(x, kernel_size, dilation, padding, stride)
    return (_fold(_as_windows(g, geo), geo),)


@kernel("col2im")
def col2im(x: Array, output_size: Any, kernel_size: Any, dilation: Any, padding: Any, stride: Any) -> Array:
    geo = grid(output_size, kernel_size, stride, padding, dilation)
    return _fold(_as_windows(x, geo), geo)


@col2im.gradient
def _(g: Array, x: Array, out: Array, output_size: Any, kernel_size: Any, dilation: Any, padding: Any,
      stride: Any) -> tuple[Array]:
    geo = grid(output_size, kernel_size, stride, padding, dilation)
    return (_as_columns(_windows(_pad(g, geo), geo)),)


# -- flatten -----------------------------------------------------------------------------------
@kernel("flatten")
def flatten(x: Array, start_dim: int, end_dim: int) -> Array:
    ndim = max(x.ndim, 1)
    start, end = start_dim % ndim, end_dim % ndim
    return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:])


@flatten.gradient
def _(g: Array, x: Array, out: Array, start_dim: int, end_dim: int) -> tuple[Array]:
    return (g.reshape(x.shape),)


"""3-D convolution, transposed convolution and pooling on NumPy, by im2col as the 2-D ops
(backends/numpy/conv.py): every window of the padded volume as a strided view (N, C, out_d, out_h, out_w, kd,
kh, kw), the forward one product with the filters, the backward (col2im) one vectorised addition per kernel
offset. A transposed convolution is conv3d's two halves swapped: its forward is conv3d's input gradient (a
fold), its input gradient a conv3d (an unfold). Where the windows sit (`Volume`) comes from the op's shape
rule module, graph/ops/conv3d.py.

The window matrix is kd·kh·kw times its volume (a 64³ volume of 32 channels and a 3³ kernel: 1.8 GB in
float64), so no product builds more than `IM2COL_BYTES` of it at once: the window rows go in slabs of output
positions (samples, then depth slices, then rows of one slice), the weight gradient's columns in slabs of
channels (then depth taps). Every output element is still one dot product over the same terms, and the fold
adds the slabs' windows back in the order one fold of everything would (the last depth slices first, see
`_fold_product`). Below the bound nothing changes; above it the numbers may differ from one big product's in
the last bits only, as OpenBLAS picks its kernels (and their accumulation order) by the size of a product. The
window matrices and the fold's products are built in memory the process keeps (`kernels.scratch`), not fresh.
The max pool's gradient finds each window's winner tap by tap, so it never copies the window matrix either.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...graph.ops.conv3d import Volume, adaptive_size3d, transposed_volume, volume
from .conv import _averaging  # the adaptive windows' averaging matrix of one axis, shared with the 2-D pools
from .kernels import Array, borrowed, kernel, scratch

IM2COL_BYTES = 256 * 2**20  # the most of a window matrix one product builds


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


def _fold_into(gxp: Array, gwin: Array, v: Volume, at: tuple[int, int]) -> None:
    """Add windows' values (N, C, od, oh, ow, kd, kh, kw) into `gxp` where they sat, one addition per kernel
    offset; the first window is the one at output depth slice `at[0]`, row `at[1]`."""
    k, s, d, *_ = _geometry(v)
    od, oh, ow = gwin.shape[2:5]
    for r in range(k[0]):
        for u in range(k[1]):
            for w in range(k[2]):
                z, y, x = at[0] * s[0] + r * d[0], at[1] * s[1] + u * d[1], w * d[2]
                gxp[:, :, z: z + s[0] * (od - 1) + 1: s[0], y: y + s[1] * (oh - 1) + 1: s[1],
                    x: x + s[2] * (ow - 1) + 1: s[2]] += gwin[..., r, u, w]


def _fold(gwin: Array, v: Volume) -> Array:
    """col2im: each window's gradient added back where the window sat."""
    gxp = np.zeros((*gwin.shape[:2], *_geometry(v)[4]), dtype=gwin.dtype)
    _fold_into(gxp, gwin, v, (0, 0))
    return gxp


# -- slabs: window matrices of at most IM2COL_BYTES ---------------------------------------------------------
Slab = tuple[slice, slice, slice]  # samples, output depth slices, output rows


def _position_slabs(n: int, out: tuple[int, ...], per_position: int) -> list[Slab]:
    """Blocks of output positions, in row-major order, whose windows take at most IM2COL_BYTES (`per_position`
    bytes each): whole samples where one fits, else depth slices of one sample, else rows of one depth slice
    (one row at least)."""
    od, oh, ow = out
    row = max(per_position * ow, 1)
    plane, whole = row * oh, row * oh * od
    every = slice(None)
    if whole * n <= IM2COL_BYTES:
        return [(slice(0, n), every, every)]
    if whole <= IM2COL_BYTES:
        step = IM2COL_BYTES // whole
        return [(slice(a, min(a + step, n)), every, every) for a in range(0, n, step)]
    if plane <= IM2COL_BYTES:
        step = IM2COL_BYTES // plane
        return [(slice(b, b + 1), slice(a, min(a + step, od)), every) for b in range(n) for a in range(0, od, step)]
    step = max(1, IM2COL_BYTES // row)
    return [(slice(b, b + 1), slice(t, t + 1), slice(a, min(a + step, oh)))
            for b in range(n) for t in range(od) for a in range(0, oh, step)]


def _rows(t: Array, groups: int) -> Array:
    """(N, C, d, h, w) → (G, N, d, h, w, C/G): a row per position, the layout of the window matrix's rows."""
    n, c = t.shape[:2]
    return t.reshape(n, groups, c // groups, *t.shape[2:]).transpose(1, 0, 3, 4, 5, 2)


def _grouped(win: Array, groups: int, buf: Array) -> Array:
    """Windows as (groups, N·out_d·out_h·out_w, C/groups·kd·kh·kw) rows, copied into the front of `buf` (working
    memory from `kernels.scratch`, at least the windows' bytes)."""
    n, c = win.shape[:2]
    cols = win.reshape(n, groups, c // groups, *win.shape[2:])
    cols = cols.transpose(1, 0, 3, 4, 5, 2, 6, 7, 8)  # (G, N, od, oh, ow, C/G, kd, kh, kw)
    into = borrowed(buf, cols.shape, win.dtype)
    np.copyto(into, cols)
    return into.reshape(groups, -1, (c // groups) * int(np.prod(win.shape[5:])))


def _unfold_product(xp: Array, v: Volume, groups: int, right: Array) -> Array:
    """Each window of `xp` (padded, (N, C, ...)) times `right` (G, C/G·kd·kh·kw, M): (N, G·M, out_d, out_h,
    out_w), built slab by slab."""
    k, _, _, out, *_ = _geometry(v)
    n, c = xp.shape[:2]
    win = _windows(xp, v)
    m = right.shape[2]
    y = np.empty((n, groups * m, *out), dtype=np.result_type(xp, right))
    slabs = _position_slabs(n, out, c * int(np.prod(k)) * xp.itemsize)
    with scratch(max(win[slab].nbytes for slab in _slab_parts(slabs))) as buf:
        for samples, depth, rows in slabs:
            part = win[samples, :, depth, rows]
            nb, _, dd, hh, ww = part.shape[:5]
            prod = np.matmul(_grouped(part, groups, buf), right)  # (G, positions, M)
            y[samples, :, depth, rows] = prod.reshape(groups, nb, dd, hh, ww, m).transpose(1, 0, 5, 2, 3, 4).reshape(
                nb, groups * m, dd, hh, ww)
    return y


def _slab_parts(slabs: list[Slab]) -> list[tuple[slice, slice, slice, slice]]:
    """Each slab as an index into the windows (N, C, od, oh, ow, ...): to size the working memory."""
    return [(samples, slice(None), depth, rows) for samples, depth, rows in slabs]


def _window_gradient(xp: Array, v: Volume, groups: int, rows: Array) -> Array:
    """Σ over positions of `rows` (G, positions, M) times each position's window of `xp`: (G, M, C/G·kd·kh·kw).

    The sum over positions is the product's inner dimension, so slabs split the columns (whole channels, else
    depth taps of one channel) rather than the positions."""
    k, *_ = _geometry(v)
    c = xp.shape[1]
    win = _windows(xp, v)
    cg, per_channel, taps = c // groups, int(np.prod(k)), int(np.prod(k[1:]))
    positions, item = rows.shape[1], xp.itemsize
    if groups * positions * cg * per_channel * item <= IM2COL_BYTES:
        with scratch(positions * c * per_channel * item) as buf:
            return np.matmul(rows.transpose(0, 2, 1), _grouped(win, groups, buf))
    out = np.empty((groups, rows.shape[2], cg * per_channel), dtype=np.result_type(xp, rows))
    if positions * per_channel * item <= IM2COL_BYTES:  # whole channels
        step = IM2COL_BYTES // (positions * per_channel * item)
        blocks = [(a, min(a + step, cg), slice(None)) for a in range(0, cg, step)]
    else:  # depth taps of one channel
        step = max(1, IM2COL_BYTES // (positions * taps * item))
        blocks = [(a, a + 1, slice(r, min(r + step, k[0]))) for a in range(cg) for r in range(0, k[0], step)]
    most = max((c1 - c0) * len(range(*depth.indices(k[0]))) for c0, c1, depth in blocks) * taps * positions * item
    with scratch(most) as buf:
        for g in range(groups):
            lead = rows[g].T  # (M, positions)
            for c0, c1, depth in blocks:
                part = win[:, g * cg + c0: g * cg + c1, :, :, :, depth]  # (N, channels, od, oh, ow, taps, kh, kw)
                part = part.transpose(0, 2, 3, 4, 1, 5, 6, 7)
                cols = borrowed(buf, part.shape, xp.dtype)
                np.copyto(cols, part)
                cols = cols.reshape(positions, -1)
                first = c0 * per_channel + (depth.start or 0) * taps
                out[g, :, first: first + cols.shape[1]] = np.matmul(lead, cols)
    return out


def _fold_product(rows: Array, left: Array, v: Volume, shape: tuple[int, ...]) -> Array:
    """`rows` (G, N, d, h, w, M) times `left` (G, M, C/G·kd·kh·kw) gives each window's values; col2im adds them
    back where the windows sat, into a volume of `shape` (N, C, ...).

    One fold adds a cell's terms in kernel-offset order (depth tap first). A later depth slice (or row) reaches
    a cell through an earlier tap than an earlier slice does, so the slabs are folded last first, which keeps
    that order."""
    k, _, _, out, padded, _ = _geometry(v)
    groups, n = rows.shape[:2]
    c = shape[1]
    gxp = np.zeros((n, c, *padded), dtype=np.result_type(rows, left))
    slabs = _position_slabs(n, out, c * int(np.prod(k)) * gxp.itemsize)
    most = max(rows[0, samples, depth, part, :, 0].size for samples, depth, part in slabs) * c * int(np.prod(k))
    with scratch(most * gxp.itemsize) as buf:
        for samples, depth, part in reversed(slabs):
            block = rows[:, samples, depth, part]
            nb, dd, hh, ww = block.shape[1:5]
            lead = block.reshape(groups, -1, block.shape[-1])
            gcols = borrowed(buf, (groups, lead.shape[1], left.shape[2]), gxp.dtype)  # (G, positions, C/G·kd·kh·kw)
            np.matmul(lead, left, out=gcols)
            # each group's windows as a view (N, C/G, d, h, w, kd, kh, kw) of the product: no copy of it
            gwin = gcols.reshape(groups, nb, dd, hh, ww, c // groups, *k).transpose(0, 1, 5, 2, 3, 4, 6, 7, 8)
            cg = c // groups
            for g in range(groups):
                _fold_into(gxp[samples, g * cg: (g + 1) * cg], gwin[g], v, (depth.start or 0, part.start or 0))
    return _crop(gxp, v, shape)


def _bias_grad(g: Array, rest: tuple[Array, ...], needs: tuple[bool, ...], gx: Any, gw: Any) -> tuple[Any, ...]:
    if len(rest) == 2:  # rest is (b, out) or (out,)
        return gx, gw, (g.sum(axis=(0, 2, 3, 4)) if len(needs) < 3 or needs[2] else None)
    return gx, gw


# -- convolution ------------------------------------------------------------------------------------
def _geo(x: Array, W: Array, stride: Any, padding: Any, dilation: Any) -> Volume:
    return volume(x.shape[2:], W.shape[2:], stride, padding, dilation)


@kernel("conv3d")
def conv3d(x: Array, W: Array, b: Array | None = None, *, stride: Any, padding: Any, dilation: Any,
           groups: int) -> Array:
    v = _geo(x, W, stride, padding, dilation)
    filters = W.reshape(groups, W.shape[0] // groups, -1)  # (G, O/G, C/G·kd·kh·kw)
    y = _unfold_product(_pad(x, v), v, groups, filters.transpose(0, 2, 1))
    if b is not None:
        y += b.reshape(1, -1, 1, 1, 1)
    return y


@conv3d.gradient
def _(g: Array, x: Array, W: Array, *rest: Array, stride: Any, padding: Any, dilation: Any, groups: int,
      needs: tuple[bool, ...] = (True, True, True)) -> tuple[Any, ...]:
    v = _geo(x, W, stride, padding, dilation)
    o = W.shape[0]
    rows = _rows(g, groups)  # (G, N, out_d, out_h, out_w, O/G)
    gx = gw = None
    if needs[1]:  # Σ over samples and positions of ∂L/∂out times the window: one product per group
        gw = _window_gradient(_pad(x, v), v, groups, rows.reshape(groups, -1, o // groups)).reshape(W.shape)
    if needs[0]:  # each window's gradient (filtersᵀ · ∂L/∂out), then added back where the window sat
        gx = _fold_product(rows, W.reshape(groups, o // groups, -1), v, x.shape)
    return _bias_grad(g, rest, needs, gx, gw)


# -- transposed convolution: conv3d's input gradient as a forward -------------------------------------------
def _tgeo(x: Array, W: Array, stride: Any, padding: Any, output_padding: Any, dilation: Any) -> Volume:
    return transposed_volume(x.shape[2:], W.shape[2:], stride, padding, output_padding, dilation)


@kernel("conv_transpose3d")
def conv_transpose3d(x: Array, W: Array, b: Array | None = None, *, stride: Any, padding: Any,
                     output_padding: Any, dilation: Any, groups: int) -> Array:
    v = _tgeo(x, W, stride, padding, output_padding, dilation)
    c_out = W.shape[1] * groups
    filters = W.reshape(groups, W.shape[0] // groups, -1)  # (G, C_in/G, C_out/G·kd·kh·kw)
    y = _fold_product(_rows(x, groups), filters, v, (x.shape[0], c_out, v.size, *v.plane.size))
    if b is not None:
        y += b.reshape(1, c_out, 1, 1, 1)  # `y` is a fresh array: the fold made it
    return y


@conv_transpose3d.gradient
def _(g: Array, x: Array, W: Array, *rest: Array, stride: Any, padding: Any, output_padding: Any, dilation: Any,
      groups: int, needs: tuple[bool, ...] = (True, True, True)) -> tuple[Any, ...]:
    v = _tgeo(x, W, stride, padding, output_padding, dilation)
    c_in = x.shape[1]
    gp = _pad(g, v)  # ∂L/∂out in the padding the transposed convolution cropped
    gx = gw = None
    if needs[0]:  # conv3d(∂L/∂out, W)
        gx = _unfold_product(gp, v, groups, W.reshape(groups, c_in // groups, -1).transpose(0, 2, 1))
    if needs[1]:  # Σ over positions of x times the window of ∂L/∂out it stamped
        gw = _window_gradient(gp, v, groups, _rows(x, groups).reshape(groups, -1, c_in // groups)).reshape(W.shape)
    return _bias_grad(g, rest, needs, gx, gw)


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
    k, s, d, *_ = _geometry(v)
    taps = [(r, u, w) for r in range(k[0]) for u in range(k[1]) for w in range(k[2])]
    # each window's winner, tap by tap (never the kd·kh·kw copies of the window matrix): the first largest in
    # depth, row, column order, as PyTorch picks; a NaN wins over numbers, and the first NaN over later ones
    best, winner = win[..., 0, 0, 0].copy(), np.zeros(win.shape[:5], dtype=np.intp)
    for i, (r, u, w) in enumerate(taps[1:], start=1):
        tap = win[..., r, u, w]
        better = (tap > best) | (np.isnan(tap) & ~np.isnan(best))
        np.copyto(best, tap, where=better)
        winner[better] = i
    gxp = np.zeros((*x.shape[:2], *_geometry(v)[4]), dtype=g.dtype)
    od, oh, ow = win.shape[2:5]
    for i, (r, u, w) in enumerate(taps):  # each window's ∂L/∂out added where its winner sat, tap by tap
        z, y, c = r * d[0], u * d[1], w * d[2]
        gxp[:, :, z: z + s[0] * (od - 1) + 1: s[0], y: y + s[1] * (oh - 1) + 1: s[1],
            c: c + s[2] * (ow - 1) + 1: s[2]] += np.where(winner == i, g, 0.0)
    return (_crop(gxp, v, x.shape),)


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

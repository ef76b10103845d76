"""Arithmetic, matrix products, reductions and shape ops on NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np

from .kernels import Array, kernel, unbroadcast


@kernel("add")
def add(a: Array, b: Array) -> Array:
    return a + b


@add.local
def _(a: Array, b: Array, out: Array) -> tuple[Array, Array]:
    one = np.ones_like(out)
    return one, one


@kernel("sub")
def sub(a: Array, b: Array) -> Array:
    return a - b


@sub.local
def _(a: Array, b: Array, out: Array) -> tuple[Array, Array]:
    return np.ones_like(out), -np.ones_like(out)


@kernel("mul")
def mul(a: Array, b: Array) -> Array:
    return a * b


@mul.local
def _(a: Array, b: Array, out: Array) -> tuple[Array, Array]:
    return np.broadcast_to(b, out.shape), np.broadcast_to(a, out.shape)


@kernel("div")
def div(a: Array, b: Array) -> Array:
    return a / b


@div.local
def _(a: Array, b: Array, out: Array) -> tuple[Array, Array]:
    inv = 1.0 / b
    return np.broadcast_to(inv, out.shape), -out * inv


@kernel("neg")
def neg(a: Array) -> Array:
    return -a


@neg.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (-np.ones_like(a),)


@kernel("pow")
def pow_(a: Array, exponent: float) -> Array:
    return a**exponent


@pow_.local
def _(a: Array, out: Array, exponent: float) -> tuple[Array]:
    if exponent == 0:  # torch's pow_backward: zeros, even at a = 0 where 0 · a^(−1) would be NaN
        return (np.zeros_like(out),)
    return (exponent * a ** (exponent - 1),)


@pow_.keeps
def _(a: Array, out: Array, exponent: float) -> tuple[Array | None]:
    # zeros for exponent 0 whatever the upstream; otherwise upstream · (e · a^(e−1)), a product even where it is 0
    return (np.zeros(np.shape(out), dtype=bool) if exponent == 0 else None,)


@kernel("exp")
def exp(z: Array) -> Array:
    return np.exp(z)


@exp.local
def _(z: Array, out: Array) -> tuple[Array]:
    return (out,)


@kernel("log")
def log(z: Array) -> Array:
    return np.log(z)


@log.local
def _(z: Array, out: Array) -> tuple[Array]:
    return (1.0 / z,)


def _matmul_grads(g: Array, a: Array, b: Array, need_a: bool = True, need_b: bool = True) -> tuple[Any, Any]:
    """Gradients of a @ b, with NumPy's rules for 1-D operands and broadcast batch axes."""
    if a.ndim == 2 and b.ndim == 2:  # the common case, kept lean for the training loop
        # dot: leaner than @ on small arrays; but an outer product (one row: a batch of 1) np.dot computes without
        # BLAS and holding the GIL (VGG's first Linear's weight gradient: 0.2-1.9 s, the app's window frozen while
        # a worker thread computed it), where @ takes BLAS's path and lets go of the GIL
        gb = (a.T @ g if a.shape[0] == 1 else np.dot(a.T, g)) if need_b else None
        return (np.dot(g, b.T) if need_a else None), gb
    if a.ndim == 1 and b.ndim == 1:
        return g * b, g * a
    if b.ndim == 2 and a.ndim > 2:  # a weight shared by every leading position (a Linear on (B, T, C), (L, N, E))
        # one product over all positions at once: per leading index, then summed, made a (…, K, M) temporary
        # (torchvision ViT's (197, 1, 768) attention input: 197 × 768 × 2304 values, 1.4 GB in float32, for a
        # (768, 2304) gradient)
        ga = (g.reshape(-1, g.shape[-1]) @ b.T).reshape(a.shape) if need_a else None
        gb = a.reshape(-1, a.shape[-1]).T @ g.reshape(-1, g.shape[-1]) if need_b else None
        return ga, gb
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    if b.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    ga = unbroadcast(g2 @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape) if need_a else None
    gb = unbroadcast(np.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape) if need_b else None
    return ga, gb


@kernel("matmul")
def matmul(a: Array, b: Array) -> Array:
    return a @ b


@matmul.gradient
def _(g: Array, a: Array, b: Array, out: Array, needs: tuple[bool, ...] = (True, True)) -> tuple[Any, Any]:
    return _matmul_grads(g, a, b, needs[0], needs[1])


def _row_groups(offs: Array, rows: int) -> list[tuple[int, int, int]]:
    """(group, first row, row past the last) of each group with rows; offs are cumulative counts, as torch takes
    them (rows past the last offset belong to no group)."""
    ends = np.asarray(offs).reshape(-1)
    ends = ends.astype(np.int64) if ends.dtype.kind in "iu" else np.rint(ends).astype(np.int64)
    if ends.size and (ends[0] < 0 or np.any(np.diff(ends) < 0) or ends[-1] > rows):
        raise ValueError(f"grouped_mm: the offsets must rise from 0 to at most the {rows} rows, got "
                         f"{ends.tolist()[:8]}{'...' if ends.size > 8 else ''}")
    starts = np.concatenate(([0], ends[:-1]))
    return [(g, int(a), int(b)) for g, (a, b) in enumerate(zip(starts, ends, strict=True)) if b > a]


@kernel("grouped_mm")
def grouped_mm(x: Array, W: Array, offs: Array) -> Array:
    out = np.zeros((x.shape[0], W.shape[2]), dtype=np.result_type(x, W))
    for g, a, b in _row_groups(offs, x.shape[0]):
        out[a:b] = np.dot(x[a:b], W[g])
    return out


@grouped_mm.gradient
def _(g: Array, x: Array, W: Array, offs: Array, out: Array,
      needs: tuple[bool, ...] = (True, True, False)) -> tuple[Any, Any, None]:
    gx = np.zeros_like(x, dtype=g.dtype) if needs[0] else None
    gw = np.zeros_like(W, dtype=g.dtype) if needs[1] else None
    for k, a, b in _row_groups(offs, x.shape[0]):
        if gx is not None:
            gx[a:b] = np.dot(g[a:b], W[k].T)
        if gw is not None:
            gw[k] = np.dot(x[a:b].T, g[a:b])
    return gx, gw, None


@kernel("linear")
def linear(x: Array, W: Array, b: Array, transpose_weight: bool) -> Array:
    w = W.T if transpose_weight else W
    if x.ndim > 2:  # one product over every leading position: @ makes one per leading index ((L, 1, E): 2.5× slower)
        return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1]) + b
    return (np.dot(x, w) if x.ndim == 2 else x @ w) + b  # np.dot has less overhead than @ on small 2-D arrays


@linear.gradient
def _(
    g: Array, x: Array, W: Array, b: Array, out: Array, transpose_weight: bool,
    needs: tuple[bool, ...] = (True, True, True),
) -> tuple[Any, Any, Any]:
    gx, gw = _matmul_grads(g, x, W.T if transpose_weight else W, needs[0], needs[1])
    return gx, (gw.T if transpose_weight and gw is not None else gw), (unbroadcast(g, b.shape) if needs[2] else None)


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted({a % ndim for a in ((axis,) if isinstance(axis, int) else axis)}))


@kernel("sum")
def sum_(x: Array, axis: Any, keepdims: bool) -> Array:
    return np.asarray(np.sum(x, axis=None if axis is None else tuple(_axes(axis, x.ndim)), keepdims=keepdims))


@sum_.gradient
def _(g: Array, x: Array, out: Array, axis: Any, keepdims: bool) -> tuple[Array]:
    if not keepdims:
        g = np.expand_dims(g, _axes(axis, x.ndim))
    return (np.broadcast_to(g, x.shape).copy(),)


@kernel("mean")
def mean(x: Array, axis: Any, keepdims: bool) -> Array:
    return np.asarray(np.mean(x, axis=None if axis is None else tuple(_axes(axis, x.ndim)), keepdims=keepdims))


@mean.gradient
def _(g: Array, x: Array, out: Array, axis: Any, keepdims: bool) -> tuple[Array]:
    axes = _axes(axis, x.ndim)
    n = int(np.prod([x.shape[a] for a in axes]))
    if not keepdims:
        g = np.expand_dims(g, axes)
    return (np.broadcast_to(g / n, x.shape).copy(),)


@kernel("reshape")
def reshape(x: Array, shape: Any) -> Array:
    return x.reshape(tuple(shape))


@reshape.gradient
def _(g: Array, x: Array, out: Array, shape: Any) -> tuple[Array]:
    return (g.reshape(x.shape),)


@kernel("transpose")
def transpose(x: Array, axes: Any) -> Array:
    return np.transpose(x, None if axes is None else tuple(axes))


@transpose.gradient
def _(g: Array, x: Array, out: Array, axes: Any) -> tuple[Array]:
    return (np.transpose(g, None if axes is None else tuple(np.argsort([a % x.ndim for a in axes]))),)

"""Reductions, cumulative sums and products, and arg-extremes on NumPy, each gradient written by hand beside its
forward."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph.ops.reduce import stable_order, torch_tie_order
from .core import _axes  # the reduced axes, sorted and non-negative (() reduces nothing), as sum and mean
from .distance import p_norm, p_norm_partial
from .kernels import Array, kernel


def _count(x: Array, axes: tuple[int, ...]) -> int:
    return int(np.prod([x.shape[a] for a in axes]))


def _kept(value: Array, axes: tuple[int, ...], keepdims: bool) -> Array:
    """A reduced value (or its gradient) with the reduced axes back as length 1: it broadcasts against x."""
    return value if keepdims else np.expand_dims(value, axes)


# -- vector norm ---------------------------------------------------------------------------------
@kernel("vector_norm")
def vector_norm(x: Array, axis: Any, keepdims: bool, ord: float) -> Array:
    axes = _axes(axis, x.ndim)
    moved = np.moveaxis(x, axes, range(x.ndim - len(axes), x.ndim)).reshape(
        *(n for i, n in enumerate(x.shape) if i not in axes), -1)  # the reduced axes as one, last
    out = p_norm(moved, ord)
    return np.expand_dims(out, axes) if keepdims else out


@vector_norm.gradient
def _(g: Array, x: Array, out: Array, axis: Any, keepdims: bool, ord: float) -> tuple[Array]:
    axes = _axes(axis, x.ndim)
    norm, upstream = _kept(out, axes, keepdims), _kept(g, axes, keepdims)
    if np.isinf(ord):  # torch: the largest |x| share the upstream evenly (as amax), with x's sign
        hit = (np.abs(x) == norm) | np.isnan(x)
        return ((np.sign(x) * hit * upstream / hit.sum(axis=axes, keepdims=True)).astype(x.dtype, copy=False),)
    return ((p_norm_partial(x, norm, ord) * upstream).astype(x.dtype, copy=False),)


# -- extremes ------------------------------------------------------------------------------------
def _extreme_gradient(g: Array, x: Array, out: Array, axis: Any, keepdims: bool) -> tuple[Array]:
    """Tied extremes share the gradient evenly, as torch.amax/amin: 1[x = out] / count, times upstream."""
    axes = _axes(axis, x.ndim)
    hit = x == _kept(out, axes, keepdims)
    count = hit.sum(axis=axes, keepdims=True).astype(x.dtype)
    return ((_kept(g, axes, keepdims) * hit / count).astype(x.dtype, copy=False),)


@kernel("amax")
def amax(x: Array, axis: Any, keepdims: bool) -> Array:
    return np.asarray(np.amax(x, axis=_axes(axis, x.ndim), keepdims=keepdims))


amax.gradient(_extreme_gradient)


@kernel("amin")
def amin(x: Array, axis: Any, keepdims: bool) -> Array:
    return np.asarray(np.amin(x, axis=_axes(axis, x.ndim), keepdims=keepdims))


amin.gradient(_extreme_gradient)


# -- product -------------------------------------------------------------------------------------
@kernel("prod")
def prod(x: Array, axis: Any, keepdims: bool) -> Array:
    return np.asarray(np.prod(x, axis=_axes(axis, x.ndim), keepdims=keepdims))


@prod.gradient
def _(g: Array, x: Array, out: Array, axis: Any, keepdims: bool) -> tuple[Array]:
    # ∂out/∂x_i is the product of the others. out / x_i is that only where x_i ≠ 0, so take it from running
    # products instead: (x_1 ⋯ x_(i−1)) · (x_(i+1) ⋯ x_n), exact with any number of zeros.
    axes = _axes(axis, x.ndim)
    kept = tuple(a for a in range(x.ndim) if a not in axes)
    moved = np.transpose(x, kept + axes)  # the reduced axes last, flattened into one row per output value
    rows = moved.reshape(*moved.shape[: len(kept)], _count(x, axes))
    one = np.ones_like(rows[..., :1])
    before = np.cumprod(np.concatenate([one, rows[..., :-1]], axis=-1), axis=-1)
    after = np.cumprod(np.concatenate([one, rows[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = np.transpose((before * after).reshape(moved.shape), np.argsort(kept + axes))
    return (_kept(g, axes, keepdims) * others,)


# -- spread --------------------------------------------------------------------------------------
def _centred(x: Array, axes: tuple[int, ...]) -> Array:
    return x - np.mean(x, axis=axes, keepdims=True)


def _spread_mean(x: Array, axes: tuple[int, ...]) -> Array:
    """The mean var and std centre on, in float64, as torch's CPU kernels take it: where the whole tensor gives
    one value (std_var_all_cpu), the mean in x's own dtype; otherwise Welford's running mean in double, exact
    where the values are equal (a constant channel's spread is exactly 0, so x / std is ∞ there as in torch).
    A second pass over the deviations makes a float64 mean as exact: for equal values c, the first mean is c
    off by a few ulps, which the deviations hold exactly."""
    if x.size == 0 or _count(x, axes) == x.size:
        return np.mean(x, axis=axes, keepdims=True).astype(np.float64)
    wide = x.astype(np.float64, copy=False)
    mean = np.mean(wide, axis=axes, keepdims=True)
    return mean + np.mean(wide - mean, axis=axes, keepdims=True)


@kernel("var")
def var(x: Array, axis: Any, keepdims: bool, correction: float) -> Array:
    axes = _axes(axis, x.ndim)
    d = x.astype(np.float64, copy=False) - _spread_mean(x, axes)  # accumulated in double, rounded once
    # torch divides by max(0, n − c): more correction than values gives inf (or NaN for 0/0), not a sign flip
    spread = np.sum(d * d, axis=axes, keepdims=keepdims) / max(_count(x, axes) - correction, 0.0)
    return np.asarray(spread).astype(x.dtype, copy=False)


@var.gradient
def _(g: Array, x: Array, out: Array, axis: Any, keepdims: bool, correction: float) -> tuple[Array]:
    axes = _axes(axis, x.ndim)
    return (_kept(g, axes, keepdims) * _centred(x, axes) * (2.0 / (_count(x, axes) - correction)),)


@kernel("std")
def std(x: Array, axis: Any, keepdims: bool, correction: float) -> Array:
    axes = _axes(axis, x.ndim)
    d = x.astype(np.float64, copy=False) - _spread_mean(x, axes)
    spread = np.sum(d * d, axis=axes, keepdims=keepdims) / max(_count(x, axes) - correction, 0.0)
    return np.asarray(np.sqrt(spread)).astype(x.dtype, copy=False)  # the root in double too, as torch's


@std.gradient
def _(g: Array, x: Array, out: Array, axis: Any, keepdims: bool, correction: float) -> tuple[Array]:
    # ∂√v/∂v = 1 / (2√v): where the spread is 0 torch gives 0, not 0/0, and so does this
    axes = _axes(axis, x.ndim)
    s = _kept(out, axes, keepdims)
    per_unit = np.where(s == 0, 0.0, _kept(g, axes, keepdims) / np.where(s == 0, 1.0, s)).astype(x.dtype, copy=False)
    return (per_unit * _centred(x, axes) * (1.0 / (_count(x, axes) - correction)),)


@kernel("logsumexp")
def logsumexp(x: Array, axis: Any, keepdims: bool) -> Array:
    axes = _axes(axis, x.ndim)
    top = np.amax(x, axis=axes, keepdims=True, initial=-np.inf)
    top = np.where(np.isinf(top), 0.0, top).astype(x.dtype, copy=False)  # all −inf (or an inf): nothing to take out
    out = np.log(np.sum(np.exp(x - top), axis=axes, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axes)


@logsumexp.gradient
def _(g: Array, x: Array, out: Array, axis: Any, keepdims: bool) -> tuple[Array]:
    axes = _axes(axis, x.ndim)
    return (_kept(g, axes, keepdims) * np.exp(x - _kept(out, axes, keepdims)),)


# -- running sums ----------------------------------------------------------------------------------
def _cumsum(x: Array, axis: int, reverse: bool, exclusive: bool) -> Array:
    if reverse:
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis)
    if exclusive and out.shape[axis]:  # shift by one: out_i holds the sum before x_i (an empty axis stays empty)
        out = np.concatenate([np.zeros_like(np.take(out, [0], axis=axis)), np.delete(out, -1, axis=axis)], axis=axis)
    return np.ascontiguousarray(np.flip(out, axis)) if reverse else out


@kernel("cumsum")
def cumsum(x: Array, axis: int, reverse: bool, exclusive: bool) -> Array:
    return _cumsum(x, axis, reverse, exclusive)


@cumsum.gradient
def _(g: Array, x: Array, out: Array, axis: int, reverse: bool, exclusive: bool) -> tuple[Array]:
    # out = C·x with C triangular (ones below the diagonal, on it unless exclusive): the VJP is Cᵀ·g, the same
    # running sum taken from the other end
    return (_cumsum(g, axis, not reverse, exclusive),)


# -- running extremes ------------------------------------------------------------------------------
def _running_extreme(x: Array, axis: int, largest: bool) -> tuple[Array, Array]:
    """The running largest (smallest) value along `axis` and the position it comes from: the last position whose
    value ties the running extreme, or the last NaN (a NaN stays the extreme once met), as torch.cummax picks."""
    out = (np.maximum if largest else np.minimum).accumulate(x, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    steps = np.arange(x.shape[axis]).reshape(shape)
    holds = (x == out) | np.isnan(x)  # where x_i is the running extreme (a new one, or a tie with it)
    return out, np.maximum.accumulate(np.where(holds, steps, 0), axis=axis)


@kernel("cummax")
def cummax(x: Array, axis: int) -> Array:
    return _running_extreme(x, axis, True)[0]


@kernel("cummin")
def cummin(x: Array, axis: int) -> Array:
    return _running_extreme(x, axis, False)[0]


def _to_sources(g: Array, x: Array, axis: int, largest: bool) -> Array:
    """Each ∂L/∂out_i added at the position of x its value is."""
    _, source = _running_extreme(x, axis, largest)
    moved_g, moved_s = np.moveaxis(g, axis, -1), np.moveaxis(source, axis, -1)
    flat = np.zeros_like(moved_g).reshape(-1, moved_g.shape[-1])
    rows = np.repeat(np.arange(flat.shape[0]), moved_g.shape[-1])
    np.add.at(flat, (rows, moved_s.reshape(-1)), moved_g.reshape(-1))
    return np.moveaxis(flat.reshape(moved_g.shape), -1, axis)


@cummax.gradient
def _(g: Array, x: Array, out: Array, axis: int) -> tuple[Array]:
    return (_to_sources(g, x, axis, True),)


@cummin.gradient
def _(g: Array, x: Array, out: Array, axis: int) -> tuple[Array]:
    return (_to_sources(g, x, axis, False),)


# -- running products ------------------------------------------------------------------------------
def _shifted(x: Array, axis: int, reverse: bool, exclusive: bool) -> Array:
    """The values whose inclusive running product along `axis` (from the start) is the op's, flipped where
    reverse: exclusive puts a 1 first and drops the last value (out_i = Π_(j < i) x_j)."""
    if reverse:
        x = np.flip(x, axis)
    if exclusive and x.shape[axis]:
        x = np.concatenate([np.ones_like(np.take(x, [0], axis=axis)), np.delete(x, -1, axis=axis)], axis=axis)
    return x


@kernel("cumprod")
def cumprod(x: Array, axis: int, reverse: bool, exclusive: bool) -> Array:
    out = np.cumprod(_shifted(x, axis, reverse, exclusive), axis=axis)
    return np.ascontiguousarray(np.flip(out, axis)) if reverse else out


def _cumprod_vjp(g: Array, x: Array) -> Array:
    """The VJP of the inclusive running product along the last axis, exact with zeros among the x.

    Before a row's first zero z, ∂L/∂x_j = Σ_(i ≥ j) g_i · out_i / x_j (later products are 0 and add nothing);
    at z it is (x_0 ⋯ x_(z−1)) · Σ_(i ≥ z) g_i · (x_(z+1) ⋯ x_i), the products with x_z left out; after z, 0:
    every product that holds such an x_j holds x_z = 0 too."""
    n = x.shape[-1]
    out = np.cumprod(x, axis=-1)
    zero = x == 0
    first = np.where(zero.any(axis=-1), zero.argmax(axis=-1), n)[..., None]  # n where a row has no zero
    position = np.arange(n)
    before = position < first
    later = np.flip(np.cumsum(np.flip(g * out, -1), axis=-1), -1)  # Σ_(i ≥ j) g_i · out_i
    grad = np.where(before, later / np.where(before, x, 1.0), 0.0)
    if np.any(first < n):
        prefix = np.prod(np.where(before, x, 1.0), axis=-1, keepdims=True)
        rest = np.cumprod(np.where(position > first, x, 1.0), axis=-1)  # x_(z+1) ⋯ x_i, for i ≥ z
        at_zero = prefix * np.sum(np.where(position >= first, g * rest, 0.0), axis=-1, keepdims=True)
        grad = np.where(position == first, at_zero, grad)
    return grad.astype(x.dtype, copy=False)


@cumprod.gradient
def _(g: Array, x: Array, out: Array, axis: int, reverse: bool, exclusive: bool) -> tuple[Array]:
    if not x.size:
        return (np.zeros_like(x),)
    values = np.moveaxis(_shifted(x, axis, reverse, exclusive), axis, -1)
    upstream = np.moveaxis(np.flip(g, axis) if reverse else g, axis, -1)
    grad = _cumprod_vjp(upstream, values)
    if exclusive:  # value k of the shifted row is x_(k−1): its gradient is x's, and the last x is in no product
        grad = np.concatenate([grad[..., 1:], np.zeros_like(grad[..., :1])], axis=-1)
    grad = np.moveaxis(grad, -1, axis)
    return (np.ascontiguousarray(np.flip(grad, axis)) if reverse else grad,)


# -- arg-extremes ------------------------------------------------------------------------------------
def _arg(find: Any, x: Array, axis: int | None, keepdims: bool, select_last_index: bool) -> Array:
    if not select_last_index:
        return np.asarray(find(x, axis=axis, keepdims=keepdims))
    # the last of tied values: search the flipped input, then count back from the end
    flipped = np.flip(x) if axis is None else np.flip(x, axis)
    n = x.size if axis is None else x.shape[axis]
    return np.asarray(n - 1 - find(flipped, axis=axis, keepdims=keepdims))


def _no_gradient(g: Array, x: Array, out: Array, **attrs: Any) -> tuple[None]:
    return (None,)  # an index has no derivative


@kernel("argmax")
def argmax(x: Array, axis: int | None, keepdims: bool, select_last_index: bool) -> Array:
    return _arg(np.argmax, x, axis, keepdims, select_last_index)


argmax.gradient(_no_gradient)


@kernel("argmin")
def argmin(x: Array, axis: int | None, keepdims: bool, select_last_index: bool) -> Array:
    return _arg(np.argmin, x, axis, keepdims, select_last_index)


argmin.gradient(_no_gradient)


@kernel("histc")
def histc(x: Array, bins: int, min: float, max: float) -> Array:
    """torch.histc's CPU kernel, to the last count: the bin of v is trunc((v − min)·bins / (max − min)) in x's own
    dtype (no search of the bin edges, so a value a rounding away from an edge falls where torch puts it), max in
    the last bin; entries outside [min, max] and NaN are not counted."""
    low, high = float(min), float(max)
    if low == high and x.size:
        low, high = float(np.min(x)), float(np.max(x))  # NaN here: refused below, as torch refuses it
    if low == high:
        low, high = low - 1.0, high + 1.0
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"histc: the range [{low}, {high}] is not finite")
    dtype = x.dtype.type if x.dtype.kind == "f" else np.float64
    left, right = dtype(low), dtype(high)
    v = np.asarray(x, dtype=dtype).reshape(-1)
    v = v[(v >= left) & (v <= right)]
    with np.errstate(invalid="ignore", over="ignore"):
        pos = np.trunc((v - left) * dtype(bins) / (right - left)).astype(np.int64)
    counts = np.bincount(np.minimum(pos, bins - 1), minlength=bins)
    return counts.astype(dtype)


histc.gradient(_no_gradient)


@kernel("argsort")
def argsort(x: Array, axis: int, descending: bool, k: int | None, ties: str = "stable") -> Array:
    # stable: equal values keep their order whichever way the sort runs (torch.sort(stable=True), ONNX TopK)
    order = stable_order(x, axis, descending)
    if ties != "stable":  # torch's CPU kernels order ties as libstdc++'s unstable algorithms leave them
        order = torch_tie_order(x, order, axis, descending, k, ties)
    return order if k is None else np.take(order, np.arange(k), axis=axis)


argsort.gradient(_no_gradient)

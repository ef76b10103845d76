"""Normalisation, embedding, dropout, concat and indexing on NumPy, each VJP beside its forward.

Ids and index tensors may arrive as floats (a session casts its data to its dtype, and a gradient
check casts everything to float64): they are rounded to integers here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph.ops.nn import normalized_shape, slices
from .kernels import Array, kernel


def as_ids(ids: Array) -> Array:
    """Integer ids from an int or float array (float ids are whole numbers written as floats)."""
    ids = np.asarray(ids)
    return ids if ids.dtype.kind in "iu" else np.rint(ids).astype(np.intp)


# -- normalisation ------------------------------------------------------------------------------
def _channel_axes(x: Array) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The axes batch_norm averages over (all but channels) and the shape a per-channel vector broadcasts as."""
    return (0, *range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _normalise(x: Array, axes: tuple[int, ...], eps: float) -> tuple[Array, Array]:
    """x̂ and 1/√(σ² + ε) with the biased variance, as both PyTorch norms use to normalise."""
    mu = x.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return (x - mu) * inv, inv


def _normalise_back(gxhat: Array, xhat: Array, inv: Array, axes: tuple[int, ...]) -> Array:
    """∂L/∂x through x̂ = (x − μ)/σ, where μ and σ depend on x too (the two mean terms)."""
    return inv * (gxhat - gxhat.mean(axis=axes, keepdims=True) - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True))


@kernel("batch_norm")
def batch_norm(x: Array, w: Array, b: Array, running_mean: Array, running_var: Array, training: bool,
               momentum: float, eps: float) -> Array:
    axes, shape = _channel_axes(x)
    if training:
        xhat, _ = _normalise(x, axes, eps)
    else:
        xhat = (x - running_mean.reshape(shape)) / np.sqrt(running_var.reshape(shape) + eps)
    return xhat * w.reshape(shape) + b.reshape(shape)


@batch_norm.gradient
def _(g: Array, x: Array, w: Array, b: Array, running_mean: Array, running_var: Array, out: Array,
      training: bool, momentum: float, eps: float) -> tuple[Any, ...]:
    axes, shape = _channel_axes(x)
    if training:
        xhat, inv = _normalise(x, axes, eps)
        gx = _normalise_back(g * w.reshape(shape), xhat, inv, axes)
    else:
        inv = 1.0 / np.sqrt(running_var.reshape(shape) + eps)
        xhat = (x - running_mean.reshape(shape)) * inv
        gx = g * w.reshape(shape) * inv
    return gx, (g * xhat).sum(axis=axes), g.sum(axis=axes), None, None


def batch_norm_running_stats(x: Array, running_mean: Array, running_var: Array,
                             momentum: float = 0.1) -> tuple[Array, Array]:
    """The running statistics after one training batch, as PyTorch updates them (unbiased variance).

    The op itself does not update them: a step is a pure function of its inputs, so stepping back
    and forth stays exact. A trainer that wants eval mode to use fresh statistics calls this.
    """
    axes, _ = _channel_axes(x)
    n = x.size // x.shape[1]
    var = x.var(axis=axes) * (n / max(n - 1, 1))
    return (1 - momentum) * running_mean + momentum * x.mean(axis=axes), (1 - momentum) * running_var + momentum * var


@kernel("layer_norm")
def layer_norm(x: Array, w: Array, b: Array, normalized_shape: Any, eps: float) -> Array:
    axes = tuple(range(x.ndim - len(_norm_shape(x, w, normalized_shape)), x.ndim))
    xhat, _ = _normalise(x, axes, eps)
    return xhat * w + b


def _norm_shape(x: Array, w: Array, attr: Any) -> tuple[int, ...]:
    return normalized_shape(x.shape, {"normalized_shape": attr}, w.shape)


@layer_norm.gradient
def _(g: Array, x: Array, w: Array, b: Array, out: Array, normalized_shape: Any, eps: float) -> tuple[Any, ...]:
    k = len(_norm_shape(x, w, normalized_shape))
    axes = tuple(range(x.ndim - k, x.ndim))
    xhat, inv = _normalise(x, axes, eps)
    lead = tuple(range(x.ndim - k))
    return _normalise_back(g * w, xhat, inv, axes), (g * xhat).sum(axis=lead), g.sum(axis=lead)


# -- embedding, dropout --------------------------------------------------------------------------
@kernel("embedding")
def embedding(ids: Array, table: Array) -> Array:
    return table[as_ids(ids)]


@embedding.gradient
def _(g: Array, ids: Array, table: Array, out: Array) -> tuple[None, Array]:
    grad = np.zeros_like(table)
    np.add.at(grad, as_ids(ids).reshape(-1), g.reshape(-1, table.shape[1]))  # a repeated token adds up
    return None, grad


def dropout_mask(shape: tuple[int, ...], p: float, seed: int) -> Array:
    """Which elements survive: the same seed gives the same mask on every backend and every step."""
    return np.random.default_rng(seed).random(shape) >= p


def _dropout_scale(x: Array, p: float, training: bool, seed: int) -> Array:
    if not training or p == 0:
        return np.ones_like(x)
    if p >= 1:
        return np.zeros_like(x)
    return dropout_mask(x.shape, p, seed).astype(x.dtype) / x.dtype.type(1.0 - p)


@kernel("dropout")
def dropout(x: Array, p: float, training: bool, seed: int) -> Array:
    return x * _dropout_scale(x, p, training, seed)


@dropout.local
def _(x: Array, out: Array, p: float, training: bool, seed: int) -> tuple[Array]:
    return (_dropout_scale(x, p, training, seed),)


# -- joining and picking ------------------------------------------------------------------------
@kernel("concat")
def concat(*xs: Array, axis: int) -> Array:
    return np.concatenate(xs, axis=axis)


@concat.gradient
def _(g: Array, *inputs_and_out: Array, axis: int) -> tuple[Array, ...]:
    xs = inputs_and_out[:-1]
    cuts = np.cumsum([x.shape[axis] for x in xs])[:-1]
    return tuple(np.split(g, cuts, axis=axis))


@kernel("slice")
def slice_(x: Array, axes: Any, starts: Any, stops: Any, steps: Any) -> Array:
    return x[slices(x.shape, {"axes": axes, "starts": starts, "stops": stops, "steps": steps})].copy()


@slice_.gradient
def _(g: Array, x: Array, out: Array, axes: Any, starts: Any, stops: Any, steps: Any) -> tuple[Array]:
    grad = np.zeros_like(x)
    grad[slices(x.shape, {"axes": axes, "starts": starts, "stops": stops, "steps": steps})] = g
    return (grad,)


@kernel("select")
def select(x: Array, axis: int, index: int) -> Array:
    return np.take(x, index, axis=axis)


@select.gradient
def _(g: Array, x: Array, out: Array, axis: int, index: int) -> tuple[Array]:
    grad = np.zeros_like(x)
    np.moveaxis(grad, axis, 0)[index] = g
    return (grad,)


@kernel("index")
def index(x: Array, idx: Array, axis: int) -> Array:
    return np.take(x, as_ids(idx), axis=axis)


@index.gradient
def _(g: Array, x: Array, idx: Array, out: Array, axis: int) -> tuple[Array, None]:
    ids = as_ids(idx)
    axis %= x.ndim
    grad = np.zeros_like(x)
    # bring idx's axes to the front of g, and `axis` to the front of grad, so add.at sees rows
    g_rows = np.moveaxis(g, tuple(range(axis, axis + ids.ndim)), tuple(range(ids.ndim)))
    np.add.at(np.moveaxis(grad, axis, 0), ids, g_rows)
    return grad, None

"""Embedding, dropout, concat and indexing on NumPy, each VJP beside its forward.

Ids and index tensors may arrive as floats (a session casts its data to its dtype, and a gradient
check casts everything to float64): they are rounded to integers here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph.ops.nn import slices
from .kernels import Array, kernel


def as_ids(ids: Array) -> Array:
    """Integer ids from an int or float array (float ids are whole numbers written as floats)."""
    ids = np.asarray(ids)
    return ids if ids.dtype.kind in "iu" else np.rint(ids).astype(np.intp)


# -- embedding, dropout --------------------------------------------------------------------------
@kernel("embedding")
def embedding(ids: Array, table: Array, padding_idx: int | None = None) -> Array:
    return table[as_ids(ids)]


@embedding.gradient
def _(g: Array, ids: Array, table: Array, out: Array, padding_idx: int | None = None) -> tuple[None, Array]:
    grad = np.zeros_like(table)
    np.add.at(grad, as_ids(ids).reshape(-1), g.reshape(-1, table.shape[1]))  # a repeated token adds up
    if padding_idx is not None:
        grad[padding_idx] = 0.0  # the padding row is a fixed vector: nn.Embedding never updates it
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

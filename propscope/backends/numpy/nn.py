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


# -- embedding_bag ---------------------------------------------------------------------------------
def _bags(ids: Array, offsets: Array, include_last_offset: bool, padding_idx: int | None) -> tuple[Array, Array, int]:
    """Which bag each entry of `ids` falls in, and which entries count (not padding, not past the last bag)."""
    starts, n = as_ids(offsets).reshape(-1), ids.shape[0]
    if starts.size and (starts[0] != 0 or np.any(np.diff(starts) < 0) or starts[-1] > n):
        raise ValueError(f"embedding_bag: the offsets must start at 0, never decrease and stay within the {n} ids, "
                         f"got {starts.tolist()[:8]}{'...' if starts.size > 8 else ''}")
    bags = max(starts.size - 1 if include_last_offset else starts.size, 0)
    # include_last_offset: offsets in CSR form, the last one the end of the last bag (torch's documentation says
    # it equals the number of ids; where it does not, torch's float32 kernel stops there and its float64 one does not)
    end = starts[-1] if include_last_offset and starts.size else n
    positions = np.arange(n)
    bag = np.searchsorted(starts[:bags], positions, side="right") - 1
    counts = (bag >= 0) & (positions < end)
    if padding_idx is not None:
        counts &= ids != padding_idx
    return bag, counts, bags


def _bag_max(rows: Array, bag: Array, bags: int) -> tuple[Array, Array]:
    """Per bag and feature, the largest row value and which entry gave it (the first, on ties, as torch's CPU
    kernel); empty bags give 0 and entry −1."""
    top = np.full((bags, rows.shape[1]), -np.inf, dtype=rows.dtype)
    np.maximum.at(top, bag, rows)
    entry = np.arange(rows.shape[0])[:, None]
    first = np.full(top.shape, rows.shape[0], dtype=np.intp)
    np.minimum.at(first, bag, np.where(rows == top[bag], entry, rows.shape[0]))
    empty = first == rows.shape[0]
    return np.where(empty, 0, top).astype(rows.dtype, copy=False), np.where(empty, -1, first)


@kernel("embedding_bag")
def embedding_bag(ids: Array, table: Array, offsets: Array, w: Array | None = None, *, mode: str,
                  padding_idx: int | None, include_last_offset: bool) -> Array:
    ids = as_ids(ids)
    bag, counts, bags = _bags(ids, offsets, include_last_offset, padding_idx)
    rows = table[ids[counts]]
    if w is not None:
        rows = rows * w[counts, None]
    if mode == "max":
        return _bag_max(rows, bag[counts], bags)[0]
    out = np.zeros((bags, table.shape[1]), dtype=table.dtype)
    np.add.at(out, bag[counts], rows)
    if mode == "mean":
        out /= np.maximum(np.bincount(bag[counts], minlength=bags), 1)[:, None].astype(table.dtype)
    return out


@embedding_bag.gradient
def _(g: Array, ids: Array, table: Array, offsets: Array, *rest: Array, mode: str, padding_idx: int | None,
      include_last_offset: bool) -> tuple[Array | None, ...]:
    ids = as_ids(ids)
    w = rest[0] if len(rest) == 2 else None  # rest is (w, out) or (out,)
    bag, counts, bags = _bags(ids, offsets, include_last_offset, padding_idx)
    grad = np.zeros_like(table)
    if mode == "max":
        _, arg = _bag_max(table[ids[counts]], bag[counts], bags)
        filled = arg >= 0
        features = np.broadcast_to(np.arange(table.shape[1]), arg.shape)
        np.add.at(grad, (ids[counts][arg[filled]], features[filled]), g[filled])
        return None, grad, None
    upstream = g[bag[counts]]  # each counted entry's bag's upstream
    if mode == "mean":
        upstream = upstream / np.maximum(np.bincount(bag[counts], minlength=bags), 1)[bag[counts], None]
    np.add.at(grad, ids[counts], upstream if w is None else upstream * w[counts, None])
    if w is None:
        return None, grad, None
    gw = np.zeros_like(w)
    gw[counts] = np.sum(upstream * table[ids[counts]], axis=1)
    return None, grad, None, gw


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
    if np.asarray(idx).dtype == np.bool_:  # as ids, False and True would pick rows 0 and 1: refuse, never guess
        raise TypeError("index takes integer ids, not a boolean mask (x[mask])")
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

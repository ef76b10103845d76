"""Indexing and shape ops on NumPy, each VJP beside its forward.

Every gradient here routes ∂L/∂out back to where each output element was copied from; where one
input element was copied several times (repeated indices, expand, tile) its gradients add up
(np.add.at for index tensors, since `grad[idx] += g` would keep only one of the repeats).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph.ops.shape import expanded_shape, indexed_axes, round_to_float
from .kernels import Array, kernel, unbroadcast
from .nn import as_ids


# -- gather -------------------------------------------------------------------------------------
def _gather_index(x: Array, idx: Array, axis: int) -> tuple[Array, ...]:
    """The full index tuple of torch.gather: idx along `axis`, the element's own position on the others."""
    ids = as_ids(idx)
    ids = np.where(ids < 0, ids + x.shape[axis], ids)  # negative indices count from the end (GatherElements)
    if ids.size and (ids.min() < 0 or ids.max() >= x.shape[axis]):
        raise IndexError(f"gather: an index is out of range for axis {axis} of size {x.shape[axis]}")
    grid = np.ogrid[tuple(slice(n) for n in ids.shape)]
    return tuple(ids if d == axis else grid[d] for d in range(x.ndim))


@kernel("gather")
def gather(x: Array, idx: Array, axis: int) -> Array:
    return x[_gather_index(x, idx, axis % x.ndim)]


@gather.gradient
def _(g: Array, x: Array, idx: Array, out: Array, axis: int) -> tuple[Array, None]:
    grad = np.zeros_like(x)
    np.add.at(grad, _gather_index(x, idx, axis % x.ndim), g)
    return grad, None


# -- scatter_reduce -----------------------------------------------------------------------------
_SCATTER_UFUNCS = {"sum": np.add, "mean": np.add, "prod": np.multiply, "amax": np.maximum, "amin": np.minimum}
_SCATTER_START = {"sum": 0.0, "mean": 0.0, "prod": 1.0, "amax": -np.inf, "amin": np.inf}


def _scattered(x: Array, src: Array, where: tuple[Array, ...], reduce: str, include_self: bool) -> Array:
    out = x.copy()
    if not include_self:
        out[where] = _SCATTER_START[reduce]  # x's own value there takes no part
    _SCATTER_UFUNCS[reduce].at(out, where, src)  # every element that lands on one position, not the last only
    if reduce == "mean":
        out /= _scatter_counts(x, where, include_self)
    return out


def _scatter_counts(x: Array, where: tuple[Array, ...], include_self: bool) -> Array:
    """How many values each mean averages (x's own among them with include_self; 1 where nothing lands)."""
    counts = np.ones_like(x) if include_self else np.zeros_like(x)
    np.add.at(counts, where, 1.0)
    counts[counts == 0] = 1.0
    return counts


@kernel("scatter_reduce")
def scatter_reduce(x: Array, src: Array, idx: Array, axis: int, reduce: str, include_self: bool = True) -> Array:
    return _scattered(x, src, _gather_index(x, idx, axis % x.ndim), reduce, include_self)


@scatter_reduce.gradient
def _(g: Array, x: Array, src: Array, idx: Array, out: Array, axis: int, reduce: str, include_self: bool = True
      ) -> tuple[Array, Array, None]:
    where = _gather_index(x, idx, axis % x.ndim)
    if reduce == "sum":
        grad_x, grad_src = g.copy(), g[where]
    elif reduce == "mean":
        share = g / _scatter_counts(x, where, include_self)
        grad_x, grad_src = share, share[where]
    elif reduce == "prod":
        # the product of the others, exactly where a factor is 0: x's with x's zeros taken as 1, src's with the one
        # zero of its position taken as 1 (two zeros at a position: every other factor's product is 0)
        masked_x = np.where(x == 0, 1.0, x)
        grad_x = g * _scattered(masked_x, src, where, reduce, include_self) / masked_x
        zero = src == 0
        zeros_at = np.zeros_like(x)
        np.add.at(zeros_at, where, zero.astype(x.dtype))
        single = zero & (zeros_at[where] == 1)
        without = _scattered(x, np.where(single, 1.0, src), where, reduce, include_self)
        grad_src = np.where(single, (g * without)[where], (g * out)[where] / np.where(zero, 1.0, src))
    else:  # amax, amin: shared evenly by every element that is the extreme (torch's rule at ties)
        value = out[where]
        x_is, src_is = (x == out).astype(x.dtype), (src == value).astype(x.dtype)
        ties = x_is.copy()
        np.add.at(ties, where, src_is)
        share = g / np.where(ties == 0, 1.0, ties)
        grad_x, grad_src = x_is * share, src_is * share[where]
    if not include_self:
        grad_x = grad_x.copy()
        grad_x[where] = 0.0
    return grad_x, grad_src, None


# -- flip ---------------------------------------------------------------------------------------
@kernel("flip")
def flip(x: Array, axes: Any) -> Array:
    return np.flip(x, axis=tuple(axes)).copy() if len(axes) else x.copy()


@flip.gradient
def _(g: Array, x: Array, out: Array, axes: Any) -> tuple[Array]:
    return (np.flip(g, axis=tuple(axes)).copy() if len(axes) else g.copy(),)


# -- expand -------------------------------------------------------------------------------------
@kernel("expand")
def expand(x: Array, shape: Any) -> Array:
    # a copy, not broadcast_to's read-only view: values are kept in the trace and handed to other kernels
    return np.broadcast_to(x, expanded_shape(x.shape, shape)).copy()


@expand.gradient
def _(g: Array, x: Array, out: Array, shape: Any) -> tuple[Array]:
    return (np.array(unbroadcast(g, x.shape)),)


# -- tile ---------------------------------------------------------------------------------------
@kernel("tile")
def tile(x: Array, repeats: Any) -> Array:
    return np.tile(x, tuple(repeats))


@tile.gradient
def _(g: Array, x: Array, out: Array, repeats: Any) -> tuple[Array]:
    repeats = tuple(repeats)
    padded = (1,) * (len(repeats) - x.ndim) + x.shape
    # out axis k is (copy r, position d) with d fastest: split it in two and sum the copies
    split = tuple(n for pair in zip(repeats, padded, strict=True) for n in pair)
    return (g.reshape(split).sum(axis=tuple(range(0, 2 * len(repeats), 2))).reshape(x.shape),)


# -- triangles ----------------------------------------------------------------------------------
def _keep(x: Array, diagonal: int, upper: bool) -> Array:
    """1 where triu/tril keeps the element, 0 where it zeroes it, in x's dtype and shape."""
    rows, cols = x.shape[-2:]
    offset = np.arange(cols)[None, :] - np.arange(rows)[:, None]  # j − i
    mask = offset >= diagonal if upper else offset <= diagonal
    return np.broadcast_to(mask.astype(x.dtype), x.shape)


@kernel("triu")
def triu(x: Array, diagonal: int) -> Array:
    # picked, not multiplied: a causal mask full of −∞ keeps 0 off its triangle (−∞ · 0 would be NaN), as torch
    return np.where(_keep(x, diagonal, upper=True) != 0, x, np.zeros((), dtype=x.dtype))


@triu.selecting  # torch: upstream.triu(diagonal)
def _(x: Array, out: Array, diagonal: int) -> tuple[Array]:
    return (_keep(x, diagonal, upper=True).copy(),)


@kernel("tril")
def tril(x: Array, diagonal: int) -> Array:
    return np.where(_keep(x, diagonal, upper=False) != 0, x, np.zeros((), dtype=x.dtype))


@tril.selecting
def _(x: Array, out: Array, diagonal: int) -> tuple[Array]:
    return (_keep(x, diagonal, upper=False).copy(),)


# -- index_nd -----------------------------------------------------------------------------------
def _nd_index(x: Array, ids: tuple[Array, ...], axes: Any) -> tuple[Any, ...]:
    """x[:, i, j]'s index tuple: the integer tensors at their axes, whole slices elsewhere.

    NumPy's advanced indexing places the picked axes exactly as torch does (in place when the indexed
    axes are consecutive, first otherwise), so the same tuple serves forward and backward.
    """
    if any(np.asarray(i).dtype == np.bool_ for i in ids):
        raise TypeError("index_nd takes integer index tensors, not a boolean mask (x[mask])")
    where = dict(zip(indexed_axes(x.ndim, len(ids), axes), (as_ids(i) for i in ids), strict=True))
    return tuple(where.get(d, slice(None)) for d in range(x.ndim))


@kernel("index_nd")
def index_nd(x: Array, *ids: Array, axes: Any) -> Array:
    return x[_nd_index(x, ids, axes)]


@index_nd.gradient
def _(g: Array, x: Array, *ids_and_out: Array, axes: Any) -> tuple[Array | None, ...]:
    ids = ids_and_out[:-1]
    grad = np.zeros_like(x)
    np.add.at(grad, _nd_index(x, ids, axes), g)  # a repeated (i, j) pair adds up
    return (grad, *(None for _ in ids))


# -- index_put ------------------------------------------------------------------------------------
@kernel("index_put")
def index_put(x: Array, values: Array, *ids: Array, axes: Any, accumulate: bool = False) -> Array:
    where = _nd_index(x, ids, axes)
    out = x.copy()
    if accumulate:
        np.add.at(out, where, values)  # a repeated position adds every value put there (`out[where] +=` keeps one)
    else:
        out[where] = values
    return out


@index_put.gradient
def _(g: Array, x: Array, values: Array, *ids_and_out: Array, axes: Any, accumulate: bool = False
      ) -> tuple[Array | None, ...]:
    ids = ids_and_out[:-1]
    where = _nd_index(x, ids, axes)
    grad_x = g.copy()
    if not accumulate:
        grad_x[where] = 0.0  # overwritten elements of x reach the output no more
    return (grad_x, unbroadcast(g[where], values.shape), *(None for _ in ids))


@kernel("detach")
def detach(x: Array) -> Array:
    return x.view()


detach.gradient(lambda g, x, out: (None,))  # nothing flows back (the role is non-differentiable)


@kernel("cast")
def cast(x: Array, dtype: str) -> Array:
    return round_to_float(x, dtype)


@cast.gradient
def _(g: Array, x: Array, out: Array, dtype: str) -> tuple[Array]:
    return (round_to_float(g, dtype),)  # torch's _to_copy backward: the gradient cast to the narrower dtype

"""Indexing and shape ops in torch."""

from __future__ import annotations

from typing import Any

import torch

from ...graph.ops.shape import expanded_shape, indexed_axes
from .kernels import Tensor, integer_ids, kernel


@kernel("gather")
def gather(x: Tensor, idx: Tensor, axis: int) -> Tensor:
    ids = integer_ids(idx)
    size = x.shape[axis]
    return torch.gather(x, axis, torch.where(ids < 0, ids + size, ids))  # ONNX's negative indices count from the end


@kernel("scatter_reduce")
def scatter_reduce(x: Tensor, src: Tensor, idx: Tensor, axis: int, reduce: str, include_self: bool = True) -> Tensor:
    ids = integer_ids(idx)
    size = x.shape[axis]
    return torch.scatter_reduce(x, axis, torch.where(ids < 0, ids + size, ids), src.to(x.dtype), reduce,
                                include_self=include_self)


@kernel("flip")
def flip(x: Tensor, axes: Any) -> Tensor:
    return torch.flip(x, tuple(axes))


@kernel("expand")
def expand(x: Tensor, shape: Any) -> Tensor:
    return x.expand(*expanded_shape(tuple(x.shape), shape))


@kernel("tile")
def tile(x: Tensor, repeats: Any) -> Tensor:
    return x.repeat(*repeats)


@kernel("triu")
def triu(x: Tensor, diagonal: int) -> Tensor:
    return torch.triu(x, diagonal)


@kernel("tril")
def tril(x: Tensor, diagonal: int) -> Tensor:
    return torch.tril(x, diagonal)


@kernel("index_nd")
def index_nd(x: Tensor, *ids: Tensor, axes: Any) -> Tensor:
    if any(i.dtype == torch.bool for i in ids):
        raise TypeError("index_nd takes integer index tensors, not a boolean mask (x[mask])")
    where = dict(zip(indexed_axes(x.ndim, len(ids), axes), (integer_ids(i) for i in ids), strict=True))
    return x[tuple(where.get(d, slice(None)) for d in range(x.ndim))]


@kernel("index_put")
def index_put(x: Tensor, values: Tensor, *ids: Tensor, axes: Any, accumulate: bool = False) -> Tensor:
    if any(i.dtype == torch.bool for i in ids):
        raise TypeError("index_put takes integer index tensors, not a boolean mask (x[mask] = v)")
    where = dict(zip(indexed_axes(x.ndim, len(ids), axes), (integer_ids(i) for i in ids), strict=True))
    picks = [where.get(d) for d in range(max(where) + 1)]  # None: the whole axis, as aten's index_put reads it
    return torch.ops.aten.index_put(x, picks, values.to(x.dtype), accumulate)


@kernel("detach")
def detach(x: Tensor) -> Tensor:
    return x.detach()


@kernel("cast")
def cast(x: Tensor, dtype: str) -> Tensor:
    # there and back: autograd rounds the gradient through the narrower dtype too, as torch does for the model
    return x.to(getattr(torch, dtype)).to(x.dtype)

"""Embedding, dropout, joining and picking in torch (the norms: norm.py)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ...graph.ops.nn import slices as _slices
from ..numpy.nn import dropout_mask
from .kernels import Tensor, integer_ids, kernel


@kernel("embedding")
def embedding(ids: Tensor, table: Tensor, padding_idx: int | None = None) -> Tensor:
    return F.embedding(integer_ids(ids), table, padding_idx=padding_idx)


@kernel("dropout")
def dropout(x: Tensor, p: float, training: bool, seed: int) -> Tensor:
    # The mask is data drawn from the seed, shared with the NumPy backend so both drop the same elements.
    if not training or p == 0:
        return x * torch.ones_like(x)
    if p >= 1:
        return x * torch.zeros_like(x)
    mask = torch.from_numpy(dropout_mask(tuple(x.shape), p, seed)).to(device=x.device, dtype=x.dtype)
    return x * (mask / (1.0 - p))


# -- joining and picking ------------------------------------------------------------------------
@kernel("concat")
def concat(*xs: Tensor, axis: int) -> Tensor:
    return torch.cat(xs, dim=axis)


@kernel("slice")
def slice_(x: Tensor, axes: Any, starts: Any, stops: Any, steps: Any) -> Tensor:
    out = x
    cuts = _slices(tuple(x.shape), {"axes": axes, "starts": starts, "stops": stops, "steps": steps})
    for dim, (cut, size) in enumerate(zip(cuts, x.shape, strict=True)):
        if cut == slice(None):
            continue
        start, stop, step = cut.indices(size)
        if step > 0:
            out = out[(slice(None),) * dim + (slice(start, stop, step),)]
        else:  # torch has no negative steps: pick the same positions with an index
            positions = torch.arange(start, stop, step, device=x.device)
            out = out.index_select(dim, positions)
    return out


@kernel("select")
def select(x: Tensor, axis: int, index: int) -> Tensor:
    return torch.select(x, axis, index)


@kernel("index")
def index(x: Tensor, idx: Tensor, axis: int) -> Tensor:
    if idx.dtype == torch.bool:  # as ids, False and True would pick rows 0 and 1: refuse, never guess
        raise TypeError("index takes integer ids, not a boolean mask (x[mask])")
    axis %= x.ndim
    ids = integer_ids(idx) % x.shape[axis]  # np.take wraps negative indices
    picked = x.index_select(axis, ids.reshape(-1))
    return picked.reshape(*x.shape[:axis], *ids.shape, *x.shape[axis + 1:])




@kernel("embedding_bag")
def embedding_bag(ids: Tensor, table: Tensor, offsets: Tensor, w: Tensor | None = None, *, mode: str,
                  padding_idx: int | None, include_last_offset: bool) -> Tensor:
    return F.embedding_bag(integer_ids(ids), table, integer_ids(offsets), mode=mode, per_sample_weights=w,
                           include_last_offset=include_last_offset, padding_idx=padding_idx)

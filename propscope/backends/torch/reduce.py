"""Reductions, cumulative sums and products, and arg-extremes in torch."""

from __future__ import annotations

import math
from typing import Any

import torch

from .core import _dims  # NumPy's `axis` as sorted torch dims, as sum and mean take it
from .kernels import Tensor, kernel


@kernel("vector_norm")
def vector_norm(x: Tensor, axis: Any, keepdims: bool, ord: float) -> Tensor:
    dims = _dims(axis, x.ndim)
    return torch.linalg.vector_norm(x, ord=ord, dim=dims, keepdim=keepdims) if dims else x.abs()


@kernel("amax")
def amax(x: Tensor, axis: Any, keepdims: bool) -> Tensor:
    dims = _dims(axis, x.ndim)
    return torch.amax(x, dim=dims, keepdim=keepdims) if dims else x.clone()


@kernel("amin")
def amin(x: Tensor, axis: Any, keepdims: bool) -> Tensor:
    dims = _dims(axis, x.ndim)
    return torch.amin(x, dim=dims, keepdim=keepdims) if dims else x.clone()


@kernel("prod")
def prod(x: Tensor, axis: Any, keepdims: bool) -> Tensor:
    dims = _dims(axis, x.ndim)
    kept = [d for d in range(x.ndim) if d not in dims]
    # torch.prod takes one dim: move the reduced ones last and flatten them into one
    rows = x.permute(*kept, *dims).reshape(*(x.shape[d] for d in kept), math.prod(x.shape[d] for d in dims))
    out = torch.prod(rows, dim=-1)
    return out.reshape([1 if d in dims else n for d, n in enumerate(x.shape)]) if keepdims else out


def _spread(fn: Any, x: Tensor, axis: Any, keepdims: bool, correction: float) -> Tensor:
    dims = _dims(axis, x.ndim)
    if not dims:  # each value alone (axis=()): a new length-1 axis gives torch's n = 1 statistics
        return fn(x.unsqueeze(-1), dim=-1, correction=correction)
    return fn(x, dim=dims, correction=correction, keepdim=keepdims)


@kernel("var")
def var(x: Tensor, axis: Any, keepdims: bool, correction: float) -> Tensor:
    return _spread(torch.var, x, axis, keepdims, correction)


@kernel("std")
def std(x: Tensor, axis: Any, keepdims: bool, correction: float) -> Tensor:
    return _spread(torch.std, x, axis, keepdims, correction)


@kernel("logsumexp")
def logsumexp(x: Tensor, axis: Any, keepdims: bool) -> Tensor:
    dims = _dims(axis, x.ndim)
    return torch.logsumexp(x, dim=dims, keepdim=keepdims) if dims else x.clone()


@kernel("cumsum")
def cumsum(x: Tensor, axis: int, reverse: bool, exclusive: bool) -> Tensor:
    if reverse:
        x = x.flip(axis)
    out = torch.cumsum(x, dim=axis)
    if exclusive and out.shape[axis]:  # shift by one: out_i holds the sum before x_i
        out = torch.cat([torch.zeros_like(out.narrow(axis, 0, 1)), out.narrow(axis, 0, out.shape[axis] - 1)], dim=axis)
    return out.flip(axis) if reverse else out


@kernel("cummax")
def cummax(x: Tensor, axis: int) -> Tensor:
    return torch.cummax(x, dim=axis).values


@kernel("cummin")
def cummin(x: Tensor, axis: int) -> Tensor:
    return torch.cummin(x, dim=axis).values


@kernel("cumprod")
def cumprod(x: Tensor, axis: int, reverse: bool, exclusive: bool) -> Tensor:
    if reverse:
        x = x.flip(axis)
    if exclusive and x.shape[axis]:  # a 1 first, the last value dropped: out_i = Π_(j < i) x_j
        x = torch.cat([torch.ones_like(x.narrow(axis, 0, 1)), x.narrow(axis, 0, x.shape[axis] - 1)], dim=axis)
    out = torch.cumprod(x, dim=axis)
    return out.flip(axis) if reverse else out


def _arg(find: Any, x: Tensor, axis: int | None, keepdims: bool, select_last_index: bool) -> Tensor:
    if x.dtype == torch.bool:  # the first true of a mask (CLIP pools its text at the first end token): torch
        x = x.to(torch.uint8)  # finds the largest of numbers only
    if not select_last_index:
        return find(x, dim=axis, keepdim=keepdims)
    flipped = x.flip(list(range(x.ndim))) if axis is None else x.flip(axis)
    n = x.numel() if axis is None else x.shape[axis]
    return n - 1 - find(flipped, dim=axis, keepdim=keepdims)


@kernel("argmax")
def argmax(x: Tensor, axis: int | None, keepdims: bool, select_last_index: bool) -> Tensor:
    return _arg(torch.argmax, x, axis, keepdims, select_last_index)


@kernel("argmin")
def argmin(x: Tensor, axis: int | None, keepdims: bool, select_last_index: bool) -> Tensor:
    return _arg(torch.argmin, x, axis, keepdims, select_last_index)


@kernel("histc")
def histc(x: Tensor, bins: int, min: float, max: float) -> Tensor:
    return torch.histc(x.detach(), bins=bins, min=min, max=max)  # a count: no gradient, as torch has none for it


@kernel("argsort")
def argsort(x: Tensor, axis: int, descending: bool, k: int | None, ties: str = "stable") -> Tensor:
    if ties == "topk" and k is not None:  # torch's own order of ties, on the device the tensor is on
        return torch.topk(x, k, dim=axis, largest=descending).indices
    order = torch.sort(x, dim=axis, descending=descending, stable=ties != "sort").indices
    return order if k is None else order.narrow(axis, 0, k)

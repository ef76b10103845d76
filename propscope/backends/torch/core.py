"""Arithmetic, matrix products, reductions and shape ops in torch."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch

from .kernels import Tensor, kernel


# -- arithmetic ------------------------------------------------------------------------------
@kernel("add")
def add(a: Tensor, b: Tensor) -> Tensor:
    return a + b


@kernel("sub")
def sub(a: Tensor, b: Tensor) -> Tensor:
    return a - b


@kernel("mul")
def mul(a: Tensor, b: Tensor) -> Tensor:
    return a * b


@kernel("div")
def div(a: Tensor, b: Tensor) -> Tensor:
    return a / b


@kernel("neg")
def neg(a: Tensor) -> Tensor:
    return -a


@kernel("pow")
def pow_(a: Tensor, exponent: float) -> Tensor:
    return torch.pow(a, exponent)


@kernel("exp")
def exp(z: Tensor) -> Tensor:
    return torch.exp(z)


@kernel("log")
def log(z: Tensor) -> Tensor:
    return torch.log(z)


# -- matrix products, reductions, shapes -------------------------------------------------------
@kernel("matmul")
def matmul(a: Tensor, b: Tensor) -> Tensor:
    return torch.matmul(a, b)


@kernel("grouped_mm")
def grouped_mm(x: Tensor, W: Tensor, offs: Tensor) -> Tensor:
    """A product per group of rows, as transformers' fallback computes it (rows past the last offset are 0); the
    offsets are read once, as that fallback reads them."""
    ends = [round(float(e)) for e in offs.reshape(-1).tolist()]
    rows = x.shape[0]
    if ends and (ends[0] < 0 or any(b < a for a, b in pairwise(ends)) or ends[-1] > rows):
        raise ValueError(f"grouped_mm: the offsets must rise from 0 to at most the {rows} rows, got "
                         f"{ends[:8]}{'...' if len(ends) > 8 else ''}")
    pieces, start = [], 0
    for g, end in enumerate(ends):
        if end > start:
            pieces.append(x[start:end] @ W[g])
        start = max(start, end)
    if start < rows or not pieces:
        pieces.append(x.new_zeros(rows - start, W.shape[2]))
    return torch.cat(pieces)


@kernel("linear")
def linear(x: Tensor, W: Tensor, b: Tensor, transpose_weight: bool) -> Tensor:
    return torch.matmul(x, W.mT if transpose_weight else W) + b


def _dims(axis: Any, ndim: int) -> tuple[int, ...]:
    """NumPy's `axis` as torch dims. `()` must never reach torch: there it means "every axis"."""
    if axis is None:
        return tuple(range(ndim))
    items = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted({int(a) % max(ndim, 1) for a in items})) if ndim else ()


@kernel("sum")
def sum_(x: Tensor, axis: Any, keepdims: bool) -> Tensor:
    dims = _dims(axis, x.ndim)
    return torch.sum(x, dim=dims, keepdim=keepdims) if dims else x.clone()


@kernel("mean")
def mean(x: Tensor, axis: Any, keepdims: bool) -> Tensor:
    dims = _dims(axis, x.ndim)
    return torch.mean(x, dim=dims, keepdim=keepdims) if dims else x.clone()


@kernel("reshape")
def reshape(x: Tensor, shape: Any) -> Tensor:
    return x.reshape(tuple(int(d) for d in shape))


@kernel("transpose")
def transpose(x: Tensor, axes: Any) -> Tensor:
    perm = range(x.ndim - 1, -1, -1) if axes is None else (int(a) % max(x.ndim, 1) for a in axes)
    return x.permute(*perm)


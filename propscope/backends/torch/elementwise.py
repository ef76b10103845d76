"""Elementwise math in torch."""

from __future__ import annotations

import torch

from .kernels import Tensor, kernel

for _name, _fn in (
    ("abs", torch.abs), ("sign", torch.sign), ("sin", torch.sin), ("cos", torch.cos), ("sqrt", torch.sqrt),
    ("asin", torch.asin), ("acos", torch.acos), ("atan", torch.atan), ("sinh", torch.sinh), ("cosh", torch.cosh),
    ("asinh", torch.asinh), ("acosh", torch.acosh), ("atanh", torch.atanh),
    ("rsqrt", torch.rsqrt), ("reciprocal", torch.reciprocal), ("log1p", torch.log1p), ("expm1", torch.expm1),
    ("floor", torch.floor), ("ceil", torch.ceil), ("round", torch.round),
    ("maximum", torch.maximum), ("minimum", torch.minimum), ("power", torch.pow), ("fmod", torch.fmod),
    ("remainder", torch.remainder), ("atan2", torch.atan2),
):
    kernel(_name)(_fn)


@kernel("where")
def where(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(cond if cond.dtype == torch.bool else cond != 0, a, b)


_COMPARE = {"gt": torch.gt, "ge": torch.ge, "lt": torch.lt, "le": torch.le, "eq": torch.eq, "ne": torch.ne}
_LOGICAL = {"and": torch.logical_and, "or": torch.logical_or, "xor": torch.logical_xor}


@kernel("compare")
def compare(a: Tensor, b: Tensor, op: str) -> Tensor:
    return _COMPARE[op](a, b)


@kernel("logical")
def logical(a: Tensor, b: Tensor | None = None, *, op: str) -> Tensor:
    if op == "not":
        return torch.logical_not(a)
    if b is None:
        raise ValueError(f"logical {op!r} takes two masks")
    return _LOGICAL[op](a, b)


@kernel("isnan")
def isnan(a: Tensor) -> Tensor:
    return torch.isnan(a)


@kernel("isinf")
def isinf(a: Tensor, detect_positive: bool, detect_negative: bool) -> Tensor:
    return (torch.isposinf(a) & detect_positive) | (torch.isneginf(a) & detect_negative)

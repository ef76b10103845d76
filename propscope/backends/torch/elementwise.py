"""Elementwise math in torch."""

from __future__ import annotations

import torch

from .kernels import Tensor, kernel

for _name, _fn in (
    ("abs", torch.abs), ("sign", torch.sign), ("sin", torch.sin), ("cos", torch.cos), ("sqrt", torch.sqrt),
    ("rsqrt", torch.rsqrt), ("reciprocal", torch.reciprocal), ("log1p", torch.log1p), ("expm1", torch.expm1),
    ("floor", torch.floor), ("ceil", torch.ceil), ("round", torch.round),
    ("maximum", torch.maximum), ("minimum", torch.minimum), ("power", torch.pow), ("fmod", torch.fmod),
    ("remainder", torch.remainder),
):
    kernel(_name)(_fn)


@kernel("where")
def where(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(cond if cond.dtype == torch.bool else cond != 0, a, b)

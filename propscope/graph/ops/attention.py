"""Scaled dot-product attention as one fused op, for loaded models and for a compact view.

For teaching, the `attention` example builds the same computation from primitive ops (matmul,
softmax, reshape, transpose) so every product is a step; this op is what a model loaded from
PyTorch (F.scaled_dot_product_attention, nn.MultiheadAttention's core) maps to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]


def _sdpa(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    q, k, v = (tuple(s) for s in shapes)
    heads = int(attrs.get("num_heads", 1))
    if len(q) < 2 or len(k) != len(q) or len(v) != len(q):
        raise ShapeError(f"q, k, v must be (..., length, features) alike, got {S.fmt(q)}, {S.fmt(k)}, {S.fmt(v)}")
    if q[:-2] != k[:-2] or q[:-2] != v[:-2]:
        raise ShapeError(f"q {S.fmt(q)}, k {S.fmt(k)} and v {S.fmt(v)} differ in their batch axes")
    if q[-1] != k[-1]:
        raise ShapeError(f"q {S.fmt(q)} and k {S.fmt(k)} must have the same feature size")
    if k[-2] != v[-2]:
        raise ShapeError(f"k {S.fmt(k)} and v {S.fmt(v)} must have the same length")
    if heads < 1 or q[-1] % heads or v[-1] % heads:
        raise ShapeError(f"num_heads={heads} must divide the feature sizes {q[-1]} and {v[-1]}")
    return (*q[:-1], v[-1])


define(OpDef(
    "scaled_dot_product_attention", ("q", "k", "v"),
    "per head: A = softmax(q kᵀ · scale + M),  out = A v;  scale = 1/√d_head, M = −∞ above the diagonal if causal",
    {
        "q": "∂L/∂q = scale · ∂L/∂S k,  ∂L/∂S = A ⊙ (∂L/∂A − Σ_j ∂L/∂A_j A_j),  ∂L/∂A = ∂L/∂out vᵀ",
        "k": "∂L/∂k = scale · (∂L/∂S)ᵀ q",
        "v": "∂L/∂v = Aᵀ ∂L/∂out",
    },
    _sdpa, "attn", category="attention", default_attrs={"num_heads": 1, "causal": False, "scale": None},
    summary="multi-head scaled dot-product attention on projected q, k, v (..., L, heads·d); optional causal mask",
))

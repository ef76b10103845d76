"""Scaled dot-product attention in torch."""

from __future__ import annotations

import torch.nn.functional as F

from .kernels import Tensor, kernel


def _heads(x: Tensor, heads: int) -> Tensor:
    """(..., L, heads·d) -> (..., heads, L, d): contiguous feature chunks, as nn.MultiheadAttention."""
    return x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads).transpose(-2, -3)


@kernel("scaled_dot_product_attention")
def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, num_heads: int, causal: bool,
                                 scale: float | None) -> Tensor:
    out = F.scaled_dot_product_attention(_heads(q, num_heads), _heads(k, num_heads), _heads(v, num_heads),
                                         is_causal=causal, scale=scale)
    out = out.transpose(-2, -3)
    return out.reshape(*out.shape[:-2], out.shape[-2] * out.shape[-1])


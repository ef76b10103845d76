"""Multi-head scaled dot-product attention on NumPy, with its VJP through softmax and both products.

q, k, v arrive projected, (..., L, heads·d); each is split into heads (..., heads, L, d) the way
nn.MultiheadAttention splits them (contiguous chunks of the features), attended, and merged back.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .activations import _softmax
from .kernels import Array, kernel


def _split(x: Array, heads: int) -> Array:
    return x.reshape(*x.shape[:-1], heads, x.shape[-1] // heads).swapaxes(-2, -3)


def _merge(x: Array) -> Array:
    x = x.swapaxes(-2, -3)
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


def _scale(q: Array, heads: int, scale: float | None) -> float:
    return 1.0 / math.sqrt(q.shape[-1] // heads) if scale is None else float(scale)


def attention_weights(q: Array, k: Array, num_heads: int = 1, causal: bool = False,
                      scale: float | None = None) -> Array:
    """A = softmax(q kᵀ · scale + mask) per head: (..., heads, L, S), the matrix the views draw."""
    scores = _split(q, num_heads) @ _split(k, num_heads).swapaxes(-1, -2) * q.dtype.type(_scale(q, num_heads, scale))
    if causal:  # query i sees keys 0..i (PyTorch's is_causal: the upper triangle is masked)
        above = np.triu(np.ones(scores.shape[-2:], dtype=bool), k=1)
        scores = np.where(above, -np.inf, scores)
    return _softmax(scores, -1)


@kernel("scaled_dot_product_attention")
def scaled_dot_product_attention(q: Array, k: Array, v: Array, num_heads: int, causal: bool,
                                 scale: float | None) -> Array:
    return _merge(attention_weights(q, k, num_heads, causal, scale) @ _split(v, num_heads))


@scaled_dot_product_attention.gradient
def _(g: Array, q: Array, k: Array, v: Array, out: Array, num_heads: int, causal: bool,
      scale: float | None) -> tuple[Any, ...]:
    a = attention_weights(q, k, num_heads, causal, scale)
    gh = _split(g, num_heads)
    ga = gh @ _split(v, num_heads).swapaxes(-1, -2)
    gs = a * (ga - np.sum(ga * a, axis=-1, keepdims=True))  # softmax's VJP; masked entries have a = 0
    gs = gs * q.dtype.type(_scale(q, num_heads, scale))
    gq = gs @ _split(k, num_heads)
    gk = gs.swapaxes(-1, -2) @ _split(q, num_heads)
    gv = a.swapaxes(-1, -2) @ gh
    return _merge(gq), _merge(gk), _merge(gv)

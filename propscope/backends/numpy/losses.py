"""Losses on NumPy. The target is data: its gradient is None.

A loss is a scalar, so its local derivative ∂L/∂ŷ has the prediction's shape and the chain
rule is the elementwise one: contribution = upstream (dL/dL = 1) × local.
"""

from __future__ import annotations

import numpy as np

from .activations import _softmax
from .kernels import Array, kernel

_BCE_LOG_FLOOR = -100.0  # PyTorch clamps log() at -100 so that a confident wrong answer stays finite
_BCE_EPS = float(np.float32(1e-12))  # the same way, with PyTorch's constant (1e-12 rounded to float32)


@kernel("mse")
def mse(pred: Array, y: Array) -> Array:
    d = pred - y
    return np.asarray((d * d).mean())  # the method skips np.mean's Python wrapper: this runs every epoch


@mse.local
def _(pred: Array, y: Array, out: Array) -> tuple[Array, None]:
    return (2.0 / pred.size) * (pred - y), None


@kernel("sse")
def sse(pred: Array, y: Array) -> Array:
    d = pred - y
    return np.asarray(0.5 * (d * d).sum())


@sse.local
def _(pred: Array, y: Array, out: Array) -> tuple[Array, None]:
    return pred - y, None


@kernel("bce")
def bce(pred: Array, y: Array) -> Array:
    log_p = np.maximum(np.log(pred), _BCE_LOG_FLOOR)
    log_q = np.maximum(np.log1p(-pred), _BCE_LOG_FLOOR)
    return np.asarray(-np.mean(y * log_p + (1.0 - y) * log_q))


@bce.local
def _(pred: Array, y: Array, out: Array) -> tuple[Array, None]:
    return (pred - y) / np.maximum(pred * (1.0 - pred), _BCE_EPS) / pred.size, None


def _target_probs(logits: Array, y: Array) -> Array:
    """Class indices become one-hot rows; one-hot or soft targets pass through."""
    if y.shape == logits.shape:
        return y.astype(logits.dtype, copy=False)
    onehot = np.zeros_like(logits)
    np.put_along_axis(onehot, np.asarray(y, dtype=np.intp)[..., None], 1.0, axis=-1)
    return onehot


@kernel("cross_entropy")
def cross_entropy(logits: Array, y: Array) -> Array:
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
    n = logits.shape[0] if logits.ndim == 2 else 1
    return np.asarray(-np.sum(_target_probs(logits, y) * log_probs) / n)


@cross_entropy.local
def _(logits: Array, y: Array, out: Array) -> tuple[Array, None]:
    n = logits.shape[0] if logits.ndim == 2 else 1
    target = _target_probs(logits, y)
    # For soft targets that do not sum to one, d/dz of −Σ t log softmax(z) is softmax(z)·Σt − t.
    total = np.sum(target, axis=-1, keepdims=True)
    return (_softmax(logits, -1) * total - target) / n, None

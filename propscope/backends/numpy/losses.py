"""Losses on NumPy. The target (and class weights) are data: their gradient is None.

A loss is a scalar, so its local derivative ∂L/∂ŷ has the prediction's shape and the chain
rule is the elementwise one: contribution = upstream (dL/dL = 1) × local. The unreduced class
losses (one loss per sample) are not scalars: they give a VJP instead.
"""

from __future__ import annotations

import numpy as np

from ...graph.ops.losses import class_axis
from .activations import _softmax
from .kernels import Array, kernel
from .nn import as_ids

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


# -- losses over classes ------------------------------------------------------------------------------
# Computed with the classes moved to the last axis (axis 1 of (N, C, d1, ...) in the op's terms). Both
# losses are ℓ_n = −Σ_c q_nc · logp_nc for some coefficients q (the weighted, smoothed one-hot target,
# 0 on ignored samples); nll_loss's logp is its input, cross-entropy's the log-softmax of the logits.
# The reduced ops give their gradient as `local` (∂L/∂ŷ, what the chain-rule view shows for a loss);
# the unreduced ones, whose output is not a scalar, as a VJP.
def _classes_last(a: Array, axis: int) -> Array:
    return a if axis == a.ndim - 1 else np.moveaxis(a, axis, -1)  # (N, C) and (C,) are already: the hot path


class _Targets:
    """The target of one class loss, read once: which samples count, each sample's class and weight."""

    def __init__(self, x: Array, y: Array, weight: Array | None, ignore_index: int,
                 label_smoothing: float, probabilities: bool) -> None:
        self.axis = class_axis(x.ndim)
        self.classes = x.shape[self.axis]
        self.dtype = x.dtype
        self.weight = None if weight is None else np.asarray(weight, dtype=x.dtype)
        self.smoothing = label_smoothing
        self.probabilities = probabilities and y.shape == x.shape
        if self.probabilities:  # soft targets: every sample counts, none is ignored (as torch)
            self.soft = _classes_last(np.asarray(y, dtype=x.dtype), self.axis)
            return
        ids = as_ids(y)
        self.kept = ids != ignore_index
        self.all_kept = bool(self.kept.all())
        self.ids = ids if self.all_kept else np.where(self.kept, ids, 0)
        if self.ids.size and (self.ids.min() < 0 or self.ids.max() >= self.classes):
            bad = ids[self.kept & ((ids < 0) | (ids >= self.classes))].flat[0]
            raise IndexError(f"target class {bad} is out of range for {self.classes} classes")

    def picked_weight(self) -> Array | float:
        """w_(y_n) per sample, 0 where ignored (just 1.0 when every sample counts unweighted)."""
        if self.weight is None:
            return 1.0 if self.all_kept else self.kept.astype(self.dtype)
        return self.weight[self.ids] if self.all_kept else self.weight[self.ids] * self.kept

    def coefficients(self) -> Array:
        """q_nc = w_c · ((1 − ε) · t_nc + ε/C), classes last; 0 on ignored samples."""
        if self.probabilities:
            q = self.soft if self.smoothing == 0 else self.soft * (1 - self.smoothing) + self.smoothing / self.classes
        else:
            q = np.zeros((*self.ids.shape, self.classes), dtype=self.dtype)
            kept = 1.0 if self.all_kept else self.kept[..., None]
            np.put_along_axis(q, self.ids[..., None], (1 - self.smoothing) * kept, axis=-1)
            if self.smoothing:
                q += (self.smoothing / self.classes) * kept
        return q if self.weight is None else q * self.weight

    def mean_divisor(self) -> Array:
        """What 'mean' divides by: the summed weights of the counted samples (their count when unweighted),
        or the number of samples and positions for probability targets."""
        if self.probabilities:
            return np.asarray(self.soft.size // self.classes, dtype=self.dtype)
        if self.weight is None and self.all_kept:
            return np.asarray(self.ids.size, dtype=self.dtype)
        return np.asarray(np.sum(self.picked_weight()), dtype=self.dtype)

    def per_sample(self, g: Array) -> Array:
        """An upstream per sample, broadcast over the classes (classes last)."""
        return np.asarray(g, dtype=self.dtype)[..., None]

    def to_input(self, classes_last: Array) -> Array:
        return classes_last if self.axis == classes_last.ndim - 1 else np.moveaxis(classes_last, -1, self.axis)


def _reduce(per_sample: Array, t: _Targets, reduction: str) -> Array:
    total = per_sample.sum()
    return np.asarray(total / t.mean_divisor() if reduction == "mean" else total, dtype=t.dtype)


def _scale(t: _Targets, reduction: str) -> Array:
    """∂L/∂ℓ_n for every sample: 1/D for 'mean', 1 for 'sum'."""
    one = np.ones((), dtype=t.dtype)
    return one / t.mean_divisor() if reduction == "mean" else one


def _split(rest: tuple[Array, ...]) -> tuple[Array | None, Array]:
    """(weight or None, out) from the arguments after the target: the weight input is optional."""
    return (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])


# nll_loss: ℓ_n = −w_(y_n) · logp[n, y_n], and ∂ℓ_n/∂logp[n, c] = −w_c · 1[c = y_n]
def _nll(logp: Array, t: _Targets) -> Array:
    picked = np.take_along_axis(_classes_last(logp, t.axis), t.ids[..., None], axis=-1)[..., 0]
    return -t.picked_weight() * picked


def _nll_back(logp: Array, t: _Targets, upstream: Array) -> Array:
    grad = np.zeros((*t.ids.shape, t.classes), dtype=logp.dtype)
    np.put_along_axis(grad, t.ids[..., None], t.per_sample(-t.picked_weight() * upstream), axis=-1)  # one class a row
    return t.to_input(grad)


@kernel("nll_loss")
def nll_loss(logp: Array, y: Array, *weight: Array, reduction: str, ignore_index: int) -> Array:
    t = _Targets(logp, y, weight[0] if weight else None, ignore_index, 0.0, probabilities=False)
    return _reduce(_nll(logp, t), t, reduction)


@nll_loss.local
def _(logp: Array, y: Array, *rest: Array, reduction: str, ignore_index: int) -> tuple[Array | None, ...]:
    weight, _ = _split(rest)
    t = _Targets(logp, y, weight, ignore_index, 0.0, probabilities=False)
    return (_nll_back(logp, t, _scale(t, reduction)), None, *(None for _ in rest[1:]))


@kernel("nll_loss_unreduced")
def nll_loss_unreduced(logp: Array, y: Array, *weight: Array, ignore_index: int) -> Array:
    return _nll(logp, _Targets(logp, y, weight[0] if weight else None, ignore_index, 0.0, probabilities=False))


@nll_loss_unreduced.gradient
def _(g: Array, logp: Array, y: Array, *rest: Array, ignore_index: int) -> tuple[Array | None, ...]:
    weight, _ = _split(rest)
    t = _Targets(logp, y, weight, ignore_index, 0.0, probabilities=False)
    return (_nll_back(logp, t, g), None, *(None for _ in rest[1:]))


# cross_entropy: ℓ_n = −Σ_c q_nc · log softmax(ŷ_n)_c, and ∂ℓ_n/∂ŷ_nc = softmax(ŷ_n)_c · Σ_c' q_nc' − q_nc
def _log_softmax_last(logits: Array, axis: int) -> Array:
    z = _classes_last(logits, axis)
    shifted = z - np.max(z, axis=-1, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _ce_targets(logits: Array, y: Array, rest: tuple[Array, ...], ignore_index: int,
                label_smoothing: float) -> _Targets:
    return _Targets(logits, y, rest[0] if rest else None, ignore_index, label_smoothing, probabilities=True)


def _ce(logits: Array, t: _Targets) -> Array:
    # a class masked out with −∞ (Grounding DINO's logits past the text) whose coefficient is 0 adds 0, as in
    # torch, not 0 · −∞ = NaN
    q = t.coefficients()
    return -np.sum(q * np.where(q != 0, _log_softmax_last(logits, t.axis), 0.0), axis=-1)


def _ce_back(logits: Array, t: _Targets, upstream: Array) -> Array:
    q = t.coefficients()
    probs = _softmax(_classes_last(logits, t.axis), -1)
    return t.to_input((probs * q.sum(axis=-1, keepdims=True) - q) * t.per_sample(upstream))


@kernel("cross_entropy")
def cross_entropy(logits: Array, y: Array, *weight: Array, reduction: str, ignore_index: int,
                  label_smoothing: float) -> Array:
    t = _ce_targets(logits, y, weight, ignore_index, label_smoothing)
    return _reduce(_ce(logits, t), t, reduction)


@cross_entropy.local
def _(logits: Array, y: Array, *rest: Array, reduction: str, ignore_index: int,
      label_smoothing: float) -> tuple[Array | None, ...]:
    t = _ce_targets(logits, y, rest[:-1], ignore_index, label_smoothing)
    return (_ce_back(logits, t, _scale(t, reduction)), None, *(None for _ in rest[1:]))


@kernel("cross_entropy_unreduced")
def cross_entropy_unreduced(logits: Array, y: Array, *weight: Array, ignore_index: int,
                            label_smoothing: float) -> Array:
    return _ce(logits, _ce_targets(logits, y, weight, ignore_index, label_smoothing))


@cross_entropy_unreduced.gradient
def _(g: Array, logits: Array, y: Array, *rest: Array, ignore_index: int,
      label_smoothing: float) -> tuple[Array | None, ...]:
    t = _ce_targets(logits, y, rest[:-1], ignore_index, label_smoothing)
    return (_ce_back(logits, t, g), None, *(None for _ in rest[1:]))

"""Losses in torch (the target and class weights are data: no gradient flows into them)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .kernels import Tensor, integer_ids, kernel


@kernel("mse")
def mse(pred: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(pred, y.to(pred.dtype))


@kernel("sse")
def sse(pred: Tensor, y: Tensor) -> Tensor:
    return 0.5 * F.mse_loss(pred, y.to(pred.dtype), reduction="sum")


@kernel("bce")
def bce(pred: Tensor, y: Tensor) -> Tensor:
    # PyTorch's own BCE (log clamped at -100, gradient denominator at 1e-12). Its kernel refuses
    # predictions outside [0, 1] (on CUDA with a device-side assert that poisons the context), so
    # those (NaN included) are fed a harmless 0.5 and the loss reports NaN instead, as NumPy does.
    bad = ~((pred >= 0) & (pred <= 1))
    loss = F.binary_cross_entropy(torch.where(bad, 0.5, pred), y.to(pred.dtype))
    return loss + torch.where(bad.any(), math.nan, 0.0).to(pred.dtype)


def _weight(x: Tensor, weight: tuple[Tensor, ...]) -> Tensor | None:
    return weight[0].to(x.dtype) if weight else None


@kernel("nll_loss")
def nll_loss(logp: Tensor, y: Tensor, *weight: Tensor, reduction: str, ignore_index: int) -> Tensor:
    return F.nll_loss(logp, integer_ids(y), _weight(logp, weight), ignore_index=ignore_index, reduction=reduction)


@kernel("nll_loss_unreduced")
def nll_loss_unreduced(logp: Tensor, y: Tensor, *weight: Tensor, ignore_index: int) -> Tensor:
    return F.nll_loss(logp, integer_ids(y), _weight(logp, weight), ignore_index=ignore_index, reduction="none")


def _ce_target(logits: Tensor, y: Tensor) -> Tensor:
    """Same shape as the logits: class probabilities (one-hot or soft); otherwise class indices."""
    return y.to(logits.dtype) if y.shape == logits.shape else integer_ids(y)


@kernel("cross_entropy")
def cross_entropy(logits: Tensor, y: Tensor, *weight: Tensor, reduction: str, ignore_index: int,
                  label_smoothing: float) -> Tensor:
    return F.cross_entropy(logits, _ce_target(logits, y), _weight(logits, weight), ignore_index=ignore_index,
                           reduction=reduction, label_smoothing=label_smoothing)


@kernel("cross_entropy_unreduced")
def cross_entropy_unreduced(logits: Tensor, y: Tensor, *weight: Tensor, ignore_index: int,
                            label_smoothing: float) -> Tensor:
    return F.cross_entropy(logits, _ce_target(logits, y), _weight(logits, weight), ignore_index=ignore_index,
                           reduction="none", label_smoothing=label_smoothing)

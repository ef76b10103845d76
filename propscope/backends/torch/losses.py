"""Losses in torch (the target is data: no gradient flows into it)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .kernels import Tensor, kernel


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


@kernel("cross_entropy")
def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    # Same shape as the logits: one-hot or probability rows; otherwise class indices.
    target = y.to(logits.dtype) if y.shape == logits.shape else y.long()
    return F.cross_entropy(logits, target)


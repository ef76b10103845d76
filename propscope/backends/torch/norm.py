"""Batch, layer, group and RMS norm in torch."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F

from ...graph.ops.norm import normalized_shape as _normalized_shape
from .kernels import Tensor, kernel


@kernel("batch_norm")
def batch_norm(x: Tensor, w: Tensor, b: Tensor, running_mean: Tensor, running_var: Tensor, training: bool,
               momentum: float, eps: float) -> Tensor:
    # In training F.batch_norm would update the running statistics in place; a step must not change its
    # inputs (time travel), so they are left out there: the batch's own statistics normalise.
    if training:
        return F.batch_norm(x, None, None, w, b, True, momentum, eps)
    return F.batch_norm(x, running_mean.to(x.dtype), running_var.to(x.dtype), w, b, False, momentum, eps)


def _shape(x: Tensor, w: Tensor, attr: Any) -> tuple[int, ...]:
    return _normalized_shape(tuple(x.shape), {"normalized_shape": attr}, tuple(w.shape))


@kernel("layer_norm")
def layer_norm(x: Tensor, w: Tensor, b: Tensor, normalized_shape: Any, eps: float) -> Tensor:
    return F.layer_norm(x, _shape(x, w, normalized_shape), w, b, eps)


@kernel("group_norm")
def group_norm(x: Tensor, w: Tensor, b: Tensor, num_groups: int, eps: float) -> Tensor:
    return F.group_norm(x, num_groups, w, b, eps)


@kernel("rms_norm")
def rms_norm(x: Tensor, w: Tensor, normalized_shape: Any, eps: float | None) -> Tensor:
    return F.rms_norm(x, _shape(x, w, normalized_shape), w, eps)

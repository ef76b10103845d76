"""Distances between rows in torch (autograd: `_cdist_backward`, `_pdist_backward`, `_euclidean_dist`'s)."""

from __future__ import annotations

import torch

from .kernels import Tensor, kernel


@kernel("cdist")
def cdist(x1: Tensor, x2: Tensor, p: float = 2.0, use_mm: bool = False) -> Tensor:
    # the reader decided the mode from the file's sizes (torch's rule); the graph's node says which
    mode = "use_mm_for_euclid_dist" if use_mm else "donot_use_mm_for_euclid_dist"
    return torch.cdist(x1, x2, p=p, compute_mode=mode)


@kernel("pdist")
def pdist(x: Tensor, p: float = 2.0) -> Tensor:
    return torch.pdist(x, p=p)

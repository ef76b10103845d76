"""Activation functions in torch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .kernels import Tensor, kernel


# -- activations ------------------------------------------------------------------------------
@kernel("step")
def step(z: Tensor) -> Tensor:
    return (z > 0).to(z.dtype)  # no grad_fn: autograd says no gradient flows, which the VJP turns into zeros


@kernel("sigmoid")
def sigmoid(z: Tensor) -> Tensor:
    return torch.sigmoid(z)


@kernel("tanh")
def tanh(z: Tensor) -> Tensor:
    return torch.tanh(z)


@kernel("relu")
def relu(z: Tensor) -> Tensor:
    return torch.relu(z)


@kernel("leaky_relu")
def leaky_relu(z: Tensor, negative_slope: float) -> Tensor:
    return F.leaky_relu(z, negative_slope)


@kernel("gelu")
def gelu(z: Tensor, approximate: str) -> Tensor:
    return F.gelu(z, approximate=approximate)


@kernel("silu")
def silu(z: Tensor, beta: float) -> Tensor:
    return F.silu(z) if beta == 1.0 else z * torch.sigmoid(beta * z)


@kernel("softmax")
def softmax(z: Tensor, axis: int) -> Tensor:
    return torch.softmax(z, dim=axis)


@kernel("log_softmax")
def log_softmax(z: Tensor, axis: int) -> Tensor:
    return torch.log_softmax(z, dim=axis)


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



@kernel("clamp")
def clamp(z: Tensor, min: float | None, max: float | None, inclusive: bool) -> Tensor:
    if min is None and max is None:
        return z.clone()  # torch.clamp refuses no bounds at all; the identity is what the op means
    if inclusive:
        return torch.clamp(z, min, max)
    # hardtanh's convention: where() passes the gradient only to the branch taken, so none flows at a bound
    inside = torch.ones_like(z, dtype=torch.bool)
    if min is not None:
        inside &= z > min
    if max is not None:
        inside &= z < max
    return torch.where(inside, z, torch.clamp(z, min, max).detach())


@kernel("shrink")
def shrink(z: Tensor, lambd: float, bias: float) -> Tensor:
    if lambd >= 0 and bias == lambd:
        return F.softshrink(z, lambd)
    if lambd >= 0 and bias == 0:
        return F.hardshrink(z, lambd)
    return torch.where(z > lambd, z - bias, torch.where(z < -lambd, z + bias, torch.zeros_like(z)))


@kernel("hardswish")
def hardswish(z: Tensor) -> Tensor:
    return F.hardswish(z)


@kernel("hardsigmoid")
def hardsigmoid(z: Tensor, alpha: float, beta: float) -> Tensor:
    if alpha == 1.0 / 6.0 and beta == 0.5:
        return F.hardsigmoid(z)
    t = alpha * z + beta
    return torch.where((t > 0) & (t < 1), t, torch.clamp(t, 0.0, 1.0).detach())


@kernel("elu")
def elu(z: Tensor, alpha: float, scale: float, input_scale: float) -> Tensor:
    if scale == 1.0 and input_scale == 1.0:
        return F.elu(z, alpha)
    return torch.ops.aten.elu(z, alpha, scale, input_scale)


@kernel("selu")
def selu(z: Tensor) -> Tensor:
    return F.selu(z)


@kernel("celu")
def celu(z: Tensor, alpha: float) -> Tensor:
    return F.celu(z, alpha)


@kernel("softplus")
def softplus(z: Tensor, beta: float, threshold: float) -> Tensor:
    return F.softplus(z, beta, threshold)


@kernel("mish")
def mish(z: Tensor) -> Tensor:
    return F.mish(z)


@kernel("erf")
def erf(z: Tensor) -> Tensor:
    return torch.erf(z)


@kernel("softsign")
def softsign(z: Tensor) -> Tensor:
    return F.softsign(z)


@kernel("log_sigmoid")
def log_sigmoid(z: Tensor) -> Tensor:
    return F.logsigmoid(z)

"""Batch, layer, group and RMS norm on NumPy, each VJP beside its forward.

All four standardise x over some axes and scale by γ; the mean/variance ones share one backward
(`_normalise_back`): x̂ = (x − μ)/σ with μ and σ functions of x, so ∂L/∂x has the two mean terms.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph.ops.norm import normalized_shape
from .kernels import Array, kernel


def _channel_axes(x: Array) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The axes batch_norm averages over (all but channels) and the shape a per-channel vector broadcasts as."""
    return (0, *range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _moments(x: Array, axes: tuple[int, ...]) -> tuple[Array, Array]:
    """The mean and the biased variance over `axes`, accumulated in float64 and rounded once to x's dtype, as
    torch's CPU norm kernels take them (Welford's moments, or sums in double). Exact where the values are equal:
    a constant row's mean is its value and its variance exactly 0, so x̂ is exactly 0 there as in torch, not a
    float32 mean's few-ulp error divided by √ε (2e-5 at 0.7). A second pass over the deviations makes the mean
    so: for equal values c the first mean is c off by a few ulps, which the deviations hold exactly."""
    wide = x.astype(np.float64, copy=False)
    mean = np.mean(wide, axis=axes, keepdims=True)
    mean = mean + np.mean(wide - mean, axis=axes, keepdims=True)
    deviation = wide - mean
    var = np.mean(deviation * deviation, axis=axes, keepdims=True)
    return mean.astype(x.dtype, copy=False), var.astype(x.dtype, copy=False)


def _normalise(x: Array, axes: tuple[int, ...], eps: float) -> tuple[Array, Array]:
    """x̂ and 1/√(σ² + ε) with the biased variance, as the PyTorch norms use to normalise."""
    mu, var = _moments(x, axes)
    inv = 1.0 / np.sqrt(var + eps)
    return (x - mu) * inv, inv


def _normalise_back(gxhat: Array, xhat: Array, inv: Array, axes: tuple[int, ...]) -> Array:
    """∂L/∂x through x̂ = (x − μ)/σ, where μ and σ depend on x too (the two mean terms)."""
    return inv * (gxhat - gxhat.mean(axis=axes, keepdims=True) - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True))


# -- batch norm ---------------------------------------------------------------------------------
@kernel("batch_norm")
def batch_norm(x: Array, w: Array, b: Array, running_mean: Array, running_var: Array, training: bool,
               momentum: float, eps: float) -> Array:
    axes, shape = _channel_axes(x)
    if training:
        return _scaled_and_shifted(x, w.reshape(shape), b.reshape(shape), *_moments(x, axes), eps)
    # x̂·γ + b with x̂ = (x − μ)/√(σ² + ε), in one buffer (the same operations in the same order, so the same bits)
    out = np.subtract(x, running_mean.reshape(shape))
    out /= np.sqrt(running_var.reshape(shape) + eps)
    out *= w.reshape(shape)
    out += b.reshape(shape)
    return out


def _scaled_and_shifted(x: Array, w: Array, b: Array, mean: Array, var: Array, eps: float) -> Array:
    """Training batch norm as torch's CPU kernel forms it: x·α + β with α = γ/√(σ² + ε) (the root in double) and
    β = b − μ·α, each multiplied and added with one rounding (the compiler fuses them into FMAs on x86-64 and ARM).
    So a constant channel's output is not exactly b there but b plus the rounding error of μ·α (2.7e-5 for 3.1),
    as torch's; layer and group norm subtract μ first and give exactly b."""
    alpha = (1.0 / np.sqrt(var.astype(np.float64) + eps)).astype(x.dtype) * w
    if x.dtype != np.float32:
        return np.asarray(x * alpha + (b - mean * alpha))
    beta = _fused(-mean, alpha, b)
    return _fused(x, alpha, beta)


def _fused(x: Array, a: Array, c: Array) -> Array:
    """x·a + c in float32 rounded once, as a fused multiply-add: a float32 product is exact in float64, so one
    float64 sum rounded to float32 is the FMA's result (but for the rare sum float64 rounds onto a float32 tie)."""
    return (x.astype(np.float64) * a.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


@batch_norm.gradient
def _(g: Array, x: Array, w: Array, b: Array, running_mean: Array, running_var: Array, out: Array,
      training: bool, momentum: float, eps: float) -> tuple[Any, ...]:
    axes, shape = _channel_axes(x)
    if training:
        xhat, inv = _normalise(x, axes, eps)
        gx = _normalise_back(g * w.reshape(shape), xhat, inv, axes)
    else:  # x̂ = (x − μ)·inv and ∂L/∂x = g·γ·inv, each in one buffer
        inv = 1.0 / np.sqrt(running_var.reshape(shape) + eps)
        xhat = np.subtract(x, running_mean.reshape(shape))
        xhat *= inv
        gx = np.multiply(g, w.reshape(shape))
        gx *= inv
    return gx, (g * xhat).sum(axis=axes), g.sum(axis=axes), None, None


def batch_norm_running_stats(x: Array, running_mean: Array, running_var: Array,
                             momentum: float = 0.1) -> tuple[Array, Array]:
    """The running statistics after one training batch, as PyTorch updates them (unbiased variance).

    The op itself does not update them: a step is a pure function of its inputs, so stepping back
    and forth stays exact. A trainer that wants eval mode to use fresh statistics calls this.
    """
    axes, _ = _channel_axes(x)
    n = x.size // x.shape[1]
    var = x.var(axis=axes) * (n / max(n - 1, 1))
    return (1 - momentum) * running_mean + momentum * x.mean(axis=axes), (1 - momentum) * running_var + momentum * var


# -- layer norm ---------------------------------------------------------------------------------
def _trailing_axes(x: Array, w: Array, attr: Any) -> tuple[int, ...]:
    """The last axes that layer_norm and rms_norm normalise over."""
    k = len(normalized_shape(x.shape, {"normalized_shape": attr}, w.shape))
    return tuple(range(x.ndim - k, x.ndim))


@kernel("layer_norm")
def layer_norm(x: Array, w: Array, b: Array, normalized_shape: Any, eps: float) -> Array:
    xhat, _ = _normalise(x, _trailing_axes(x, w, normalized_shape), eps)
    return xhat * w + b


@layer_norm.gradient
def _(g: Array, x: Array, w: Array, b: Array, out: Array, normalized_shape: Any, eps: float) -> tuple[Any, ...]:
    axes = _trailing_axes(x, w, normalized_shape)
    xhat, inv = _normalise(x, axes, eps)
    lead = tuple(range(axes[0]))
    return _normalise_back(g * w, xhat, inv, axes), (g * xhat).sum(axis=lead), g.sum(axis=lead)


# -- group norm ---------------------------------------------------------------------------------
def _grouped(x: Array, num_groups: int) -> Array:
    """x as (N, G, C/G · positions): each row of the last axis is one sample's group."""
    return x.reshape(x.shape[0], num_groups, -1)


@kernel("group_norm")
def group_norm(x: Array, w: Array, b: Array, num_groups: int, eps: float) -> Array:
    _, shape = _channel_axes(x)
    xhat, _ = _normalise(_grouped(x, num_groups), (2,), eps)
    return xhat.reshape(x.shape) * w.reshape(shape) + b.reshape(shape)


@group_norm.gradient
def _(g: Array, x: Array, w: Array, b: Array, out: Array, num_groups: int, eps: float) -> tuple[Any, ...]:
    axes, shape = _channel_axes(x)
    xhat, inv = _normalise(_grouped(x, num_groups), (2,), eps)
    gxhat = _grouped(g * w.reshape(shape), num_groups)
    gx = _normalise_back(gxhat, xhat, inv, (2,)).reshape(x.shape)
    return gx, (g * xhat.reshape(x.shape)).sum(axis=axes), g.sum(axis=axes)


# -- RMS norm -----------------------------------------------------------------------------------
def _rms_inverse(x: Array, axes: tuple[int, ...], eps: float | None) -> Array:
    """1/√(mean(x²) + ε); ε None is the dtype's machine epsilon, as torch's rms_norm."""
    eps = float(np.finfo(x.dtype).eps) if eps is None else eps
    return 1.0 / np.sqrt((x * x).mean(axis=axes, keepdims=True) + x.dtype.type(eps))


@kernel("rms_norm")
def rms_norm(x: Array, w: Array, normalized_shape: Any, eps: float | None) -> Array:
    return x * _rms_inverse(x, _trailing_axes(x, w, normalized_shape), eps) * w


@rms_norm.gradient
def _(g: Array, x: Array, w: Array, out: Array, normalized_shape: Any, eps: float | None) -> tuple[Any, ...]:
    axes = _trailing_axes(x, w, normalized_shape)
    inv = _rms_inverse(x, axes, eps)
    xhat = x * inv
    gxhat = g * w
    # no mean term: x̂ = x/RMS is not centred, only the RMS depends on every element
    gx = inv * (gxhat - xhat * (gxhat * xhat).mean(axis=axes, keepdims=True))
    return gx, (g * xhat).sum(axis=tuple(range(axes[0])))

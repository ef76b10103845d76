"""Activation functions on NumPy, each derivative written by hand beside its forward."""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from .kernels import Array, kernel

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


def _sigmoid(z: Array) -> Array:
    # The tutorial's own formula; exp overflows to inf for z < -709, and 1 / inf = 0 is the right limit.
    return 1.0 / (1.0 + np.exp(-z))


@kernel("step")
def step(z: Array) -> Array:
    return (z > 0).astype(z.dtype)


@step.local
def _(z: Array, a: Array) -> tuple[Array]:
    return (np.zeros_like(z),)


@kernel("sigmoid")
def sigmoid(z: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-z))  # as _sigmoid, inlined: one Python call less per use in training


@sigmoid.local
def _(z: Array, a: Array) -> tuple[Array]:
    return (a * (1.0 - a),)


@kernel("tanh")
def tanh(z: Array) -> Array:
    return np.tanh(z)


@tanh.local
def _(z: Array, a: Array) -> tuple[Array]:
    return (1.0 - a * a,)


@kernel("relu")
def relu(z: Array) -> Array:
    return np.maximum(z, 0).astype(z.dtype, copy=False)


@relu.local
def _(z: Array, a: Array) -> tuple[Array]:
    return ((z > 0).astype(z.dtype),)


@kernel("leaky_relu")
def leaky_relu(z: Array, negative_slope: float) -> Array:
    return np.where(z > 0, z, negative_slope * z).astype(z.dtype, copy=False)


@leaky_relu.local
def _(z: Array, a: Array, negative_slope: float) -> tuple[Array]:
    return (np.where(z > 0, 1.0, negative_slope).astype(z.dtype),)


@kernel("gelu")
def gelu(z: Array, approximate: str) -> Array:
    if approximate == "tanh":
        return 0.5 * z * (1.0 + np.tanh(_SQRT_2_OVER_PI * (z + _GELU_C * z**3)))
    return 0.5 * z * (1.0 + erf(z * _INV_SQRT_2))


@gelu.local
def _(z: Array, a: Array, approximate: str) -> tuple[Array]:
    if approximate == "tanh":
        t = np.tanh(_SQRT_2_OVER_PI * (z + _GELU_C * z**3))
        return (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * z * z),)
    cdf = 0.5 * (1.0 + erf(z * _INV_SQRT_2))
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
    return (cdf + z * pdf,)


@kernel("silu")
def silu(z: Array, beta: float) -> Array:
    return z * _sigmoid(beta * z)


@silu.local
def _(z: Array, a: Array, beta: float) -> tuple[Array]:
    s = _sigmoid(beta * z)
    return (s + beta * z * s * (1.0 - s),)


def _softmax(z: Array, axis: int) -> Array:
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@kernel("softmax")
def softmax(z: Array, axis: int) -> Array:
    return _softmax(z, axis)


@softmax.gradient
def _(g: Array, z: Array, a: Array, axis: int) -> tuple[Array]:
    return (a * (g - np.sum(g * a, axis=axis, keepdims=True)),)


@kernel("log_softmax")
def log_softmax(z: Array, axis: int) -> Array:
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


@log_softmax.gradient
def _(g: Array, z: Array, a: Array, axis: int) -> tuple[Array]:
    return (g - np.exp(a) * np.sum(g, axis=axis, keepdims=True),)

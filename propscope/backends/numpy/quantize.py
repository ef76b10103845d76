"""Quantization on NumPy, each derivative beside its forward: the grid as torch's fake-quant kernels and
onnxruntime's QuantizeLinear/DequantizeLinear compute it (`graph/ops/quantize.py` says which rounding comes from
where), the straight-through estimator as torch's `fake_quantize_*_cachemask_backward` (upstream × mask).

The scale and zero point arrive shaped to broadcast against x (one value, or one per channel along its axis).
"""

from __future__ import annotations

import numpy as np

from .kernels import Array, kernel


def steps(x: Array, scale: Array, inverse: bool) -> Array:
    """x in units of the grid's step: x·(1/s) with 1/s rounded to float32, as torch's kernels (`inv_scale =
    1.0f / scale`) and quantized_decomposed compute it; else x/s, as ONNX defines it."""
    if inverse:
        return x * (np.float32(1) / np.asarray(scale, dtype=np.float32)).astype(x.dtype)
    return x / scale


def levels(x: Array, scale: Array, zero_point: Array, qmin: int, qmax: int, inverse: bool) -> tuple[Array, Array]:
    """(round(x/s) + zp before the clamp, the integer level after it): np.rint rounds halves to even, as torch's
    nearbyint and onnxruntime do."""
    raw = np.rint(steps(x, scale, inverse)) + zero_point
    return raw, np.clip(raw, qmin, qmax)


def read_back(q: Array, scale: Array, zero_point: Array, float32_output: bool, dtype: np.dtype) -> Array:
    """(q − zp)·s: rounded to float32 where the runtime computes it so (the integer difference is exact in
    float32 below 2²⁴; a larger one is rounded once, as onnxruntime converts an int32 to float), else exact in
    the session's dtype."""
    diff = q - zero_point
    if float32_output:
        return (np.asarray(diff, dtype=np.float32) * np.asarray(scale, dtype=np.float32)).astype(dtype)
    return np.asarray(diff * scale, dtype=dtype)


def _dtype(x: Array) -> np.dtype:
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


@kernel("fake_quantize")
def fake_quantize(x: Array, scale: Array, zero_point: Array, qmin: int, qmax: int, inverse: bool,
                  float32_output: bool) -> Array:
    _, q = levels(x, scale, zero_point, qmin, qmax, inverse)
    return read_back(q, scale, zero_point, float32_output, _dtype(x))


@fake_quantize.local  # torch: dY * mask (a product: a NaN upstream stays NaN where clamped, as there)
def _(x: Array, scale: Array, zero_point: Array, y: Array, qmin: int, qmax: int, inverse: bool,
      float32_output: bool) -> tuple[Array, None, None]:
    raw, _ = levels(x, scale, zero_point, qmin, qmax, inverse)
    return ((raw >= qmin) & (raw <= qmax)).astype(_dtype(x)), None, None


@kernel("quantize")
def quantize(x: Array, scale: Array, zero_point: Array, qmin: int, qmax: int, inverse: bool,
             float32_output: bool) -> Array:
    return levels(x, scale, zero_point, qmin, qmax, inverse)[1].astype(_dtype(x))


@quantize.local
def _(x: Array, scale: Array, zero_point: Array, q: Array, qmin: int, qmax: int, inverse: bool,
      float32_output: bool) -> tuple[Array, None, None]:
    raw, _ = levels(x, scale, zero_point, qmin, qmax, inverse)
    inside = (raw >= qmin) & (raw <= qmax)
    return np.asarray(inside / scale, dtype=_dtype(x)), None, None


@kernel("dequantize")
def dequantize(q: Array, scale: Array, zero_point: Array, float32_output: bool) -> Array:
    return read_back(q, scale, zero_point, float32_output, _dtype(np.asarray(scale)))


@dequantize.local
def _(q: Array, scale: Array, zero_point: Array, y: Array, float32_output: bool) -> tuple[Array, Array, None]:
    return np.broadcast_to(scale, y.shape), np.broadcast_to(q - zero_point, y.shape).astype(y.dtype), None


def qparams(x: Array, qmin: int, qmax: int) -> tuple[Array, Array]:
    """(scale, zero point) of ONNX's DynamicQuantizeLinear, in x's dtype (float32 for a float32 model, as ONNX's
    reference computes them)."""
    dtype = _dtype(x)
    hi = np.maximum(np.asarray(0, dtype=dtype), x.max(initial=0)).astype(dtype)
    lo = np.minimum(np.asarray(0, dtype=dtype), x.min(initial=0)).astype(dtype)
    scale = np.asarray(1, dtype=dtype) if hi == lo else np.asarray((hi - lo) / dtype.type(qmax - qmin), dtype=dtype)
    zero = np.rint(np.clip(dtype.type(qmin) - lo / scale, qmin, qmax)).astype(dtype)
    return scale, zero


@kernel("choose_qparams")
def choose_qparams(x: Array, part: str, qmin: int, qmax: int) -> Array:
    scale, zero = qparams(x, qmin, qmax)
    return scale if part == "scale" else zero


@choose_qparams.gradient  # no gradient flows into the choice of the grid (x is data here)
def _(g: Array, x: Array, out: Array, part: str, qmin: int, qmax: int) -> tuple[None]:
    return (None,)

"""Quantization: a float tensor put on an integer grid and back, as quantized models compute it.

A quantized model stores integers q and computes with x ≈ (q − zp)·s: the scale s is the grid's step, the zero
point zp the integer that stands for 0. `quantize` rounds x onto the grid, `dequantize` reads the grid back as
floats, and `fake_quantize` does both at once: the float value the integer model would see, which is what
quantization-aware training (torch's `fake_quantize_per_tensor_affine`) and a QuantizeLinear→DequantizeLinear pair
of a QDQ ONNX file compute. A scale and zero point per channel (per axis) come shaped to broadcast along their
axis, (C, 1, 1) for NCHW, so every op here is elementwise.

Rounding to the grid has no useful derivative (0 almost everywhere), so training uses the *straight-through
estimator*: round is taken as the identity, and the gradient passes wherever the value lands inside the grid,
qmin ≤ round(x/s) + zp ≤ qmax, and is 0 where it was clamped. That is torch's definition (its backward is
upstream × that mask); `quantize` carries the same rule divided by s, so a quantize→dequantize chain composes to
it.

Two details follow the runtime a file comes from, as attributes: `inverse` rounds x·(1/s), with 1/s in float32,
as torch does (ONNX divides, x/s); `float32_output` rounds (q − zp)·s to float32, as onnxruntime, ONNX's
definition and torch's per-tensor kernel do (its per-channel kernel keeps the double product).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]

STE = "straight-through: round taken as the identity; 0 where clamped"
_IN_GRID = "1[qmin ≤ round(x/s) + zp ≤ qmax]"


def _on_grid(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    """x's shape; the scale and zero point must broadcast to it (one value, or one per channel along an axis)."""
    x = tuple(shapes[0])
    for role, shape in zip(("scale", "zero point"), shapes[1:], strict=False):
        try:
            fits = S.broadcast([x, tuple(shape)], {}) == x
        except ShapeError:
            fits = False
        if not fits:
            raise ShapeError(f"the {role} {S.fmt(tuple(shape))} does not broadcast to the tensor {S.fmt(x)}: one "
                             "value, or one per channel shaped along its axis")
    if int(attrs.get("qmin", 0)) > int(attrs.get("qmax", 255)):
        raise ShapeError(f"the grid's range is empty: qmin {attrs.get('qmin')} > qmax {attrs.get('qmax')}")
    return x


_GRID = {"qmin": 0, "qmax": 255, "inverse": False, "float32_output": True}

define(OpDef(
    "fake_quantize", ("x", "scale", "zero_point"), "y = (clamp(round(x/s) + zp, qmin, qmax) − zp) · s",
    {"x": f"∂y/∂x = {_IN_GRID}  ({STE})"},
    _on_grid, "fq", elementwise=True, nondifferentiable=frozenset({"scale", "zero_point"}),
    default_attrs=_GRID,
    summary="x rounded onto the integer grid of step s (zero point zp, from qmin to qmax) and read back as a "
            "float: what the quantized model sees. torch.fake_quantize_per_tensor_affine and _per_channel_, "
            "a QuantizeLinear→DequantizeLinear pair in ONNX. Rounds halves to even; the gradient is torch's "
            "straight-through estimator",
))

define(OpDef(
    "quantize", ("x", "scale", "zero_point"), "q = clamp(round(x/s) + zp, qmin, qmax)",
    {"x": f"∂q/∂x = {_IN_GRID} / s  ({STE})"},
    _on_grid, "q", elementwise=True, nondifferentiable=frozenset({"scale", "zero_point"}),
    default_attrs=_GRID,
    summary="x as integers on the grid of step s (zero point zp, from qmin to qmax), held as floats: ONNX "
            "QuantizeLinear, DynamicQuantizeLinear's output. Rounds halves to even; the gradient is the "
            "straight-through estimator, so that dequantize(quantize(x)) has fake_quantize's",
))

define(OpDef(
    "dequantize", ("q", "scale", "zero_point"), "y = (q − zp) · s",
    {"q": "∂y/∂q = s", "scale": "∂y/∂s = q − zp"},
    _on_grid, "dq", elementwise=True, nondifferentiable=frozenset({"zero_point"}),
    default_attrs={"float32_output": True},
    summary="integers on a grid read back as floats: ONNX DequantizeLinear of a computed tensor (a constant "
            "integer weight is read as a float parameter instead, so that it has a gradient)",
))


def _scalar(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    if attrs.get("part", "scale") not in ("scale", "zero_point"):
        raise ShapeError(f"choose_qparams gives the scale or the zero_point, not {attrs.get('part')!r}")
    return ()


define(OpDef(
    "choose_qparams", ("x",),
    "s = (max(x, 0) − min(x, 0)) / (qmax − qmin)  (1 if that is 0);  zp = clamp(round(qmin − min(x, 0)/s), qmin, "
    "qmax)",
    {"x": "none: the grid is chosen from the batch, and the gradient passes through the values on it"},
    _scalar, "qp", nondifferentiable=frozenset({"x"}), default_attrs={"part": "scale", "qmin": 0, "qmax": 255},
    summary="the scale (part=scale) or zero point (part=zero_point) of a grid spanning x and 0, chosen from the "
            "batch as ONNX's DynamicQuantizeLinear (onnxruntime's quantize_dynamic) does; data for quantize, so no "
            "gradient flows into it",
))

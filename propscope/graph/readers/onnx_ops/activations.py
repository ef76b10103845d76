"""ONNX activations, one catalog op each (PRelu and ThresholdedRelu as two steps); constants fold.

The plain elementwise functions (Relu, Exp, Abs, ...) are in `elementwise.py`.
"""

from __future__ import annotations

import math
from typing import Any

from ..onnx_reader import Ctx, Reader, onnx_op
from .elementwise import const, op

# ONNX's SELU constants, as torch.nn.SELU's to float32 precision; the catalog's selu uses torch's exact ones
_SELU_ALPHA, _SELU_GAMMA = 1.6732632423543772, 1.0507009873554805


def _attr(ctx: Ctx, name: str, default: float) -> float:
    return float(ctx.attrs.get(name, default))


@onnx_op("LeakyRelu", "Gelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish",
         "ThresholdedRelu", "Swish", "PRelu")
def _activation(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    kind = ctx.op
    if kind == "LeakyRelu":
        return op(r, ctx, "leaky_relu", x, negative_slope=_attr(ctx, "alpha", 0.01))
    if kind == "Gelu":
        return op(r, ctx, "gelu", x, approximate=str(ctx.attrs.get("approximate", "none")))
    if kind == "Elu":
        return op(r, ctx, "elu", x, alpha=_attr(ctx, "alpha", 1.0))
    if kind == "Selu":
        alpha, gamma = _attr(ctx, "alpha", _SELU_ALPHA), _attr(ctx, "gamma", _SELU_GAMMA)
        if math.isclose(alpha, _SELU_ALPHA, rel_tol=1e-6) and math.isclose(gamma, _SELU_GAMMA, rel_tol=1e-6):
            return op(r, ctx, "selu", x)
        return op(r, ctx, "elu", x, alpha=alpha, scale=gamma)  # λ·z, λ·α·(e^z − 1): elu with a scale
    if kind == "Celu":
        return op(r, ctx, "celu", x, alpha=_attr(ctx, "alpha", 1.0))
    if kind == "HardSigmoid":
        return op(r, ctx, "hardsigmoid", x, alpha=_attr(ctx, "alpha", 0.2), beta=_attr(ctx, "beta", 0.5))
    if kind == "HardSwish":
        return op(r, ctx, "hardswish", x)
    if kind == "Softplus":
        return op(r, ctx, "softplus", x)
    if kind == "Softsign":
        return op(r, ctx, "softsign", x)
    if kind == "Mish":
        return op(r, ctx, "mish", x)
    if kind == "Swish":
        return op(r, ctx, "silu", x, beta=_attr(ctx, "alpha", 1.0))
    if kind == "ThresholdedRelu":  # z · 1[z > α]
        alpha = _attr(ctx, "alpha", 1.0)
        shifted = op(r, ctx, "sub", x, const(r, ctx, alpha, "alpha"), suffix="shift")
        return op(r, ctx, "mul", x, op(r, ctx, "step", shifted, suffix="above"))
    return _prelu(r, ins, ctx)


def _prelu(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """PRelu: max(0, z) + slope · min(0, z), the slope a learned tensor broadcast against z."""
    x = r.node(ins[0], ctx)
    slope = r.node(ins[1], ctx, hint="slope")
    pos = op(r, ctx, "relu", x, suffix="pos")
    neg = op(r, ctx, "minimum", x, const(r, ctx, 0.0, "zero"), suffix="neg")
    return op(r, ctx, "add", pos, op(r, ctx, "mul", slope, neg, suffix="scaled"))


@onnx_op("Softmax", "LogSoftmax")
def _softmax(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    name = "softmax" if ctx.op == "Softmax" else "log_softmax"
    rank = len(x.shape)
    axis = int(ctx.attrs.get("axis", -1 if ctx.opset >= 13 else 1)) % max(rank, 1)
    if ctx.opset >= 13 or axis == rank - 1:
        return op(r, ctx, name, x, axis=axis - rank)
    # before opset 13: softmax over all axes from `axis` on, as one flattened row per leading index
    rows = math.prod(x.shape[:axis])
    flat = r.b.op("reshape", x, name=f"{ctx.name}.rows", module=ctx.module, attrs={"shape": (rows, -1)})
    soft = op(r, ctx, name, flat, suffix="flat", axis=-1)
    return r.b.op("reshape", soft, name=ctx.name, module=ctx.module, attrs={"shape": x.shape})


"""ONNX activations, one catalog op each (PRelu and ThresholdedRelu as two steps); constants fold.

The plain elementwise functions (Relu, Exp, Abs, ...) are in `elementwise.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import Unmapped
from ..onnx_reader import Ctx, Reader, onnx_op
from .elementwise import const, op

# ONNX's SELU constants, as torch.nn.SELU's to float32 precision; the catalog's selu uses torch's exact ones
_SELU_ALPHA, _SELU_GAMMA = 1.6732632423543772, 1.0507009873554805


def _attr(ctx: Ctx, name: str, default: float) -> float:
    return float(ctx.attrs.get(name, default))


@onnx_op("LeakyRelu", "Gelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish",
         "ThresholdedRelu", "Swish", "PRelu", "Shrink")
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
    if kind == "Shrink":
        return op(r, ctx, "shrink", x, lambd=_attr(ctx, "lambd", 0.5), bias=_attr(ctx, "bias", 0.0))
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


@onnx_op("SwiGLU")
def _swiglu(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """SwiGLU (opset 28; Llama's gated MLP): Swish_α(A) · B, the gate's swish then the product with the value,
    each a step of its own (the gate's derivative is swish's, the value's is the gate)."""
    gate, value = r.node(ins[0], ctx, hint="gate"), r.node(ins[1], ctx, hint="value")
    if gate.shape != value.shape:
        raise Unmapped(f"SwiGLU of a gate {gate.shape} and a value {value.shape} (ONNX: the same shape)")
    swish = op(r, ctx, "silu", gate, suffix="gate", beta=_attr(ctx, "alpha", 1.0))
    return op(r, ctx, "mul", swish, value)


@onnx_op("Softmax", "LogSoftmax", "Hardmax")
def _softmax(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """From opset 13 along one axis (default −1); before it, over all the axes from `axis` (default 1) on, the input
    read as a matrix of one row per index of the axes before it: at axis 1 of (N, C, H, W) one softmax over C·H·W
    values per sample, not one over C per pixel."""
    x = r.node(ins[0], ctx)
    rank = len(x.shape)
    axis = int(ctx.attrs.get("axis", -1 if ctx.opset >= 13 else 1)) % max(rank, 1)
    if ctx.opset >= 13 or axis == rank - 1:
        return _along(r, ctx, x, axis - rank, "")
    rows = (-1, math.prod(x.shape[axis:])) if axis else (1, -1)  # the batch axis stays free where it leads a row
    flat = r.b.op("reshape", x, name=f"{ctx.name}.rows", module=ctx.module, attrs={"shape": rows})
    done = _along(r, ctx, flat, -1, "flat")
    return r.b.op("reshape", done, name=ctx.name, module=ctx.module, attrs={"shape": (-1, *x.shape[1:]) if axis
                                                                          else x.shape})


def _along(r: Reader, ctx: Ctx, x: Any, axis: int, suffix: str) -> Any:
    if ctx.op != "Hardmax":
        return op(r, ctx, "softmax" if ctx.op == "Softmax" else "log_softmax", x, suffix=suffix, axis=axis)
    # Hardmax: 1 at the first largest value along the axis, 0 elsewhere (no gradient flows, as through argmax)
    tag = f"{suffix}." if suffix else ""
    picked = op(r, ctx, "argmax", x, suffix=f"{tag}argmax", axis=axis, keepdims=True, select_last_index=False)
    size = x.shape[axis]
    positions = np.arange(size).reshape(size, *(1,) * (-axis - 1))
    mask = op(r, ctx, "compare", picked, r.b.const(positions, ctx.module, "positions"), suffix=f"{tag}is_max",
              op="eq")
    return op(r, ctx, "where", mask, const(r, ctx, 1.0, "one"), const(r, ctx, 0.0, "zero"), suffix=suffix)


# -- onnxruntime's fused activations (com.microsoft) ---------------------------------------------------------------
def _biased(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """X, or X + bias where the op takes an optional bias (added before the activation)."""
    x = r.node(ins[0], ctx)
    if len(ins) < 2 or ins[1] is None:
        return x
    return op(r, ctx, "add", x, r.node(ins[1], ctx, hint="bias"), suffix="biased")


@onnx_op("com.microsoft.Gelu", "com.microsoft.BiasGelu")
def _ms_gelu(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """GELU, z · Φ(z) with the error function (BiasGelu: of A + B)."""
    return op(r, ctx, "gelu", _biased(r, ins, ctx), approximate="none")


@onnx_op("com.microsoft.FastGelu")
def _fast_gelu(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """0.5·z·(1 + tanh(0.797885·z + 0.035677·z³)) of X (+ bias): GELU's tanh form, √(2/π) and 0.044715·√(2/π)."""
    return op(r, ctx, "gelu", _biased(r, ins, ctx), approximate="tanh")


@onnx_op("com.microsoft.QuickGelu")
def _quick_gelu(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """z · σ(α·z), α = 1.702 by default (CLIP's quick_gelu): swish with β = α."""
    return op(r, ctx, "silu", r.node(ins[0], ctx), beta=_attr(ctx, "alpha", 1.702))


@onnx_op("com.microsoft.BiasSplitGelu")
def _bias_split_gelu(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Stable Diffusion's GEGLU, fused: X + bias split in two halves along the last axis, left · GELU(right) with
    the error function."""
    z = _biased(r, ins, ctx)
    half = z.shape[-1] // 2
    if z.shape[-1] % 2:
        raise Unmapped(f"BiasSplitGelu of an odd last axis {z.shape}")
    axis = len(z.shape) - 1
    left, right = (op(r, ctx, "slice", z, suffix=tag, axes=(axis,), starts=(start,), stops=(start + half,),
                      steps=(1,)) for tag, start in (("left", 0), ("right", half)))
    gate = op(r, ctx, "gelu", right, suffix="gelu", approximate="none")
    return op(r, ctx, "mul", left, gate)


# onnxruntime's fused activations (its session optimizer's Conv and Gemm + activation fusions): name -> the
# parameters the fusion writes, and the catalog op with its attributes made of them
FusedActivation = tuple[str, dict[str, Any]]
FUSED_ACTIVATIONS: dict[str, tuple[tuple[str, ...], Callable[[list[float]], FusedActivation]]] = {
    "Relu": ((), lambda p: ("relu", {})),
    "Tanh": ((), lambda p: ("tanh", {})),
    "Sigmoid": ((), lambda p: ("sigmoid", {})),
    "LeakyRelu": (("alpha",), lambda p: ("leaky_relu", {"negative_slope": p[0]})),
    "HardSigmoid": (("alpha", "beta"), lambda p: ("hardsigmoid", {"alpha": p[0], "beta": p[1]})),
    "Clip": (("min", "max"), lambda p: ("clamp", {"min": p[0], "max": p[1]})),
}


def fused_activation(ctx: Ctx, activation: str, params: list[Any]) -> FusedActivation | None:
    """The catalog op (and its attributes) of a fused activation with its parameters, None for none; refused by name
    where propscope reads no such activation, or where its parameters are not the ones it takes (onnxruntime refuses
    such a file too: there are no defaults to make up). Checked before the fused op's other steps are built."""
    if not activation:
        return None
    known = FUSED_ACTIVATIONS.get(activation)
    if known is None or len(params) != len(known[0]):
        takes = ", ".join(f"{name} ({', '.join(names)})" if names else name
                          for name, (names, _) in FUSED_ACTIVATIONS.items())
        raise Unmapped(f"{ctx.op} with activation {activation!r} and parameters {params} (propscope reads {takes})")
    # stored as float32: 0.2 read back as the 0.2 the exporter saw, as the reader does for a single float
    return known[1]([float(str(np.float32(v))) for v in params])


def apply_fused_activation(r: Reader, ctx: Ctx, y: Node, activation: FusedActivation | None) -> Node:
    """The fused activation as a step of its own after `y` (`y` itself where there is none)."""
    if activation is None:
        return y
    name, attrs = activation
    return op(r, ctx, name, y, **attrs)

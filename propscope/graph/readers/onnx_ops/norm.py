"""ONNX normalisations: BatchNormalization (inference and training mode; per activation, spatial=0, before opset
9), LayerNormalization, InstanceNormalization (the catalog's group_norm with one group per channel),
GroupNormalization, RMSNormalization and LRN (local response normalisation, as steps); MeanVarianceNormalization and
LpNormalization as the steps they are made of.

The optional statistics outputs (LayerNormalization's Mean and InvStdDev, a training BatchNorm's new
running mean and variance) are built, as mean/var steps, only when something uses them.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import Lazy, Missing, Unmapped
from ..onnx_reader import Ctx, Reader, onnx_op
from .elementwise import const, op


def _eps(ctx: Ctx) -> float:
    return float(ctx.attrs.get("epsilon", 1e-5))


def _first_axis(ctx: Ctx, x: Node) -> int:
    """The first of the axes a layer or RMS norm normalises over (`axis`, default the last), refused out of range."""
    axis = int(ctx.attrs.get("axis", -1))
    if not -len(x.shape) <= axis < len(x.shape):
        raise Unmapped(f"{ctx.op} over axis {axis} of a {len(x.shape)}-D input")
    return axis % len(x.shape)


def _stats(r: Reader, ctx: Ctx, x: Node, axes: tuple[int, ...], what: str) -> tuple[Node, Node]:
    """The mean and the biased variance of `x` over `axes`, kept as size-1 axes."""
    mean = op(r, ctx, "mean", x, suffix=f"{what}_mean", axis=axes, keepdims=True)
    var = op(r, ctx, "var", x, suffix=f"{what}_var", axis=axes, keepdims=True, correction=0.0)
    return mean, var


@onnx_op("BatchNormalization")
def _batch_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    scale, bias = r.node(ins[1], ctx), r.node(ins[2], ctx)
    mean, var = r.node(ins[3], ctx, kind="constant"), r.node(ins[4], ctx, kind="constant")
    momentum, eps = float(ctx.attrs.get("momentum", 0.9)), _eps(ctx)
    # before opset 7 `is_test` says inference (its default, 0, is training); from opset 14 `training_mode` says training
    training = bool(ctx.attrs.get("training_mode", 0)) if ctx.opset >= 7 else not ctx.attrs.get("is_test", 0)
    if ctx.opset < 9 and not int(ctx.attrs.get("spatial", 1)):
        if training:
            raise Unmapped("BatchNormalization with spatial=0 in training mode")
        return _per_activation(r, ctx, x, scale, bias, mean, var, eps)
    node = r.b.op("batch_norm", x, scale, bias, mean, var, name=ctx.name, module=ctx.module,
                  attrs={"training": training, "momentum": 1.0 - momentum, "eps": eps})
    if not training:
        return [node, Missing("running mean"), Missing("running variance")]

    def running(index: int) -> Node:
        """ONNX's update: running · momentum + batch statistic · (1 − momentum), with the biased batch
        variance (PyTorch's running variance takes the unbiased one)."""
        axes = tuple(i for i in range(len(x.shape)) if i != 1)
        batch_mean, batch_var = _stats(r, ctx, x, axes, "batch")
        stat = batch_mean if index == 0 else batch_var
        flat = r.b.op("reshape", stat, name=f"{ctx.name}.batch_{'mean' if index == 0 else 'var'}_c",
                      module=ctx.module, attrs={"shape": (x.shape[1],)})
        old = mean if index == 0 else var
        kept = op(r, ctx, "mul", old, const(r, ctx, momentum, "momentum"), suffix=f"kept{index}")
        new = op(r, ctx, "mul", flat, const(r, ctx, 1.0 - momentum, "1-momentum"), suffix=f"new{index}")
        return op(r, ctx, "add", kept, new, suffix="running_mean" if index == 0 else "running_var")

    return [node, Lazy(partial(running, 0)), Lazy(partial(running, 1))]


def _per_activation(r: Reader, ctx: Ctx, x: Node, scale: Node, bias: Node, mean: Node, var: Node, eps: float) -> Any:
    """BatchNormalization with spatial=0 (opsets 1 to 8): statistics, scale and bias per activation, each of shape
    (C, D1, ...) or anything that broadcasts so; (x − mean) / √(var + ε) · scale + bias as elementwise steps."""
    centred = op(r, ctx, "sub", x, mean, suffix="centred")
    spread = op(r, ctx, "sqrt", op(r, ctx, "add", var, const(r, ctx, eps, "eps"), suffix="var_eps"), suffix="std")
    normalized = op(r, ctx, "div", centred, spread, suffix="normalized")
    return op(r, ctx, "add", op(r, ctx, "mul", normalized, scale, suffix="scaled"), bias)


@onnx_op("LRN")
def _lrn(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Local response normalisation (AlexNet, GoogLeNet and the Model Zoo's Caffe models): x / (bias + α/size ·
    Σ x²)^β, the sum over the `size` channels from ⌊(size − 1)/2⌋ before to ⌈(size − 1)/2⌉ after, in the steps
    torch's LocalResponseNorm takes: the squares zero-padded along the channels and averaged by a pool `size` wide
    (for an even size torch pads one channel more before, ONNX after: the file's definition is followed)."""
    x = r.node(ins[0], ctx)
    if len(x.shape) < 3:
        raise Unmapped(f"LRN of a {len(x.shape)}-D tensor (it takes (batch, channels, ...))")
    size = int(ctx.attrs["size"])
    if size < 1:
        raise Unmapped(f"LRN size {size}")
    alpha, beta = float(ctx.attrs.get("alpha", 1e-4)), float(ctx.attrs.get("beta", 0.75))
    k = float(ctx.attrs.get("bias", 1.0))
    channels, rest = x.shape[1], math.prod(x.shape[2:])
    square = op(r, ctx, "pow", x, suffix="square", exponent=2.0)
    planes = op(r, ctx, "reshape", square, suffix="planes", shape=(-1, 1, channels, rest))
    padded = op(r, ctx, "pad", planes, suffix="padded", pads=((0, 0), (0, 0), ((size - 1) // 2, size // 2), (0, 0)),
                mode="constant", value=0.0)
    mean = op(r, ctx, "avg_pool2d", padded, suffix="window_mean", kernel_size=(size, 1), stride=1, padding=0,
              ceil_mode=False, count_include_pad=True)
    window = op(r, ctx, "reshape", mean, suffix="window", shape=(-1, *x.shape[1:]))
    scaled = op(r, ctx, "mul", window, const(r, ctx, alpha, "alpha"), suffix="scaled")
    base = op(r, ctx, "add", scaled, const(r, ctx, k, "bias"), suffix="base")
    return op(r, ctx, "div", x, op(r, ctx, "pow", base, suffix="divisor", exponent=beta))


@onnx_op("MeanVarianceNormalization")
def _mean_variance(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """(x − mean) / (std + 1e-9) over `axes` (default (0, 2, 3): per channel over the batch and the image), as the
    mean, the centring, the population standard deviation, its ε and the division (ONNX's function computes the
    variance as E[x²] − E[x]²; the same number, without the cancellation). A spread of 0 gets std's gradient 0."""
    x = r.node(ins[0], ctx)
    rank = len(x.shape)
    given = [int(a) for a in ctx.attrs.get("axes", (0, 2, 3))]
    if not all(-rank <= a < rank for a in given):
        raise Unmapped(f"MeanVarianceNormalization over axes {given} of a {rank}-D input")
    axes = tuple(sorted({a % rank for a in given}))
    mean = op(r, ctx, "mean", x, suffix="mean", axis=axes, keepdims=True)
    centred = op(r, ctx, "sub", x, mean, suffix="centred")
    std = op(r, ctx, "std", x, suffix="std", axis=axes, keepdims=True, correction=0.0)
    spread = op(r, ctx, "add", std, const(r, ctx, 1e-9, "eps"), suffix="std_eps")
    return op(r, ctx, "div", centred, spread)


@onnx_op("LpNormalization")
def _lp_normalization(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """x / ‖x‖_p along `axis` (p 1 or 2): the catalog's vector norm, then the division; a zero vector stays 0 as
    ONNX defines it (the divisor is 1 there, and the norm's gradient at a zero vector is 0, as torch's)."""
    x = r.node(ins[0], ctx)
    rank = len(x.shape)
    axis = int(ctx.attrs.get("axis", -1))
    if not -rank <= axis < rank:
        raise Unmapped(f"LpNormalization along axis {axis} of a {rank}-D input")
    p = int(ctx.attrs.get("p", 2))
    if p not in (1, 2):
        raise Unmapped(f"LpNormalization with p = {p} (ONNX defines p = 1 and 2)")
    norm = op(r, ctx, "vector_norm", x, suffix="norm", axis=axis % rank, keepdims=True, ord=float(p))
    empty = op(r, ctx, "compare", norm, const(r, ctx, 0.0, "zero"), suffix="is_zero", op="eq")
    divisor = op(r, ctx, "where", empty, const(r, ctx, 1.0, "one"), norm, suffix="divisor")
    return op(r, ctx, "div", x, divisor)


def _affine(r: Reader, ctx: Ctx, y: Node, scale: Any, bias: Any) -> Node:
    """y · scale + bias with ONNX's broadcasting, for scales the fused op cannot take."""
    out = op(r, ctx, "mul", y, r.node(scale, ctx, hint="scale"), suffix="scaled")
    if bias is None:
        return out
    return op(r, ctx, "add", out, r.node(bias, ctx, hint="bias"), suffix="shifted")


@onnx_op("LayerNormalization")
def _layer_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    axis = _first_axis(ctx, x)
    norm = x.shape[axis:]
    eps = _eps(ctx)
    scale, bias = ins[1], ins[2] if len(ins) > 2 else None
    if r.shape(scale) == norm and (bias is None or r.shape(bias) == norm):
        w = r.node(scale, ctx)
        b = r.b.const(np.zeros(norm), ctx.module, "bias") if bias is None else r.node(bias, ctx)
        node = r.b.op("layer_norm", x, w, b, name=ctx.name, module=ctx.module,
                      attrs={"normalized_shape": norm, "eps": eps})
    else:  # a scale broadcast over the normalized axes: the plain normalisation, then the affine step
        ones, zeros = (r.b.const(f(norm), ctx.module, hint) for f, hint in ((np.ones, "ones"), (np.zeros, "zeros")))
        plain = r.b.op("layer_norm", x, ones, zeros, name=f"{ctx.name}.normalized", module=ctx.module,
                       attrs={"normalized_shape": norm, "eps": eps})
        node = _affine(r, ctx, plain, scale, bias)
    axes = tuple(range(axis, len(x.shape)))

    def mean() -> Node:
        return op(r, ctx, "mean", x, suffix="Mean", axis=axes, keepdims=True)

    def inv_std() -> Node:
        var = op(r, ctx, "var", x, suffix="var", axis=axes, keepdims=True, correction=0.0)
        return op(r, ctx, "rsqrt", op(r, ctx, "add", var, const(r, ctx, eps, "eps"), suffix="var_eps"),
                  suffix="InvStdDev")

    return [node, Lazy(mean), Lazy(inv_std)]


@onnx_op("InstanceNormalization")
def _instance_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    if len(x.shape) < 3:
        raise Unmapped(f"InstanceNormalization of a {len(x.shape)}-D tensor (it takes (batch, channels, ...))")
    return r.b.op("group_norm", x, r.node(ins[1], ctx), r.node(ins[2], ctx), name=ctx.name, module=ctx.module,
                  attrs={"num_groups": x.shape[1], "eps": _eps(ctx)})


@onnx_op("GroupNormalization")
def _group_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    groups = int(ctx.attrs["num_groups"])
    channels = x.shape[1]
    attrs = {"num_groups": groups, "eps": _eps(ctx)}
    if r.shape(ins[1]) == (channels,) and r.shape(ins[2]) == (channels,):
        return r.b.op("group_norm", x, r.node(ins[1], ctx), r.node(ins[2], ctx), name=ctx.name, module=ctx.module,
                      attrs=attrs)
    if r.shape(ins[1]) != (groups,) or r.shape(ins[2]) != (groups,):
        raise Unmapped(f"GroupNormalization scale {r.shape(ins[1])} and bias {r.shape(ins[2])} (one per channel "
                       "or, before opset 21, one per group)")
    # opset 18: one scale and bias per group; the plain normalisation, then the affine step per group
    ones, zeros = r.b.const(np.ones(channels), ctx.module, "ones"), r.b.const(np.zeros(channels), ctx.module, "zeros")
    plain = r.b.op("group_norm", x, ones, zeros, name=f"{ctx.name}.normalized", module=ctx.module, attrs=attrs)
    per_group = r.b.op("reshape", plain, name=f"{ctx.name}.groups", module=ctx.module,
                       attrs={"shape": (x.shape[0], groups, -1)})
    scale, bias = (r.b.op("reshape", r.node(v, ctx, hint=h), name=f"{ctx.name}.{h}_g", module=ctx.module,
                          attrs={"shape": (groups, 1)}) for v, h in ((ins[1], "scale"), (ins[2], "bias")))
    shifted = _affine(r, ctx, per_group, scale, bias)
    return r.b.op("reshape", shifted, name=ctx.name, module=ctx.module, attrs={"shape": x.shape})


@onnx_op("RMSNormalization")
def _rms_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    axis = _first_axis(ctx, x)
    norm = x.shape[axis:]
    eps = _eps(ctx)
    scale = ins[1]
    if r.shape(scale) == norm:
        return r.b.op("rms_norm", x, r.node(scale, ctx), name=ctx.name, module=ctx.module,
                      attrs={"normalized_shape": norm, "eps": eps})
    plain = r.b.op("rms_norm", x, r.b.const(np.ones(norm), ctx.module, "ones"), name=f"{ctx.name}.normalized",
                   module=ctx.module, attrs={"normalized_shape": norm, "eps": eps})
    if math.prod(r.shape(scale)) == 0:
        raise Unmapped("an empty RMSNormalization scale")
    return _affine(r, ctx, plain, scale, None)


# -- onnxruntime's fused normalisations (com.microsoft; SimplifiedLayerNormalization in the default domain) ------
# Their epsilon defaults are onnxruntime's: 1e-12 for the Skip* ops, 1e-5 for SimplifiedLayerNormalization.
def _residual_sum(r: Reader, ins: list[Any], ctx: Ctx, bias: Any) -> Node:
    """input + skip (+ bias): the residual sum the Skip* ops normalize, as its steps; skip may lack the batch axis."""
    total = op(r, ctx, "add", r.node(ins[0], ctx), r.node(ins[1], ctx, hint="skip"), suffix="skip_sum")
    if bias is None:
        return total
    return op(r, ctx, "add", total, r.node(bias, ctx, hint="bias"), suffix="input_skip_bias_sum")


def _statistic_refused(what: str, ctx: Ctx) -> Missing:
    return Missing(f"{ctx.op}'s {what} output (propscope builds its normalized output and input_skip_bias_sum)")


@onnx_op("com.microsoft.SkipLayerNormalization")
def _skip_layer_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """LayerNorm(input + skip + bias) · γ + β over the last axis (BERT's residual and its LayerNorm, fused): the
    sums, then one layer_norm step; the optional sum output is the residual sum itself."""
    ins = [*ins, None, None][:5]
    total = _residual_sum(r, ins, ctx, ins[4])
    hidden = total.shape[-1:]
    if r.shape(ins[2]) != hidden or (ins[3] is not None and r.shape(ins[3]) != hidden):
        raise Unmapped(f"SkipLayerNormalization gamma {r.shape(ins[2])} for a hidden size of {hidden[0]}")
    beta = r.b.const(np.zeros(hidden), ctx.module, "no_beta") if ins[3] is None else r.node(ins[3], ctx)
    node = r.b.op("layer_norm", total, r.node(ins[2], ctx), beta, name=ctx.name, module=ctx.module,
                  attrs={"normalized_shape": hidden, "eps": float(ctx.attrs.get("epsilon", 1e-12))})
    return [node, _statistic_refused("mean", ctx), _statistic_refused("inv_std_var", ctx), total]


@onnx_op("com.microsoft.SkipSimplifiedLayerNormalization")
def _skip_simplified_layer_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """RMSNorm(input + skip + bias) · γ over the last axis (T5's and LLaMA's residual and RMSNorm, fused)."""
    ins = [*ins, None][:4]
    total = _residual_sum(r, ins, ctx, ins[3])
    hidden = total.shape[-1:]
    if r.shape(ins[2]) != hidden:
        raise Unmapped(f"SkipSimplifiedLayerNormalization gamma {r.shape(ins[2])} for a hidden size of {hidden[0]}")
    node = r.b.op("rms_norm", total, r.node(ins[2], ctx), name=ctx.name, module=ctx.module,
                  attrs={"normalized_shape": hidden, "eps": float(ctx.attrs.get("epsilon", 1e-12))})
    return [node, _statistic_refused("mean", ctx), _statistic_refused("inv_std_var", ctx), total]


@onnx_op("SimplifiedLayerNormalization")
def _simplified_layer_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """onnxruntime's RMSNorm in the default domain (what its optimizer writes for T5 and LLaMA): the catalog's
    rms_norm over the axes from `axis` on; the optional inv_std_var output is refused where used."""
    x = r.node(ins[0], ctx)
    axis = _first_axis(ctx, x)
    norm = x.shape[axis:]
    if r.shape(ins[1]) != norm:
        raise Unmapped(f"SimplifiedLayerNormalization scale {r.shape(ins[1])} for normalized axes {norm}")
    node = r.b.op("rms_norm", x, r.node(ins[1], ctx), name=ctx.name, module=ctx.module,
                  attrs={"normalized_shape": norm, "eps": _eps(ctx)})
    return [node, Missing("SimplifiedLayerNormalization's inv_std_var output (propscope builds its normalized "
                          "output)")]


# -- onnxruntime's group norms (Stable Diffusion's UNet and VAE; com.microsoft, NHWC unless channels_last=0) -----
def _ms_group_norm_of(r: Reader, ctx: Ctx, x: Node, gamma: Any, beta: Any) -> Node:
    """GroupNorm(x) · γ + β with `groups` groups of channels, then SiLU where activation = 1: the catalog's
    group_norm takes (N, C, ...), so an NHWC input is moved to NCHW and back around it."""
    channels_last = bool(ctx.attrs.get("channels_last", 1))
    activation = int(ctx.attrs.get("activation", 0))
    groups = int(ctx.attrs.get("groups", 0))
    if groups < 1:
        raise Unmapped(f"{ctx.op} with groups {groups} (at least 1 group)")
    channels = x.shape[-1] if channels_last else x.shape[1]
    if len(x.shape) != 4 or activation not in (0, 1) or channels % groups:
        raise Unmapped(f"{ctx.op} of a {x.shape} input with {groups} groups and activation {activation} (propscope "
                       "reads 4-D inputs, activation 0 or 1: SiLU)")
    if r.shape(gamma) != (channels,) or r.shape(beta) != (channels,):
        raise Unmapped(f"{ctx.op} gamma {r.shape(gamma)} and beta {r.shape(beta)} for {channels} channels")
    if channels_last:
        x = op(r, ctx, "transpose", x, suffix="nchw", axes=(0, 3, 1, 2))
    y = r.b.op("group_norm", x, r.node(gamma, ctx, hint="gamma"), r.node(beta, ctx, hint="beta"),
               name=f"{ctx.name}.norm" if activation or channels_last else ctx.name, module=ctx.module,
               attrs={"num_groups": groups, "eps": float(ctx.attrs.get("epsilon", 1e-5))})
    if activation:
        y = op(r, ctx, "silu", y, suffix="silu" if channels_last else "")
    return op(r, ctx, "transpose", y, axes=(0, 2, 3, 1)) if channels_last else y


@onnx_op("com.microsoft.GroupNorm")
def _ms_group_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """onnxruntime's GroupNorm: the catalog's group_norm (+ SiLU), over NHWC or NCHW."""
    return _ms_group_norm_of(r, ctx, r.node(ins[0], ctx), ins[1], ins[2])


@onnx_op("com.microsoft.SkipGroupNorm")
def _ms_skip_group_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """GroupNorm(x + skip + bias) (+ SiLU) in NHWC; skip is (N, H, W, C), (N, 1, 1, C) or (N, C) (a ResNet
    block's time embedding); the optional output S is the sum itself."""
    ins = [*ins, None][:5]
    x = r.node(ins[0], ctx)
    if not ctx.attrs.get("channels_last", 1):
        raise Unmapped("SkipGroupNorm with channels_last=0 (onnxruntime defines its skip input in NHWC only)")
    skip = r.node(ins[3], ctx, hint="skip")
    if len(skip.shape) == 2 and len(x.shape) == 4:  # (N, C): one value per image and channel
        skip = op(r, ctx, "reshape", skip, suffix="skip_nhwc", shape=(skip.shape[0], 1, 1, skip.shape[1]))
    total = op(r, ctx, "add", x, skip, suffix="skip_sum")
    if ins[4] is not None:
        total = op(r, ctx, "add", total, r.node(ins[4], ctx, hint="bias"), suffix="input_skip_bias_sum")
    return [_ms_group_norm_of(r, ctx, total, ins[1], ins[2]), total]

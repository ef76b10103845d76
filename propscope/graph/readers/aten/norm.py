"""ATen normalisations: batch norm (training and eval), layer norm, group and instance norm, RMS norm."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from .._aten import (
    Ctx,
    Missing,
    Translator,
    Unmapped,
    aten,
    op_key,
    self_arg,
)


def _bn(t: Translator, a: dict[str, Any], ctx: Ctx, training: bool) -> Node:
    x = t.node(self_arg(a), ctx)
    channels = x.shape[1]
    module = ctx.module

    def part(key: str, fill: float, hint: str) -> Node:
        v = a.get(key)
        return t.b.const(np.full(channels, fill), module, hint) if v is None else t.node(v, ctx, hint)

    if not training and (a.get("running_mean") is None or a.get("running_var") is None):
        raise Unmapped("evaluation-mode batch norm without running statistics")
    inputs = (x, part("weight", 1.0, "weight"), part("bias", 0.0, "bias"), part("running_mean", 0.0, "running_mean"),
              part("running_var", 1.0, "running_var"))
    attrs = {"training": training, "momentum": float(a.get("momentum") or 0.1), "eps": float(a.get("eps", 1e-5))}
    return t.b.op("batch_norm", *inputs, name=ctx.name, module=module, attrs=attrs)


@aten("batch_norm")
def _batch_norm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return _bn(t, a, ctx, bool(a.get("training", False)))


@aten("_native_batch_norm_legit_no_training")
def _bn_eval(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return [_bn(t, a, ctx, False), Missing("batch-norm statistics"), Missing("batch-norm statistics")]


@aten("_native_batch_norm_legit_functional", "native_batch_norm", "_native_batch_norm_legit")
def _bn_train(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    out = _bn(t, a, ctx, bool(a.get("training", True)))
    return [out] + [Missing("batch-norm statistics")] * (len(ctx.shapes) - 1)


@aten("layer_norm", "native_layer_norm")
def _layer_norm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = t.node(self_arg(a), ctx)
    norm = tuple(int(d) for d in a["normalized_shape"])
    w = t.b.const(np.ones(norm), ctx.module, "weight") if a.get("weight") is None else t.node(a["weight"], ctx)
    b = t.b.const(np.zeros(norm), ctx.module, "bias") if a.get("bias") is None else t.node(a["bias"], ctx)
    node = t.b.op("layer_norm", x, w, b, name=ctx.name, module=ctx.module,
                  attrs={"normalized_shape": norm, "eps": float(a.get("eps", 1e-5))})
    if op_key(ctx.target) == "native_layer_norm":
        return [node, Missing("layer-norm mean"), Missing("layer-norm rstd")]
    return node


def _affine(t: Translator, a: dict[str, Any], ctx: Ctx, channels: int) -> tuple[Node, Node]:
    w, b = a.get("weight"), a.get("bias")
    weight = t.b.const(np.ones(channels), ctx.module, "weight") if w is None else t.node(w, ctx, "weight")
    bias = t.b.const(np.zeros(channels), ctx.module, "bias") if b is None else t.node(b, ctx, "bias")
    return weight, bias


@aten("group_norm", "native_group_norm")
def _group_norm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = t.node(self_arg(a), ctx)
    groups = int(a["num_groups"] if "num_groups" in a else a["group"])
    weight, bias = _affine(t, a, ctx, x.shape[1])
    node = t.b.op("group_norm", x, weight, bias, name=ctx.name, module=ctx.module,
                  attrs={"num_groups": groups, "eps": float(a.get("eps", 1e-5))})
    if op_key(ctx.target) == "native_group_norm":
        return [node, Missing("group-norm mean"), Missing("group-norm rstd")]
    return node


@aten("instance_norm")
def _instance_norm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Instance norm is group norm with one channel per group (when it uses the input's own statistics)."""
    if not a.get("use_input_stats", True):
        raise Unmapped("instance norm with running statistics (track_running_stats in eval mode)")
    x = t.node(self_arg(a), ctx)
    weight, bias = _affine(t, a, ctx, x.shape[1])
    return t.b.op("group_norm", x, weight, bias, name=ctx.name, module=ctx.module, original_op="instance_norm",
                  attrs={"num_groups": x.shape[1], "eps": float(a.get("eps", 1e-5))})


@aten("rms_norm", "_fused_rms_norm")
def _rms_norm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = t.node(self_arg(a), ctx)
    norm = tuple(int(d) for d in a["normalized_shape"])
    weight = t.b.const(np.ones(norm), ctx.module, "weight") if a.get("weight") is None else t.node(a["weight"], ctx)
    eps = a.get("eps")
    node = t.b.op("rms_norm", x, weight, name=ctx.name, module=ctx.module,
                  attrs={"normalized_shape": norm, "eps": None if eps is None else float(eps)})
    return [node, Missing("rms-norm rstd")] if op_key(ctx.target).startswith("_fused") else node


def _vector_norm(t: Translator, ctx: Ctx, x: Node, order: float, axes: tuple[int, ...] | None, keepdims: bool,
                 name: str) -> Node:
    """‖x‖_p over `axes`, one catalog op: steps of √(Σ x²) would give a zero vector a NaN gradient (√ at 0) where
    torch's norm gives 0 — Swin V2's cosine attention normalises the zero keys of its padded windows."""
    if not order > 0:  # 0, negative, NaN
        raise Unmapped(f"the vector norm of order {order} (counts and negative orders have no useful gradient)")
    return t.b.op("vector_norm", x, name=name, module=ctx.module,
                  attrs={"axis": axes, "keepdims": keepdims, "ord": float(order)})


@aten("linalg_vector_norm", "norm")
def _linalg_vector_norm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, order = self_arg(a), a.get("ord", a.get("p", 2))
    order = 2.0 if order is None else float(order)
    dim, keep = a.get("dim"), bool(a.get("keepdim", False))
    axes = None if dim is None or dim == [] else (int(dim),) if isinstance(dim, int) else tuple(int(d) for d in dim)
    known = t.known(x)
    if known is not None:
        return _fold_norm(np.asarray(known, dtype=np.float64), order, axes, keep)
    return _vector_norm(t, ctx, t.node(x, ctx), order, axes, keep, ctx.name)


@aten("linalg_norm")
def _linalg_norm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """torch.linalg.norm: over one axis (OWL-ViT's normalised embeddings) or all of them with no order, the vector
    norm; over two axes only with no order or "fro", the square root of the sum of squares (matrix norms of other
    orders, which take singular values or column sums, are not read)."""
    order, dim = a.get("ord"), a.get("dim")
    dims = None if dim is None or dim == [] else [dim] if isinstance(dim, int) else list(dim)
    if dims is not None and len(dims) == 2 and order in (None, "fro"):
        order = 2
    elif isinstance(order, str) or (dims is not None and len(dims) > 1) or (dims is None and order is not None):
        raise Unmapped(f"the matrix norm of order {order!r} over axes {dims}")
    return _linalg_vector_norm(t, {**a, "ord": 2 if order is None else order, "dim": dims}, ctx)


def _fold_norm(x: np.ndarray, order: float, axes: tuple[int, ...] | None, keep: bool) -> np.ndarray:
    if not order > 0:
        raise Unmapped(f"the vector norm of order {order}")
    size = np.abs(x)
    if order == np.inf:
        return np.max(size, axis=axes, keepdims=keep)
    return np.sum(size ** order, axis=axes, keepdims=keep) ** (1.0 / order)


@aten("_weight_norm", "_weight_norm_interface")
def _weight_norm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """A weight-normalised layer's weight (wav2vec2's positional convolution): w = v · g / ‖v‖, the norm over
    every axis but `dim` (over all of v for dim −1), so g and v are the parameters the gradient reaches."""
    v, g, dim = a["v"], a["g"], int(a.get("dim", 0))
    ndim = len(t.shape(v))
    axes = tuple(range(ndim)) if dim == -1 else tuple(i for i in range(ndim) if i != dim % ndim)
    kv, kg = t.known(v), t.known(g)
    if kv is not None and kg is not None:
        weight = kv * (kg / np.sqrt(np.sum(np.asarray(kv, dtype=np.float64) ** 2, axis=axes, keepdims=True)))
        return weight if op_key(ctx.target) == "_weight_norm" else [weight, Missing("the weight norm's norm")]
    v_node = t.node(v, ctx, "v")
    norm = _vector_norm(t, ctx, v_node, 2.0, axes, True, f"{ctx.name}.norm")
    scale = t.b.op("div", t.node(g, ctx, "g"), norm, name=f"{ctx.name}.scale", module=ctx.module)
    weight = t.b.op("mul", v_node, scale, name=ctx.name, module=ctx.module, original_op=op_key(ctx.target))
    return weight if op_key(ctx.target) == "_weight_norm" else [weight, Missing("the weight norm's norm")]

"""ATen dropout and embedding."""

from __future__ import annotations

from typing import Any

from .._aten import (
    Ctx,
    Missing,
    Translator,
    Unmapped,
    aten,
    op_key,
    self_arg,
)


@aten("dropout", "native_dropout", "feature_dropout")
def _dropout(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    train, p = a.get("train", True), float(a.get("p", 0.5))
    if op_key(ctx.target) == "native_dropout":
        if not train or p == 0:
            return [x, Missing("dropout's mask")]
        raise Unmapped("native_dropout in training mode")
    if not train or p == 0:
        return x
    return t.b.op("dropout", t.node(x, ctx), name=ctx.name, module=ctx.module,
                  attrs={"p": p, "training": True, "seed": 0})


@aten("embedding")
def _embedding(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if a.get("scale_grad_by_freq"):
        raise Unmapped("embedding with scale_grad_by_freq")
    weight = t.node(a["weight"], ctx, "weight")
    padding = int(a.get("padding_idx", -1))
    attrs = {"padding_idx": padding % weight.shape[0]} if padding >= 0 or padding < -1 else {}
    return t.b.op("embedding", t.node(a["indices"], ctx, "ids"), weight, name=ctx.name, module=ctx.module,
                  attrs=attrs)


_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


@aten("embedding_bag", "_embedding_bag", "_embedding_bag_forward_only")
def _embedding_bag(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """nn.EmbeddingBag: one step for the lookups and the sum, mean or max of each bag; of its four outputs only the
    bags are a network's (the others are bookkeeping for torch's own backward)."""
    if a.get("scale_grad_by_freq"):
        raise Unmapped("embedding_bag with scale_grad_by_freq")
    mode = int(a.get("mode", 0))
    if mode not in _BAG_MODES:
        raise Unmapped(f"embedding_bag mode {mode}")
    padding = a.get("padding_idx")
    weight = t.node(a["weight"], ctx, "weight")
    inputs = [t.node(a["indices"], ctx, "ids"), weight, t.node(a["offsets"], ctx, "offsets")]
    if a.get("per_sample_weights") is not None:
        inputs.append(t.node(a["per_sample_weights"], ctx, "per_sample_weights"))
    attrs = {"mode": _BAG_MODES[mode], "include_last_offset": bool(a.get("include_last_offset", False)),
             "padding_idx": None if padding is None or int(padding) == -1 else int(padding) % weight.shape[0]}
    node = t.b.op("embedding_bag", *inputs, name=ctx.name, module=ctx.module, attrs=attrs)
    return [node] + [Missing("embedding_bag's bookkeeping for torch's backward")] * 3

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

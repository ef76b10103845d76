"""ATen scaled dot-product attention, lowered to products and a softmax under its module."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._aten import (
    Ctx,
    Missing,
    Translator,
    Unmapped,
    aten,
)
from .._build import additive_mask


@aten("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
      "_scaled_dot_product_attention_math")
def _sdpa(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if float(a.get("dropout_p", 0.0)) > 0:
        raise Unmapped("attention dropout")
    if a.get("enable_gqa"):
        raise Unmapped("grouped-query attention")
    q, k, v = (t.node(a[r], ctx) for r in ("query", "key", "value"))
    module = f"{ctx.module}.attention" if ctx.module else "attention"
    mask = a.get("attn_mask")
    mask_node = None
    if mask is not None:
        mask_node = t.b.const(additive_mask(np.asarray(mask)), module, "attn_mask") if t.const(mask) \
            else t.node(mask, ctx)
    out = t.b.attention(q, k, v, ctx.name, module, a.get("scale"), bool(a.get("is_causal", False)), mask_node)
    if len(ctx.shapes) > 1:
        return [out] + [Missing("attention statistics")] * (len(ctx.shapes) - 1)
    return out

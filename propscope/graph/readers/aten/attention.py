"""ATen scaled dot-product attention, lowered to products and a softmax under its module."""

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
)
from .._build import additive_mask


@aten("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
      "_scaled_dot_product_attention_math")
def _sdpa(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if float(a.get("dropout_p", 0.0)) > 0:
        raise Unmapped("attention dropout")
    q, k, v = (t.node(a[r], ctx) for r in ("query", "key", "value"))
    module = f"{ctx.module}.attention" if ctx.module else "attention"
    if a.get("enable_gqa") and k.shape[-3:-2] != q.shape[-3:-2]:
        k, v = (_shared_heads(t, x, q.shape, f"{ctx.name}.{role}", module) for x, role in ((k, "key"), (v, "value")))
    mask = a.get("attn_mask")
    mask_node = None
    if mask is not None:
        mask_node = t.b.const(additive_mask(np.asarray(mask)), module, "attn_mask") if t.const(mask) \
            else t.node(mask, ctx)
    out = t.b.attention(q, k, v, ctx.name, module, a.get("scale"), bool(a.get("is_causal", False)), mask_node)
    if len(ctx.shapes) > 1:
        return [out] + [Missing("attention statistics")] * (len(ctx.shapes) - 1)
    return out


def _shared_heads(t: Translator, x: Node, query: tuple[int, ...], name: str, module: str) -> Node:
    """Grouped-query attention: each key/value head serves a group of query heads, as if repeated
    (`repeat_interleave` along the head axis): (…, Hkv, L, d) → (…, Hkv, g, L, d) → (…, Hkv·g, L, d)."""
    if len(x.shape) < 3 or len(query) < 3 or query[-3] % x.shape[-3]:
        raise Unmapped(f"grouped-query attention of {query[-3] if len(query) >= 3 else '?'} query heads over "
                       f"key/value shaped {x.shape}")
    *batch, heads, length, depth = x.shape
    group = query[-3] // heads
    one = t.b.op("reshape", x, name=f"{name}.heads", module=module, attrs={"shape": (*batch, heads, 1, length, depth)})
    wide = t.b.op("expand", one, name=f"{name}.shared", module=module,
                  attrs={"shape": (*batch, heads, group, length, depth)})
    return t.b.op("reshape", wide, name=f"{name}.grouped", module=module,
                  attrs={"shape": (*batch, heads * group, length, depth)})

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
from .._build import CAUSAL_FILL, additive_mask


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
        if not t.const(mask) and _boolean(mask_node):  # True = may attend: 0 there, the finite fill elsewhere
            mask_node = t.b.op("where", mask_node, t.b.const(np.array(0.0), module, "attend"),
                               t.b.const(np.array(CAUSAL_FILL), module, "masked_fill"), name=f"{ctx.name}.attn_mask",
                               module=module)
    out = t.b.attention(q, k, v, ctx.name, module, a.get("scale"), bool(a.get("is_causal", False)), mask_node)
    if len(ctx.shapes) > 1:
        return [out] + [Missing("attention statistics")] * (len(ctx.shapes) - 1)
    return out


_BOOLEAN_OPS = ("compare", "logical")
_CARRIERS = ("reshape", "expand", "transpose", "slice", "select", "index_nd", "tile")  # keep the values' kind


def _boolean(node: Node) -> bool:
    """Whether a mask computed from the data holds booleans (a comparison's, a logic op's, through reshapes and
    indexing), which sdpa reads as may-attend, not as scores to add (transformers' padding masks)."""
    for _ in range(64):
        if node.op.name in _BOOLEAN_OPS or (node.is_leaf and str(node.meta.get("dtype", "")) == "bool"):
            return True
        if node.op.name not in _CARRIERS or not node.inputs:
            return False
        node = node.inputs[0]
    return False


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

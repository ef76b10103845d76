"""ONNX Attention (opset 23), lowered like torch's scaled dot-product attention."""

from __future__ import annotations

from typing import Any

from .._aten import Unmapped
from .._build import additive_mask
from ..onnx_reader import Ctx, Reader, onnx_op


@onnx_op("Attention")
def _attention(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    if len(ins) > 4 or ctx.attrs.get("softcap") or ctx.attrs.get("q_num_heads"):
        raise Unmapped("Attention with a KV cache, softcap or packed heads")
    q, k, v = (r.node(t, ctx) for t in ins[:3])
    mask = None
    if len(ins) > 3 and ins[3] is not None:
        m = r.folded(ins[3])
        mask = r.b.const(additive_mask(m), ctx.module, "attn_mask") if m is not None else r.node(ins[3], ctx)
    module = f"{ctx.module}.attention" if ctx.module else "attention"
    return r.b.attention(q, k, v, ctx.name, module, ctx.attrs.get("scale"), bool(ctx.attrs.get("is_causal", 0)),
                         mask)

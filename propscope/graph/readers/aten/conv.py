"""ATen convolutions and pooling."""

from __future__ import annotations

from typing import Any

from .._aten import (
    Ctx,
    Missing,
    Translator,
    Unmapped,
    aten,
    op_key,
    pair_arg,
    self_arg,
)


@aten("conv2d", "convolution", "_convolution")
def _conv(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if a.get("transposed", False):
        raise Unmapped("transposed convolution")
    x, w = t.node(self_arg(a), ctx), t.node(a["weight"], ctx, "weight")
    if len(x.shape) != 4:
        raise Unmapped(f"a {len(x.shape) - 2}-D convolution (only 2-D is in the catalog)")
    padding = a.get("padding", 0)
    if isinstance(padding, str):
        dil = pair_arg(a.get("dilation"), 1)
        dh, dw = (dil, dil) if isinstance(dil, int) else dil
        if padding == "valid":
            padding = 0
        elif all((d * (k - 1)) % 2 == 0 for d, k in ((dh, w.shape[2]), (dw, w.shape[3]))):
            padding = (dh * (w.shape[2] - 1) // 2, dw * (w.shape[3] - 1) // 2)
        else:
            raise Unmapped("padding='same' that pads one side more than the other")
    attrs = {"stride": pair_arg(a.get("stride"), 1), "padding": pair_arg(padding, 0),
             "dilation": pair_arg(a.get("dilation"), 1), "groups": int(a.get("groups", 1))}
    inputs = [x, w] + ([] if a.get("bias") is None else [t.node(a["bias"], ctx, "bias")])
    return t.b.op("conv2d", *inputs, name=ctx.name, module=ctx.module, attrs=attrs)


@aten("max_pool2d", "max_pool2d_with_indices")
def _max_pool(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    attrs = {"kernel_size": pair_arg(a["kernel_size"], 1), "stride": pair_arg(a.get("stride"), 0) or None,
             "padding": pair_arg(a.get("padding"), 0), "dilation": pair_arg(a.get("dilation"), 1)}
    node = t.b.op("max_pool2d", t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module, attrs=attrs)
    return [node, Missing("max-pool indices")] if op_key(ctx.target).endswith("indices") else node


@aten("avg_pool2d")
def _avg_pool(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    padding = pair_arg(a.get("padding"), 0)
    if a.get("divisor_override") is not None:
        raise Unmapped("avg_pool2d with divisor_override")
    if not a.get("count_include_pad", True) and padding != 0:
        raise Unmapped("avg_pool2d with count_include_pad=False")
    attrs = {"kernel_size": pair_arg(a["kernel_size"], 1), "stride": pair_arg(a.get("stride"), 0) or None,
             "padding": padding}
    return t.b.op("avg_pool2d", t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module, attrs=attrs)


@aten("adaptive_avg_pool2d", "_adaptive_avg_pool2d")
def _adaptive_pool(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = t.node(self_arg(a), ctx)
    size = pair_arg(a["output_size"], 1)
    oh, ow = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if (oh, ow) == (1, 1):
        return t.b.op("mean", x, name=ctx.name, module=ctx.module, attrs={"axis": (2, 3), "keepdims": True})
    if h % oh or w % ow:
        raise Unmapped("adaptive pooling whose windows differ in size")
    kernel = (h // oh, w // ow)
    return t.b.op("avg_pool2d", x, name=ctx.name, module=ctx.module,
                  attrs={"kernel_size": kernel, "stride": kernel, "padding": 0})

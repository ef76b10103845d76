"""ONNX convolution and pooling."""

from __future__ import annotations

from typing import Any

from .._aten import Missing, Unmapped
from ..onnx_reader import Ctx, Reader, onnx_op


def _pads(ctx: Ctx, kernel: tuple[int, ...]) -> Any:
    auto = str(ctx.attrs.get("auto_pad", "NOTSET"))
    if auto == "VALID":
        return 0
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        strides = list(ctx.attrs.get("strides", [1, 1]))
        dilations = list(ctx.attrs.get("dilations", [1, 1]))
        totals = [d * (k - 1) for d, k in zip(dilations, kernel, strict=False)]
        if any(s != 1 for s in strides) or any(t % 2 for t in totals):
            raise Unmapped(f"auto_pad={auto} that pads one side more than the other")
        return _pair([t // 2 for t in totals], 0)
    pads = list(ctx.attrs.get("pads", [0] * 4))
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise Unmapped(f"asymmetric padding {pads}")
    return pads[0] if pads[0] == pads[1] else (pads[0], pads[1])


def _pair(values: Any, default: int) -> Any:
    if not values:
        return default
    values = [int(v) for v in values]
    return values[0] if len(set(values)) == 1 else tuple(values)


@onnx_op("Conv")
def _conv(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x, w = r.node(ins[0], ctx), r.node(ins[1], ctx)
    if len(x.shape) != 4:
        raise Unmapped(f"a {len(x.shape) - 2}-D convolution (only 2-D is in the catalog)")
    attrs = {"stride": _pair(ctx.attrs.get("strides"), 1), "padding": _pads(ctx, w.shape[2:]),
             "dilation": _pair(ctx.attrs.get("dilations"), 1), "groups": int(ctx.attrs.get("group", 1))}
    inputs = [x, w] + ([] if len(ins) < 3 or ins[2] is None else [r.node(ins[2], ctx, hint="bias")])
    return r.b.op("conv2d", *inputs, name=ctx.name, module=ctx.module, attrs=attrs)


@onnx_op("MaxPool", "AveragePool")
def _pool(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    if len(x.shape) != 4:
        raise Unmapped("pooling that is not 2-D")
    kernel = tuple(int(k) for k in ctx.attrs["kernel_shape"])
    padding = _pads(ctx, kernel)
    attrs: dict[str, Any] = {"kernel_size": _pair(kernel, 1), "stride": _pair(ctx.attrs.get("strides"), 1),
                             "padding": padding}
    if ctx.op == "MaxPool":
        attrs["dilation"] = _pair(ctx.attrs.get("dilations"), 1)
        node = r.b.op("max_pool2d", x, name=ctx.name, module=ctx.module, attrs=attrs)
        return [node, Missing("max-pool indices")]
    if padding != 0 and not ctx.attrs.get("count_include_pad", 0):
        raise Unmapped("AveragePool with count_include_pad=0 and padding")
    return r.b.op("avg_pool2d", x, name=ctx.name, module=ctx.module, attrs=attrs)

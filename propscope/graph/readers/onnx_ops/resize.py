"""ONNX Pad onto the catalog's `pad` (constant, reflect, edge = replicate, wrap = circular)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._aten import Unmapped
from .._budget import fold_room
from ..onnx_reader import Ctx, Reader, attr_or_input, onnx_op
from .elementwise import op

_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}
_NUMPY_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


@onnx_op("Pad")
def _pad(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    mode = str(ctx.attrs.get("mode", "constant"))
    if mode not in _MODES:
        raise Unmapped(f"Pad mode {mode!r}")
    shape = r.shape(ins[0])
    rank = len(shape)
    pads = attr_or_input(r, ins, ctx, 1, "pads" if ctx.opset >= 11 else "paddings")
    if ctx.opset < 11 and pads is None:
        pads = list(ctx.attrs.get("pads", []))
    axes = attr_or_input(r, ins, ctx, 3, "axes") or list(range(rank))
    axes = [int(a) % rank for a in axes]
    if pads is None or len(pads) != 2 * len(axes):
        raise Unmapped(f"pads {pads} for axes {axes}")
    pairs = [(0, 0)] * rank
    for i, a in enumerate(axes):
        pairs[a] = (int(pads[i]), int(pads[i + len(axes)]))
    # the padded size comes from the file's numbers, not its bytes: refused before a fold or a mask is made
    padded = [max(d + b + e, 0) for d, (b, e) in zip(shape, pairs, strict=True)]
    fold_room((), f"Pad {ctx.name!r}", r.where, shape=padded)
    value = 0.0
    if ctx.opset < 11:
        value = float(ctx.attrs.get("value", 0.0))
    elif len(ins) > 2 and ins[2] is not None:
        fill = r.folded(ins[2])
        if fill is None:
            if mode != "constant":
                raise Unmapped(f"a pad value computed at run time in mode {mode!r}")
            return _pad_with_tensor(r, ctx, r.node(ins[0], ctx), pairs, r.node(ins[2], ctx, hint="pad_value"))
        value = float(fill.reshape(-1)[0]) if fill.size else 0.0
    c = r.folded(ins[0])
    if c is not None and all(b >= 0 and e >= 0 for b, e in pairs):
        extra = {"constant_values": value} if mode == "constant" else {}
        return np.pad(c, pairs, mode=_NUMPY_MODES[mode], **extra).astype(c.dtype)  # type: ignore[call-overload]
    return op(r, ctx, "pad", r.node(ins[0], ctx), pads=tuple(pairs), mode=_MODES[mode], value=value)


def _pad_with_tensor(r: Reader, ctx: Ctx, x: Any, pairs: list[tuple[int, int]], value: Any) -> Any:
    """Padding with a value the model receives at run time: zero padding, plus the value times a constant
    mask of the border (1 in the padding, 0 over x), so the value gets its gradient too."""
    padded = op(r, ctx, "pad", x, suffix="zero_padded", pads=tuple(pairs), mode="constant", value=0.0)
    border = np.pad(np.zeros(x.shape), pairs, constant_values=1.0)
    fill = op(r, ctx, "mul", r.b.const(border, ctx.module, "border"),
              r.b.op("reshape", value, name=f"{ctx.name}.value", module=ctx.module, attrs={"shape": ()}),
              suffix="border_fill")
    return op(r, ctx, "add", padded, fill)

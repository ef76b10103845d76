"""ATen bicubic upsampling and grid sampling onto the catalog's resize family (nearest, bilinear and trilinear
upsampling are read in conv.py, beside the pools); antialiased resizes are refused by name."""

from __future__ import annotations

from typing import Any

from .._aten import Ctx, Translator, Unmapped, aten, op_key, self_arg
from .conv import _scales

_GRID_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
_GRID_PADDINGS = {0: "zeros", 1: "border", 2: "reflection"}


@aten("upsample_bicubic2d")
def _bicubic(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    out = ctx.shapes[0]
    if out is None or len(out) != 4:
        raise Unmapped("no declared 4-D output shape")
    return t.b.op("upsample_bicubic2d", t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module,
                  attrs={"output_size": tuple(out[2:]), "scales": _scales(a),
                         "align_corners": bool(a.get("align_corners", False))})


@aten("_upsample_bicubic2d_aa", "_upsample_bilinear2d_aa")
def _antialiased(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    kind = "bicubic" if "bicubic" in op_key(ctx.target) else "bilinear"
    raise Unmapped(f"antialiased {kind} resize (F.interpolate(antialias=True)): the catalog's {kind} upsampling "
                   "has no antialiasing filter")


@aten("grid_sampler_2d", "grid_sampler")
def _grid_sampler(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, grid = self_arg(a), a["grid"]
    mode, padding = a.get("interpolation_mode", 0), a.get("padding_mode", 0)
    if mode not in _GRID_MODES or padding not in _GRID_PADDINGS:
        raise Unmapped(f"grid_sampler with interpolation mode {mode!r} and padding mode {padding!r}")
    if _GRID_MODES[mode] == "bicubic":
        raise Unmapped("grid_sample mode 'bicubic' (the catalog samples bilinear and nearest)")
    if len(t.shape(x)) != 4:
        raise Unmapped(f"grid_sample of a {len(t.shape(x))}-D input (the catalog samples images, 4-D)")
    return t.b.op("grid_sample", t.node(x, ctx), t.node(grid, ctx, "grid"), name=ctx.name, module=ctx.module,
                  attrs={"mode": _GRID_MODES[mode], "padding_mode": _GRID_PADDINGS[padding],
                         "align_corners": bool(a.get("align_corners", False))})

"""ONNX Pad onto the catalog's `pad` (constant, reflect, edge = replicate, wrap = circular), Resize of images
and volumes onto the catalog's nearest, bilinear, bicubic and trilinear upsampling, in the forms PyTorch's
exporters write and PyTorch computes: linear and cubic (images, cubic_coeff_a = −0.75, exclude_outside = 0) with
half_pixel (align_corners=False), pytorch_half_pixel (to sizes over one) or align_corners; nearest with asymmetric
coordinates and floor rounding (mode='nearest'). Other forms (nearest-exact rounding, tf_crop_and_resize, other
cubic coefficients, antialiased downsampling) are refused by name. GridSample of images onto `grid_sample`
(bilinear, nearest and cubic; zeros, border and reflection padding) and of volumes (linear and nearest); AffineGrid
as the matrix product it is."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ops.resize import CUBIC_A, GRID_PADDINGS
from .._aten import Unmapped
from .._budget import fold_room
from ..aten.resize import affine_grid
from ..onnx_reader import Ctx, Init, Reader, attr_or_input, onnx_op
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


def _constant(r: Reader, value: Any, what: str) -> np.ndarray | None:
    """A Resize operand known at load time (scales are float initializers, which `folded` keeps as parameters);
    None where it is absent or empty."""
    if value is None:
        return None
    known = value.array if isinstance(value, Init) else r.folded(value)
    if known is None:
        raise Unmapped(f"Resize {what} computed at run time")
    return known.reshape(-1) if known.size else None


@onnx_op("Resize")
def _resize(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    if ctx.opset < 11:
        raise Unmapped("Resize before opset 11 (asymmetric coordinates only)")
    x = r.node(ins[0], ctx)
    rank = len(x.shape)
    if rank not in (4, 5):
        raise Unmapped(f"Resize of a {rank}-D tensor (the catalog resizes images and volumes)")
    spatial = range(2, rank)
    mode = str(ctx.attrs.get("mode", "nearest"))
    coords = str(ctx.attrs.get("coordinate_transformation_mode", "half_pixel"))
    axes = [int(a) for a in ctx.attrs.get("axes", list(range(rank)))]
    if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
        raise Unmapped(f"Resize axes {axes} for a {rank}-D tensor")
    axes = [a % rank for a in axes]
    scales = _constant(r, ins[2] if len(ins) > 2 else None, "scales")
    sizes = _constant(r, ins[3] if len(ins) > 3 else None, "sizes")
    if (scales is None) == (sizes is None):
        raise Unmapped("Resize needs exactly one of scales and sizes")
    given = scales if scales is not None else sizes
    if given is None or len(given) != len(axes):
        raise Unmapped(f"Resize with {0 if given is None else len(given)} scales or sizes for axes {axes}")
    full = {a: float(v) for a, v in zip(axes, given, strict=True)}
    factors: tuple[float, ...] | None = None
    if scales is not None:
        if any(full.get(a, 1.0) != 1.0 for a in (0, 1)):
            raise Unmapped(f"Resize scaling the batch or channel axis (scales {list(scales)})")
        factors = tuple(full.get(a, 1.0) for a in spatial)
        if not all(0 < f < float("inf") for f in factors):  # also NaN
            raise Unmapped(f"Resize scales {list(scales)} must be positive")
        out = tuple(int(x.shape[a] * f) for a, f in zip(spatial, factors, strict=True))  # ONNX's floor, as PyTorch's
    else:
        if str(ctx.attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
            raise Unmapped("Resize keeping the aspect ratio (keep_aspect_ratio_policy)")
        if any(int(full.get(a, x.shape[a])) != x.shape[a] for a in (0, 1)):
            raise Unmapped(f"Resize to another batch or channel count (sizes {[int(v) for v in given]})")
        out = tuple(int(full.get(a, x.shape[a])) for a in spatial)
    if min(out) < 1:
        raise Unmapped(f"Resize to an empty image {out}")
    fold_room((), f"Resize {ctx.name!r}", r.where, shape=[*x.shape[:2], *out])
    if int(ctx.attrs.get("antialias", 0)) and any(o < x.shape[a] for a, o in zip(spatial, out, strict=True)):
        raise Unmapped("antialiased Resize that shrinks (PyTorch's antialias=True)")
    dims = rank - 2
    if mode in ("linear", "cubic"):
        if coords == "pytorch_half_pixel" and min(out) == 1:
            raise Unmapped("Resize pytorch_half_pixel to a size of one (it reads the first pixel, PyTorch the centre)")
        if coords not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            torch_mode = "bilinear" if mode == "linear" else "bicubic"
            raise Unmapped(f"{mode} Resize with {coords} coordinates (PyTorch's {torch_mode} has half_pixel and "
                           "align_corners)")
        if mode == "cubic":
            return _cubic(r, ctx, x, out, factors, coords == "align_corners")
        return op(r, ctx, "upsample_bilinear2d" if dims == 2 else "upsample_trilinear3d", x, output_size=out,
                  scales=factors, align_corners=coords == "align_corners")
    if mode == "nearest":
        rounding = str(ctx.attrs.get("nearest_mode", "round_prefer_floor"))
        if coords != "asymmetric" or rounding != "floor":
            raise Unmapped(f"nearest Resize with {coords} coordinates and {rounding} rounding (PyTorch's nearest is "
                           "asymmetric with floor)")
        return op(r, ctx, f"upsample_nearest{dims}d", x, output_size=out, scales=factors)
    raise Unmapped(f"Resize mode {mode!r} (the catalog has nearest, linear and cubic)")


def _cubic(r: Reader, ctx: Ctx, x: Any, out: tuple[int, ...], factors: tuple[float, ...] | None,
           align_corners: bool) -> Any:
    """Cubic Resize as PyTorch's bicubic computes it: images only, a = −0.75, taps outside the image read its edge."""
    if len(out) != 2:
        raise Unmapped("cubic Resize of a volume (the catalog's bicubic resizes images)")
    a = float(ctx.attrs.get("cubic_coeff_a", -0.75))
    if a != CUBIC_A:
        raise Unmapped(f"cubic Resize with cubic_coeff_a = {a:g} (PyTorch's bicubic has {CUBIC_A:g})")
    if int(ctx.attrs.get("exclude_outside", 0)):
        raise Unmapped("cubic Resize with exclude_outside (PyTorch's bicubic reads the edge past the image)")
    return op(r, ctx, "upsample_bicubic2d", x, output_size=out, scales=factors, align_corners=align_corners)


@onnx_op("AffineGrid")
def _affine_grid(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """θ (N, 2, 3) and a size known at load time: the sampling points of F.affine_grid (see aten/resize.py)."""
    size = r.folded(ins[1])
    if size is None:
        raise Unmapped("AffineGrid size computed at run time")
    theta = r.folded(ins[0])
    return affine_grid(r.b, theta if theta is not None else r.node(ins[0], ctx, hint="theta"),
                       [int(d) for d in size.reshape(-1)], bool(int(ctx.attrs.get("align_corners", 0))), ctx.name,
                       ctx.module, r.where)


_GRID_MODES = {"bilinear": "bilinear", "linear": "bilinear", "nearest": "nearest", "bicubic": "bicubic",
               "cubic": "bicubic"}


@onnx_op("GridSample")
def _grid_sample(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Sampling images at the points of a grid, as F.grid_sample (the 4-D form ONNX and PyTorch share)."""
    mode = str(ctx.attrs.get("mode", "linear" if ctx.opset >= 20 else "bilinear"))
    padding = str(ctx.attrs.get("padding_mode", "zeros"))
    if mode not in _GRID_MODES:
        raise Unmapped(f"GridSample mode {mode!r} (the catalog samples bilinear, nearest and bicubic)")
    if padding not in GRID_PADDINGS:
        raise Unmapped(f"GridSample padding_mode {padding!r}")
    x, grid = r.node(ins[0], ctx), r.node(ins[1], ctx, hint="grid")
    if len(x.shape) not in (4, 5):
        raise Unmapped(f"GridSample of a {len(x.shape)}-D input (the catalog samples images and volumes)")
    if len(x.shape) == 5 and _GRID_MODES[mode] == "bicubic":
        raise Unmapped("cubic GridSample of a volume (PyTorch's bicubic samples images)")
    return op(r, ctx, "grid_sample", x, grid, mode=_GRID_MODES[mode], padding_mode=padding,
              align_corners=bool(int(ctx.attrs.get("align_corners", 0))))

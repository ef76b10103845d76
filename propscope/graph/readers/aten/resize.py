"""ATen bicubic upsampling, affine grids and grid sampling onto the catalog's resize family (nearest, bilinear and
trilinear upsampling are read in conv.py, beside the pools); antialiased resizes are these ops with their antialias
flag, resizes of sequences the image ops on one row.

An affine grid (a spatial transformer's θ turned into sampling points) is no op of its own: it is the constant
base grid of points (x, y, 1) times θᵀ, a matrix product of catalog ops, so θ gets its gradient from it."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from ...ops.resize import affine_base_grid
from .._aten import Ctx, Translator, Unmapped, aten, op_key, self_arg
from .._budget import fold_room
from .._build import Builder
from .conv import _scales

_GRID_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
_GRID_PADDINGS = {0: "zeros", 1: "border", 2: "reflection"}


@aten("upsample_bicubic2d", "_upsample_bicubic2d_aa", "_upsample_bilinear2d_aa")
def _bicubic(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Bicubic upsampling, and the antialiased resizes (F.interpolate(antialias=True): timm resamples a vision
    transformer's position embedding so when exported, to the same size too) as the bilinear or bicubic op with
    its antialias flag."""
    out = ctx.shapes[0]
    if out is None or len(out) != 4:
        raise Unmapped("no declared 4-D output shape")
    key = op_key(ctx.target)
    return t.b.op("upsample_bilinear2d" if "bilinear" in key else "upsample_bicubic2d", t.node(self_arg(a), ctx),
                  name=ctx.name, module=ctx.module,
                  attrs={"output_size": tuple(out[2:]), "scales": _scales(a),
                         "align_corners": bool(a.get("align_corners", False)), "antialias": key.endswith("_aa")})


@aten("upsample_linear1d", "upsample_nearest1d")
def _upsample1d(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Resizes of sequences (N, C, L) (NaFlexViT resamples its factorized position embeddings so): the image op on
    (N, C, 1, L), whose axis of one row is copied as it is."""
    out = ctx.shapes[0]
    if out is None or len(out) != 3:
        raise Unmapped("no declared 3-D output shape")
    x = t.node(self_arg(a), ctx)
    factors, scale = a.get("scale_factors"), a.get("scales")
    factor = (float(factors[0]) if isinstance(factors, list) and len(factors) == 1 else
              float(scale) if isinstance(scale, int | float) else None)
    linear = op_key(ctx.target) == "upsample_linear1d"
    attrs: dict[str, Any] = {"output_size": (1, int(out[2])), "scales": None if factor is None else (1.0, factor)}
    if linear:
        attrs["align_corners"] = bool(a.get("align_corners", False))
    image = t.b.op("reshape", x, name=f"{ctx.name}.image", module=ctx.module, attrs={"shape": (*x.shape[:2], 1, -1)})
    resized = t.b.op("upsample_bilinear2d" if linear else "upsample_nearest2d", image, name=f"{ctx.name}.resized",
                     module=ctx.module, attrs=attrs)
    return t.b.op("reshape", resized, name=ctx.name, module=ctx.module, attrs={"shape": tuple(int(d) for d in out)})


@aten("grid_sampler_2d", "grid_sampler_3d", "grid_sampler")
def _grid_sampler(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, grid = self_arg(a), a["grid"]
    mode, padding = a.get("interpolation_mode", 0), a.get("padding_mode", 0)
    if mode not in _GRID_MODES or padding not in _GRID_PADDINGS:
        raise Unmapped(f"grid_sampler with interpolation mode {mode!r} and padding mode {padding!r}")
    rank = len(t.shape(x))
    if rank not in (4, 5):
        raise Unmapped(f"grid_sample of a {rank}-D input (the catalog samples images and volumes)")
    if rank == 5 and _GRID_MODES[mode] == "bicubic":
        raise Unmapped("grid_sample of a volume in bicubic mode (PyTorch's bicubic samples images)")
    return t.b.op("grid_sample", t.node(x, ctx), t.node(grid, ctx, "grid"), name=ctx.name, module=ctx.module,
                  attrs={"mode": _GRID_MODES[mode], "padding_mode": _GRID_PADDINGS[padding],
                         "align_corners": bool(a.get("align_corners", False))})


def affine_grid(b: Builder, theta: Any, size: list[int], align_corners: bool, name: str, module: str, where: str
                ) -> Any:
    """F.affine_grid(θ, size): the base grid's points (x, y, 1) times θᵀ, shaped (N, H, W, 2) (volumes: (x, y, z,
    1), (N, D, H, W, 3)); folded for a constant θ (an array), catalog ops for a computed one (a Node)."""
    if len(size) not in (4, 5):
        raise Unmapped(f"affine_grid for a size of {len(size)} axes {size} (images have 4, volumes 5)")
    n, spatial = int(size[0]), [int(d) for d in size[2:]]
    dims = len(spatial)
    shape = tuple(np.shape(theta) if isinstance(theta, np.ndarray) else theta.shape)
    if min(n, *spatial) < 1 or shape != (n, dims, dims + 1):
        raise Unmapped(f"affine_grid of θ {shape} for size {size} (θ must be (N, {dims}, {dims + 1}))")
    fold_room((), f"the affine grid {name!r}", where, shape=(n, *spatial, dims + 1))
    base = affine_base_grid(spatial, align_corners)
    if isinstance(theta, np.ndarray):
        return np.matmul(base, np.transpose(theta.astype(np.float64), (0, 2, 1))).reshape(n, *spatial, dims)
    turned = b.op("transpose", theta, name=f"{name}.theta_T", module=module, attrs={"axes": (0, 2, 1)})
    points = b.op("matmul", b.const(base, module, "base_grid"), turned, name=f"{name}.points", module=module)
    return b.op("reshape", points, name=name, module=module, attrs={"shape": (-1, *spatial, dims)})


@aten("affine_grid_generator")
def _affine_grid(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    theta = a["theta"]
    known = t.known(theta)
    value: Any = known if known is not None else t.node(theta, ctx, "theta")
    if not isinstance(value, Node | np.ndarray):
        raise Unmapped("affine_grid of a θ that is not a tensor")
    return affine_grid(t.b, value, [int(d) for d in a["size"]], bool(a.get("align_corners", False)), ctx.name,
                       ctx.module, t.where)

"""Resizing images and volumes, sampling images at given points, and padding tensors: nearest, bilinear,
bicubic and trilinear upsampling, `grid_sample`, and `pad` in four modes.

Every resize and pad is a fixed linear map along each axis: output position i reads one input position
(nearest, pad), a weighted pair of them (bilinear) or four (bicubic). The maps are computed here, in plain
Python, with PyTorch's exact arithmetic (float32 where PyTorch uses it), and shared by both backends.
`grid_sample` reads its positions from a second input, so its map is computed at run time, by the backends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]


def _two(value: Any, what: str, kind: type) -> tuple[Any, Any] | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return kind(value), kind(value)
    items = tuple(value)
    if len(items) != 2 or any(v is None for v in items):
        raise ShapeError(f"{what} must be (height, width), got {value!r}")
    return kind(items[0]), kind(items[1])


def upsample_size(x: Shape, output_size: Any, scales: Any, what: str) -> tuple[int, int]:
    """The output (height, width): output_size when given, else ⌊input · scale⌋ as PyTorch."""
    if len(x) != 4:
        raise ShapeError(f"{what} takes images as (batch, channels, height, width), got {S.fmt(x)}")
    size = _two(output_size, "output_size", int)
    factors = _two(scales, "scales", float)
    if size is None:
        if factors is None:
            raise ShapeError(f"{what} needs an output_size or scales")
        size = int(x[2] * factors[0]), int(x[3] * factors[1])
    if min(size) < 1:
        raise ShapeError(f"{what}: output size {size} must be positive")
    return size


def _three(value: Any, what: str, kind: type) -> tuple[Any, Any, Any] | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return kind(value), kind(value), kind(value)
    items = tuple(value)
    if len(items) != 3 or any(v is None for v in items):
        raise ShapeError(f"{what} must be (depth, height, width), got {value!r}")
    return kind(items[0]), kind(items[1]), kind(items[2])


def upsample_size3d(x: Shape, output_size: Any, scales: Any, what: str) -> tuple[int, int, int]:
    """The output (depth, height, width) of a volume: output_size when given, else ⌊input · scale⌋ as PyTorch."""
    if len(x) != 5:
        raise ShapeError(f"{what} takes volumes as (batch, channels, depth, height, width), got {S.fmt(x)}")
    size = _three(output_size, "output_size", int)
    factors = _three(scales, "scales", float)
    if size is None:
        if factors is None:
            raise ShapeError(f"{what} needs an output_size or scales")
        size = int(x[2] * factors[0]), int(x[3] * factors[1]), int(x[4] * factors[2])
    if min(size) < 1:
        raise ShapeError(f"{what}: output size {size} must be positive")
    return size


def scale_triple(scales: Any) -> tuple[float | None, float | None, float | None]:
    """The `scales` attr of a 3-D op as (s_d, s_h, s_w): None, one number for every axis, or three."""
    if scales is None:
        return None, None, None
    if isinstance(scales, int | float):
        return float(scales), float(scales), float(scales)
    return float(scales[0]), float(scales[1]), float(scales[2])


def scale_pair(scales: Any) -> tuple[float | None, float | None]:
    """The `scales` attr as (s_h, s_w): None, one number for both axes, or two."""
    if scales is None:
        return None, None
    if isinstance(scales, int | float):
        return float(scales), float(scales)
    return float(scales[0]), float(scales[1])


def _scale(size: int, out: int, scale: float | None) -> float:
    """PyTorch's `compute_scales_value`: input step per output step, 1/scale when a scale is given."""
    return 1.0 / scale if scale is not None and scale > 0 else size / out


def nearest_sources(size: int, out: int, scale: float | None) -> list[int]:
    """Input index of each output index, PyTorch's `nearest` rule: min(⌊i · r⌋, size − 1), in float32.

    As in PyTorch, an axis that keeps its size is copied and one that doubles takes ⌊i/2⌋, whatever
    the scale says.
    """
    if out == size or out == 2 * size:
        return [i * size // out for i in range(out)]
    r = np.float32(_scale(size, out, scale))
    return [min(math.floor(np.float32(i) * r), size - 1) for i in range(out)]


def linear_sources(size: int, out: int, align_corners: bool, scale: float | None, dtype: str
                   ) -> list[tuple[int, int, float]]:
    """(i₀, i₁, λ) per output index: out = (1 − λ)·x[i₀] + λ·x[i₁], PyTorch's bilinear rule in `dtype`.

    The source coordinate is r·i (align_corners) or max(r·(i + ½) − ½, 0); i₀ is its floor (taken in
    float32, as PyTorch does), i₁ the next index inside the image. An axis that keeps its size is copied,
    whatever the scale says, as in PyTorch.
    """
    if out == size:
        return [(i, i, 0.0) for i in range(out)]
    real = np.float32 if dtype == "float32" else np.float64
    if align_corners:
        r = real(real(size - 1) / real(out - 1)) if out > 1 else real(0.0)
    else:
        r = real(1.0 / scale) if scale is not None and scale > 0 else real(real(size) / real(out))
    found = []
    for i in range(out):
        src = r * real(i) if align_corners else max(r * (real(i) + real(0.5)) - real(0.5), real(0.0))
        i0 = min(math.floor(np.float32(src)), size - 1)
        lam = float(min(max(src - real(i0), real(0.0)), real(1.0)))
        found.append((i0, i0 + (1 if i0 < size - 1 else 0), lam))
    return found


CUBIC_A = -0.75  # PyTorch's (and ONNX Resize's default) cubic convolution coefficient


def cubic_weights(t: Any) -> tuple[Any, Any, Any, Any]:
    """Keys' cubic convolution weights of the 4 taps ⌊y⌋ − 1 … ⌊y⌋ + 2 at the fraction t = y − ⌊y⌋ (a = −0.75),
    in t's own type (PyTorch computes them in the input's float type)."""
    a = CUBIC_A

    def near(d: Any) -> Any:  # |d| ≤ 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d: Any) -> Any:  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def cubic_sources(size: int, out: int, align_corners: bool, scale: float | None, dtype: str
                  ) -> list[tuple[tuple[int, int, int, int], tuple[float, float, float, float]]]:
    """(the 4 input indices, their 4 weights) per output index, PyTorch's bicubic rule in `dtype`.

    The source coordinate is y = r·i (align_corners) or r·(i + ½) − ½, not clamped at 0 as bilinear's is; the
    taps ⌊y⌋ − 1 … ⌊y⌋ + 2 outside the image read its edge pixel (PyTorch's bounded access).
    """
    real = np.float32 if dtype == "float32" else np.float64
    if align_corners:
        r = real(real(size - 1) / real(out - 1)) if out > 1 else real(0.0)
    else:
        r = real(1.0 / scale) if scale is not None and scale > 0 else real(real(size) / real(out))
    found = []
    for i in range(out):
        src = r * real(i) if align_corners else r * (real(i) + real(0.5)) - real(0.5)
        i0 = math.floor(src)
        w0, w1, w2, w3 = cubic_weights(src - real(i0))
        t0, t1, t2, t3 = (min(max(i0 - 1 + k, 0), size - 1) for k in range(4))
        found.append(((t0, t1, t2, t3), (float(w0), float(w1), float(w2), float(w3))))
    return found


ANTIALIAS_CUBIC_A = -0.5  # PyTorch's antialiased bicubic filter (PIL's), not the plain resize's −0.75


def _antialias_filter(kind: str, d: Any) -> Any:
    """The antialiasing filter at distance d (in input pixels, stretched by the scale when shrinking): a triangle
    (bilinear) or Keys' cubic with a = −0.5 (bicubic)."""
    d = abs(d)
    if kind == "bilinear":
        return 1 - d if d < 1 else d * 0
    a = ANTIALIAS_CUBIC_A
    if d < 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    return (((d - 5) * d + 8) * d - 4) * a if d < 2 else d * 0


def antialias_sources(size: int, out: int, kind: str, align_corners: bool, scale: float | None, dtype: str
                      ) -> list[tuple[int, list[float]]]:
    """(the first input index, the weights of it and the inputs after it) per output index: PyTorch's
    antialiased resize (F.interpolate(antialias=True)), in `dtype`.

    Output i is centred at c = r·(i + ½) of the input (r = H/h, 1/scale when a scale is given, (H − 1)/(h − 1)
    with align_corners); when shrinking (r > 1) the filter is stretched r times, so every input pixel under it
    counts (a box-like average, no aliasing); when growing it is the plain filter. The taps are the input pixels
    j with |j + ½ − c| within the filter's reach (1 bilinear, 2 bicubic, times r when shrinking), cut at the
    image's edges, their weights filter((j + ½ − c)/max(r, 1)) divided by their sum."""
    real = np.float32 if dtype == "float32" else np.float64
    if align_corners:
        r = real(real(size - 1) / real(out - 1)) if out > 1 else real(0.0)
    else:
        r = real(1.0 / scale) if scale is not None and scale > 0 else real(real(size) / real(out))
    reach = (real(1.0) if kind == "bilinear" else real(2.0)) * (r if r >= 1 else real(1.0))
    stretch = real(1.0) / r if r >= 1 else real(1.0)
    found = []
    for i in range(out):
        centre = r * (real(i) + real(0.5))
        first = max(int(centre - reach + real(0.5)), 0)  # truncated toward zero, as PyTorch's cast
        stop = min(int(centre + reach + real(0.5)), size)
        weights = [real(_antialias_filter(kind, (real(j) - centre + real(0.5)) * stretch))
                   for j in range(first, stop)]
        total = real(sum(weights, real(0.0)))
        found.append((first, [float(w / total) if total != 0 else float(w) for w in weights]))
    return found


def _upsample(name: str) -> Any:
    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        x = tuple(shapes[0])
        return x[0], x[1], *upsample_size(x, attrs.get("output_size"), attrs.get("scales"), name)

    return rule


_SIZE = ("output_size (h, w) sets the output's size; scales (s_h, s_w), as PyTorch passes them for a scale_factor, "
         "set r = 1/s (otherwise r = H/h; an axis that keeps its size is copied) and, without an output_size, "
         "the size ⌊H·s_h⌋ × ⌊W·s_w⌋")
_ANTIALIAS = ("antialias (F.interpolate(antialias=True): timm's position embeddings resampled, torchvision's "
              "Resize) blends every input pixel under a filter centred at r·(i + ½), stretched r times when shrinking "
              "(a = −0.5 for bicubic), its weights divided by their sum at the edges")
define(OpDef(
    "upsample_nearest2d", ("x",), "out[n, c, i, j] = x[n, c, ⌊r_h · i⌋, ⌊r_w · j⌋]",
    {"x": "∂L/∂x[n, c, p, q] = Σ of ∂L/∂out[n, c, i, j] over the output pixels (i, j) that copied x[p, q]"},
    _upsample("upsample_nearest2d"), "near", category="conv", default_attrs={"output_size": None, "scales": None},
    summary=f"nearest-neighbour resize (PyTorch's mode='nearest'); {_SIZE}",
))
define(OpDef(
    "upsample_bilinear2d", ("x",),
    "out[n, c, i, j] = Σ_p Σ_q A_h[i, p] · x[n, c, p, q] · A_w[j, q]: a blend of the 2×2 nearest pixels, "
    "row i of A holding (1 − λ, λ) at the rows ⌊y⌋, ⌊y⌋ + 1 around y = r·(i + ½) − ½ (align_corners: y = r·i)",
    {"x": "∂L/∂x = A_hᵀ · ∂L/∂out · A_w: each output's gradient shared back to its 4 source pixels by the "
          "same weights"},
    _upsample("upsample_bilinear2d"), "bilin", category="conv",
    default_attrs={"output_size": None, "align_corners": False, "scales": None, "antialias": False},
    summary="bilinear resize (F.interpolate(mode='bilinear')); align_corners maps the corner pixels onto each "
            f"other (r = (H − 1)/(h − 1)) and ignores scales; {_SIZE}; {_ANTIALIAS}",
))


define(OpDef(
    "upsample_bicubic2d", ("x",),
    "out[n, c, i, j] = Σ_p Σ_q A_h[i, p] · x[n, c, p, q] · A_w[j, q]: a blend of the 4×4 nearest pixels, row i "
    "of A holding Keys' cubic weights (a = −0.75) of the taps ⌊y⌋ − 1 … ⌊y⌋ + 2 around y = r·(i + ½) − ½ "
    "(align_corners: y = r·i); taps outside the image read its edge",
    {"x": "∂L/∂x = A_hᵀ · ∂L/∂out · A_w: each output's gradient shared back to its 16 source pixels by the "
          "same weights"},
    _upsample("upsample_bicubic2d"), "bicub", category="conv",
    default_attrs={"output_size": None, "align_corners": False, "scales": None, "antialias": False},
    summary="bicubic resize (F.interpolate(mode='bicubic'): ViT and DINOv2 position embeddings resized to another "
            "image size); align_corners maps the corner pixels onto each other (r = (H − 1)/(h − 1)) and ignores "
            f"scales; {_SIZE}; {_ANTIALIAS}",
))


# -- grid_sample -------------------------------------------------------------------------------
GRID_MODES = ("bilinear", "nearest", "bicubic")
GRID_PADDINGS = ("zeros", "border", "reflection")


def _grid_sample(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, grid = tuple(shapes[0]), tuple(shapes[1])
    mode, padding = attrs.get("mode", "bilinear"), attrs.get("padding_mode", "zeros")
    if mode not in GRID_MODES:
        raise ShapeError(f"grid_sample mode {mode!r} is not one of {', '.join(GRID_MODES)}")
    if padding not in GRID_PADDINGS:
        raise ShapeError(f"grid_sample padding_mode {padding!r} is not one of {', '.join(GRID_PADDINGS)}")
    if len(x) not in (4, 5):
        raise ShapeError("grid_sample takes images as (batch, channels, height, width) or volumes as (batch, "
                         f"channels, depth, height, width), got {S.fmt(x)}")
    dims = len(x) - 2
    if mode == "bicubic" and dims != 2:
        raise ShapeError("grid_sample's bicubic mode samples images, not volumes (as in PyTorch)")
    if len(grid) != len(x) or grid[-1] != dims or grid[0] != x[0]:
        points = "height, width, 2) points (x, y)" if dims == 2 else "depth, height, width, 3) points (x, y, z)"
        raise ShapeError(f"grid_sample's grid must be (batch {x[0]}, {points}, got {S.fmt(grid)}")
    return x[0], x[1], *grid[1:-1]


define(OpDef(
    "grid_sample", ("x", "grid"),
    "out[n, c, i, j] = Σ over the 2×2 pixels (p, q) around (v, u) of (1 − |v − p|)(1 − |u − q|) · x[n, c, p, q], "
    "where (u, v) is grid[n, i, j] = (g_x, g_y) ∈ [−1, 1]² scaled to pixels: u = ((g_x + 1)·W − 1)/2 "
    "(align_corners: (g_x + 1)(W − 1)/2); nearest reads the pixel nearest (u, v); bicubic blends the 4×4 pixels "
    "around it by bicubic upsampling's weights (points and taps outside the image padded tap by tap)",
    {"x": "∂L/∂x[n, c, p, q] = Σ of ∂L/∂out[n, c, i, j] · (1 − |v − p|)(1 − |u − q|) over the outputs that "
          "read pixel (p, q): the gradient goes back to the pixels each point read, by the same weights",
     "grid": "∂L/∂u = Σ_c ∂L/∂out · ((1 − f_y)(x[p₀, q₁] − x[p₀, q₀]) + f_y (x[p₁, q₁] − x[p₁, q₀])), the image's "
             "slope between the pixels around the point (f the fractions of (u, v)), times ∂u/∂g_x = W/2 "
             "(align_corners: (W − 1)/2); likewise for v (bicubic: the 16 pixels times the weights' slopes); 0 in "
             "nearest mode, and in bilinear where border padding clamps the point"},
    _grid_sample, "grid", category="conv",
    default_attrs={"mode": "bilinear", "padding_mode": "zeros", "align_corners": False},
    summary="sample images (or volumes) at the points of a grid (F.grid_sample: spatial transformer networks, "
            "deformable sampling, optical-flow warping, VoxelMorph's registration), bilinear (volumes: trilinear), "
            "nearest or bicubic (images); points outside read zeros, the nearest border pixel (border) or the "
            "image mirrored at its border (reflection)",
))


def affine_base_grid(sizes: Sequence[int], align_corners: bool) -> np.ndarray:
    """The points (x, y, 1) of an image of `sizes` (height, width), or (x, y, z, 1) of a volume of (depth, height,
    width), one row each, that F.affine_grid maps by θ; x runs along the width. Each axis is evenly spaced over
    [−1, 1] (the pixel centres, scaled by (n − 1)/n, without align_corners; 0 on an axis of one pixel), each point
    computed from the nearer end, as torch.linspace does."""

    def axis(n: int) -> np.ndarray:
        if n <= 1:
            return np.zeros(n)
        i = np.arange(n, dtype=np.float64)
        step = 2.0 / (n - 1)
        steps = np.where(i < n // 2, -1.0 + i * step, 1.0 - (n - 1 - i) * step)
        return steps if align_corners else steps * (n - 1) / n

    dims = len(sizes)
    base = np.ones((*sizes, dims + 1))
    for k, size in enumerate(reversed(sizes)):  # x (the last axis, width) first
        shape = [1] * dims
        shape[dims - 1 - k] = size
        base[..., k] = axis(size).reshape(shape)
    return base.reshape(-1, dims + 1)


def _upsample3d(name: str) -> Any:
    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        x = tuple(shapes[0])
        return x[0], x[1], *upsample_size3d(x, attrs.get("output_size"), attrs.get("scales"), name)

    return rule


_SIZE3D = ("output_size (d, h, w) sets the output's size; scales (s_d, s_h, s_w), as PyTorch passes them for a "
           "scale_factor, set r = 1/s (otherwise r = D/d; an axis that keeps its size is copied) and, without an "
           "output_size, the size ⌊D·s_d⌋ × ⌊H·s_h⌋ × ⌊W·s_w⌋")
define(OpDef(
    "upsample_nearest3d", ("x",), "out[n, c, t, i, j] = x[n, c, ⌊r_d · t⌋, ⌊r_h · i⌋, ⌊r_w · j⌋]",
    {"x": "∂L/∂x[n, c, s, p, q] = Σ of ∂L/∂out[n, c, t, i, j] over the output cells (t, i, j) that copied "
          "x[s, p, q]"},
    _upsample3d("upsample_nearest3d"), "near3d", category="conv", default_attrs={"output_size": None, "scales": None},
    summary=f"nearest-neighbour resize of volumes (3-D U-Net decoders' Upsample(mode='nearest')); {_SIZE3D}",
))
define(OpDef(
    "upsample_trilinear3d", ("x",),
    "out[n, c, t, i, j] = Σ_s Σ_p Σ_q A_d[t, s] · A_h[i, p] · A_w[j, q] · x[n, c, s, p, q]: a blend of the "
    "2×2×2 nearest cells, each A as bilinear's (1 − λ, λ) around y = r·(i + ½) − ½ (align_corners: y = r·i)",
    {"x": "∂L/∂x[n, c, s, p, q] = Σ_t Σ_i Σ_j A_d[t, s] · A_h[i, p] · A_w[j, q] · ∂L/∂out[n, c, t, i, j]: each "
          "output's gradient shared back to its 8 source cells by the same weights"},
    _upsample3d("upsample_trilinear3d"), "trilin", category="conv",
    default_attrs={"output_size": None, "align_corners": False, "scales": None},
    summary="trilinear resize of volumes (F.interpolate(mode='trilinear')), bilinear's rule along each of depth, "
            f"height and width; align_corners maps the corner cells onto each other and ignores scales; {_SIZE3D}",
))


# -- pad ---------------------------------------------------------------------------------------
MODES = ("constant", "reflect", "replicate", "circular")


def pad_pairs(pads: Any, ndim: int) -> tuple[tuple[int, int], ...]:
    """The (before, after) pair of every axis, first axis first."""
    try:
        pairs = tuple((int(p[0]), int(p[1])) for p in pads)
        ok = all(len(p) == 2 for p in pads)
    except (TypeError, IndexError, ValueError):
        ok = False
    if not ok or len(pairs) != ndim:
        raise ShapeError(f"pads must be one (before, after) pair per axis ({ndim} pairs), got {pads!r}")
    return pairs


def pad_sources(size: int, before: int, after: int, mode: str) -> list[int]:
    """The input index each output index of one axis reads; −1 where constant padding fills in."""
    sources = []
    for i in range(-before, size + after):
        if 0 <= i < size:
            sources.append(i)
        elif mode == "constant":
            sources.append(-1)
        elif mode == "reflect":  # mirror about the edge cell, which is not repeated
            sources.append(-i if i < 0 else 2 * (size - 1) - i)
        elif mode == "replicate":
            sources.append(0 if i < 0 else size - 1)
        else:  # circular
            sources.append(i % size)
    return sources


def _pad(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    mode = attrs.get("mode", "constant")
    if mode not in MODES:
        raise ShapeError(f"pad mode {mode!r} is not one of {', '.join(MODES)}")
    out = []
    for axis, (size, (before, after)) in enumerate(zip(x, pad_pairs(attrs.get("pads", ()), len(x)), strict=True)):
        if mode != "constant" and min(before, after) < 0:
            raise ShapeError(f"pad: negative padding crops only in constant mode, not {mode} (axis {axis})")
        if mode == "reflect" and max(before, after) >= size:
            raise ShapeError(f"pad: reflect padding ({before}, {after}) must be smaller than axis {axis}'s size {size}")
        if mode == "circular" and max(before, after) > size:
            raise ShapeError(f"pad: circular padding ({before}, {after}) may not exceed axis {axis}'s size {size}")
        if mode == "replicate" and size == 0 and max(before, after) > 0:
            raise ShapeError(f"pad: axis {axis} is empty, there is nothing to replicate")
        if size + before + after < 1:
            raise ShapeError(f"pad: ({before}, {after}) crops axis {axis} of size {size} away entirely")
        out.append(size + before + after)
    return tuple(out)


define(OpDef(
    "pad", ("x",),
    "out[i] = x[src(i)] along each axis: src is i − before inside x; outside it, constant fills in value, "
    "reflect mirrors x about its edge, replicate repeats the edge, circular wraps around",
    {"x": "∂L/∂x[k] = Σ of ∂L/∂out[i] over the output positions i with src(i) = k (constant: ∂L/∂out cropped "
          "back to x's place)"},
    _pad, "pad", category="shape", default_attrs={"pads": (), "mode": "constant", "value": 0.0},
    summary="pad (or, with negative amounts in constant mode, crop) every axis by pads[axis] = (before, after)",
))

"""ONNX Pad onto the catalog's `pad` (constant, reflect, edge = replicate, wrap = circular), Resize of images
and volumes onto the catalog's nearest, bilinear, bicubic and trilinear upsampling, in the forms PyTorch's
exporters write and PyTorch computes: linear and cubic (images, cubic_coeff_a = −0.75, exclude_outside = 0) with
half_pixel (align_corners=False), pytorch_half_pixel (to sizes over one) or align_corners; nearest with asymmetric
coordinates and floor rounding (mode='nearest'). The other forms ONNX defines (asymmetric and tf_half_pixel_for_nn
coordinates, every nearest rounding, other cubic coefficients, exclude_outside, tensors of any rank from 3) and
the older operators (Upsample-1/7/9, Resize-10: asymmetric coordinates, onnxruntime's nearest rule) are computed
one axis at a time as ONNX defines them: nearest picks rows with `index`, linear and cubic multiply by the axis's
weight matrix. tf_crop_and_resize, half_pixel_symmetric, aspect-ratio policies and antialiased downsampling are
refused by name. GridSample of images onto `grid_sample`
(bilinear, nearest and cubic; zeros, border and reflection padding) and of volumes (linear and nearest); AffineGrid
as the matrix product it is."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ops.resize import CUBIC_A, GRID_PADDINGS, nearest_sources
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


_COORDS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn")
_ROUNDING = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


@onnx_op("Upsample")
def _upsample(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Upsample (deprecated at opset 10; the TorchScript exporter's F.interpolate at opset 9): Resize-10's rule, its
    scales an attribute until opset 9 (height_scale and width_scale in the experimental Upsample-1)."""
    if len(ins) > 1 and ins[1] is not None:
        scales = _constant(r, ins[1], "scales")
    elif "scales" in ctx.attrs:
        scales = np.asarray(ctx.attrs["scales"], dtype=np.float64)
    else:
        scales = np.asarray([1.0, 1.0, float(ctx.attrs.get("height_scale", 1.0)),
                             float(ctx.attrs.get("width_scale", 1.0))])
    if scales is not None and any(float(f) < 1.0 for f in scales):  # ONNX: Upsample's scales are at least 1
        raise Unmapped(f"Upsample scales {[float(f) for f in scales]} below 1 (Upsample only grows; Resize shrinks)")
    return _resize_before_11(r, ctx, r.node(ins[0], ctx), scales)


def _resize_before_11(r: Reader, ctx: Ctx, x: Any, scales: np.ndarray | None) -> Any:
    """Upsample and Resize-10: scales only, asymmetric coordinates (x_in = x_out / scale), linear from the two
    nearest pixels and nearest by onnxruntime's rule (⌊x_in⌋ growing, ⌈x_in⌉ shrinking, per axis)."""
    mode = {"bilinear": "linear"}.get(str(ctx.attrs.get("mode", "nearest")), str(ctx.attrs.get("mode", "nearest")))
    if mode not in ("nearest", "linear"):
        raise Unmapped(f"{ctx.op} mode {mode!r} (before opset 11: nearest and linear)")
    rank = len(x.shape)
    if scales is None or len(scales) != rank:
        raise Unmapped(f"{ctx.op} with {0 if scales is None else len(scales)} scales for a {rank}-D tensor")
    factors = tuple(float(f) for f in scales)
    if rank < 3 or any(f != 1.0 for f in factors[:2]):
        raise Unmapped(f"{ctx.op} scaling the batch or channel axis (scales {list(factors)})")
    if not all(0 < f < float("inf") for f in factors):
        raise Unmapped(f"{ctx.op} scales {list(factors)} must be positive")
    out = tuple(int(n * f) for n, f in zip(x.shape[2:], factors[2:], strict=True))
    if min(out) < 1:
        raise Unmapped(f"{ctx.op} to an empty tensor {out}")
    fold_room((), f"{ctx.op} {ctx.name!r}", r.where, shape=[*x.shape[:2], *out])
    return _separable(r, ctx, x, out, factors[2:], mode, "asymmetric", "simple", CUBIC_A, False)


def _resize_form(r: Reader, ins: list[Any], ctx: Ctx, x: Any) -> tuple[tuple[int, ...], tuple[float, ...] | None]:
    """Resize-11 on: the spatial output size, and the scales where the file gives scales (None for sizes)."""
    rank = len(x.shape)
    spatial = range(2, rank)
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
    if scales is not None:
        if any(full.get(a, 1.0) != 1.0 for a in (0, 1)):
            raise Unmapped(f"Resize scaling the batch or channel axis (scales {list(scales)})")
        factors = tuple(full.get(a, 1.0) for a in spatial)
        if not all(0 < f < float("inf") for f in factors):  # also NaN
            raise Unmapped(f"Resize scales {list(scales)} must be positive")
        out = tuple(int(x.shape[a] * f) for a, f in zip(spatial, factors, strict=True))  # ONNX's floor, as PyTorch's
        return out, factors
    if str(ctx.attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch":
        raise Unmapped("Resize keeping the aspect ratio (keep_aspect_ratio_policy)")
    if any(int(full.get(a, x.shape[a])) != x.shape[a] for a in (0, 1)):
        raise Unmapped(f"Resize to another batch or channel count (sizes {[int(v) for v in given]})")
    return tuple(int(full.get(a, x.shape[a])) for a in spatial), None


@onnx_op("Resize")
def _resize(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    rank = len(x.shape)
    if ctx.opset < 11:  # Resize-10: (X, scales)
        if rank < 3:
            raise Unmapped(f"Resize of a {rank}-D tensor (the catalog resizes along the axes after the channels)")
        return _resize_before_11(r, ctx, x, _constant(r, ins[1] if len(ins) > 1 else None, "scales"))
    if rank < 3:
        raise Unmapped(f"Resize of a {rank}-D tensor (the catalog resizes along the axes after the channels)")
    spatial = range(2, rank)
    mode = str(ctx.attrs.get("mode", "nearest"))
    coords = str(ctx.attrs.get("coordinate_transformation_mode", "half_pixel"))
    out, factors = _resize_form(r, ins, ctx, x)
    if min(out) < 1:
        raise Unmapped(f"Resize to an empty image {out}")
    fold_room((), f"Resize {ctx.name!r}", r.where, shape=[*x.shape[:2], *out])
    if int(ctx.attrs.get("antialias", 0)) and any(o < x.shape[a] for a, o in zip(spatial, out, strict=True)):
        raise Unmapped("antialiased Resize that shrinks (PyTorch's antialias=True)")
    if mode not in ("nearest", "linear", "cubic"):
        raise Unmapped(f"Resize mode {mode!r} (the catalog has nearest, linear and cubic)")
    if coords not in _COORDS or (coords == "tf_half_pixel_for_nn" and mode != "nearest"):
        raise Unmapped(f"{mode} Resize with {coords} coordinates")
    if mode != "nearest" and coords == "pytorch_half_pixel" and min(out) == 1:
        raise Unmapped("Resize pytorch_half_pixel to a size of one (it reads the first pixel, PyTorch the centre)")
    dims = rank - 2
    rounding = str(ctx.attrs.get("nearest_mode", "round_prefer_floor"))
    a = float(ctx.attrs.get("cubic_coeff_a", -0.75))
    exclude = bool(int(ctx.attrs.get("exclude_outside", 0)))
    # PyTorch's own forms become the catalog's upsampling ops (one step each); every other form ONNX defines is
    # computed as it defines it, one axis at a time (`_separable`)
    if dims in (2, 3) and mode == "linear" and coords in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return op(r, ctx, "upsample_bilinear2d" if dims == 2 else "upsample_trilinear3d", x, output_size=out,
                  scales=factors, align_corners=coords == "align_corners")
    if dims == 2 and mode == "cubic" and coords in ("half_pixel", "pytorch_half_pixel", "align_corners") and \
            a == CUBIC_A and not exclude:
        return op(r, ctx, "upsample_bicubic2d", x, output_size=out, scales=factors,
                  align_corners=coords == "align_corners")
    if dims in (2, 3) and mode == "nearest" and coords == "asymmetric" and rounding == "floor":
        return op(r, ctx, f"upsample_nearest{dims}d", x, output_size=out, scales=factors)
    if mode == "nearest" and rounding not in _ROUNDING:
        raise Unmapped(f"nearest Resize with {rounding} rounding")
    steps = factors or tuple(o / n for o, n in zip(out, x.shape[2:], strict=True))
    return _separable(r, ctx, x, out, steps, mode, coords, rounding, a, exclude)


def _sources(size: int, out: int, scale: float, coords: str) -> np.ndarray:
    """The input coordinate each output index reads along one axis, in float32 as onnxruntime computes it."""
    i = np.arange(out, dtype=np.float32)
    s, half = np.float32(scale), np.float32(0.5)
    if coords == "asymmetric":
        return i / s
    if coords == "tf_half_pixel_for_nn":
        return (i + half) / s
    if coords == "align_corners":
        return i * np.float32(size - 1) / np.float32(out - 1) if out > 1 else np.zeros(out, np.float32)
    if coords == "pytorch_half_pixel" and out == 1:
        return np.zeros(out, np.float32)
    return (i + half) / s - half  # half_pixel


def _nearest(src: np.ndarray, size: int, rounding: str, scale: float) -> np.ndarray:
    """The input index each output reads; "simple" is onnxruntime's rule before opset 11 (⌊x⌋ growing, ⌈x⌉
    shrinking, as Upsample and Resize-10 have no nearest_mode)."""
    if rounding == "simple":
        rounding = "floor" if scale >= 1.0 else "ceil"
    low = np.floor(src)
    frac = src - low
    index = {"floor": low, "ceil": np.ceil(src), "round_prefer_floor": low + (frac > 0.5),
             "round_prefer_ceil": low + (frac >= 0.5)}[rounding]
    return np.clip(index, 0, size - 1).astype(np.int64)


def _taps(src: np.ndarray, size: int, mode: str, a: float, exclude_outside: bool) -> tuple[np.ndarray, np.ndarray]:
    """The input rows each output blends along one axis and their weights, (out, 2) for linear and (out, 4) for
    cubic (Keys' kernel with coefficient a). Taps past the edge read the edge (or, with exclude_outside, weigh
    nothing and the others are scaled to sum to 1)."""
    if mode == "linear":
        x = np.clip(src.astype(np.float64), 0, size - 1)
        low = np.floor(x).astype(np.int64)
        lam = x - low
        return np.stack([low, np.minimum(low + 1, size - 1)], axis=1), np.stack([1.0 - lam, lam], axis=1)
    x = src.astype(np.float64)
    low = np.floor(x)
    t = (x - low)[:, None]
    rows = low.astype(np.int64)[:, None] + np.arange(-1, 3)
    d = np.concatenate([t + 1, t, 1 - t, 2 - t], axis=1)  # each tap's distance from x
    near = ((a + 2) * d - (a + 3)) * d * d + 1  # Keys' kernel, |d| ≤ 1 and 1 < |d| < 2
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    w = np.where(d <= 1, near, far)
    if exclude_outside:
        w = np.where((rows < 0) | (rows >= size), 0.0, w)
        w = w / w.sum(axis=1, keepdims=True)
    return np.clip(rows, 0, size - 1), w


MATRIX_LIMIT = 2**22  # weights of an axis up to this many (32 MB): one matmul; past it, a step per tap


def _separable(r: Reader, ctx: Ctx, x: Any, out: tuple[int, ...], scales: tuple[float, ...], mode: str,
               coords: str, rounding: str, a: float, exclude_outside: bool) -> Any:
    """A Resize as ONNX defines it, one spatial axis after the other: nearest picks input rows (`index`, or the
    catalog's nearest upsampling where PyTorch's rule picks the same ones), linear and cubic multiply by the
    axis's (out, in) weight matrix (`matmul`, so each step's gradient is the transpose of its map), or, for an axis
    too long for a matrix, add up each tap's rows times its weights."""
    rank = len(x.shape)
    if mode == "nearest":
        picks = [_nearest(_sources(n, o, s, coords), n, rounding, s)
                 for n, o, s in zip(x.shape[2:], out, scales, strict=True)]
        if rank in (4, 5) and all(p.tolist() == nearest_sources(n, o, s) for p, n, o, s in
                                  zip(picks, x.shape[2:], out, scales, strict=True)):
            return op(r, ctx, f"upsample_nearest{rank - 2}d", x, output_size=out, scales=scales)
        maps: list[Any] = [p[:, None] for p in picks]
    else:
        maps = [_taps(_sources(n, o, s, coords), n, mode, a, exclude_outside)
                for n, o, s in zip(x.shape[2:], out, scales, strict=True)]
    y = x
    changed = [(axis, m) for axis, m, n in zip(range(2, rank), maps, x.shape[2:], strict=True)
               if not _identity_map(m, n)]
    for k, (axis, m) in enumerate(changed):
        tag = "" if k == len(changed) - 1 else f"axis{axis}"
        if mode == "nearest":
            y = op(r, ctx, "index", y, r.b.const(m[:, 0], ctx.module, f"rows{axis}"), suffix=tag, axis=axis)
        elif len(m[0]) * x.shape[axis] <= MATRIX_LIMIT:
            rows, weights = m
            matrix = np.zeros((len(rows), x.shape[axis]))
            np.add.at(matrix, (np.repeat(np.arange(len(rows)), rows.shape[1]), rows.reshape(-1)), weights.reshape(-1))
            y = _along(r, ctx, y, axis, matrix, tag)
        else:
            rows, weights = m
            y = _blend(r, ctx, y, axis, rows, weights, tag)
    return y


def _identity_map(m: Any, size: int) -> bool:
    """Whether an axis's map reads each input row once, in order (a scale of 1)."""
    rows = m[:, 0] if isinstance(m, np.ndarray) else m[0][:, 0]
    if len(rows) != size or not np.array_equal(rows, np.arange(size)):
        return False
    return isinstance(m, np.ndarray) or bool(np.all(m[1][:, 0] == 1.0))


def _blend(r: Reader, ctx: Ctx, x: Any, axis: int, rows: np.ndarray, weights: np.ndarray, tag: str) -> Any:
    """Σ over taps j of x[rows[:, j]] · weights[:, j] along `axis`: the per-tap form of the weight matrix."""
    shape = [1] * len(x.shape)
    shape[axis] = len(rows)
    total = None
    for j in range(rows.shape[1]):
        picked = op(r, ctx, "index", x, r.b.const(rows[:, j], ctx.module, f"rows{axis}_{j}"),
                    suffix=f"axis{axis}.tap{j}", axis=axis)
        weighted = op(r, ctx, "mul", picked, r.b.const(weights[:, j].reshape(shape), ctx.module,
                                                        f"weights{axis}_{j}"), suffix=f"axis{axis}.weighted{j}")
        last = j == rows.shape[1] - 1
        total = weighted if total is None else op(r, ctx, "add", total, weighted,
                                                  suffix=tag if last else f"axis{axis}.sum{j}")
    return total


def _along(r: Reader, ctx: Ctx, x: Any, axis: int, matrix: np.ndarray, tag: str) -> Any:
    """x multiplied by `matrix` (out, in) along `axis`: W @ x over the last two axes, x @ Wᵀ over the last one,
    and for an earlier axis the axes after it merged into one (the batch axis stays free)."""
    rank = len(x.shape)
    weights = r.b.const(matrix if axis < rank - 1 else matrix.T, ctx.module, f"weights{axis}")
    if axis == rank - 1:
        return op(r, ctx, "matmul", x, weights, suffix=tag)
    if axis == rank - 2:
        return op(r, ctx, "matmul", weights, x, suffix=tag)
    rest = int(np.prod(x.shape[axis + 1:]))
    merged = op(r, ctx, "reshape", x, suffix=f"merged{axis}", shape=(-1, *x.shape[1:axis + 1], rest))
    product = op(r, ctx, "matmul", weights, merged, suffix=f"resized{axis}")
    return op(r, ctx, "reshape", product, suffix=tag,
              shape=(-1, *x.shape[1:axis], matrix.shape[0], *x.shape[axis + 1:]))


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

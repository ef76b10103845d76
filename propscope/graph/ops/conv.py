"""Convolution, transposed convolution, pooling and flatten on NCHW images (and NCL sequences).

Sizes follow PyTorch: an output side is ⌊(n + p₀ + p₁ − d(k − 1) − 1) / s⌋ + 1, with p₀ and p₁ the
padding before and after (equal in PyTorch, free in ONNX); ceil_mode rounds up instead, but drops
a last window that would start in the padding after the image, as PyTorch does. `Grid` says where
the windows sit and is shared with the kernels of both backends, so a model loaded from PyTorch
or ONNX keeps its shapes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]
Pads = tuple[int, int, int, int]  # top, bottom, left, right


def pair(value: Any, what: str = "value") -> tuple[int, int]:
    """An int or a pair of ints (PyTorch's `_pair`): one number for height and width alike."""
    if isinstance(value, int):
        return value, value
    items = tuple(int(v) for v in value)
    if len(items) != 2:
        raise ShapeError(f"{what} must be one int or two (height, width), got {value!r}")
    return items[0], items[1]


def single(value: Any, what: str = "value") -> int:
    """An int, or a sequence holding one (PyTorch's `_single`)."""
    if isinstance(value, int):
        return value
    items = tuple(int(v) for v in value)
    if len(items) != 1:
        raise ShapeError(f"{what} must be one int, got {value!r}")
    return items[0]


def pads4(value: Any, what: str = "padding") -> Pads:
    """Padding as (top, bottom, left, right): one int for every side, (height, width) for both sides
    of each axis as PyTorch, or four ints for ONNX's asymmetric pads."""
    if isinstance(value, int):
        return value, value, value, value
    items = tuple(int(v) for v in value)
    if len(items) == 2:
        return items[0], items[0], items[1], items[1]
    if len(items) == 4:
        return items[0], items[1], items[2], items[3]
    raise ShapeError(f"{what} must be one int, (height, width) or (top, bottom, left, right), got {value!r}")


def pads2(value: Any, what: str = "padding") -> tuple[int, int]:
    """1-D padding as (left, right): one int for both ends, or two."""
    if isinstance(value, int):
        return value, value
    items = tuple(int(v) for v in value)
    if len(items) == 1:
        return items[0], items[0]
    if len(items) == 2:
        return items[0], items[1]
    raise ShapeError(f"{what} must be one int or (left, right), got {value!r}")


def window_out(size: int, kernel: int, stride: int, before: int, after: int, dilation: int = 1,
               ceil_mode: bool = False) -> int:
    """How many windows fit along one side (0 when none does), PyTorch's `pooling_output_shape_pad_lr`:
    ⌊(n + p₀ + p₁ − d(k − 1) − 1 [+ s − 1 in ceil_mode]) / s⌋ + 1, rounding toward −∞ (div_rtn), then in
    ceil_mode one window less if the last would start at or past n + p₀. So ceil_mode keeps one window on an
    image smaller than the window (a 1×1 image, kernel 2, stride 2) as long as it starts inside the image."""
    span = size + before + after - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1  # Python's // rounds toward −∞, as div_rtn
    if ceil_mode and (out - 1) * stride >= size + before:  # the last window would start in the padding
        out -= 1
    return max(out, 0)


@dataclass(frozen=True)
class Grid:
    """Where the windows of a convolution or pooling sit on an image: each field is (height, width),
    `pads` is (top, bottom, left, right), `size` the image and `out` the number of windows."""

    size: tuple[int, int]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: Pads
    dilation: tuple[int, int]
    out: tuple[int, int]

    @property
    def padded(self) -> tuple[int, int]:
        """The padded image's size; ceil_mode's last window may reach past the padding after the image."""
        sides = []
        for i in range(2):
            reach = (self.out[i] - 1) * self.stride[i] + self.dilation[i] * (self.kernel[i] - 1) + 1
            sides.append(max(self.size[i] + self.pads[2 * i] + self.pads[2 * i + 1], reach))
        return sides[0], sides[1]

    @property
    def symmetric(self) -> bool:
        return self.pads[0] == self.pads[1] and self.pads[2] == self.pads[3]

    @functools.cached_property  # grids are cached per geometry (`_grid`), so this is worked out once
    def has_window_without_pixel(self) -> bool:
        """Whether some window's taps all fall in the padding (dilated windows can step over a small image)."""
        for i in range(2):
            before, size, step, gap = self.pads[2 * i], self.size[i], self.stride[i], self.dilation[i]
            for o in range(self.out[i]):
                start = o * step - before
                first = max(0, -(start // gap))  # the first tap at or after the image's first pixel
                if first >= self.kernel[i] or start + first * gap >= size:
                    return True
        return False

    def window_counts(self, count_include_pad: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """How many cells each window averages over, per axis (a window's count is their product).

        PyTorch's rule: counting the padding, a window is clipped only where it reaches past the
        padding after the image (ceil_mode); otherwise only its cells inside the image count.
        """
        rows, cols = (axis_counts(self.size[i], self.kernel[i], self.stride[i], self.pads[2 * i], self.pads[2 * i + 1],
                                  self.out[i], count_include_pad) for i in range(2))
        return rows, cols


def axis_counts(size: int, kernel: int, stride: int, before: int, after: int, out: int,
                count_include_pad: bool) -> tuple[int, ...]:
    """Along one axis, how many cells each of the `out` windows averages over (`Grid.window_counts`'s rule)."""
    counts = []
    for o in range(out):
        start = o * stride - before
        end = min(start + kernel, size + after)
        counts.append(end - start if count_include_pad else min(end, size) - max(start, 0))
    return tuple(counts)


@functools.lru_cache(maxsize=2048)
def _grid(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], pads: Pads,
          dilation: tuple[int, int], ceil_mode: bool, what: str) -> Grid:
    if min(kernel) < 1 or min(stride) < 1 or min(dilation) < 1:
        raise ShapeError(f"{what}: kernel {kernel}, stride {stride} and dilation {dilation} must be positive")
    if min(pads) < 0:
        raise ShapeError(f"{what}: padding {pads} must not be negative")
    out = tuple(window_out(size[i], kernel[i], stride[i], pads[2 * i], pads[2 * i + 1], dilation[i], ceil_mode)
                for i in range(2))
    if min(out) < 1:
        raise ShapeError(
            f"{what}: a {kernel[0]}×{kernel[1]} window (dilation {dilation}) does not fit in a "
            f"{size[0]}×{size[1]} image padded by {pads}"
        )
    return Grid(size, kernel, stride, pads, dilation, (out[0], out[1]))


def grid(size: Sequence[int], kernel: Any, stride: Any, padding: Any, dilation: Any = 1, ceil_mode: bool = False,
         what: str = "conv2d") -> Grid:
    """The windows of a 2-D op on a (height, width) image; stride None means the kernel size."""
    k = pair(kernel, "kernel_size")
    s = k if stride is None else pair(stride, "stride")
    return _grid((int(size[0]), int(size[1])), k, s, pads4(padding), pair(dilation, "dilation"), bool(ceil_mode),
                 what)


def grid1d(length: int, kernel: Any, stride: Any, padding: Any, dilation: Any = 1, ceil_mode: bool = False,
           what: str = "conv1d") -> Grid:
    """A 1-D op's windows as a 2-D grid on a 1×length image, so 1-D kernels reuse the 2-D ones."""
    k = single(kernel, "kernel_size")
    s = k if stride is None else single(stride, "stride")
    left, right = pads2(padding)
    return _grid((1, int(length)), (1, k), (1, s), (0, 0, left, right), (1, single(dilation, "dilation")),
                 bool(ceil_mode), what)


def transposed_grid(size: Sequence[int], kernel: Sequence[int], stride: Any, padding: Any, output_padding: Any,
                    dilation: Any) -> Grid:
    """The grid of the convolution whose input gradient conv_transpose2d computes: its `size` is the
    transposed convolution's output, its `out` the transposed convolution's input."""
    s, d, op, p = pair(stride, "stride"), pair(dilation, "dilation"), pair(output_padding, "output_padding"), \
        pads4(padding)
    if min(s) < 1 or min(d) < 1 or min(p) < 0 or min(op) < 0:
        raise ShapeError("conv_transpose2d: stride and dilation must be positive, padding and output_padding "
                         "not negative")
    if op[0] >= max(s[0], d[0]) or op[1] >= max(s[1], d[1]):
        raise ShapeError(f"conv_transpose2d: output_padding {op} must be smaller than the stride {s} or the "
                         f"dilation {d}")
    full = [(int(size[i]) - 1) * s[i] - p[2 * i] - p[2 * i + 1] + d[i] * (kernel[i] - 1) + op[i] + 1
            for i in range(2)]
    if min(full) < 1:
        raise ShapeError(f"conv_transpose2d: padding {p} crops the whole {full[0]}×{full[1]} output away")
    return Grid((full[0], full[1]), (int(kernel[0]), int(kernel[1])), s, p, d, (int(size[0]), int(size[1])))


# -- convolutions ------------------------------------------------------------------------------
def _image(x: Shape, what: str) -> None:
    if len(x) != 4:
        raise ShapeError(f"{what} takes images as (batch, channels, height, width), got {S.fmt(x)}")


def _sequence(x: Shape, what: str) -> None:
    if len(x) != 3:
        raise ShapeError(f"{what} takes sequences as (batch, channels, length), got {S.fmt(x)}")


def _groups(attrs: Mapping[str, Any], c_in: int, c_out: int, what: str) -> int:
    groups = int(attrs.get("groups", 1))
    if groups < 1 or c_in % groups or c_out % groups:
        raise ShapeError(f"{what}: groups={groups} must divide both the {c_in} input and {c_out} output channels")
    return groups


def _bias(shapes: Sequence[Shape], channels: int) -> None:
    if len(shapes) == 3 and tuple(shapes[2]) != (channels,):
        raise ShapeError(f"bias must be ({channels},), one per output channel, got {S.fmt(shapes[2])}")


def _conv2d(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w = shapes[0], shapes[1]
    _image(x, "conv2d")
    if len(w) != 4:
        raise ShapeError(f"weight must be (out_channels, in_channels / groups, kh, kw), got {S.fmt(w)}")
    groups = _groups(attrs, x[1], w[0], "conv2d")
    if w[1] * groups != x[1]:
        raise ShapeError(f"weight {S.fmt(w)} expects {w[1] * groups} input channels (groups={groups}), got {x[1]}")
    _bias(shapes, w[0])
    g = grid(x[2:], (w[2], w[3]), attrs.get("stride", 1), attrs.get("padding", 0), attrs.get("dilation", 1))
    return x[0], w[0], *g.out


_CONV_ATTRS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}

define(OpDef(
    "conv2d", ("x", "W", "b"),
    "out[n, o, i, j] = b[o] + Σ_c Σ_u Σ_v W[o, c, u, v] · x[n, c, s·i + d·u − p, s·j + d·v − p]",
    {
        "x": "∂L/∂x[n, c, :, :] = Σ_o full convolution of ∂L/∂out[n, o] with W[o, c] flipped "
             "(= conv_transpose2d(∂L/∂out, W))",
        "W": "∂L/∂W[o, c, u, v] = Σ_n Σ_i Σ_j ∂L/∂out[n, o, i, j] · x[n, c, s·i + d·u − p, s·j + d·v − p]",
        "b": "∂L/∂b[o] = Σ_n Σ_i Σ_j ∂L/∂out[n, o, i, j]",
    },
    _conv2d, "conv", category="conv", min_arity=2, default_attrs=dict(_CONV_ATTRS),
    summary="2-D convolution (cross-correlation, as PyTorch): a small filter slides over the image. s stride, "
            "d dilation, p padding (one int, (height, width), or (top, bottom, left, right) as ONNX); with G "
            "groups each output channel sees only the C/G input channels of its group (G = C: depthwise)",
))


def _conv_transpose2d(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w = shapes[0], shapes[1]
    _image(x, "conv_transpose2d")
    if len(w) != 4:
        raise ShapeError(f"weight must be (in_channels, out_channels / groups, kh, kw), got {S.fmt(w)}")
    if w[0] != x[1]:
        raise ShapeError(f"conv_transpose2d: weight {S.fmt(w)} expects {w[0]} input channels, got {x[1]}")
    groups = _groups(attrs, x[1], w[1] * int(attrs.get("groups", 1)), "conv_transpose2d")
    _bias(shapes, w[1] * groups)
    g = transposed_grid(x[2:], (w[2], w[3]), attrs.get("stride", 1), attrs.get("padding", 0),
                        attrs.get("output_padding", 0), attrs.get("dilation", 1))
    return x[0], w[1] * groups, *g.size


define(OpDef(
    "conv_transpose2d", ("x", "W", "b"),
    "out[n, o, s·i + d·u − p, s·j + d·v − p] += Σ_c x[n, c, i, j] · W[c, o, u, v]  (then + b[o]): each input "
    "pixel stamps the filter, scaled by its value, onto the output",
    {
        "x": "∂L/∂x = conv2d(∂L/∂out, W) with the same stride, padding, dilation and groups",
        "W": "∂L/∂W[c, o, u, v] = Σ_n Σ_i Σ_j x[n, c, i, j] · ∂L/∂out[n, o, s·i + d·u − p, s·j + d·v − p]",
        "b": "∂L/∂b[o] = Σ_n Σ_i Σ_j ∂L/∂out[n, o, i, j]",
    },
    _conv_transpose2d, "convᵀ", category="conv", min_arity=2,
    default_attrs={"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1},
    summary="transposed convolution (the gradient of conv2d with respect to its input), which upsamples: the "
            "output side is (n − 1)·s − 2p + d·(k − 1) + output_padding + 1; W is (C_in, C_out / G, kh, kw)",
))


def _conv1d(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w = shapes[0], shapes[1]
    _sequence(x, "conv1d")
    if len(w) != 3:
        raise ShapeError(f"weight must be (out_channels, in_channels / groups, k), got {S.fmt(w)}")
    groups = _groups(attrs, x[1], w[0], "conv1d")
    if w[1] * groups != x[1]:
        raise ShapeError(f"weight {S.fmt(w)} expects {w[1] * groups} input channels (groups={groups}), got {x[1]}")
    _bias(shapes, w[0])
    g = grid1d(x[2], w[2], attrs.get("stride", 1), attrs.get("padding", 0), attrs.get("dilation", 1))
    return x[0], w[0], g.out[1]


define(OpDef(
    "conv1d", ("x", "W", "b"),
    "out[n, o, i] = b[o] + Σ_c Σ_u W[o, c, u] · x[n, c, s·i + d·u − p]",
    {
        "x": "∂L/∂x[n, c, :] = Σ_o full convolution of ∂L/∂out[n, o] with W[o, c] flipped",
        "W": "∂L/∂W[o, c, u] = Σ_n Σ_i ∂L/∂out[n, o, i] · x[n, c, s·i + d·u − p]",
        "b": "∂L/∂b[o] = Σ_n Σ_i ∂L/∂out[n, o, i]",
    },
    _conv1d, "conv1d", category="conv", min_arity=2, default_attrs=dict(_CONV_ATTRS),
    summary="1-D convolution over (batch, channels, length): s stride, d dilation, p padding (one int or "
            "(left, right)), G groups",
))


# -- pooling -----------------------------------------------------------------------------------
def _half_kernel(g: Grid, what: str) -> None:
    """PyTorch's rule: padding may be at most half the kernel, rounded down, whatever the dilation
    (pool2d_shape_check's kW/2 >= padW; pooling_output_shape's half the dilated window is never tighter)."""
    for i in range(2):
        if max(g.pads[2 * i], g.pads[2 * i + 1]) > g.kernel[i] // 2:
            raise ShapeError(f"{what}: padding {g.pads} may be at most half the kernel {g.kernel}")


def _pool(name: str) -> Any:
    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        x = shapes[0]
        if name.endswith("1d"):
            _sequence(x, name)
            g = grid1d(x[2], attrs["kernel_size"], attrs.get("stride"), attrs.get("padding", 0),
                       attrs.get("dilation", 1), attrs.get("ceil_mode", False), name)
            _half_kernel(g, name)
            return x[0], x[1], g.out[1]
        _image(x, name)
        g = grid(x[2:], attrs["kernel_size"], attrs.get("stride"), attrs.get("padding", 0), attrs.get("dilation", 1),
                 attrs.get("ceil_mode", False), name)
        _half_kernel(g, name)
        return x[0], x[1], *g.out

    return rule


_CEIL = "ceil_mode rounds the window count up (a last window starting in the padding is dropped)"
define(OpDef(
    "max_pool2d", ("x",), "out[n, c, i, j] = max over the kh×kw window of x at (s·i − p, s·j − p), step d",
    {"x": "∂L/∂x = ∂L/∂out routed to the window's largest element (the first, on ties); 0 elsewhere"},
    _pool("max_pool2d"), "max", category="conv",
    default_attrs={"kernel_size": 2, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
    summary="max pooling: the largest value of each window (stride s defaults to the kernel size; padding p as "
            f"conv2d's, filled with −∞; {_CEIL})",
))
define(OpDef(
    "avg_pool2d", ("x",), "out[n, c, i, j] = (1/m) Σ over the kh×kw window of x at (s·i − p, s·j − p)",
    {"x": "∂L/∂x = Σ over the windows holding x of ∂L/∂out / m"},
    _pool("avg_pool2d"), "avg", category="conv",
    default_attrs={"kernel_size": 2, "stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True},
    summary="average pooling; m is the window's size counting the zero padding (count_include_pad, PyTorch's "
            f"default) or only the pixels of the image; {_CEIL}",
))
define(OpDef(
    "max_pool1d", ("x",), "out[n, c, i] = max over the k-wide window of x at s·i − p, step d",
    {"x": "∂L/∂x = ∂L/∂out routed to the window's largest element (the first, on ties); 0 elsewhere"},
    _pool("max_pool1d"), "max", category="conv",
    default_attrs={"kernel_size": 2, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
    summary=f"max pooling over (batch, channels, length); stride s defaults to the kernel size k; {_CEIL}",
))
define(OpDef(
    "avg_pool1d", ("x",), "out[n, c, i] = (1/m) Σ over the k-wide window of x at s·i − p",
    {"x": "∂L/∂x = Σ over the windows holding x of ∂L/∂out / m"},
    _pool("avg_pool1d"), "avg", category="conv",
    default_attrs={"kernel_size": 2, "stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True},
    summary="average pooling over (batch, channels, length); m counts the zero padding when count_include_pad; "
            f"{_CEIL}",
))


def adaptive_sizes(x: Shape, output_size: Any, axes: tuple[str, ...] = ("height", "width")) -> tuple[int, ...]:
    """The output size of an adaptive pool over the trailing `axes`; None in a place keeps the input's size there,
    as PyTorch."""
    if output_size is None or isinstance(output_size, int):
        items: tuple[Any, ...] = (output_size,) * len(axes)
    else:
        items = tuple(output_size)
    if len(items) != len(axes):
        raise ShapeError(f"output_size must be one int or ({', '.join(axes)}), got {output_size!r}")
    size = tuple(int(x[2 + i]) if v is None else int(v) for i, v in enumerate(items))
    if min(size) < 1:
        raise ShapeError(f"output_size {size} must be positive")
    return size


def adaptive_size(x: Shape, output_size: Any) -> tuple[int, int]:
    """(out_h, out_w) of a 2-D adaptive pool (see `adaptive_sizes`)."""
    out_h, out_w = adaptive_sizes(x, output_size)
    return out_h, out_w


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows along one side: [⌊i·n/m⌋, ⌈(i + 1)·n/m⌉) for i < m."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive(name: str) -> Any:
    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        x = shapes[0]
        _image(x, name)
        return x[0], x[1], *adaptive_size(x, attrs.get("output_size"))

    return rule


_WINDOWS = "window i spans rows ⌊i·H/h⌋ to ⌈(i + 1)·H/h⌉ − 1 (columns alike), so windows may differ in size"
define(OpDef(
    "adaptive_avg_pool2d", ("x",), "out[n, c, i, j] = mean of x[n, c] over window (i, j)",
    {"x": "∂L/∂x = Σ over the windows holding x of ∂L/∂out / (window size)"},
    _adaptive("adaptive_avg_pool2d"), "avg", category="conv", default_attrs={"output_size": (1, 1)},
    summary=f"average pooling to a fixed output size (h, w); {_WINDOWS}",
))
define(OpDef(
    "adaptive_max_pool2d", ("x",), "out[n, c, i, j] = max of x[n, c] over window (i, j)",
    {"x": "∂L/∂x = ∂L/∂out routed to each window's largest element (the first, on ties); 0 elsewhere"},
    _adaptive("adaptive_max_pool2d"), "max", category="conv", default_attrs={"output_size": (1, 1)},
    summary=f"max pooling to a fixed output size (h, w); {_WINDOWS}",
))


def _max_unpool2d(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    y, x = shapes[0], shapes[1]
    _image(y, "max_unpool2d")
    _image(x, "max_unpool2d")
    g = grid(x[2:], attrs["kernel_size"], attrs.get("stride"), attrs.get("padding", 0), attrs.get("dilation", 1),
             attrs.get("ceil_mode", False), "max_unpool2d")
    if tuple(y) != (x[0], x[1], *g.out):
        raise ShapeError(f"max_unpool2d: values {S.fmt(y)} are not the {g.kernel[0]}×{g.kernel[1]} max pool of "
                         f"{S.fmt(x)}, which is {S.fmt((x[0], x[1], *g.out))}")
    out = pair(attrs.get("output_size") or x[2:], "output_size")
    if min(out) < 1:
        raise ShapeError(f"max_unpool2d: output size {out} must be positive")
    return x[0], x[1], out[0], out[1]


define(OpDef(
    "max_unpool2d", ("y", "x"),
    "out[n, c, p] = y[n, c, i, j] where p is the position of window (i, j)'s largest x (its max pool's index); "
    "0 elsewhere",
    {"y": "∂L/∂y[n, c, i, j] = ∂L/∂out[n, c, p] at the position p of window (i, j)'s largest x",
     "x": "none: x only says where each value goes (the pool's indices)"},
    _max_unpool2d, "unpool", category="conv", min_arity=2, nondifferentiable=frozenset({"x"}),
    default_attrs={"kernel_size": 2, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False,
                   "output_size": None},
    summary="max unpooling (SegNet's decoder, nn.MaxUnpool2d): each pooled value put back where its window's "
            "maximum sat in the pool's input x, zeros elsewhere, on an output of output_size (x's size by default)",
))


# -- im2col and col2im (nn.Unfold and nn.Fold) ------------------------------------------------------------------
def _im2col(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = shapes[0]
    _image(x, "im2col")
    g = grid(x[2:], attrs["kernel_size"], attrs.get("stride", 1), attrs.get("padding", 0), attrs.get("dilation", 1),
             what="im2col")
    return x[0], x[1] * g.kernel[0] * g.kernel[1], g.out[0] * g.out[1]


def fold_grid(output_size: Any, attrs: Mapping[str, Any]) -> Grid:
    """The windows col2im adds back: those of im2col on an image of `output_size`."""
    return grid(pair(output_size, "output_size"), attrs["kernel_size"], attrs.get("stride", 1), attrs.get("padding", 0),
                attrs.get("dilation", 1), what="col2im")


def _col2im(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = shapes[0]
    if len(x) != 3:
        raise ShapeError(f"col2im takes columns as (batch, channels·kh·kw, windows), got {S.fmt(x)}")
    g = fold_grid(attrs.get("output_size"), attrs)
    taps, windows = g.kernel[0] * g.kernel[1], g.out[0] * g.out[1]
    if x[1] % taps or x[2] != windows:
        raise ShapeError(f"col2im: columns {S.fmt(x)} do not fit {g.kernel[0]}×{g.kernel[1]} windows, "
                         f"{windows} of them on a {g.size[0]}×{g.size[1]} image (a multiple of {taps} rows, "
                         f"{windows} columns)")
    return x[0], x[1] // taps, g.size[0], g.size[1]


_FOLD_ATTRS = "kernel_size, stride s, padding p (as conv2d's) and dilation d place the windows"
define(OpDef(
    "im2col", ("x",), "out[n, (c, u, v), (i, j)] = x[n, c, s·i + d·u − p, s·j + d·v − p] (0 in the padding)",
    {"x": "∂L/∂x = col2im(∂L/∂out): each window's gradient added back where the window sat"},
    _im2col, "unfold", category="conv", default_attrs={"kernel_size": 1, "dilation": 1, "padding": 0, "stride": 1},
    summary=f"every window of the image as a column (nn.Unfold, F.unfold): (N, C·kh·kw, windows); {_FOLD_ATTRS}",
))
define(OpDef(
    "col2im", ("x",), "out[n, c, s·i + d·u − p, s·j + d·v − p] += x[n, (c, u, v), (i, j)]: each column added back "
                      "where its window sits, overlaps summed",
    {"x": "∂L/∂x = im2col(∂L/∂out): each column reads the gradient of the cells its window covers"},
    _col2im, "fold", category="conv",
    default_attrs={"output_size": (1, 1), "kernel_size": 1, "dilation": 1, "padding": 0, "stride": 1},
    summary=f"columns summed back into an image of output_size (nn.Fold, F.fold; im2col's adjoint); {_FOLD_ATTRS}",
))


# -- flatten -----------------------------------------------------------------------------------
def _flatten(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    ndim = max(len(x), 1)
    start, end = int(attrs.get("start_dim", 1)), int(attrs.get("end_dim", -1))
    if not (-ndim <= start < ndim and -ndim <= end < ndim):
        raise ShapeError(f"start_dim {start} / end_dim {end} out of range for {S.fmt(x)}")
    start, end = start % ndim, end % ndim
    if start > end:
        raise ShapeError(f"start_dim {start} comes after end_dim {end}")
    if not x:
        return (1,)
    size = 1
    for d in x[start:end + 1]:
        size *= d
    return (*x[:start], size, *x[end + 1:])


define(OpDef(
    "flatten", ("x",), "out = x with axes start_dim…end_dim merged into one",
    {"x": "∂L/∂x = reshape(∂L/∂out, shape of x)"}, _flatten, "flat", category="shape",
    default_attrs={"start_dim": 1, "end_dim": -1},
    summary="merge axes into one (by default all but the batch axis), as torch.flatten",
))

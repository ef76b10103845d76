"""3-D convolution, transposed convolution and pooling on NCDHW volumes (video clips, medical scans), as
PyTorch's.

A volume's windows (`Volume`) are its depth windows times the 2-D `Grid` of each depth slice, so the
2-D ops' rules (sizes, padding, ceil_mode, padding at most half the kernel for pools) hold axis by
axis; both backends' kernels read the window positions from it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .conv import _CEIL, Grid, _bias, _groups, adaptive_sizes, axis_counts, grid, window_out
from .opdef import OpDef, define

Shape = tuple[int, ...]


def triple(value: Any, what: str = "value") -> tuple[int, int, int]:
    """An int or three ints (PyTorch's `_triple`): depth, height, width."""
    if isinstance(value, int):
        return value, value, value
    items = tuple(int(v) for v in value)
    if len(items) != 3:
        raise ShapeError(f"{what} must be one int or three (depth, height, width), got {value!r}")
    return items[0], items[1], items[2]


def pads6(value: Any, what: str = "padding") -> tuple[int, int, int, int, int, int]:
    """Padding as (front, back, top, bottom, left, right): one int, (depth, height, width) for both sides of
    each axis as PyTorch, or six ints."""
    if isinstance(value, int):
        return value, value, value, value, value, value
    items = tuple(int(v) for v in value)
    if len(items) == 3:
        return items[0], items[0], items[1], items[1], items[2], items[2]
    if len(items) == 6:
        return items[0], items[1], items[2], items[3], items[4], items[5]
    raise ShapeError(f"{what} must be one int, (depth, height, width) or six ints, got {value!r}")


@dataclass(frozen=True)
class Volume:
    """Where a 3-D op's windows sit: along depth (`kernel` taps `dilation` apart, `stride` between windows,
    `before`/`after` padding, `out` windows) and, on each depth slice, the 2-D `plane` grid."""

    size: int
    kernel: int
    stride: int
    before: int
    after: int
    dilation: int
    out: int
    plane: Grid

    def taps(self, k: int) -> list[int]:
        """The padded depth index that tap `k` of each window reads (the image starts at `before`)."""
        return [o * self.stride + k * self.dilation for o in range(self.out)]

    @property
    def padded(self) -> int:
        """The padded depth; ceil_mode's last window may reach past the padding after the volume."""
        reach = (self.out - 1) * self.stride + self.dilation * (self.kernel - 1) + 1
        return max(self.size + self.before + self.after, reach)

    def counts(self, count_include_pad: bool) -> tuple[int, ...]:
        """How many depth slices each window averages over (PyTorch's rule, as `Grid.window_counts`)."""
        return axis_counts(self.size, self.kernel, self.stride, self.before, self.after, self.out, count_include_pad)


@functools.lru_cache(maxsize=512)
def _volume(size: tuple[int, int, int], kernel: tuple[int, int, int], stride: tuple[int, int, int],
            pads: tuple[int, int, int, int, int, int], dilation: tuple[int, int, int], ceil_mode: bool,
            what: str) -> Volume:
    if kernel[0] < 1 or stride[0] < 1 or dilation[0] < 1 or min(pads[:2]) < 0:
        raise ShapeError(f"{what}: kernel {kernel}, stride {stride} and dilation {dilation} must be positive, "
                         f"padding {pads} not negative")
    plane = grid(size[1:], kernel[1:], stride[1:], pads[2:], dilation[1:], ceil_mode, what)
    out = window_out(size[0], kernel[0], stride[0], pads[0], pads[1], dilation[0], ceil_mode)
    if out < 1:
        raise ShapeError(f"{what}: a window {kernel[0]} deep (dilation {dilation[0]}) does not fit in a volume "
                         f"{size[0]} deep padded by {pads[:2]}")
    return Volume(size[0], kernel[0], stride[0], pads[0], pads[1], dilation[0], out, plane)


def volume(size: Sequence[int], kernel: Any, stride: Any, padding: Any, dilation: Any = 1, ceil_mode: bool = False,
           what: str = "conv3d") -> Volume:
    """The windows of a 3-D op on a (depth, height, width) volume; stride None means the kernel size."""
    k = triple(kernel, "kernel_size")
    s = k if stride is None else triple(stride, "stride")
    return _volume((int(size[0]), int(size[1]), int(size[2])), k, s, pads6(padding), triple(dilation, "dilation"),
                   bool(ceil_mode), what)


def transposed_volume(size: Sequence[int], kernel: Sequence[int], stride: Any, padding: Any, output_padding: Any,
                      dilation: Any) -> Volume:
    """The windows of the convolution whose input gradient conv_transpose3d computes (as `transposed_grid` in
    2-D): its `size` is the transposed convolution's output, its `out` the transposed convolution's input."""
    s, d = triple(stride, "stride"), triple(dilation, "dilation")
    extra, p = triple(output_padding, "output_padding"), pads6(padding)
    if min(s) < 1 or min(d) < 1 or min(p) < 0 or min(extra) < 0:
        raise ShapeError("conv_transpose3d: stride and dilation must be positive, padding and output_padding "
                         "not negative")
    if any(extra[i] >= max(s[i], d[i]) for i in range(3)):
        raise ShapeError(f"conv_transpose3d: output_padding {extra} must be smaller than the stride {s} or the "
                         f"dilation {d}")
    n, k = tuple(int(v) for v in size), tuple(int(v) for v in kernel)
    full = [(n[i] - 1) * s[i] - p[2 * i] - p[2 * i + 1] + d[i] * (k[i] - 1) + extra[i] + 1 for i in range(3)]
    if min(full) < 1:
        raise ShapeError(f"conv_transpose3d: padding {p} crops the whole {full[0]}×{full[1]}×{full[2]} output away")
    plane = Grid((full[1], full[2]), (k[1], k[2]), (s[1], s[2]), (p[2], p[3], p[4], p[5]), (d[1], d[2]), (n[1], n[2]))
    return Volume(full[0], k[0], s[0], p[0], p[1], d[0], n[0], plane)


def _volume_shape(x: Shape, what: str) -> None:
    if len(x) != 5:
        raise ShapeError(f"{what} takes volumes as (batch, channels, depth, height, width), got {S.fmt(x)}")


def _conv3d(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w = shapes[0], shapes[1]
    _volume_shape(x, "conv3d")
    if len(w) != 5:
        raise ShapeError(f"weight must be (out_channels, in_channels / groups, kd, kh, kw), got {S.fmt(w)}")
    groups = int(attrs.get("groups", 1))
    if groups < 1 or x[1] % groups or w[0] % groups or w[1] * groups != x[1]:
        raise ShapeError(f"weight {S.fmt(w)} does not fit {x[1]} input channels in {groups} group(s)")
    if len(shapes) == 3 and tuple(shapes[2]) != (w[0],):
        raise ShapeError(f"bias must be ({w[0]},), one per output channel, got {S.fmt(shapes[2])}")
    v = volume(x[2:], w[2:], attrs.get("stride", 1), attrs.get("padding", 0), attrs.get("dilation", 1))
    return x[0], w[0], v.out, *v.plane.out


define(OpDef(
    "conv3d", ("x", "W", "b"),
    "out[n, o, t, i, j] = b[o] + Σ_c Σ_r Σ_u Σ_v W[o, c, r, u, v] · x[n, c, s·t + d·r − p, s·i + d·u − p, "
    "s·j + d·v − p]",
    {
        "x": "∂L/∂x[n, c] = Σ_o full 3-D convolution of ∂L/∂out[n, o] with W[o, c] flipped (each window's "
             "Wᵀ · ∂L/∂out added back where the window sat)",
        "W": "∂L/∂W[o, c, r, u, v] = Σ_n Σ_t Σ_i Σ_j ∂L/∂out[n, o, t, i, j] · x[n, c, s·t + d·r − p, s·i + d·u − p, "
             "s·j + d·v − p]",
        "b": "∂L/∂b[o] = Σ_n Σ_t Σ_i Σ_j ∂L/∂out[n, o, t, i, j]",
    },
    _conv3d, "conv3d", category="conv", min_arity=2,
    default_attrs={"stride": 1, "padding": 0, "dilation": 1, "groups": 1},
    summary="3-D convolution over (batch, channels, depth, height, width), as conv2d with a depth axis: s "
            "stride, d dilation, p padding (one int, (depth, height, width), or six ints), G groups",
))


def _conv_transpose3d(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w = shapes[0], shapes[1]
    _volume_shape(x, "conv_transpose3d")
    if len(w) != 5:
        raise ShapeError(f"weight must be (in_channels, out_channels / groups, kd, kh, kw), got {S.fmt(w)}")
    if w[0] != x[1]:
        raise ShapeError(f"conv_transpose3d: weight {S.fmt(w)} expects {w[0]} input channels, got {x[1]}")
    groups = _groups(attrs, x[1], w[1] * int(attrs.get("groups", 1)), "conv_transpose3d")
    _bias(shapes, w[1] * groups)
    v = transposed_volume(x[2:], w[2:], attrs.get("stride", 1), attrs.get("padding", 0),
                          attrs.get("output_padding", 0), attrs.get("dilation", 1))
    return x[0], w[1] * groups, v.size, *v.plane.size


define(OpDef(
    "conv_transpose3d", ("x", "W", "b"),
    "out[n, o, s·t + d·r − p, s·i + d·u − p, s·j + d·v − p] += Σ_c x[n, c, t, i, j] · W[c, o, r, u, v]  (then "
    "+ b[o]): each input cell stamps the filter, scaled by its value, onto the output volume",
    {
        "x": "∂L/∂x = conv3d(∂L/∂out, W) with the same stride, padding, dilation and groups",
        "W": "∂L/∂W[c, o, r, u, v] = Σ_n Σ_t Σ_i Σ_j x[n, c, t, i, j] · ∂L/∂out[n, o, s·t + d·r − p, s·i + d·u − p, "
             "s·j + d·v − p]",
        "b": "∂L/∂b[o] = Σ_n Σ_t Σ_i Σ_j ∂L/∂out[n, o, t, i, j]",
    },
    _conv_transpose3d, "conv3dᵀ", category="conv", min_arity=2,
    default_attrs={"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1},
    summary="3-D transposed convolution (the gradient of conv3d with respect to its input), which upsamples "
            "volumes as a 3-D U-Net's decoder does: each output side is (n − 1)·s − 2p + d·(k − 1) + "
            "output_padding + 1; W is (C_in, C_out / G, kd, kh, kw)",
))


def _pool3d(name: str) -> Any:
    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        x = shapes[0]
        _volume_shape(x, name)
        v = volume(x[2:], attrs["kernel_size"], attrs.get("stride"), attrs.get("padding", 0),
                   attrs.get("dilation", 1), attrs.get("ceil_mode", False), name)
        kernel = (v.kernel, *v.plane.kernel)
        pads = (v.before, v.after, *v.plane.pads)
        if any(max(pads[2 * i], pads[2 * i + 1]) > kernel[i] // 2 for i in range(3)):
            raise ShapeError(f"{name}: padding {pads} may be at most half the kernel {kernel}")
        return x[0], x[1], v.out, *v.plane.out

    return rule


define(OpDef(
    "max_pool3d", ("x",), "out[n, c, t, i, j] = max over the kd×kh×kw window of x at (s·t − p, s·i − p, s·j − p)",
    {"x": "∂L/∂x = ∂L/∂out routed to the window's largest element (the first in depth, row, column order); 0 "
          "elsewhere"},
    _pool3d("max_pool3d"), "max", category="conv",
    default_attrs={"kernel_size": 2, "stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
    summary=f"max pooling over volumes (stride defaults to the kernel size; padding filled with −∞; {_CEIL})",
))
define(OpDef(
    "avg_pool3d", ("x",), "out[n, c, t, i, j] = (1/m) Σ over the kd×kh×kw window of x at (s·t − p, s·i − p, s·j − p)",
    {"x": "∂L/∂x = Σ over the windows holding x of ∂L/∂out / m"},
    _pool3d("avg_pool3d"), "avg", category="conv",
    default_attrs={"kernel_size": 2, "stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True},
    summary="average pooling over volumes; m is the window's size counting the zero padding (count_include_pad) "
            f"or only the volume's cells; {_CEIL}",
))


def adaptive_size3d(x: Shape, output_size: Any) -> tuple[int, int, int]:
    """(out_d, out_h, out_w) of a 3-D adaptive pool; None in a place keeps the input's size there, as PyTorch."""
    out_d, out_h, out_w = adaptive_sizes(x, output_size, ("depth", "height", "width"))
    return out_d, out_h, out_w


def _adaptive3d(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = shapes[0]
    _volume_shape(x, "adaptive_avg_pool3d")
    return x[0], x[1], *adaptive_size3d(x, attrs.get("output_size"))


define(OpDef(
    "adaptive_avg_pool3d", ("x",), "out[n, c, t, i, j] = mean of x[n, c] over window (t, i, j)",
    {"x": "∂L/∂x = Σ over the windows holding x of ∂L/∂out / (window size)"},
    _adaptive3d, "avg", category="conv", default_attrs={"output_size": (1, 1, 1)},
    summary="average pooling of volumes to a fixed output size (d, h, w); window t spans depth ⌊t·D/d⌋ to "
            "⌈(t + 1)·D/d⌉ − 1 (rows and columns alike)",
))

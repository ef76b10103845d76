"""Convolution, pooling and flatten: the tutorial's Part 9 filters, on NCHW images.

Sizes follow PyTorch: an output side is ⌊(n + 2p − d(k − 1) − 1) / s⌋ + 1, so a model loaded from
PyTorch keeps its shapes. The helpers `pair` and `window_out` are shared with the kernels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]


def pair(value: Any, what: str = "value") -> tuple[int, int]:
    """An int or a pair of ints (PyTorch's `_pair`): one number for height and width alike."""
    if isinstance(value, int):
        return value, value
    items = tuple(int(v) for v in value)
    if len(items) != 2:
        raise ShapeError(f"{what} must be one int or two (height, width), got {value!r}")
    return items[0], items[1]


def window_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """How many windows fit along one side."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _spatial(x: Shape, kernel: tuple[int, int], attrs: Mapping[str, Any], what: str) -> tuple[int, int]:
    stride = kernel if attrs.get("stride") is None else pair(attrs["stride"], "stride")
    padding = pair(attrs.get("padding", 0), "padding")
    dilation = pair(attrs.get("dilation", 1), "dilation")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0 or min(kernel) < 1:
        raise ShapeError(f"{what}: kernel, stride and dilation must be positive and padding non-negative")
    out = tuple(window_out(x[2 + i], kernel[i], stride[i], padding[i], dilation[i]) for i in range(2))
    if min(out) < 1:
        raise ShapeError(
            f"{what}: a {kernel[0]}×{kernel[1]} window (dilation {dilation}) does not fit in a "
            f"{x[2]}×{x[3]} image padded by {padding}"
        )
    return out[0], out[1]


def _image(x: Shape, what: str) -> None:
    if len(x) != 4:
        raise ShapeError(f"{what} takes images as (batch, channels, height, width), got {S.fmt(x)}")


def _conv2d(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w = shapes[0], shapes[1]
    _image(x, "conv2d")
    if len(w) != 4:
        raise ShapeError(f"weight must be (out_channels, in_channels / groups, kh, kw), got {S.fmt(w)}")
    groups = int(attrs.get("groups", 1))
    if groups < 1 or x[1] % groups or w[0] % groups:
        raise ShapeError(f"groups={groups} must divide both the {x[1]} input and {w[0]} output channels")
    if w[1] * groups != x[1]:
        raise ShapeError(f"weight {S.fmt(w)} expects {w[1] * groups} input channels (groups={groups}), got {x[1]}")
    if len(shapes) == 3 and tuple(shapes[2]) != (w[0],):
        raise ShapeError(f"bias must be ({w[0]},), one per output channel, got {S.fmt(shapes[2])}")
    oh, ow = _spatial(x, (w[2], w[3]), attrs, "conv2d")
    return x[0], w[0], oh, ow


define(OpDef(
    "conv2d", ("x", "W", "b"),
    "out[n, o, i, j] = b[o] + Σ_c Σ_u Σ_v W[o, c, u, v] · x[n, c, s·i + d·u − p, s·j + d·v − p]",
    {
        "x": "∂L/∂x[n, c, :, :] = Σ_o full convolution of ∂L/∂out[n, o] with W[o, c] flipped (col2im of ∂L/∂out · W)",
        "W": "∂L/∂W[o, c, u, v] = Σ_n Σ_i Σ_j ∂L/∂out[n, o, i, j] · x[n, c, s·i + d·u − p, s·j + d·v − p]",
        "b": "∂L/∂b[o] = Σ_n Σ_i Σ_j ∂L/∂out[n, o, i, j]",
    },
    _conv2d, "conv", category="conv", min_arity=2,
    default_attrs={"stride": 1, "padding": 0, "dilation": 1, "groups": 1},
    summary="2-D convolution (cross-correlation, as PyTorch): a small filter slides over the image",
))


def _pool(name: str) -> Any:
    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        x = shapes[0]
        _image(x, name)
        kernel = pair(attrs["kernel_size"], "kernel_size")
        padding = pair(attrs.get("padding", 0), "padding")
        if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
            raise ShapeError(f"{name}: padding {padding} may be at most half the kernel {kernel}")
        oh, ow = _spatial(x, kernel, attrs, name)
        return x[0], x[1], oh, ow

    return rule


define(OpDef(
    "max_pool2d", ("x",), "out[n, c, i, j] = max over the k×k window of x at (s·i − p, s·j − p)",
    {"x": "∂L/∂x = ∂L/∂out routed to the window's largest element (argmax); 0 elsewhere"},
    _pool("max_pool2d"), "max", category="conv",
    default_attrs={"kernel_size": 2, "stride": None, "padding": 0, "dilation": 1},
    summary="max pooling: the largest value of each window (stride defaults to the kernel size)",
))
define(OpDef(
    "avg_pool2d", ("x",), "out[n, c, i, j] = (1/k²) Σ over the k×k window of x at (s·i − p, s·j − p)",
    {"x": "∂L/∂x = Σ over the windows holding x of ∂L/∂out / k²"},
    _pool("avg_pool2d"), "avg", category="conv",
    default_attrs={"kernel_size": 2, "stride": None, "padding": 0},
    summary="average pooling (zero padding counts towards the mean, as PyTorch's default)",
))


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

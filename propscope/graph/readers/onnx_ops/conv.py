"""ONNX convolution and pooling: 1-D, 2-D and 3-D Conv, MaxPool, AveragePool and ConvTranspose (1-D as a 2-D
one of height 1), with ONNX's free (asymmetric) pads, auto_pad SAME_UPPER/SAME_LOWER/VALID, output_shape,
ceil_mode, dilations and count_include_pad; Col2Im (nn.Fold) of 2-D images; LpPool and GlobalLpPool as the powers,
sums and roots they are; CausalConvWithState as the padding, depthwise convolution and SiLU it fuses.

PyTorch's pools take at most half a window of padding; ONNX's may take more. Such pads become an explicit
`pad` step before the pool (zeros for an average that counts the padding, the lowest float32 for a maximum,
which no window then picks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import Lazy, Missing, PoolIndices, Unmapped, UnpoolPositions
from .._budget import fold_room
from .._build import check_shape, clean_name
from ..onnx_reader import Ctx, Init, Reader, onnx_op
from .activations import apply_fused_activation, fused_activation
from .elementwise import op
from .naming import parameter

LOWEST = float(np.finfo(np.float32).min)  # a max-pool's padding: finite, so the debugger reports no Inf


def _ints(ctx: Ctx, name: str, dims: int, default: int) -> list[int]:
    values = [int(v) for v in ctx.attrs.get(name, [default] * dims)]
    if len(values) != dims:
        raise Unmapped(f"{name} {values} for a {dims}-D layer")
    return values


def pads(ctx: Ctx, size: tuple[int, ...], kernel: tuple[int, ...]) -> list[tuple[int, int]]:
    """(before, after) per spatial axis, from pads or auto_pad (SAME_UPPER puts the odd cell after)."""
    dims = len(kernel)
    auto = str(ctx.attrs.get("auto_pad", "NOTSET"))
    strides, dilations = _ints(ctx, "strides", dims, 1), _ints(ctx, "dilations", dims, 1)
    if auto == "VALID":
        return [(0, 0)] * dims
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for n, k, s, d in zip(size, kernel, strides, dilations, strict=True):
            total = max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    flat = _ints(ctx, "pads", 2 * dims, 0)
    return [(flat[i], flat[i + dims]) for i in range(dims)]


def _padding_attr(pairs: list[tuple[int, int]]) -> Any:
    """The catalog's padding: one int when every side is equal, else (left, right) or (top, bottom, left, right)."""
    flat = [p for pair in pairs for p in pair]
    if len(set(flat)) == 1:
        return flat[0]
    return tuple(flat)


def _check_rank(x: Node, what: str, most: int = 3) -> int:
    dims = len(x.shape) - 2
    if not 1 <= dims <= most:
        raise Unmapped(f"a {dims}-D {what} (the catalog has 1-D to {most}-D)")
    return dims


def _one(values: list[int]) -> Any:
    return values[0] if len(set(values)) == 1 else tuple(values)


@onnx_op("Conv")
def _conv(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x, w = r.node(ins[0], ctx), parameter(r, ins[1], ctx, "weight")
    dims = _check_rank(x, "convolution")
    kernel = tuple(w.shape[2:])
    attrs = {"stride": _one(_ints(ctx, "strides", dims, 1)), "padding": _padding_attr(pads(ctx, x.shape[2:], kernel)),
             "dilation": _one(_ints(ctx, "dilations", dims, 1)), "groups": int(ctx.attrs.get("group", 1))}
    inputs = [x, w] + ([] if len(ins) < 3 or ins[2] is None else [parameter(r, ins[2], ctx, "bias", hint="bias")])
    if len(inputs) == 3:
        r.mark_export_folded(w, inputs[2], ctx.module or ctx.name)
    return r.b.op(f"conv{dims}d", *inputs, name=ctx.name, module=ctx.module, attrs=attrs)


def _reshaped(r: Reader, ctx: Ctx, x: Node, shape: tuple[int, ...], tag: str) -> Node:
    return r.b.op("reshape", x, name=f"{ctx.name}.{tag}", module=ctx.module, attrs={"shape": shape})


@onnx_op("ConvTranspose")
def _conv_transpose(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x, w = r.node(ins[0], ctx), parameter(r, ins[1], ctx, "weight")
    dims = _check_rank(x, "transposed convolution")
    kernel = tuple(w.shape[2:])
    strides, dilations = _ints(ctx, "strides", dims, 1), _ints(ctx, "dilations", dims, 1)
    extra = _ints(ctx, "output_padding", dims, 0)
    auto = str(ctx.attrs.get("auto_pad", "NOTSET"))
    wanted = ctx.attrs.get("output_shape")
    if wanted is not None or auto in ("SAME_UPPER", "SAME_LOWER"):
        # ONNX: the pads that give output_shape (SAME: input · stride), the odd cell where auto_pad says
        target = [int(v) for v in wanted][-dims:] if wanted is not None else [n * s for n, s in
                                                                              zip(x.shape[2:], strides, strict=True)]
        pairs = []
        for i in range(dims):
            full = strides[i] * (x.shape[2 + i] - 1) + extra[i] + (kernel[i] - 1) * dilations[i] + 1
            total = full - target[i]
            if total < 0:
                extra[i] -= total  # a larger output than the pads allow: the extra cells go after
                total = 0
            small, big = total // 2, total - total // 2
            pairs.append((small, big) if auto == "SAME_UPPER" else (big, small))
    else:
        pairs = pads(ctx, x.shape[2:], kernel)
    groups = int(ctx.attrs.get("group", 1))
    bias = [] if len(ins) < 3 or ins[2] is None else [r.node(ins[2], ctx, hint="bias")]
    if dims > 1:
        attrs = {"stride": _one(strides), "padding": _padding_attr(pairs), "output_padding": _one(extra),
                 "dilation": _one(dilations), "groups": groups}
        y = r.b.op(f"conv_transpose{dims}d", x, w, *bias, name=ctx.name, module=ctx.module, attrs=attrs)
        check_shape(y.shape, f"the output of ConvTranspose {ctx.name!r}", r.where)  # strides can make it absurdly big
        return y
    # 1-D: a 2-D transposed convolution over an image one row high
    n, c, length = x.shape
    x2 = _reshaped(r, ctx, x, (n, c, 1, length), "as_2d")
    w2 = _reshaped(r, ctx, w, (*w.shape[:2], 1, kernel[0]), "weight_2d")
    attrs = {"stride": (1, strides[0]), "padding": (0, 0, *pairs[0]), "output_padding": (0, extra[0]),
             "dilation": (1, dilations[0]), "groups": groups}
    y = r.b.op("conv_transpose2d", x2, w2, *bias, name=f"{ctx.name}.2d", module=ctx.module, attrs=attrs)
    check_shape(y.shape, f"the output of ConvTranspose {ctx.name!r}", r.where)
    return r.b.op("reshape", y, name=ctx.name, module=ctx.module, attrs={"shape": (n, y.shape[1], y.shape[3])})


@onnx_op("MaxUnpool")
def _max_unpool(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """MaxUnpool of a 2-D MaxPool's own indices, back to the pool input's size (ONNX's indices are flat over the
    whole tensor, PyTorch's per plane: the same places only on a plane of that size)."""
    indices = ins[1] if len(ins) > 1 else None
    if not isinstance(indices, PoolIndices):
        raise Unmapped("MaxUnpool of indices that no 2-D MaxPool of this graph made")
    y = r.node(ins[0], ctx)
    size = tuple(indices.source.shape[2:])
    wanted = r.folded(ins[2]) if len(ins) > 2 and ins[2] is not None else None
    if wanted is not None and tuple(int(v) for v in wanted.reshape(-1)[-2:]) != size:
        raise Unmapped(f"MaxUnpool to {tuple(int(v) for v in wanted.reshape(-1))}, not its pool's input size {size}")
    return op(r, ctx, "max_unpool2d", y, indices.source, **indices.attrs, output_size=size)


@onnx_op("Col2Im")
def _col2im(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Col2Im (nn.Fold) of 2-D images: image_shape and block_shape must be known when the file is read."""
    x = r.node(ins[0], ctx)
    image, block = r.folded(ins[1]), r.folded(ins[2])
    if image is None or block is None:
        raise Unmapped("Col2Im with an image or block shape computed at run time")
    size, kernel = [int(v) for v in image.reshape(-1)], [int(v) for v in block.reshape(-1)]
    if len(size) != 2 or len(kernel) != 2 or len(x.shape) != 3:
        raise Unmapped(f"Col2Im of a {len(size)}-D image (the catalog folds 2-D images)")
    flat = _ints(ctx, "pads", 4, 0)
    attrs = {"output_size": tuple(size), "kernel_size": tuple(kernel), "dilation": _one(_ints(ctx, "dilations", 2, 1)),
             "padding": _padding_attr([(flat[0], flat[2]), (flat[1], flat[3])]),
             "stride": _one(_ints(ctx, "strides", 2, 1))}
    return op(r, ctx, "col2im", x, **attrs)


@onnx_op("MaxPool", "AveragePool")
def _pool(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    dims = _check_rank(x, "pooling")
    kernel = tuple(int(k) for k in ctx.attrs["kernel_shape"])
    strides, dilations = _ints(ctx, "strides", dims, 1), _ints(ctx, "dilations", dims, 1)
    pairs = pads(ctx, x.shape[2:], kernel)
    ceil = bool(ctx.attrs.get("ceil_mode", 0))
    is_max = ctx.op == "MaxPool"
    include = bool(ctx.attrs.get("count_include_pad", 0))
    beyond_half = any(max(p) > k // 2 for p, k in zip(pairs, kernel, strict=True))  # PyTorch's limit
    if not is_max and (any(d != 1 for d in dilations) or (beyond_half and (ceil or not include))):
        return _average_as_window_sum(r, ctx, x, kernel, strides, dilations, pairs, ceil, include)
    padded_first = False  # the indices of a max pool over an explicit pad step would be the padded image's
    if beyond_half:
        if ceil:
            raise Unmapped(f"{ctx.op} with ceil_mode and pads over half the window")
        x = r.b.op("pad", x, name=f"{ctx.name}.padded", module=ctx.module,
                   attrs={"pads": ((0, 0), (0, 0), *pairs), "mode": "constant", "value": LOWEST if is_max else 0.0})
        pairs = [(0, 0)] * dims
        padded_first = True
    attrs: dict[str, Any] = {"kernel_size": _one(list(kernel)), "stride": _one(strides),
                             "padding": _padding_attr(pairs), "ceil_mode": ceil}
    name = f"{'max' if is_max else 'avg'}_pool{dims}d"
    if is_max:
        attrs["dilation"] = _one(dilations)
        if all(k == 1 for k in kernel) and all(s == 1 for s in strides) and not any(map(any, pairs)) and \
                not padded_first and not ctx.attrs.get("storage_order", 0):
            # a 1×1 pool is the identity, and its indices are each element's flat position, known now (the dynamo
            # exporter's decomposed max_unpool2d slices them for where each (n, c) plane starts)
            if len(ctx.outputs) < 2 or not ctx.outputs[1]:
                return x
            fold_room((), f"MaxPool {ctx.name!r} indices", r.where, shape=tuple(x.shape))
            return [x, np.arange(math.prod(x.shape), dtype=np.int64).reshape(x.shape)]
        node = r.b.op(name, x, name=ctx.name, module=ctx.module, attrs=attrs)
        why = "max-pool indices (ONNX's flat argmax positions)"
        return [node, PoolIndices(why, x, attrs) if dims == 2 and not padded_first else Missing(why)]
    attrs["count_include_pad"] = include
    return op(r, ctx, name, x, **attrs)


def _ceil_pads(shape: tuple[int, ...], kernel: tuple[int, ...], strides: list[int], dilations: list[int],
               pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The pads after each axis grown for ceil_mode: the last window may start past the end (within the input or its
    first pads), so zeros go after, which add nothing to a sum."""
    grown = list(pairs)
    for i, (n, k, s, d) in enumerate(zip(shape, kernel, strides, dilations, strict=True)):
        span, reach = n + sum(pairs[i]), (k - 1) * d + 1
        count = math.ceil((span - reach) / s) + 1
        if (count - 1) * s >= n + pairs[i][0]:
            count -= 1
        grown[i] = (pairs[i][0], pairs[i][1] + max((count - 1) * s + reach - span, 0))
    return grown


def _window_counts(n: int, k: int, s: int, d: int, pad: tuple[int, int], out: int, include: bool) -> np.ndarray:
    """How many of each output's k window positions along one axis an average divides by: those inside the input,
    or with count_include_pad inside the input and its pads (never the cells ceil_mode adds past them)."""
    low, high = (-pad[0], n + pad[1]) if include else (0, n)
    starts = np.arange(out) * s - pad[0]
    at = starts[:, None] + np.arange(k)[None, :] * d
    return ((at >= low) & (at < high)).sum(axis=1)


def _average_as_window_sum(r: Reader, ctx: Ctx, x: Node, kernel: tuple[int, ...], strides: list[int],
                           dilations: list[int], pairs: list[tuple[int, int]], ceil: bool, include: bool) -> Node:
    """An AveragePool the catalog's average pool cannot take (dilations; pads over half the window that it does not
    count, or with ceil_mode), as steps a learner knows: each window's sum (a convolution of each channel with a
    kernel of ones, as LpPool's), times 1 / the count each output divides by (known now: it depends only on the
    sizes), so the gradient is the convolution's and the product's."""
    dims = len(kernel)
    grown = _ceil_pads(tuple(x.shape[2:]), kernel, strides, dilations, pairs) if ceil else pairs
    channels = x.shape[1]
    ones = r.b.const(np.ones((channels, 1, *kernel)), ctx.module, "window", name=f"{ctx.name}.window")
    zeros = r.b.const(np.zeros(channels), ctx.module, "no_bias", name=f"{ctx.name}.no_bias")
    total = op(r, ctx, f"conv{dims}d", x, ones, zeros, suffix="window_sum", stride=_one(strides),
               padding=_padding_attr(grown), dilation=_one(dilations), groups=channels)
    counts = np.ones((), dtype=np.float64)
    for i in range(dims):
        axis = _window_counts(x.shape[2 + i], kernel[i], strides[i], dilations[i], pairs[i], total.shape[2 + i],
                              include).astype(np.float64)
        counts = np.multiply.outer(counts, axis)
    inverse = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0).reshape(1, 1, *total.shape[2:])
    return op(r, ctx, "mul", total, r.b.const(inverse, ctx.module, "1/count", name=f"{ctx.name}.1/count"))


def _powered(r: Reader, ctx: Ctx, x: Node, p: float) -> Node:
    """|x|^p (x² for p = 2, which needs no |x|)."""
    if p == 2.0:
        return op(r, ctx, "pow", x, suffix="power", exponent=2.0)
    return op(r, ctx, "pow", op(r, ctx, "abs", x, suffix="abs"), suffix="power", exponent=p)


def _root(r: Reader, ctx: Ctx, total: Node, p: float) -> Node:
    """total^(1/p) (√ for p = 2)."""
    return op(r, ctx, "sqrt", total) if p == 2.0 else op(r, ctx, "pow", total, exponent=1.0 / p)


@onnx_op("LpPool")
def _lp_pool(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """(Σ_window |x|^p)^(1/p), as steps: |x|^p, its sum over each window (a convolution of each channel with a
    kernel of ones: strides, dilations, ONNX's free pads and ceil_mode as a convolution takes them; padding adds
    zeros to no sum), then the p-th root. torch's LPPool is the same sum, an average pool times the window size."""
    x = r.node(ins[0], ctx)
    dims = _check_rank(x, "pooling")
    kernel = tuple(int(k) for k in ctx.attrs["kernel_shape"])
    if len(kernel) != dims:
        raise Unmapped(f"LpPool kernel {kernel} for a {dims}-D input")
    p = float(ctx.attrs.get("p", 2))
    if not p > 0:
        raise Unmapped(f"LpPool with p = {p}")
    strides, dilations = _ints(ctx, "strides", dims, 1), _ints(ctx, "dilations", dims, 1)
    pairs = pads(ctx, x.shape[2:], kernel)
    if ctx.attrs.get("ceil_mode", 0):  # the last window may start past the end: pad zeros after, which add nothing
        pairs = _ceil_pads(tuple(x.shape[2:]), kernel, strides, dilations, pairs)
    channels = x.shape[1]
    ones = r.b.const(np.ones((channels, 1, *kernel)), ctx.module, "window", name=f"{ctx.name}.window")
    zeros = r.b.const(np.zeros(channels), ctx.module, "no_bias", name=f"{ctx.name}.no_bias")
    total = op(r, ctx, f"conv{dims}d", _powered(r, ctx, x, p), ones, zeros, suffix="window_sum",
               stride=_one(strides), padding=_padding_attr(pairs), dilation=_one(dilations), groups=channels)
    return _root(r, ctx, total, p)


@onnx_op("GlobalLpPool")
def _global_lp_pool(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """‖x‖_p over each channel's whole image: the catalog's vector norm over the spatial axes (a channel of zeros
    gets the gradient 0, as torch's norm gives it)."""
    x = r.node(ins[0], ctx)
    if len(x.shape) < 3:
        raise Unmapped(f"GlobalLpPool of a {len(x.shape)}-D tensor (it takes (batch, channels, ...))")
    p = float(ctx.attrs.get("p", 2))
    if not p > 0:
        raise Unmapped(f"GlobalLpPool with p = {p}")
    return op(r, ctx, "vector_norm", x, axis=tuple(range(2, len(x.shape))), keepdims=True, ord=p)


@onnx_op("CausalConvWithState")
def _causal_conv(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """A causal depthwise 1-D convolution (Mamba's and Gated DeltaNet's, opset 27) as the steps it fuses: the input
    with the k − 1 steps before it (past_state, or zeros), a depthwise conv1d over them, SiLU where asked; the new
    state is the last k − 1 steps of the padded input, built only where something uses it."""
    x, w = r.node(ins[0], ctx), parameter(r, ins[1], ctx, "weight")
    if len(x.shape) != 3 or len(w.shape) != 3 or w.shape[:2] != (x.shape[1], 1):
        raise Unmapped(f"CausalConvWithState of {x.shape} with a weight {w.shape} (ONNX: (B, C, L) and (C, 1, k))")
    activation = str(ctx.attrs.get("activation", "none"))
    if activation not in ("none", "silu", "swish"):
        raise Unmapped(f"CausalConvWithState with activation {activation!r}")
    batch, channels, _ = x.shape
    k = w.shape[2]
    bias = parameter(r, ins[2], ctx, "bias", hint="bias") if len(ins) > 2 and ins[2] is not None else \
        r.b.const(np.zeros(channels), ctx.module, "no_bias", name=f"{ctx.name}.no_bias")
    if len(ins) > 3 and ins[3] is not None:
        past = r.node(ins[3], ctx, kind="constant", hint="past_state")
        if past.shape != (batch, channels, k - 1):
            raise Unmapped(f"CausalConvWithState past_state {past.shape} for a kernel of {k}")
        padded = op(r, ctx, "concat", past, x, suffix="with_past", axis=2) if k > 1 else x
    else:
        padded = op(r, ctx, "pad", x, suffix="with_past", pads=((0, 0), (0, 0), (k - 1, 0)), mode="constant",
                    value=0.0) if k > 1 else x
    out = op(r, ctx, "conv1d", padded, w, bias, suffix="conv" if activation != "none" else "", stride=1, padding=0,
             dilation=1, groups=channels)
    if activation != "none":
        out = op(r, ctx, "silu", out)

    def present() -> Any:
        if k == 1:
            return np.zeros((batch, channels, 0), dtype=np.float32)
        return op(r, ctx, "slice", padded, suffix="present_state", axes=(2,), starts=(padded.shape[2] - (k - 1),),
                  stops=(None,), steps=(1,))

    return [out, Lazy(present)]


# -- a max_unpool2d decomposed by the dynamo exporter ---------------------------------------------------------------
# MaxPool's indices (flat over N, C, H, W) less each plane's start (a 1×1 MaxPool's indices, sliced) are PyTorch's
# per-plane indices; plus (n·C + c)·plane, flattened and made a column, they are where a ScatterND of the pooled
# values into zeros puts them: max_unpool2d. Each stage is a marker (Missing to any other use).
@dataclass
class PlaneIndices(Missing):
    """A 2-D max pool's ONNX indices less the start of each (n, c) plane: PyTorch's indices, `shape` the pooled."""

    pool: PoolIndices
    shape: tuple[int, ...]


@dataclass
class UnpoolColumn(Missing):
    """Flattened unpool positions made a column (K, 1): the indices of a ScatterND into a flat output."""

    positions: UnpoolPositions


def _plane_starts(n: int, c: int, plane: int) -> np.ndarray:
    return (np.arange(n * c, dtype=np.int64) * plane).reshape(n, c, 1, 1)


def pool_arithmetic(r: Reader, x: Any, y: Any, ctx: Ctx) -> Any:
    """Sub and Add on max-pool indices, as a decomposed max_unpool2d does them (see PlaneIndices); else Unmapped."""
    known = r.folded(y)
    if isinstance(x, PoolIndices) and ctx.op == "Sub" and known is not None and len(x.source.shape) == 4:
        n, c, h, w = x.source.shape
        shape = ctx.shapes[0]
        if shape is not None and len(shape) == 4 and known.shape == (n, c, 1, 1) and \
                np.array_equal(known, _plane_starts(n, c, h * w)):
            return PlaneIndices(x.reason, x, tuple(shape))
    if isinstance(x, PlaneIndices) and ctx.op == "Add" and known is not None and known.shape == (*x.shape[:2], 1, 1):
        n, c = x.shape[:2]
        flat = known.reshape(-1)
        plane = int(flat[1] - flat[0]) if flat.size > 1 else 0  # one plane: its size comes from the output
        if (flat.size > 1 and plane > 0 and np.array_equal(known, _plane_starts(n, c, plane))) or \
                (flat.size == 1 and flat[0] == 0):
            return UnpoolPositions(x.reason, x.pool, plane, x.shape)
    raise Unmapped(x.reason)


def unpool_reshaped(x: Any, out: tuple[int, ...]) -> Any:
    """Unpool positions flattened (Reshape to 1-D), then made a column (Unsqueeze to (K, 1)); else Unmapped."""
    if isinstance(x, UnpoolPositions) and out == (math.prod(x.shape),):
        return replace(x, flat=True)
    if isinstance(x, UnpoolPositions) and x.flat and out == (math.prod(x.shape), 1):
        return UnpoolColumn(x.reason, x)
    raise Unmapped(x.reason)


def unpool_scatter(r: Reader, ins: list[Any], ctx: Ctx, where: UnpoolPositions) -> Node:
    """ScatterND(zeros(N·C·H·W), positions, pooled values flattened): max_unpool2d of the pooled values at the
    maxima of the pool's input, flattened as the file has it."""
    zeros = r.folded(ins[0])
    if zeros is None or zeros.ndim != 1 or np.any(zeros) or str(ctx.attrs.get("reduction", "none")) != "none":
        raise Unmapped("ScatterND at max-pool positions into anything but zeros")
    n, c, h, w = where.shape
    plane = where.plane or zeros.size // (n * c)
    if zeros.size != n * c * plane:
        raise Unmapped("ScatterND at max-pool positions into an output of another size")
    source, geometry = where.pool.source, where.pool.attrs
    height, width = source.shape[-2:]
    if height * width != plane:  # the unpool's default size: from the pool's geometry, not its input (odd sizes)
        kernel, stride, padding = (geometry[k] for k in ("kernel_size", "stride", "padding"))
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        pads = (padding,) * 4 if isinstance(padding, int) else padding
        height, width = (h - 1) * sh + kh - pads[0] - pads[1], (w - 1) * sw + kw - pads[-2] - pads[-1]
        if height * width != plane:
            raise Unmapped("max unpooling to an output size propscope cannot tell")
    y = r.node(ins[2], ctx, hint="updates")
    if tuple(y.shape) != where.shape:
        y = r.b.op("reshape", y, name=f"{ctx.name}.pooled", module=ctx.module, attrs={"shape": where.shape})
    up = r.b.op("max_unpool2d", y, source, name=f"{ctx.name}.unpool", module=ctx.module,
                attrs={**geometry, "output_size": (int(height), int(width))}, original_op=ctx.op)
    return r.b.op("reshape", up, name=ctx.name, module=ctx.module, attrs={"shape": (zeros.size,)},
                  original_op=ctx.op)


@onnx_op("com.microsoft.FusedConv")
def _fused_conv(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """activation(Conv(X, W, B) + Z): the convolution, the optional sum input Z, then the activation as a step."""
    activation = fused_activation(ctx, str(ctx.attrs.get("activation", "")),
                                  list(ctx.attrs.get("activation_params", [])))
    conv_ctx = Ctx(ctx.op, f"{ctx.name}.conv", ctx.module, None, ctx.attrs, ctx.opset)
    y = _conv(r, ins[:3], conv_ctx)
    if len(ins) > 3 and ins[3] is not None:
        y = op(r, ctx, "add", y, r.node(ins[3], ctx, hint="Z"), suffix="" if not activation else "sum")
    return apply_fused_activation(r, ctx, y, activation)


def _nhwc_weight(r: Reader, w: Any, ctx: Ctx) -> Node:
    """NhwcConv's weight, (M, kH, kW, C / group) as onnxruntime's fusion writes it, back in Conv's (M, C / group,
    kH, kW): a stored weight becomes the parameter `{module}.weight` in that layout (its gradient then reads as the
    original Conv's), a computed one a transpose step."""
    if isinstance(w, Init) and w.array.dtype.kind == "f" and w.array.ndim == 4:
        if w.as_conv_weight is None:
            w.as_conv_weight = r.b.leaf("parameter", clean_name(f"{ctx.module or ctx.name}.weight"),
                                        w.array.transpose(0, 3, 1, 2), module=ctx.module, file_name=w.name,
                                        stored_as="(M, kH, kW, C) for NhwcConv")
        return w.as_conv_weight
    node = r.node(w, ctx, hint="weight")
    if len(node.shape) != 4:
        raise Unmapped(f"{ctx.op} of a {len(node.shape)}-D weight (propscope reads 2-D convolutions)")
    return op(r, ctx, "transpose", node, suffix="weight_oihw", axes=(0, 3, 1, 2))


@onnx_op("com.microsoft.NhwcConv", "com.microsoft.NhwcFusedConv")
def _nhwc_conv(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """onnxruntime's channels-last 2-D convolution (Stable Diffusion's, after its NhwcConv fusion): X (N, H, W, C)
    moved to NCHW, Conv's own attributes, the result moved back to (N, H', W', M); NhwcFusedConv adds Z (NHWC)
    and its activation after. NhwcConv's weight is (M, kH, kW, C / group), as its fusion writes it; NhwcFusedConv's
    is in Conv's own layout (M, C / group, kH, kW), as its schema says."""
    x = r.node(ins[0], ctx)
    if len(x.shape) != 4:
        raise Unmapped(f"{ctx.op} of a {len(x.shape)}-D input (propscope reads 2-D convolutions, N x H x W x C)")
    activation = fused_activation(ctx, str(ctx.attrs.get("activation", "")),
                                  list(ctx.attrs.get("activation_params", [])))
    nchw = op(r, ctx, "transpose", x, suffix="nchw", axes=(0, 3, 1, 2))
    conv_ctx = Ctx(ctx.op, f"{ctx.name}.conv", ctx.module, None, ctx.attrs, ctx.opset)
    weight = _nhwc_weight(r, ins[1], ctx) if ctx.op == "NhwcConv" else ins[1]
    y = _conv(r, [nchw, weight, *ins[2:3]], conv_ctx)
    last = not activation and (len(ins) < 4 or ins[3] is None)
    y = op(r, ctx, "transpose", y, suffix="" if last else "nhwc", axes=(0, 2, 3, 1))
    if len(ins) > 3 and ins[3] is not None:
        y = op(r, ctx, "add", y, r.node(ins[3], ctx, hint="Z"), suffix="" if not activation else "sum")
    return apply_fused_activation(r, ctx, y, activation)


_NCHWC = ("ReorderInput", "ReorderOutput", "Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool",
          "Upsample")


@onnx_op(*(f"com.microsoft.nchwc.{name}" for name in _NCHWC))
def _nchwc(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """onnxruntime's NCHWc layout (ORT_ENABLE_ALL on x86): channels blocked by the CPU's vector width, weights
    stored reordered for it; what a value holds depends on the machine that wrote the file, so it is refused."""
    raise Unmapped(f"{ctx.op}: onnxruntime's NCHWc blocked layout, specific to the CPU that saved the file (save "
                   "it at ORT_ENABLE_EXTENDED, which keeps NCHW)")

"""ATen convolutions and pooling."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from .._aten import (
    Ctx,
    Missing,
    PoolIndices,
    Translator,
    Unmapped,
    UnpoolPositions,
    aten,
    op_key,
    pair_arg,
    self_arg,
)


def _same_padding(w: Node, dilation: Any, dims: int) -> Any:
    """padding='same' as explicit sizes: d·(k − 1) cells per axis, the odd one after (PyTorch's rule), so an even
    effective kernel pads one side more: (left, right), (top, bottom, left, right) or six sides."""
    dil = (dilation,) * dims if isinstance(dilation, int) else tuple(dilation)
    totals = [d * (k - 1) for d, k in zip(dil, w.shape[2:], strict=True)]
    if not any(total % 2 for total in totals):
        pads = tuple(total // 2 for total in totals)
        return pads[0] if dims == 1 else pads
    return tuple(side for total in totals for side in (total // 2, total - total // 2))


@aten("conv2d", "conv1d", "conv3d", "convolution", "_convolution", "conv_transpose2d", "conv_transpose1d",
      "conv_transpose3d")
def _conv(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    transposed = bool(a.get("transposed", False)) or op.startswith("conv_transpose")
    x, w = t.node(self_arg(a), ctx), t.node(a["weight"], ctx, "weight")
    dims = len(x.shape) - 2
    if dims not in (1, 2, 3):
        kind = "transposed " if transposed else ""
        raise Unmapped(f"a {dims}-D {kind}convolution (the catalog has 1-D, 2-D and 3-D)")
    if transposed and dims == 1:
        return _conv_transpose1d(t, a, ctx, x, w)
    dilation = pair_arg(a.get("dilation"), 1)
    padding = a.get("padding", 0)
    if isinstance(padding, str):
        padding = 0 if padding == "valid" else _same_padding(w, dilation, dims)
    attrs: dict[str, Any] = {"stride": pair_arg(a.get("stride"), 1), "padding": pair_arg(padding, 0),
                             "dilation": dilation, "groups": int(a.get("groups", 1))}
    if transposed:
        attrs["output_padding"] = pair_arg(a.get("output_padding"), 0)
    inputs = [x, w] + ([] if a.get("bias") is None else [t.node(a["bias"], ctx, "bias")])
    name = f"conv_transpose{dims}d" if transposed else f"conv{dims}d"
    return t.b.op(name, *inputs, name=ctx.name, module=ctx.module, attrs=attrs)


def _conv_transpose1d(t: Translator, a: dict[str, Any], ctx: Ctx, x: Node, w: Node) -> Node:
    """(N, C, L) upsampled as a 2-D transposed convolution over an image one row high, between two reshapes (as the
    ONNX reader does): the vocoders' and audio decoders' ConvTranspose1d."""
    def first(key: str, default: int) -> int:
        value = pair_arg(a.get(key), default)
        return int(value) if isinstance(value, int) else int(value[0])

    n, c, length = x.shape
    stride, padding, extra, dilation = (first("stride", 1), first("padding", 0), first("output_padding", 0),
                                        first("dilation", 1))
    tall = t.b.op("reshape", x, name=f"{ctx.name}.as_2d", module=ctx.module, attrs={"shape": (n, c, 1, length)})
    w2 = t.b.op("reshape", w, name=f"{ctx.name}.weight_2d", module=ctx.module,
                attrs={"shape": (w.shape[0], w.shape[1], 1, w.shape[2])})
    bias = [] if a.get("bias") is None else [t.node(a["bias"], ctx, "bias")]
    attrs = {"stride": (1, stride), "padding": (0, padding), "output_padding": (0, extra), "dilation": (1, dilation),
             "groups": int(a.get("groups", 1))}
    y = t.b.op("conv_transpose2d", tall, w2, *bias, name=f"{ctx.name}.2d", module=ctx.module, attrs=attrs,
               original_op="conv_transpose1d")
    return t.b.op("reshape", y, name=ctx.name, module=ctx.module, attrs={"shape": (n, y.shape[1], y.shape[3])})


@aten("max_pool2d", "max_pool2d_with_indices", "max_pool1d", "max_pool1d_with_indices", "max_pool3d",
      "max_pool3d_with_indices")
def _max_pool(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = t.node(self_arg(a), ctx)
    op = op_key(ctx.target)
    dims = 1 if op.startswith("max_pool1d") else 3 if op.startswith("max_pool3d") else 2
    attrs = {"kernel_size": pair_arg(a["kernel_size"], 1), "stride": pair_arg(a.get("stride"), 0) or None,
             "padding": pair_arg(a.get("padding"), 0), "dilation": pair_arg(a.get("dilation"), 1),
             "ceil_mode": bool(a.get("ceil_mode", False))}
    if len(x.shape) == dims + 1:  # unbatched (C, H, W), SuperPoint's keypoint suppression: a batch of one
        batched = t.b.op("reshape", x, name=f"{ctx.name}.batched", module=ctx.module, attrs={"shape": (1, *x.shape)})
        pooled = t.b.op(f"max_pool{dims}d", batched, name=f"{ctx.name}.pool", module=ctx.module, attrs=attrs)
        node = t.b.op("reshape", pooled, name=ctx.name, module=ctx.module, attrs={"shape": tuple(pooled.shape[1:])})
        return node if not op.endswith("indices") else [node, Missing("max-pool indices of an unbatched input")]
    if len(x.shape) != dims + 2:
        raise Unmapped(f"a {dims}-D max pool of a {len(x.shape)}-D input")
    node = t.b.op(f"max_pool{dims}d", x, name=ctx.name, module=ctx.module, attrs=attrs)
    if not op.endswith("indices"):
        return node
    return [node, PoolIndices("max-pool indices", x, attrs) if dims == 2 else Missing("max-pool indices")]


@aten("max_unpool2d")
def _max_unpool(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """SegNet's decoder: the pooled values put back where the maxima of the pool's input sat."""
    indices = a.get("indices")
    if not isinstance(indices, PoolIndices):
        raise Unmapped("max_unpool2d of indices that no 2-D max pool of this program made")
    y = t.node(self_arg(a), ctx)
    size = pair_arg(a.get("output_size"), 0)
    attrs = {**indices.attrs, "output_size": None if not size else (size, size) if isinstance(size, int) else size}
    return t.b.op("max_unpool2d", y, indices.source, name=ctx.name, module=ctx.module, attrs=attrs)


def unpool_positions(pool: PoolIndices, offset: np.ndarray, shape: Any) -> UnpoolPositions | None:
    """The pool's indices plus `offset`, where that offset is (n·C + c)·plane, shaped (N, C, 1, 1): the positions a
    decomposed max_unpool2d puts the pooled values at (None for any other sum)."""
    if shape is None or len(shape) != 4:
        return None
    n, c = int(shape[0]), int(shape[1])
    offset = np.asarray(offset)
    if offset.shape != (n, c, 1, 1):
        return None
    flat = offset.reshape(-1)
    plane = int(flat[1] - flat[0]) if flat.size > 1 else 0  # one plane: its size comes from the output
    if flat.size > 1 and (plane <= 0 or not np.array_equal(flat, np.arange(n * c) * plane)):
        return None
    if flat.size == 1 and flat[0] != 0:
        return None
    return UnpoolPositions(pool.reason, pool, plane, tuple(int(d) for d in shape))


def unpool_put(t: Translator, x: Any, values: Any, where: UnpoolPositions, ctx: Ctx) -> Node:
    """index_put(zeros(N·C·H·W), [positions], pooled values flattened): max_unpool2d of the pooled values at the
    maxima of the pool's input, flattened as the program has it."""
    zeros = t.known(x)
    if zeros is None or zeros.ndim != 1 or np.any(zeros):
        raise Unmapped("index_put at max-pool positions into anything but zeros")
    n, c = where.shape[:2]
    plane = where.plane or zeros.size // (n * c)
    if zeros.size != n * c * plane:
        raise Unmapped("index_put at max-pool positions into an output of another size")
    source = where.pool.source
    height, width = source.shape[-2:]
    if height * width != plane:
        geometry = where.pool.attrs
        kernel, stride, padding = (pair_arg(geometry[k], 0) for k in ("kernel_size", "stride", "padding"))
        stride = stride or kernel
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        ph, pw = (padding, padding) if isinstance(padding, int) else padding[:2]
        height, width = ((where.shape[2] - 1) * sh + kh - 2 * ph, (where.shape[3] - 1) * sw + kw - 2 * pw)
        if height * width != plane:
            raise Unmapped("max unpooling to an output size propscope cannot tell")
    y = t.node(values, ctx, "values")
    if tuple(y.shape) != where.shape:
        y = t.b.op("reshape", y, name=f"{ctx.name}.pooled", module=ctx.module, attrs={"shape": where.shape})
    attrs = {**where.pool.attrs, "output_size": (int(height), int(width))}
    up = t.b.op("max_unpool2d", y, source, name=f"{ctx.name}.unpool", module=ctx.module, attrs=attrs,
                original_op="index_put")
    return t.b.op("reshape", up, name=ctx.name, module=ctx.module, attrs={"shape": (zeros.size,)})


@aten("avg_pool2d", "avg_pool1d", "avg_pool3d")
def _avg_pool(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if a.get("divisor_override") is not None:
        raise Unmapped("average pooling with divisor_override")
    x = t.node(self_arg(a), ctx)
    attrs = {"kernel_size": pair_arg(a["kernel_size"], 1), "stride": pair_arg(a.get("stride"), 0) or None,
             "padding": pair_arg(a.get("padding"), 0), "ceil_mode": bool(a.get("ceil_mode", False)),
             "count_include_pad": bool(a.get("count_include_pad", True))}
    return t.b.op(f"avg_pool{len(x.shape) - 2}d", x, name=ctx.name, module=ctx.module, attrs=attrs)


@aten("adaptive_avg_pool3d", "_adaptive_avg_pool3d")
def _adaptive_pool3d(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = t.node(self_arg(a), ctx)
    size = pair_arg(a["output_size"], 1)
    out = (size,) * 3 if isinstance(size, int) else tuple(size)
    out = tuple(o or d for o, d in zip(out, x.shape[-3:], strict=True))  # None keeps the input's size
    if out == (1, 1, 1):  # global average pooling: the mean, which a learner recognises
        return t.b.op("mean", x, name=ctx.name, module=ctx.module, attrs={"axis": (-3, -2, -1), "keepdims": True})
    return t.b.op("adaptive_avg_pool3d", x, name=ctx.name, module=ctx.module, attrs={"output_size": out})


@aten("adaptive_avg_pool1d")
def _adaptive_pool1d(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """(N, C, L) pooled to a length: the 2-D adaptive pool on a height of one, between two reshapes."""
    x = t.node(self_arg(a), ctx)
    if len(x.shape) != 3:
        raise Unmapped(f"adaptive_avg_pool1d of a {len(x.shape)}-D input")
    size = pair_arg(a["output_size"], 1)
    length = size if isinstance(size, int) else size[0]
    _, c, w = x.shape
    tall = t.b.op("reshape", x, name=f"{ctx.name}.as_2d", module=ctx.module, attrs={"shape": (-1, c, 1, w)})
    pooled = t.b.op("adaptive_avg_pool2d", tall, name=f"{ctx.name}.pool", module=ctx.module,
                    attrs={"output_size": (1, length)}, original_op="adaptive_avg_pool1d")
    return t.b.op("reshape", pooled, name=ctx.name, module=ctx.module, attrs={"shape": (-1, c, length)})


@aten("adaptive_avg_pool2d", "_adaptive_avg_pool2d", "adaptive_max_pool2d")
def _adaptive_pool(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = t.node(self_arg(a), ctx)
    size = pair_arg(a["output_size"], 1)
    oh, ow = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    oh, ow = oh or h, ow or w  # None keeps the input's size
    if op_key(ctx.target) == "adaptive_max_pool2d":
        node = t.b.op("adaptive_max_pool2d", x, name=ctx.name, module=ctx.module, attrs={"output_size": (oh, ow)})
        return [node, Missing("max-pool indices")]
    if (oh, ow) == (1, 1):  # global average pooling: the mean, which a learner recognises
        return t.b.op("mean", x, name=ctx.name, module=ctx.module, attrs={"axis": (-2, -1), "keepdims": True})
    return t.b.op("adaptive_avg_pool2d", x, name=ctx.name, module=ctx.module, attrs={"output_size": (oh, ow)})


@aten("im2col", "col2im")
def _im2col(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """F.unfold and F.fold (nn.Unfold, nn.Fold) of batched images."""
    op = op_key(ctx.target)
    x = t.node(self_arg(a), ctx)
    if len(x.shape) != (4 if op == "im2col" else 3):
        raise Unmapped(f"{op} of an unbatched input")
    attrs = {"kernel_size": pair_arg(a["kernel_size"], 1), "dilation": pair_arg(a.get("dilation"), 1),
             "padding": pair_arg(a.get("padding"), 0), "stride": pair_arg(a.get("stride"), 1)}
    if op == "col2im":
        attrs["output_size"] = pair_arg(a["output_size"], 1)
    return t.b.op(op, x, name=ctx.name, module=ctx.module, attrs=attrs)


def _scales(a: dict[str, Any]) -> tuple[float, float] | None:
    factors = a.get("scale_factors")
    if isinstance(factors, list) and len(factors) == 2:
        return float(factors[0]), float(factors[1])
    h, w = a.get("scales_h"), a.get("scales_w")
    return (float(h), float(w)) if isinstance(h, int | float) and isinstance(w, int | float) else None


def _scales3d(a: dict[str, Any]) -> tuple[float, float, float] | None:
    factors = a.get("scale_factors")
    if isinstance(factors, list) and len(factors) == 3:
        return float(factors[0]), float(factors[1]), float(factors[2])
    d, h, w = (a.get(k) for k in ("scales_d", "scales_h", "scales_w"))
    if isinstance(d, int | float) and isinstance(h, int | float) and isinstance(w, int | float):
        return float(d), float(h), float(w)
    return None


@aten("upsample_nearest2d", "upsample_bilinear2d", "upsample_nearest3d", "upsample_trilinear3d")
def _upsample(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    volume = op.endswith("3d")
    out = ctx.shapes[0]
    if out is None or len(out) != (5 if volume else 4):
        raise Unmapped(f"no declared {5 if volume else 4}-D output shape")
    x = t.node(self_arg(a), ctx)
    attrs: dict[str, Any] = {"output_size": tuple(out[2:]), "scales": _scales3d(a) if volume else _scales(a)}
    if op in ("upsample_bilinear2d", "upsample_trilinear3d"):
        attrs["align_corners"] = bool(a.get("align_corners", False))
    return t.b.op(op, x, name=ctx.name, module=ctx.module, attrs=attrs)


def torch_pads(pad: list[int], ndim: int) -> tuple[tuple[int, int], ...]:
    """F.pad's flat list (last axis first: left, right, top, bottom, ...) as one (before, after) pair per axis."""
    if len(pad) % 2 or len(pad) // 2 > ndim:
        raise Unmapped(f"a padding list {pad} for a {ndim}-D tensor")
    pairs = [(0, 0)] * ndim
    for i in range(len(pad) // 2):
        pairs[ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    return tuple(pairs)


_PAD_MODES = {"constant_pad_nd": "constant", "reflection_pad1d": "reflect", "reflection_pad2d": "reflect",
              "reflection_pad3d": "reflect", "replication_pad1d": "replicate", "replication_pad2d": "replicate",
              "replication_pad3d": "replicate", "circular_pad1d": "circular", "circular_pad2d": "circular",
              "circular_pad3d": "circular"}


@aten("constant_pad_nd", "pad", *(m for m in _PAD_MODES if m != "constant_pad_nd"))
def _pad(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x = self_arg(a)
    shape = t.shape(x)
    pairs = torch_pads(list(a.get("pad", a.get("padding", []))), len(shape))
    mode = a.get("mode", "constant") if op == "pad" else _PAD_MODES[op]
    value = a.get("value")
    value = 0.0 if value is None else float(value)
    known = t.known(x)
    if known is not None and mode == "constant" and all(b >= 0 and e >= 0 for b, e in pairs):
        return np.pad(known, pairs, constant_values=value)
    return t.b.op("pad", t.node(x, ctx), name=ctx.name, module=ctx.module,
                  attrs={"pads": pairs, "mode": mode, "value": value})

"""ONNX shape ops: Reshape, Flatten, Squeeze, Transpose, Expand, Concat, Gather, Slice, Split, DepthToSpace,
SpaceToDepth, CenterCropPad and ReverseSequence."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import Lazy, Missing, Transposed, Unmapped
from .._budget import array_room, fold_room
from .._build import check_shape
from ..onnx_reader import INT64_MAX, Ctx, Init, Reader, attr_or_input, onnx_op
from .conv import unpool_reshaped


def _reshape_node(r: Reader, x: Any, out: tuple[int, ...], ctx: Ctx) -> Any:
    c = r.folded(x)
    if c is not None:
        return c.reshape(out)
    node = r.node(x, ctx)
    if node.shape == out:
        return node
    target = out
    if out and node.shape and out[0] == node.shape[0] and math.prod(out[1:]) > 0:
        target = (-1, *out[1:])  # the batch axis passes through: another batch size still fits
    return r.b.op("reshape", node, name=ctx.name, module=ctx.module, attrs={"shape": target})


@onnx_op("Reshape")
def _reshape(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    if isinstance(ins[0], Missing) and ctx.shapes[0] is not None:  # a decomposed max unpool's positions
        return unpool_reshaped(ins[0], ctx.shapes[0])
    spec = np.asarray(ctx.attrs.get("shape", ()), dtype=np.int64) if ctx.opset < 5 else r.folded(ins[1])
    if spec is None:  # Reshape-1 has the shape as an attribute, later ones as an input
        raise Unmapped("a target shape computed at run time")
    shape = r.shape(ins[0])
    target = [int(d) for d in spec.reshape(-1)]
    if not ctx.attrs.get("allowzero", 0):
        target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    if target.count(-1) == 1:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = math.prod(shape) // known if known else 0
    out = check_shape(target, f"Reshape {ctx.name!r}", r.where)
    if math.prod(out) != math.prod(shape):
        raise Unmapped(f"cannot reshape {shape} to {out}")
    return _reshape_node(r, ins[0], out, ctx)


@onnx_op("Flatten")
def _flatten(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    shape = r.shape(ins[0])
    axis = int(ctx.attrs.get("axis", 1))
    axis += len(shape) if axis < 0 else 0
    if not 0 <= axis <= len(shape):  # axis = rank is allowed: (all, 1), as the TorchScript exporter writes for BART
        raise Unmapped(f"Flatten axis {ctx.attrs.get('axis')} of a {len(shape)}-D input")
    out = (math.prod(shape[:axis]), math.prod(shape[axis:]))
    if axis == 1 and r.folded(ins[0]) is None and len(shape) > 2:
        return r.b.op("flatten", r.node(ins[0], ctx), name=ctx.name, module=ctx.module, attrs={"start_dim": 1})
    return _reshape_node(r, ins[0], out, ctx)


@onnx_op("Squeeze", "Unsqueeze")
def _squeeze(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    if isinstance(ins[0], Missing) and ctx.shapes[0] is not None:  # a decomposed max unpool's positions
        return unpool_reshaped(ins[0], ctx.shapes[0])
    shape = list(r.shape(ins[0]))
    axes = attr_or_input(r, ins, ctx, 1, "axes")
    if ctx.op == "Squeeze":
        if axes is None:
            out = [d for d in shape if d != 1]
        else:
            drop = {a % len(shape) for a in axes}
            out = [d for i, d in enumerate(shape) if i not in drop]
    else:
        rank = len(shape) + len(axes)
        out = list(shape)
        for a in sorted(x % rank for x in axes):
            out.insert(a, 1)
    return _reshape_node(r, ins[0], tuple(out), ctx)


@onnx_op("Transpose")
def _transpose(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    ndim = len(r.shape(x))
    perm = tuple(int(p) for p in ctx.attrs.get("perm", reversed(range(ndim))))
    c = r.folded(x)
    if c is not None:
        return np.transpose(c, perm)
    if perm == tuple(range(ndim)):
        return x
    if isinstance(x, Init) and ndim == 2:
        return Transposed(r.node(x, ctx))
    return r.b.op("transpose", r.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axes": perm})


@onnx_op("Expand")
def _expand(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    spec = r.folded(ins[1])
    if spec is None:
        raise Unmapped("a shape computed at run time")
    shape = r.shape(ins[0])
    out = check_shape(np.broadcast_shapes(shape, tuple(int(d) for d in spec.reshape(-1))), "Expand", r.where)
    c = r.folded(ins[0])
    if c is not None:
        array_room(out, c.dtype, "Expand", r.where)
        return np.broadcast_to(c, out).copy()
    node = r.node(ins[0], ctx)
    if node.shape == out:
        return node
    if math.prod(node.shape) == math.prod(out):
        return _reshape_node(r, node, out, ctx)
    # the catalog's broadcast, not x + zeros(out): a constant of the output's size for every Expand of a computed
    # tensor (MViT's relative positions, ONNX attention masks over heads); room for its output is still checked
    array_room(out, np.float64, "Expand", r.where)
    return r.b.op("expand", node, name=ctx.name, module=ctx.module, attrs={"shape": out}, original_op="Expand")


@onnx_op("Concat")
def _concat(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    axis = int(ctx.attrs["axis"] if ctx.opset >= 4 else ctx.attrs.get("axis", 1))  # Concat-1: 1 unless given
    items = [v for v in ins if v is not None]
    folded = [r.folded(v) for v in items]
    if all(f is not None for f in folded):
        return np.concatenate(folded, axis=axis)  # type: ignore[arg-type]
    items = [v for v, f in zip(items, folded, strict=True) if f is None or f.size]
    if len(items) == 1:
        return items[0]
    return r.b.op("concat", *(r.node(v, ctx, hint="part") for v in items), name=ctx.name, module=ctx.module,
                  attrs={"axis": axis})


@onnx_op("Gather")
def _gather(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    data, idx = ins[0], ins[1]
    axis = int(ctx.attrs.get("axis", 0))
    cd, ci = r.folded(data), r.folded(idx)
    if cd is not None and ci is not None:
        fold_room((), f"Gather {ctx.name!r} of constants", r.where,
                  shape=(*cd.shape[:axis % max(cd.ndim, 1)], *ci.shape, *cd.shape[axis % max(cd.ndim, 1) + 1:]))
        return np.take(cd, ci.astype(np.int64), axis=axis)
    if ci is not None and ci.ndim == 0:
        return r.b.op("select", r.node(data, ctx), name=ctx.name, module=ctx.module,
                      attrs={"axis": axis, "index": int(ci)})
    if ci is None and isinstance(data, Init) and axis == 0 and len(data.array.shape) == 2:
        table = r.node(data, ctx)
        r.tied(table, ctx.module)
        return r.b.op("embedding", r.node(idx, ctx), table, name=ctx.name, module=ctx.module)
    return r.b.op("index", r.node(data, ctx), r.node(idx, ctx, hint="index"), name=ctx.name, module=ctx.module,
                  attrs={"axis": axis})


@onnx_op("Slice")
def _slice(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    shape = r.shape(x)
    if ctx.opset < 10:
        starts, ends = list(ctx.attrs["starts"]), list(ctx.attrs["ends"])
        axes = list(ctx.attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = attr_or_input(r, ins, ctx, 1, "starts")
        ends = attr_or_input(r, ins, ctx, 2, "ends")
        axes = attr_or_input(r, ins, ctx, 3, "axes") or list(range(len(starts)))
        steps = attr_or_input(r, ins, ctx, 4, "steps") or [1] * len(starts)
    axes = [a % len(shape) for a in axes]
    stops: list[int | None] = []
    begins: list[int | None] = []
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        size = shape[a]
        begins.append(None if (st > 0 and s <= -INT64_MAX // 2) or (st > 0 and s == 0) else max(min(s, size), -size))
        if st > 0:
            stops.append(None if e >= size else e)
        else:
            stops.append(None if e < -size else e)
    c = r.folded(x)
    if c is not None:
        cut = [slice(None)] * len(shape)
        for a, s, e, st in zip(axes, begins, stops, steps, strict=True):
            cut[a] = slice(s, e, st)
        return c[tuple(cut)]
    if all(s is None and e is None and st == 1 for s, e, st in zip(begins, stops, steps, strict=True)):
        return x
    return r.b.op("slice", r.node(x, ctx), name=ctx.name, module=ctx.module,
                  attrs={"axes": tuple(axes), "starts": tuple(begins), "stops": tuple(stops), "steps": tuple(steps)})


@onnx_op("Split")
def _split(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    shape = r.shape(x)
    axis = int(ctx.attrs.get("axis", 0)) % len(shape)
    sizes = attr_or_input(r, ins, ctx, 1, "split")
    if sizes is None:
        n = int(ctx.attrs.get("num_outputs", len(ctx.outputs)))
        each = -(-shape[axis] // n)
        sizes = [min(each, shape[axis] - s) for s in range(0, shape[axis], each)]
    out: list[Any] = []
    start = 0
    c = r.folded(x)
    for i, n in enumerate(sizes):
        stop = start + n
        if c is not None:
            out.append(np.take(c, range(start, stop), axis=axis))
        else:
            out.append(Lazy(partial(_cut, r, x, ctx, f"{ctx.name}.{i}", axis, start, stop)))
        start = stop
    return out


def _cut(r: Reader, x: Any, ctx: Ctx, name: str, axis: int, start: int, stop: int) -> Node:
    return r.b.op("slice", r.node(x, ctx), name=name, module=ctx.module,
                  attrs={"axes": (axis,), "starts": (start,), "stops": (stop,), "steps": (1,)})


@onnx_op("DepthToSpace", "SpaceToDepth")
def _depth_space(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Channels moved into b×b blocks of pixels (DepthToSpace: sub-pixel convolution's pixel shuffle, DCR or CRD
    order) or back (SpaceToDepth: YOLOv2's reorg): a reshape, a transpose and a reshape."""
    shape = r.shape(ins[0])
    b = int(ctx.attrs["blocksize"])
    if len(shape) != 4 or b < 1:
        raise Unmapped(f"{ctx.op} of a {len(shape)}-D tensor with blocksize {b} (it takes (N, C, H, W))")
    n, c, h, w = shape
    if ctx.op == "DepthToSpace":
        if c % (b * b):
            raise Unmapped(f"DepthToSpace of {c} channels in blocks of {b}×{b}")
        if str(ctx.attrs.get("mode", "DCR")) == "CRD":
            split, perm = (n, c // (b * b), b, b, h, w), (0, 1, 4, 2, 5, 3)
        else:
            split, perm = (n, b, b, c // (b * b), h, w), (0, 3, 4, 1, 5, 2)
        out = (n, c // (b * b), h * b, w * b)
    else:
        if h % b or w % b:
            raise Unmapped(f"SpaceToDepth of {h}×{w} pixels in blocks of {b}×{b}")
        crd = str(ctx.attrs.get("mode", "DCR")) == "CRD"  # opset 28: the inverse of DepthToSpace's CRD order
        split, perm, out = (n, c, h // b, b, w // b, b), (0, 1, 3, 5, 2, 4) if crd else (0, 3, 5, 1, 2, 4), \
            (n, c * b * b, h // b, w // b)
    folded = r.folded(ins[0])
    if folded is not None:
        return np.transpose(folded.reshape(split), perm).reshape(out)
    blocks = r.b.op("reshape", r.node(ins[0], ctx), name=f"{ctx.name}.blocks", module=ctx.module,
                    attrs={"shape": (-1, *split[1:])})
    moved = r.b.op("transpose", blocks, name=f"{ctx.name}.moved", module=ctx.module, attrs={"axes": perm})
    return r.b.op("reshape", moved, name=ctx.name, module=ctx.module, attrs={"shape": (-1, *out[1:])})


@onnx_op("CenterCropPad")
def _center_crop_pad(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Each listed axis cropped or zero-padded to the size the shape input gives, centred (an odd cell comes off, or
    goes on, at the end): a slice of the axes that shrink, then a pad of those that grow. The shape must be known
    when the file is read."""
    shape = r.shape(ins[0])
    wanted = r.folded(ins[1])
    if wanted is None:
        raise Unmapped("a CenterCropPad shape computed at run time")
    sizes = [int(v) for v in wanted.reshape(-1)]
    rank = len(shape)
    axes = [int(a) for a in ctx.attrs.get("axes", range(rank))]
    if len(axes) != len(sizes) or not all(-rank <= a < rank for a in axes) or min(sizes, default=1) < 0:
        raise Unmapped(f"CenterCropPad to {sizes} along axes {axes} of a {rank}-D input")
    crops: dict[int, tuple[int, int]] = {}
    pads_: dict[int, tuple[int, int]] = {}
    for a, size in zip((a % rank for a in axes), sizes, strict=True):
        change = size - shape[a]
        if change < 0:
            crops[a] = (-change // 2, -change // 2 + size)
        elif change > 0:
            pads_[a] = (change // 2, change - change // 2)
    c = r.folded(ins[0])
    if c is not None:
        cut = [slice(*crops[a]) if a in crops else slice(None) for a in range(rank)]
        return np.pad(c[tuple(cut)], [pads_.get(a, (0, 0)) for a in range(rank)])
    x = r.node(ins[0], ctx)
    if crops:
        x = r.b.op("slice", x, name=f"{ctx.name}.crop" if pads_ else ctx.name, module=ctx.module,
                   attrs={"axes": tuple(crops), "starts": tuple(v[0] for v in crops.values()),
                          "stops": tuple(v[1] for v in crops.values()), "steps": (1,) * len(crops)},
                   original_op=ctx.op)
    if pads_:
        x = r.b.op("pad", x, name=ctx.name, module=ctx.module, original_op=ctx.op,
                   attrs={"pads": tuple(pads_.get(a, (0, 0)) for a in range(rank)), "mode": "constant",
                          "value": 0.0})
    return x


@onnx_op("ReverseSequence")
def _reverse_sequence(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """The first lens[b] time steps of each batch entry b in reverse order, the rest as they are (a bidirectional
    RNN's backward pass over padded sequences). With the lengths known when the file is read, each output row is
    one input row: the batch and time axes flattened into one, then one `index` step picks the rows (the gradient
    goes back to the row it came from)."""
    shape = r.shape(ins[0])
    lens = r.folded(ins[1])
    if lens is None:
        raise Unmapped("ReverseSequence with sequence lengths computed at run time")
    batch_axis, time_axis = int(ctx.attrs.get("batch_axis", 1)), int(ctx.attrs.get("time_axis", 0))
    if len(shape) < 2 or {batch_axis, time_axis} != {0, 1}:
        raise Unmapped(f"ReverseSequence with batch_axis {batch_axis} and time_axis {time_axis} (ONNX: 0 and 1)")
    batch, steps = shape[batch_axis], shape[time_axis]
    lengths = lens.reshape(-1).astype(np.int64)
    if lengths.shape != (batch,) or np.any(lengths < 0) or np.any(lengths > steps):
        raise Unmapped(f"ReverseSequence lengths {lengths.tolist()[:8]} for {batch} sequences of {steps} steps")
    t = np.arange(steps)[None, :]
    source = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (batch, time): the step each one reads
    b = np.arange(batch)[:, None]
    rows = b * steps + source if batch_axis == 0 else source * batch + b  # in the flattened (first, second) order
    order = rows if batch_axis == 0 else rows.T  # positions listed in the input's own order of the two axes
    flat_index = order.reshape(-1)
    c = r.folded(ins[0])
    if c is not None:
        return np.take(c.reshape(batch * steps, *shape[2:]), flat_index, axis=0).reshape(shape)
    x = r.node(ins[0], ctx)
    merged = r.b.op("reshape", x, name=f"{ctx.name}.rows", module=ctx.module, attrs={"shape": (-1, *shape[2:])},
                    original_op=ctx.op)
    picked = r.b.op("index", merged, r.b.const(flat_index, ctx.module, "rows", name=f"{ctx.name}.order"),
                    name=f"{ctx.name}.picked", module=ctx.module, attrs={"axis": 0}, original_op=ctx.op)
    return r.b.op("reshape", picked, name=ctx.name, module=ctx.module, attrs={"shape": shape}, original_op=ctx.op)

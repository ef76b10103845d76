"""ONNX GatherElements, GatherND and Tile onto the catalog's `gather`, `index_nd` and `tile`; ScatterND and
ScatterElements of constants folded (masks built at load time, as Swin's shifted-window mask); the shape
plumbing that folds at load time is in `shape.py`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from ...ops.shape import INDEX_ROLES
from .._aten import Unmapped
from .._budget import array_room, fold_room, tile_room
from ..onnx_reader import Ctx, Init, Reader, onnx_op
from .elementwise import op


@onnx_op("GatherElements")
def _gather_elements(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    shape = r.shape(ins[0])
    axis = int(ctx.attrs.get("axis", 0)) % len(shape)
    idx = r.folded(ins[1])
    if idx is not None:  # negative indices count from the end, as ONNX allows and torch.gather does not
        idx = np.where(idx < 0, idx + shape[axis], idx).astype(np.int64)
    c = r.folded(ins[0])
    if c is not None and idx is not None:
        return np.take_along_axis(c, idx, axis=axis)
    index = r.node(idx if idx is not None else ins[1], ctx, hint="index")
    return op(r, ctx, "gather", r.node(ins[0], ctx), index, axis=axis)


@onnx_op("Tile")
def _tile(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    repeats = r.folded(ins[1])
    if repeats is None:
        raise Unmapped("Tile repeats computed at run time")
    reps = tuple(int(v) for v in repeats.reshape(-1))
    c = r.folded(ins[0])
    if c is not None:
        tile_room(c, reps, f"Tile {ctx.name!r} of a constant", r.where)
        return np.tile(c, reps)
    return op(r, ctx, "tile", r.node(ins[0], ctx), repeats=reps)


_REDUCE = {"none": None, "add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter_operands(r: Reader, ins: list[Any], ctx: Ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """The three constants a scatter folds, and its reduction; Unmapped where one is computed at run time.

    A float initializer here is read as the constant it is (a mask's fill values), not as a parameter: a scatter
    of constants has no gradient to give it."""
    data, idx, updates = (v.array if isinstance(v, Init) else r.folded(v) for v in ins[:3])
    if data is None or idx is None or updates is None:
        raise Unmapped(f"{ctx.op} into or of a computed tensor (propscope folds it only on constants)")
    reduction = str(ctx.attrs.get("reduction", "none"))
    if reduction not in _REDUCE:
        raise Unmapped(f"{ctx.op} reduction {reduction!r}")
    array_room(data.shape, data.dtype, f"{ctx.op} {ctx.name!r} of constants", r.where)
    return data.copy(), idx.astype(np.int64), updates, _REDUCE[reduction]


@onnx_op("ScatterND")
def _scatter_nd(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    out, idx, updates, reduce = _scatter_operands(r, ins, ctx)
    depth = idx.shape[-1] if idx.ndim else 0
    if idx.ndim == 0 or depth > out.ndim or updates.shape != idx.shape[:-1] + out.shape[depth:]:
        raise Unmapped(f"ScatterND indices {idx.shape} and updates {updates.shape} do not fit data {out.shape}")
    points = idx.reshape(-1, depth)
    points = np.where(points < 0, points + np.asarray(out.shape[:depth]), points)
    if ((points < 0) | (points >= np.asarray(out.shape[:depth]))).any():
        raise Unmapped("ScatterND index out of range")
    for point, update in zip(points, updates.reshape(-1, *out.shape[depth:]), strict=True):
        at = tuple(int(i) for i in point)
        out[at] = update if reduce is None else reduce(out[at], update)
    return out


@onnx_op("ScatterElements", "Scatter")
def _scatter_elements(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    out, idx, updates, reduce = _scatter_operands(r, ins, ctx)
    axis = int(ctx.attrs.get("axis", 0)) % max(out.ndim, 1)
    if idx.shape != updates.shape or idx.ndim != out.ndim:
        raise Unmapped(f"{ctx.op} indices {idx.shape} and updates {updates.shape} do not fit data {out.shape}")
    idx = np.where(idx < 0, idx + out.shape[axis], idx)
    if ((idx < 0) | (idx >= out.shape[axis])).any():
        raise Unmapped(f"{ctx.op} index out of range")
    for position in np.ndindex(*idx.shape):
        at = tuple(int(idx[position]) if k == axis else position[k] for k in range(out.ndim))
        out[at] = updates[position] if reduce is None else reduce(out[at], updates[position])
    return out


@onnx_op("GatherND")
def _gather_nd(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """out[b, i] = data[b, indices[b, i, 0], indices[b, i, 1], ...] as the catalog's `index_nd`: one index tensor
    per addressed axis, the batch axes (`batch_dims`) indexed by their own positions (CLIP's pooling at the end
    token, `x[arange(n), argmax]`, exported by dynamo)."""
    data, indices = ins[0], ins[1]
    shape, index_shape = tuple(r.shape(data)), tuple(r.shape(indices))
    batch = int(ctx.attrs.get("batch_dims", 0))
    depth = index_shape[-1] if index_shape else 0
    if not index_shape or batch < 0 or batch + depth > len(shape) or index_shape[:batch] != shape[:batch]:
        raise Unmapped(f"GatherND indices {index_shape} do not fit data {shape} with batch_dims {batch}")
    if not depth or batch + depth > len(INDEX_ROLES):
        raise Unmapped(f"GatherND addressing {batch + depth} axes")
    lead = len(index_shape) - 1
    positions = [np.arange(shape[j]).reshape([shape[j] if k == j else 1 for k in range(lead)]) for j in range(batch)]
    known, cd = r.folded(indices), r.folded(data)
    if known is not None:  # negative indices count from the end of their axis
        known = known.astype(np.int64)
        known = np.where(known < 0, known + np.asarray(shape[batch:batch + depth]), known)
        if ((known < 0) | (known >= np.asarray(shape[batch:batch + depth]))).any():
            raise Unmapped("GatherND index out of range")
        columns: list[Any] = [known[..., k] for k in range(depth)]
        if cd is not None:
            fold_room((), f"GatherND {ctx.name!r} of constants", r.where,
                      shape=(*index_shape[:-1], *shape[batch + depth:]))
            return cd[tuple(positions + columns)]
    else:
        node = r.node(indices, ctx, hint="index")
        columns = [r.b.op("select", node, name=f"{ctx.name}.index{k}", module=ctx.module,
                          attrs={"axis": lead, "index": k}) for k in range(depth)]
    parts = [r.b.const(p, ctx.module, f"batch{j}") for j, p in enumerate(positions)]
    parts += [c if isinstance(c, Node) else r.b.const(c, ctx.module, f"index{k}") for k, c in enumerate(columns)]
    return op(r, ctx, "index_nd", r.node(data, ctx), *parts, axes=tuple(range(batch + depth)))

"""ONNX GatherElements, GatherND, Tile and OneHot onto the catalog's `gather`, `index_nd` and `tile`; ScatterND and
ScatterElements folded on constants (masks built at load time, as Swin's shifted-window mask), and of computed
data or updates at positions known at load time the catalog's `index_put` (x[:, 1:3] = y, x[idx] += y,
scatter_add, index_put_; a decomposed max unpool's is `max_unpool2d`, see conv.py), and ScatterElements at
positions computed at run time too (a router's top-k); a reduction mul, max or min where several updates land on
one element is the catalog's `scatter_reduce`; the shape plumbing that folds at load time is in `shape.py`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from ...ops.shape import INDEX_ROLES
from .._aten import Unmapped
from .._budget import array_room, fold_room, tile_room
from ..onnx_reader import Ctx, Init, Reader, onnx_op
from .conv import UnpoolColumn, unpool_scatter
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
_COMBINE = {"mul": "mul", "max": "maximum", "min": "minimum"}  # the others, at distinct positions
_SCATTER_REDUCE = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}  # the catalog's scatter_reduce's


def _reduction(ctx: Ctx) -> str:
    reduction = str(ctx.attrs.get("reduction", "none"))
    if reduction not in _REDUCE:
        raise Unmapped(f"{ctx.op} reduction {reduction!r}")
    return reduction


def _scatter_constants(r: Reader, ins: list[Any], ctx: Ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The three constants a scatter folds (data copied), or None where data or updates are computed.

    A float initializer here is read as the constant it is (a mask's fill values), not as a parameter: a scatter
    of constants has no gradient to give it."""
    data, idx, updates = (v.array if isinstance(v, Init) else r.folded(v) for v in ins[:3])
    if data is None or idx is None or updates is None:
        return None
    array_room(data.shape, data.dtype, f"{ctx.op} {ctx.name!r} of constants", r.where)
    return data.copy(), idx.astype(np.int64), updates


def _positions(r: Reader, ins: list[Any], ctx: Ctx) -> np.ndarray:
    """The scatter's indices, known when the file is read (exporters compute them from shapes and constants)."""
    idx = r.folded(ins[1])
    if idx is None:
        raise Unmapped(f"{ctx.op} at positions computed at run time (propscope maps a scatter of computed "
                       "tensors at positions known when the file is read)")
    return idx.astype(np.int64)


def _put(r: Reader, ins: list[Any], ctx: Ctx, reduction: str, ids: list[np.ndarray], axes: tuple[int, ...]) -> Node:
    """The catalog's index_put of the computed data and updates: overwrite (reduction none) or add (add); mul, max
    and min at distinct positions as the elements picked (index_nd) combined with the updates, then put."""
    if len(ids) > len(INDEX_ROLES):
        raise Unmapped(f"{ctx.op} addressing {len(ids)} axes (the catalog's index_put takes up to "
                       f"{len(INDEX_ROLES)})")
    positions = [r.b.const(i, ctx.module, f"index{k}", name=f"{ctx.name}.index{k}")
                 for k, i in enumerate(_compacted(ids))]
    data, updates = r.node(ins[0], ctx, hint="data"), r.node(ins[2], ctx, hint="updates")
    if reduction in _COMBINE:
        points = np.stack([a.reshape(-1) for a in np.broadcast_arrays(*ids)], axis=1)
        if len(np.unique(points, axis=0)) != len(points):
            return _reduced_at_repeats(r, ctx, data, updates, ids, reduction)
        picked = op(r, ctx, "index_nd", data, *positions, suffix="picked", axes=axes)
        updates = op(r, ctx, _COMBINE[reduction], picked, updates, suffix=reduction)
    return op(r, ctx, "index_put", data, updates, *positions, axes=axes, accumulate=reduction == "add")


def _reduced_at_repeats(r: Reader, ctx: Ctx, data: Node, updates: Node, ids: list[np.ndarray], reduction: str
                        ) -> Node:
    """A scatter's mul, max or min where several updates land on one element (known when the file is read): over
    the flattened data, the catalog's scatter_reduce of the flattened updates at each one's element, reshaped back.
    The index tensors address the leading axes (ScatterND's indices[..., k], every axis for ScatterElements)."""
    shape = tuple(data.shape)
    fold_room((), f"{ctx.op} {ctx.name!r} positions", r.where, shape=tuple(updates.shape))
    element = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)[tuple(ids)]
    if element.shape != tuple(updates.shape):
        raise Unmapped(f"{ctx.op} updates {tuple(updates.shape)} do not fit the {element.shape} elements picked")
    flat = op(r, ctx, "reshape", data, suffix="flat", shape=(-1,))
    values = op(r, ctx, "reshape", updates, suffix="updates_flat", shape=(-1,))
    where = r.b.const(element.reshape(-1), ctx.module, "elements", name=f"{ctx.name}.elements")
    reduced = op(r, ctx, "scatter_reduce", flat, values, where, suffix="reduced", axis=0,
                 reduce=_SCATTER_REDUCE[reduction], include_self=True)
    return op(r, ctx, "reshape", reduced, shape=shape)


def _compacted(ids: list[np.ndarray]) -> list[np.ndarray]:
    """The index tensors of a scatter, each cut to length 1 along the axes it does not vary along: index_put
    broadcasts them together, so they pick the same positions. An exporter writes `x[:, :, 1:, 1:] += y` as a
    ScatterND whose indices are every position of the slice, one column per axis, each an arange broadcast over the
    other axes: four times the slice's size, where the aranges are enough."""
    full = np.broadcast_shapes(*(np.shape(i) for i in ids))
    out = []
    for index in ids:
        index = np.asarray(index).reshape((1,) * (len(full) - np.ndim(index)) + np.shape(index))
        for axis, size in enumerate(index.shape):
            if size > 1 and (index == index.take([0], axis=axis)).all():
                index = index.take([0], axis=axis)
        out.append(index)
    for axis, size in enumerate(full):  # an axis none varies along still says how many values go there
        if size > 1 and all(index.shape[axis] == 1 for index in out):
            out[0] = np.repeat(out[0], size, axis=axis)
    return out


@onnx_op("ScatterND")
def _scatter_nd(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """out = data, then out[indices[i]] = updates[i] (or += with reduction add): folded on constants; of computed
    data or updates (x[:, 1:3] = y, x[idx] += y, index_put_), the catalog's index_put of one index tensor per
    addressed axis (indices[..., k]) at the positions the file gives."""
    reduction = _reduction(ctx)
    folded = _scatter_constants(r, ins, ctx)
    if folded is None and isinstance(ins[1], UnpoolColumn):
        return unpool_scatter(r, ins, ctx, ins[1].positions)
    out, idx, updates = folded if folded is not None else (None, _positions(r, ins, ctx), None)
    shape = out.shape if out is not None else tuple(r.shape(ins[0]))
    update_shape = updates.shape if updates is not None else tuple(r.shape(ins[2]))
    depth = idx.shape[-1] if idx.ndim else 0
    if idx.ndim == 0 or not 0 < depth <= len(shape) or update_shape != idx.shape[:-1] + tuple(shape[depth:]):
        raise Unmapped(f"ScatterND indices {idx.shape} and updates {update_shape} do not fit data {shape}")
    size = np.asarray(shape[:depth])
    idx = np.where(idx < 0, idx + size, idx)
    if ((idx < 0) | (idx >= size)).any():
        raise Unmapped("ScatterND index out of range")
    if out is None or updates is None:
        return _put(r, ins, ctx, reduction, [idx[..., k] for k in range(depth)], tuple(range(depth)))
    reduce = _REDUCE[reduction]
    for point, update in zip(idx.reshape(-1, depth), updates.reshape(-1, *shape[depth:]), strict=True):
        at = tuple(int(i) for i in point)
        out[at] = update if reduce is None else reduce(out[at], update)
    return out


@onnx_op("ScatterElements", "Scatter")
def _scatter_elements(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """out = data, then out[..., indices[i, j], ...] = updates[i, j] along `axis` (or += with reduction add):
    folded on constants; of computed data or updates (scatter_add, scatter_), the catalog's index_put with the
    indices on `axis` and each other axis indexed by its own positions."""
    reduction = _reduction(ctx)
    folded = _scatter_constants(r, ins, ctx)
    if folded is None and r.folded(ins[1]) is None:
        return _scatter_elements_computed(r, ins, ctx, reduction)
    out, idx, updates = folded if folded is not None else (None, _positions(r, ins, ctx), None)
    shape = out.shape if out is not None else tuple(r.shape(ins[0]))
    update_shape = updates.shape if updates is not None else tuple(r.shape(ins[2]))
    axis = int(ctx.attrs.get("axis", 0)) % max(len(shape), 1)
    if idx.shape != update_shape or idx.ndim != len(shape) or \
            any(i > d for k, (i, d) in enumerate(zip(idx.shape, shape, strict=True)) if k != axis):
        raise Unmapped(f"{ctx.op} indices {idx.shape} and updates {update_shape} do not fit data {shape}")
    idx = np.where(idx < 0, idx + shape[axis], idx)
    if ((idx < 0) | (idx >= shape[axis])).any():
        raise Unmapped(f"{ctx.op} index out of range")
    if out is None or updates is None:
        ids = [idx if k == axis else np.arange(n).reshape([n if j == k else 1 for j in range(idx.ndim)])
               for k, n in enumerate(idx.shape)]
        return _put(r, ins, ctx, reduction, ids, tuple(range(idx.ndim)))
    reduce = _REDUCE[reduction]
    for position in np.ndindex(*idx.shape):
        at = tuple(int(idx[position]) if k == axis else position[k] for k in range(out.ndim))
        out[at] = updates[position] if reduce is None else reduce(out[at], updates[position])
    return out


def _scatter_elements_computed(r: Reader, ins: list[Any], ctx: Ctx, reduction: str) -> Node:
    """ScatterElements at positions the model computes (DeepSeek-V3's router marks the groups its top-k chose,
    `zeros.scatter_(1, group_idx, 1)`; a traced mixture of experts adds each expert's rows back with index_add): the
    catalog's index_put with the computed indices on `axis`, each other axis indexed by its own positions; reduction
    add accumulates, as index_put does at repeated positions."""
    shape, picked = tuple(r.shape(ins[0])), tuple(r.shape(ins[1]))
    if not 1 <= len(shape) <= len(INDEX_ROLES) or len(picked) != len(shape) or tuple(r.shape(ins[2])) != picked \
            or any(i > d for i, d in zip(picked, shape, strict=True)):
        raise Unmapped(f"{ctx.op} indices {picked} and updates {tuple(r.shape(ins[2]))} do not fit data {shape}")
    axis = int(ctx.attrs.get("axis", 0)) % len(shape)
    if reduction in _COMBINE:  # products, maxima, minima of what lands on each element: torch's scatter_reduce
        return op(r, ctx, "scatter_reduce", r.node(ins[0], ctx, hint="data"), r.node(ins[2], ctx, hint="updates"),
                  r.node(ins[1], ctx, hint="indices"), axis=axis, reduce=_SCATTER_REDUCE[reduction],
                  include_self=True)
    positions = [r.node(ins[1], ctx, hint="indices") if k == axis else r.b.const(
        np.arange(n).reshape([n if j == k else 1 for j in range(len(picked))]), ctx.module, f"axis{k}",
        name=f"{ctx.name}.axis{k}") for k, n in enumerate(picked)]
    return op(r, ctx, "index_put", r.node(ins[0], ctx, hint="data"), r.node(ins[2], ctx, hint="updates"), *positions,
              axes=tuple(range(len(shape))), accumulate=reduction == "add")


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


@onnx_op("OneHot")
def _one_hot(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """OneHot(indices, depth, [off, on]) along `axis`: folded for known indices (the TorchScript exporter's
    opset-9 gather of a buffer, BERT's token types, is OneHot, Mul and ReduceSum of constants); of computed indices,
    a comparison with 0 … depth − 1 (and −depth … −1, as ONNX counts negative indices from the end) picking on or
    off with `where`. An index outside −depth … depth − 1 is off everywhere."""
    depth_value = r.folded(ins[1])
    values = ins[2].array if isinstance(ins[2], Init) else r.folded(ins[2])  # a float pair, not a parameter
    if depth_value is None or values is None or values.size != 2:
        raise Unmapped("OneHot depth or values computed at run time")
    depth = int(depth_value.reshape(-1)[0])
    if depth < 1:
        raise Unmapped(f"OneHot depth {depth}")
    rank = len(r.shape(ins[0])) + 1
    axis = int(ctx.attrs.get("axis", -1))
    if not -rank <= axis < rank:
        raise Unmapped(f"OneHot axis {axis} of a {rank}-D output")
    axis %= rank
    positions = np.arange(depth).reshape([depth if k == axis else 1 for k in range(rank)])
    off, on = values.reshape(-1)
    idx = r.folded(ins[0])
    if idx is not None:
        fold_room((), f"OneHot {ctx.name!r}", r.where, shape=(*idx.shape[:axis], depth, *idx.shape[axis:]))
        wanted = np.expand_dims(idx.astype(np.int64), axis)
        hit = (wanted == positions) | (wanted == positions - depth)
        return np.where(hit, on, off).astype(values.dtype)
    index = r.node(ins[0], ctx, hint="indices")
    column = op(r, ctx, "reshape", index, suffix="column",
                shape=(*index.shape[:axis], 1, *index.shape[axis:]))
    hit = op(r, ctx, "compare", column, r.b.const(positions, ctx.module, "positions"), suffix="hit", op="eq")
    from_end = op(r, ctx, "compare", column, r.b.const(positions - depth, ctx.module, "positions_from_end"),
                  suffix="hit_from_end", op="eq")
    mask = op(r, ctx, "logical", hit, from_end, suffix="mask", op="or")
    return op(r, ctx, "where", mask, r.b.const(np.asarray(float(on)), ctx.module, "on"),
              r.b.const(np.asarray(float(off)), ctx.module, "off"))

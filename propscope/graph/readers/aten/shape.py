"""ATen shape ops: views, permutes, expands, joins, slices and picks; constant inputs fold."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import numpy as np

from ...ir import Node
from ...ops.shape import narrows, round_to_float
from .._aten import (
    SCALAR_TYPES,
    Ctx,
    Lazy,
    Sequence,
    Translator,
    Transposed,
    Unmapped,
    UnpoolPositions,
    aten,
    op_key,
    self_arg,
)
from .._budget import array_room, fold_room, tile_room
from .conv import unpool_put


@aten("t", "permute", "transpose", "numpy_T", "permute_copy", "transpose_copy", "t_copy", "swapaxes", "swapdims")
def _permute(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target).removesuffix("_copy")
    x = self_arg(a)
    ndim = len(t.shape(x))
    if op == "permute":
        perm = tuple(int(d) % ndim for d in a["dims"])
    elif op in ("transpose", "swapaxes", "swapdims"):  # the same op under NumPy's names (MaxViT uses swapaxes)
        perm_list = list(range(ndim))
        d0, d1 = (int(a[k]) % ndim for k in (("axis0", "axis1") if "axis0" in a else ("dim0", "dim1")))
        perm_list[d0], perm_list[d1] = perm_list[d1], perm_list[d0]
        perm = tuple(perm_list)
    else:
        perm = tuple(reversed(range(ndim)))
    if perm == tuple(range(ndim)):
        return x
    if t.const(x):
        return np.transpose(np.asarray(x), perm)
    if isinstance(x, Transposed) and perm == (1, 0):
        return x.leaf
    if isinstance(x, Lazy):
        x = x.get()
    if isinstance(x, Node) and x.is_leaf and ndim == 2:
        return Transposed(x)
    return t.b.op("transpose", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axes": perm})


def _reshape_to(t: Translator, x: Any, ctx: Ctx, size: Any = None) -> Any:
    out = ctx.shapes[0]
    known = t.known(x)
    if out is None and known is not None and isinstance(size, list) and all(isinstance(d, int) for d in size):
        return np.reshape(known, size)  # a constant whose size depends on data (nonzero): NumPy knows it
    if out is None:
        raise Unmapped("no declared output shape")
    if t.const(x):
        return np.reshape(np.asarray(x), out)
    node = t.node(x, ctx)
    if node.shape == out:
        return node
    target: tuple[int, ...] = out
    # keep the batch axis free when it passes through unchanged, so a batch of another size still fits
    if out and node.shape and out[0] == node.shape[0] and math.prod(out[1:]) > 0:
        target = (-1, *out[1:])
    return t.b.op("reshape", node, name=ctx.name, module=ctx.module, attrs={"shape": target})


@aten("view", "_unsafe_view", "reshape", "view_copy", "unflatten", "squeeze", "unsqueeze", "_reshape_alias",
      "squeeze_copy", "unsqueeze_copy", "flatten", "reshape_as", "view_as")  # _as: to the declared output shape
def _reshape(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    if isinstance(x, UnpoolPositions) and ctx.shapes[0] is not None and len(ctx.shapes[0]) == 1:
        return dataclasses.replace(x, flat=True)  # a decomposed max_unpool2d's positions, flattened
    if op_key(ctx.target) == "flatten" and not t.const(x):
        node = t.node(x, ctx)
        start, end = int(a.get("start_dim", 0)), int(a.get("end_dim", -1))
        if len(node.shape) >= 1 and not (start == 0 and end in (-1, len(node.shape) - 1) and len(node.shape) > 1):
            return t.b.op("flatten", node, name=ctx.name, module=ctx.module,
                          attrs={"start_dim": start, "end_dim": end})
    return _reshape_to(t, x, ctx, a.get("size", a.get("shape")) if op_key(ctx.target) != "flatten" else None)


@aten("expand", "expand_copy", "broadcast_to", "expand_as")
def _expand(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, out = self_arg(a), ctx.shapes[0]
    if out is None:
        raise Unmapped("no declared output shape")
    if t.const(x):
        array_room(out, np.asarray(x).dtype, "expand", t.where)
        return np.broadcast_to(np.asarray(x), out).copy()
    node = t.node(x, ctx)
    if math.prod(node.shape) == math.prod(out):
        return _reshape_to(t, node, ctx)
    return t.b.op("expand", node, name=ctx.name, module=ctx.module, attrs={"shape": tuple(out)})


@aten("detach", "detach_copy")
def _detach(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """x.detach() in a forward (a target, a scale, a straight-through estimator's x + (q − x).detach()): the value,
    with no gradient back through it, as torch. A constant has none to cut."""
    x = self_arg(a)
    if t.known(x) is not None:
        return x
    return t.b.op("detach", t.node(x, ctx), name=ctx.name, module=ctx.module)


@aten("clone", "contiguous", "alias", "lift_fresh_copy", "_to_copy", "to", "type_as", "alias_copy",
      "_assert_tensor_metadata")
def _same(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Copies, views and casts. A cast to a narrower float dtype (float16, bfloat16: see `narrows`) rounds
    through it as torch does, values and gradient (a `cast` step), in any session dtype: a model `.double()`'d
    still rounds where its forward says `.half()`. A cast to a wider float is the value itself (the session's
    dtype governs the ops after it). A cast to an integer or bool dtype changes values and is kept: T5's
    relative-position buckets are logarithms truncated to int64."""
    x = self_arg(a) if ("self" in a or "input" in a) else a.get("a")
    code = a.get("dtype") if op_key(ctx.target) in ("_to_copy", "to") else None
    target = SCALAR_TYPES.get(code) if isinstance(code, int) else None
    if target in _FLOATS and t.input_dtype() in _FLOATS and t.input_dtype() != target and t.known(x) is None:
        t.float_casts.append(ctx.module or ctx.name)  # said once, when the whole program is read
    if target in _FLOATS and narrows(t.input_dtype(), target):
        known = t.known(x)
        if known is None:
            return t.b.op("cast", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"dtype": target},
                          original_op=op_key(ctx.target))
        return round_to_float(np.asarray(known, dtype=np.float64), target)
    if target is None or target in _FLOATS:
        return x
    known = t.known(x)
    if known is not None:
        array_room(known.shape, np.dtype(target), f"the cast {ctx.name!r} of a constant", t.where)
        return known != 0 if target == "bool" else known.astype(target)  # torch truncates toward zero, as NumPy
    if t.input_dtype() not in _FLOATS:
        return x  # integers and masks keep their values in a wider integer type
    node = t.node(x, ctx)
    if target == "bool":
        return t.b.op("compare", node, t.b.const(np.array(0.0), ctx.module, "zero"), name=ctx.name,
                      module=ctx.module, attrs={"op": "ne"}, original_op=op_key(ctx.target))
    # float to integer drops the fraction: x − fmod(x, 1) is that exactly, and its derivative is 0 as trunc's is
    fraction = t.b.op("fmod", node, t.b.const(np.array(1.0), ctx.module, "one"), name=f"{ctx.name}.fraction",
                      module=ctx.module)
    return t.b.op("sub", node, fraction, name=ctx.name, module=ctx.module, original_op=op_key(ctx.target))


_FLOATS = ("float16", "bfloat16", "float32", "float64")


@aten("cat", "concat", "concatenate")
def _cat(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    # torch.cat skips empty 1-D tensors whatever `dim` says (a fresh key/value cache starts as one)
    items = [v for v in a["tensors"] if not _empty_vector(t.known(v))]
    dim = int(a.get("dim", 0))
    if all(t.const(v) for v in items):
        return np.concatenate([np.asarray(v) for v in items], axis=dim)
    if len(items) == 1:
        return items[0]
    nodes = [t.node(v, ctx, "part") for v in items]
    return t.b.op("concat", *nodes, name=ctx.name, module=ctx.module, attrs={"axis": dim})


def _empty_vector(value: np.ndarray | None) -> bool:
    return value is not None and value.ndim == 1 and value.size == 0


@aten("stack")
def _stack(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    items, dim = a["tensors"], int(a.get("dim", 0))
    if all(t.const(v) for v in items):
        return np.stack([np.asarray(v) for v in items], axis=dim)
    nodes = [t.node(v, ctx, "part") for v in items]
    shape = nodes[0].shape
    dim %= len(shape) + 1
    one = (*shape[:dim], 1, *shape[dim:])
    parts = [t.b.op("reshape", n, name=f"{ctx.name}.in{i}", module=ctx.module, attrs={"shape": one})
             for i, n in enumerate(nodes)]
    return t.b.op("concat", *parts, name=ctx.name, module=ctx.module, attrs={"axis": dim})


def _slice_bounds(size: int, start: Any, end: Any, step: int) -> tuple[int | None, int | None]:
    start = None if start is None or start == 0 else int(start)
    end = None if end is None or int(end) >= size else int(end)
    return start, end


@aten("slice", "slice_copy")
def _slice(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    shape = t.shape(x)
    dim = int(a.get("dim", 0)) % len(shape)
    step = int(a.get("step", 1))
    start, end = _slice_bounds(shape[dim], a.get("start"), a.get("end"), step)
    if start is None and end is None and step == 1:
        return x
    if t.const(x):
        cut = [slice(None)] * len(shape)
        cut[dim] = slice(start, end, step)
        return np.asarray(x)[tuple(cut)]
    return t.b.op("slice", t.node(x, ctx), name=ctx.name, module=ctx.module,
                  attrs={"axes": (dim,), "starts": (start,), "stops": (end,), "steps": (step,)})


@aten("select", "select_copy")
def _select(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    dim, index = int(a["dim"]), int(a["index"])
    if isinstance(x, Sequence):
        ndim = 3
        if dim % ndim == x.time_axis:
            return x.steps[index].get()
    if t.const(x):
        return np.take(np.asarray(x), index, axis=dim)
    known = t.known(x)  # one number of a stored vector: a loop over a tensor attribute (YOLO's strides, whose
    if known is not None and known.ndim == 1:  # `.item()` fills the anchors' stride column) folds to that number
        return np.take(known, index, axis=dim)
    return t.b.op("select", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axis": dim, "index": index})


def _take_room(t: Translator, ctx: Ctx, x: Any, idx: Any, axis: int) -> None:
    """Refuse, before it is made, a np.take of constants the budget has no room for (its size is the
    index's times the rest of x: small constants can ask for a lot)."""
    shape = np.shape(x)
    axis %= max(len(shape), 1)
    fold_room((), f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where,
              shape=(*shape[:axis], *np.shape(idx), *shape[axis + 1:]))


@aten("index_select")
def _index_select(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, idx, dim = self_arg(a), a["index"], int(a["dim"])
    if t.const(x) and t.const(idx):
        _take_room(t, ctx, x, idx, dim)
        return np.take(np.asarray(x), np.asarray(idx), axis=dim)
    return t.b.op("index", t.node(x, ctx), t.node(idx, ctx, "index"), name=ctx.name, module=ctx.module,
                  attrs={"axis": dim})


BOOLEAN_OPS = ("compare", "logical", "isnan", "isinf")  # catalog ops whose output is a mask


def _computed_mask(t: Translator, index: Any) -> bool:
    """Whether an index is a boolean mask the data computes (its True count, the result's size, is the data's)."""
    if t.known(index) is not None:
        return False
    dtypes = t.argument_dtypes("indices") if hasattr(t, "argument_dtypes") else []
    return "bool" in dtypes or (isinstance(index, Node) and (index.op.name in BOOLEAN_OPS or
                                                             index.meta.get("dtype") == "bool"))


@aten("index")
def _index(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    indices: list[Any] = []
    for v in a["indices"]:
        mask = None if v is None else t.known(v)
        if mask is not None and mask.dtype == bool:  # a mask known now: the positions of its True elements, an
            indices.extend(np.nonzero(mask))  # integer array for each axis it covers (never the mask as ids)
        else:
            indices.append(v)
    used = [(i, v) for i, v in enumerate(indices) if v is not None]
    x = self_arg(a)
    known = t.known(x)
    if known is not None and all(t.known(v) is not None for _, v in used):
        # NumPy's advanced indexing places the indexed axes exactly as torch does
        picks = tuple(slice(None) if v is None else t.known(v) for v in indices)
        return known[tuple(p.astype(np.int64) if isinstance(p, np.ndarray) and p.dtype != bool else p
                           for p in picks)]
    if any(_computed_mask(t, v) for _, v in used):
        return _select_by_mask(t, x, indices, ctx)
    if len(used) != 1:
        axes = [i for i, _ in used]
        if axes != list(range(axes[0], axes[0] + len(axes))):
            raise Unmapped("indexing a computed tensor along separated axes")
        return t.b.op("index_nd", t.node(x, ctx), *(t.node(v, ctx, "index") for _, v in used), name=ctx.name,
                      module=ctx.module, attrs={"axes": tuple(axes)})
    axis, idx = used[0]
    if t.const(x) and t.const(idx):
        _take_room(t, ctx, x, idx, axis)
        return np.take(np.asarray(x), np.asarray(idx), axis=axis)
    return t.b.op("index", t.node(x, ctx), t.node(idx, ctx, "index"), name=ctx.name, module=ctx.module,
                  attrs={"axis": axis})


MAX_POSITION_TABLE = 50_000_000  # count × mask length: the comparison `_set_positions` makes


def _mask_axis(t: Translator, x: Any, indices: list[Any], what: str) -> tuple[int, Any]:
    """Where the one computed mask among `indices` starts in x's axes, and the mask (the others must be whole axes:
    None; a mask of k axes covers k of x's)."""
    used = [(i, v) for i, v in enumerate(indices) if v is not None]
    if len(used) != 1:
        raise Unmapped(f"{what} by a boolean mask computed from the data together with other indices")
    axis, mask = used[0]
    if tuple(t.shape(x)[axis:axis + len(t.shape(mask))]) != tuple(t.shape(mask)):
        raise Unmapped(f"{what} by a {tuple(t.shape(mask))} mask over a {tuple(t.shape(x))} tensor at axis {axis}")
    return axis, mask


def _flat(t: Translator, x: Any, axis: int, span: int, ctx: Ctx, role: str) -> Node:
    """x with its axes axis … axis + span − 1 made one (a mask over them, flattened, lines up with it)."""
    shape = tuple(t.shape(x))
    merged = (*shape[:axis], math.prod(shape[axis:axis + span]), *shape[axis + span:])
    node = t.node(x, ctx, role)
    if merged == shape:
        return node
    return t.b.op("reshape", node, name=f"{ctx.name}.{role}_flat", module=ctx.module, attrs={"shape": merged})


def _set_positions(t: Translator, mask: Any, count: int, ctx: Ctx, role: str) -> Node:
    """The flat positions of a computed mask's set elements, in order, where the program says how many there are
    (`count`: a path traced along these inputs fixes it, `decisions.py`). A mask is data: no gradient."""
    flat = t.b.op("reshape", t.node(mask, ctx, role), name=f"{ctx.name}.{role}_flat", module=ctx.module,
                  attrs={"shape": (-1,)})
    return _ranks_below(t, flat, count, ctx, role)


def _ranks_below(t: Translator, counts: Node, total: int, ctx: Ctx, role: str) -> Node:
    """For k = 0 … total − 1, the number of entries whose running sum of `counts` (1-d) is at most k: the entry the
    k-th unit falls in. With a mask's 0/1 the k-th set element's position; with repeat counts the entry the k-th
    output repeats (a comparison of the running sum with 0 … total − 1, summed). Data: no gradient."""
    length = counts.shape[0]
    if total * length > MAX_POSITION_TABLE:
        raise Unmapped(f"the positions of {total:,} units among {length:,} entries (a table of more than "
                       f"{MAX_POSITION_TABLE:,})")
    running = t.b.op("cumsum", counts, name=f"{ctx.name}.{role}_running", module=ctx.module, attrs={"axis": 0})
    ranks = t.b.const(np.arange(total, dtype=np.float64).reshape(total, 1), ctx.module, f"{role}_ranks")
    below = t.b.op("compare", running, ranks, name=f"{ctx.name}.{role}_below", module=ctx.module,
                   attrs={"op": "le"})
    return t.b.op("sum", below, name=f"{ctx.name}.{role}_positions", module=ctx.module,
                  attrs={"axis": 1, "keepdims": False})


def _select_by_mask(t: Translator, x: Any, indices: list[Any], ctx: Ctx) -> Node:
    """x[mask] by a mask the data computes, where the program fixes the result's size (the path these inputs take:
    Qwen2-VL picks the ids its attention mask keeps so): the rows at the mask's set positions, gathered (`index`,
    whose gradient scatters back to them)."""
    axis, mask = _mask_axis(t, x, indices, "x[mask]")
    declared = ctx.shapes[0] if ctx.shapes else None
    if declared is None or len(declared) <= axis:
        raise Unmapped("x[mask] by a boolean mask computed from the data: the result's size depends on the values")
    span = len(t.shape(mask))
    positions = _set_positions(t, mask, int(declared[axis]), ctx, "mask")
    return t.b.op("index", _flat(t, x, axis, span, ctx, "self"), positions, name=ctx.name, module=ctx.module,
                  attrs={"axis": axis}, original_op="index")


def _put_by_mask(t: Translator, x: Any, values: Any, indices: list[Any], ctx: Ctx) -> Node:
    """x[mask] = values by a mask the data computes (Qwen2-VL writes its M-RoPE positions at the tokens its
    attention mask keeps): as masked_scatter, each set element takes the values' next row, which is the values
    gathered at the running count of set elements before it, and x stays where the mask is clear (`where`). No size
    depends on the data; the gradient reaches x where clear and the values' rows where set."""
    axis, mask = _mask_axis(t, x, indices, "x[mask] = v")
    shape, span = tuple(t.shape(x)), len(t.shape(mask))
    length = math.prod(shape[axis:axis + span])
    flat_x = _flat(t, x, axis, span, ctx, "self")
    flat_mask = t.b.op("reshape", t.node(mask, ctx, "mask"), name=f"{ctx.name}.mask_flat", module=ctx.module,
                       attrs={"shape": (-1,)})
    before = t.b.op("cumsum", flat_mask, name=f"{ctx.name}.mask_count", module=ctx.module,
                    attrs={"axis": 0, "exclusive": True})
    # at a clear element, row 0 (any row would do: `where` drops it and sends it no gradient)
    rows = t.b.op("mul", before, flat_mask, name=f"{ctx.name}.rows", module=ctx.module)
    vshape, rest = tuple(t.shape(values)), shape[axis + span:]
    values_node = t.node(values, ctx, "values")
    row_axis = len(vshape) - len(rest) - 1  # values broadcast against x[mask]'s (…, count, *rest), right-aligned
    if row_axis < 0 or vshape[row_axis] == 1:  # one row for every set element
        taken = values_node if vshape == flat_x.shape else t.b.op(
            "expand", values_node, name=f"{ctx.name}.taken", module=ctx.module, attrs={"shape": flat_x.shape})
    else:
        if row_axis > axis:
            raise Unmapped(f"x[mask] = v with values of shape {vshape} for a {shape} tensor")
        if row_axis < axis:
            values_node = t.b.op("reshape", values_node, name=f"{ctx.name}.values", module=ctx.module,
                                 attrs={"shape": (*(1,) * (axis - row_axis), *vshape)})
        grown = (*shape[:axis], vshape[row_axis], *rest)
        if values_node.shape != grown:
            values_node = t.b.op("expand", values_node, name=f"{ctx.name}.values_full", module=ctx.module,
                                 attrs={"shape": grown})
        taken = t.b.op("index", values_node, rows, name=f"{ctx.name}.taken", module=ctx.module,
                       attrs={"axis": axis})
    lined = t.b.op("reshape", flat_mask, name=f"{ctx.name}.mask_lined", module=ctx.module,
                   attrs={"shape": (*(1,) * axis, length, *(1,) * len(rest))})
    out = t.b.op("where", lined, taken, flat_x, name=f"{ctx.name}.placed", module=ctx.module)
    if out.shape == shape:
        out.meta["original_op"] = "index_put"
        return out
    return t.b.op("reshape", out, name=ctx.name, module=ctx.module, attrs={"shape": shape}, original_op="index_put")


@aten("index_put")
def _index_put(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """x[..., i, j] = values, or += with accumulate (F.fold and max unpooling decompose into a scatter-add):
    folded where everything is known; otherwise the catalog's index_put of the computed tensors, at positions
    known or computed (a known boolean mask becomes the integer positions of its True elements)."""
    x, values = self_arg(a), a["values"]
    accumulate = bool(a.get("accumulate", False))
    indices = list(a["indices"])
    if len(indices) == 1 and isinstance(indices[0], UnpoolPositions) and indices[0].flat:
        return unpool_put(t, x, values, indices[0], ctx)
    while indices and indices[-1] is None:  # trailing Nones: whole axes, as if not written
        indices.pop()
    if any(v is not None and _computed_mask(t, v) for v in indices):
        if accumulate:
            raise Unmapped("x[mask] += v by a boolean mask computed from the data")
        return _put_by_mask(t, x, values, indices, ctx)
    picks: list[Any] = []
    for v in indices:
        known = None if v is None else t.known(v)
        if known is not None and known.dtype == bool:  # x[mask] = v: the positions of the mask's True elements
            picks.extend(np.nonzero(known))
        else:
            picks.append(None if v is None else known if known is not None else v)
    used = [(i, v) for i, v in enumerate(picks) if v is not None]
    if not used:
        raise Unmapped("index_put with no index tensor")
    known_x, known_values = t.known(x), t.known(values)
    if known_x is not None and known_values is not None and all(isinstance(v, np.ndarray) for _, v in used):
        out = known_x.copy()
        where: Any = tuple(slice(None) if p is None else p.astype(np.int64) for p in picks)
        if accumulate:
            np.add.at(out, where, known_values)
        else:
            out[where] = known_values
        return out
    if len(used) > 6:
        raise Unmapped(f"index_put with {len(used)} index tensors (the catalog's index_put takes up to 6)")
    ids = [t.node(v, ctx, "index") for _, v in used]
    return t.b.op("index_put", t.node(x, ctx, "self"), t.node(values, ctx, "values"), *ids, name=ctx.name,
                  module=ctx.module, attrs={"axes": tuple(i for i, _ in used), "accumulate": accumulate})


@aten("index_add")
def _index_add(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """x.index_add(dim, index, source, alpha): source's slices added to x's at the positions of `index` along dim,
    repeats adding up (JetMoE gathers its experts' outputs back to their tokens so): an index_put that accumulates."""
    x, source, alpha = self_arg(a), a["source"], a.get("alpha", 1)
    dim = int(a["dim"]) % max(len(t.shape(x)), 1)
    if alpha != 1:
        known = t.known(source)
        source = known * alpha if known is not None else t.b.op(
            "mul", t.node(source, ctx, "source"), t.b.const(np.array(float(alpha)), ctx.module, "alpha"),
            name=f"{ctx.name}.alpha", module=ctx.module)
    return _index_put(t, {"self": x, "values": source, "indices": [None] * dim + [a["index"]], "accumulate": True},
                      ctx)


@aten("split", "split_with_sizes", "unsafe_split", "unsafe_split_with_sizes", "chunk", "unsafe_chunk", "unbind",
      "split_copy", "split_with_sizes_copy", "tensor_split")
def _split(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    # the unsafe_ twins (a traced nn.LSTMCell chunks its gates so) differ only in autograd's view checks
    op = op_key(ctx.target).removesuffix("_copy").removeprefix("unsafe_")
    x = self_arg(a)
    shape = t.shape(x)
    dim = int(a.get("dim", 0)) % len(shape)
    size = shape[dim]
    if op == "unbind":
        return [_piece(t, x, ctx, dim, i, None, i) for i in range(size)]
    if op == "tensor_split":  # MViT splits its class token off so
        return [_piece(t, x, ctx, dim, lo, hi, i) for i, (lo, hi) in enumerate(_tensor_split(a, size))]
    if op == "chunk":
        each = -(-size // int(a["chunks"]))
        lengths = [min(each, size - s) for s in range(0, size, each)]
    elif isinstance(a.get("split_sizes"), list):
        lengths = [int(v) for v in a["split_sizes"]]
    else:
        each = int(a["split_size"])
        lengths = [min(each, size - s) for s in range(0, size, each)]
    out, start = [], 0
    for i, n in enumerate(lengths):
        out.append(_piece(t, x, ctx, dim, start, start + n, i))
        start += n
    return out


def _tensor_split(a: dict[str, Any], size: int) -> list[tuple[int, int]]:
    """torch.tensor_split's pieces as (start, stop): n sections (the first size mod n one longer), or cut at indices
    (negative ones from the end, clamped; a piece after a smaller index is empty)."""
    if "sections" in a:
        n = int(a["sections"])
        if n < 1:
            raise Unmapped(f"tensor_split into {n} sections")
        q, r = divmod(size, n)
        bounds = [0]
        for i in range(n):
            bounds.append(bounds[-1] + q + (1 if i < r else 0))
        return list(itertools.pairwise(bounds))
    if not isinstance(a.get("indices"), list):
        raise Unmapped("tensor_split at positions computed from the input")
    cuts = [min(max(int(i) + size if int(i) < 0 else int(i), 0), size) for i in a["indices"]]
    bounds = [0, *cuts, size]
    return [(lo, max(lo, hi)) for lo, hi in itertools.pairwise(bounds)]


def _piece(t: Translator, x: Any, ctx: Ctx, dim: int, start: int, stop: int | None, i: int) -> Any:
    if t.const(x):
        arr = np.asarray(x)
        return np.take(arr, start, axis=dim) if stop is None else np.take(arr, range(start, stop), axis=dim)

    def make() -> Node:
        node = t.node(x, ctx)
        name = f"{ctx.name}.{i}"
        if stop is None:
            return t.b.op("select", node, name=name, module=ctx.module, attrs={"axis": dim, "index": start})
        return t.b.op("slice", node, name=name, module=ctx.module,
                      attrs={"axes": (dim,), "starts": (start,), "stops": (stop,), "steps": (1,)})

    return Lazy(make)


@aten("gather")
def _gather(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, idx, dim = self_arg(a), a["index"], int(a["dim"])
    kx, ki = t.known(x), t.known(idx)
    if kx is not None and ki is not None:
        return np.take_along_axis(kx, ki.astype(np.int64), axis=dim)
    return t.b.op("gather", t.node(x, ctx), t.node(idx, ctx, "index"), name=ctx.name, module=ctx.module,
                  attrs={"axis": dim})


@aten("unfold")
def _unfold(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Tensor.unfold(dim, size, step) (HaloNet's blocked neighbourhoods): every window of `size` entries `step`
    apart along `dim`, windows in its place and their entries on a new last axis; an `index` by the constant
    window positions (n, size), its entries' axis then moved last."""
    x = self_arg(a)
    shape = t.shape(x)
    dim = int(a["dimension"]) % max(len(shape), 1)
    size, step = int(a["size"]), int(a["step"])
    length = shape[dim] if shape else 1
    if size < 0 or step < 1 or size > length:
        raise Unmapped(f"unfold of {length} entries in windows of {size}, step {step}")
    positions = (np.arange((length - size) // step + 1) * step)[:, None] + np.arange(size)
    known = t.known(x)
    if not shape:  # a scalar unfolds to one window of itself
        if known is not None:
            return np.reshape(known, (1,))
        return t.b.op("reshape", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"shape": (1,)})
    if known is not None:
        _take_room(t, ctx, known, positions, dim)
        return np.moveaxis(np.take(known, positions, axis=dim), dim + 1, -1)
    windows = t.b.op("index", t.node(x, ctx), t.b.const(positions, ctx.module, "windows"),
                     name=f"{ctx.name}.windows", module=ctx.module, attrs={"axis": dim})
    perm = (*(k for k in range(len(shape) + 1) if k != dim + 1), dim + 1)
    if perm == tuple(range(len(shape) + 1)):
        return windows
    return t.b.op("transpose", windows, name=ctx.name, module=ctx.module, attrs={"axes": perm})


@aten("one_hot")
def _one_hot(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """F.one_hot(ids, num_classes) (Gemma 4's vision tower looks up its 2-D position table by a one-hot product):
    folded for ids known when read; for ids the data computes, the mask ids[..., None] == 0 … C − 1 (no gradient,
    as torch's integer one-hot has none)."""
    ids, classes = self_arg(a), int(a.get("num_classes", -1))
    known = t.known(ids)
    if known is not None:
        known = np.asarray(known).astype(np.int64)
        count = classes if classes >= 0 else int(known.max(initial=-1)) + 1
        if known.size and (known.min() < 0 or known.max() >= count):
            raise Unmapped(f"one_hot of ids outside 0 … {count - 1}")
        fold_room((), f"one_hot {ctx.name!r} of constants", t.where, shape=(*known.shape, count))
        return (known[..., None] == np.arange(count)).astype(np.int64)
    if classes < 0:
        raise Unmapped("one_hot of ids the data computes, without num_classes (its size is the data's)")
    node = t.node(ids, ctx, "ids")
    column = t.b.op("reshape", node, name=f"{ctx.name}.column", module=ctx.module, attrs={"shape": (*node.shape, 1)})
    return t.b.op("compare", column, t.b.const(np.arange(classes, dtype=np.float64), ctx.module, "classes"),
                  name=ctx.name, module=ctx.module, attrs={"op": "eq"}, original_op="one_hot")


@aten("flip")
def _flip(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, dims = self_arg(a), tuple(int(d) for d in a["dims"])
    known = t.known(x)
    if known is not None:
        return np.flip(known, axis=dims)
    return t.b.op("flip", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axes": dims})


@aten("roll")
def _roll(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """torch.roll (Swin's shifted windows) as what it is: per rolled axis, the last `shift` entries moved to the
    front, one `concat` of two `slice`s; with no dims, of the flattened tensor."""
    x = self_arg(a)
    shifts = [int(v) for v in (a["shifts"] if isinstance(a["shifts"], list | tuple) else [a["shifts"]])]
    dims = [int(v) for v in (a.get("dims") or [])]
    known = t.known(x)
    if known is not None:
        return np.roll(known, shifts, dims or None)
    node = t.node(x, ctx)
    shape = node.shape
    if not dims:  # rolled as one flat vector, then given its shape back
        flat = t.b.op("reshape", node, name=f"{ctx.name}.flat", module=ctx.module, attrs={"shape": (-1,)})
        rolled = _rolled(t, ctx, flat, [sum(shifts)], [0], f"{ctx.name}.rolled")
        return t.b.op("reshape", rolled, name=ctx.name, module=ctx.module, attrs={"shape": shape})
    if len(shifts) != len(dims):
        raise Unmapped(f"roll with {len(shifts)} shifts for {len(dims)} dims")
    return _rolled(t, ctx, node, shifts, [d % len(shape) for d in dims], ctx.name)


def _rolled(t: Translator, ctx: Ctx, node: Node, shifts: list[int], dims: list[int], name: str) -> Node:
    moves = [(dim, shift % node.shape[dim]) for shift, dim in zip(shifts, dims, strict=True) if node.shape[dim]]
    moves = [(dim, shift) for dim, shift in moves if shift]
    if not moves:
        return node
    for i, (dim, shift) in enumerate(moves):
        size = node.shape[dim]
        last = i == len(moves) - 1
        parts = [t.b.op("slice", node, name=f"{name}.{dim}.{role}", module=ctx.module,
                        attrs={"axes": (dim,), "starts": (start,), "stops": (stop,), "steps": (1,)})
                 for role, start, stop in (("tail", size - shift, None), ("head", None, size - shift))]
        node = t.b.op("concat", *parts, name=name if last else f"{name}.{dim}", module=ctx.module,
                      attrs={"axis": dim})
    return node


@aten("repeat", "tile")
def _repeat(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    repeats = tuple(int(r) for r in a.get("repeats", a.get("dims", [])))
    known = t.known(x)
    if op_key(ctx.target) == "tile" and len(repeats) < len(t.shape(x)):  # torch.tile pads the repeats with ones
        repeats = (1,) * (len(t.shape(x)) - len(repeats)) + repeats
    if known is not None:
        tile_room(known, repeats, f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where)
        return np.tile(known, repeats)
    return t.b.op("tile", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"repeats": repeats})


@aten("copy")
def _copy(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """copy(self, src): src's values in self's shape (the functional form of `self.copy_(src)`)."""
    src, shape = a["src"], t.shape(self_arg(a))
    known = t.known(src)
    if known is not None:
        array_room(shape, known.dtype, "copy", t.where)
        return np.broadcast_to(known, shape).copy()
    node = t.node(src, ctx)
    if node.shape == tuple(shape):
        return node
    return t.b.op("expand", node, name=ctx.name, module=ctx.module, attrs={"shape": tuple(shape)})


def _scatter_into(t: Translator, ctx: Ctx, x: Any, src: Node, dim: int, start: int, stop: int) -> Node:
    """x with positions [start, stop) of axis `dim` replaced by src: the parts of x before and after them, joined
    with src along `dim` (one `concat` of `slice`s; all of x replaced is src itself).

    Nothing of x's size is made at load time: this was x · m + pad(src) with a constant mask m as large as x, and
    MViT's `attn[:, :, 1:, 1:] += rel_pos` (four scatters per block into attention scores of up to 2 × 6,273 ×
    1,569) held 325M mask elements, 2.6 GB in float64, for a model of 35M parameters. A concat also drops the
    values src replaces, where the mask multiplied them by 0 and an ∞ among them made NaN."""
    shape = tuple(t.shape(x))
    if start == 0 and stop == shape[dim]:
        return src

    def kept(role: str, first: int, last: int) -> Node:
        if isinstance(x, np.ndarray):  # a folded x (zeros_like of a shape): only its kept parts become constants
            return t.node(np.take(x, range(first, last), axis=dim), ctx, role)
        return t.b.op("slice", t.node(x, ctx), name=f"{ctx.name}.{role}", module=ctx.module,
                      attrs={"axes": (dim,), "starts": (first,), "stops": (last,), "steps": (1,)})

    parts = [kept("head", 0, start)] if start > 0 else []
    parts.append(src)
    if stop < shape[dim]:
        parts.append(kept("tail", stop, shape[dim]))
    return t.b.op("concat", *parts, name=ctx.name, module=ctx.module, attrs={"axis": dim},
                  original_op=op_key(ctx.target))


@aten("slice_scatter", "select_scatter")
def _slice_scatter(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, src = self_arg(a), a["src"]
    shape = t.shape(x)
    dim = int(a.get("dim", 0)) % len(shape)
    kx, ks = t.known(x), t.known(src)
    select = op_key(ctx.target) == "select_scatter"
    if select:
        start = int(a["index"]) % shape[dim]
        stop, step = start + 1, 1
    else:
        step = int(a.get("step", 1))
        first, last = _slice_bounds(shape[dim], a.get("start"), a.get("end"), step)
        start, stop, _ = slice(first, last).indices(shape[dim])
    if kx is not None and ks is not None:
        out = kx.copy()
        cut: list[Any] = [slice(None)] * len(shape)
        cut[dim] = start if select else slice(start, stop, step)
        out[tuple(cut)] = ks
        return out
    if step != 1:  # x[..., 1:12:3] = y (Qwen3.5's interleaved multimodal rotary angles): put at those positions
        positions = np.arange(start, stop, step)
        return t.b.op("index_put", t.node(x, ctx, "self"), t.node(src, ctx, "src"),
                      t.b.const(positions, ctx.module, "positions"), name=ctx.name, module=ctx.module,
                      original_op=op_key(ctx.target), attrs={"axes": (dim,), "accumulate": False})
    src_node = t.node(src, ctx)
    if op_key(ctx.target) == "select_scatter":  # the picked axis comes back with length 1
        src_node = t.b.op("reshape", src_node, name=f"{ctx.name}.src", module=ctx.module,
                          attrs={"shape": (*shape[:dim], 1, *shape[dim + 1:])})
    return _scatter_into(t, ctx, x, src_node, dim, start, stop)


@aten("diagonal")
def _diagonal(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    shape = t.shape(x)
    offset, d1, d2 = int(a.get("offset", 0)), int(a.get("dim1", 0)) % len(shape), int(a.get("dim2", 1)) % len(shape)
    known = t.known(x)
    if known is not None:
        return np.diagonal(known, offset, d1, d2)
    if abs(d1 - d2) != 1:
        raise Unmapped("the diagonal of two axes that are not next to each other")
    first, second = min(d1, d2), max(d1, d2)
    # element k of the diagonal is x[..., i_k (along dim1), ..., j_k (along dim2), ...]
    count = max(0, min(shape[d1] - max(-offset, 0), shape[d2] - max(offset, 0)))
    i = np.arange(count) + max(-offset, 0)
    j = np.arange(count) + max(offset, 0)
    index1, index2 = (i, j) if d1 < d2 else (j, i)
    picked = t.b.op("index_nd", t.node(x, ctx), t.b.const(index1, ctx.module, "rows"),
                    t.b.const(index2, ctx.module, "columns"), name=f"{ctx.name}.picked", module=ctx.module,
                    attrs={"axes": (first, second)})
    ndim = len(shape) - 1  # the diagonal axis sits at `first`; torch puts it last
    perm = (*(k for k in range(ndim) if k != first), first)
    if perm == tuple(range(ndim)):
        return picked
    return t.b.op("transpose", picked, name=ctx.name, module=ctx.module, attrs={"axes": perm})


@aten("repeat_interleave")
def _repeat_interleave(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Each entry repeated `repeats` times in place along `dim` (GPT-J's rotary sin and cos, 0 0 1 1 …): an
    `index` with the positions np.repeat gives. Counts per entry make a size that depends on the data (the file
    records no size then); they fold only where the tensor is a constant too, and where the program fixes the
    result's size (a path traced along these inputs, `decisions.py`: Qwen2-VL's frames) the positions are computed
    from the counts."""
    x, repeats, dim = (self_arg(a) if "self" in a or "input" in a else None), a["repeats"], a.get("dim")
    counts = np.asarray(repeats) if isinstance(repeats, int) else t.known(repeats)
    if counts is None:
        return _repeat_by_computed(t, x, repeats, dim, ctx)
    if (counts < 0).any():
        raise Unmapped("repeat_interleave by a negative count")
    if x is None:  # the counts alone: the entries' positions, each repeated
        return np.repeat(np.arange(counts.size), counts.reshape(-1))
    counts = counts.reshape(-1).astype(np.int64)
    known = t.known(x)
    if known is not None:
        fold_room((), f"repeat_interleave {ctx.name!r} of a constant", t.where,
                  shape=(known.size * int(counts.max(initial=1)),))  # at most each entry that often
        return np.repeat(known, counts, axis=None if dim is None else int(dim))
    node = t.node(x, ctx)
    if dim is None:  # torch flattens first
        node = t.b.op("reshape", node, name=f"{ctx.name}.flat", module=ctx.module, attrs={"shape": (-1,)})
    axis = 0 if dim is None else int(dim) % len(node.shape)
    positions = np.repeat(np.arange(node.shape[axis]), int(counts[0]) if counts.size == 1 else counts)
    return t.b.op("index", node, t.b.const(positions, ctx.module, "positions"), name=ctx.name, module=ctx.module,
                  attrs={"axis": axis}, original_op="repeat_interleave")


def _repeat_by_computed(t: Translator, x: Any, repeats: Any, dim: Any, ctx: Ctx) -> Any:
    """repeat_interleave by counts the data computes, where the program fixes the result's size: the entry each
    output position repeats (`_ranks_below`), gathered from x (its gradient scatter-adds back)."""
    declared = ctx.shapes[0] if ctx.shapes else None
    axis = 0 if dim is None or x is None else int(dim) % len(t.shape(x))
    if declared is None or len(declared) <= axis:
        raise Unmapped("repeat_interleave by counts computed at run time (a size that depends on the data)")
    counts = t.node(repeats, ctx, "repeats")
    if len(counts.shape) != 1:
        counts = t.b.op("reshape", counts, name=f"{ctx.name}.repeats", module=ctx.module, attrs={"shape": (-1,)})
    node = None if x is None else t.node(x, ctx)
    if node is not None and dim is None:  # torch flattens first
        node = t.b.op("reshape", node, name=f"{ctx.name}.flat", module=ctx.module, attrs={"shape": (-1,)})
    if node is not None and node.shape[axis] != counts.shape[0]:
        if counts.shape[0] != 1:
            raise Unmapped(f"repeat_interleave of {node.shape[axis]} entries by {counts.shape[0]} counts")
        counts = t.b.op("expand", counts, name=f"{ctx.name}.repeats_each", module=ctx.module,
                        attrs={"shape": (node.shape[axis],)})  # one count for every entry
    positions = _ranks_below(t, counts, int(declared[axis]), ctx, "repeats")
    if node is None:  # the counts alone: the entries' positions, each repeated
        positions.meta["original_op"] = "repeat_interleave"
        return positions
    return t.b.op("index", node, positions, name=ctx.name, module=ctx.module, attrs={"axis": axis},
                  original_op="repeat_interleave")

"""Tensors made from nothing but sizes and constants (zeros, arange, masks, comparisons): folded at load time."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import (
    Ctx,
    Guard,
    Translator,
    Unmapped,
    aten,
    dims_arg,
    dtype_arg,
    op_key,
    self_arg,
)
from .._budget import charge_array, range_length
from .._build import finite_mask


@aten("zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like", "empty_like", "new_zeros",
      "new_ones", "new_full", "new_empty", "scalar_tensor", "arange", "fill", "empty_strided")
def _create(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    if op == "scalar_tensor":
        return np.asarray(a["s"], dtype=dtype_arg(a))
    if op == "arange":
        start, end, step = a.get("start", 0), a.get("end"), a.get("step", 1)
        count = range_length(start, end, step, "arange", t.where)
        charge_array((count,), dtype_arg(a), "arange", t.where)
        return np.arange(start, end, step, dtype=dtype_arg(a))
    shape = ctx.shapes[0]
    if shape is None:
        raise Unmapped("no declared output shape")
    fill = {"zeros": 0.0, "ones": 1.0, "empty": 0.0}.get(op.split("_")[-1] if "_" in op else op)
    if fill is None:
        fill = a.get("fill_value", a.get("value", 0.0))
    like = self_arg(a) if ("self" in a or "input" in a) else None
    charge_array(shape, dtype_arg(a, like), op, t.where)
    return np.full(shape, fill, dtype=dtype_arg(a, like))


@aten("triu", "tril")
def _tri(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op, diagonal = op_key(ctx.target), int(a.get("diagonal", 0))
    x = t.known(self_arg(a))
    if x is None:
        return t.b.op(op, t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module, attrs={"diagonal": diagonal})
    return (np.triu if op == "triu" else np.tril)(x, diagonal)


_LOGIC = {"logical_not": np.logical_not, "eq": np.equal, "ne": np.not_equal, "lt": np.less, "gt": np.greater,
          "le": np.less_equal, "ge": np.greater_equal, "bitwise_not": np.invert, "logical_and": np.logical_and,
          "logical_or": np.logical_or, "logical_xor": np.logical_xor, "bitwise_and": np.bitwise_and,
          "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor, "__and__": np.bitwise_and,
          "__or__": np.bitwise_or, "__xor__": np.bitwise_xor,
          "floor_divide": np.floor_divide}


@aten(*_LOGIC, "any", "all")
def _logic(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x, y = self_arg(a), a.get("other")
    if isinstance(x, Guard) or (op == "eq" and isinstance(y, float) and y == -math.inf and not t.const(x)):
        return Guard()
    kx, ky = t.known(x), t.known(y)
    if op in ("any", "all"):
        if kx is None:
            raise Unmapped(f"{op} of computed values")
        fn = np.any if op == "any" else np.all
        return fn(kx, axis=dims_arg(a.get("dim")), keepdims=bool(a.get("keepdim", False)))
    if kx is None or (y is not None and ky is None):
        raise Unmapped("a comparison of computed values (no gradient flows through it)")
    logic = _LOGIC[op_key(ctx.target)]
    if ky is not None and kx.dtype == bool and ky.dtype != bool and op in ("bitwise_and", "bitwise_or", "bitwise_xor",
                                                                          "__and__", "__or__", "__xor__"):
        ky = ky.astype(bool)
    return logic(kx) if ky is None else logic(kx, ky)


@aten("diff")
def _diff(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """torch.diff of position ids and the like: only ever of constants in the models people export."""
    x = t.known(self_arg(a))
    if x is None:
        raise Unmapped("diff of a computed tensor")
    extra: dict[str, np.ndarray] = {}
    for key in ("prepend", "append"):
        if a.get(key) is not None:
            value = t.known(a[key])
            if value is None:
                raise Unmapped(f"diff with a computed {key}")
            extra[key] = value
    return np.diff(x, n=int(a.get("n", 1)), axis=int(a.get("dim", -1)), **extra)


def blend(t: Translator, ctx: Ctx, where_true: Any, where_false: Any, keep: np.ndarray) -> Node:
    """where(keep, a, b) with a constant condition as steppable arithmetic: a·m + b·(1 − m)."""
    m = keep.astype(np.float64)
    # −∞ fills are attention masks: the finite fill gives softmax the same zeros and keeps values finite
    where_true, where_false = (finite_mask(np.asarray(v, dtype=np.float64)) if t.const(v) else v
                               for v in (where_true, where_false))
    if t.const(where_true) and np.all(np.isfinite(np.asarray(where_true, dtype=np.float64))):
        node = t.node(where_false, ctx)
        fill = t.b.const(np.asarray(where_true, dtype=np.float64) * m, ctx.module, "fill")
        kept = t.b.op("mul", node, t.b.const(1.0 - m, ctx.module, "mask"), name=f"{ctx.name}.keep", module=ctx.module)
        return t.b.op("add", kept, fill, name=ctx.name, module=ctx.module)
    if t.const(where_false) and np.all(np.isfinite(np.asarray(where_false, dtype=np.float64))):
        return blend(t, ctx, where_false, where_true, ~keep)
    if t.const(where_true) or t.const(where_false):
        raise Unmapped("a fill with an infinite value (add a finite mask instead)")
    a_node, b_node = t.node(where_true, ctx), t.node(where_false, ctx)
    pa = t.b.op("mul", a_node, t.b.const(m, ctx.module, "mask"), name=f"{ctx.name}.a", module=ctx.module)
    pb = t.b.op("mul", b_node, t.b.const(1.0 - m, ctx.module, "mask"), name=f"{ctx.name}.b", module=ctx.module)
    return t.b.op("add", pa, pb, name=ctx.name, module=ctx.module)


@aten("cumsum")
def _cumsum(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, dim = self_arg(a), int(a["dim"])
    known = t.known(x)
    if known is not None:  # position ids from a padding mask, say
        integer = known.dtype.kind in "biu" and a.get("dtype") is None  # torch sums bools and ints as int64
        return np.cumsum(known, axis=dim, dtype=np.int64 if integer else dtype_arg(a, known))
    return t.b.op("cumsum", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axis": dim})

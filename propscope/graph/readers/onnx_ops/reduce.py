"""ONNX reductions (every Reduce*), ArgMax/ArgMin, CumSum, CumProd and TopK, onto the catalog's reductions.

ReduceL1 and ReduceL2 are the catalog's vector norm (as steps, √(Σ x²) would give a zero vector a NaN
gradient where torch's norm, which exporters turn into ReduceL2, gives 0: F.normalize of a padded token).
ReduceSumSquare and ReduceLogSum are two steps (x² then the sum, the sum then ln), so each local derivative
stays one a learner knows. A reduction over an empty set of
values does not depend on any value: it folds to the identity of the operation (0 for a sum, −∞ for a
maximum, ...), as ONNX defines it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._aten import Unmapped
from ..onnx_reader import Ctx, Reader, attr_or_input, onnx_op
from .elementwise import op

_FOLD: dict[str, Any] = {
    "ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceProd": np.prod, "ReduceMax": np.max, "ReduceMin": np.min,
    "ReduceL1": lambda x, **k: np.sum(np.abs(x), **k), "ReduceL2": lambda x, **k: np.sqrt(np.sum(x * x, **k)),
    "ReduceSumSquare": lambda x, **k: np.sum(x * x, **k), "ReduceLogSum": lambda x, **k: np.log(np.sum(x, **k)),
    "ReduceLogSumExp": lambda x, **k: np.log(np.sum(np.exp(x), **k)),
}
# the value of each reduction over no values at all
_EMPTY = {"ReduceMean": np.nan, "ReduceSum": 0.0, "ReduceProd": 1.0, "ReduceMax": -np.inf, "ReduceMin": np.inf,
          "ReduceL1": 0.0, "ReduceL2": 0.0, "ReduceSumSquare": 0.0, "ReduceLogSum": -np.inf,
          "ReduceLogSumExp": -np.inf}
_CATALOG = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceProd": "prod", "ReduceMax": "amax",
            "ReduceMin": "amin", "ReduceLogSumExp": "logsumexp"}


def _axes(r: Reader, ins: list[Any], ctx: Ctx) -> tuple[int, ...] | str | None:
    """The reduced axes; None for all of them; "noop" when ONNX says an empty list reduces nothing."""
    takes_input = (ctx.op == "ReduceSum" and ctx.opset >= 13) or ctx.opset >= 18
    axes = attr_or_input(r, ins, ctx, 1, "axes") if takes_input else ctx.attrs.get("axes")
    if not axes:
        return "noop" if ctx.attrs.get("noop_with_empty_axes", 0) else None
    rank = len(r.shape(ins[0]))
    return tuple(sorted({int(a) % max(rank, 1) for a in axes}))


@onnx_op(*_FOLD)
def _reduce(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    axes = _axes(r, ins, ctx)
    keep = bool(ctx.attrs.get("keepdims", 1))
    x = ins[0]
    if axes == "noop":
        return x
    axis: Any = None if axes is None else tuple(axes)
    shape = r.shape(x)
    c = r.folded(x)
    if c is not None or math.prod(shape) == 0:
        if c is None:  # no values: the identity of the reduction, in the shape ONNX gives the result
            c = np.zeros(shape, dtype=np.float32)
            out = np.sum(c, axis=axis, keepdims=keep)
            return np.full(out.shape, _EMPTY[ctx.op], dtype=np.float32)
        with np.errstate(all="ignore"):
            if c.size == 0:
                out = np.sum(c, axis=axis, keepdims=keep)
                return np.full(out.shape, _EMPTY[ctx.op], dtype=c.dtype)
            return np.asarray(_FOLD[ctx.op](c, axis=axis, keepdims=keep)).astype(c.dtype)
    node = r.node(x, ctx)
    attrs: dict[str, Any] = {"axis": axis, "keepdims": keep}
    if ctx.op in _CATALOG:
        return op(r, ctx, _CATALOG[ctx.op], node, **attrs)
    if ctx.op in ("ReduceL1", "ReduceL2"):
        return op(r, ctx, "vector_norm", node, ord=1.0 if ctx.op == "ReduceL1" else 2.0, **attrs)
    if ctx.op == "ReduceSumSquare":
        return op(r, ctx, "sum", op(r, ctx, "pow", node, suffix="square", exponent=2.0), **attrs)
    if ctx.op == "ReduceLogSum":
        return op(r, ctx, "log", op(r, ctx, "sum", node, suffix="sum", **attrs))
    raise Unmapped(f"{ctx.op} of computed values")


@onnx_op("ArgMax", "ArgMin")
def _arg(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    axis = int(ctx.attrs.get("axis", 0))
    keep = bool(ctx.attrs.get("keepdims", 1))
    last = bool(ctx.attrs.get("select_last_index", 0))
    c = r.folded(ins[0])
    if c is not None:
        pick = np.argmax if ctx.op == "ArgMax" else np.argmin
        if last:
            flipped = np.flip(c, axis=axis)
            return (c.shape[axis] - 1 - pick(flipped, axis=axis, keepdims=keep)).astype(np.int64)
        return pick(c, axis=axis, keepdims=keep).astype(np.int64)
    return op(r, ctx, ctx.op.lower(), r.node(ins[0], ctx), axis=axis, keepdims=keep, select_last_index=last)


@onnx_op("CumSum", "CumProd")
def _cumsum(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    a = r.folded(ins[1])
    if a is None:
        raise Unmapped(f"a {ctx.op} axis computed at run time")
    axis = int(a.reshape(()))
    exclusive, reverse = bool(ctx.attrs.get("exclusive", 0)), bool(ctx.attrs.get("reverse", 0))
    product = ctx.op == "CumProd"
    c = r.folded(ins[0])
    if c is not None:
        x = np.flip(c, axis) if reverse else c
        out = (np.cumprod if product else np.cumsum)(x, axis=axis, dtype=c.dtype)
        if exclusive:
            first = np.ones_like if product else np.zeros_like
            out = np.concatenate([first(np.take(out, [0], axis=axis)),
                                  np.take(out, range(out.shape[axis] - 1), axis=axis)], axis=axis)
        return np.flip(out, axis) if reverse else out
    return op(r, ctx, "cumprod" if product else "cumsum", r.node(ins[0], ctx), axis=axis, reverse=reverse,
              exclusive=exclusive)


@onnx_op("TopK")
def _topk(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """The k largest (or smallest) along an axis, as (values, indices): `argsort` with k, then the values picked
    with `gather`, through which the gradient reaches them. Ties keep their order (ONNX: the lower index first)."""
    k = r.folded(ins[1]) if len(ins) > 1 else np.asarray(ctx.attrs.get("k", -1))
    if k is None or k.size != 1:
        raise Unmapped("a TopK k computed at run time")
    axis, largest = int(ctx.attrs.get("axis", -1)), bool(ctx.attrs.get("largest", 1))
    c = r.folded(ins[0])
    if c is not None:
        positions = np.take(np.argsort(-c if largest else c, axis=axis, kind="stable"),
                            np.arange(int(k.reshape(()))), axis=axis).astype(np.int64)
        return [np.take_along_axis(c, positions, axis=axis), positions]
    x = r.node(ins[0], ctx)
    order = op(r, ctx, "argsort", x, suffix="indices", axis=axis, descending=largest, k=int(k.reshape(())))
    return [op(r, ctx, "gather", x, order, axis=axis), order]

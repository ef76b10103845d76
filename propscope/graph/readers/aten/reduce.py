"""ATen reductions beyond sum and mean: amax/amin, prod, var/std, logsumexp, argmax/argmin, cumsum, cumprod,
cummax/cummin, sorts and top-k."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ops.reduce import stable_order, torch_tie_order
from .._aten import Ctx, Missing, Translator, aten, dims_arg, op_key, self_arg


def _reduction(t: Translator, a: dict[str, Any], ctx: Ctx, op: str, **attrs: Any) -> Any:
    return t.b.op(op, t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module, original_op=op_key(ctx.target),
                  attrs={"axis": dims_arg(a.get("dim")), "keepdims": bool(a.get("keepdim", False)), **attrs})


@aten("amax", "amin", "logsumexp")
def _extreme(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    known = t.known(self_arg(a))
    if known is not None and op != "logsumexp":
        return (np.max if op == "amax" else np.min)(known, axis=dims_arg(a.get("dim")),
                                                    keepdims=bool(a.get("keepdim", False)))
    return _reduction(t, a, ctx, op)


@aten("prod")
def _prod(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    known = t.known(self_arg(a))
    if known is not None:
        return np.prod(known, axis=dims_arg(a.get("dim")), keepdims=bool(a.get("keepdim", False)))
    return _reduction(t, a, ctx, "prod")


@aten("var", "std", "var_mean", "std_mean")
def _spread(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    correction = a.get("correction")
    if correction is None:  # var(x, unbiased) of older overloads
        correction = 1.0 if a.get("unbiased", True) else 0.0
    node = _reduction(t, a, ctx, op.split("_")[0], correction=float(correction))
    if op.endswith("_mean"):
        return [node, _reduction(t, a, ctx, "mean")]
    return node


@aten("cumprod")
def _cumprod(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, dim = self_arg(a), int(a["dim"])
    known = t.known(x)
    if known is not None:
        return np.cumprod(known, axis=dim, dtype=np.int64 if known.dtype.kind in "biu" else known.dtype)
    return t.b.op("cumprod", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axis": dim})


@aten("cummax", "cummin")
def _running_extreme(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """torch.cummax/cummin: the running values (folded for constants, Grounding DINO's phrase bounds from token ids
    otherwise a step) and their positions, the last that ties (as torch's); the positions of computed values are
    not read."""
    op, x, dim = op_key(ctx.target), self_arg(a), int(a["dim"])
    known = t.known(x)
    if known is None:
        values = t.b.op(op, t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axis": dim})
        return [values, Missing(f"the positions of {op} of computed values")]
    out = (np.maximum if op == "cummax" else np.minimum).accumulate(known, axis=dim)
    shape = [1] * known.ndim
    shape[dim] = known.shape[dim]
    holds = (known == out) | (np.isnan(known) if known.dtype.kind == "f" else False)
    steps = np.where(holds, np.arange(known.shape[dim]).reshape(shape), 0)
    return [out, np.maximum.accumulate(steps, axis=dim).astype(np.int64)]


@aten("argmax", "argmin")
def _arg(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    known = t.known(self_arg(a))
    dim = a.get("dim")
    axis = None if dim is None else int(dim)
    keep = bool(a.get("keepdim", False))
    if known is not None:
        return (np.argmax if op == "argmax" else np.argmin)(known, axis=axis, keepdims=keep)
    return t.b.op(op, t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module,
                  attrs={"axis": axis, "keepdims": keep})


@aten("histc")
def _histc(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """A histogram of every entry (a mixture of experts counts the tokens each expert got: transformers' MoE layers,
    DBRX, Jamba). A count has no gradient, so the node is data the graph carries, as an argsort's positions."""
    low, high = a.get("min", 0), a.get("max", 0)
    return t.b.op("histc", t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module,
                  attrs={"bins": int(a.get("bins", 100)), "min": float(low), "max": float(high)})


@aten("sort", "topk", "argsort")
def _sort(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Sorts and top-k: folded on constants; of computed values, the positions are an `argsort` and the values
    `gather(x, positions)`, so the gradient reaches the picked entries (a mixture of experts' router)."""
    op = op_key(ctx.target)
    dim = int(a.get("dim", -1))
    descending = bool(a.get("largest", True)) if op == "topk" else bool(a.get("descending", False))
    k = int(a["k"]) if op == "topk" else None
    known = t.known(self_arg(a))
    if known is not None:  # equal values go where torch's CPU kernel puts them (the NumPy backend's argsort)
        known = np.asarray(known)
        positions = stable_order(known, dim, descending).astype(np.int64)
        ties = "topk" if op == "topk" else "stable" if a.get("stable") else "sort"
        positions = torch_tie_order(known, positions, dim, descending, k, ties)
        if k is not None:
            positions = np.take(positions, np.arange(k), axis=dim)
        return positions if op == "argsort" else [np.take_along_axis(known, positions, axis=dim), positions]
    x = t.node(self_arg(a), ctx)
    # ties where torch's CPU kernels leave them: topk's selection, sort's introsort unless stable is asked for
    ties = "topk" if op == "topk" else "stable" if a.get("stable") else "sort"
    order = t.b.op("argsort", x, name=ctx.name if op == "argsort" else f"{ctx.name}.indices", module=ctx.module,
                   attrs={"axis": dim, "descending": descending, "k": k, "ties": ties}, original_op=op)
    if op == "argsort":
        return order
    return [t.b.op("gather", x, order, name=ctx.name, module=ctx.module, attrs={"axis": dim}, original_op=op), order]

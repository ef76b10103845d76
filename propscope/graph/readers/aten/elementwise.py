"""ATen elementwise math beyond the four operations: one catalog op each; constants fold with NumPy."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import Ctx, Translator, Unmapped, aten, op_key, self_arg

_NUMPY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs, "sign": np.sign, "sin": np.sin, "cos": np.cos, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x),
    "reciprocal": np.reciprocal, "log1p": np.log1p, "expm1": np.expm1, "floor": np.floor, "ceil": np.ceil,
    "round": np.round, "trunc": np.trunc, "tan": np.tan, "log2": np.log2, "log10": np.log10, "sinh": np.sinh,
    "cosh": np.cosh, "isnan": np.isnan, "isinf": np.isinf, "asin": np.arcsin, "acos": np.arccos,
    "atan": np.arctan, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "square": np.square,
}
_CATALOG = ("abs", "sign", "sin", "cos", "sqrt", "rsqrt", "reciprocal", "log1p", "expm1", "floor", "ceil", "round")


def _op(t: Translator, ctx: Ctx, op: str, *inputs: Node, name: str = "", **attrs: Any) -> Node:
    return t.b.op(op, *inputs, name=name or ctx.name, module=ctx.module, attrs=attrs, original_op=op_key(ctx.target))


@aten(*_NUMPY)
def _unary(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x = self_arg(a)
    known = t.known(x)
    if known is not None:
        return _NUMPY[op](known if known.dtype.kind in "biu" and op in ("isnan", "isinf", "abs", "sign")
                          else np.asarray(known, dtype=np.float64))
    node = t.node(x, ctx)
    if op in _CATALOG:
        return _op(t, ctx, op, node)
    if op == "square":
        return _op(t, ctx, "pow", node, exponent=2.0)
    if op in ("log2", "log10"):  # ln x / ln b: one multiplication after the natural log
        ln = _op(t, ctx, "log", node, name=f"{ctx.name}.ln")
        scale = t.b.const(np.asarray(1.0 / math.log(2.0 if op == "log2" else 10.0)), ctx.module, "1/ln b")
        return _op(t, ctx, "mul", ln, scale)
    if op == "tan":
        return _op(t, ctx, "div", _op(t, ctx, "sin", node, name=f"{ctx.name}.sin"),
                   _op(t, ctx, "cos", node, name=f"{ctx.name}.cos"))
    if op in ("sinh", "cosh"):  # (e^x ∓ e^−x) / 2
        ep = _op(t, ctx, "exp", node, name=f"{ctx.name}.exp")
        em = _op(t, ctx, "exp", _op(t, ctx, "neg", node, name=f"{ctx.name}.neg"), name=f"{ctx.name}.exp_neg")
        both = _op(t, ctx, "sub" if op == "sinh" else "add", ep, em, name=f"{ctx.name}.sum")
        return _op(t, ctx, "mul", both, t.b.const(np.asarray(0.5), ctx.module, "half"))
    raise Unmapped(f"{op} of a computed tensor")


@aten("maximum", "minimum", "fmax", "fmin")
def _extremum(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = {"fmax": "maximum", "fmin": "minimum"}.get(op_key(ctx.target), op_key(ctx.target))
    x, y = self_arg(a), a["other"]
    kx, ky = t.known(x), t.known(y)
    if kx is not None and ky is not None:
        return (np.maximum if op == "maximum" else np.minimum)(kx, ky)
    return _op(t, ctx, op, t.node(x, ctx, "self"), t.node(y, ctx, "other"))


@aten("max", "min")
def _max(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """max(x) (all), max(x, dim) -> (values, indices), max(x, other) (elementwise)."""
    op = op_key(ctx.target)
    if "other" in a:
        return _extremum(t, {**a, "other": a["other"]}, Ctx(ctx.name, ctx.module, ctx.shapes,
                                                            ctx.target.replace(f".{op}.", f".{op}imum.")))
    x = self_arg(a)
    reduce = "amax" if op == "max" else "amin"
    dim = a.get("dim")
    axis = None if dim is None else int(dim)
    keep = bool(a.get("keepdim", False))
    known = t.known(x)
    if known is not None:
        values = (np.max if op == "max" else np.min)(known, axis=axis, keepdims=keep)
        if dim is None:
            return values
        return [values, (np.argmax if op == "max" else np.argmin)(known, axis=axis, keepdims=keep)]
    node = t.node(x, ctx)
    values = _op(t, ctx, reduce, node, axis=axis, keepdims=keep)
    if dim is None:
        return values
    index = _op(t, ctx, "argmax" if op == "max" else "argmin", node, name=f"{ctx.name}.indices", axis=axis,
                keepdims=keep)
    return [values, index]


@aten("where")
def _where(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    from .constants import Guard, blend

    cond, x, y = a["condition"], self_arg(a), a["other"]
    if isinstance(cond, Guard):
        return y
    known = t.known(cond)
    if known is not None:
        kx, ky = t.known(x), t.known(y)
        if kx is not None and ky is not None:
            return np.where(known.astype(bool), kx, ky)
        return blend(t, ctx, x, y, known.astype(bool))
    return _op(t, ctx, "where", t.node(cond, ctx, "condition"), t.node(x, ctx, "self"), t.node(y, ctx, "other"))


@aten("masked_fill")
def _masked_fill(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    from .constants import blend

    x, value, mask = self_arg(a), a["value"], a["mask"]
    known = t.known(mask)
    if known is not None:
        kx, kv = t.known(x), t.known(value)
        if kx is not None and kv is not None:
            return np.where(known.astype(bool), kv, kx)
        return blend(t, ctx, value, x, known.astype(bool))
    fill = value if isinstance(value, Node) else t.b.const(np.asarray(value, dtype=np.float64), ctx.module, "fill")
    return _op(t, ctx, "where", t.node(mask, ctx, "mask"), t.node(fill, ctx), t.node(x, ctx, "self"))


@aten("remainder", "fmod")
def _remainder(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x, y = self_arg(a), a["other"]
    kx, ky = t.known(x), t.known(y)
    if kx is not None and ky is not None:
        return (np.remainder if op == "remainder" else np.fmod)(kx, ky)
    return _op(t, ctx, op, t.node(x, ctx, "self"), t.node(y, ctx, "other"))

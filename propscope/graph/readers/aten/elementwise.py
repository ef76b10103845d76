"""ATen elementwise math beyond the four operations: one catalog op each; constants fold with NumPy."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import Ctx, Guard, Translator, Unmapped, aten, dims_arg, op_key, self_arg
from .._budget import fold_room
from .._build import finite_mask

_NUMPY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs, "sign": np.sign, "sin": np.sin, "cos": np.cos, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x),
    "reciprocal": np.reciprocal, "log1p": np.log1p, "expm1": np.expm1, "floor": np.floor, "ceil": np.ceil,
    "round": np.round, "trunc": np.trunc, "tan": np.tan, "log2": np.log2, "log10": np.log10, "sinh": np.sinh,
    "cosh": np.cosh, "asin": np.arcsin, "acos": np.arccos,
    "atan": np.arctan, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "square": np.square,
}
_CATALOG = ("abs", "sign", "sin", "cos", "sqrt", "rsqrt", "reciprocal", "log1p", "expm1", "floor", "ceil", "round",
            "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh")


def _op(t: Translator, ctx: Ctx, catalog_op: str, *inputs: Node, name: str = "", **attrs: Any) -> Node:
    return t.b.op(catalog_op, *inputs, name=name or ctx.name, module=ctx.module, attrs=attrs,
                  original_op=op_key(ctx.target))


@aten(*_NUMPY)
def _unary(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x = self_arg(a)
    known = t.known(x)
    if known is not None:
        return _NUMPY[op](known if known.dtype.kind in "biu" and op in ("abs", "sign")
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
    raise Unmapped(f"{op} of a computed tensor")


@aten("maximum", "minimum", "fmax", "fmin")
def _extremum(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = {"fmax": "maximum", "fmin": "minimum"}.get(op_key(ctx.target), op_key(ctx.target))
    x, y = self_arg(a), a["other"]
    kx, ky = t.known(x), t.known(y)
    if kx is not None and ky is not None:
        fold_room((kx, ky), f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where)
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
    if dim is None:  # max of everything: torch shares the gradient evenly among tied maxima, as amax does
        return _op(t, ctx, reduce, node, axis=axis, keepdims=keep)
    return _max_along(t, ctx, node, op, int(dim), keep)


def _max_along(t: Translator, ctx: Ctx, node: Node, op: str, dim: int, keep: bool) -> list[Node]:
    """max(x, dim) -> (values, indices): the values are x gathered at the index torch returns (the first of tied
    maxima, as its CPU and CUDA kernels do), so the whole gradient goes to that one element, as torch's
    value_selecting_reduction_backward sends it, not shared among ties as amax shares it."""
    find = "argmax" if op == "max" else "argmin"
    at = _op(t, ctx, find, node, name=f"{ctx.name}.at", axis=dim, keepdims=True)
    values = _op(t, ctx, "gather", node, at, name=ctx.name if keep else f"{ctx.name}.kept", axis=dim)
    if keep:
        return [values, at]
    axis = dim % max(len(node.shape), 1)
    shape = tuple(n for d, n in enumerate(node.shape) if d != axis)
    if axis and math.prod(shape[1:]) > 0:  # the batch axis stays free, so a batch of another size still fits
        shape = (-1, *shape[1:])
    return [_op(t, ctx, "reshape", values, shape=shape),
            _op(t, ctx, find, node, name=f"{ctx.name}.indices", axis=dim, keepdims=False)]


@aten("where")
def _where(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    from .constants import blend

    cond = a["condition"]
    if "other" not in a:  # torch.where(condition): the indices where it holds, one tensor per axis (nonzero)
        known = t.known(cond)
        if known is None:
            raise Unmapped("where(condition) of values computed from the input (the positions it holds at, "
                           "as many as the data decides)")
        return [np.asarray(i, dtype=np.int64) for i in np.nonzero(known)]
    x, y = self_arg(a), a["other"]
    if isinstance(cond, Guard):
        return y
    known = t.known(cond)
    kx, ky = t.known(x), t.known(y)
    if known is not None:
        if kx is not None and ky is not None:
            fold_room((known, kx, ky), f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where)
            return np.where(known.astype(bool), kx, ky)
        return blend(t, ctx, x, y, known.astype(bool))
    picks = [t.node(v, ctx, role) if k is None else t.b.const(finite_mask(k.astype(np.float64)), ctx.module, role)
             for v, k, role in ((x, kx, "self"), (y, ky, "other"))]
    return _op(t, ctx, "where", t.node(cond, ctx, "condition"), *picks)


@aten("masked_fill")
def _masked_fill(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    from .constants import blend

    x, value, mask = self_arg(a), a["value"], a["mask"]
    known = t.known(mask)
    if known is not None:
        kx, kv = t.known(x), t.known(value)
        if kx is not None and kv is not None:
            fold_room((known, kv, kx), f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where)
            return np.where(known.astype(bool), kv, kx)
        return blend(t, ctx, value, x, known.astype(bool))
    kv = t.known(value)
    # a −∞ fill is an attention mask: the finite fill gives softmax the same zeros and keeps every value finite
    fill = t.node(value, ctx) if kv is None else t.b.const(finite_mask(kv.astype(np.float64)), ctx.module, "fill")
    return _op(t, ctx, "where", t.node(mask, ctx, "mask"), fill, t.node(x, ctx, "self"))


@aten("remainder", "fmod", "atan2")
def _remainder(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x, y = self_arg(a), a["other"]
    kx, ky = t.known(x), t.known(y)
    if kx is not None and ky is not None:
        fold_room((kx, ky), f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where)
        return {"remainder": np.remainder, "fmod": np.fmod, "atan2": np.arctan2}[op](kx, ky)
    return _op(t, ctx, op, t.node(x, ctx, "self"), t.node(y, ctx, "other"))


_LOGIC = {"logical_not": np.logical_not, "eq": np.equal, "ne": np.not_equal, "lt": np.less, "gt": np.greater,
          "le": np.less_equal, "ge": np.greater_equal, "bitwise_not": np.invert, "logical_and": np.logical_and,
          "logical_or": np.logical_or, "logical_xor": np.logical_xor, "bitwise_and": np.bitwise_and,
          "bitwise_or": np.bitwise_or, "bitwise_xor": np.bitwise_xor, "__and__": np.bitwise_and,
          "__or__": np.bitwise_or, "__xor__": np.bitwise_xor,
          # mask |= other (SmolVLM keeps its first image so): the program writes the result back with copy_
          "__ior__": np.bitwise_or, "__iand__": np.bitwise_and, "__ixor__": np.bitwise_xor}


@aten(*_LOGIC, "any", "all", "_is_all_true", "_is_any_true")
def _logic(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    # torch._check of a tensor condition (transformers checks an image-token count against its features so)
    op = {"_is_all_true": "all", "_is_any_true": "any"}.get(op_key(ctx.target), op_key(ctx.target))
    x, y = self_arg(a), a.get("other")
    if isinstance(x, Guard) or (op == "eq" and isinstance(y, float) and y == -math.inf and not t.const(x)):
        return Guard()
    kx, ky = t.known(x), t.known(y)
    if op in ("any", "all"):
        if kx is None:  # a mask: any is "some entry set", all is "no entry clear", counted
            axis, keep = dims_arg(a.get("dim")), bool(a.get("keepdim", False))
            zero = t.b.const(np.array(0.0), ctx.module, "zero")
            role = "set" if op == "any" else "clear"
            picked = t.b.op("compare", t.node(x, ctx, "self"), zero, name=f"{ctx.name}.{role}", module=ctx.module,
                            attrs={"op": "ne" if op == "any" else "eq"})
            count = t.b.op("sum", picked, name=f"{ctx.name}.count", module=ctx.module,
                           attrs={"axis": axis, "keepdims": keep})
            return t.b.op("compare", count, zero, name=ctx.name, module=ctx.module,
                          attrs={"op": "gt" if op == "any" else "eq"}, original_op=op)
        fn = np.any if op == "any" else np.all
        return fn(kx, axis=dims_arg(a.get("dim")), keepdims=bool(a.get("keepdim", False)))
    if kx is None or (y is not None and ky is None):
        return _mask_op(t, a, ctx, op, x, y)
    logic = _LOGIC[op_key(ctx.target)]
    if ky is not None and kx.dtype == bool and ky.dtype != bool and op in ("bitwise_and", "bitwise_or", "bitwise_xor",
                                                                          "__and__", "__or__", "__xor__", "__ior__",
                                                                          "__iand__", "__ixor__"):
        ky = ky.astype(bool)
    fold_room((kx,) if ky is None else (kx, ky), f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where)
    return logic(kx) if ky is None else logic(kx, ky)




_COMPARISONS = ("eq", "ne", "lt", "gt", "le", "ge")
_MASK_LOGIC = {"logical_and": "and", "logical_or": "or", "logical_xor": "xor", "bitwise_and": "and",
               "bitwise_or": "or", "bitwise_xor": "xor", "__and__": "and", "__or__": "or", "__xor__": "xor",
               "logical_not": "not", "bitwise_not": "not", "__ior__": "or", "__iand__": "and", "__ixor__": "xor"}


def _mask_op(t: Translator, a: dict[str, Any], ctx: Ctx, op: str, x: Any, y: Any) -> Node:
    """A comparison or a logic op of computed values: a boolean mask, data through which no gradient flows."""
    if op in _COMPARISONS:
        return _op(t, ctx, "compare", t.node(x, ctx, "self"), t.node(y, ctx, "other"), op=op)
    if op in _MASK_LOGIC:
        inputs = [t.node(x, ctx, "self")] + ([] if _MASK_LOGIC[op] == "not" else [t.node(y, ctx, "other")])
        if op.startswith(("bitwise", "__")) and any(str(n.meta.get("dtype", "bool")).startswith(("int", "uint"))
                                                    for n in inputs) and not _declared_masks(t, len(inputs)):
            raise Unmapped(f"{op} of integer data (bitwise arithmetic, not a mask)")
        return _op(t, ctx, "logical", *inputs, op=_MASK_LOGIC[op])
    raise Unmapped(f"{op} of computed values")


def _declared_masks(t: Translator, count: int) -> bool:
    """Whether the program declares every argument of the current op boolean: an integer input cast to bool
    (Grounding DINO's `~attention_mask.bool()`) reaches the op as the integers, 0 or 1, the cast being no step."""
    declared = [d for role in ("self", "other")[:count] for d in (t.argument_dtypes(role)
                                                                  if hasattr(t, "argument_dtypes") else [])]
    return len(declared) == count and all(d == "bool" for d in declared)


@aten("isin")
def _isin(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """torch.isin(elements, test_elements): a mask of the elements equal to one of the test elements (Grounding
    DINO's phrase separators among the token ids), for test elements fixed at load time: each element compared with
    each test element, the matches counted."""
    x, tests, invert = a.get("elements"), a.get("test_elements"), bool(a.get("invert", False))
    kx, kt = t.known(x), t.known(tests)
    if kt is None and not isinstance(tests, int | float):
        raise Unmapped("isin against test elements computed from the input")
    values = np.asarray(tests if kt is None else kt).reshape(-1)
    if kx is not None:
        fold_room((kx,), f"isin {ctx.name!r} of constants", t.where)
        return np.isin(kx, values, invert=invert)
    node = t.node(x, ctx, "elements")
    column = t.b.op("reshape", node, name=f"{ctx.name}.column", module=ctx.module,
                    attrs={"shape": (*node.shape, 1)})
    matches = t.b.op("compare", column, t.b.const(values, ctx.module, "test_elements"), name=f"{ctx.name}.matches",
                     module=ctx.module, attrs={"op": "eq"})
    count = t.b.op("sum", matches, name=f"{ctx.name}.count", module=ctx.module,
                   attrs={"axis": len(node.shape), "keepdims": False})
    zero = t.b.const(np.array(0.0), ctx.module, "zero")
    return _op(t, ctx, "compare", count, zero, op="eq" if invert else "gt")


@aten("isnan", "isinf", "isposinf", "isneginf")
def _nonfinite(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x = self_arg(a)
    known = t.known(x)
    if known is not None:
        tests: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "isnan": np.isnan, "isinf": np.isinf, "isposinf": np.isposinf, "isneginf": np.isneginf}
        return tests[op](known)
    if op == "isnan":
        return _op(t, ctx, "isnan", t.node(x, ctx))
    return _op(t, ctx, "isinf", t.node(x, ctx), detect_positive=op != "isneginf", detect_negative=op != "isposinf")


@aten("bucketize")
def _bucketize(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """torch.bucketize(x, boundaries, right): each value's bucket, the number of (sorted) boundaries below it (at or
    below with right=True), as NumPy's searchsorted where all is known; of computed values, that count made with a
    comparison against each boundary, summed (Idefics3 buckets its patches' fractional coordinates so). Integers:
    no gradient, as in torch."""
    x, boundaries, right = self_arg(a), a["boundaries"], bool(a.get("right", False))
    edges = t.known(boundaries)
    if edges is None or edges.ndim != 1:
        raise Unmapped("bucketize by boundaries computed from the data")
    known = t.known(x)
    if known is not None:
        fold_room((known,), f"bucketize {ctx.name!r} of constants", t.where)
        return np.searchsorted(edges, known, side="right" if right else "left").astype(np.int64)
    node = t.node(x, ctx, "self")
    column = t.b.op("reshape", node, name=f"{ctx.name}.values", module=ctx.module, attrs={"shape": (*node.shape, 1)})
    above = _op(t, ctx, "compare", column, t.b.const(edges.astype(np.float64), ctx.module, "boundaries"),
                name=f"{ctx.name}.above", op="ge" if right else "gt")
    return t.b.op("sum", above, name=ctx.name, module=ctx.module, attrs={"axis": -1, "keepdims": False},
                  original_op="bucketize")

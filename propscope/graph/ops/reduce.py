"""Reductions beyond sum and mean, cumulative sums and products, and the index of an extreme.

`axis` is None (every axis), an int or a tuple of ints, negative ones counting from the end, as for
`sum` and `mean`; `keepdims` keeps each reduced axis with length 1. argmax, argmin and argsort give integer
indices: their input gets no gradient (an index has no derivative), so the debugger shows none; a sort's or a
top-k's values are `gather(x, argsort(x))`, through which the gradient flows back to the picked entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, ShapeRule, define

Shape = tuple[int, ...]
REDUCE_ATTRS = {"axis": None, "keepdims": False}


def _check_axis_attrs(attrs: Mapping[str, Any]) -> None:
    axis = attrs.get("axis")
    items = () if axis is None else (axis,) if isinstance(axis, int) else axis
    if not isinstance(items, tuple | list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in items):
        raise ShapeError(f"axis must be None, an int or a tuple of ints, got {axis!r}")
    if not isinstance(attrs.get("keepdims", False), bool):
        raise ShapeError(f"keepdims must be True or False, got {attrs.get('keepdims')!r}")


def _reduce(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    _check_axis_attrs(attrs)
    return S.reduce(shapes, attrs)


def _reduce_nonempty(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    """A reduction with no value over no elements (the maximum of nothing): a length-0 reduced axis is refused."""
    out = _reduce(shapes, attrs)
    x = tuple(shapes[0])
    if any(x[a] == 0 for a in S.axes(attrs.get("axis"), len(x))):
        raise ShapeError(f"an axis of length 0 has no largest or smallest value (input {S.fmt(x)})")
    return out


def _with_correction(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    correction = attrs.get("correction")
    if isinstance(correction, bool) or not isinstance(correction, int | float):
        raise ShapeError(f"correction must be a number (1: unbiased, 0: population), got {correction!r}")
    return _reduce(shapes, attrs)


def _reduction(name: str, formula: str, derivative: str, symbol: str, summary: str,
               infer_shape: ShapeRule = _reduce, **attrs: Any) -> None:
    define(OpDef(name, ("x",), formula, {"x": derivative}, infer_shape, symbol, category="reduce",
                 default_attrs={**REDUCE_ATTRS, **attrs}, summary=summary))


_reduction("amax", "out = max x  (over the axes)", "∂out/∂x = 1[x = out] / (number of x equal to out)", "max",
           "largest value over axes; tied maxima share the gradient evenly, as torch.amax",
           _reduce_nonempty)
_reduction("amin", "out = min x  (over the axes)", "∂out/∂x = 1[x = out] / (number of x equal to out)", "min",
           "smallest value over axes; tied minima share the gradient evenly, as torch.amin",
           _reduce_nonempty)
_reduction("prod", "out = Π x", "∂out/∂x_i = Π_(j ≠ i) x_j  (out / x_i where x_i ≠ 0)", "Π",
           "product over axes; the gradient is the product of the others, exact where some x are 0")
_reduction("var", "out = Σ (x − x̄)² / (n − c)", "∂out/∂x = 2 (x − x̄) / (n − c)", "σ²",
           "variance over axes: n values, c = correction (1: unbiased, PyTorch's default; 0: population)",
           _with_correction, correction=1.0)
_reduction("std", "out = √(Σ (x − x̄)² / (n − c))", "∂out/∂x = (x − x̄) / ((n − c) · out)  (0 where out = 0)", "σ",
           "standard deviation over axes: n values, c = correction (1: unbiased, PyTorch's default; 0: population)",
           _with_correction, correction=1.0)
_reduction("logsumexp", "out = ln Σ e^x", "∂out/∂x = e^(x − out) = softmax(x)", "lse",
           "log of the sum of exponentials over axes, computed stably (the largest x is taken out first)")


def _running(name: str) -> ShapeRule:
    """The shape rule of a running sum or product: one axis of an input of at least one dimension."""

    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        x = tuple(shapes[0])
        axis = attrs.get("axis")
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ShapeError(f"{name} takes one axis (an int), got {axis!r}")
        if not x:
            raise ShapeError(f"{name} needs at least a 1-D input, got a scalar")
        S.axes(axis, len(x))
        return x

    return rule


def _vector_norm(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    order = attrs.get("ord", 2.0)
    if isinstance(order, bool) or not isinstance(order, int | float) or not order > 0:
        raise ShapeError(f"a vector norm's ord must be a positive number or inf, got {order!r}")
    return _reduce(shapes, attrs)


define(OpDef(
    "vector_norm", ("x",), "out = ‖x‖_p = (Σ |x|^p)^(1/p)  (over the axes; p = ∞: max |x|)",
    {"x": "∂out/∂x = sign(x)·(|x|/out)^(p−1): x/out for p = 2, sign(x) for p = 1, at p = ∞ sign(x) shared by "
          "the largest |x|; 0 where out = 0 (torch's choice: the norm has no derivative at a zero vector)"},
    _vector_norm, "‖x‖", category="reduce", default_attrs={**REDUCE_ATTRS, "ord": 2.0},
    summary="the p-norm over axes (torch.linalg.vector_norm, F.normalize's divisor, ONNX ReduceL1/L2); a zero "
            "vector's gradient is 0, not the NaN of √ at 0",
))

define(OpDef(
    "cumsum", ("x",), "out_i = Σ_(j ≤ i) x_j  (along the axis)",
    {"x": "∂L/∂x_j = Σ_(i ≥ j) ∂L/∂out_i  (a cumulative sum of ∂L/∂out in the other direction)"},
    _running("cumsum"), "Σ…", category="reduce", default_attrs={"axis": 0, "reverse": False, "exclusive": False},
    summary="running sum along an axis; reverse sums from the end, exclusive leaves x_i itself out of out_i "
            "(ONNX CumSum's attributes)",
))

define(OpDef(
    "cumprod", ("x",), "out_i = Π_(j ≤ i) x_j  (along the axis)",
    {"x": "∂L/∂x_j = Σ_(i ≥ j) ∂L/∂out_i · Π_(k ≤ i, k ≠ j) x_k  (= Σ_(i ≥ j) ∂L/∂out_i · out_i / x_j where "
          "x_j ≠ 0; past the first zero no product depends on x_j, at it the products of the others are used)"},
    _running("cumprod"), "Π…", category="reduce", default_attrs={"axis": 0, "reverse": False, "exclusive": False},
    summary="running product along an axis (torch.cumprod, ONNX CumProd); reverse multiplies from the end, "
            "exclusive leaves x_i itself out of out_i; the gradient is exact where some x are 0",
))


def _arg_extreme(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    axis = attrs.get("axis")
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
        raise ShapeError(f"takes one axis (an int), or None for the index into the flattened input, got {axis!r}")
    x = tuple(shapes[0])
    if not x and axis is not None:
        raise ShapeError("a scalar has no axis to search along; use axis None")
    return _reduce_nonempty(shapes, attrs)


for _name, _word in (("argmax", "largest"), ("argmin", "smallest")):
    define(OpDef(
        _name, ("x",), f"out = the index of the {_word} x along the axis",
        {"x": "none: an index has no derivative (no gradient flows into x)"},
        _arg_extreme, _name, category="reduce", nondifferentiable=frozenset({"x"}),
        default_attrs={**REDUCE_ATTRS, "select_last_index": False},
        summary=f"integer index of the {_word} value along one axis (None: into the flattened input); "
                "the first of tied values, or the last with select_last_index (ONNX)",
    ))


def _argsort(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    axis, k = attrs.get("axis", -1), attrs.get("k")
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ShapeError(f"argsort takes one axis (an int), got {axis!r}")
    if not x:
        raise ShapeError("argsort needs at least a 1-D input, got a scalar")
    if not isinstance(attrs.get("descending", False), bool):
        raise ShapeError(f"descending must be True or False, got {attrs.get('descending')!r}")
    a = S.axes(axis, len(x))[0]
    if k is None:
        return x
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= x[a]:
        raise ShapeError(f"k must be an int from 0 to the axis' length {x[a]}, got {k!r}")
    return (*x[:a], k, *x[a + 1:])


define(OpDef(
    "argsort", ("x",), "out = the positions of x along the axis in ascending (descending) order, the first k",
    {"x": "none: an index has no derivative (no gradient flows into x)"},
    _argsort, "argsort", category="reduce", nondifferentiable=frozenset({"x"}),
    default_attrs={"axis": -1, "descending": False, "k": None},
    summary="integer positions that sort x along one axis, equal values in their original order; k keeps the "
            "first k (torch.topk, ONNX TopK: the values are gather(x, positions)); k None keeps all (torch.sort)",
))

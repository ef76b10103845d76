"""Reductions beyond sum and mean, cumulative sums and products, and the index of an extreme.

`axis` is None (every axis), an int or a tuple of ints, negative ones counting from the end, as for
`sum` and `mean`; `keepdims` keeps each reduced axis with length 1. argmax, argmin and argsort give integer
indices: their input gets no gradient (an index has no derivative), so the debugger shows none; a sort's or a
top-k's values are `gather(x, argsort(x))`, through which the gradient flows back to the picked entries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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

for _name, _which, _sign in (("cummax", "largest", "≥"), ("cummin", "smallest", "≤")):
    define(OpDef(
        _name, ("x",), f"out_i = the {_which} of x_j for j ≤ i  (along the axis)",
        {"x": f"∂L/∂x_j = Σ of ∂L/∂out_i over the i whose running {_which} value is x_j (the last j with x_j "
              f"{_sign} every x before it up to i, as torch picks among ties)"},
        _running(_name), f"{_name[3:]}…", category="reduce", default_attrs={"axis": 0},
        summary=f"running {_which} value along an axis (torch.{_name}'s values); each gradient goes to the "
                "position whose value it is",
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


# where tied values go: in their original order, or where torch's CPU sort (std::sort) or topk
# (std::nth_element) leaves them; the gradient of the values gathered follows the positions
TIE_ORDERS = ("stable", "sort", "topk")


def _argsort(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    axis, k = attrs.get("axis", -1), attrs.get("k")
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ShapeError(f"argsort takes one axis (an int), got {axis!r}")
    if not x:
        raise ShapeError("argsort needs at least a 1-D input, got a scalar")
    if not isinstance(attrs.get("descending", False), bool):
        raise ShapeError(f"descending must be True or False, got {attrs.get('descending')!r}")
    if attrs.get("ties", "stable") not in TIE_ORDERS:
        raise ShapeError(f"ties must be one of {', '.join(TIE_ORDERS)}, got {attrs.get('ties')!r}")
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
    default_attrs={"axis": -1, "descending": False, "k": None, "ties": "stable"},
    summary="integer positions that sort x along one axis; k keeps the first k (torch.topk, ONNX TopK: the "
            "values are gather(x, positions)); k None keeps all (torch.sort). Equal values stay in their original "
            "order (ties 'stable': torch.sort(stable=True), ONNX), or go where torch's CPU kernels put them "
            "(ties 'sort': torch.sort, 'topk': torch.topk), so the gradient reaches the same elements",
))


def _histc(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    bins, low, high = attrs.get("bins"), attrs.get("min"), attrs.get("max")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ShapeError(f"bins must be a positive int, got {bins!r}")
    for name, v in (("min", low), ("max", high)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
            raise ShapeError(f"{name} must be a finite number, got {v!r}")
    if float(low) > float(high):  # type: ignore[arg-type]  # both checked to be numbers just above
        raise ShapeError(f"max must not be below min, got min {low} and max {high}")
    return (bins,)


define(OpDef(
    "histc", ("x",), "out[b] = how many entries of x fall in bin b of [min, max] cut into equal bins (max in the last)",
    {"x": "none: a count has no derivative (no gradient flows into x)"},
    _histc, "hist", category="reduce", nondifferentiable=frozenset({"x"}),
    default_attrs={"bins": 100, "min": 0.0, "max": 0.0},
    summary="a histogram of every entry of x (torch.histc): entries outside [min, max] and NaN are left out; "
            "min = max takes the range from the data. A mixture of experts counts its experts' tokens so",
))


# -- torch's order of ties (the NumPy backend's argsort and the readers' folding of constants use it) ----------
def stable_order(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    """The positions that sort x along `axis`, equal values in their original order, NaN counted as the largest
    value as torch counts it (first when descending; NumPy's argsort of −x would put it last)."""
    if not descending or x.dtype.kind != "f":
        return np.argsort(-x if descending else x, axis=axis, kind="stable")
    return np.lexsort((-x, ~np.isnan(x)), axis=axis)


def torch_tie_order(x: np.ndarray, order: np.ndarray, axis: int, descending: bool, k: int | None,
                    ties: str) -> np.ndarray:
    """The stable order, redone row by row where a row has tied values (NaNs tie with each other) in the order
    torch's CPU kernel leaves them: std::sort for torch.sort, std::nth_element then std::sort (or
    std::partial_sort when k · 64 ≤ n) for torch.topk. Rows without ties have one order, the stable one."""
    if ties == "stable" or x.size == 0:
        return order
    rows = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
    picked = np.moveaxis(order, axis, -1).reshape(rows.shape).copy()
    in_order = np.take_along_axis(rows, picked, axis=-1)
    tied = np.any((in_order[:, 1:] == in_order[:, :-1]) | (np.isnan(in_order[:, 1:]) & np.isnan(in_order[:, :-1])),
                  axis=-1)
    for r in np.flatnonzero(tied):
        picked[r] = _StlOrder(rows[r].tolist(), descending).run(ties, k)
    return np.moveaxis(picked.reshape(np.moveaxis(order, axis, -1).shape), -1, axis)


class _StlOrder:
    """libstdc++'s std::sort (introsort), std::nth_element (introselect) and std::partial_sort (heap select)
    on (value, index) pairs with torch's comparator (NaN counts as the largest), step for step, so tied values
    end up where they end up in torch's CPU sort and topk (aten/src/ATen/native/cpu/SortingKernel.cpp)."""

    def __init__(self, values: list[float], descending: bool) -> None:
        self.values = values
        self.q = list(range(len(values)))
        self.descending = descending

    def before(self, i: int, j: int) -> bool:  # comp(q[i]'s value, q[j]'s value), on indices into values
        a, b = self.values[i], self.values[j]
        if self.descending:
            return (a != a and b == b) or a > b
        return (a == a and b != b) or a < b

    def run(self, ties: str, k: int | None) -> list[int]:
        n = len(self.q)
        if ties == "sort" or k is None:
            self.sort(0, n)
        elif k == 0:
            pass
        elif k * 64 <= n:
            self.heap_select(0, k, n)
            self.sort_heap(0, k)
        else:
            self.introselect(0, k - 1, n, 2 * (n.bit_length() - 1))
            self.sort(0, k - 1)
        return self.q

    # -- std::sort ---------------------------------------------------------------------------------
    def sort(self, first: int, last: int) -> None:
        if last - first > 1:
            self.introsort(first, last, 2 * ((last - first).bit_length() - 1))
            if last - first > 16:
                self.insertion_sort(first, first + 16)
                for i in range(first + 16, last):
                    self.linear_insert(i)
            else:
                self.insertion_sort(first, last)

    def introsort(self, first: int, last: int, depth: int) -> None:
        while last - first > 16:
            if depth == 0:
                self.heap_select(first, last, last)
                self.sort_heap(first, last)
                return
            depth -= 1
            cut = self.partition_pivot(first, last)
            self.introsort(cut, last, depth)
            last = cut

    def introselect(self, first: int, nth: int, last: int, depth: int) -> None:
        while last - first > 3:
            if depth == 0:
                self.heap_select(first, nth + 1, last)
                self.swap(first, nth)
                return
            depth -= 1
            cut = self.partition_pivot(first, last)
            if cut <= nth:
                first = cut
            else:
                last = cut
        self.insertion_sort(first, last)

    def swap(self, i: int, j: int) -> None:
        self.q[i], self.q[j] = self.q[j], self.q[i]

    def comp(self, i: int, j: int) -> bool:
        return self.before(self.q[i], self.q[j])

    def partition_pivot(self, first: int, last: int) -> int:
        mid = first + (last - first) // 2
        a, b, c = first + 1, mid, last - 1  # the median of three moves to first
        if self.comp(a, b):
            self.swap(first, b if self.comp(b, c) else c if self.comp(a, c) else a)
        else:
            self.swap(first, a if self.comp(a, c) else c if self.comp(b, c) else b)
        lo, hi = first + 1, last
        while True:
            while self.comp(lo, first):
                lo += 1
            hi -= 1
            while self.comp(first, hi):
                hi -= 1
            if not lo < hi:
                return lo
            self.swap(lo, hi)
            lo += 1

    def insertion_sort(self, first: int, last: int) -> None:
        for i in range(first + 1, last):
            if self.comp(i, first):
                self.q[first:i + 1] = [self.q[i], *self.q[first:i]]
            else:
                self.linear_insert(i)

    def linear_insert(self, last: int) -> None:
        value = self.q[last]
        while self.before(value, self.q[last - 1]):
            self.q[last] = self.q[last - 1]
            last -= 1
        self.q[last] = value

    # -- heaps (std::partial_sort, and introsort's fallback) ---------------------------------------------
    def heap_select(self, first: int, middle: int, last: int) -> None:
        length = middle - first
        if length >= 2:
            for parent in range((length - 2) // 2, -1, -1):
                self.adjust_heap(first, parent, length, self.q[first + parent])
        for i in range(middle, last):
            if self.comp(i, first):
                value, self.q[i] = self.q[i], self.q[first]
                self.adjust_heap(first, 0, length, value)

    def sort_heap(self, first: int, last: int) -> None:
        while last - first > 1:
            last -= 1
            value, self.q[last] = self.q[last], self.q[first]
            self.adjust_heap(first, 0, last - first, value)

    def adjust_heap(self, first: int, hole: int, length: int, value: int) -> None:
        top, child = hole, hole
        while child < (length - 1) // 2:
            child = 2 * (child + 1)
            if self.comp(first + child, first + child - 1):
                child -= 1
            self.q[first + hole] = self.q[first + child]
            hole = child
        if length % 2 == 0 and child == (length - 2) // 2:
            child = 2 * (child + 1)
            self.q[first + hole] = self.q[first + child - 1]
            hole = child - 1
        parent = (hole - 1) // 2
        while hole > top and self.before(self.q[first + parent], value):
            self.q[first + hole] = self.q[first + parent]
            hole, parent = parent, (parent - 1) // 2
        self.q[first + hole] = value


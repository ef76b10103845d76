"""Leaves, arithmetic, matrix products, reductions and shape ops."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]

for _leaf, _doc in (
    ("input", "data fed to the network (x, or the target y)"),
    ("parameter", "a weight or bias the optimizer trains"),
    ("constant", "a fixed tensor stored with the model"),
):
    define(OpDef(_leaf, (), f"{_leaf}", {}, category="leaf", symbol=_leaf[0].upper(), summary=_doc))

define(OpDef("add", ("a", "b"), "out = a + b", {"a": "∂out/∂a = 1", "b": "∂out/∂b = 1"},
             S.broadcast, "+", elementwise=True, summary="elementwise sum (broadcasting)"))
define(OpDef("sub", ("a", "b"), "out = a − b", {"a": "∂out/∂a = 1", "b": "∂out/∂b = −1"},
             S.broadcast, "−", elementwise=True, summary="elementwise difference"))
define(OpDef("mul", ("a", "b"), "out = a · b", {"a": "∂out/∂a = b", "b": "∂out/∂b = a"},
             S.broadcast, "×", elementwise=True, summary="elementwise product"))
define(OpDef("div", ("a", "b"), "out = a / b", {"a": "∂out/∂a = 1 / b", "b": "∂out/∂b = −a / b²"},
             S.broadcast, "÷", elementwise=True, summary="elementwise quotient"))
define(OpDef("neg", ("a",), "out = −a", {"a": "∂out/∂a = −1"}, S.same, "−", elementwise=True,
             summary="negation"))
define(OpDef("pow", ("a",), "out = a^p", {"a": "∂out/∂a = p · a^(p−1)"}, S.same, "xᵖ", elementwise=True,
             default_attrs={"exponent": 2.0}, summary="power by a constant exponent p"))
define(OpDef("exp", ("z",), "out = e^z", {"z": "∂out/∂z = e^z"}, S.same, "eˣ", elementwise=True,
             summary="natural exponential"))
define(OpDef("log", ("z",), "out = ln z", {"z": "∂out/∂z = 1 / z"}, S.same, "ln", elementwise=True,
             summary="natural logarithm"))


def _matmul(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    return S.matmul(shapes[0], shapes[1])


define(OpDef("matmul", ("a", "b"), "out = a @ b",
             {"a": "∂L/∂a = ∂L/∂out @ bᵀ", "b": "∂L/∂b = aᵀ @ ∂L/∂out"},
             _matmul, "@", summary="matrix product (NumPy's matmul rules)"))


def _grouped_mm(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w, offs = (tuple(s) for s in shapes)
    if len(x) != 2 or len(w) != 3 or len(offs) != 1:
        raise ShapeError(f"grouped_mm takes rows (S, in), a matrix per group (G, in, out) and G offsets, got "
                         f"{S.fmt(x)}, {S.fmt(w)} and {S.fmt(offs)}")
    if x[1] != w[1]:
        raise ShapeError(f"the rows have {x[1]} features and each group's matrix takes {w[1]}: {S.fmt(x)} @ {S.fmt(w)}")
    if offs[0] != w[0]:
        raise ShapeError(f"{offs[0]} offsets for {w[0]} groups")
    return (x[0], w[2])


define(OpDef(
    "grouped_mm", ("x", "W", "offs"),
    "out[r] = x[r] @ W[g] for the rows r of group g (offs[g−1] ≤ r < offs[g]); rows past the last offset are 0",
    {"x": "∂L/∂x[r] = ∂L/∂out[r] @ W[g]ᵀ", "W": "∂L/∂W[g] = Σ over the rows r of group g of x[r]ᵀ ∂L/∂out[r]"},
    _grouped_mm, "@g", nondifferentiable=frozenset({"offs"}),
    summary="a matrix product per group of consecutive rows, each group with its own matrix: a mixture of experts' "
            "experts, the rows sorted by expert (transformers' grouped_mm, torch._grouped_mm); offs holds the "
            "groups' cumulative row counts",
))


def _linear(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, w, b = shapes
    if attrs["transpose_weight"]:
        if len(w) != 2:
            raise ShapeError(f"weight must be 2-D (out, in), got {S.fmt(w)}")
        w = (w[1], w[0])
    return S.broadcast([S.matmul(x, w), b], attrs)


define(OpDef(
    "linear", ("x", "W", "b"), "z = x · W + b",
    {"x": "∂L/∂x = ∂L/∂z · Wᵀ", "W": "∂L/∂W = xᵀ · ∂L/∂z", "b": "∂L/∂b = Σ_batch ∂L/∂z"},
    _linear, "Wx+b", out="z", default_attrs={"transpose_weight": False},
    summary="dense layer: x @ W + b (tutorial), or x @ Wᵀ + b with transpose_weight (PyTorch's nn.Linear)",
))

define(OpDef("sum", ("x",), "out = Σ x", {"x": "∂out/∂x = 1"}, S.reduce, "Σ",
             default_attrs={"axis": None, "keepdims": False}, summary="sum over axes"))
define(OpDef("mean", ("x",), "out = (1/n) Σ x", {"x": "∂out/∂x = 1/n"}, S.reduce, "x̄",
             default_attrs={"axis": None, "keepdims": False}, summary="mean over axes"))


def _reshape(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    shape = tuple(shapes[0])
    target = [int(d) for d in attrs["shape"]]
    size = int(np.prod(shape))
    if target.count(-1) > 1:
        raise ShapeError(f"at most one -1 in the target shape, got {tuple(target)}")
    if -1 in target:
        known = int(np.prod([d for d in target if d != -1]))
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {S.fmt(shape)} to {tuple(target)}")
        target[target.index(-1)] = size // known
    if int(np.prod(target)) != size:
        raise ShapeError(f"cannot reshape {S.fmt(shape)} ({size} elements) to {tuple(target)}")
    return tuple(target)


def _transpose(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    shape = tuple(shapes[0])
    axes = attrs.get("axes")
    ndim = len(shape)
    if axes is None:
        perm = tuple(reversed(range(ndim)))
    else:
        axes = tuple(int(p) for p in axes)
        if any(not -ndim <= p < ndim for p in axes):
            raise ShapeError(f"axes {axes} are out of range for {ndim}-D input")
        perm = tuple(p % ndim for p in axes)
    if sorted(perm) != list(range(ndim)):
        raise ShapeError(f"axes {perm} are not a permutation of {ndim} dimensions")
    return tuple(shape[p] for p in perm)


define(OpDef("reshape", ("x",), "out = reshape(x)", {"x": "∂L/∂x = reshape(∂L/∂out, shape of x)"},
             _reshape, "⇄", category="shape", default_attrs={"shape": (-1,)}, summary="same values, new shape"))
define(OpDef("transpose", ("x",), "out = xᵀ", {"x": "∂L/∂x = (∂L/∂out)ᵀ"}, _transpose, "ᵀ",
             category="shape", default_attrs={"axes": None}, summary="permute axes (reverse by default)"))

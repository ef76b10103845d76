"""Sizes a program computes while it runs (exported with dynamic shapes): `sym_size`, `sym_numel` and the Python
arithmetic on them (`operator.mul`, `torch.sym_max`, ...). The inputs have concrete sizes here (the example's, or
the data's), so each is worked out to a number when the file is read, and `arange`, `view` or `expand` of a
symbolic size map as with a static one."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

from .._aten import INT64, Ctx, Missing, Translator, Unmapped, aten, self_arg


@aten("sym_size")
def _sym_size(t: Translator, a: dict[str, Any], ctx: Ctx) -> int:
    shape = t.shape(self_arg(a))
    return int(shape[int(a["dim"])])


@aten("sym_numel")
def _sym_numel(t: Translator, a: dict[str, Any], ctx: Ctx) -> int:
    return math.prod(t.shape(self_arg(a)))


def _power(a: float, b: float) -> float:
    if isinstance(a, int) and isinstance(b, int) and not 0 <= b <= 64:  # 2 ** 10**9 would take minutes
        raise Unmapped(f"a size {a} ** {b} out of range")
    return a**b


# Python's operators and torch's symbolic functions as the program names them (`_operator.mul`, `torch.sym_max`)
SIZE_ARITHMETIC: dict[str, Callable[..., Any]] = {
    **{f"_operator.{name}": getattr(operator, name) for name in (
        "add", "sub", "mul", "truediv", "floordiv", "mod", "neg", "pos", "abs", "eq", "ne", "lt", "le",
        "gt", "ge", "and_", "or_", "not_")},
    "_operator.pow": _power, "torch.sym_max": max, "torch.sym_min": min, "torch.sym_not": operator.not_,
    "torch.sym_float": float, "torch.sym_int": int, "torch.sym_sqrt": math.sqrt, "math.ceil": math.ceil,
    "math.floor": math.floor, "math.trunc": math.trunc, "torch.sym_ite": lambda condition, a, b: a if condition else b,
}


def _arithmetic(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    values = list(a.values())
    for value in values:
        if isinstance(value, Missing):
            raise Unmapped(value.reason)
        if not isinstance(value, int | float):  # a tensor: not size arithmetic (the aten ops do that)
            raise Unmapped(f"{ctx.target} of a {type(value).__name__}")
    result = SIZE_ARITHMETIC[ctx.target](*values)
    if isinstance(result, int) and not -INT64 <= result < INT64:
        raise Unmapped(f"a size {ctx.target} beyond 64 bits")
    return result


aten(*SIZE_ARITHMETIC)(_arithmetic)


@aten("item", "_local_scalar_dense")
def _item(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """x.item() inside the program: a known value's number; a computed value's, where the program fixes it (a path
    traced along these inputs answers each value its sizes take, `decisions.py`, and torch then records the number:
    Mistral3's tokens per image, `image_sizes // patch`, in a split and a view)."""
    x = self_arg(a)
    known = t.known(x)
    if known is not None and known.size == 1:
        return known.reshape(()).item()
    recorded = (t.graph_spec.get("sym_int_values") or {}).get(ctx.name) if isinstance(t.graph_spec, dict) else None
    if isinstance(recorded, dict) and isinstance(recorded.get("as_int"), int):
        return int(recorded["as_int"])
    raise Unmapped("x.item() of a value computed from the data")

"""Why a step made a pass's first NaN or ±inf: which of its inputs lie where the op (or its derivative) is not
finite, counted, in words a user can act on ("log of 24 values ≤ 0, of 64"). No Qt here.

A forward step is asked about its op's domain (log and sqrt below zero, a division by zero, exp past the dtype's
largest number); a backward step about its derivative's (sqrt and log at 0, a norm of a zero vector). Where no rule
names a cause, inputs that already hold NaN or ±inf are the cause; else "" (say nothing rather than guess).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Array = np.ndarray


def _count(mask: Array, total: int) -> str:
    n = int(np.count_nonzero(mask))
    return f"{n:,} of {total:,}" if n != total else f"all {total:,}"


def _largest(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).max) if dtype.kind == "f" else float(np.finfo(np.float64).max)


def _exp_limit(dtype: np.dtype) -> float:
    return float(np.log(_largest(dtype)))


def _exponent(op: str, inputs: Sequence[Array], attrs: dict[str, Any]) -> Array | None:
    """x^p's exponent: `power`'s second input, `pow`'s attribute."""
    if op == "power" and len(inputs) > 1:
        return np.asarray(inputs[1])
    if op == "pow" and isinstance(attrs.get("exponent"), int | float):
        return np.asarray(float(attrs["exponent"]))
    return None


def _domain(op: str, inputs: Sequence[Array], dtype: np.dtype, attrs: dict[str, Any]) -> str:
    """The forward rule of `op` on its inputs, or ""."""
    x = inputs[0] if inputs else None
    if x is None:
        return ""
    size = int(x.size)
    with np.errstate(all="ignore"):
        if op == "log":
            low = x <= 0
            if low.any():
                return f"log of values ≤ 0 at {_count(low, size)} elements (−inf at 0, NaN below)"
        if op == "log1p" and (x <= -1).any():
            return f"log1p of values ≤ −1 at {_count(x <= -1, size)} elements"
        if op == "sqrt" and (x < 0).any():
            return f"sqrt of negative values at {_count(x < 0, size)} elements"
        if op == "rsqrt" and (x <= 0).any():
            return f"rsqrt of values ≤ 0 at {_count(x <= 0, size)} elements (inf at 0, NaN below)"
        if op == "reciprocal" and (x == 0).any():
            return f"1/x of zeros at {_count(x == 0, size)} elements"
        if op in ("acos", "asin", "atanh") and (np.abs(x) > 1).any():
            return f"{op} of values outside [−1, 1] at {_count(np.abs(x) > 1, size)} elements"
        if op == "acosh" and (x < 1).any():
            return f"acosh of values below 1 at {_count(x < 1, size)} elements"
        if op in ("exp", "expm1", "sinh", "cosh"):
            limit = _exp_limit(dtype)
            big = np.abs(x) > limit if op in ("sinh", "cosh") else x > limit
            if big.any():
                return (f"{op} of values above {limit:.4g} (past {dtype.name}'s largest number) at "
                        f"{_count(big, size)} elements")
        if op == "div" and len(inputs) > 1 and inputs[1] is not None:
            b = inputs[1]
            if (b == 0).any():
                return f"division by zero: the divisor is 0 at {_count(b == 0, int(b.size))} elements"
        exponent = _exponent(op, inputs, attrs)
        if exponent is not None:
            p = np.broadcast_to(exponent, np.broadcast_shapes(x.shape, exponent.shape))
            xb = np.broadcast_to(x, p.shape)
            fractional = (xb < 0) & (p != np.round(p))
            if fractional.any():
                return f"a negative base to a fractional power at {_count(fractional, int(p.size))} elements"
            zero = (xb == 0) & (p < 0)
            if zero.any():
                return f"0 to a negative power at {_count(zero, int(p.size))} elements"
    return ""


def _derivative(op: str, inputs: Sequence[Array], attrs: dict[str, Any]) -> str:
    """The backward rule: where `op`'s derivative is not finite though its value is."""
    x = inputs[0] if inputs else None
    if x is None:
        return ""
    size = int(x.size)
    with np.errstate(all="ignore"):
        if op == "sqrt" and (x == 0).any():
            return f"sqrt's derivative 1/(2√x) is inf at x = 0: {_count(x == 0, size)} elements"
        if op == "log" and (x == 0).any():
            return f"log's derivative 1/x is inf at x = 0: {_count(x == 0, size)} elements"
        if op == "vector_norm" and not np.any(x):
            return "the derivative of a norm, x/‖x‖, is 0/0 at the zero vector"
        if op in ("acos", "asin") and (np.abs(x) == 1).any():
            return f"{op}'s derivative is inf at x = ±1: {_count(np.abs(x) == 1, size)} elements"
        exponent = _exponent(op, inputs, attrs)
        if exponent is not None:
            p = np.broadcast_to(exponent, np.broadcast_shapes(x.shape, exponent.shape))
            zero = (np.broadcast_to(x, p.shape) == 0) & (p < 1) & (p != 0)
            if zero.any():
                return f"the derivative of x^p with p < 1 is inf at x = 0 ({_count(zero, int(p.size))} elements)"
        if op == "div" and len(inputs) > 1 and inputs[1] is not None and (inputs[1] == 0).any():
            zeros = inputs[1] == 0
            return f"the derivative of a/b is inf where the divisor is 0 ({_count(zeros, int(zeros.size))})"
    return ""


def _carried(names: Sequence[str], inputs: Sequence[Array | None]) -> str:
    bad = [name for name, x in zip(names, inputs, strict=False)
           if x is not None and x.dtype.kind in "fc" and not np.isfinite(x).all()]
    return f"its input {', '.join(bad[:3])} already holds NaN or inf" if bad else ""


def cause(node: Any, read: Callable[[str], Any], phase: str, dtype: str, carried: bool = True) -> str:
    """Why `node`'s step (`phase` "forward" or "backward") made a NaN or ±inf: "" where no rule knows. `read(name)` is
    a node's value as a NumPy array (None where not computed); `carried`: else name an input that already held one."""
    inputs = [None if (v := read(a.name)) is None else np.asarray(v) for a in node.inputs]
    op, attrs = node.op.name, dict(node.attrs)
    known = [x for x in inputs if x is not None]
    if len(known) != len(inputs) or not inputs:
        return ""
    if phase == "forward":
        domain = _domain(op, known, np.dtype(dtype), attrs)
        if domain and op == "log" and node.inputs[0].op.name == "softmax":
            domain += "; a softmax underflows to 0 there: log_softmax computes the same without"
        return domain or (_carried([a.name for a in node.inputs], known) if carried else "")
    return _derivative(op, known, attrs) or _domain(op, known, np.dtype(dtype), attrs)


def carried_in(node: Any, read: Callable[[str], Any]) -> str:
    """Where the first non-finite step's NaN or ±inf came from when the step only met it: its leaf inputs whose own
    values already hold one, "the data's x (1 NaN)" or "the parameter W (2 inf)" (the first three); "" where none
    does, and the step made it itself. `read(name)` is a node's value (None where not computed)."""
    said = []
    for a in node.inputs:
        value = read(a.name) if a.is_leaf else None
        if value is None:
            continue
        x = np.asarray(value)
        if x.dtype.kind not in "fc":
            continue
        nan = int(np.count_nonzero(np.isnan(x)))
        inf = int(x.size - np.count_nonzero(np.isfinite(x))) - nan
        if nan or inf:
            counts = ", ".join(f"{n:,} {what}" for n, what in ((nan, "NaN"), (inf, "inf")) if n)
            holder = "the data's" if a.op.name == "input" else f"the {a.op.name}"
            said.append(f"{holder} {a.name} ({counts})")
    return ", ".join(said[:3])

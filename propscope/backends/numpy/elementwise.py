"""Elementwise math on NumPy, each local derivative written by hand beside its forward."""

from __future__ import annotations

import numpy as np

from .kernels import Array, kernel


def _as(like: Array, value: Array) -> Array:
    """`value` in the float dtype of `like`: np.where(mask, 0.5, 1.0) is float64 whatever the inputs are."""
    return np.asarray(value).astype(like.dtype, copy=False)


def _no_gradient(a: Array, out: Array) -> tuple[Array]:
    return (np.zeros_like(a),)


# -- one input ----------------------------------------------------------------------------------
@kernel("abs")
def abs_(a: Array) -> Array:
    return np.abs(a)


def _torch_sign(a: Array) -> Array:
    """torch.sign: 1[a > 0] − 1[a < 0], so 0 at a = 0 and at a = NaN (np.sign gives NaN there)."""
    return _as(a, np.greater(a, 0).astype(np.int8) - np.less(a, 0).astype(np.int8))


@abs_.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (_torch_sign(a),)  # 0 at a = 0 (and NaN), as torch's sgn


@kernel("sign")
def sign(a: Array) -> Array:
    return _torch_sign(a) if np.asarray(a).dtype.kind == "f" else np.sign(a)


sign.selecting(_no_gradient)  # torch: zeros_like(grad), 0 even for an infinite upstream


@kernel("sin")
def sin(a: Array) -> Array:
    return np.sin(a)


@sin.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (np.cos(a),)


@kernel("cos")
def cos(a: Array) -> Array:
    return np.cos(a)


@cos.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (-np.sin(a),)


# -- inverse trigonometric and hyperbolic functions (torch's derivative formulas, so the two backends agree to
# the last bits; outside a domain both give NaN) ------------------------------------------------------------
@kernel("asin")
def asin(a: Array) -> Array:
    return np.arcsin(a)


@asin.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (1.0 / np.sqrt(1.0 - a * a),)


@kernel("acos")
def acos(a: Array) -> Array:
    return np.arccos(a)


@acos.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (-1.0 / np.sqrt(1.0 - a * a),)


@kernel("atan")
def atan(a: Array) -> Array:
    return np.arctan(a)


@atan.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (1.0 / (a * a + 1.0),)


@kernel("sinh")
def sinh(a: Array) -> Array:
    return np.sinh(a)


@sinh.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (np.cosh(a),)


@kernel("cosh")
def cosh(a: Array) -> Array:
    return np.cosh(a)


@cosh.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (np.sinh(a),)


@kernel("asinh")
def asinh(a: Array) -> Array:
    return np.arcsinh(a)


@asinh.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (1.0 / np.sqrt(a * a + 1.0),)


@kernel("acosh")
def acosh(a: Array) -> Array:
    return np.arccosh(a)


@acosh.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (1.0 / np.sqrt(a * a - 1.0),)


@kernel("atanh")
def atanh(a: Array) -> Array:
    return np.arctanh(a)


@atanh.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (1.0 / (1.0 - a * a),)


@kernel("sqrt")
def sqrt(a: Array) -> Array:
    return np.sqrt(a)


@sqrt.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (0.5 / out,)


@kernel("rsqrt")
def rsqrt(a: Array) -> Array:
    return 1.0 / np.sqrt(a)


@rsqrt.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (-0.5 * out * out * out,)


@kernel("reciprocal")
def reciprocal(a: Array) -> Array:
    return 1.0 / a


@reciprocal.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (-out * out,)


@kernel("log1p")
def log1p(a: Array) -> Array:
    return np.log1p(a)


@log1p.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (1.0 / (1.0 + a),)


@kernel("expm1")
def expm1(a: Array) -> Array:
    return np.expm1(a)


@expm1.local
def _(a: Array, out: Array) -> tuple[Array]:
    return (out + 1.0,)


@kernel("floor")
def floor(a: Array) -> Array:
    return np.floor(a)


floor.selecting(_no_gradient)


@kernel("ceil")
def ceil(a: Array) -> Array:
    return np.ceil(a)


ceil.selecting(_no_gradient)


@kernel("round")
def round_(a: Array) -> Array:
    return np.round(a)  # halves to even, as torch.round


round_.selecting(_no_gradient)


# -- two inputs, broadcasting (the VJP sums each partial back to its input's shape) -----------------
def _share(a: Array, b: Array, out: Array, a_wins: Array, b_wins: Array) -> tuple[Array, Array]:
    """maximum/minimum: the winner takes the gradient, a tie splits it in half. Written as torch does
    (1 unless the other side wins), so a NaN, which wins nothing and loses nothing, passes it to both."""
    tie = a == b
    return (_as(out, np.where(tie, 0.5, np.where(b_wins, 0.0, 1.0))),
            _as(out, np.where(tie, 0.5, np.where(a_wins, 0.0, 1.0))))


@kernel("maximum")
def maximum(a: Array, b: Array) -> Array:
    return np.maximum(a, b)


@maximum.selecting  # where(a == b, upstream / 2, upstream).masked_fill_(a < b, 0)
def _(a: Array, b: Array, out: Array) -> tuple[Array, Array]:
    return _share(a, b, out, a > b, a < b)


@kernel("minimum")
def minimum(a: Array, b: Array) -> Array:
    return np.minimum(a, b)


@minimum.selecting
def _(a: Array, b: Array, out: Array) -> tuple[Array, Array]:
    return _share(a, b, out, a < b, a > b)


@kernel("power")
def power(a: Array, b: Array) -> Array:
    return np.power(a, b)


@power.local
def _(a: Array, b: Array, out: Array) -> tuple[Array, Array]:
    # torch's conventions: ∂/∂a is 0 where b = 0 (even at a = 0, where b·a^(b−1) would be 0·inf);
    # ∂/∂b is 0 where a = 0 and b ≥ 0 (the limit of a^b·ln a), NaN for a < 0 (ln a)
    da = np.where(b == 0, 0.0, b * np.power(a, b - 1.0))
    db = np.where((a == 0) & (b >= 0), 0.0, out * np.log(a))
    return _as(out, da), _as(out, db)


@power.keeps
def _(a: Array, b: Array, out: Array) -> tuple[Array, None]:
    # pow_backward_self: where(b == 0, 0, upstream · b·a^(b−1)), a product even where a^(b−1) = 0;
    # pow_backward_exponent: upstream · where(...), a product everywhere
    return b != 0, None


@kernel("atan2")
def atan2(a: Array, b: Array) -> Array:
    return np.arctan2(a, b)


@atan2.local
def _(a: Array, b: Array, out: Array) -> tuple[Array, Array]:
    # torch's atan2_backward: 1 / (a² + b²), set to 0 where a² + b² is 0 (at the origin, or where the squares
    # underflow), so the origin gets 0 rather than 0 · ∞; a subnormal a² + b² still gives ∞ as in torch
    square = a * a + b * b
    reciprocal = np.divide(1.0, square, out=np.zeros_like(out), where=square != 0)
    return _as(out, b * reciprocal), _as(out, -a * reciprocal)


@kernel("fmod")
def fmod(a: Array, b: Array) -> Array:
    return np.fmod(a, b)


@fmod.local
def _(a: Array, b: Array, out: Array) -> tuple[Array, Array]:
    return np.ones_like(out), _as(out, -np.trunc(a / b))


@kernel("remainder")
def remainder(a: Array, b: Array) -> Array:
    return np.remainder(a, b)


@remainder.local
def _(a: Array, b: Array, out: Array) -> tuple[Array, Array]:
    return np.ones_like(out), _as(out, -np.floor_divide(a, b))


# -- a mask picks -------------------------------------------------------------------------------------
@kernel("where")
def where(cond: Array, a: Array, b: Array) -> Array:
    return np.where(cond != 0, a, b)


@where.selecting  # where(cond, upstream, 0) and where(cond, 0, upstream)
def _(cond: Array, a: Array, b: Array, out: Array) -> tuple[None, Array, Array]:
    picked = np.broadcast_to(cond != 0, out.shape)
    return None, picked.astype(out.dtype), (~picked).astype(out.dtype)


# -- masks: boolean outputs, no gradient (the roles are non-differentiable) ----------------------------------
_COMPARE = {"gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal, "eq": np.equal,
            "ne": np.not_equal}
_LOGICAL = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}


@kernel("compare")
def compare(a: Array, b: Array, op: str) -> Array:
    return _COMPARE[op](a, b)


compare.gradient(lambda g, a, b, out, op: (None, None))


@kernel("logical")
def logical(a: Array, b: Array | None = None, *, op: str) -> Array:
    if op == "not":
        return np.logical_not(a)
    if b is None:
        raise ValueError(f"logical {op!r} takes two masks")
    return _LOGICAL[op](a, b)


logical.gradient(lambda g, *args, op: tuple(None for _ in args[:-1]))


@kernel("isnan")
def isnan(a: Array) -> Array:
    return np.isnan(a)


isnan.gradient(lambda g, a, out: (None,))


@kernel("isinf")
def isinf(a: Array, detect_positive: bool, detect_negative: bool) -> Array:
    return (np.isposinf(a) & detect_positive) | (np.isneginf(a) & detect_negative)


isinf.gradient(lambda g, a, out, detect_positive, detect_negative: (None,))

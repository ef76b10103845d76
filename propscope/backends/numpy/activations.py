"""Activation functions on NumPy, each derivative written by hand beside its forward."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from .kernels import Array, kernel

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715


# -- erf without scipy (issue 14: importing scipy.special cost ~0.35 s of start-up for this one function) -------
# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969) 631-637, with
# the coefficients of Netlib SPECFUN's CALERF: erf(x) = x·P(x²)/Q(x²) for |x| <= 0.46875, and 1 − erfc(|x|)
# beyond, erfc(y) = e^(−y²)·P(y)/Q(y) up to 4 and e^(−y²)/y · (1/√π − P(1/y²)/(y²·Q(1/y²))) past it.
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03,
          1.85777706184603153e-1)
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_ERFC_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02,
           8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
           2.15311535474403846e-8)
_ERFC_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
           3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
_ERFC_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
           6.58749161529837803e-4, 1.63153871373020978e-2)
_ERFC_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
           2.33520497626869185e-3)
_INV_SQRT_PI = 5.6418958354775628695e-1
_ERF_IS_ONE = 6.0  # erfc(6) = 2e-17 < half an ulp of 1: erf(x) rounds to ±1 from here on


_ERF_CHUNK = 32768  # values per pass: a chunk's float64 work arrays (10 × 256 kB) stay in a core's L2 cache


def _rational(t: Array, num: tuple[float, ...], den: tuple[float, ...], nd: Array) -> Array:
    """CALERF's ratio of polynomials in t, by Horner's rule in place in the work array `nd` (2 × t's size: the
    numerator's row and the denominator's, advanced together, one NumPy call for both per step); returns its first
    row. num[-1]·t is the numerator's leading term and num[-2] its constant; den is monic, den[-1] the constant."""
    np.multiply(t, num[-1], out=nd[0])
    np.copyto(nd[1], t)
    for a, b in zip(num[:-2], den[:-1], strict=True):
        nd += _column(a, b)
        nd *= t
    nd += _column(num[-2], den[-1])
    n = nd[0]
    n /= nd[1]
    return n


@functools.lru_cache(maxsize=64)
def _column(a: float, b: float) -> Array:
    """(a, b) as a 2 × 1 column, added to both rows of `_rational`'s work array at once."""
    column = np.array([[a], [b]])
    column.flags.writeable = False
    return column


def _exp_minus_square(y: Array, w: Array, s: Array, p: Array) -> Array:
    """e^(−y²) for y >= 0 into the work array `w` (`s` and `p` are two more), with y² split as
    y₀² + (y − y₀)(y + y₀), y₀ = y rounded down to 1/16: no rounding error in y². Returns `w`."""
    np.multiply(y, 16.0, out=w)
    np.trunc(w, out=w)
    w /= 16.0  # y₀
    np.subtract(y, w, out=s)  # y − y₀
    s *= np.add(y, w, out=p)  # (y − y₀)(y + y₀)
    np.negative(s, out=s)
    np.exp(s, out=s)
    np.negative(w, out=p)
    w *= p  # y₀·(−y₀) = −y₀·y₀
    np.exp(w, out=w)
    w *= s
    return w


def _erf_chunk(x: Array, out: Array, work: Array, flags: Array) -> None:
    """erf of a float64 vector into `out` (float64, x's length), each branch computed on its own elements only,
    in rows 0-7 of `work` (float64, at least x's length) and in `flags` (bool, 3 rows as long)."""
    m = x.size
    y = np.abs(x, out=work[0, :m])
    np.copysign(1.0, x, out=out)  # |x| >= 6; NaN is put back below
    small = np.less_equal(y, 0.46875, out=flags[0, :m])
    middle = np.greater(y, 0.46875, out=flags[1, :m])
    middle &= np.less_equal(y, 4.0, out=flags[2, :m])
    k = int(np.count_nonzero(small))
    if k:  # x·P(x²)/Q(x²)
        v = np.compress(small, x, out=work[1, :k])
        t = np.multiply(v, v, out=work[2, :k])
        r = _rational(t, _ERF_A, _ERF_B, work[3:5, :k])
        out[small] = np.multiply(v, r, out=r)
    k = int(np.count_nonzero(middle))
    if k:  # 1 − e^(−y²)·P(y)/Q(y)
        v = np.compress(middle, y, out=work[1, :k])
        e = _exp_minus_square(v, work[2, :k], work[3, :k], work[6, :k])
        e *= _rational(v, _ERFC_C, _ERFC_D, work[4:6, :k])
        np.subtract(1.0, e, out=e)
        out[middle] = np.copysign(e, np.compress(middle, x, out=work[6, :k]), out=e)
    tail = np.greater(y, 4.0, out=flags[0, :m])
    tail &= np.less(y, _ERF_IS_ONE, out=flags[1, :m])
    k = int(np.count_nonzero(tail))
    if k:  # 1 − e^(−y²)/y · (1/√π − P(1/y²)/(y²·Q(1/y²)))
        v = np.compress(tail, y, out=work[1, :k])
        t = np.multiply(v, v, out=work[2, :k])
        np.divide(1.0, t, out=t)
        r = _rational(t, _ERFC_P, _ERFC_Q, work[3:5, :k])
        r *= t
        np.subtract(_INV_SQRT_PI, r, out=r)
        e = _exp_minus_square(v, work[5, :k], work[6, :k], work[7, :k])
        e *= r
        e /= v
        np.subtract(1.0, e, out=e)
        out[tail] = np.copysign(e, np.compress(tail, x, out=work[2, :k]), out=e)
    nan = np.isnan(x, out=flags[0, :m])
    if nan.any():
        out[nan] = np.nan


def erf(x: Array) -> Array:
    """The Gauss error function, within 1e-15 relative of libm's in float64; float32 is computed in float64.

    Chunk by chunk (`_ERF_CHUNK` values) in work arrays made once per call: the forty-odd passes of the middle
    branch's rational function run over arrays in cache rather than over the whole tensor in memory, and allocate
    nothing. Each value goes through the same operations in the same order as before: the same numbers to the bit.
    """
    xa = np.asarray(x)
    dtype = xa.dtype if xa.dtype.kind == "f" else np.dtype(np.float64)
    flat = xa.reshape(-1)
    out = np.empty(flat.shape, dtype=dtype)
    work, flags = np.empty((10, min(flat.size, _ERF_CHUNK))), np.empty((3, min(flat.size, _ERF_CHUNK)), dtype=bool)
    wide = dtype == np.float64 and flat.dtype == np.float64
    with np.errstate(all="ignore"):
        for start in range(0, flat.size, _ERF_CHUNK):
            part, into = flat[start: start + _ERF_CHUNK], out[start: start + _ERF_CHUNK]
            if wide:
                _erf_chunk(part, into, work, flags)
            else:  # float32 (float16, integers) in float64, the result rounded once into its dtype
                x64, r64 = work[8, : part.size], work[9, : part.size]
                np.copyto(x64, part, casting="unsafe")
                _erf_chunk(x64, r64, work, flags)
                np.copyto(into, r64, casting="unsafe")
    return out.reshape(xa.shape)


def _sigmoid(z: Array) -> Array:
    # The tutorial's own formula, 1 / (1 + exp(−z)); exp overflows to inf for z < −709, and 1 / inf = 0 is the right
    # limit. Computed in one buffer (the same operations, so the same bits): SiLU runs it on every activation of a
    # YOLO or an EfficientNet, where three temporaries of the activation's size cost more than the arithmetic.
    z = np.asarray(z)
    if z.dtype.kind != "f" or z.ndim == 0:
        return 1.0 / (1.0 + np.exp(-z))
    out = np.negative(z)
    np.exp(out, out=out)
    out += 1.0
    return np.divide(1.0, out, out=out)


@kernel("step")
def step(z: Array) -> Array:
    return (z > 0).astype(z.dtype)


@step.selecting  # torch: no gradient at all, 0 even for an infinite upstream
def _(z: Array, a: Array) -> tuple[Array]:
    return (np.zeros_like(z),)


@kernel("sigmoid")
def sigmoid(z: Array) -> Array:
    return _sigmoid(z)  # 1 / (1 + exp(−z))


@sigmoid.local
def _(z: Array, a: Array) -> tuple[Array]:
    return (a * (1.0 - a),)


@kernel("tanh")
def tanh(z: Array) -> Array:
    return np.tanh(z)


@tanh.local
def _(z: Array, a: Array) -> tuple[Array]:
    return (1.0 - a * a,)


@kernel("relu")
def relu(z: Array) -> Array:
    return np.maximum(z, 0).astype(z.dtype, copy=False)


@relu.selecting  # threshold_backward: where(a <= 0, 0, upstream)
def _(z: Array, a: Array) -> tuple[Array]:
    return ((~(a <= 0)).astype(z.dtype),)  # 1[z > 0], and 1 at z = NaN as torch's (NaN <= 0 is false)


@kernel("leaky_relu")
def leaky_relu(z: Array, negative_slope: float) -> Array:
    return np.where(z > 0, z, negative_slope * z).astype(z.dtype, copy=False)


@leaky_relu.local
def _(z: Array, a: Array, negative_slope: float) -> tuple[Array]:
    return (np.where(z > 0, 1.0, negative_slope).astype(z.dtype),)


def _by_chunks(formula: Callable[[Array], Array], z: Array) -> Array:
    """An elementwise `formula` of z evaluated `_ERF_CHUNK` values at a time: the same operations on every value,
    so the same numbers to the bit, but each of its temporaries a chunk in cache rather than a tensor in memory."""
    z = np.asarray(z)
    if z.size <= _ERF_CHUNK:
        return formula(z)
    flat = z.reshape(-1)
    first = formula(flat[:_ERF_CHUNK])
    out = np.empty(flat.shape, dtype=first.dtype)
    out[:_ERF_CHUNK] = first
    for start in range(_ERF_CHUNK, flat.size, _ERF_CHUNK):
        out[start: start + _ERF_CHUNK] = formula(flat[start: start + _ERF_CHUNK])
    return out.reshape(z.shape)


def _gelu(z: Array) -> Array:
    return 0.5 * z * (1.0 + erf(z * _INV_SQRT_2))


def _gelu_local(z: Array) -> Array:
    cdf = 0.5 * (1.0 + erf(z * _INV_SQRT_2))
    pdf = _INV_SQRT_2PI * np.exp(-0.5 * z * z)
    return cdf + z * pdf


@kernel("gelu")
def gelu(z: Array, approximate: str) -> Array:
    if approximate == "tanh":
        return 0.5 * z * (1.0 + np.tanh(_SQRT_2_OVER_PI * (z + _GELU_C * z**3)))
    return _by_chunks(_gelu, z)


@gelu.local
def _(z: Array, a: Array, approximate: str) -> tuple[Array]:
    if approximate == "tanh":
        t = np.tanh(_SQRT_2_OVER_PI * (z + _GELU_C * z**3))
        return (0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * z * z),)
    return (_by_chunks(_gelu_local, z),)


@kernel("silu")
def silu(z: Array, beta: float) -> Array:
    return z * _sigmoid(beta * z)


@silu.local
def _(z: Array, a: Array, beta: float) -> tuple[Array]:
    # σ(βz)·(1 + βz·(1 − σ(βz))), torch's order, in two buffers (at β = 1): SiLU's backward is the largest
    # elementwise cost of a YOLO's pass, and a third buffer of the activation's size cost more than its arithmetic
    bz = beta * z if beta != 1 else z
    s = _sigmoid(bz)
    if s.ndim == 0:
        return (s * (1.0 + bz * (1.0 - s)),)
    local = np.subtract(1.0, s)
    local *= bz
    local += 1.0
    local *= s
    return (local,)


def _softmax(z: Array, axis: int) -> Array:
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@kernel("softmax")
def softmax(z: Array, axis: int) -> Array:
    return _softmax(z, axis)


@softmax.gradient
def _(g: Array, z: Array, a: Array, axis: int) -> tuple[Array]:
    return (a * (g - np.sum(g * a, axis=axis, keepdims=True)),)


@kernel("log_softmax")
def log_softmax(z: Array, axis: int) -> Array:
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


@log_softmax.gradient
def _(g: Array, z: Array, a: Array, axis: int) -> tuple[Array]:
    return (g - np.exp(a) * np.sum(g, axis=axis, keepdims=True),)


# -- round 2 ------------------------------------------------------------------------------------------
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _as(z: Array, value: Array) -> Array:
    """`value` in z's float dtype: NumPy computes np.where(mask, 1.0, α) in float64 whatever z is."""
    return np.asarray(value).astype(z.dtype, copy=False)


@kernel("clamp")
def clamp(z: Array, min: float | None, max: float | None, inclusive: bool) -> Array:
    # maximum then minimum, as torch.clamp: with min > max every value becomes max
    out = z.copy() if min is None else np.maximum(z, min)
    return _as(z, out if max is None else np.minimum(out, max))


@clamp.selecting  # clamp_backward / hardtanh_backward: where(inside, upstream, 0)
def _(z: Array, a: Array, min: float | None, max: float | None, inclusive: bool) -> tuple[Array]:
    inside = np.ones(z.shape, dtype=bool)
    if min is not None:
        inside &= z >= min if inclusive else z > min
    if max is not None:
        inside &= z <= max if inclusive else z < max
    return (inside.astype(z.dtype),)


@kernel("shrink")
def shrink(z: Array, lambd: float, bias: float) -> Array:
    return _as(z, np.where(z > lambd, z - bias, np.where(z < -lambd, z + bias, 0.0)))


@shrink.selecting  # softshrink_backward / hardshrink_backward: where(−λ ≤ z ≤ λ, 0, upstream)
def _(z: Array, a: Array, lambd: float, bias: float) -> tuple[Array]:
    return (((z > lambd) | (z < -lambd)).astype(z.dtype),)


@kernel("hardswish")
def hardswish(z: Array) -> Array:
    return z * np.minimum(np.maximum(z + 3.0, 0.0), 6.0) / 6.0


@hardswish.local
def _(z: Array, a: Array) -> tuple[Array]:
    # torch's convention at the kinks: 0 at z = −3, 1 at z = 3
    return (_as(z, np.where(z <= -3.0, 0.0, np.where(z < 3.0, z / 3.0 + 0.5, 1.0))),)


@hardswish.keeps
def _(z: Array, a: Array) -> tuple[Array]:
    # hardswish_backward: 0 for z <= −3, upstream · (z/3 + 1/2) above: a product even where that is 0 (z = −1.5)
    return (~(z <= -3.0),)


@kernel("hardsigmoid")
def hardsigmoid(z: Array, alpha: float, beta: float) -> Array:
    return np.minimum(np.maximum(alpha * z + beta, 0.0), 1.0)


# PyTorch's hardsigmoid_backward multiplies by the float32 constant 1.0f / 6.0f even in float64 (0.1666666716...,
# 3e-8 from 1/6). Its own hardsigmoid (α = 1/6) uses the same slope here, so gradients equal torch autograd's.
_TORCH_ONE_SIXTH = float(np.float32(1.0) / np.float32(6.0))


@hardsigmoid.selecting  # hardsigmoid_backward: inside ? upstream · slope : 0
def _(z: Array, a: Array, alpha: float, beta: float) -> tuple[Array]:
    t = alpha * z + beta
    slope = _TORCH_ONE_SIXTH if alpha == 1.0 / 6.0 and beta == 0.5 else alpha
    return (_as(z, np.where((t > 0.0) & (t < 1.0), slope, 0.0)),)


def _elu(z: Array, alpha: float, scale: float, input_scale: float) -> Array:
    return _as(z, np.where(z > 0, scale * z, (scale * alpha) * np.expm1(input_scale * z)))


def _elu_local(z: Array, alpha: float, scale: float, input_scale: float) -> Array:
    # z = 0 takes the negative side, as torch's elu_backward does (it matters for SELU: λ·α there, not λ)
    # (at z = NaN torch's scalar and vectorised elu_backward disagree, upstream × λ or NaN: ours gives NaN)
    return _as(z, np.where(z > 0, scale, (scale * alpha * input_scale) * np.exp(input_scale * z)))


@kernel("elu")
def elu(z: Array, alpha: float, scale: float, input_scale: float) -> Array:
    return _elu(z, alpha, scale, input_scale)


@elu.local
def _(z: Array, a: Array, alpha: float, scale: float, input_scale: float) -> tuple[Array]:
    return (_elu_local(z, alpha, scale, input_scale),)


@kernel("selu")
def selu(z: Array) -> Array:
    return _elu(z, _SELU_ALPHA, _SELU_SCALE, 1.0)


@selu.local
def _(z: Array, a: Array) -> tuple[Array]:
    return (_elu_local(z, _SELU_ALPHA, _SELU_SCALE, 1.0),)


@kernel("celu")
def celu(z: Array, alpha: float) -> Array:
    return _elu(z, alpha, 1.0, 1.0 / alpha)


@celu.local
def _(z: Array, a: Array, alpha: float) -> tuple[Array]:
    return (_elu_local(z, alpha, 1.0, 1.0 / alpha),)


@kernel("softplus")
def softplus(z: Array, beta: float, threshold: float) -> Array:
    bz = beta * z
    return _as(z, np.where(bz > threshold, z, np.log1p(np.exp(bz)) / beta))


@softplus.local
def _(z: Array, a: Array, beta: float, threshold: float) -> tuple[Array]:
    bz = beta * z
    return (_as(z, np.where(bz > threshold, 1.0, _sigmoid(bz))),)


@kernel("mish")
def mish(z: Array) -> Array:
    return z * np.tanh(np.log1p(np.exp(z)))


@mish.local
def _(z: Array, a: Array) -> tuple[Array]:
    t = np.tanh(np.log1p(np.exp(z)))
    return (t + z * _sigmoid(z) * (1.0 - t * t),)


@kernel("erf")
def erf_(z: Array) -> Array:
    return erf(z)


@erf_.local
def _(z: Array, a: Array) -> tuple[Array]:
    return (_TWO_OVER_SQRT_PI * np.exp(-z * z),)


@kernel("softsign")
def softsign(z: Array) -> Array:
    return z / (1.0 + np.abs(z))


@softsign.local
def _(z: Array, a: Array) -> tuple[Array]:
    d = 1.0 + np.abs(z)
    return (1.0 / (d * d),)


@kernel("log_sigmoid")
def log_sigmoid(z: Array) -> Array:
    # min(z, 0) − ln(1 + e^(−|z|)): e^ of a non-positive number never overflows
    return np.minimum(z, 0.0) - np.log1p(np.exp(-np.abs(z)))


@log_sigmoid.local
def _(z: Array, a: Array) -> tuple[Array]:
    return (_sigmoid(-z),)

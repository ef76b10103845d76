"""Elementwise math beyond the four operations: one value in, one value out (or two, broadcasting).

The rounding functions and sign are step functions: their derivative is 0 wherever it exists, and
the debugger shows that honestly (as for the perceptron's step). Where a derivative has a kink or a
tie, the convention is PyTorch's: |a| has slope 0 at 0, maximum and minimum split a tie in half.
"""

from __future__ import annotations

from . import shapes as S
from .opdef import OpDef, define

NO_GRADIENT = "0 (a step function: no gradient flows)"


def _unary(name: str, formula: str, derivative: str, symbol: str, summary: str) -> None:
    define(OpDef(name, ("a",), formula, {"a": derivative}, S.same, symbol, elementwise=True, summary=summary))


def _binary(name: str, formula: str, da: str, db: str, symbol: str, summary: str) -> None:
    define(OpDef(name, ("a", "b"), formula, {"a": da, "b": db}, S.broadcast, symbol, elementwise=True,
                 summary=summary))


_unary("abs", "out = |a|", "∂out/∂a = sign(a)  (0 at a = 0)", "|a|", "absolute value")
_unary("sign", "out = sign(a) ∈ {−1, 0, 1}", f"∂out/∂a = {NO_GRADIENT}", "sgn", "sign: −1, 0 or 1")
_unary("sin", "out = sin a", "∂out/∂a = cos a", "sin", "sine (radians)")
_unary("cos", "out = cos a", "∂out/∂a = −sin a", "cos", "cosine (radians)")
_unary("asin", "out = arcsin a", "∂out/∂a = 1 / √(1 − a²)", "asin", "inverse sine, in [−π/2, π/2] (|a| ≤ 1)")
_unary("acos", "out = arccos a", "∂out/∂a = −1 / √(1 − a²)", "acos", "inverse cosine, in [0, π] (|a| ≤ 1)")
_unary("atan", "out = arctan a", "∂out/∂a = 1 / (1 + a²)", "atan", "inverse tangent, in (−π/2, π/2)")
_unary("sinh", "out = sinh a = (eᵃ − e⁻ᵃ) / 2", "∂out/∂a = cosh a", "sinh", "hyperbolic sine")
_unary("cosh", "out = cosh a = (eᵃ + e⁻ᵃ) / 2", "∂out/∂a = sinh a", "cosh", "hyperbolic cosine")
_unary("asinh", "out = arsinh a = ln(a + √(a² + 1))", "∂out/∂a = 1 / √(a² + 1)", "asinh",
       "inverse hyperbolic sine")
_unary("acosh", "out = arcosh a = ln(a + √(a² − 1))", "∂out/∂a = 1 / √(a² − 1)", "acosh",
       "inverse hyperbolic cosine (a ≥ 1)")
_unary("atanh", "out = artanh a = ½ ln((1 + a) / (1 − a))", "∂out/∂a = 1 / (1 − a²)", "atanh",
       "inverse hyperbolic tangent (|a| < 1)")
_unary("sqrt", "out = √a", "∂out/∂a = 1 / (2√a)", "√", "square root")
_unary("rsqrt", "out = 1 / √a", "∂out/∂a = −1 / (2a√a) = −out³ / 2", "1/√", "reciprocal square root")
_unary("reciprocal", "out = 1 / a", "∂out/∂a = −1 / a²", "1/x", "reciprocal")
_unary("log1p", "out = ln(1 + a)", "∂out/∂a = 1 / (1 + a)", "ln1p", "ln(1 + a), accurate for small a")
_unary("expm1", "out = e^a − 1", "∂out/∂a = e^a", "eˣ−1", "e^a − 1, accurate for small a")
_unary("floor", "out = ⌊a⌋", f"∂out/∂a = {NO_GRADIENT}", "⌊a⌋", "round down to an integer")
_unary("ceil", "out = ⌈a⌉", f"∂out/∂a = {NO_GRADIENT}", "⌈a⌉", "round up to an integer")
_unary("round", "out = round(a)", f"∂out/∂a = {NO_GRADIENT}", "rnd",
       "round to the nearest integer, halves to even (2.5 → 2), as PyTorch and ONNX")

_binary("maximum", "out = max(a, b)", "∂out/∂a = 1 if a > b;  ½ if a = b;  0 if a < b",
        "∂out/∂b = 1 if b > a;  ½ if a = b;  0 if b < a", "max", "elementwise maximum (broadcasting); a tie "
        "splits the gradient in half, as PyTorch")
_binary("minimum", "out = min(a, b)", "∂out/∂a = 1 if a < b;  ½ if a = b;  0 if a > b",
        "∂out/∂b = 1 if b < a;  ½ if a = b;  0 if b > a", "min", "elementwise minimum (broadcasting); a tie "
        "splits the gradient in half, as PyTorch")
_binary("power", "out = a^b", "∂out/∂a = b · a^(b−1)  (0 where b = 0)",
        "∂out/∂b = a^b · ln a  (0 where a = 0 and b ≥ 0)", "aᵇ",
        "a to the power of a tensor b (broadcasting); for a < 0 only whole b give numbers, as in PyTorch")
_binary("atan2", "out = atan2(a, b): the angle of the point (b, a), in (−π, π]", "∂out/∂a = b / (a² + b²)",
        "∂out/∂b = −a / (a² + b²)", "atan2",
        "the angle of (x = b, y = a) from the x axis (torch.atan2(y, x)); at a² + b² = 0 both partials are 0, "
        "as torch's")
_binary("fmod", "out = a − trunc(a / b) · b", "∂out/∂a = 1", "∂out/∂b = −trunc(a / b)", "fmod",
        "remainder of the division truncated toward zero: the sign of a (C's fmod)")
_binary("remainder", "out = a − ⌊a / b⌋ · b", "∂out/∂a = 1", "∂out/∂b = −⌊a / b⌋", "mod",
        "remainder of the division rounded down: the sign of b (Python's %)")


define(OpDef("where", ("cond", "a", "b"), "out = a if cond else b",
             {"a": "∂out/∂a = 1[cond]", "b": "∂out/∂b = 1[not cond]"}, S.broadcast, "?:", elementwise=True,
             nondifferentiable=frozenset({"cond"}),
             summary="pick from a where cond holds (nonzero), else from b, broadcasting all three; cond is "
                     "data (a mask), so no gradient flows into it"))


# -- tests that make masks: data, not trainable values, so no gradient flows through them -----------------
COMPARISONS = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "eq": "=", "ne": "≠"}
LOGICAL = {"and": "∧", "or": "∨", "xor": "⊕", "not": "¬"}

define(OpDef("compare", ("a", "b"), "out = 1[a ⋚ b]  (a boolean mask: true where the comparison holds)", {},
             S.broadcast, "⋚", nondifferentiable=frozenset({"a", "b"}), default_attrs={"op": "gt"},
             summary="elementwise comparison (op: gt, ge, lt, le, eq, ne) giving a boolean mask; a mask is data, "
                     "so no gradient flows through it"))
define(OpDef("logical", ("a", "b"), "out = a ∧ b, a ∨ b, a ⊕ b or ¬a  (boolean masks)", {}, S.broadcast, "∧",
             min_arity=1, nondifferentiable=frozenset({"a", "b"}), default_attrs={"op": "and"},
             summary="logical and / or / xor of two masks, or not of one (op: and, or, xor, not); no gradient"))
define(OpDef("isnan", ("a",), "out = 1[a is NaN]", {}, S.same, "NaN?", nondifferentiable=frozenset({"a"}),
             summary="a mask of the NaN elements (ONNX IsNaN, torch.isnan); no gradient"))
define(OpDef("isinf", ("a",), "out = 1[a = ±∞]", {}, S.same, "∞?", nondifferentiable=frozenset({"a"}),
             default_attrs={"detect_positive": True, "detect_negative": True},
             summary="a mask of the infinite elements (ONNX IsInf with its detect_positive/negative flags); "
                     "no gradient"))

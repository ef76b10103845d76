"""Activation functions: the tutorial's Part 2, each with its derivative as displayed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, ShapeRule, define

Shape = tuple[int, ...]


def _act(name: str, formula: str, derivative: str, symbol: str, summary: str, infer_shape: ShapeRule = S.same,
         **kw: object) -> None:
    define(OpDef(name, ("z",), formula, {"z": derivative}, infer_shape, symbol, out="a", category="activation",
                 elementwise=True, summary=summary, **kw))  # type: ignore[arg-type]


_act("step", "a = 1[z > 0]", "∂a/∂z = 0 (almost everywhere: no gradient flows)", "⌐",
     "Heaviside step, the perceptron's activation")
_act("sigmoid", "a = σ(z) = 1 / (1 + e^(−z))", "∂a/∂z = σ(z)(1 − σ(z))", "σ", "logistic sigmoid")
_act("tanh", "a = tanh(z)", "∂a/∂z = 1 − tanh²(z)", "tanh", "hyperbolic tangent")
_act("relu", "a = max(0, z)", "∂a/∂z = 1[z > 0]", "ReLU", "rectified linear unit")
_act("leaky_relu", "a = z if z > 0 else α·z", "∂a/∂z = 1 if z > 0 else α", "LReLU", "leaky ReLU (α = 0.01)",
     default_attrs={"negative_slope": 0.01})
_act("gelu", "a = z · Φ(z)", "∂a/∂z = Φ(z) + z · φ(z)", "GELU",
     "Gaussian error linear unit (approximate='none' or 'tanh')", default_attrs={"approximate": "none"})
_act("silu", "a = z · σ(βz)", "∂a/∂z = σ(βz) + βz · σ(βz)(1 − σ(βz))", "Swish",
     "Swish / SiLU (β = 1 is PyTorch's SiLU)", default_attrs={"beta": 1.0})

define(OpDef("softmax", ("z",), "a_i = e^(z_i) / Σ_j e^(z_j)",
             {"z": "∂a_i/∂z_j = a_i (δ_ij − a_j);  ∂L/∂z = a ⊙ (∂L/∂a − Σ_j ∂L/∂a_j · a_j)"},
             S.one_axis, "softmax", out="a", category="activation", default_attrs={"axis": -1},
             summary="softmax along an axis"))
define(OpDef("log_softmax", ("z",), "a_i = z_i − log Σ_j e^(z_j)",
             {"z": "∂a_i/∂z_j = δ_ij − softmax(z)_j;  ∂L/∂z = ∂L/∂a − softmax(z) · Σ_j ∂L/∂a_j"},
             S.one_axis, "logσ", out="a", category="activation", default_attrs={"axis": -1},
             summary="log of softmax along an axis, computed stably"))


# -- round 2: the activations of MobileNets, EfficientNets, transformers and the ONNX suite -----------------
def _real(attrs: Mapping[str, Any], name: str, *, optional: bool = False) -> float | None:
    """Attribute `name` as a float, or a ShapeError naming what it got (attributes are plain Python values)."""
    value = attrs.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShapeError(f"attribute {name} must be a number{' or None' if optional else ''}, got {value!r}")
    return float(value)


def _clamp(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    _real(attrs, "min", optional=True)
    _real(attrs, "max", optional=True)
    return S.same(shapes, attrs)


def _numbers(*names: str) -> ShapeRule:
    """A same-shape rule that also checks the numeric attributes `names`."""

    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        for name in names:
            _real(attrs, name)
        return S.same(shapes, attrs)

    return rule


def _celu(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    if _real(attrs, "alpha") == 0.0:
        raise ShapeError("celu's alpha must not be 0 (it divides z)")
    return S.same(shapes, attrs)


def _softplus(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    if _real(attrs, "beta") == 0.0:
        raise ShapeError("softplus's beta must not be 0 (it divides the result)")
    _real(attrs, "threshold")
    return S.same(shapes, attrs)


SELU_ALPHA = 1.6732632423543772  # float64 of torch's SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554805  # float64 of torch's SELU_SCALE = 1.0507009873554804934193349852946

_act("clamp", "a = min(max(z, lo), hi)",
     "∂a/∂z = 1[lo ≤ z ≤ hi]  (1[lo < z < hi] when inclusive is off)", "clamp",
     "clamp / hardtanh / ReLU6: lo = min, hi = max (None: no bound; ReLU6 is lo = 0, hi = 6). The gradient "
     "passes at the bounds as torch.clamp's does; inclusive=False gives hardtanh's and ReLU6's convention "
     "(no gradient exactly at a bound)",
     infer_shape=_clamp, default_attrs={"min": None, "max": None, "inclusive": True})
_act("hardswish", "a = z · min(max(z + 3, 0), 6) / 6",
     "∂a/∂z = 0 if z ≤ −3;  (2z + 3) / 6 if −3 < z < 3;  1 if z ≥ 3", "h-swish",
     "hard swish (MobileNetV3): z times a piecewise-linear sigmoid")
_act("hardsigmoid", "a = min(max(α·z + β, 0), 1)",
     "∂a/∂z = α if 0 < α·z + β < 1, else 0", "h-σ",
     "hard sigmoid: a piecewise-linear sigmoid; α = alpha (PyTorch 1/6, ONNX 0.2), β = beta (0.5)",
     infer_shape=_numbers("alpha", "beta"), default_attrs={"alpha": 1.0 / 6.0, "beta": 0.5})
_act("elu", "a = s·z if z > 0 else s·α·(e^(κ·z) − 1)",
     "∂a/∂z = s if z > 0 else s·α·κ·e^(κ·z)", "ELU",
     "exponential linear unit: α = alpha, s = scale, κ = input_scale (PyTorch's F.elu has s = κ = 1; SELU and "
     "CELU are special cases)",
     infer_shape=_numbers("alpha", "scale", "input_scale"),
     default_attrs={"alpha": 1.0, "scale": 1.0, "input_scale": 1.0})
_act("selu", "a = λ·z if z > 0 else λ·α·(e^z − 1)",
     "∂a/∂z = λ if z > 0 else λ·α·e^z", "SELU",
     f"scaled ELU, self-normalising: λ = {SELU_SCALE}, α = {SELU_ALPHA}")
_act("celu", "a = max(0, z) + min(0, α·(e^(z/α) − 1))",
     "∂a/∂z = 1 if z > 0 else e^(z/α)", "CELU",
     "continuously differentiable ELU: α = alpha (an ELU with κ = 1/α)",
     infer_shape=_celu, default_attrs={"alpha": 1.0})
_act("softplus", "a = (1/β) · ln(1 + e^(β·z)), or z where β·z > t",
     "∂a/∂z = σ(β·z), or 1 where β·z > t", "softplus",
     "smooth ReLU: β = beta, t = threshold (above it a = z, as in PyTorch, so e^(β·z) never overflows)",
     infer_shape=_softplus, default_attrs={"beta": 1.0, "threshold": 20.0})
_act("mish", "a = z · tanh(sp),  sp = ln(1 + e^z)",
     "∂a/∂z = tanh(sp) + z · σ(z) · (1 − tanh²(sp))", "Mish",
     "Mish: z times tanh of softplus(z) (sp is the softplus, σ the sigmoid)")
_act("erf", "a = erf(z) = (2/√π) ∫₀^z e^(−t²) dt",
     "∂a/∂z = (2/√π) · e^(−z²)", "erf", "the Gauss error function (exact GELU is z · (1 + erf(z/√2)) / 2)")
_act("softsign", "a = z / (1 + |z|)", "∂a/∂z = 1 / (1 + |z|)²", "softsign",
     "softsign: a sigmoid-shaped curve with polynomial tails")
_act("log_sigmoid", "a = ln σ(z) = −ln(1 + e^(−z))", "∂a/∂z = 1 − σ(z) = σ(−z)", "ln σ",
     "log of the sigmoid, computed stably")
_act("shrink", "a = z − b if z > λ;  z + b if z < −λ;  0 otherwise",
     "∂a/∂z = 1[z > λ or z < −λ]  (0 in the dead zone, which passes no gradient)", "shrink",
     "shrinkage toward 0: λ = lambd, b = bias; b = λ is softshrink (each side moved λ toward 0), b = 0 "
     "hardshrink (small values cut to 0); ONNX Shrink",
     infer_shape=_numbers("lambd", "bias"), default_attrs={"lambd": 0.5, "bias": 0.0})

"""Activation functions: the tutorial's Part 2, each with its derivative as displayed."""

from __future__ import annotations

from . import shapes as S
from .opdef import OpDef, define


def _act(name: str, formula: str, derivative: str, symbol: str, summary: str, **kw: object) -> None:
    define(OpDef(name, ("z",), formula, {"z": derivative}, S.same, symbol, out="a", category="activation",
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

"""Loss functions: the tutorial's Part 5. Targets and class weights are data: no gradient flows into them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]


def _paired(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    pred, target = shapes
    if tuple(pred) != tuple(target):
        raise ShapeError(f"prediction {S.fmt(pred)} and target {S.fmt(target)} differ in shape")
    return ()


def _loss(name: str, formula: str, derivative: str, rule: Any, symbol: str, summary: str) -> None:
    define(OpDef(name, ("ŷ", "y"), formula, {"ŷ": derivative}, rule, symbol, out="L", category="loss",
                 nondifferentiable=frozenset({"y"}), summary=summary))


_loss("mse", "L = (1/n) Σ (ŷ − y)²", "∂L/∂ŷ = (2/n)(ŷ − y)", _paired, "MSE", "mean squared error")
_loss("sse", "L = ½ Σ (ŷ − y)²", "∂L/∂ŷ = ŷ − y", _paired, "½SSE",
      "one half of the sum of squared errors; its gradient is the tutorial's update rule")
_loss("bce", "L = −(1/n) Σ [y log ŷ + (1 − y) log(1 − ŷ)]", "∂L/∂ŷ = (ŷ − y) / (n ŷ (1 − ŷ))", _paired, "BCE",
      "binary cross-entropy on probabilities")


# -- losses over classes: cross-entropy on logits, negative log-likelihood on log-probabilities ------------
# The classes sit on axis 1 of (N, C, d1, ...) inputs (axis 0 of an unbatched (C,) one), as in torch; the
# target holds one class index per sample and position, and the optional class weights w are data too.
# With reduction 'none' the result is one loss per sample and position, not a scalar: the debugger starts
# its backward pass from a scalar loss, so that variant is its own op, outside the "loss" category.
REDUCTIONS = ("mean", "sum")


def class_axis(ndim: int) -> int:
    """Where the classes are: axis 0 of an unbatched (C,) input, else axis 1."""
    return 0 if ndim == 1 else 1


def _class_target(name: str, shapes: Sequence[Shape], attrs: Mapping[str, Any], probabilities: bool) -> Shape:
    """Check inputs, target and weights of a class loss; returns the shape of the unreduced loss."""
    x, target = tuple(shapes[0]), tuple(shapes[1])
    if not x:
        raise ShapeError(f"{name} takes (classes,) or (batch, classes, ...) inputs, got a scalar")
    axis = class_axis(len(x))
    classes = x[axis]
    per_sample = x[:axis] + x[axis + 1:]
    if target != per_sample and not (probabilities and target == x):
        also = f" or class probabilities {S.fmt(x)}" if probabilities else ""
        raise ShapeError(f"{name}: the target must be class indices {S.fmt(per_sample)}{also}, got {S.fmt(target)}")
    if len(shapes) > 2 and tuple(shapes[2]) != (classes,):
        raise ShapeError(f"{name}: the class weights must be ({classes},), one per class, got {S.fmt(shapes[2])}")
    if not isinstance(attrs.get("ignore_index", -100), int):
        raise ShapeError(f"{name}: ignore_index must be an integer class index, got {attrs.get('ignore_index')!r}")
    smoothing = attrs.get("label_smoothing", 0.0)
    if not isinstance(smoothing, int | float) or not 0.0 <= smoothing <= 1.0:
        raise ShapeError(f"{name}: label_smoothing must be a number in [0, 1], got {smoothing!r}")
    return per_sample


def _reduced(name: str, probabilities: bool) -> Any:
    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        reduction = attrs.get("reduction", "mean")
        if reduction == "none":
            raise ShapeError(f"{name} with reduction='none' gives one loss per sample, not a scalar: "
                             f"use the op {name}_unreduced")
        if reduction not in REDUCTIONS:
            raise ShapeError(f"{name}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        _class_target(name, shapes, attrs, probabilities)
        return ()

    return rule


def _unreduced(name: str, probabilities: bool) -> Any:
    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        return _class_target(name, shapes, attrs, probabilities)

    return rule


IGNORE_INDEX = -100  # torch's default ignore_index: a label that counts nothing (transformers pads labels with it)
_NLL_FORMULA = "ℓ_n = −w_(y_n) · logp[n, y_n]  (y = target, 0 where y_n = ignore_index)"
_NLL_SUMMARY = ("negative log-likelihood of the target classes, on log-probabilities (after log_softmax); "
                "w = the optional class weights (input weight; 1 when absent); samples whose target is "
                "ignore_index count nothing")
define(OpDef(
    "nll_loss", ("logp", "target", "weight"),
    f"L = Σ_n ℓ_n / Σ_n w_(y_n)  (reduction 'mean'; 'sum': L = Σ_n ℓ_n),  {_NLL_FORMULA}",
    {"logp": "∂L/∂logp[n, c] = −w_c · 1[c = y_n] / Σ_n w_(y_n)  ('sum': without the division)"},
    _reduced("nll_loss", probabilities=False), "NLL", out="L", category="loss", min_arity=2,
    nondifferentiable=frozenset({"target", "weight"}), default_attrs={"reduction": "mean", "ignore_index": -100},
    summary=_NLL_SUMMARY,
))
define(OpDef(
    "nll_loss_unreduced", ("logp", "target", "weight"), _NLL_FORMULA,
    {"logp": "∂ℓ_n/∂logp[n, c] = −w_c · 1[c = y_n]"},
    _unreduced("nll_loss", probabilities=False), "NLLₙ", out="ℓ", min_arity=2,
    nondifferentiable=frozenset({"target", "weight"}), default_attrs={"ignore_index": -100},
    summary=_NLL_SUMMARY + "; one loss per sample (nll_loss with reduction='none')",
))

_CE_FORMULA = ("ℓ_n = −Σ_c q_nc · log softmax(ŷ_n)_c,  q_nc = w_c · ((1 − ε) · t_nc + ε/C),  t = onehot(y) "
               "or the target probabilities")
_CE_SUMMARY = ("softmax cross-entropy on logits; y holds class indices (or class probabilities shaped like the "
               "logits); w = the optional class weights (input weight; 1 when absent), ε = label_smoothing, "
               "C = the number of classes; samples whose target is ignore_index count nothing")
define(OpDef(
    "cross_entropy", ("ŷ", "y", "weight"),
    f"L = Σ_n ℓ_n / D  (reduction 'mean': D = Σ_n w_(y_n), or N for probabilities; 'sum': D = 1),  {_CE_FORMULA}",
    {"ŷ": "∂L/∂ŷ_nc = (softmax(ŷ_n)_c · Σ_c' q_nc' − q_nc) / D  "
          "(no weights or smoothing: (softmax(ŷ) − onehot(y)) / N)"},
    _reduced("cross_entropy", probabilities=True), "CE", out="L", category="loss", min_arity=2,
    nondifferentiable=frozenset({"y", "weight"}),
    default_attrs={"reduction": "mean", "ignore_index": -100, "label_smoothing": 0.0},
    summary=_CE_SUMMARY,
))
define(OpDef(
    "cross_entropy_unreduced", ("ŷ", "y", "weight"), _CE_FORMULA,
    {"ŷ": "∂ℓ_n/∂ŷ_nc = softmax(ŷ_n)_c · Σ_c' q_nc' − q_nc"},
    _unreduced("cross_entropy", probabilities=True), "CEₙ", out="ℓ", min_arity=2,
    nondifferentiable=frozenset({"y", "weight"}), default_attrs={"ignore_index": -100, "label_smoothing": 0.0},
    summary=_CE_SUMMARY + "; one loss per sample (cross_entropy with reduction='none')",
))

"""Loss functions: the tutorial's Part 5. The target `y` is data, so no gradient flows into it."""

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


def _cross_entropy(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    logits, target = shapes
    if len(logits) not in (1, 2):
        raise ShapeError(f"logits must be (classes,) or (batch, classes), got {S.fmt(logits)}")
    if logits[-1] < 2:
        raise ShapeError(f"cross-entropy needs at least 2 classes, the logits {S.fmt(logits)} have {logits[-1]}")
    if tuple(target) != tuple(logits) and tuple(target) != tuple(logits[:-1]):
        raise ShapeError(
            f"target must be class indices {S.fmt(logits[:-1])} or one-hot {S.fmt(logits)}, got {S.fmt(target)}"
        )
    return ()


def _loss(name: str, formula: str, derivative: str, rule: Any, symbol: str, summary: str) -> None:
    define(OpDef(name, ("ŷ", "y"), formula, {"ŷ": derivative}, rule, symbol, out="L", category="loss",
                 nondifferentiable=frozenset({"y"}), summary=summary))


_loss("mse", "L = (1/n) Σ (ŷ − y)²", "∂L/∂ŷ = (2/n)(ŷ − y)", _paired, "MSE", "mean squared error")
_loss("sse", "L = ½ Σ (ŷ − y)²", "∂L/∂ŷ = ŷ − y", _paired, "½SSE",
      "one half of the sum of squared errors; its gradient is the tutorial's update rule")
_loss("bce", "L = −(1/n) Σ [y log ŷ + (1 − y) log(1 − ŷ)]", "∂L/∂ŷ = (ŷ − y) / (n ŷ (1 − ŷ))", _paired, "BCE",
      "binary cross-entropy on probabilities")
_loss("cross_entropy", "L = −(1/N) Σ_n log softmax(ŷ_n)[y_n]", "∂L/∂ŷ = (softmax(ŷ) − onehot(y)) / N",
      _cross_entropy, "CE", "softmax cross-entropy on logits; y holds class indices or one-hot rows")

"""Does the data fit the model's output and loss? Checked when a batch is set, before anything runs.

Shapes alone do not say it: 3-class labels {0, 1, 2} reshape to the (N, 1) output of a sigmoid and
train silently into nonsense. These checks read the target's values against what the output can
predict, and say so in one sentence naming both shapes.
"""

from __future__ import annotations

import numpy as np

from ..graph.datasets import DataError
from ..graph.ir import Node
from ..graph.ops.losses import IGNORE_INDEX
from ..graph.ops.shapes import fmt

# outputs whose values lie in [0, 1]: a target outside it cannot be fitted
PROBABILITY_OUTPUTS = frozenset({"sigmoid", "softmax", "step"})
PROBABILITY_LOSSES = frozenset({"bce"})
# losses that add over the samples instead of averaging: compare them per sample
SUM_LOSSES = frozenset({"sse"})


def check_targets(y: np.ndarray, prediction: Node, loss: str, raw_shape: tuple[int, ...]) -> None:
    """Refuse class ids on an output that predicts one value in [0, 1] (`raw_shape`: the target as given).

    Only whole numbers from 0 up to at least 2 are refused: those are labels of three or more classes.
    Other targets outside [0, 1] stay allowed (a generated batch, a property test): the gradients are
    still what they are, and that is what a debugger shows.
    """
    if loss == "cross_entropy":
        return  # class ids are checked against the logits where they are converted (session._class_targets)
    bounded = prediction.op.name in PROBABILITY_OUTPUTS or loss in PROBABILITY_LOSSES
    if not bounded or y.size == 0 or not np.all(np.isfinite(y)):
        return
    low, high = float(np.min(y)), float(np.max(y))
    if low < 0 or high < 2 or not np.all(y == np.round(y)):
        return
    classes = int(high) + 1
    raise DataError(
        f"target 'y' {fmt(raw_shape)} holds class ids 0..{int(high)} ({classes} classes), but the "
        f"{prediction.op.name} output {prediction.name} {fmt(prediction.shape)} predicts one value in [0, 1] "
        f"per sample; use labels 0/1, or a model with {classes} outputs and the cross_entropy loss"
    )


def class_count_error(y: np.ndarray, logits_shape: tuple[int, ...], raw_shape: tuple[int, ...]) -> str:
    """The sentence for class ids that do not fit the logits (both shapes and both class counts named)."""
    classes = logits_shape[1 if len(logits_shape) >= 2 else 0]  # torch: classes on axis 1
    finite = y[np.isfinite(y)]
    if finite.size and np.all(finite == np.round(finite)) and np.all(finite >= 0) and np.all(np.isfinite(y)):
        low, high = int(np.min(finite)), int(np.max(finite))
        from_one = "; counted from 1? class ids start at 0 (subtract 1)" if low == 1 and high == classes else ""
        count = f" ({high + 1} classes)" if low == 0 else ""
        return (f"target 'y' {fmt(raw_shape)} holds class ids {low}..{high}{count}, but the logits "
                f"{fmt(logits_shape)} have {classes} classes; class ids must lie in 0..{classes - 1} ({IGNORE_INDEX}: "
                f"ignored, as torch's){from_one}")
    return (f"target 'y' {fmt(raw_shape)}: class ids must be whole numbers in 0..{classes - 1} for the logits "
            f"{fmt(logits_shape)} ({IGNORE_INDEX}: ignored, as torch's)")


def one_hot_error(raw_shape: tuple[int, ...], logits_shape: tuple[int, ...]) -> str | None:
    """A one-hot target with another class count than the logits, said as such (None when it is not one)."""
    if len(raw_shape) == len(logits_shape) and raw_shape[:-1] == logits_shape[:-1] and raw_shape[-1] > 1:
        return (f"target 'y' {fmt(raw_shape)} is one-hot with {raw_shape[-1]} classes, but the logits "
                f"{fmt(logits_shape)} have {logits_shape[-1]}")
    return None

"""Metrics reported beside the loss: the tutorial's printed MSE, and classification accuracy.

Accuracy reads the classes where the loss takes them: on axis 1 of (N, C, d1, ...) logits as torch's cross-entropy
does (axis 0 of an unbatched (C,) row; a language model's logits read a row per token are (N·T, V)), so a
segmentation map's (N, C, H, W) is scored per pixel against (N, H, W) labels. Binary cross-entropy takes one
probability per element, so its accuracy thresholds every element at 0.5.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..graph.model import class_axis
from ..graph.ops.losses import IGNORE_INDEX

ELEMENTWISE_LOSSES = frozenset({"bce"})  # one probability per element: no class axis to take an argmax over


def mse(pred: np.ndarray, y: np.ndarray) -> float:
    """The tutorial's `np.mean(np.square(y - final_output))`."""
    return float(np.mean(np.square(np.asarray(y, dtype=np.float64).reshape(pred.shape) - pred)))


def accuracy_against(y: np.ndarray, pred_shape: tuple[int, ...], loss: str | None = None
                     ) -> Callable[[np.ndarray], float]:
    """Accuracy of predictions shaped `pred_shape` against the target `y`, which is prepared once (a trainer scores
    every epoch against the same labels): the share of class ids hit by the argmax over the class axis (labels of
    torch's ignore_index count nothing, as in the loss), or of 0/1 decisions at a 0.5 threshold where there is
    one value per decision (a single output, or binary cross-entropy's elements)."""
    pred_shape = tuple(pred_shape)
    y = np.asarray(y)
    axis = class_axis(pred_shape)
    if loss in ELEMENTWISE_LOSSES or not pred_shape or pred_shape[axis] == 1:
        truth = y.reshape(-1) > 0.5

        def thresholded(pred: np.ndarray) -> float:
            return float(np.mean((np.asarray(pred).reshape(-1) > 0.5) == truth))

        return thresholded
    ids_shape = pred_shape[:axis] + pred_shape[axis + 1:]
    # class probabilities (or one-hot rows) shaped like the logits name their class by their argmax
    labels = (np.argmax(y, axis=axis) if y.shape == pred_shape else y).reshape(ids_shape)
    kept = labels != IGNORE_INDEX  # ignored labels (padding) count nothing, as in the loss
    rows = max(1, int(np.count_nonzero(kept)))

    def hit(pred: np.ndarray) -> float:
        return int(np.count_nonzero((np.argmax(pred, axis=axis) == labels) & kept)) / rows

    return hit


def accuracy(pred: np.ndarray, y: np.ndarray, loss: str | None = None) -> float:
    """Share of samples (and positions) classified right: argmax of logits over the class axis, or a 0.5 threshold
    on one probability (see `accuracy_against`)."""
    pred = np.asarray(pred)
    return accuracy_against(y, pred.shape, loss)(pred)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"mse": mse, "accuracy": accuracy}

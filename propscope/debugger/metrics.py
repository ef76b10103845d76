"""Metrics reported beside the loss: the tutorial's printed MSE, and classification accuracy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..graph.ops.losses import IGNORE_INDEX


def mse(pred: np.ndarray, y: np.ndarray) -> float:
    """The tutorial's `np.mean(np.square(y - final_output))`."""
    return float(np.mean(np.square(np.asarray(y, dtype=np.float64).reshape(pred.shape) - pred)))


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Share of samples classified right: argmax of logits, or a 0.5 threshold on one probability."""
    pred = np.asarray(pred)
    y = np.asarray(y)
    if pred.ndim >= 1 and pred.shape[-1] > 1:
        labels = (y if y.shape != pred.shape else np.argmax(y, axis=-1)).reshape(pred.shape[:-1])
        kept = labels != IGNORE_INDEX  # ignored labels (padding) count nothing, as in the loss
        right = np.argmax(pred, axis=-1) == labels
        return float(np.count_nonzero(right & kept)) / max(1, int(np.count_nonzero(kept)))
    return float(np.mean((pred.reshape(-1) > 0.5) == (y.reshape(-1) > 0.5)))


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"mse": mse, "accuracy": accuracy}

"""The model's output over its input space, for the output view: a plane for 2-D inputs, a line for 1-D.

It only calls the model: the network without its loss, refitted to the grid's size and compiled by
the session's backend, run with whatever parameters it is given (the trainer's live ones while
training runs). Cross-entropy logits are turned into class probabilities, the one step that makes
the picture mean what the loss means. No Qt here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...graph.model import fit_batch

PLANE_RESOLUTION = 80  # grid points a side: 6,400 predictions, a fraction of a millisecond on dense nets
LINE_POINTS = 200


def _softmax(z: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):  # a diverged model's inf logits give NaN, which the view shows as no data
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def _extent(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The data's bounding box with a margin, so that points never sit on the edge."""
    finite = points[np.all(np.isfinite(points), axis=1)]
    if not len(finite):
        return np.full(points.shape[1], -1.0), np.full(points.shape[1], 1.0)
    low, high = finite.min(axis=0), finite.max(axis=0)
    pad = np.maximum(0.12 * (high - low), 0.25)
    return low - pad, high + pad


class OutputGrid:
    """`kind` is "plane", "line" or None (then `reason` says why the view has nothing to draw)."""

    def __init__(self, session: Any, x: np.ndarray, x_test: np.ndarray | None = None,
                 resolution: int = PLANE_RESOLUTION) -> None:
        self.session = session
        self.backend = session.backend  # the program below is compiled for this one
        self.kind: str | None = None
        self.reason = ""
        graph = session.model.graph
        inputs = graph.inputs
        if len(inputs) != 1 or len(inputs[0].shape) != 2 or inputs[0].shape[-1] not in (1, 2):
            self.reason = "The output view draws networks with one input of 1 or 2 features per sample."
            return
        self.input = inputs[0].name
        features = inputs[0].shape[-1]
        points = np.asarray(x, dtype=np.float64).reshape(-1, features)
        if x_test is not None and len(x_test):
            points = np.concatenate([points, np.asarray(x_test, dtype=np.float64).reshape(-1, features)])
        self.low, self.high = _extent(points)
        if features == 2:
            self.kind = "plane"
            self.xs = np.linspace(self.low[0], self.high[0], resolution)
            self.ys = np.linspace(self.low[1], self.high[1], resolution)
            gx, gy = np.meshgrid(self.xs, self.ys)  # row i is y = ys[i]: image rows run along y
            self.points = np.stack([gx.ravel(), gy.ravel()], axis=1)
        else:
            self.kind = "line"
            self.xs = np.linspace(self.low[0], self.high[0], LINE_POINTS)
            self.points = self.xs[:, None]
        backend = session.backend
        try:
            self.graph = fit_batch(graph, {self.input: self.points})
        except Exception as exc:  # a graph that cannot take another batch size (a fixed reshape)
            self.kind, self.reason = None, f"The output view cannot run this network on a grid: {exc}"
            return
        out_shape = self.graph.output.shape
        if len(out_shape) != 2 or out_shape[0] != len(self.points):
            self.kind, self.reason = None, "The output view draws networks whose output is one row per sample."
            return
        self.program = backend.compile(self.graph)
        self.grid_leaf = backend.asarray(self.points)
        self.classes = int(self.graph.output.shape[-1])

    def evaluate(self, params: Mapping[str, Any] | None = None) -> np.ndarray:
        """The model's output at every grid point, (points, outputs); probabilities for cross-entropy."""
        s = self.session
        leaves = dict(s.params)
        if params:
            leaves.update(params)
        leaves[self.input] = self.grid_leaf
        out = np.asarray(s.backend.to_numpy(self.program.predict(leaves)), dtype=np.float64)
        out = out.reshape(len(self.points), -1)
        return _softmax(out) if s.loss_name == "cross_entropy" else out

    def image(self, out: np.ndarray) -> np.ndarray:
        """`evaluate`'s plane output as (rows along y, columns along x, outputs)."""
        return out.reshape(len(self.ys), len(self.xs), -1)

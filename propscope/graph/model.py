"""`Model`: a graph plus what it needs to run: leaf values, a default batch, a default loss."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .errors import GraphError, ShapeError
from .ir import Graph, Node
from .ops import LOSSES
from .ops.shapes import fmt

TARGET = "y"


@dataclass
class TrainingDefaults:
    """The settings an example trains with unless the user says otherwise."""

    optimizer: str = "sgd"
    lr: float = 0.1
    epochs: int = 100
    batch_size: int | None = None


@dataclass
class Model:
    """What a model file or an example holds.

    `graph` is the network without a loss; `arrays` holds parameter and constant values by node
    name; `batch` holds a default batch by input name (the target under `y`).
    """

    graph: Graph
    arrays: dict[str, np.ndarray]
    batch: dict[str, np.ndarray] = field(default_factory=dict)
    loss: str | None = None
    metrics: tuple[str, ...] = ()
    training: TrainingDefaults = field(default_factory=TrainingDefaults)
    description: str = ""
    dataset: tuple[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        for node in self.graph.leaves:
            if node.op.name != "input" and node.name not in self.arrays:
                raise GraphError(f"{node.op.name} {node.name!r} has no value in the model")

    @property
    def parameters(self) -> dict[str, np.ndarray]:
        return {n.name: self.arrays[n.name] for n in self.graph.parameters}

    def with_graph(self, graph: Graph) -> Model:
        return replace(self, graph=graph)


def attach_loss(graph: Graph, loss: str, target_shape: tuple[int, ...] | None = None) -> Graph:
    """A copy of `graph` with a target input `y` and a `loss` node on its first output."""
    if loss not in LOSSES:
        raise GraphError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")
    new = graph.copy()
    pred = new.output
    if target_shape is None:
        target_shape = pred.shape[:-1] if loss == "cross_entropy" else pred.shape
    target = new.input(TARGET, target_shape, role="target")
    node = new.add(loss, pred, target, name="loss")
    new.set_outputs(node)
    return new


def fit_batch(graph: Graph, batch: Mapping[str, np.ndarray]) -> Graph:
    """`graph` rebuilt for this batch's sizes, or a ShapeError saying expected and got.

    Only the leading (batch) dimension may differ from the graph's declared input shapes.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for node in graph.inputs:
        if node.name not in batch:
            raise ShapeError(f"the data has no array for input {node.name!r} (expected shape {fmt(node.shape)})")
        got = tuple(np.shape(batch[node.name]))
        want = node.shape
        if got == want:
            continue
        if len(got) != len(want) or not want or got[1:] != want[1:]:
            raise ShapeError(f"input {node.name!r}: expected shape {fmt(want)}, got {fmt(got)}")
        shapes[node.name] = got
    if not shapes:
        return graph
    try:
        return graph.copy(input_shapes=shapes)
    except ShapeError as exc:  # a new size that the ops cannot take (a 1-D input has no batch axis)
        fits = "; ".join(f"input {k!r}: expected shape {fmt(graph[k].shape)}, got {fmt(v)}" for k, v in shapes.items())
        raise ShapeError(f"{fits} ({exc})") from None


def output_node(graph: Graph) -> Node:
    """The prediction: the loss's first input when a loss is attached, else the first output."""
    out = graph.output
    return out.inputs[0] if out.op.is_loss else out

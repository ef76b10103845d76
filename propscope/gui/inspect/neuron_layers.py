"""Reading a dense network's layers out of the op graph, for the neuron view. No Qt here.

A layer is a `linear` op (or a `matmul`, optionally followed by an `add` of a bias) fed by the
previous layer, optionally followed by one activation. The chain must run from the input to the
prediction with nothing else in between; any other graph gets a sentence saying why not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...graph.ir import Graph, Node
from ...graph.model import TARGET, output_node

MAX_NEURONS = 64  # the most neurons a column draws; a wider layer shows its ends (`shown_neurons`)


class NotDense(Exception):
    """The graph is not a plain chain of dense layers; the message says what stands in the way."""


@dataclass(frozen=True)
class DenseLayer:
    """One column of neurons. The input layer has neither `pre` nor `weight`; its values come from `act`."""

    label: str
    size: int
    act: str | None  # the node holding the activations (the input node for the input layer)
    pre: str | None = None  # the node holding the pre-activations z
    weight: str | None = None  # the parameter joining the previous layer to this one
    transpose: bool = False  # weight stored (out, in), as nn.Linear stores it
    bias: str | None = None

    @property
    def nodes(self) -> tuple[str, ...]:
        """The graph nodes whose steps light this layer up."""
        return tuple(n for n in (self.pre, self.act) if n is not None)

    def weight_matrix(self, w: Any) -> np.ndarray:
        """The weight as (inputs, neurons), whatever way it is stored."""
        w = np.asarray(w, dtype=np.float64)
        if w.ndim == 1:
            return w[:, None]
        return w.T if self.transpose else w


def _width(node: Node) -> int:
    return int(node.shape[-1]) if node.shape else 1


def _param(node: Node) -> bool:
    return node.op.name == "parameter"


def _users(graph: Graph, node: Node) -> list[Node]:
    return [u for u in graph.users(node) if not u.op.is_loss]


def _next_layer(graph: Graph, cur: Node) -> tuple[Node, Node, Node | None, bool]:
    """(node with z, weight, bias, transpose) of the dense layer `cur` feeds, or NotDense."""
    users = _users(graph, cur)
    if len(users) != 1:
        names = ", ".join(u.name for u in users[:3]) + (", …" if len(users) > 3 else "") or "nothing"
        raise NotDense(f"{cur.name!r} feeds {names}; the neuron view draws one chain of dense layers.")
    op = users[0]
    if op.op.name == "linear" and op.inputs[0] is cur and _param(op.inputs[1]):
        bias = op.inputs[2] if len(op.inputs) > 2 and _param(op.inputs[2]) else None
        return op, op.inputs[1], bias, bool(op.attrs.get("transpose_weight", False))
    if op.op.name == "matmul" and op.inputs[0] is cur and _param(op.inputs[1]):
        after = _users(graph, op)
        if len(after) == 1 and after[0].op.name == "add" and op in after[0].inputs:
            other = next(i for i in after[0].inputs if i is not op)
            if _param(other):
                return after[0], op.inputs[1], other, False
        return op, op.inputs[1], None, False
    raise NotDense(f"{op.op.name} {op.name!r} is not a dense layer; the neuron view draws networks made of "
                   "linear layers and activations.")


def dense_layers(graph: Graph) -> list[DenseLayer]:
    """The layers from the input to the prediction, or NotDense saying why the graph is not one such chain."""
    inputs = [n for n in graph.inputs if n.name != TARGET]
    if len(inputs) != 1:
        raise NotDense(f"the network has {len(inputs)} inputs; the neuron view draws networks with one.")
    end = output_node(graph)
    cur = inputs[0]
    layers = [DenseLayer(cur.name, _width(cur), cur.name)]
    while cur is not end:
        pre, weight, bias, transpose = _next_layer(graph, cur)
        after = _users(graph, pre)
        act = after[0] if len(after) == 1 and after[0].op.category == "activation" else None
        size = _width(pre)
        shape = weight.shape
        rows = shape[0] if len(shape) == 1 else shape[1] if transpose else shape[0]
        if len(shape) > 2 or rows != layers[-1].size:
            raise NotDense(f"the weight {weight.name!r} {weight.shape} does not join {layers[-1].size} neurons "
                           f"to {size}.")
        label = act.name if act is not None else pre.name
        layers.append(DenseLayer(label, size, act.name if act else None, pre.name, weight.name, transpose,
                                 bias.name if bias else None))
        cur = act or pre
    return layers


def shown_neurons(size: int, room: int, mark: int = 1) -> list[int | None]:
    """The neurons a column of `size` draws in `room` places: all of them, or the first and the last ones with None
    between, the "⋮ n" mark that takes `mark` places (numpy prints a long array so: the ends are where one looks)."""
    room = min(room, MAX_NEURONS)
    if size <= room:
        return list(range(size))
    neurons = max(2, room - mark)
    head = (neurons + 1) // 2
    return [*range(head), None, *range(size - (neurons - head), size)]


def strongest_inputs(values: np.ndarray, keep: int) -> np.ndarray:
    """A mask over (inputs, neurons): the `keep` largest |values| into each neuron, a non-finite value first of all
    (a NaN weight is what the reader must see)."""
    magnitude = np.where(np.isfinite(values), np.abs(values), np.inf)
    if keep >= values.shape[0]:
        return np.ones(values.shape, dtype=bool)
    # argpartition: the k largest per column without sorting all of them (a column of a wide layer is long)
    top = np.argpartition(-magnitude, keep - 1, axis=0)[:keep]
    mask = np.zeros(values.shape, dtype=bool)
    np.put_along_axis(mask, top, True, axis=0)
    return mask


def thinned_titles(count: int, step: int) -> list[int]:
    """Which of `count` column titles to draw when only every `step`-th fits: the first, every step-th, and the last
    (in place of the one before it when the two would be closer than `step`), never two closer than `step`."""
    if step <= 1:
        return list(range(count))
    shown = list(range(0, count, step))
    if count - 1 - shown[-1] >= step:
        shown.append(count - 1)
    elif len(shown) > 1:
        shown[-1] = count - 1  # the output's title rather than the one before it
    return shown


def per_neuron(value: Any, sample: int, size: int) -> np.ndarray | None:
    """One sample's values of a layer: row `sample` of a batch, or the whole vector when there is no batch axis."""
    if value is None:
        return None
    a = np.asarray(value, dtype=np.float64)
    if a.ndim >= 2:
        a = a[min(sample, len(a) - 1)]
    a = a.reshape(-1)
    return a[:size] if a.size >= size else None


def sample_count(graph: Graph, layers: list[DenseLayer]) -> int:
    shape = graph[layers[0].act].shape if layers and layers[0].act else ()
    return int(shape[0]) if len(shape) >= 2 else 1

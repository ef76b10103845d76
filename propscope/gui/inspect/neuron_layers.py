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

MAX_NEURONS = 64  # a layer wider than this is an unreadable mass of lines


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


def too_wide(layers: list[DenseLayer]) -> str | None:
    """A sentence when some layer is wider than the view draws, else None."""
    wide = [layer for layer in layers if layer.size > MAX_NEURONS]
    if not wide:
        return None
    listed = ", ".join(f"{layer.label} ({layer.size})" for layer in wide)
    return (f"The neuron view draws up to {MAX_NEURONS} neurons a layer; {listed} "
            f"{'is' if len(wide) == 1 else 'are'} wider. The op graph and the inspector show every value.")


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

""" "Explain this gradient": every path from one element to the loss, and their sum.

The chain rule at element level: dL/dw = Σ over paths of the product of the local
derivatives along the path. Each op's element-level Jacobian is read off the backend's own
VJP with one-hot upstream gradients, so the explanation checks the backend rather than
repeating it. Which entries are *paths* (structure) is decided separately from their values,
so a path through an input of zero (x = 0) still shows, with its product 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..graph.errors import PropscopeError
from ..graph.ir import Node
from .trace import gradient_reaches

if TYPE_CHECKING:
    from .session import Session

MAX_JACOBIAN_ROWS = 20_000  # one VJP per output element: beyond this, explain refuses rather than stalls
Index = tuple[int, ...]


class ExplainError(PropscopeError):
    pass


@dataclass(frozen=True)
class Factor:
    """One local derivative on a path: ∂ consumer[element] / ∂ input[input_element]."""

    consumer: str
    element: Index
    input: str
    input_element: Index
    formula: str
    value: float

    def label(self) -> str:
        return f"∂{_elem(self.consumer, self.element)}/∂{_elem(self.input, self.input_element)} = {_num(self.value)}"


@dataclass(frozen=True)
class GradientPath:
    factors: tuple[Factor, ...]  # from the explained element up to the loss

    @property
    def product(self) -> float:
        return math.prod(f.value for f in self.factors)

    def text(self) -> str:
        return " × ".join(_num(f.value) for f in self.factors) + f" = {_num(self.product)}"


@dataclass
class Explanation:
    name: str
    index: Index
    paths: list[GradientPath]
    total_paths: int
    path_sum: float  # the sum over ALL paths, listed or not
    computed: float  # the gradient the backend computed for this element
    omitted_sum: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def omitted(self) -> int:
        return self.total_paths - len(self.paths)

    def agrees(self, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
        return math.isclose(self.path_sum, self.computed, rel_tol=rtol, abs_tol=atol)

    def text(self) -> str:
        lines = [f"dL/d{_elem(self.name, self.index)}: {self.total_paths} path(s) to the loss"]
        for i, path in enumerate(self.paths, 1):
            hops = [_elem(self.name, self.index)] + [_elem(f.consumer, f.element) for f in path.factors]
            lines.append(f"  path {i}: " + " → ".join(hops))
            lines.append(f"          {path.text()}")
        if self.omitted:
            lines.append(f"  … {self.omitted} more path(s) not listed, summing to {_num(self.omitted_sum)}")
        verdict = "equals" if self.agrees() else "DIFFERS FROM"
        lines.append(f"  sum of paths = {_num(self.path_sum, 10)} {verdict} the computed gradient "
                     f"{_num(self.computed, 10)}")
        return "\n".join(lines)


def _num(value: float, digits: int = 6) -> str:
    """A number to `digits` significant digits; a zero is "0" whatever its sign (IEEE's -0.0 is no lesson)."""
    return f"{value + 0.0:.{digits}g}"


def _elem(name: str, index: Index) -> str:
    return f"{name}[{', '.join(map(str, index))}]" if index else name


class _Jacobians:
    """Element-level Jacobians of (consumer, input position), built lazily from the backend's VJP."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.trace = session.trace
        self.backend = session.backend
        self.rng = np.random.default_rng(0)
        self.cache: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def get(self, consumer: Node, position: int) -> tuple[np.ndarray, np.ndarray]:
        key = (consumer.name, position)
        if key not in self.cache:
            inputs = [self.trace.values[a.name] for a in consumer.inputs]
            values = self._rows(consumer, inputs, position)
            if consumer.op.elementwise:
                structure = self._broadcast_structure(consumer, position)
            else:
                probe = [self._probe(consumer, i, v) for i, v in enumerate(inputs)]
                structure = self._rows(consumer, probe, position) != 0
            self.cache[key] = (values, structure | (values != 0))
        return self.cache[key]

    def _rows(self, node: Node, inputs: list[Any], position: int) -> np.ndarray:
        """J[o, i] = ∂ node[o] / ∂ input[i], one VJP per output element o."""
        size = int(np.prod(node.shape, dtype=np.int64))
        if size > MAX_JACOBIAN_ROWS:
            raise ExplainError(
                f"{node.name} has {size} elements; explaining through it element by element is too large"
            )
        out = self.backend.forward(node, inputs)
        in_size = int(np.prod(node.inputs[position].shape, dtype=np.int64))
        jac = np.zeros((size, in_size))
        onehot = np.zeros(size)
        for o in range(size):
            onehot[o] = 1.0
            grads = self.backend.vjp(node, inputs, out, self.backend.asarray(onehot.reshape(node.shape)))
            onehot[o] = 0.0
            g = grads[position]
            if g is not None:
                jac[o] = np.asarray(self.backend.to_numpy(g), dtype=np.float64).reshape(-1)
        return jac

    def _probe(self, node: Node, position: int, value: Any) -> Any:
        """A generic stand-in for an input, so the structure does not depend on the actual numbers."""
        if not node.op.differentiable(position):
            return value
        shape = node.inputs[position].shape
        return self.backend.asarray(self.rng.uniform(0.1, 0.9, size=shape))

    def _broadcast_structure(self, node: Node, position: int) -> np.ndarray:
        out_shape, in_shape = node.shape, node.inputs[position].shape
        in_index = np.arange(int(np.prod(in_shape, dtype=np.int64))).reshape(in_shape)
        mapped = np.broadcast_to(in_index, out_shape).reshape(-1)
        structure = np.zeros((mapped.size, in_index.size), dtype=bool)
        structure[np.arange(mapped.size), mapped] = True
        return structure


def explain(session: Session, name: str, index: Index | int = (), max_paths: int = 200) -> Explanation:
    loss = session.loss_node
    if loss is None:
        raise ExplainError("explain needs a loss; this session runs forward only")
    node = session.graph[name]
    index = (index,) if isinstance(index, int) else tuple(index)
    if len(index) != len(node.shape) or any(not 0 <= i < d for i, d in zip(index, node.shape, strict=False)):
        raise ExplainError(f"{_elem(name, index)} is not an element of {name} with shape {node.shape}")
    relevant = gradient_reaches(loss)
    if name not in relevant:
        raise ExplainError(f"{name} does not lead to the loss: its gradient is zero by definition")
    session.trace.compute_through(len(session.steps) - 1)
    jac = _Jacobians(session)
    graph = session.graph

    def edges(n: Node, flat: int) -> list[tuple[Node, int, Factor]]:
        out = []
        for consumer in graph.users(n):
            if consumer.name not in relevant:
                continue
            for pos, a in enumerate(consumer.inputs):
                if a is not n or not consumer.op.differentiable(pos):
                    continue
                values, structure = jac.get(consumer, pos)
                for o in np.flatnonzero(structure[:, flat]):
                    factor = Factor(
                        consumer.name,
                        _unravel(int(o), consumer.shape),
                        n.name,
                        _unravel(flat, n.shape),
                        consumer.op.derivative(pos),
                        float(values[o, flat]),
                    )
                    out.append((consumer, int(o), factor))
        return out

    adjoint: dict[tuple[str, int], tuple[float, int]] = {(loss.name, 0): (1.0, 1)}

    def total(n: Node, flat: int) -> tuple[float, int]:
        """(Σ of path products, number of paths) from (n, flat) to the loss, memoised."""
        key = (n.name, flat)
        if key not in adjoint:
            s, count = 0.0, 0
            for consumer, o, factor in edges(n, flat):
                sub_sum, sub_count = total(consumer, o)
                s += factor.value * sub_sum
                count += sub_count
            adjoint[key] = (s, count)
        return adjoint[key]

    start = int(np.ravel_multi_index(index, node.shape)) if index else 0
    path_sum, total_paths = total(node, start)
    paths: list[GradientPath] = []

    def walk(n: Node, flat: int, prefix: tuple[Factor, ...]) -> None:
        if len(paths) >= max_paths:
            return
        if n is loss:
            paths.append(GradientPath(prefix))
            return
        for consumer, o, factor in edges(n, flat):
            walk(consumer, o, (*prefix, factor))

    walk(node, start, ())
    grad = session.backend.to_numpy(session.trace.final_grads()[name])
    computed = float(np.asarray(grad).reshape(-1)[start])
    shown = sum(p.product for p in paths)
    return Explanation(name, index, paths, total_paths, path_sum, computed, omitted_sum=path_sum - shown)


def _unravel(flat: int, shape: tuple[int, ...]) -> Index:
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()

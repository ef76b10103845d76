""" "Explain this gradient": every path from one element to the loss, and their sum.

The chain rule at element level: dL/dw = Σ over paths of the product of the local
derivatives along the path. Each op's element-level Jacobian is read off the backend's own
VJP with one-hot upstream gradients, so the explanation checks the backend rather than
repeating it. Which entries are *paths* (structure) is decided separately from their values,
so a path through an input of zero (x = 0) still shows, with its product 0.

Memory and time are bounded: an op's whole Jacobian is built only where it is small, else the
columns an element needs are made one by one (`_Jacobians`); past `EXPLAIN_SECONDS` explain
refuses in one sentence, saying how far the paths fanned out. Before any of that, `explain_cost`
follows the element's reach through the graph (one forward pass of each op it reaches, on the
probe values) and counts the VJPs and forward passes the explanation would need at the least: an
element whose paths fan out over a real CNN (an early convolution's weight: thousands of elements
in every later layer) is refused at once, naming a parameter nearer the loss that can be explained.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..graph.errors import PropscopeError
from ..graph.ir import Node
from .trace import gradient_reaches

if TYPE_CHECKING:
    from .session import Session

MAX_JACOBIAN_ROWS = 20_000  # an op's whole Jacobian is built (one VJP per output element) up to this many rows
MAX_JACOBIAN_ELEMENTS = 4_000_000  # ... and this many entries (32 MB in float64); beyond, column by column
DENSE_AT_ONCE = 512  # an op whose whole Jacobian costs at most this many VJPs gets it at once
EXPLAIN_SECONDS = 20.0  # past this, explain refuses (in one sentence) rather than stalls
ESTIMATE_REFUSES_ABOVE = EXPLAIN_SECONDS  # an estimate past this refuses before any of the work is done
SUGGESTIONS_TRIED = 4  # parameters nearest the loss whose cost is estimated, for the refusal to name one
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
    """Columns of element-level Jacobians: for one element of an op's input, the output elements it reaches and
    ∂output[o]/∂input[element] for each, read off the backend's VJP with one-hot upstream gradients.

    An op's whole Jacobian costs one VJP per output element and serves every column; one column costs a VJP per
    output the element reaches (one row of a convolution's Jacobian against its weight is one VJP), plus two
    forward passes to find which those are (a generic probe with the element moved, and the actual inputs with it
    nudged, for ops that pick: max pooling's argmax). So an op starts column by column and builds its whole
    Jacobian once the columns have cost as much, where it fits (`MAX_JACOBIAN_ROWS` outputs and
    `MAX_JACOBIAN_ELEMENTS` entries: one convolution of ResNet-18 against its weight would be 512 × 2.36M float64,
    9.7 GB). An elementwise op's local derivatives, where no input is broadcast, are one VJP with upstream ones.
    Every VJP and forward checks the deadline: explain refuses rather than stalls.
    """

    def __init__(self, session: Session, deadline: float) -> None:
        self.session = session
        self.trace = session.trace
        self.backend = session.backend
        self.rng = np.random.default_rng(0)
        self.deadline = deadline
        self.dense: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        self.diagonals: dict[tuple[str, int], np.ndarray] = {}
        self.columns: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.spent: dict[tuple[str, int], int] = {}  # VJPs and forwards spent on an op's columns one by one
        self.probes: dict[str, list[Any]] = {}
        self.outputs: dict[tuple[str, bool], np.ndarray] = {}
        self.calls = 0  # VJPs and forwards run, for the refusal's sentence

    def column(self, consumer: Node, position: int, flat: int) -> tuple[np.ndarray, np.ndarray]:
        """(the output elements o that input element `flat` of `consumer`'s input `position` reaches,
        ∂consumer[o]/∂input[flat] for each)."""
        key = (consumer.name, position)
        if consumer.op.elementwise and tuple(consumer.inputs[position].shape) == tuple(consumer.shape):
            if key not in self.diagonals:
                self.diagonals[key] = self._diagonal(consumer, position)
            return np.array([flat]), self.diagonals[key][flat : flat + 1]
        out_size = _size(consumer.shape)
        whole = out_size if consumer.op.elementwise else 2 * out_size  # VJPs for values (and structure)
        in_size = _size(consumer.inputs[position].shape)
        fits = out_size <= MAX_JACOBIAN_ROWS and out_size * in_size <= MAX_JACOBIAN_ELEMENTS
        if key in self.dense or (fits and self.spent.get(key, 0) + DENSE_AT_ONCE >= whole):
            values, structure = self._dense(consumer, position)
            rows = np.flatnonzero(structure[:, flat])
            return rows, values[rows, flat]
        if (key[0], key[1], flat) not in self.columns:
            before = self.calls
            rows = self._reached(consumer, position, flat)
            self.columns[(key[0], key[1], flat)] = (rows, self._column_values(consumer, position, flat, rows))
            self.spent[key] = self.spent.get(key, 0) + self.calls - before
        return self.columns[(key[0], key[1], flat)]

    def _tick(self) -> None:
        self.calls += 1
        if time.monotonic() > self.deadline:
            raise _OutOfTime

    def _inputs(self, consumer: Node) -> list[Any]:
        return [self.trace.values[a.name] for a in consumer.inputs]

    def _dense(self, consumer: Node, position: int) -> tuple[np.ndarray, np.ndarray]:
        key = (consumer.name, position)
        if key not in self.dense:
            values = self._rows(consumer, self._inputs(consumer), position)
            if consumer.op.elementwise:
                structure = self._broadcast_structure(consumer, position)
            else:
                structure = self._rows(consumer, self._probe(consumer), position) != 0
            self.dense[key] = (values, structure | (values != 0))
        return self.dense[key]

    def _rows(self, node: Node, inputs: list[Any], position: int) -> np.ndarray:
        """J[o, i] = ∂ node[o] / ∂ input[i], one VJP per output element o."""
        size = _size(node.shape)
        jac = np.zeros((size, _size(node.inputs[position].shape)))
        for o, g in zip(range(size), self._vjp_rows(node, inputs, position, range(size)), strict=True):
            if g is not None:
                jac[o] = g
        return jac

    def _vjp_rows(self, node: Node, inputs: list[Any], position: int,
                  rows: Iterable[int]) -> Iterator[np.ndarray | None]:
        """Row o of J = ∂ node / ∂ input (flat, float64; None where the input gets no gradient) for each o in `rows`:
        one VJP with a one-hot upstream each."""
        out = self.backend.forward(node, inputs)
        onehot = np.zeros(_size(node.shape))
        for o in rows:
            self._tick()
            onehot[o] = 1.0
            grads = self.backend.vjp(node, inputs, out, self.backend.asarray(onehot.reshape(node.shape)))
            onehot[o] = 0.0
            g = grads[position]
            yield None if g is None else np.asarray(self.backend.to_numpy(g), dtype=np.float64).reshape(-1)

    def _diagonal(self, node: Node, position: int) -> np.ndarray:
        """∂ node[i] / ∂ input[i] for every i of an elementwise op whose input has the output's shape: one VJP with
        upstream ones (each output reads only its own element of that input)."""
        inputs = self._inputs(node)
        self._tick()
        out = self.backend.forward(node, inputs)
        grads = self.backend.vjp(node, inputs, out, self.backend.asarray(np.ones(node.shape)))
        g = grads[position]
        if g is None:
            return np.zeros(_size(node.shape))
        return np.asarray(self.backend.to_numpy(g), dtype=np.float64).reshape(-1)

    def _column_values(self, node: Node, position: int, flat: int, rows: np.ndarray) -> np.ndarray:
        """∂ node[o] / ∂ input[flat] for each o in `rows`: one VJP per row."""
        values = np.zeros(len(rows))
        for k, g in enumerate(self._vjp_rows(node, self._inputs(node), position, rows)):
            if g is not None:
                values[k] = g[flat]
        return values

    def _reached(self, node: Node, position: int, flat: int) -> np.ndarray:
        """The output elements that input element `flat` reaches, from the forward pass alone: those that change
        when it moves on a generic probe (structure, whatever the numbers), or when it is nudged on the actual
        inputs (where an op picks one input by value, max pooling, the actual pick counts)."""
        if node.op.elementwise:
            in_index = np.arange(_size(node.inputs[position].shape)).reshape(node.inputs[position].shape)
            return np.flatnonzero(np.broadcast_to(in_index, node.shape).reshape(-1) == flat)
        probe = self._changed(node, self._probe(node), position, flat, probe=True)
        actual = self._changed(node, self._inputs(node), position, flat, probe=False)
        return np.flatnonzero(probe | actual)

    def _changed(self, node: Node, inputs: list[Any], position: int, flat: int, probe: bool) -> np.ndarray:
        key = (node.name, probe)
        if key not in self.outputs:
            self._tick()
            self.outputs[key] = np.asarray(self.backend.to_numpy(self.backend.forward(node, inputs))).reshape(-1)
        base = self.outputs[key]
        moved = np.array(self.backend.to_numpy(inputs[position]), copy=True)
        value = float(moved.reshape(-1)[flat])
        # the probe's entries lie in (0.1, 0.9): +10 changes every output that depends on it well beyond rounding;
        # an actual entry moves by a thousandth of itself, so a max-pool window changes only where it is the pick
        moved.reshape(-1)[flat] = value + 10.0 if probe else value + 1e-3 * max(abs(value), 1e-3)
        self._tick()
        after = np.asarray(self.backend.to_numpy(self.backend.forward(
            node, [self.backend.asarray(moved) if i == position else v for i, v in enumerate(inputs)]))).reshape(-1)
        with np.errstate(invalid="ignore"):
            return ~((after == base) | (np.isnan(after) & np.isnan(base)))

    def _probe(self, node: Node) -> list[Any]:
        """Generic stand-ins for the node's differentiable inputs, so the structure does not depend on the actual
        numbers (drawn once per node)."""
        if node.name not in self.probes:
            self.probes[node.name] = [
                self.backend.asarray(self.rng.uniform(0.1, 0.9, size=a.shape)) if node.op.differentiable(i)
                else self.trace.values[a.name]
                for i, a in enumerate(node.inputs)
            ]
        return self.probes[node.name]

    def _broadcast_structure(self, node: Node, position: int) -> np.ndarray:
        out_shape, in_shape = node.shape, node.inputs[position].shape
        in_index = np.arange(_size(in_shape)).reshape(in_shape)
        mapped = np.broadcast_to(in_index, out_shape).reshape(-1)
        structure = np.zeros((mapped.size, in_index.size), dtype=bool)
        structure[np.arange(mapped.size), mapped] = True
        return structure


class _OutOfTime(Exception):
    """The deadline passed (caught in `explain`, which says so in one sentence)."""


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


@dataclass(frozen=True)
class ExplainCost:
    """What explaining one element would cost at the least: the VJPs and forward passes of `_Jacobians`, each timed
    as one forward pass of its op. `complete` is False where the count stopped once past the limit."""

    seconds: float
    calls: int
    elements: int  # the elements the element's paths reach (counted so far)
    ops: int  # ... and the ops they belong to
    complete: bool


def explain_cost(session: Session, name: str, index: Index, stop_above: float = math.inf) -> ExplainCost:
    """Follow element `index` of `name` to the loss through the graph: which elements of each later op it reaches
    (one forward pass of the op with the reached elements of its input moved, on probe values as `_Jacobians`
    finds structure), and what `explain` would spend on each op (see `_lower_calls`). Stops once the estimate
    passes `stop_above` seconds."""
    loss = session.loss_node
    assert loss is not None
    graph, backend, values = session.graph, session.backend, session.trace.values
    relevant = gradient_reaches(loss)
    node = graph[name]
    start = np.zeros(_size(node.shape), dtype=bool)
    start[int(np.ravel_multi_index(index, node.shape)) if index else 0] = True
    reach: dict[str, np.ndarray] = {name: start}
    rng = np.random.default_rng(0)
    seconds, calls, elements, ops = 0.0, 0, 0, 0
    for consumer in graph.nodes:
        if consumer.name not in relevant or consumer.name in reach:
            continue
        positions = [p for p, a in enumerate(consumer.inputs) if a.name in reach and consumer.op.differentiable(p)]
        if not positions:
            continue
        probe = [backend.asarray(rng.uniform(0.1, 0.9, size=a.shape)) if consumer.op.differentiable(i)
                 else values[a.name] for i, a in enumerate(consumer.inputs)]
        base, took = _timed_forward(backend, consumer, probe)
        out = np.zeros(_size(consumer.shape), dtype=bool)
        for p in positions:
            moved_in = reach[consumer.inputs[p].name]
            reached_out, took_moved = _reached_rows(backend, consumer, probe, p, moved_in, base, rng)
            if took_moved:  # the faster of two runs: the first may have paid for allocations
                took = min(took, took_moved)
            out |= reached_out
            n = _lower_calls(consumer, p, int(moved_in.sum()), int(reached_out.sum()))
            calls += n
            seconds += n * took
        if not out.any():
            continue
        reach[consumer.name] = out
        elements, ops = elements + int(out.sum()), ops + 1
        if seconds > stop_above:
            return ExplainCost(seconds, calls, elements, ops, complete=False)
    return ExplainCost(seconds, calls, elements, ops, complete=True)


def _timed_forward(backend: Any, node: Node, inputs: list[Any]) -> tuple[np.ndarray, float]:
    began = time.perf_counter()
    out = np.asarray(backend.to_numpy(backend.forward(node, inputs))).reshape(-1)
    return out, time.perf_counter() - began


def _reached_rows(backend: Any, node: Node, probe: list[Any], position: int, moved: np.ndarray, base: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The output elements that the `moved` elements of input `position` reach, and the time of the forward pass
    that told (0 where the shapes tell: an elementwise op). Each moved element gets its own random push, so no
    shift-invariant op (softmax, a normalisation) hides them by moving all of them alike."""
    in_shape = node.inputs[position].shape
    if node.op.elementwise:
        flat = np.flatnonzero(moved)
        in_index = np.arange(_size(in_shape)).reshape(in_shape)
        mapped = np.broadcast_to(in_index, node.shape).reshape(-1)
        return np.isin(mapped, flat), 0.0
    x = np.array(backend.to_numpy(probe[position]), copy=True).reshape(-1)
    x[moved] += rng.uniform(5.0, 15.0, size=int(moved.sum()))
    inputs = [backend.asarray(x.reshape(in_shape)) if i == position else v for i, v in enumerate(probe)]
    after, took = _timed_forward(backend, node, inputs)
    with np.errstate(invalid="ignore"):
        return ~((after == base) | (np.isnan(after) & np.isnan(base))), took


def _lower_calls(node: Node, position: int, n_in: int, n_out: int) -> int:
    """The fewest VJPs and forward passes `_Jacobians` spends on the column of each of `n_in` elements of input
    `position` of `node`, which reach `n_out` of its elements: an elementwise op of the same shape, one VJP for
    all; otherwise at least two forward passes an element (finding what it reaches) and a VJP per element reached,
    or the whole Jacobian where that is cheaper and fits."""
    out_size = _size(node.shape)
    if node.op.elementwise and tuple(node.inputs[position].shape) == tuple(node.shape):
        return 1
    columns = n_out if node.op.elementwise else 2 * n_in + n_out
    whole = out_size if node.op.elementwise else 2 * out_size
    fits = out_size <= MAX_JACOBIAN_ROWS and out_size * _size(node.inputs[position].shape) <= MAX_JACOBIAN_ELEMENTS
    return min(columns, whole) if fits else columns


def _refuse_if_slow(session: Session, name: str, index: Index) -> None:
    """Refuse at once, in one sentence, an element whose explanation the estimate puts past the limit."""
    cost = explain_cost(session, name, index, stop_above=ESTIMATE_REFUSES_ABOVE)
    if cost.seconds <= ESTIMATE_REFUSES_ABOVE:
        return
    more = "" if cost.complete else " or more"
    so_far = "" if cost.complete else " before the count stopped"
    instead = _nearer_the_loss(session, name)
    pick = f"explain {instead} (nearer the loss)" if instead else "explain an element nearer the loss"
    raise ExplainError(
        f"explaining {_elem(name, index)} would take {_duration(cost.seconds)}{more}, past the "
        f"{ESTIMATE_REFUSES_ABOVE:g} s limit: its paths fan out to {cost.elements:,} elements of {cost.ops:,} ops"
        f"{so_far} ({cost.calls:,} VJPs and forward passes at the least); {pick}, or use a smaller input")


def _nearer_the_loss(session: Session, name: str) -> str | None:
    """A parameter whose first element explains within the limit, the nearest the loss first; None if none of the
    few tried does."""
    loss = session.loss_node
    assert loss is not None
    relevant = gradient_reaches(loss)
    order = {n.name: i for i, n in enumerate(session.graph.nodes)}
    graph = session.graph

    def nearness(p: Node) -> int:
        return max((order[u.name] for u in graph.users(p)), default=-1)

    params = sorted((p for p in graph.parameters if p.name in relevant and p.name != name), key=nearness,
                    reverse=True)
    for p in params[:SUGGESTIONS_TRIED]:
        first = (0,) * len(p.shape)
        if explain_cost(session, p.name, first, stop_above=ESTIMATE_REFUSES_ABOVE / 4).seconds \
                <= ESTIMATE_REFUSES_ABOVE / 4:
            return p.name
    return None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"about {seconds:.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.0f} h"


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
    _refuse_if_slow(session, name, index)
    jac = _Jacobians(session, time.monotonic() + EXPLAIN_SECONDS)
    graph = session.graph

    def edges(n: Node, flat: int) -> list[tuple[Node, int, Factor]]:
        out = []
        for consumer in graph.users(n):
            if consumer.name not in relevant:
                continue
            for pos, a in enumerate(consumer.inputs):
                if a is not n or not consumer.op.differentiable(pos):
                    continue
                rows, values = jac.column(consumer, pos, flat)
                for o, value in zip(rows, values, strict=True):
                    factor = Factor(
                        consumer.name,
                        _unravel(int(o), consumer.shape),
                        n.name,
                        _unravel(flat, n.shape),
                        consumer.op.derivative(pos, consumer.attrs),
                        float(value),
                    )
                    out.append((consumer, int(o), factor))
        return out

    adjoint: dict[tuple[str, int], tuple[float, int]] = {(loss.name, 0): (1.0, 1)}
    reached: set[tuple[str, int]] = set()  # the elements `total` has started on

    def total(n: Node, flat: int) -> tuple[float, int]:
        """(Σ of path products, number of paths) from (n, flat) to the loss, memoised."""
        key = (n.name, flat)
        if key not in adjoint:
            reached.add(key)
            s, count = 0.0, 0
            for consumer, o, factor in edges(n, flat):
                sub_sum, sub_count = total(consumer, o)
                s += factor.value * sub_sum
                count += sub_count
            adjoint[key] = (s, count)
        return adjoint[key]

    start = int(np.ravel_multi_index(index, node.shape)) if index else 0
    paths: list[GradientPath] = []

    def walk(n: Node, flat: int, prefix: tuple[Factor, ...]) -> None:
        if len(paths) >= max_paths:
            return
        if n is loss:
            paths.append(GradientPath(prefix))
            return
        for consumer, o, factor in edges(n, flat):
            if adjoint[(consumer.name, o)][1]:  # a dead end (an element no path leads on from) lists nothing
                walk(consumer, o, (*prefix, factor))

    try:
        path_sum, total_paths = total(node, start)
        walk(node, start, ())  # over what `total` computed and cached
    except _OutOfTime:
        ops = len({op for op, _ in reached} - {name})
        raise ExplainError(
            f"explaining {_elem(name, index)} took longer than {EXPLAIN_SECONDS:g} s: its paths fan out to "
            f"{len(reached) - 1:,} elements of {ops:,} ops so far ({jac.calls:,} VJPs and forward passes); explain "
            "an element nearer the loss, or on a smaller input"
        ) from None
    grad = session.backend.to_numpy(session.trace.final_grads()[name])
    computed = float(np.asarray(grad).reshape(-1)[start])
    shown = sum(p.product for p in paths)
    return Explanation(name, index, paths, total_paths, path_sum, computed, omitted_sum=path_sum - shown)


def _unravel(flat: int, shape: tuple[int, ...]) -> Index:
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()

"""`Trace`: the values, gradients and step records of one forward and backward pass.

Steps are computed on demand and kept: a record never changes once made, so moving the
cursor back and forth is exact and copies nothing. Gradients are never updated in place;
each contribution makes a new running total and the history keeps the old one by reference.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Mapping
from typing import Any

from ..backends.base import Backend
from ..graph.errors import GraphError
from ..graph.ir import Graph, Node
from ..graph.ops.unsupported import is_unsupported, stop_error
from .memory import PassBudget, PassEstimate, itemsize, kept_elements, leaf_elements
from .steps import BACKWARD, FORWARD, BackwardStep, ForwardStep, GradTerm, PlannedStep, Step


def plan(graph: Graph, reached: set[str] | None = None) -> list[PlannedStep]:
    """Every op forward in topological order, then, in reverse, every op a gradient reaches from the loss.

    A gradient travels only along differentiable inputs: an op that feeds nothing but an index, a mask
    or a loss's target (a slice of position ids, a comparison) gets no backward step. `reached` is
    `loss_reaches(graph)` when the caller has it already.
    """
    steps = [PlannedStep(i, FORWARD, n) for i, n in enumerate(graph.ops)]
    if graph.outputs and graph.output.op.is_loss:
        if reached is None:
            reached = gradient_reaches(graph.output)
        for n in reversed(graph.ops):
            if n.name in reached:
                steps.append(PlannedStep(len(steps), BACKWARD, n))
    return steps


def gradient_reaches(loss: Node) -> set[str]:
    """The names of the nodes a gradient from `loss` flows into: through differentiable inputs only, and only into
    values that hang on a parameter or an input. A subgraph of constants alone (a diffusion U-Net's sinusoidal
    embedding of a constant timestep, a mask made from a buffer) gets no backward steps, as torch's autograd gives it
    none: nothing there requires a gradient."""
    varies = _varying(loss)
    seen = {loss.name}
    stack = [loss]
    while stack:
        node = stack.pop()
        for i, a in enumerate(node.inputs):
            if a.name not in seen and a.name in varies and node.op.differentiable(i):
                seen.add(a.name)
                stack.append(a)
    return seen


def _varying(loss: Node) -> set[str]:
    """The names of `loss`'s ancestors (and itself) whose value moves with a parameter or an input (not the
    target), through differentiable inputs: what could have a gradient at all."""
    ancestors: dict[str, Node] = {loss.name: loss}
    stack = [loss]
    while stack:
        for a in stack.pop().inputs:
            if a.name not in ancestors:
                ancestors[a.name] = a
                stack.append(a)
    varies: set[str] = set()
    for node in sorted(ancestors.values(), key=lambda n: n.index):  # inputs before their users
        if node.is_leaf:
            if node.op.name in ("parameter", "input") and node.meta.get("role") != "target":
                varies.add(node.name)
        elif any(a.name in varies and node.op.differentiable(i) for i, a in enumerate(node.inputs)):
            varies.add(node.name)
    return varies


def loss_reaches(graph: Graph) -> set[str]:
    """The nodes a gradient from the graph's loss reaches; none when its output is not a loss. Kept per graph: a
    session makes a new trace on every refresh (new parameters, a new backend) and the walk costs ~70 ms at 20,000
    nodes; a graph is not changed once built (Graph.copy makes another)."""
    if not (graph.outputs and graph.output.op.is_loss):
        return set()
    key = (id(graph.output), len(graph))
    found = _REACHED.get(graph)
    if found is None or found[0] != key:
        found = key, frozenset(gradient_reaches(graph.output))
        _REACHED[graph] = found
    return set(found[1])


_REACHED: weakref.WeakKeyDictionary[Graph, tuple[tuple[int, int], frozenset[str]]] = weakref.WeakKeyDictionary()


def count_consumers(schedule: list[PlannedStep]) -> dict[str, int]:
    """How many gradient contributions each value receives over the backward pass."""
    counts: dict[str, int] = {}
    for s in schedule:
        if s.phase == BACKWARD:
            for i, a in enumerate(s.node.inputs):
                if s.node.op.differentiable(i):
                    counts[a.name] = counts.get(a.name, 0) + 1
    return counts


class Trace:
    def __init__(self, graph: Graph, backend: Backend, leaves: Mapping[str, Any], name: str = "") -> None:
        self.graph = graph
        self.name = name or graph.name  # what a refusal calls it (the session's name)
        self.budget = PassBudget()
        self.backend = backend
        # kept for `Session.gradient_flows`: walked again on the first step's inspector refresh, it cost
        # that frame 13-15 ms at 20,000 nodes
        self.reached = loss_reaches(graph)
        self.schedule = plan(graph, self.reached)
        self.n_forward = len(graph.ops)
        self._forward_index = {n.name: i for i, n in enumerate(graph.ops)}
        self.values: dict[str, Any] = dict(leaves)
        self.records: list[Step] = []
        self._consumers = count_consumers(self.schedule)
        self._arrivals: dict[str, int] = {}
        self._grads: dict[str, Any] = {}  # the running total of each gradient at the frontier
        self._history: dict[str, list[tuple[int, Any]]] = {}  # name -> [(step index, total after it)]
        self._finite_through = 0  # records [0, _finite_through) are known to hold only finite numbers
        self._first_nonfinite: tuple[int, Node] | None = None

    # -- computing -------------------------------------------------------------------------
    @property
    def computed(self) -> int:
        return len(self.records)

    def compute_through(self, index: int) -> None:
        """Compute every step up to and including `index` (already computed ones are kept)."""
        index = min(index, len(self.schedule) - 1)
        self.check_fits(index)
        while len(self.records) <= index:
            planned = self.schedule[len(self.records)]
            record = self._forward(planned) if planned.phase == FORWARD else self._backward(planned)
            self.records.append(record)

    def check_fits(self, index: int) -> None:
        """Refuse (`PassMemoryError`, with the estimate's sentence) when computing through step `index` would keep
        more than the budget allows; nothing is computed. Steps already computed cost nothing more."""
        index = min(index, len(self.schedule) - 1)
        if len(self.records) <= index:
            limit = self.budget.limit
            if self.kept_bytes(index) > limit:  # the estimate and its sentence only then: Continue asks at every step
                self.estimate(index).check(limit)

    # -- memory ----------------------------------------------------------------------------
    def kept_bytes(self, index: int) -> int:
        """The bytes of values and gradients this trace keeps once computed through step `index` (see memory.py),
        from the static shapes: nothing is allocated to know it."""
        if index < 0 or not self.schedule:
            return 0
        return kept_elements(self.graph, self.schedule, self.reached).through(index) * itemsize(self.backend.dtype)

    def estimate(self, index: int | None = None, backends: int = 1) -> PassEstimate:
        """What computing through step `index` (default: the whole pass) keeps: this trace's values and gradients,
        and with `backends` 2 (compare) as much again on the other backend, with its copy of the leaves."""
        last = len(self.schedule) - 1
        index = last if index is None else min(index, last)
        own = self.kept_bytes(index)
        copies = (backends - 1) * leaf_elements(self.graph) * itemsize(self.backend.dtype) if backends > 1 else 0
        nbytes = own * backends + copies
        return PassEstimate(self.name, nbytes, min(index + 1, self.n_forward), index >= self.n_forward,
                            str(self.backend.dtype), index + 1, len(self.schedule), backends)

    def record(self, index: int) -> Step:
        self.compute_through(index)
        return self.records[index]

    def _forward(self, planned: PlannedStep) -> ForwardStep:
        node = planned.node
        if is_unsupported(node):  # a loaded model's op we cannot run: stop before it, naming the op
            raise stop_error(node)
        inputs = tuple(self.values[a.name] for a in node.inputs)
        try:
            out = self.backend.forward(node, inputs)
        except (TypeError, ValueError, IndexError, ZeroDivisionError) as exc:  # attributes a file got wrong, say
            raise GraphError(f"{node.op.name} node {node.name!r} cannot run: {exc}") from exc
        self.values[node.name] = out
        if planned.index == self.n_forward - 1 and self.graph.output.op.is_loss:
            loss = self.graph.output.name
            seed = self.backend.ones(tuple(self.graph.output.shape))
            self._grads[loss] = seed
            self._history[loss] = [(planned.index, seed)]
        return ForwardStep(planned.index, node, inputs, out)

    def _backward(self, planned: PlannedStep) -> BackwardStep:
        node = planned.node
        inputs = tuple(self.values[a.name] for a in node.inputs)
        out = self.values[node.name]
        upstream = self._grads.get(node.name)
        if upstream is None:  # every consumer's VJP gave None (no gradient through it): zero, not a KeyError
            upstream = self.backend.ones(tuple(node.shape)) * 0
        grads = self.backend.vjp(node, inputs, out, upstream)
        terms = []
        for i, (a, g) in enumerate(zip(node.inputs, grads, strict=True)):
            if g is None or not node.op.differentiable(i) or a.name not in self.reached:  # constants alone: none
                continue
            before = self._grads.get(a.name)
            total = g if before is None else before + g
            self._grads[a.name] = total
            self._history.setdefault(a.name, []).append((planned.index, total))
            self._arrivals[a.name] = self._arrivals.get(a.name, 0) + 1
            terms.append(
                GradTerm(
                    a,
                    i,
                    node.op.role(i),
                    node.op.derivative(i, node.attrs),
                    g,
                    before,
                    total,
                    self._arrivals[a.name],
                    self._consumers.get(a.name, 1),
                )
            )
        return BackwardStep(
            planned.index,
            node,
            upstream,
            inputs,
            out,
            tuple(terms),
            partials_fn=lambda: self.backend.partials(node, inputs, out),
        )

    @property
    def first_nonfinite(self) -> tuple[int, Node] | None:
        """(step index, node) of the first computed step whose value or gradient holds NaN or Inf.

        Checked when asked rather than at every step: on a GPU each check is a device sync.
        """
        while self._first_nonfinite is None and self._finite_through < len(self.records):
            record = self.records[self._finite_through]
            made = [record.output] if isinstance(record, ForwardStep) else [t.total for t in record.terms]
            if not all(self.backend.is_finite(v) for v in made):
                self._first_nonfinite = (record.index, record.node)
            self._finite_through += 1
        return self._first_nonfinite

    # -- reading at a cursor ---------------------------------------------------------------
    def value(self, name: str, cursor: int) -> Any | None:
        node = self.graph[name]
        if node.is_leaf:
            return self.values[name]
        return self.values[name] if self._forward_index[name] < cursor else None

    def grad(self, name: str, cursor: int) -> Any | None:
        """The gradient of `name` as known after `cursor` steps (the running total so far)."""
        self.graph[name]
        history = self._history.get(name)
        if not history:
            return None
        pos = bisect.bisect_left(history, cursor, key=lambda item: item[0])
        return history[pos - 1][1] if pos else None

    def final_grads(self) -> dict[str, Any]:
        self.compute_through(len(self.schedule) - 1)
        return dict(self._grads)

    def partials(self, step: BackwardStep) -> list[Any | None] | None:
        """The elementwise local derivatives of a backward step (None where the op is not elementwise)."""
        return step.partials()

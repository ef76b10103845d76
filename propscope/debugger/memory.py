"""What a pass keeps in memory, estimated from the graph's static shapes before any op runs, and the one-line
refusal where it would not fit in the memory budget (`--max-memory`, the app's File ▸ Memory budget…).

A `Trace` keeps every value and every gradient it makes, so that stepping back is exact: a forward step keeps its
output; a backward step keeps, for each input a gradient reaches, its contribution and (from the second arrival on)
the new running total, the old total staying in the history. Counting exactly that, step by step, gives a running
sum the trace checks before it computes anything: a whole pass of a model that would not fit is refused before its
first op, while stepping through the first ops of it still works. (torchvision's MViT compared in float64 was killed
by the kernel at 24 GB; its estimate is 32.7 GiB.)

The weights are not counted: they are in memory already, and reading the file charged them against the same budget.
Where a pass copies them (a second backend, a float64 check), the copies are counted.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..graph.errors import PropscopeError
from ..graph.ir import Graph, Node, Shape
from ..graph.readers._budget import current_limit, default_budget, human, max_memory_override
from .steps import FORWARD, PlannedStep


class PassMemoryError(PropscopeError):
    """A pass that would keep more than the memory budget; refused before it allocates."""


def itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def elements(shape: Shape) -> int:
    return math.prod(shape)


Scale = Callable[[Shape], float]


def step_elements(graph: Graph, schedule: Sequence[PlannedStep], reached: set[str],
                  scale: Scale | None = None) -> np.ndarray:
    """The elements each planned step keeps, as `Trace` keeps them (see the module's docstring); `scale` weighs a
    shape (a mini-batch's share of the batch), else every element counts once."""
    loss = graph.output if graph.outputs and graph.output.op.is_loss else None
    arrivals: dict[str, int] = {}
    weigh = (lambda n: elements(n.shape) * scale(n.shape)) if scale else (lambda n: elements(n.shape))
    return np.array([math.ceil(_step_count(p, weigh, reached, arrivals, loss)) for p in schedule], dtype=np.int64)


def _step_count(planned: PlannedStep, weigh: Callable[[Node], float], reached: set[str], arrivals: dict[str, int],
                loss: Node | None) -> float:
    node = planned.node
    if planned.phase == FORWARD:
        return weigh(node) * (2 if node is loss else 1)  # a loss keeps its seed dL/dL beside it
    count = 0.0
    for i, a in enumerate(node.inputs):
        if a.name in reached and node.op.differentiable(i):
            # the contribution, and from the second arrival on a new running total beside it
            seen = arrivals[a.name] = arrivals.get(a.name, 0) + 1
            count += weigh(a) * (1 if seen == 1 else 2)
    return count


class KeptElements:
    """The elements a trace keeps through each step, summed only as far as a trace has asked: stepping the first
    ops of a 20,000-node graph costs a few additions, not a walk of the whole graph (~50 ms)."""

    def __init__(self, graph: Graph, schedule: Sequence[PlannedStep], reached: set[str]) -> None:
        self._schedule, self._reached = schedule, reached
        self._loss = graph.output if graph.outputs and graph.output.op.is_loss else None
        self._arrivals: dict[str, int] = {}
        self._through: list[int] = []
        self._lock = threading.Lock()  # a trainer's worker may make a trace of the same graph

    def through(self, index: int) -> int:
        """Elements kept once steps 0..index are computed."""
        if index < 0:
            return 0
        index = min(index, len(self._schedule) - 1)
        with self._lock:
            kept = self._through
            total = kept[-1] if kept else 0
            while len(kept) <= index:
                total += math.ceil(_step_count(self._schedule[len(kept)], _elements_of, self._reached,
                                               self._arrivals, self._loss))
                kept.append(total)
            return kept[index]


def _elements_of(node: Node) -> int:
    return elements(node.shape)


_KEPT: weakref.WeakKeyDictionary[Graph, tuple[tuple[int, int, int], KeptElements]] = weakref.WeakKeyDictionary()


def kept_elements(graph: Graph, schedule: Sequence[PlannedStep], reached: set[str]) -> KeptElements:
    """The graph's `KeptElements`, kept per graph: a session makes a new trace on every refresh."""
    key = (id(graph.output) if graph.outputs else 0, len(graph), len(schedule))
    found = _KEPT.get(graph)
    if found is None or found[0] != key:
        found = key, KeptElements(graph, schedule, reached)
        _KEPT[graph] = found
    return found[1]


def leaf_elements(graph: Graph) -> int:
    """Parameters, constants and inputs: what a pass on another backend (or in another dtype) copies."""
    return sum(elements(n.shape) for n in graph.leaves)


@dataclass(frozen=True)
class PassEstimate:
    """What a pass (or its first `steps` steps) keeps, in bytes, and what to say about it."""

    name: str
    nbytes: int
    nodes: int  # the op nodes whose values are kept
    gradients: bool  # whether backward steps are among them
    dtype: str
    steps: int
    total_steps: int
    backends: int = 1
    what: str = ""  # "a gradient check of X", "training X"; default: a whole pass / the first steps
    fixed_dtype: bool = False  # a gradient check runs in float64 whatever the session's dtype

    def refusal(self, budget: int) -> str:
        """One line: what would be kept, the budget, and how to allow it or make it smaller."""
        if self.what:
            what, verb = self.what, "keeps"
        elif self.steps >= self.total_steps:
            what, verb = f"a whole pass of {self.name}", "keeps"
        else:
            what, verb = f"the first {self.steps:,} of {self.total_steps:,} steps of {self.name}", "keep"
        held = "values and gradients" if self.gradients else "values"
        on = f", {self.backends} backends" if self.backends > 1 else ""
        float32 = self.dtype == "float64" and not self.fixed_dtype
        smaller = "float32 / a smaller batch or size" if float32 else "a smaller batch or size"
        return (f"{what} {verb} {human(self.nbytes)} ({held} of {self.nodes:,} nodes in {self.dtype}{on}); the "
                f"memory budget is {human(budget)}: --max-memory {allowing(self.nbytes)} (File ▸ Memory budget… in "
                f"the app) allows it, or {smaller}")

    def check(self, budget: int) -> None:
        if self.nbytes > budget:
            raise PassMemoryError(self.refusal(budget))


def allowing(nbytes: int) -> str:
    """A --max-memory size that holds `nbytes`: whole GiB (whole MiB below one GiB), rounded up."""
    if nbytes >= 2**30:
        return f"{math.ceil(nbytes / 2**30 + 0.05)}G"
    return f"{max(1, math.ceil(nbytes / 2**20 + 0.05))}M"


class PassBudget:
    """The budget a pass is checked against: `--max-memory` (or the app's setting) as it is now, else half the
    memory available when the pass began: measured once, or the pass's own values would shrink it as they grow."""

    def __init__(self) -> None:
        self._default: int | None = None

    @property
    def limit(self) -> int:
        override = max_memory_override()
        if override is not None:
            return override
        if self._default is None:
            self._default = default_budget()
        return self._default


def scaled_by_batch(samples: int, batch: int | None) -> Scale | None:
    """A mini-batch's share of each shape: arrays whose first axis holds the samples (or a whole number of rows per
    sample, a language model's tokens) shrink to `batch` of `samples`; weights stay whole."""
    if batch is None or samples <= 1 or batch >= samples:
        return None
    share = batch / samples

    def scale(shape: Shape) -> float:
        return share if shape and shape[0] >= samples and shape[0] % samples == 0 else 1.0

    return scale


def training_estimate(name: str, graph: Graph, schedule: Sequence[PlannedStep], reached: set[str], dtype: str,
                      parameters: Sequence[Node], samples: int, batch: int | None) -> PassEstimate:
    """What one training step holds at its peak: a whole pass on a (mini-)batch, values and gradients, and beside
    it the trainer's two buffers of the parameters and up to two optimizer moments per parameter (Adam's)."""
    kept = int(step_elements(graph, schedule, reached, scaled_by_batch(samples, batch)).sum())
    kept += 4 * sum(elements(p.shape) for p in parameters)
    at = f" in batches of {batch}" if batch is not None and batch < samples else ""
    return PassEstimate(name, kept * itemsize(dtype), len(graph.ops), True, dtype, len(schedule), len(schedule),
                        what=f"training {name}{at}")


def current_budget() -> int:
    """The budget a pass starting now is checked against (`PassBudget` keeps it for a trace)."""
    return current_limit()


def gradcheck_estimate(estimate: PassEstimate, leaves: int) -> PassEstimate:
    """A gradient check's: the pass it differentiates, in float64 whatever `estimate`'s dtype (the app's session may
    be float32), and a float64 copy of its `leaves` elements, which it perturbs one entry at a time."""
    widened = estimate.nbytes * itemsize("float64") // itemsize(estimate.dtype)
    return PassEstimate(estimate.name, widened + leaves * itemsize("float64"), estimate.nodes,
                        estimate.gradients, "float64", estimate.steps, estimate.total_steps,
                        what=f"a gradient check of {estimate.name}", fixed_dtype=True)

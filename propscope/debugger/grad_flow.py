"""Gradient flow: every parameter's gradient after one backward pass, in the order the forward pass first uses it,
with those that vanish, explode, are not finite or get none flagged.

This is the plot engineers write by hand (the mean |gradient| per layer, "plot_grad_flow") to find where a deep
network stops learning. The numbers are the gradient's norm, RMS, max and ‖∂L/∂w‖ / ‖w‖ (what one SGD step at
learning rate 1 would change the weights by, relative to them). The judgement compares like with like, on the log
scale, and along depth:

- Only weight matrices and kernels (and embedding tables, for exploding) are judged. A bias's gradient is the error
  arriving at its layer summed, a norm scale's (BatchNorm, LayerNorm, RMSNorm γ, a layer scale) that error times the
  normalised values: both repeat what their layer's weights already say, at scales of their own (a γ of 10⁻⁶ that
  gates a fresh ConvNeXt block), so they are flagged only when not finite or without a gradient.
- *Vanishing*: a weight's ‖∂L/∂w‖ RMS below 1/1000 of its peers' nearest the loss: the weights with its name up to
  its numbers (`layer#.#.conv#.weight`; a layer without such peers against every weight nearest the loss),
  the median of the last tenth (at least two). A weight's gradient is its input times the error arriving at its
  layer, so a network whose forward pass shrinks the signal as much as its backward pass does (a fresh
  EfficientNet's BatchNorms in eval mode, still at their initial statistics) keeps it: its layers learn alike. A
  gradient that decays toward the input with nothing to make up for it (a deep sigmoid chain, a layer cut off by
  a zeroed one) does not. A weight matrix that is all zero is *dead* (vanishing): nothing passes back through it;
  but not the head nearest the loss, which some models zero on purpose (torchvision's ViT): the layers before it
  get no gradient at this step, and the summary says so instead of flagging them.
- *Exploding*: the error arriving at a weight's layer, ∂L/∂y at its output, above 1000 times that at the
  loss's input (∂L/∂ŷ), and staying so on some path on toward the input: the growing trend that blows a step up.
  A weight's own gradient cannot show it where the forward pass grew as much (every weight after the growth sees
  large inputs), so this is judged on the error. A spike inside one function (the mean of an RMSNorm) is not it.

Beside it, the gradient through depth: ∂L/∂h for the value h leaving each module (`activation_flow`), judged on the
same error paths: vanishing where it and every row it is computed from stay below 1/1000 of ∂L/∂ŷ's RMS (a side
branch with a small local derivative, a fresh attention's queries and keys, is not), exploding where it and some
path on toward the input stay above 1000 times it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..graph.errors import PropscopeError
from ..graph.ir import Graph, Node
from .nonfinite import carried_in
from .steps import BACKWARD, FORWARD

VANISHING = 1e-3  # RMS below this fraction of the reference (a weight's peers nearest the loss; ∂L/∂ŷ)
EXPLODING = 1e3  # RMS above this multiple of it
JUMP = 1e2  # ∂L/∂h growing this many times back across one layer (against the error past it): exploding there
NEAREST_LOSS = 0.1  # a weight's reference: the median RMS of this last fraction of its peers, in forward order
ACTIVATION_ROWS = 60  # list the module outputs of the deepest module level that gives at most this many rows
FEW_ROWS = 8  # a level with fewer rows than this says too little: the next one is listed, thinned to ACTIVATION_ROWS


UNDEFINED = "—"  # a number that has no value (‖g‖/‖w‖ of zero weights, the norm of a gradient with no finite entry)


def nonfinite_counts(a: np.ndarray) -> tuple[int, int]:
    """(NaN entries, ±inf entries) of `a`."""
    if not np.issubdtype(a.dtype, np.inexact):
        return 0, 0
    nan = int(np.count_nonzero(np.isnan(a)))
    return nan, int(a.size - np.count_nonzero(np.isfinite(a))) - nan


def counts_text(nan: int, inf: int) -> str:
    """`1 NaN`, `3 inf`, `1 NaN, 2 inf`: how every table and message says it (grads, inspect, trace, diff)."""
    return ", ".join(f"{n:,} {what}" for n, what in ((nan, "NaN"), (inf, "inf")) if n)


def number_text(value: float | None) -> str:
    """A statistic as the tables show it: `1.234e-03`, or `—` where it has none (None or NaN): never `nan`, which
    would read as a NaN found in the gradient."""
    return UNDEFINED if value is None or math.isnan(value) else f"{value:.3e}"


class _GradientRow:
    """What parameter and activation rows share: their statistics as the tables show them, and their flag in words."""

    shape: tuple[int, ...]
    norm: float
    rms: float
    largest: float
    nonfinite: int
    nan: int
    verdict: str
    symbol: str  # ∂L/∂w or ∂L/∂h

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def has_finite(self) -> bool:
        """Whether the gradient has a finite entry to take norms of (a gradient that is all NaN has none)."""
        return self.nonfinite < self.size

    def stat(self, value: float) -> float | None:
        """`value` (a norm, RMS or max of the finite entries), or None where the gradient has no finite entry: 0
        beside "not finite" would read as no gradient at all."""
        return value if self.has_finite else None

    def gradient_note(self) -> str:
        """`∂L/∂w: 3 NaN of 36,864; norms of the 36,861 finite`, `∂L/∂w: all 36,864 NaN`; "" for a finite gradient."""
        if not self.nonfinite:
            return ""
        what = counts_text(self.nan, self.nonfinite - self.nan)
        if not self.has_finite:
            return f"{self.symbol}: all {what}" if self.nan in (0, self.size) else f"{self.symbol}: {what}, all of it"
        return f"{self.symbol}: {what} of {self.size:,}; norms of the {self.size - self.nonfinite:,} finite"

    @property
    def flag(self) -> str:
        """The verdict with what it found: `not finite (holds 1 NaN itself; ∂L/∂w: all 294,912 NaN)`."""
        notes = [n for n in self.notes() if n]
        return f"{self.verdict} ({'; '.join(notes)})" if self.verdict and notes else self.verdict

    def notes(self) -> list[str]:
        return [self.gradient_note()]


@dataclass(frozen=True)
class ParamFlow(_GradientRow):
    """One parameter's gradient, as the whole backward pass left it."""

    name: str
    module: str
    shape: tuple[int, ...]
    order: int  # the forward step that first uses it (0-based), or −1 for a parameter no step reads
    norm: float  # ‖∂L/∂w‖ (of the finite entries)
    rms: float  # ‖∂L/∂w‖ / √(entries)
    largest: float  # max |∂L/∂w| (of the finite entries)
    weight_norm: float  # ‖w‖ (of the finite entries)
    nonfinite: int  # NaN and ±Inf entries of the gradient
    verdict: str  # "", "not finite", "no gradient", "vanishing" or "exploding"
    nan: int = 0  # NaN entries of the gradient (the rest of `nonfinite` are ±Inf)
    value_nan: int = 0  # NaN entries of the parameter itself
    value_inf: int = 0  # ±Inf entries of the parameter itself
    reason: str = ""  # what the verdict rests on: `‖∂L/∂w‖ 2.4e-06 of its peers' nearest the loss`
    symbol = "∂L/∂w"

    @property
    def ratio(self) -> float:
        """‖∂L/∂w‖ / ‖w‖: an SGD step at learning rate 1, relative to the weights; NaN where it is undefined: zero
        weights (every zero-initialised bias and norm shift) or a gradient with no finite entry. The tables show it
        as `—`, `as_dicts` as None: not a NaN found."""
        return self.norm / self.weight_norm if self.weight_norm > 0 and self.has_finite else math.nan

    @property
    def value_nonfinite(self) -> int:
        """NaN and ±Inf entries of the parameter's own values."""
        return self.value_nan + self.value_inf

    def value_note(self) -> str:
        """`holds 1 NaN itself` where the parameter's own values are not finite; else ""."""
        return f"holds {counts_text(self.value_nan, self.value_inf)} itself" if self.value_nonfinite else ""

    def notes(self) -> list[str]:
        return [self.value_note(), self.gradient_note(), self.reason]

    @property
    def flag(self) -> str:
        """The verdict with what it found; where there is none, what is still worth knowing (zero-initialised
        weights that no gradient passes back through yet)."""
        return super().flag if self.verdict else self.reason

    @property
    def short_flag(self) -> str:
        """`flag` without the reason its verdict rests on: what a table cell has room for (the app's tooltip and
        `propscope grads` give the whole of it); a row without a verdict keeps its note's head (`zero weights`)."""
        if not self.verdict:
            return self.reason.split(":")[0]
        notes = [n for n in (self.value_note(), self.gradient_note()) if n]
        return f"{self.verdict} ({'; '.join(notes)})" if notes else self.verdict


@dataclass(frozen=True)
class GradientFlow:
    rows: tuple[ParamFlow, ...]  # in forward order
    # "weights": the median ‖∂L/∂w‖ RMS of the weights nearest the loss; "error": the RMS of ∂L/∂ŷ at the loss
    reference_rms: dict[str, float]
    loss: float
    first_nonfinite: str = ""  # where the pass first made a NaN or ±inf: `forward step 35 (conv2d conv2d_10)`
    note: str = ""  # what the summary must add: a zero-initialised head that no gradient passes back through yet
    through_time: tuple[TimeFlow, ...] = ()  # ∂L/∂h at the first and last step of every recurrent layer

    @property
    def flagged(self) -> list[ParamFlow]:
        return [r for r in self.rows if r.verdict]

    def summary(self) -> str:
        """One line: how many parameters, how many of each kind flagged, naming the first few; where the pass went
        non-finite, first the parameters that hold NaN or ±inf themselves and the step that first made one."""
        lead = _nonfinite_lead([r for r in self.rows if r.value_nonfinite], self.first_nonfinite)
        line = _summary(f"{len(self.rows)} parameters, loss {self.loss:.6g}",
                        [(r.verdict, r.name) for r in self.rows], lead)
        return "; ".join([line, *_time_notes(self.through_time), *([self.note] if self.note else [])])

    def text(self, flagged_only: bool = False) -> str:
        """A table, one parameter a line, in forward order."""
        rows = self.flagged if flagged_only else list(self.rows)
        width = max([len(r.name) for r in rows] + [9])
        lines = [f"{'step':>5}  {'parameter':<{width}}  {'shape':<14} {'‖∂L/∂w‖':>10} {'rms':>10} {'max|g|':>10} "
                 f"{'‖g‖/‖w‖':>10}  flag"]
        for r in rows:
            shape = "×".join(map(str, r.shape)) or "scalar"
            numbers = " ".join(f"{number_text(v):>10}" for v in (r.stat(r.norm), r.stat(r.rms), r.stat(r.largest),
                                                                    r.ratio))
            lines.append(f"{r.order + 1 if r.order >= 0 else '-':>5}  {r.name:<{width}}  {shape:<14} {numbers}  "
                         f"{r.flag}")
        lines += [t.line() for t in self.through_time if t.verdict or not flagged_only]
        return "\n".join(lines)

    def as_dicts(self) -> list[dict[str, Any]]:
        """The rows as records (the CSV's columns). Norms are of the gradient's finite entries, None (an empty CSV
        cell) where it has none; `ratio` is None where undefined (zero weights: every zero-initialised bias, or no
        finite gradient entry); `nonfinite` counts the gradient's NaN and ±inf entries, `value_nonfinite` the
        parameter's own; `flag` is the verdict alone."""
        return [{"parameter": r.name, "module": r.module, "shape": list(r.shape), "step": r.order + 1,
                 "norm": r.stat(r.norm), "rms": r.stat(r.rms), "max": r.stat(r.largest), "weight_norm": r.weight_norm,
                 "ratio": None if math.isnan(r.ratio) else r.ratio, "nonfinite": r.nonfinite,
                 "value_nonfinite": r.value_nonfinite, "flag": r.verdict, "reason": r.reason} for r in self.rows]


@dataclass(frozen=True)
class ActivationFlow(_GradientRow):
    """∂L/∂h for one value h leaving a module (or one op's output), as the whole backward pass left it."""

    name: str  # the node whose value it is (what a click shows on the graph)
    module: str  # the module it leaves; for an op listed on its own, the module holding it ("" at the top level)
    label: str  # `module` where no other row has it, else the node's name (as summaries name it)
    shape: tuple[int, ...]
    order: int  # the forward step that computes it (0-based)
    norm: float  # ‖∂L/∂h‖ (of the finite entries)
    rms: float  # ‖∂L/∂h‖ / √(entries)
    largest: float  # max |∂L/∂h| (of the finite entries)
    nonfinite: int  # NaN and ±Inf entries of the gradient
    verdict: str  # "", "not finite", "no gradient", "vanishing" or "exploding"
    nan: int = 0  # NaN entries of the gradient (the rest of `nonfinite` are ±Inf)
    reason: str = ""  # what a jump or through-time verdict rests on
    symbol = "∂L/∂h"

    def notes(self) -> list[str]:
        return [self.gradient_note(), self.reason]


@dataclass(frozen=True)
class ActivationGradientFlow:
    """∂L/∂h at every module output of one module level, in forward order (`activation_flow`)."""

    rows: tuple[ActivationFlow, ...]
    reference_rms: float  # the RMS of ∂L/∂ŷ at the loss's input (0 when it is not finite)
    loss: float
    depth: int  # the module level listed: 1 for the top-level modules, 2 for their children...
    first_nonfinite: str = ""  # where the pass first made a NaN or ±inf: `forward step 35 (conv2d conv2d_10)`
    through_time: tuple[TimeFlow, ...] = ()  # ∂L/∂h at the first and last step of every recurrent layer
    left_out: int = 0  # rows of the level not listed (`_thinned`): a deep Sequential's layers beyond ACTIVATION_ROWS

    @property
    def flagged(self) -> list[ActivationFlow]:
        return [r for r in self.rows if r.verdict]

    def summary(self) -> str:
        """One line: how many activations, how many of each kind flagged, naming the first few (after the step that
        first made a NaN or ±inf, where one did)."""
        head = f"{len(self.rows)} activations, loss {self.loss:.6g}"
        if self.left_out:
            head = (f"{len(self.rows)} of {len(self.rows) + self.left_out} activations (the first, the last, every "
                    f"flagged one and the rest evenly; {self.left_out} between them not listed), loss {self.loss:.6g}")
        line = _summary(head, [(r.verdict, r.label) for r in self.rows], _nonfinite_lead([], self.first_nonfinite))
        return "; ".join([line, *_time_notes(self.through_time)])

    def text(self, flagged_only: bool = False) -> str:
        """A table, one module output a line, in forward order."""
        rows = self.flagged if flagged_only else list(self.rows)
        width = max([len(r.module) for r in rows] + [6])
        named = max([len(r.name) for r in rows] + [6])
        lines = [f"{'step':>5}  {'module':<{width}}  {'output':<{named}}  {'shape':<16} {'‖∂L/∂h‖':>10} {'rms':>10} "
                 f"{'max|g|':>10}  flag"]
        for r in rows:
            shape = "×".join(map(str, r.shape)) or "scalar"
            numbers = " ".join(f"{number_text(r.stat(v)):>10}" for v in (r.norm, r.rms, r.largest))
            lines.append(f"{r.order + 1:>5}  {r.module or '-':<{width}}  {r.name:<{named}}  {shape:<16} "
                         f"{numbers}  {r.flag}")
        lines += [t.line() for t in self.through_time if t.verdict or not flagged_only]
        return "\n".join(lines)

    def as_dicts(self) -> list[dict[str, Any]]:
        """The rows as records (the CSV's columns); norms of the finite entries, None where there are none."""
        return [{"module": r.module, "output": r.name, "shape": list(r.shape), "step": r.order + 1,
                 "norm": r.stat(r.norm), "rms": r.stat(r.rms), "max": r.stat(r.largest), "nonfinite": r.nonfinite,
                 "flag": r.verdict} for r in self.rows]


def first_uses(session: Any) -> dict[str, int]:
    """Each parameter's first forward step (its index in the schedule)."""
    found: dict[str, int] = {}
    for step in session.steps:
        if step.phase != FORWARD:
            continue
        for a in step.node.inputs:
            if a.op.name == "parameter" and a.name not in found:
                found[a.name] = step.index
    return found


def gradient_flow(session: Any) -> GradientFlow:
    """Run the whole backward pass (the cursor stays where it is) and read every parameter's gradient."""
    end = _whole_pass(session)
    graph = session.graph
    order = first_uses(session)
    stats = []
    for node in graph.parameters:
        weight = np.asarray(session.backend.to_numpy(session.trace.value(node.name, end)), dtype=np.float64)
        finite = weight[np.isfinite(weight)]
        stats.append((node, _grad_stats(session, node.name, end), float(np.linalg.norm(finite)),
                      nonfinite_counts(weight), not np.any(finite)))
    stats.sort(key=lambda st: (order.get(st[0].name, -1) < 0, order.get(st[0].name, -1), st[0].name))
    layers = _layer_ops(graph)
    roles = {node.name: _role(node, layers.get(node.name)) for node, *_ in stats}
    errors = _error_rms(session, end)
    reference_error = _prediction_error(session, end)
    reached, rising = _error_paths(graph, errors)
    weights = [(node, g) for node, g, *_ in stats if roles[node.name] == "weights"]
    weight_rms = {node.name: norm / math.sqrt(max(math.prod(node.shape), 1)) for node, _, norm, *_ in stats}
    peers = _peer_references(weights, weight_rms)
    zero = {node.name for node, *_, is_zero in stats if is_zero and roles[node.name] == "weights"}
    head = _zero_head(graph, layers, [graph[name] for name in zero])
    weight_layers = {layers[node.name].name: node.name for node, _ in weights if node.name in layers}
    jumps = _jumps(session, end, errors, weight_layers)
    through_time = _through_time(session, end)
    timed = {flow.weight: flow for flow in through_time}
    idle = _idle_experts(session, end)
    rows = []
    for node, g, weight_norm, (value_nan, value_inf), is_zero in stats:
        verdict, reason = ("not finite", "") if value_nan + value_inf else (_verdict(g, 0.0), "")
        layer = layers.get(node.name)
        judged = roles[node.name] == "weights"
        if not verdict and roles[node.name] in ("weights", "embeddings") and layer is not None:
            verdict, reason = _exploding(rising.get(layer.name, 0.0), reference_error)
        if not verdict and judged and layer is not None:
            verdict, reason = _jump_verdict(layer, errors, jumps, peers.get(node.name),
                                            weight_rms[node.name])
        if not verdict and judged and is_zero:
            # zero-initialised (LoRA's B, ControlNet's zero convs, a zero head): not dead while it gets a gradient
            verdict, reason = ("", _zero_weights_note(g)) if g.rms > 0 else (
                "vanishing", "dead: its weights are all 0 and so is its gradient: nothing passes through it")
        elif not verdict and judged and g.has_grad and g.norm == 0:
            verdict, reason = _dead(session, end, layer, errors, zero)
        if not verdict and not reason and node.name in timed:
            verdict, reason = timed[node.name].verdict, timed[node.name].reason
        if not verdict and not reason and judged and not is_zero:
            faded = reached.get(layer.name, 0.0) < VANISHING * reference_error if layer else True
            verdict, reason = _vanishing(g.rms, weight_rms[node.name], peers.get(node.name), faded)
        if not verdict and not reason:
            reason = idle.get(node.name, "")
        rows.append(ParamFlow(node.name, node.module, tuple(node.shape), order.get(node.name, -1), g.norm, g.rms,
                              g.largest, weight_norm, g.nonfinite, verdict, g.nan, value_nan, value_inf, reason))
    reference = {"error": reference_error}
    overall = _nearest_loss([g for _, g in weights])
    if overall is not None:
        reference["weights"] = overall
    notes = [_zero_note(rows, zero, head), _idle_note(idle)]
    return GradientFlow(tuple(rows), reference, _loss_value(session, end), _first_nonfinite(session),
                        "; ".join(n for n in notes if n), through_time)


def _idle_experts(session: Any, end: int) -> dict[str, str]:
    """For each parameter that holds a mixture of experts' matrices (read by a grouped product, one matrix per
    expert along its first axis): which experts got no token in this batch, so no gradient. On one batch a few
    may; the same ones on every batch is router collapse."""
    notes: dict[str, str] = {}
    for node in session.graph.nodes:
        if node.op.name != "grouped_mm":
            continue
        value = session.trace.value(node.inputs[2].name, end)
        if value is None:
            continue
        ends = np.rint(np.asarray(session.backend.to_numpy(value), dtype=np.float64)).astype(np.int64).reshape(-1)
        idle = np.flatnonzero(np.diff(ends, prepend=0) <= 0)
        if not idle.size:
            continue
        listed = ", ".join(map(str, idle[:8].tolist())) + (", …" if idle.size > 8 else "")
        for name in _weights_of(session.graph, node):
            notes.setdefault(name, f"{idle.size} of {ends.size} experts got no token in this batch (expert"
                                   f"{'s' if idle.size > 1 else ''} {listed}): their slices' gradient is 0")
    return notes


def _idle_note(idle: dict[str, str]) -> str:
    """The summary's word on idle experts: each mixture-of-experts layer with experts no token went to."""
    layers = {name.rsplit(".", 1)[0]: note.split(" got")[0] for name, note in idle.items()}
    if not layers:
        return ""
    named = ", ".join(f"{layer} ({count})" for layer, count in list(layers.items())[:3])
    more = f", … {len(layers) - 3} more layers" if len(layers) > 3 else ""
    return f"experts no token went to in this batch, so without gradient: {named}{more}"


def _zero_weights_note(g: _Stats) -> str:
    return (f"zero weights: no gradient passes back through it yet; its own ‖∂L/∂w‖ is {g.norm:.3g}, it will "
            "learn")


def _zero_note(rows: list[ParamFlow], zero: set[str], head: str) -> str:
    """What the summary adds where all-zero weight matrices get a gradient (zero-initialised on purpose): the layers
    before them get none at this step, and the first update changes that."""
    learning = [r.name for r in rows if r.name in zero and r.rms > 0 and not r.verdict]
    if not learning:
        return ""
    if learning == [head]:
        return (f"{head} is all 0 (a zero-initialised head): no gradient passes back through it to the layers "
                "before it at this step, the first update gives it one")
    if len(learning) == 1:
        return (f"{learning[0]} is all 0 (zero-initialised): no gradient passes back through it at this step, the "
                "first update gives it one")
    more = f", … {len(learning) - 3} more" if len(learning) > 3 else ""
    return (f"{', '.join(learning[:3])}{more} are all 0 (zero-initialised): no gradient passes back through them "
            "at this step, the first update gives them one")


def _dead(session: Any, end: int, layer: Node | None, errors: dict[str, float],
          zero: set[str]) -> tuple[str, str]:
    """A weight matrix whose gradient is exactly 0 while the loss reads it, and why: no error reaches its layer (the
    op nearest it that lets none back through is named), or its input is 0 everywhere. Behind a zero-initialised
    layer that will learn, not flagged: the first update gives it a gradient."""
    if layer is None:
        return "vanishing", "dead: its gradient is exactly 0"
    if errors.get(layer.name, 0.0) == 0:
        stop = _blocker(session.graph, layer, errors)
        if stop is None:
            return "vanishing", "dead: no gradient reaches its layer"
        blocked = [name for name in _weights_of(session.graph, stop) if name in zero]
        if blocked:  # a zero-initialised layer: it learns at the first update, and then passes a gradient back
            return "", f"0 at this step: no gradient passes back through {blocked[0]} (all 0) yet"
        silent = _all_zero(session, stop.name, end)
        why = f", whose output is 0 everywhere{': dead units' if stop.op.category == 'activation' else ''}"
        return "vanishing", f"dead: no gradient gets back past {stop.name} ({stop.op.name}){why if silent else ''}"
    data = _data_ops(session.graph)
    for a in layer.inputs:
        if (a.name in data or a.op.name == "input") and _all_zero(session, a.name, end):
            return "vanishing", f"dead: its input {a.name} is 0 everywhere, so its gradient is 0"
    return "vanishing", "dead: its gradient is exactly 0"


def _weights_of(graph: Graph, node: Node) -> list[str]:
    """The parameters `node` reads, directly or through ops on parameters alone (a transpose, a cast)."""
    data = _data_ops(graph)
    found, frontier = [], list(node.inputs)
    while frontier:
        a = frontier.pop()
        if a.op.name == "parameter":
            found.append(a.name)
        elif a.name not in data:
            frontier.extend(a.inputs)
    return found


def _all_zero(session: Any, name: str, end: int) -> bool:
    value = session.trace.value(name, end)
    return value is not None and not np.any(np.asarray(session.backend.to_numpy(value)))


def _after(graph: Graph, start: Node, errors: dict[str, float], through: Callable[[Node], bool] = lambda _: True,
           limit: int | None = None) -> Iterator[Node]:
    """The ops after `start` that get a gradient (those in `errors`), nearest first; the walk goes on past a node
    only where `through(node)`, and stops once `limit` nodes are seen."""
    frontier, seen = [start], {start.name}
    while frontier and (limit is None or len(seen) < limit):
        after = []
        for node in frontier:
            for user in graph.users(node.name):
                if user.name in seen or user.name not in errors:
                    continue
                seen.add(user.name)
                yield user
                if through(user):
                    after.append(user)
        frontier = after


def _blocker(graph: Graph, layer: Node, errors: dict[str, float]) -> Node | None:
    """The op nearest `layer` on its way to the loss that gets a gradient but passes none back to its input: the
    dead ReLU, the zero-initialised layer between it and the loss."""
    return next((user for user in _after(graph, layer, errors) if errors[user.name] > 0), None)


class _Peers(NamedTuple):
    rms: float  # the median ‖∂L/∂w‖ RMS of the peers nearest the loss
    weight_rms: float  # and of their weights
    what: str  # `its peers'` or `the weights'`


def _peer_key(name: str) -> str:
    """A parameter's name up to its numbers, `layer#.#.conv#.weight`: the layers built alike, at every depth."""
    return re.sub(r"\d+", "#", name)


def _peer_references(weights: list[tuple[Node, _Stats]], weight_rms: dict[str, float]) -> dict[str, _Peers]:
    """Each weight's reference: its peers nearest the loss (`_peer_key`; a group of at least two), or, for a layer
    with no peer (a stem, a head), every weight nearest the loss."""
    healthy = [(node, g) for node, g in weights if g.has_grad and g.nonfinite == 0 and g.rms > 0]
    groups: dict[str, list[tuple[Node, _Stats]]] = {}
    for node, g in healthy:
        groups.setdefault(_peer_key(node.name), []).append((node, g))

    def reference(members: list[tuple[Node, _Stats]], what: str) -> _Peers:
        nearest = members[-max(2, round(NEAREST_LOSS * len(members))):]
        return _Peers(float(np.median([g.rms for _, g in nearest])),
                      float(np.median([weight_rms[node.name] for node, _ in nearest])), what)

    everything = reference(healthy, "the weights'") if healthy else None
    found = {}
    for node, _ in weights:
        members = groups.get(_peer_key(node.name), [])
        found[node.name] = reference(members, "its peers'") if len(members) >= 2 else everything
    return {name: peers for name, peers in found.items() if peers is not None}


def _vanishing(rms: float, weight_rms: float, peers: _Peers | None, faded: bool) -> tuple[str, str]:
    """A weight's gradient far below its peers' nearest the loss, and why: the error reaching its layer has faded
    on every path (`faded`), or its weights are far larger than theirs, so its gradient is tiny for their size. A
    gradient small only beside peers whose inputs grew (after a layer that blew the forward pass up) is neither."""
    if peers is None or peers.rms <= 0 or rms >= VANISHING * peers.rms:
        return "", ""
    if faded:
        return "vanishing", f"‖∂L/∂w‖ rms {rms / peers.rms:.1e} of {peers.what} nearest the loss"
    if peers.weight_rms > 0 and weight_rms > EXPLODING * peers.weight_rms:
        return "vanishing", (f"tiny for its weights' size: ‖∂L/∂w‖ rms {rms / peers.rms:.1e} of {peers.what} nearest "
                             f"the loss, its weights' rms {weight_rms / peers.weight_rms:.1e}× theirs")
    return "", ""


def _exploding(rising: float, reference: float) -> tuple[str, str]:
    """A layer whose error, and the error on some path on toward the input, is far above that at the loss."""
    if reference <= 0 or not rising > EXPLODING * reference:
        return "", ""
    return "exploding", f"∂L/∂y at its layer {rising / reference:.1e}× that at the loss, and growing toward the input"


class _Jump(NamedTuple):
    layer: Node  # the op that reads the weights
    weight: str  # their name
    factor: float  # the gradient it sends back to its input, against the error past it
    past: float  # the largest error RMS past it, through the next layer's output
    upstream: frozenset[str]  # the ops its input is computed from: those the jump reaches


def _jumps(session: Any, end: int, errors: dict[str, float], weight_layers: dict[str, str]) -> list[_Jump]:
    """The layers across which ∂L/∂h grows `JUMP` times or more going back: the gradient the layer sends to its
    input against the largest error past it, from its output through the next layer's (so a norm right after
    a large layer, which divides the error by as much as the layer multiplies it, is not one)."""
    graph = session.graph
    found = []
    records = {r.node.name: r for r in session.trace.records[:end] if r.phase == BACKWARD
               and r.node.name in weight_layers and r.node.op.category != "recurrent"}
    for name, record in records.items():
        data = [t for t in record.terms if t.input.name in errors]
        sent = max((_rms(session, t.contribution) for t in data), default=0.0)
        past = _past_error(graph, graph[name], errors, weight_layers)
        if past > 0 and sent >= JUMP * past:
            upstream = _upstream(graph, [t.input for t in data])
            found.append(_Jump(graph[name], weight_layers[name], sent / past, past, upstream))
    return found


def _rms(session: Any, value: Any) -> float:
    g = np.asarray(session.backend.to_numpy(value), dtype=np.float64)
    return float(np.linalg.norm(g[np.isfinite(g)])) / math.sqrt(max(g.size, 1))


def _past_error(graph: Graph, layer: Node, errors: dict[str, float], weight_layers: dict[str, str],
                limit: int = 64) -> float:
    """The largest error RMS at `layer`'s output and the ops after it up to the next layers' outputs (at most
    `limit` ops: a residual stream would run on to the loss)."""
    largest = errors.get(layer.name, 0.0)
    for user in _after(graph, layer, errors, lambda n: n.name not in weight_layers, limit):
        e = errors[user.name]
        largest = max(largest, 0.0 if math.isnan(e) else e)
    return largest


def _upstream(graph: Graph, starts: list[Node]) -> frozenset[str]:
    """The ops `starts` are computed from through differentiable inputs, `starts` included."""
    found, frontier = {n.name for n in starts}, list(starts)
    while frontier:
        node = frontier.pop()
        for i, a in enumerate(node.inputs):
            if node.op.differentiable(i) and a.name not in found and not a.is_leaf:
                found.add(a.name)
                frontier.append(a)
    return frozenset(found)


def _jump_verdict(layer: Node, errors: dict[str, float], jumps: list[_Jump], peers: _Peers | None,
                  weight_rms: float) -> tuple[str, str]:
    """Exploding where ∂L/∂h jumps back across this layer, or where the error reaching it comes through a jump
    and is still `JUMP` times the error past that jump."""
    for jump in jumps:
        if jump.layer.name == layer.name:
            size = weight_rms / peers.weight_rms if peers and peers.weight_rms > 0 else math.nan
            large = f"; its weights' rms {size:.1e}× {peers.what}" if peers and size >= 10 else ""
            return "exploding", (f"∂L/∂h jumps {jump.factor:.1e}× back across its layer: the gradient it sends to "
                                 f"its input against the error past it{large}")
    e = errors.get(layer.name, 0.0)
    for jump in jumps:
        if layer.name in jump.upstream and e >= JUMP * jump.past:
            return "exploding", (f"∂L/∂y at its layer {e / jump.past:.1e}× the error past {jump.weight}, where "
                                 f"∂L/∂h jumps {jump.factor:.1e}×")
    return "", ""


@dataclass(frozen=True)
class TimeFlow:
    """∂L/∂h through time in one recurrent layer (one cell node per step): its first and last step in the order
    it runs (a reverse direction runs from the last time index to the first)."""

    module: str
    weight: str  # the recurrent weight matrix W_hh the gradient passes through from step to step
    first: str  # the first step's cell (node name)
    last: str  # the last step's cell
    first_time: int
    last_time: int
    steps: int
    first_rms: float  # RMS of ∂L/∂h at the first step's output
    last_rms: float  # and at the last's

    @property
    def ratio(self) -> float:
        """∂L/∂h at the first step against the last: below 1 it shrinks on its way back through time."""
        return self.first_rms / self.last_rms if self.last_rms > 0 else math.nan

    @property
    def verdict(self) -> str:
        if not self.ratio > 0 or not math.isfinite(self.ratio):
            return ""
        # a recurrence is one layer applied at every step: growing JUMP times back through it is the jump the
        # layer rule flags (a tanh RNN of spectral radius 3 grows 380× in 30 steps, and 10¹⁰ in 100)
        return "vanishing" if self.ratio < VANISHING else "exploding" if self.ratio > JUMP else ""

    @property
    def reason(self) -> str:
        """`through time: ∂L/∂h at t=0 is 1.2e-39× that at t=199, 200 steps back`."""
        return (f"through time: ∂L/∂h at t={self.first_time} is {self.ratio:.1e}× that at t={self.last_time}, "
                f"{self.steps} steps back")

    def line(self) -> str:
        """One line for a table's foot: the layer, the two numbers, the verdict."""
        flag = f"  {self.verdict}" if self.verdict else ""
        return (f"through time  {self.module or self.weight}: ∂L/∂h rms {number_text(self.last_rms)} at "
                f"t={self.last_time}, {number_text(self.first_rms)} at t={self.first_time} "
                f"({self.steps} steps back, ×{self.ratio:.1e}){flag}")


def _through_time(session: Any, end: int) -> tuple[TimeFlow, ...]:
    """Every recurrent layer's ∂L/∂h at its first and last step (`TimeFlow`), in forward order."""
    layers: dict[str, list[Node]] = {}
    for node in session.graph.ops:
        if node.op.category == "recurrent" and len(node.inputs) > 3:
            layers.setdefault(node.inputs[3].name, []).append(node)  # one W_hh per layer and direction
    found = []
    for weight, cells in layers.items():
        if len(cells) < 2:
            continue
        first, last = cells[0], cells[-1]
        a, b = _grad_stats(session, first.name, end), _grad_stats(session, last.name, end)
        if not (a.has_grad and b.has_grad) or a.nonfinite or b.nonfinite:
            continue
        found.append(TimeFlow(first.module, weight, first.name, last.name, int(first.meta.get("time", 0)),
                              int(last.meta.get("time", len(cells) - 1)), len(cells), a.rms, b.rms))
    return tuple(found)


def _role(node: Node, layer: Node | None) -> str:
    """`weights` (a matrix or kernel a layer multiplies by), `embeddings` (a table looked up, a position embedding
    or class token added), or `vectors` (biases, norm scales and shifts, layer scales, scalars)."""
    if len(node.shape) < 2:
        return "vectors"
    if layer is not None and layer.op.name in _WEIGHT_OPS - {"mul"}:
        return "weights"  # a matrix the layer multiplies by: Linear(n, 1)'s (1, n) too
    if math.prod(node.shape) == max(node.shape):
        return "vectors"  # (1, C), (C, 1, 1): one number per channel, scaling or shifting
    if layer is None or layer.op.name in _WEIGHT_OPS:
        return "weights"
    return "embeddings"


# the ops that multiply by a parameter matrix or kernel (an embedding reads rows of one: not a weight)
_WEIGHT_OPS = frozenset({"linear", "matmul", "conv1d", "conv2d", "conv3d", "conv_transpose2d", "conv_transpose3d",
                         "rnn_cell", "lstm_cell", "gru_cell", "mul"})


def _data_ops(graph: Graph) -> set[str]:
    """The ops computed from the graph's inputs (the batch), losses left out: where the error of a layer is read."""
    found = {n.name for n in graph.inputs}
    for node in graph.ops:
        if not node.op.is_loss and any(a.name in found for a in node.inputs):
            found.add(node.name)
    return found - {n.name for n in graph.inputs}


def _layer_ops(graph: Graph) -> dict[str, Node]:
    """Each parameter's layer: the first op in forward order that reads it (directly, or through ops on
    parameters alone: a transpose, a cast) together with data. Its output's ∂L/∂y is the error the layer gets."""
    data = _data_ops(graph)
    found: dict[str, Node] = {}
    for param in graph.parameters:
        frontier, seen = [param], set()
        while frontier:
            for user in graph.users(frontier.pop().name):
                if user.name in seen or user.op.is_loss:
                    continue
                seen.add(user.name)
                if user.name in data:
                    if param.name not in found or user.index < found[param.name].index:
                        found[param.name] = user
                else:
                    frontier.append(user)
    return found


def _error_rms(session: Any, end: int) -> dict[str, float]:
    """The RMS of ∂L/∂y at every op computed from the batch (0 where none reaches it, NaN where not finite)."""
    errors = {}
    for name in _data_ops(session.graph):
        g = _grad_stats(session, name, end)
        errors[name] = math.nan if g.nonfinite else g.rms
    return errors


def _prediction_error(session: Any, end: int) -> float:
    """The RMS of ∂L/∂ŷ, the error at the loss's input: the scale every layer's error is judged against (0 where it
    is not finite)."""
    loss = session.loss_node
    for i, node in enumerate(loss.inputs):
        if loss.op.differentiable(i) and node.op.name not in ("input", "parameter"):
            g = _grad_stats(session, node.name, end)
            return g.rms if g.has_grad and g.nonfinite == 0 else 0.0
    return 0.0


def _error_paths(graph: Graph, errors: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """For each op in `errors`, along the paths the error takes on toward the input (the ops it is computed from,
    through differentiable inputs): the largest error there or at it (`reached`: small only where the error has
    faded on every path: vanishing through depth, not a side branch), and the smallest on the path that keeps it
    largest (`rising`: large only where it stays large toward the input: exploding, not a spike inside a
    function)."""
    reached: dict[str, float] = {}
    rising: dict[str, float] = {}
    for node in graph.ops:
        if node.name not in errors:
            continue
        e = errors[node.name]
        e = 0.0 if math.isnan(e) else e
        sources = [a.name for i, a in enumerate(node.inputs) if node.op.differentiable(i) and a.name in errors]
        reached[node.name] = max([e] + [reached[a] for a in sources])
        rising[node.name] = min(e, max(rising[a] for a in sources)) if sources else e
    return reached, rising


def _zero_head(graph: Graph, layers: dict[str, Node], zero_weights: list[Node]) -> str:
    """The all-zero weight matrix of the layer nearest the loss, if it is one (a zero-initialised head); ""."""
    weighted = [(layer.index, name) for name, layer in layers.items()
                if len(graph[name].shape) >= 2 and layer.op.name in _WEIGHT_OPS]
    if not weighted or not zero_weights:
        return ""
    last = max(weighted)[0]
    return next((n.name for n in zero_weights if n.name in layers and layers[n.name].index == last), "")


def activation_flow(session: Any) -> ActivationGradientFlow:
    """Run the whole backward pass (the cursor stays where it is) and read ∂L/∂h at every module output
    (`module_outputs`), from the gradients the trace holds."""
    end = _whole_pass(session)
    outputs, depth = module_outputs(session.graph)
    step = {n.name: i for i, n in enumerate(session.graph.ops)}  # the forward pass runs the ops in this order
    stats = [(out, _grad_stats(session, out.node.name, end)) for out in outputs]
    reference = _prediction_error(session, end)
    sources = _row_sources(session.graph, [out.node.name for out in outputs])
    reached: dict[str, float] = {}  # the largest RMS at a row or any row it is computed from, as `_error_paths`
    rising: dict[str, float] = {}  # the smallest RMS on the path on toward the input that keeps it largest
    verdicts: dict[str, str] = {}
    for out, g in stats:
        # Vanishing means the error fades on its way back through depth, and then every value it has yet to reach
        # gets as little. A value whose own ∂L/∂h is small while a row it is computed from still gets a healthy one
        # is a side branch with a small local derivative, not that: a freshly initialised attention's queries and
        # keys (the scores' softmax is flat, so q·kᵀ barely matters yet), a gate, a branch a layer scale of 10⁻⁶
        # multiplies. Exploding, the other way round, is an error that stays large on toward the input, not one
        # large value between healthy ones.
        name, e = out.node.name, (g.rms if g.has_grad and not g.nonfinite else 0.0)
        before = [a for a in sources[name] if a in reached]
        reached[name] = max([e] + [reached[a] for a in before])
        rising[name] = min(e, max(rising[a] for a in before)) if before else e
        verdict = _verdict(g, 0.0)
        if not verdict and reference > 0 and reached[name] < VANISHING * reference:
            verdict = "vanishing"
        elif not verdict and reference > 0 and rising[name] > EXPLODING * reference:
            verdict = "exploding"
        verdicts[name] = verdict
    reasons = _activation_jumps(sources, {out.node.name: g.rms if g.has_grad and not g.nonfinite else 0.0
                                          for out, g in stats}, verdicts)
    through_time = _through_time(session, end)
    for t in through_time:
        if t.verdict:  # its first step's row where listed (where the gradient ends up), else the layer's output
            row = t.first if t.first in verdicts else next(
                (out.node.name for out, _ in reversed(stats) if _within(out.module, t.module)), None)
            if row is not None and verdicts[row] in ("", t.verdict) and not reasons.get(row):
                verdicts[row], reasons[row] = t.verdict, t.reason
    rows = [ActivationFlow(out.node.name, out.module, out.label, tuple(out.node.shape), step[out.node.name],
                           g.norm, g.rms, g.largest, g.nonfinite, verdicts[out.node.name], g.nan,
                           reasons.get(out.node.name, "")) for out, g in stats]
    shown = _thinned(rows, ACTIVATION_ROWS)
    return ActivationGradientFlow(tuple(shown), reference, _loss_value(session, end), depth,
                                  _first_nonfinite(session), through_time, len(rows) - len(shown))


def _within(module: str, outer: str) -> bool:
    return module == outer or module.startswith(f"{outer}.")


def _activation_jumps(sources: dict[str, set[str]], rms: dict[str, float],
                      verdicts: dict[str, str]) -> dict[str, str]:
    """Rows whose ∂L/∂h is `JUMP` times or more the largest of the rows computed from them (the next ones toward
    the loss): the gradient jumps there going back. Flagged exploding (where nothing else is), with the rows before
    that stay `JUMP` times above the error past the jump. Returns the reasons, by row."""
    after: dict[str, float] = {}
    for name, before in sources.items():
        for a in before:
            after[a] = max(after.get(a, 0.0), rms[name])
    reasons: dict[str, str] = {}
    jumps = [(name, rms[name] / past) for name, past in after.items() if past > 0 and rms[name] >= JUMP * past]
    for name, factor in jumps:
        past = after[name]
        if not verdicts[name]:
            verdicts[name], reasons[name] = "exploding", f"∂L/∂h jumps {factor:.1e}× back across the next rows"
        frontier, seen = list(sources[name]), set()
        while frontier:  # the rows it is computed from, while they stay that large
            a = frontier.pop()
            if a in seen or rms[a] < JUMP * past:
                continue
            seen.add(a)
            if not verdicts[a]:
                verdicts[a], reasons[a] = "exploding", f"∂L/∂h {rms[a] / past:.1e}× the error past {name}'s jump"
            frontier.extend(sources[a])
    return reasons


def _thinned(rows: list[ActivationFlow], limit: int) -> list[ActivationFlow]:
    """At most `limit` of `rows`, in order: the first, the last and every flagged one, the rest evenly spaced."""
    if len(rows) <= limit:
        return rows
    keep = {0, len(rows) - 1} | {i for i, r in enumerate(rows) if r.verdict}
    keep = set(sorted(keep, key=lambda i: (i not in (0, len(rows) - 1), i))[:limit])
    spare = limit - len(keep)
    others = [i for i in range(len(rows)) if i not in keep]
    if spare > 0 and others:
        keep |= {others[round(k * (len(others) - 1) / max(spare - 1, 1))] for k in range(spare)}
    return [rows[i] for i in sorted(keep)]


@dataclass(frozen=True)
class ModuleOutput:
    node: Node  # whose value leaves
    module: str  # the module it leaves, or the module holding an op listed on its own
    label: str = ""  # `module` where no other row has it, else the node's name


def module_outputs(graph: Graph) -> tuple[list[ModuleOutput], int]:
    """The values leaving the modules of one module level, in forward order; and that level (1: the top-level
    modules).

    Every op belongs to one *unit* at level d: its module's path cut to d parts (`layer1.0` at 2 for
    `layer1.0.conv1`). Where its path is shorter, its module is open at that level: the op joins that module's own
    ops (the glue between its children: ResNet's residual `add` in `layer1.0` at 3, the pads, slices and cat of
    Swin's patch merging, `flatten` and ViT's class-token ops at the top), or, in a module with no children
    (`hidden`: linear and sigmoid), stands alone; one level more splits the glue too: every op's output. A unit's
    rows are its values that an op of another unit, or the loss, reads; a module called twice (ResNet's `relu`)
    gives a row per call.

    Which level: the deepest whose list stays within `ACTIVATION_ROWS`, at least the top. A model nests its modules
    as deep as its author cut it, not evenly, so no fixed level suits all: ResNet-18's blocks are level 2 (15 rows;
    level 3 gives 66, every conv and norm), a Sequential MLP's layers level 1, ViT's encoder layers level 3; and the
    deepest that fits shows the most of the way back. A graph without modules lists every op's output.

    A module with no children that reads no weight matrix or kernel is never opened: an activation function (GELU,
    SiLU, Mish), softmax, attention's core, pooling, dropout, a norm (RMSNorm's mean and + eps are not outputs).
    Its ops are one function's decomposition, exported op by op (the
    tanh GELU is eight: pow, mul, add, tanh...), and the values between them are that formula's terms, not values
    leaving a layer: their ∂L/∂h says nothing about depth, and can be tiny by the formula alone (the cube's term of
    GELU carries 0.044715 · 3x², which a small GPT-2 listed, one level too deep, as vanishing). Its output is its row.

    Only activations are listed: values computed from the parameters through differentiable inputs. Masks,
    position ids and shapes made from the inputs or constants have no ∂L/∂h to follow; an activation that gets none
    (a branch the loss does not read) is listed, and flagged.
    """
    paths = _op_modules(graph)
    activations = _activations(graph)
    parents = {p[:k] for p in paths.values() for k in range(len(p))}  # the modules holding another (() the model)
    closed = _one_function_modules(graph, paths, parents)
    users = {n.name: graph.users(n.name) for n in graph.ops}
    deepest = max((len(p) for p in paths.values()), default=0)
    chosen: list[ModuleOutput] = []
    level = 1
    for depth in range(1, deepest + 3):  # at deepest + 1 every module is open; at deepest + 2 every op alone
        found = _outputs_at(graph, paths, parents if depth <= deepest + 1 else set(), closed, users, activations,
                            depth)
        if depth > 1 and len(found) > ACTIVATION_ROWS:
            if len(chosen) < FEW_ROWS and len(found) > len(chosen):  # a deep Sequential in one module: its layers,
                chosen, level = found, depth  # thinned by `activation_flow` to ACTIVATION_ROWS
            break  # each level's list holds the one above it split up: deeper is longer still
        if depth == 1 or [out.node for out in found] != [out.node for out in chosen]:  # the same: the level above
            chosen, level = found, depth
    shared = Counter(out.module for out in chosen)
    return [ModuleOutput(out.node, out.module, out.module if out.module and shared[out.module] == 1 else out.node.name)
            for out in chosen], level


def _one_function_modules(graph: Graph, paths: dict[str, tuple[str, ...]],
                          parents: set[tuple[str, ...]]) -> set[tuple[str, ...]]:
    """The modules `module_outputs` never opens: those without children whose ops read no weight matrix or kernel
    (a norm's scale and shift, a layer scale are one number per channel: an RMSNorm exported op by op is still one
    function, its mean and rsqrt steps are not values leaving a layer)."""
    leaves = {p for p in paths.values() if p and p not in parents}
    weighted = {paths[n.name] for n in graph.ops
                if any(a.op.name == "parameter" and math.prod(a.shape) > max(a.shape, default=1) for a in n.inputs)}
    return leaves - weighted


def _outputs_at(graph: Graph, paths: dict[str, tuple[str, ...]], parents: set[tuple[str, ...]],
                closed: set[tuple[str, ...]], users: dict[str, list[Node]], activations: set[str],
                depth: int) -> list[ModuleOutput]:
    """The activations leaving the units of level `depth` (see `module_outputs`), with the unit's module."""
    unit: dict[str, tuple[str, str]] = {}  # op -> (kind, module path or op name): op and module names may clash
    members: dict[tuple[str, str], list[Node]] = {}
    for node in graph.ops:
        parts = paths[node.name]
        if len(parts) >= depth:
            key = ("module", ".".join(parts[:depth]))
        elif parts in closed:
            key = ("module", ".".join(parts))
        elif parts in parents and not node.op.is_loss:
            key = ("own ops", ".".join(parts))
        else:
            key = ("op", node.name)
        unit[node.name] = key
        members.setdefault(key, []).append(node)
    outputs = {n.name for n in graph.outputs}
    found = []
    for (kind, path), nodes in members.items():
        leaving = [n for n in nodes
                   if n.name in outputs or any(unit[u.name] != unit[n.name] for u in users[n.name])]
        for node in leaving or nodes[-1:]:  # a unit nothing reads (a dropped branch) shows its last value
            if node.name in activations:
                found.append(ModuleOutput(node, node.module if kind == "op" else path))
    found.sort(key=lambda out: out.node.index)
    return found


def _op_modules(graph: Graph) -> dict[str, tuple[str, ...]]:
    """Each op's module path, split. An op without one whose inputs and users all lie in one module belongs to the
    innermost such module, as the canvas folds it (gui/canvas/folding.py `_modules`): exporters drop the scope of
    helper ops (the slices ONNX's Split becomes), which would otherwise be listed as top-level outputs of their own."""
    paths: dict[str, tuple[str, ...]] = {}
    for node in graph.ops:
        path = node.module
        if not path and node.inputs and not node.op.is_loss:
            around = [".".join(paths[a.name]) if a.name in paths else a.module for a in node.inputs]
            path = _common_module(around + [u.module for u in graph.users(node.name)])
        paths[node.name] = tuple(path.split(".")) if path else ()
    return paths


def _common_module(paths: list[str]) -> str:
    """The innermost module holding every one of `paths` ("" when one is at the top or they share none)."""
    if not paths or "" in paths:
        return ""
    shared = []
    for names in zip(*(p.split(".") for p in paths), strict=False):
        if len(set(names)) > 1:
            break
        shared.append(names[0])
    return ".".join(shared)


def _activations(graph: Graph) -> set[str]:
    """The ops computed from a parameter through differentiable inputs, losses left out."""
    found: set[str] = set()
    for node in graph.ops:
        if not node.op.is_loss and any(node.op.differentiable(i) and (a.name in found or a.op.name == "parameter")
                                       for i, a in enumerate(node.inputs)):
            found.add(node.name)
    return found


def _row_sources(graph: Graph, rows: list[str]) -> dict[str, set[str]]:
    """For each of `rows` (node names, in forward order), the rows nearest before it that its value is computed from
    through differentiable inputs: those its gradient flows on to."""
    listed = set(rows)
    feeding: dict[str, set[str]] = {}  # node -> the nearest rows its value is computed from (itself, for a row)
    sources: dict[str, set[str]] = {}
    for node in graph:
        found: set[str] = set()
        for i, a in enumerate(node.inputs):
            if node.op.differentiable(i):
                found |= feeding.get(a.name, set())
        if node.name in listed:
            sources[node.name] = found
            found = {node.name}
        feeding[node.name] = found
    return {name: sources.get(name, set()) for name in rows}


def _whole_pass(session: Any) -> int:
    """The backward pass computed to its end in the trace (the cursor stays); that end."""
    if session.loss_node is None:
        raise PropscopeError("no loss, so no backward pass: attach one first (loss= in Python, --loss on the command "
                             "line, Debug ▸ Loss in the app)")
    end = len(session.steps)
    session.trace.compute_through(end - 1)
    return end


class _Stats(NamedTuple):
    norm: float  # ‖g‖ of the finite entries
    rms: float  # that norm / √(entries)
    largest: float  # max |g| of the finite entries
    nonfinite: int  # NaN and ±inf entries
    nan: int  # NaN entries
    has_grad: bool  # whether the trace holds a gradient at all


def _grad_stats(session: Any, name: str, end: int) -> _Stats:
    """The statistics of `name`'s gradient as the trace holds it after `end` steps."""
    grad = session.trace.grad(name, end)
    if grad is None:
        return _Stats(0.0, 0.0, 0.0, 0, 0, False)
    g = np.asarray(session.backend.to_numpy(grad), dtype=np.float64)
    finite = np.isfinite(g)
    kept = g[finite]
    norm = float(np.linalg.norm(kept))
    nan, inf = nonfinite_counts(g)
    return _Stats(norm, norm / math.sqrt(max(g.size, 1)), float(np.max(np.abs(kept), initial=0.0)), nan + inf, nan,
                  True)


def _nearest_loss(stats: list[_Stats]) -> float | None:
    """The median RMS of the healthy gradients nearest the loss: the last `NEAREST_LOSS` of `stats` (in forward order),
    at least two; None when none is finite, non-zero and there."""
    healthy = [g.rms for g in stats if g.has_grad and g.nonfinite == 0 and g.rms > 0]
    nearest = healthy[-max(2, round(NEAREST_LOSS * len(healthy))):]
    return float(np.median(nearest)) if nearest else None


def _verdict(g: _Stats, reference: float) -> str:
    if g.nonfinite:
        return "not finite"
    if not g.has_grad:
        return "no gradient"
    if reference > 0 and g.rms < VANISHING * reference:
        return "vanishing"
    if reference > 0 and g.rms > EXPLODING * reference:
        return "exploding"
    return ""


def _first_nonfinite(session: Any) -> str:
    """Where the pass first made a NaN or ±inf, `forward step 35 (conv2d conv2d_10)`; "" where it made none."""
    found = session.trace.first_nonfinite
    if found is None:
        return ""
    index, node = found
    # the data holding NaN is where it starts, the op only met it (a weight that holds one leads the summary itself)
    held = carried_in(node, lambda name: _numpy_value(session, name) if session.graph[name].op.name == "input"
                      else None)
    return f"{session.steps[index].phase} step {index + 1} ({node.op.name} {node.name}" + \
        (f", carried in: {held} already held it)" if held else ")")


def _numpy_value(session: Any, name: str) -> np.ndarray | None:
    value = session.value(name)
    return None if value is None else np.asarray(session.backend.to_numpy(value))


def _summary(head: str, verdicts: list[tuple[str, str]], lead: Sequence[str] = ()) -> str:
    """`head`, then `lead` (what a reader must see first: the parameters that hold NaN themselves), then how many rows
    of each verdict, naming the first few in forward order (or that none is flagged)."""
    counts: dict[str, list[str]] = {}
    for verdict, label in verdicts:
        if verdict:
            counts.setdefault(verdict, []).append(label)
    if not verdicts and not lead:
        return f"{head}: nothing to judge"
    if not counts and not lead:
        return f"{head}: every gradient finite and within 10³ of those nearest the loss"
    parts = list(lead)
    for verdict in ("not finite", "exploding", "vanishing", "no gradient"):
        labels = counts.get(verdict, [])
        if labels:
            more = f", … {len(labels) - 3} more" if len(labels) > 3 else ""
            parts.append(f"{len(labels)} {verdict} ({', '.join(labels[:3])}{more})")
    return f"{head}: " + "; ".join(parts)


def _time_notes(flows: Sequence[TimeFlow]) -> list[str]:
    """What a summary adds for recurrent layers whose ∂L/∂h vanishes or explodes through time."""
    return [f"{t.module or t.weight} {t.verdict} through time (∂L/∂h ×{t.ratio:.1e} from t={t.last_time} back to "
            f"t={t.first_time})" for t in flows if t.verdict]


def _nonfinite_lead(holders: list[ParamFlow], first: str) -> list[str]:
    """The start of a summary where the pass went non-finite: the parameters whose own values hold NaN or ±inf (the
    cause a reader looks for, which the list of non-finite gradients, in forward order, would not name first), then
    the step that first made one."""
    lead = [f"{r.name} {r.value_note()}" for r in holders[:3]]
    if len(holders) > 3:
        lead.append(f"… {len(holders) - 3} more hold NaN or inf themselves")
    if first:
        lead.append(f"first non-finite value at {first}")
    return lead


def _loss_value(session: Any, end: int) -> float:
    value = session.trace.value(session.loss_node.name, end)
    return float(np.asarray(session.backend.to_numpy(value))) if value is not None else math.nan


def _kind(shape: tuple[int, ...]) -> str:
    """Weight matrices and filters, or vectors (biases, norm scales, scalars): compared each with their own kind."""
    return "weights" if len(shape) >= 2 else "vectors"

"""Gradient flow: every parameter's gradient after one backward pass, in the order the forward pass first uses it,
with those that vanish, explode, are not finite or get none flagged.

This is the plot engineers write by hand (the mean |gradient| per layer, "plot_grad_flow") to find where a deep
network stops learning. Layers differ in size, so they are compared by the root mean square of their gradient's
entries, and against the parameters of their kind nearest the loss (the median RMS of the last tenth in forward
order, at least two; weight matrices and filters with each other, biases and norm scales with each other, since a
weight's gradient also carries its input's size while a bias's is the backpropagated error itself): what the
gradient became on its way back from there. A parameter is *vanishing* below 1/1000 of that reference,
*exploding* above 1000 times it. The ratio ‖∂L/∂w‖ / ‖w‖ is what one SGD step at learning rate 1 would
change the weights by, relative to them.

Beside it, the gradient through depth: ∂L/∂h for the value h leaving each module (`activation_flow`). A weight's
gradient is its input times the error arriving at its layer, so it mixes in the input's scale; ∂L/∂h is that error
itself, layer by layer: a deep sigmoid MLP shows it shrink towards the input, a ResNet shows its skips keep it.
These rows are compared with the activations nearest the loss, in the same way and with the same thresholds.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..graph.errors import PropscopeError
from ..graph.ir import Graph, Node
from .steps import FORWARD

VANISHING = 1e-3  # RMS below this fraction of the reference (the parameters nearest the loss)
EXPLODING = 1e3  # RMS above this multiple of it
NEAREST_LOSS = 0.1  # the reference: the median RMS of this last fraction of the parameters, in forward order
ACTIVATION_ROWS = 60  # list the module outputs of the deepest module level that gives at most this many rows


@dataclass(frozen=True)
class ParamFlow:
    """One parameter's gradient, as the whole backward pass left it."""

    name: str
    module: str
    shape: tuple[int, ...]
    order: int  # the forward step that first uses it (0-based), or −1 for a parameter no step reads
    norm: float  # ‖∂L/∂w‖ (of the finite entries)
    rms: float  # ‖∂L/∂w‖ / √(entries)
    largest: float  # max |∂L/∂w| (of the finite entries)
    weight_norm: float  # ‖w‖
    nonfinite: int  # NaN and ±Inf entries of the gradient
    verdict: str  # "", "not finite", "no gradient", "vanishing" or "exploding"

    @property
    def ratio(self) -> float:
        """‖∂L/∂w‖ / ‖w‖: an SGD step at learning rate 1, relative to the weights (NaN for zero weights)."""
        return self.norm / self.weight_norm if self.weight_norm > 0 else math.nan


@dataclass(frozen=True)
class GradientFlow:
    rows: tuple[ParamFlow, ...]  # in forward order
    reference_rms: dict[str, float]  # per kind ("weights", "vectors"): the median RMS of those nearest the loss
    loss: float

    @property
    def flagged(self) -> list[ParamFlow]:
        return [r for r in self.rows if r.verdict]

    def summary(self) -> str:
        """One line: how many parameters, how many of each kind flagged, naming the first few."""
        return _summary(f"{len(self.rows)} parameters, loss {self.loss:.6g}", [(r.verdict, r.name) for r in self.rows])

    def text(self, flagged_only: bool = False) -> str:
        """A table, one parameter a line, in forward order."""
        rows = self.flagged if flagged_only else list(self.rows)
        width = max([len(r.name) for r in rows] + [9])
        lines = [f"{'step':>5}  {'parameter':<{width}}  {'shape':<14} {'‖∂L/∂w‖':>10} {'rms':>10} {'max|g|':>10} "
                 f"{'‖g‖/‖w‖':>10}  flag"]
        for r in rows:
            shape = "×".join(map(str, r.shape)) or "scalar"
            lines.append(f"{r.order + 1 if r.order >= 0 else '-':>5}  {r.name:<{width}}  {shape:<14} {r.norm:>10.3e} "
                         f"{r.rms:>10.3e} {r.largest:>10.3e} {r.ratio:>10.3e}  {r.verdict}")
        return "\n".join(lines)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [{"parameter": r.name, "module": r.module, "shape": list(r.shape), "step": r.order + 1,
                 "norm": r.norm, "rms": r.rms, "max": r.largest, "weight_norm": r.weight_norm, "ratio": r.ratio,
                 "nonfinite": r.nonfinite, "flag": r.verdict} for r in self.rows]


@dataclass(frozen=True)
class ActivationFlow:
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


@dataclass(frozen=True)
class ActivationGradientFlow:
    """∂L/∂h at every module output of one module level, in forward order (`activation_flow`)."""

    rows: tuple[ActivationFlow, ...]
    reference_rms: float  # the median RMS of the activations nearest the loss (0 when none is healthy)
    loss: float
    depth: int  # the module level listed: 1 for the top-level modules, 2 for their children...

    @property
    def flagged(self) -> list[ActivationFlow]:
        return [r for r in self.rows if r.verdict]

    def summary(self) -> str:
        """One line: how many activations, how many of each kind flagged, naming the first few."""
        head = f"{len(self.rows)} activations, loss {self.loss:.6g}"
        return _summary(head, [(r.verdict, r.label) for r in self.rows])

    def text(self, flagged_only: bool = False) -> str:
        """A table, one module output a line, in forward order."""
        rows = self.flagged if flagged_only else list(self.rows)
        width = max([len(r.module) for r in rows] + [6])
        named = max([len(r.name) for r in rows] + [6])
        lines = [f"{'step':>5}  {'module':<{width}}  {'output':<{named}}  {'shape':<16} {'‖∂L/∂h‖':>10} {'rms':>10} "
                 f"{'max|g|':>10}  flag"]
        for r in rows:
            shape = "×".join(map(str, r.shape)) or "scalar"
            lines.append(f"{r.order + 1:>5}  {r.module or '-':<{width}}  {r.name:<{named}}  {shape:<16} "
                         f"{r.norm:>10.3e} {r.rms:>10.3e} {r.largest:>10.3e}  {r.verdict}")
        return "\n".join(lines)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [{"module": r.module, "output": r.name, "shape": list(r.shape), "step": r.order + 1, "norm": r.norm,
                 "rms": r.rms, "max": r.largest, "nonfinite": r.nonfinite, "flag": r.verdict} for r in self.rows]


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
    order = first_uses(session)
    stats = []
    for node in session.graph.parameters:
        weight = np.asarray(session.backend.to_numpy(session.trace.value(node.name, end)), dtype=np.float64)
        weight_norm = float(np.linalg.norm(weight[np.isfinite(weight)]))
        stats.append((node, _grad_stats(session, node.name, end), weight_norm))
    stats.sort(key=lambda st: (order.get(st[0].name, -1) < 0, order.get(st[0].name, -1), st[0].name))
    reference: dict[str, float] = {}
    for kind in ("weights", "vectors"):
        rms = _nearest_loss([st[1] for st in stats if _kind(st[0].shape) == kind])
        if rms is not None:
            reference[kind] = rms
    rows = []
    for node, (norm, rms, largest, nonfinite, has_grad), weight_norm in stats:
        median = reference.get(_kind(node.shape)) or next(iter(reference.values()), 0.0)
        rows.append(ParamFlow(node.name, node.module, tuple(node.shape), order.get(node.name, -1), norm, rms, largest,
                              weight_norm, nonfinite, _verdict(rms, nonfinite, has_grad, median)))
    return GradientFlow(tuple(rows), reference, _loss_value(session, end))


def activation_flow(session: Any) -> ActivationGradientFlow:
    """Run the whole backward pass (the cursor stays where it is) and read ∂L/∂h at every module output
    (`module_outputs`), from the gradients the trace holds."""
    end = _whole_pass(session)
    outputs, depth = module_outputs(session.graph)
    step = {n.name: i for i, n in enumerate(session.graph.ops)}  # the forward pass runs the ops in this order
    stats = [(out, _grad_stats(session, out.node.name, end)) for out in outputs]
    reference = _nearest_loss([st[1] for st in stats]) or 0.0
    rows = tuple(ActivationFlow(out.node.name, out.module, out.label, tuple(out.node.shape), step[out.node.name], norm,
                                rms, largest, nonfinite, _verdict(rms, nonfinite, has_grad, reference))
                 for out, (norm, rms, largest, nonfinite, has_grad) in stats)
    return ActivationGradientFlow(rows, reference, _loss_value(session, end), depth)


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

    Only activations are listed: values computed from the parameters through differentiable inputs. Masks,
    position ids and shapes made from the inputs or constants have no ∂L/∂h to follow; an activation that gets none
    (a branch the loss does not read) is listed, and flagged.
    """
    paths = _op_modules(graph)
    activations = _activations(graph)
    parents = {p[:k] for p in paths.values() for k in range(len(p))}  # the modules holding another (() the model)
    users = {n.name: graph.users(n.name) for n in graph.ops}
    deepest = max((len(p) for p in paths.values()), default=0)
    chosen: list[ModuleOutput] = []
    level = 1
    for depth in range(1, deepest + 3):  # at deepest + 1 every module is open; at deepest + 2 every op alone
        found = _outputs_at(graph, paths, parents if depth <= deepest + 1 else set(), users, activations, depth)
        if depth > 1 and len(found) > ACTIVATION_ROWS:
            break  # each level's list holds the one above it split up: deeper is longer still
        if depth == 1 or [out.node for out in found] != [out.node for out in chosen]:  # the same: the level above
            chosen, level = found, depth
    shared = Counter(out.module for out in chosen)
    return [ModuleOutput(out.node, out.module, out.module if out.module and shared[out.module] == 1 else out.node.name)
            for out in chosen], level


def _outputs_at(graph: Graph, paths: dict[str, tuple[str, ...]], parents: set[tuple[str, ...]],
                users: dict[str, list[Node]], activations: set[str], depth: int) -> list[ModuleOutput]:
    """The activations leaving the units of level `depth` (see `module_outputs`), with the unit's module."""
    unit: dict[str, tuple[str, str]] = {}  # op -> (kind, module path or op name): op and module names may clash
    members: dict[tuple[str, str], list[Node]] = {}
    for node in graph.ops:
        parts = paths[node.name]
        if len(parts) >= depth:
            key = ("module", ".".join(parts[:depth]))
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


def _whole_pass(session: Any) -> int:
    """The backward pass computed to its end in the trace (the cursor stays); that end."""
    if session.loss_node is None:
        raise PropscopeError("no loss, so no backward pass: attach one first (loss= in Python, --loss on the command "
                             "line, Debug ▸ Loss in the app)")
    end = len(session.steps)
    session.trace.compute_through(end - 1)
    return end


def _grad_stats(session: Any, name: str, end: int) -> tuple[float, float, float, int, bool]:
    """‖g‖ and max |g| of the finite entries, the RMS, the non-finite count of `name`'s gradient as the trace holds
    it after `end` steps, and whether it has one."""
    grad = session.trace.grad(name, end)
    if grad is None:
        return 0.0, 0.0, 0.0, 0, False
    g = np.asarray(session.backend.to_numpy(grad), dtype=np.float64)
    finite = np.isfinite(g)
    kept = g[finite]
    norm = float(np.linalg.norm(kept))
    return (norm, norm / math.sqrt(max(g.size, 1)), float(np.max(np.abs(kept), initial=0.0)),
            int(g.size - np.count_nonzero(finite)), True)


def _nearest_loss(stats: list[tuple[float, float, float, int, bool]]) -> float | None:
    """The median RMS of the healthy gradients nearest the loss: the last `NEAREST_LOSS` of `stats` (in forward order),
    at least two; None when none is finite, non-zero and there."""
    healthy = [rms for _, rms, _, nonfinite, has_grad in stats if has_grad and nonfinite == 0 and rms > 0]
    nearest = healthy[-max(2, round(NEAREST_LOSS * len(healthy))):]
    return float(np.median(nearest)) if nearest else None


def _verdict(rms: float, nonfinite: int, has_grad: bool, reference: float) -> str:
    if nonfinite:
        return "not finite"
    if not has_grad:
        return "no gradient"
    if reference > 0 and rms < VANISHING * reference:
        return "vanishing"
    if reference > 0 and rms > EXPLODING * reference:
        return "exploding"
    return ""


def _summary(head: str, verdicts: list[tuple[str, str]]) -> str:
    """`head`, then how many rows of each verdict, naming the first few (or that none is flagged)."""
    counts: dict[str, list[str]] = {}
    for verdict, label in verdicts:
        if verdict:
            counts.setdefault(verdict, []).append(label)
    if not counts:
        return f"{head}: every gradient finite and within 10³ of those nearest the loss"
    parts = []
    for verdict in ("not finite", "exploding", "vanishing", "no gradient"):
        labels = counts.get(verdict, [])
        if labels:
            more = f", … {len(labels) - 3} more" if len(labels) > 3 else ""
            parts.append(f"{len(labels)} {verdict} ({', '.join(labels[:3])}{more})")
    return f"{head}: " + "; ".join(parts)


def _loss_value(session: Any, end: int) -> float:
    value = session.trace.value(session.loss_node.name, end)
    return float(np.asarray(session.backend.to_numpy(value))) if value is not None else math.nan


def _kind(shape: tuple[int, ...]) -> str:
    """Weight matrices and filters, or vectors (biases, norm scales, scalars): compared each with their own kind."""
    return "weights" if len(shape) >= 2 else "vectors"

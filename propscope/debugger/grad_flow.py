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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..graph.errors import PropscopeError
from .steps import FORWARD

VANISHING = 1e-3  # RMS below this fraction of the reference (the parameters nearest the loss)
EXPLODING = 1e3  # RMS above this multiple of it
NEAREST_LOSS = 0.1  # the reference: the median RMS of this last fraction of the parameters, in forward order


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
        counts: dict[str, list[str]] = {}
        for r in self.flagged:
            counts.setdefault(r.verdict, []).append(r.name)
        if not counts:
            return (f"{len(self.rows)} parameters, loss {self.loss:.6g}: every gradient finite and within 10³ of "
                    "those nearest the loss")
        parts = []
        for verdict in ("not finite", "exploding", "vanishing", "no gradient"):
            names = counts.get(verdict, [])
            if names:
                more = f", … {len(names) - 3} more" if len(names) > 3 else ""
                parts.append(f"{len(names)} {verdict} ({', '.join(names[:3])}{more})")
        return f"{len(self.rows)} parameters, loss {self.loss:.6g}: " + "; ".join(parts)

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
    loss = session.loss_node
    if loss is None:
        raise PropscopeError("no loss, so no backward pass: attach one (--loss, or Debug ▸ Loss) first")
    end = len(session.steps)
    session.trace.compute_through(end - 1)
    order = first_uses(session)
    stats = []
    for node in session.graph.parameters:
        grad = session.trace.grad(node.name, end)
        weight = np.asarray(session.backend.to_numpy(session.trace.value(node.name, end)), dtype=np.float64)
        weight_norm = float(np.linalg.norm(weight[np.isfinite(weight)]))
        if grad is None:
            stats.append((node, 0.0, 0.0, 0.0, weight_norm, 0, False))
            continue
        g = np.asarray(session.backend.to_numpy(grad), dtype=np.float64)
        finite = np.isfinite(g)
        kept = g[finite]
        norm = float(np.linalg.norm(kept))
        stats.append((node, norm, norm / math.sqrt(max(g.size, 1)), float(np.max(np.abs(kept), initial=0.0)),
                      weight_norm, int(g.size - np.count_nonzero(finite)), True))
    stats.sort(key=lambda st: (order.get(st[0].name, -1) < 0, order.get(st[0].name, -1), st[0].name))
    reference: dict[str, float] = {}
    for kind in ("weights", "vectors"):
        healthy = [st[2] for st in stats if _kind(st[0].shape) == kind and st[6] and st[5] == 0 and st[2] > 0]
        nearest = healthy[-max(2, round(NEAREST_LOSS * len(healthy))):]  # in forward order: the last are nearest
        if nearest:
            reference[kind] = float(np.median(nearest))
    rows = []
    for node, norm, rms, largest, weight_norm, nonfinite, has_grad in stats:
        median = reference.get(_kind(node.shape)) or next(iter(reference.values()), 0.0)
        if nonfinite:
            verdict = "not finite"
        elif not has_grad:
            verdict = "no gradient"
        elif median > 0 and rms < VANISHING * median:
            verdict = "vanishing"
        elif median > 0 and rms > EXPLODING * median:
            verdict = "exploding"
        else:
            verdict = ""
        rows.append(ParamFlow(node.name, node.module, tuple(node.shape), order.get(node.name, -1), norm, rms, largest,
                              weight_norm, nonfinite, verdict))
    loss_value = session.trace.value(loss.name, end)
    loss_number = float(np.asarray(session.backend.to_numpy(loss_value))) if loss_value is not None else math.nan
    return GradientFlow(tuple(rows), reference, loss_number)


def _kind(shape: tuple[int, ...]) -> str:
    """Weight matrices and filters, or vectors (biases, norm scales, scalars): compared each with their own kind."""
    return "weights" if len(shape) >= 2 else "vectors"

"""Why a gradient vanishes: the units that pass none. Every activation function's output after one forward pass,
with the share of its units that are dead or saturated.

A ReLU passes gradient only where its output is positive: a unit whose output is 0 on every sample of the batch
(its pre-activation negative for all of them) passes none back to what feeds it, and if that lasts it never
learns again ("dying ReLU"). A sigmoid or tanh at its flat ends passes almost none: σ' = σ(1 − σ) is below 1/25 of
its largest (¼) where σ < 0.01 or σ > 0.99, tanh' = 1 − tanh² below 1/50 of its largest where |tanh| > 0.99; the
hard variants (hardsigmoid, clamp, ReLU6) pass exactly none at their bounds. Stacked, such layers are where the
gradient flow's ∂L/∂h (`grad_flow.activation_flow`) shrinks.

*Dead* is measured per position, not per channel (which axis holds the channels is a question of layout): a position
of the output (every axis but the batch's) is dead where the unit is 0 for every sample. With few samples a live
unit can read as dead by chance (½ⁿ for n samples and a symmetric pre-activation; with one, half of any healthy ReLU
layer would), so dead is judged from two samples on. A layer is flagged *dead* when at least half its positions are,
*saturated* when at least half its entries are; *not finite* when any entry is NaN or ±Inf. These bounds are
conventions (the plots of Glorot & Bengio 2010 and the "dead ReLU" fraction of training dashboards), printed beside
the numbers they judge.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..graph.ir import Node
from .steps import FORWARD

FLAGGED_SHARE = 0.5  # a layer is flagged when at least this share of it is dead (or saturated)
MIN_SAMPLES = 2  # dead needs this many samples: with one, half of a healthy ReLU layer's units read 0


def _clamp_bounds(node: Node, h: np.ndarray) -> np.ndarray:
    """At either bound; a floor at 0 (ReLU6) is a ReLU's, counted as dead instead, so only the ceiling there."""
    low, high = node.attrs.get("min"), node.attrs.get("max")
    at = np.zeros(h.shape, dtype=bool)
    if low is not None and low != 0:
        at |= h <= low
    if high is not None:
        at |= h >= high
    return at


# where an activation's output says its slope is (nearly) 0; the thresholds are given in the module's docstring
SATURATED: dict[str, Callable[[Node, np.ndarray], np.ndarray]] = {
    "sigmoid": lambda node, h: (h < 0.01) | (h > 0.99),
    "tanh": lambda node, h: np.abs(h) > 0.99,
    "hardsigmoid": lambda node, h: (h <= 0.0) | (h >= 1.0),
    "clamp": _clamp_bounds,
}
# activation functions whose output is 0 over a half-line: a unit there passes no gradient
ZERO_FLOOR = frozenset({"relu", "hardswish"})
SMOOTH = frozenset({"gelu", "silu", "elu", "selu", "celu", "leaky_relu", "mish", "softplus", "softsign",
                    "log_sigmoid"})
ACTIVATIONS = frozenset(SATURATED) | ZERO_FLOOR | SMOOTH


@dataclass(frozen=True)
class UnitStats:
    """One activation function's output over the batch."""

    name: str
    module: str
    op: str
    shape: tuple[int, ...]
    order: int  # its forward step (0-based)
    mean: float  # of the finite entries
    std: float
    zeros: float  # share of entries exactly 0
    dead: float  # share of positions 0 on every sample (NaN: no zero floor, or fewer than MIN_SAMPLES samples)
    saturated: float  # share of entries where the slope is (nearly) 0 at a flat end (NaN: no flat end)
    nonfinite: int
    verdict: str  # "", "not finite", "dead" or "saturated"


@dataclass(frozen=True)
class UnitHealth:
    rows: tuple[UnitStats, ...]
    samples: int  # the batch's size: dead is judged only from MIN_SAMPLES on

    @property
    def flagged(self) -> list[UnitStats]:
        return [r for r in self.rows if r.verdict]

    def summary(self) -> str:
        if not self.rows:
            return "no activation functions in this graph"
        counts: dict[str, list[str]] = {}
        for r in self.rows:
            if r.verdict:
                counts.setdefault(r.verdict, []).append(r.module or r.name)
        head = f"{len(self.rows)} activation outputs, batch of {self.samples}"
        if self.samples < MIN_SAMPLES and any(r.op in ZERO_FLOOR or r.op == "clamp" for r in self.rows):
            head += f" (dead units need {MIN_SAMPLES} samples or more: load a batch)"
        if not counts:
            return f"{head}: no dead or saturated layer"
        parts = [f"{len(names)} {verdict} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                 for verdict, names in counts.items()]
        return f"{head}: {'; '.join(parts)}"

    def text(self, flagged_only: bool = False) -> str:
        rows = self.flagged if flagged_only else list(self.rows)
        width = max([len(r.module or "-") for r in rows] + [6])
        named = max([len(r.name) for r in rows] + [6])
        lines = [f"{'step':>5}  {'module':<{width}}  {'output':<{named}}  {'op':<11} {'shape':<16} {'mean':>10} "
                 f"{'std':>10} {'zeros':>6} {'dead':>6} {'satur.':>6}  flag"]
        for r in rows:
            shape = "×".join(map(str, r.shape)) or "scalar"
            lines.append(f"{r.order + 1:>5}  {r.module or '-':<{width}}  {r.name:<{named}}  {r.op:<11} {shape:<16} "
                         f"{r.mean:>10.3e} {r.std:>10.3e} {_share(r.zeros):>6} {_share(r.dead):>6} "
                         f"{_share(r.saturated):>6}  {r.verdict}")
        return "\n".join(lines)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [{"module": r.module, "output": r.name, "op": r.op, "shape": list(r.shape), "step": r.order + 1,
                 "mean": r.mean, "std": r.std, "zeros": r.zeros, "dead": r.dead, "saturated": r.saturated,
                 "nonfinite": r.nonfinite, "flag": r.verdict} for r in self.rows]


def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.0f}%"


def unit_health(session: Any) -> UnitHealth:
    """Run the forward pass (the cursor stays where it is) and read every activation function's output."""
    forward = [s for s in session.steps if s.phase == FORWARD]
    end = forward[-1].index + 1 if forward else 0
    if end:
        session.trace.compute_through(end - 1)
    samples = _samples(session)
    rows = []
    for step in forward:
        node = step.node
        if node.op.name not in ACTIVATIONS:
            continue
        h = np.asarray(session.backend.to_numpy(session.trace.value(node.name, end)), dtype=np.float64)
        rows.append(_stats(node, step.index, h, samples))
    return UnitHealth(tuple(rows), samples)


def _samples(session: Any) -> int:
    """The batch's size: the first axis of the graph's inputs (1 when it has none)."""
    sizes = [n.shape[0] for n in session.graph.inputs if n.shape]
    return max(sizes, default=1)


def _stats(node: Node, order: int, h: np.ndarray, samples: int) -> UnitStats:
    finite = np.isfinite(h)
    kept = h[finite]
    nonfinite = int(h.size - np.count_nonzero(finite))
    zero = h == 0
    op = node.op.name
    floor = op in ZERO_FLOOR or (op == "clamp" and node.attrs.get("min") == 0)
    batched = h.ndim >= 1 and h.shape[0] == samples
    judged = floor and batched and samples >= MIN_SAMPLES and h.size  # one sample: half of any ReLU reads dead
    dead = float(np.mean(np.all(zero, axis=0))) if judged else math.nan
    saturated = float(np.mean(SATURATED[op](node, h))) if op in SATURATED and h.size else math.nan
    verdict = ""
    if nonfinite:
        verdict = "not finite"
    elif not math.isnan(dead) and dead >= FLAGGED_SHARE:
        verdict = "dead"
    elif not math.isnan(saturated) and saturated >= FLAGGED_SHARE:
        verdict = "saturated"
    return UnitStats(node.name, node.module, op, tuple(h.shape), order,
                     float(np.mean(kept)) if kept.size else math.nan, float(np.std(kept)) if kept.size else math.nan,
                     float(np.mean(zero)) if h.size else math.nan, dead, saturated, nonfinite, verdict)

"""Breakpoints: on a node, on the first non-finite value, on a gradient norm out of bounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend
from .nonfinite import cause
from .steps import BACKWARD, BackwardStep, ForwardStep, Step


@dataclass(frozen=True)
class NodeBreakpoint:
    node: str
    phase: str | None = None  # None: both passes

    def hit(self, step: Step, backend: Backend) -> str | None:
        if step.node.name == self.node and self.phase in (None, step.phase):
            return f"breakpoint on {step.phase} {self.node}"
        return None


@dataclass(frozen=True)
class NonFiniteBreakpoint:
    def hit(self, step: Step, backend: Backend) -> str | None:
        values: list[Any] = [step.output] if isinstance(step, ForwardStep) else [t.total for t in step.terms]
        for value in values:
            if not backend.is_finite(value):
                what = "value" if step.phase != BACKWARD else "gradient"
                why = _cause(step, backend)
                return (f"non-finite {what} (NaN or Inf) produced by {step.node.op.name} {step.node.name}"
                        f"{': ' + why if why else ''}")
        return None


def _cause(step: Step, backend: Backend) -> str:
    """Why the step made a NaN or ±inf (debugger/nonfinite.py), from the input values it ran on."""
    arrays = {a.name: x for a, x in zip(step.node.inputs, step.inputs, strict=False)}
    return cause(step.node, lambda name: None if arrays.get(name) is None else backend.to_numpy(arrays[name]),
                 step.phase, backend.dtype)


@dataclass(frozen=True)
class GradNormBreakpoint:
    """Stop when a gradient's L2 norm leaves [below, above]: vanishing or exploding."""

    above: float | None = None
    below: float | None = None

    def hit(self, step: Step, backend: Backend) -> str | None:
        if not isinstance(step, BackwardStep):
            return None
        for term in step.terms:
            norm = backend.norm(term.total)
            if self.above is not None and norm > self.above:
                return f"gradient of {term.input.name} exploding: norm {norm:.3g} > {self.above:g} at {step.node.name}"
            if self.below is not None and norm < self.below:
                return f"gradient of {term.input.name} vanishing: norm {norm:.3g} < {self.below:g} at {step.node.name}"
        return None


Breakpoint = NodeBreakpoint | NonFiniteBreakpoint | GradNormBreakpoint


@dataclass(frozen=True)
class Stop:
    """Why a run stopped, and where."""

    reason: str
    step: Step
    breakpoint: Breakpoint | None = None

    def __str__(self) -> str:
        return f"stopped at step {self.step.index + 1}: {self.reason}"

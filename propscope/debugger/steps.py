"""What one step of a pass records: the forward op, or the chain rule at one backward op."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..graph.ir import Node

FORWARD, BACKWARD = "forward", "backward"


@dataclass(slots=True)
class PlannedStep:
    """One entry of the schedule: which node, in which pass. Read-only by convention: not a frozen dataclass, whose
    `__init__` sets each field through `object.__setattr__` (a schedule of 10⁵ steps is made at every open)."""

    index: int
    phase: str
    node: Node

    def __str__(self) -> str:
        return f"{self.phase} {self.node.op.name} {self.node.name}"


@dataclass(frozen=True)
class ForwardStep:
    index: int
    node: Node
    inputs: tuple[Any, ...]
    output: Any
    phase: str = FORWARD


@dataclass(frozen=True)
class GradTerm:
    """The chain rule for one input of a backward step.

    contribution = upstream × local (as a VJP), and `total` = `total_before` + contribution is
    the input's gradient so far: where a value feeds several consumers, the terms add up.
    """

    input: Node
    position: int  # which input of the node this is
    role: str  # the input's name in the op's formula
    formula: str  # the local derivative, as the catalog displays it
    contribution: Any
    total_before: Any | None
    total: Any
    arrival: int  # 1 for the first contribution to this input, 2 for the second...
    consumers: int  # how many contributions this input receives in the whole backward pass


@dataclass(frozen=True)
class BackwardStep:
    index: int
    node: Node
    upstream: Any  # dL/d(node), the gradient arriving from the node's consumers
    inputs: tuple[Any, ...]
    output: Any
    terms: tuple[GradTerm, ...]
    phase: str = BACKWARD
    partials_fn: Callable[[], list[Any | None] | None] | None = field(default=None, repr=False, compare=False)
    _partials: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def partials(self) -> list[Any | None] | None:
        """The elementwise local derivatives ∂out/∂input, one per input, computed when first asked for.

        None for ops that are not elementwise (matmul, linear, reductions), whose chain rule is
        the VJP formula of the catalog instead. Kept lazy so a full trace costs no extra memory.
        """
        if "all" not in self._partials:
            self._partials["all"] = self.partials_fn() if self.partials_fn is not None else None
        return self._partials["all"]

    def local(self, position: int) -> Any | None:
        parts = self.partials()
        return None if parts is None else parts[position]

    def term(self, input_name: str) -> GradTerm:
        for t in self.terms:
            if t.input.name == input_name:
                return t
        raise KeyError(f"backward step at {self.node.name!r} sends no gradient to {input_name!r}")


Step = ForwardStep | BackwardStep

"""`OpDef`: one row of the op catalog, and the table itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UnsupportedOpError

Shape = tuple[int, ...]
ShapeRule = Callable[[Sequence[Shape], Mapping[str, Any]], Shape]


def _no_shape(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    raise AssertionError("leaves carry their own shape")


@dataclass(frozen=True)
class OpDef:
    """What the whole app knows of an op: arity, shape rule, and the formulas it displays.

    `roles` name the inputs in the formulas (`z` in `a = σ(z)`); `derivatives` holds one
    display formula per role, for the local derivative of the output with respect to it.
    """

    name: str
    roles: tuple[str, ...]
    formula: str
    derivatives: Mapping[str, str]
    infer_shape: ShapeRule = _no_shape
    symbol: str = ""
    out: str = "out"
    category: str = "math"
    elementwise: bool = False
    min_arity: int | None = None
    nondifferentiable: frozenset[str] = frozenset()
    default_attrs: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    # formulas that depend on an attribute (batch norm's training flag): (its name, {its value: {role: formula}}),
    # shown for a node instead of `derivatives`' general one
    derivatives_by: tuple[str, Mapping[Any, Mapping[str, str]]] | None = None

    @property
    def is_leaf(self) -> bool:
        return self.category == "leaf"

    @property
    def is_loss(self) -> bool:
        return self.category == "loss"

    @property
    def variadic(self) -> bool:
        return bool(self.roles) and self.roles[-1].endswith("...")

    def accepts(self, n: int) -> bool:
        if self.variadic:
            return n >= (self.min_arity if self.min_arity is not None else 1)
        low = self.min_arity if self.min_arity is not None else len(self.roles)
        return low <= n <= len(self.roles)

    def arity_text(self) -> str:
        if self.variadic:
            return f"at least {self.min_arity or 1}"
        if self.min_arity is not None and self.min_arity != len(self.roles):
            return f"{self.min_arity} to {len(self.roles)}"
        return str(len(self.roles))

    def role(self, i: int) -> str:
        """The formula name of input `i` (`x1`, `x2`... for variadic ops)."""
        if self.variadic and i >= len(self.roles) - 1:
            return f"{self.roles[-1].rstrip('.')}{i + 1}"
        return self.roles[i]

    def derivative(self, i: int, attrs: Mapping[str, Any] | None = None) -> str:
        """The display formula of the local derivative with respect to input `i`; given a node's `attrs`, the one
        that holds for them where the op's formulas depend on one (`derivatives_by`)."""
        role = self.role(i)
        key = self.roles[-1] if self.variadic and i >= len(self.roles) - 1 else role
        if attrs is not None and self.derivatives_by is not None:
            name, cases = self.derivatives_by
            case = cases.get(attrs.get(name, self.default_attrs.get(name)), {})
            if key in case:
                return case[key]
        return self.derivatives.get(key, f"∂{self.out}/∂{role}")

    def differentiable(self, i: int) -> bool:
        return self.role(i) not in self.nondifferentiable


CATALOG: dict[str, OpDef] = {}


def define(op: OpDef) -> OpDef:
    """Add a row to the catalog; every module of ops calls this once per op."""
    if op.name in CATALOG:
        raise ValueError(f"op {op.name!r} defined twice")
    CATALOG[op.name] = op
    return op


def get_op(name: str) -> OpDef:
    try:
        return CATALOG[name]
    except KeyError:
        if name == "unsupported":  # the placeholder for ops a model file uses that we cannot run; not in CATALOG
            from .unsupported import UNSUPPORTED

            return UNSUPPORTED
        raise UnsupportedOpError(f"op {name!r} is not in propscope's catalog") from None

"""ATen activations: one catalog op each, folded when the input is a constant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._aten import (
    Ctx,
    Translator,
    aten,
    op_key,
    self_arg,
)

_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda a: np.maximum(a, 0.0), "tanh": np.tanh, "exp": np.exp, "log": np.log, "neg": np.negative,
}


@aten("relu", "sigmoid", "tanh", "exp", "log", "neg", "silu", "gelu", "leaky_relu")
def _unary(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x = self_arg(a)
    attrs: dict[str, Any] = {}
    if op == "gelu":
        attrs["approximate"] = a.get("approximate", "none")
    elif op == "leaky_relu":
        attrs["negative_slope"] = float(a.get("negative_slope", 0.01))
    if t.const(x) and op in _UNARY:
        return _UNARY[op](np.asarray(x, dtype=np.float64))
    return t.b.op(op, t.node(x, ctx), name=ctx.name, module=ctx.module, attrs=attrs)


@aten("softmax", "_softmax", "log_softmax", "_log_softmax")
def _softmax(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target).lstrip("_")
    return t.b.op(op, t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module, attrs={"axis": int(a["dim"])})

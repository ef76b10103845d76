"""Names a person recognises for weights an exporter renamed.

The TorchScript exporter stores a Linear layer's weight transposed, as the (in, out) matrix of a MatMul,
under a name of its own (`onnx::MatMul_33`); the dynamo exporter names such constants `val_12`. A parameter
so named is shown under the module path of the node that uses it, with its role: `q.weight`, or
`q.weight.T` when the file stores the transpose of PyTorch's weight (the gradient then has that layout
too); the file's own name stays in the node's `file_name`.
"""

from __future__ import annotations

import re
from typing import Any

from ...ir import Node
from .._build import clean_name
from ..onnx_reader import Ctx, Init, Reader

_GENERATED = re.compile(r"(onnx::.*|val_\d+|_?v\d+|\d+|initializer_\d+)")


def generated(name: str) -> bool:
    """A name an exporter made up (rather than the model's state-dict name)."""
    return bool(_GENERATED.fullmatch(name))


def parameter(r: Reader, value: Any, ctx: Ctx, role: str, transposed: bool = False, hint: str = "const") -> Node:
    """`value` as a node; a float initializer with a generated name becomes `{module}.{role}` (`.T` when
    stored transposed), the module being the one of the node that uses it."""
    if not isinstance(value, Init) or value.node is not None or value.array.dtype.kind != "f" \
            or not generated(value.name):
        return r.node(value, ctx, hint=hint)
    owner = ctx.module or f"{ctx.name}"
    name = clean_name(f"{owner}.{role}" + (".T" if transposed else ""))
    value.node = r.b.leaf("parameter", name, value.array, module=ctx.module, file_name=value.name)
    return value.node


def operand(r: Reader, value: Any, ctx: Ctx, hint: str = "const") -> Node:
    """An arithmetic operand: an initializer with a generated name is the exporter's constant (an attention
    scale, a folded 1/√d), not a model parameter: a constant leaf of the node's module."""
    if isinstance(value, Init) and value.node is None and generated(value.name):
        value.node = r.b.leaf("constant", f"{ctx.module or ctx.name}.{hint}", value.array, module=ctx.module,
                              file_name=value.name)
        return value.node
    return r.node(value, ctx, hint=hint)

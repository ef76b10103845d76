"""Names a person recognises for weights an exporter renamed.

The TorchScript exporter stores a Linear layer's weight transposed, as the (in, out) matrix of a MatMul, under a
name of its own (`onnx::MatMul_33`); the dynamo exporter's optimizer does the same and names it `val_12`, recording
what it was folded from (`pkg.onnxscript.optimizer.folded_from`). Such a matrix becomes the parameter in
nn.Linear's (out, in) layout, the product a `linear` with `transpose_weight` (as a .pt2's Linear is read): its name,
shape, values and gradient are the state dict's (`q_proj.weight`, where the file records it; else the module path
of the node that uses it with its role, `q.weight`). Any other parameter so named is shown under that module path
and role, as stored. The file's own name stays in the node's `file_name`.

A tied output layer the TorchScript exporter wrote as such a copy (`onnx::MatMul_546` holding BART's
`model.shared.weight` transposed; optimum leaves it so where its deduplication does not apply) is that table: one
leaf, whose gradient sums both uses as torch's does, found by its values (`tied_copy`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from .._build import clean_name
from ..onnx_reader import Ctx, Init, Reader, generated

__all__ = ["generated", "linear_weight", "operand", "parameter"]


def _renamed(value: Any) -> bool:
    """An initializer whose name is not the model's: made up by the exporter, or recorded as folded from one."""
    return isinstance(value, Init) and value.node is None and value.array.dtype.kind == "f" and not value.constant \
        and (generated(value.name) or value.source is not None)


def _name(r: Reader, value: Init, ctx: Ctx, role: str) -> str:
    return clean_name(value.source or f"{ctx.module or ctx.name}.{role}")


def parameter(r: Reader, value: Any, ctx: Ctx, role: str, hint: str = "const") -> Node:
    """`value` as a node; a float initializer with a generated name becomes `{module}.{role}` (the module being the
    one of the node that uses it), or the parameter the file says it was folded from."""
    if not isinstance(value, Init) or value.node is not None or value.array.dtype.kind != "f" \
            or not generated(value.name):
        return r.node(value, ctx, hint=hint)
    if value.source is not None:
        return r.node(value, ctx, hint=hint)  # Reader.node names it after its source (or shares that leaf)
    value.node = r.b.leaf("parameter", _name(r, value, ctx, role), value.array, module=ctx.module, own=False,
                          file_name=value.name)
    return value.node


def linear_weight(r: Reader, value: Any, ctx: Ctx) -> Node | None:
    """The (out, in) parameter of which `value`, a 2-D initializer the exporter computed (a MatMul's B, a Gemm's
    B without transB), is the transpose; None where `value` is anything else (the caller reads it as stored)."""
    if not _renamed(value) or value.array.ndim != 2:
        return None
    assert isinstance(value, Init)
    if value.as_linear_weight is None:
        shared = r.shared(value, ctx, transposed=True)
        if shared is None:
            shared = tied_copy(r, value, ctx)
        value.as_linear_weight = shared if shared is not None else r.b.leaf(
            "parameter", _name(r, value, ctx, "weight"), np.ascontiguousarray(value.array.T),
            module=ctx.module if value.source is None else None, own=False, file_name=value.name,
            stored="transposed", **({"folded_from": value.source} if value.source else {}))
    return value.as_linear_weight


def tied_copy(r: Reader, value: Init, ctx: Ctx) -> Node | None:
    """The parameter of which `value` (a 2-D matrix with a generated name and no record of its source) is an exact
    transposed copy, where the file holds one under the model's name: the TorchScript exporter writes a tied output
    layer's weight so (the token table transposed, `onnx::MatMul_N`). Two parameters of a model that only happen to be
    equal (fresh zeros or ones) are never transposes of one another's matrix; a tied table is. None where none is."""
    if value.source is not None or not generated(value.name):
        return None
    if r.named_matrices is None:
        found: dict[tuple[int, ...], list[Init]] = {}
        for other in r.env.values():
            if isinstance(other, Init) and other.array.ndim == 2 and not other.constant and not generated(other.name) \
                    and other.source is None and other.array.dtype.kind == "f":
                found.setdefault(other.array.shape, []).append(other)
        r.named_matrices = found
    held = value.array.T
    for other in r.named_matrices.get(held.shape, ()):
        if other.array.dtype == held.dtype and other.array.flat[0] == held.flat[0] \
                and np.array_equal(other.array, held):
            table = r.node(other, Ctx("initializer", other.name, "", [], {}, r.opset))
            own = f"{ctx.module}.weight"  # a state dict names the output layer's weight too (lm_head.weight)
            if ctx.module and own != table.name and own not in r.env:
                r.aliases.setdefault(own, table.name)
            return table
    return None


def operand(r: Reader, value: Any, ctx: Ctx, hint: str = "const") -> Node:
    """An arithmetic operand: an initializer with a generated name is the exporter's constant (an attention
    scale, a folded 1/√d), not a model parameter: a constant leaf of the node's module."""
    if isinstance(value, Init) and value.node is None and generated(value.name) and value.source is None:
        value.node = r.b.leaf("constant", f"{ctx.module or ctx.name}.{hint}", value.array, module=ctx.module,
                              file_name=value.name, inline=True)  # the exporter's number: no state dict holds it
        return value.node
    return r.node(value, ctx, hint=hint)

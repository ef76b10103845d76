"""ONNX losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss onto the catalog's nll_loss and
cross_entropy (reduction 'none' onto their `*_unreduced` ops), with class weights and ignore_index.

ONNX has no default ignore_index; PyTorch's is −100. Without the attribute, no class is ignored: the
index given to the catalog is one no target can hold.
"""

from __future__ import annotations

from typing import Any

from .._aten import Missing, Unmapped
from ..onnx_reader import Ctx, Reader, onnx_op
from .elementwise import op

NO_IGNORED_CLASS = -(2**62)


def _loss(r: Reader, ins: list[Any], ctx: Ctx, name: str) -> Any:
    reduction = str(ctx.attrs.get("reduction", "mean"))
    if reduction not in ("mean", "sum", "none"):
        raise Unmapped(f"reduction {reduction!r}")
    x = r.node(ins[0], ctx)
    target = r.folded(ins[1])
    if target is not None and target.dtype.kind not in "iu":
        raise Unmapped("a target of class probabilities (ONNX's losses take class indices)")
    inputs = [x, r.node(ins[1], ctx, hint="target")]
    if len(ins) > 2 and ins[2] is not None:
        inputs.append(r.node(ins[2], ctx, kind="constant", hint="weight"))
    attrs: dict[str, Any] = {"ignore_index": int(ctx.attrs.get("ignore_index", NO_IGNORED_CLASS))}
    if reduction == "none":
        return op(r, ctx, f"{name}_unreduced", *inputs, **attrs)
    return op(r, ctx, name, *inputs, reduction=reduction, **attrs)


@onnx_op("NegativeLogLikelihoodLoss")
def _nll(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    return _loss(r, ins, ctx, "nll_loss")


@onnx_op("SoftmaxCrossEntropyLoss")
def _softmax_cross_entropy(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    loss = _loss(r, ins, ctx, "cross_entropy")
    if len(ctx.outputs) < 2 or not ctx.outputs[1]:
        return loss
    log_prob = r.b.op("log_softmax", r.node(ins[0], ctx), name=f"{ctx.name}.log_prob", module=ctx.module,
                      attrs={"axis": 1 if len(r.shape(ins[0])) > 1 else 0}) if r.shape(ins[0]) else \
        Missing("log_prob of a scalar")
    return [loss, log_prob]

"""ONNX matrix products (Gemm, MatMul) and global pooling."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from .._aten import Lazy, Transposed, Unmapped
from .._budget import matmul_room
from .._einsum import EinsumUnmapped, einsum, fold
from ..onnx_reader import Ctx, Init, Reader, onnx_op, zeros_bias
from .elementwise import const, op
from .naming import linear_weight, parameter


@onnx_op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    axes = tuple(range(2, len(x.shape)))
    return op(r, ctx, "mean" if ctx.op == "GlobalAveragePool" else "amax", x, axis=axes, keepdims=True)


def _scaled(r: Reader, value: Any, factor: float, ctx: Ctx, hint: str) -> Node:
    """`value` · factor: folded for a constant, one `mul` step for a computed value or a parameter."""
    c = r.folded(value)
    if c is not None:
        return r.node(c * factor if factor != 1.0 else c, ctx, hint=hint)
    node = r.node(value, ctx, hint=hint)
    if factor == 1.0:
        return node
    return op(r, ctx, "mul", node, const(r, ctx, factor, hint), suffix=f"{hint}_scaled")


@onnx_op("Gemm")
def _gemm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Y = α · A' B' + β · C: `linear` (its weight W or Wᵀ), with α and β as steps of their own when not 1."""
    a, b = ins[0], ins[1]
    alpha, beta = float(ctx.attrs.get("alpha", 1.0)), float(ctx.attrs.get("beta", 1.0))
    x = _scaled(r, a, alpha, ctx, "A")
    if ctx.attrs.get("transA", 0):
        x = r.b.op("transpose", x, name=f"{ctx.name}.A_T", module=ctx.module, attrs={"axes": (1, 0)})
    trans_b = bool(ctx.attrs.get("transB", 0))
    if isinstance(b, Transposed):
        b, trans_b = b.leaf, not trans_b
    w = None if trans_b else linear_weight(r, b, ctx)  # a computed (in, out) matrix: the (out, in) parameter
    if w is not None:
        trans_b = True
    else:
        w = parameter(r, b, ctx, "weight")
    out = w.shape[0] if trans_b else w.shape[1]
    c = ins[2] if len(ins) > 2 else None
    if c is not None and beta != 0.0 and r.shape(c) in ((out,), (1, out)) and beta == 1.0:
        bias = r.node(c, ctx, hint="bias")
        if bias.shape != (out,):
            bias = r.b.op("reshape", bias, name=f"{ctx.name}.bias_row", module=ctx.module, attrs={"shape": (out,)})
        return r.b.op("linear", x, w, bias, name=ctx.name, module=ctx.module, attrs={"transpose_weight": trans_b})
    if c is None or beta == 0.0:
        return r.b.op("linear", x, w, zeros_bias(r, out, ctx), name=ctx.name, module=ctx.module,
                      attrs={"transpose_weight": trans_b})
    product = r.b.op("linear", x, w, zeros_bias(r, out, ctx), name=f"{ctx.name}.AB", module=ctx.module,
                     attrs={"transpose_weight": trans_b})
    return op(r, ctx, "add", product, _scaled(r, c, beta, ctx, "C"))


@onnx_op("Einsum")
def _einsum(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Read as the sums, transposes, reshapes and batched products it is made of (see readers/_einsum.py)."""
    equation = str(ctx.attrs["equation"])
    known = [r.folded(v) for v in ins]
    try:
        if all(k is not None for k in known):
            return fold(equation, [np.asarray(k) for k in known], f"Einsum {ctx.name!r} of constants", r.where)
        return einsum(r.b, equation, [r.node(v, ctx) for v in ins], ctx.name, ctx.module)
    except EinsumUnmapped as exc:
        raise Unmapped(str(exc)) from None


@onnx_op("MatMul")
def _matmul(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    a, b = ins
    ca, cb = r.folded(a), r.folded(b)
    if ca is not None and cb is not None:
        matmul_room(ca, cb, f"MatMul {ctx.name!r} of constants", r.where)
        return np.matmul(ca, cb)
    if isinstance(b, Transposed) and not isinstance(a, Transposed):
        return LinearProduct(r, r.node(a, ctx), b.leaf, ctx)
    if len(r.shape(b)) == 2 and len(r.shape(a)) >= 2:
        w = linear_weight(r, b, ctx)  # a Linear's weight the exporter stored transposed: nn.Linear's again
        if w is not None:
            return LinearProduct(r, r.node(a, ctx), w, ctx)
    weight = parameter(r, b, ctx, "weight") if len(r.shape(b)) == 2 else r.node(b, ctx)
    return r.b.op("matmul", r.node(a, ctx), weight, name=ctx.name, module=ctx.module)


class LinearProduct(Lazy):
    """x · Wᵀ for a Linear's weight W: its `linear` step, made when something reads it. Both exporters write a Linear
    on a 3-D input as MatMul then Add of the bias; where that Add is the product's one reader, the step takes the
    bias (`biased`), one `linear` as a `.pt2`'s Linear reads, else a zero one."""

    def __init__(self, r: Reader, x: Node, weight: Node, ctx: Ctx) -> None:
        super().__init__(lambda: self.linear(zeros_bias(r, weight.shape[0], ctx)))
        self.reader, self.x, self.weight, self.name, self.module = r, x, weight, ctx.name, ctx.module
        self.output = ctx.outputs[0] if ctx.outputs else ""

    def linear(self, bias: Node) -> Node:
        return self.reader.b.op("linear", self.x, self.weight, bias, name=self.name, module=self.module,
                                attrs={"transpose_weight": True})


def biased(r: Reader, a: Any, b: Any, ctx: Ctx) -> Node | None:
    """Add(a, b) as one `linear` step, where one is a `LinearProduct` nothing else reads and the other its bias: a
    parameter of the weight's rows; else None."""
    for product, bias in ((a, b), (b, a)):
        if isinstance(product, LinearProduct) and product.done is None and isinstance(bias, Init) \
                and not bias.constant and bias.array.shape == (product.weight.shape[0],) \
                and product.output and r.uses(product.output) == 1:
            product.done = product.linear(parameter(r, bias, ctx, "bias", hint="bias"))
            return product.done
    return None


@onnx_op("com.microsoft.FusedMatMul", "com.microsoft.TransposeMatMul")
def _fused_matmul(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """onnxruntime's α · A' B' (what its session optimizer writes for a Transpose or a scale around a MatMul): each
    operand's last two axes swapped where transA / transB say, the batched product, α a step of its own when not 1.
    Transposes across the batch axes (transBatchA / transBatchB) are refused by name."""
    if ctx.attrs.get("transBatchA") or ctx.attrs.get("transBatchB"):
        raise Unmapped(f"{ctx.op} with transBatchA / transBatchB (a transpose across the batch axes)")
    operands = []
    for value, flag, tag in ((ins[0], "transA", "A"), (ins[1], "transB", "B")):
        node = r.node(value, ctx, hint=tag)
        if ctx.attrs.get(flag):
            rank = len(node.shape)
            if rank < 2:
                raise Unmapped(f"{ctx.op} with {flag} of a {rank}-D operand")
            node = op(r, ctx, "transpose", node, suffix=f"{tag}_T", axes=(*range(rank - 2), rank - 1, rank - 2))
        operands.append(node)
    alpha = float(ctx.attrs.get("alpha", 1.0))
    if alpha == 1.0:
        return op(r, ctx, "matmul", *operands)
    product = op(r, ctx, "matmul", *operands, suffix="product")
    return op(r, ctx, "mul", product, const(r, ctx, alpha, "alpha"))


# FusedGemm's activation attributes -> the parameters conv.py's table reads, with onnxruntime's defaults
@onnx_op("com.microsoft.FusedGemm")
def _fused_gemm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """activation(α · A' B' + β · C) (onnxruntime's session optimizer's Gemm + activation fusion): Gemm's steps,
    then the activation as a step of its own, its alpha / beta from activation_alpha / activation_beta."""
    from .activations import apply_fused_activation, fused_activation

    name = str(ctx.attrs.get("activation", ""))
    if name == "Clip":  # Gemm's fusion writes no bounds for a Clip
        raise Unmapped("FusedGemm with activation 'Clip'")
    params = [ctx.attrs[k] for k in ("activation_alpha", "activation_beta") if k in ctx.attrs]
    activation = fused_activation(ctx, name, params)
    gemm_ctx = Ctx("Gemm", f"{ctx.name}.gemm" if activation else ctx.name, ctx.module, None, ctx.attrs, ctx.opset)
    return apply_fused_activation(r, ctx, _gemm(r, ins, gemm_ctx), activation)

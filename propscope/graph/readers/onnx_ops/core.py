"""ONNX reductions and matrix products (Gemm, MatMul)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._aten import Transposed, Unmapped
from ..onnx_reader import Ctx, Reader, attr_or_input, onnx_op, zeros_bias


@onnx_op("ReduceMean", "ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin")
def _reduce(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    takes_input = (ctx.op == "ReduceSum" and ctx.opset >= 13) or ctx.opset >= 18
    axes = attr_or_input(r, ins, ctx, 1, "axes") if takes_input else ctx.attrs.get("axes")
    keep = bool(ctx.attrs.get("keepdims", 1))
    if not axes:
        if ctx.attrs.get("noop_with_empty_axes", 0):
            return ins[0]
        axes = None
    axis = None if axes is None else tuple(int(a) for a in axes)
    c = r.folded(ins[0])
    if c is not None:
        fn: Any = {"ReduceMean": np.mean, "ReduceSum": np.sum, "ReduceProd": np.prod, "ReduceMax": np.max,
                   "ReduceMin": np.min}[ctx.op]
        return np.asarray(fn(c, axis=axis, keepdims=keep))
    op = {"ReduceMean": "mean", "ReduceSum": "sum"}.get(ctx.op)
    if op is None:
        raise Unmapped(f"{ctx.op} of computed values")
    return r.b.op(op, r.node(ins[0], ctx), name=ctx.name, module=ctx.module, attrs={"axis": axis, "keepdims": keep})


@onnx_op("GlobalAveragePool")
def _global_pool(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    return r.b.op("mean", r.node(ins[0], ctx), name=ctx.name, module=ctx.module,
                  attrs={"axis": (2, 3), "keepdims": True})


@onnx_op("Gemm")
def _gemm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    a, b = ins[0], ins[1]
    alpha, beta = float(ctx.attrs.get("alpha", 1.0)), float(ctx.attrs.get("beta", 1.0))
    if alpha != 1.0 or (beta != 1.0 and len(ins) > 2 and ins[2] is not None):
        raise Unmapped("Gemm with alpha or beta other than 1")
    x = r.node(a, ctx)
    if ctx.attrs.get("transA", 0):
        x = r.b.op("transpose", x, name=f"{ctx.name}.A_T", module=ctx.module, attrs={"axes": (1, 0)})
    trans_b = bool(ctx.attrs.get("transB", 0))
    if isinstance(b, Transposed):
        b, trans_b = b.leaf, not trans_b
    w = r.node(b, ctx)
    out = w.shape[0] if trans_b else w.shape[1]
    bias = zeros_bias(r, out, ctx) if len(ins) < 3 or ins[2] is None else r.node(ins[2], ctx, hint="bias")
    return r.b.op("linear", x, w, bias, name=ctx.name, module=ctx.module, attrs={"transpose_weight": trans_b})


@onnx_op("MatMul")
def _matmul(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    a, b = ins
    ca, cb = r.folded(a), r.folded(b)
    if ca is not None and cb is not None:
        return np.matmul(ca, cb)
    if isinstance(b, Transposed) and not isinstance(a, Transposed):
        return r.b.op("linear", r.node(a, ctx), b.leaf, zeros_bias(r, b.leaf.shape[0], ctx), name=ctx.name,
                      module=ctx.module, attrs={"transpose_weight": True})
    return r.b.op("matmul", r.node(a, ctx), r.node(b, ctx), name=ctx.name, module=ctx.module)

"""ATen arithmetic, matrix products and reductions."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from .._aten import (
    Ctx,
    PoolIndices,
    Translator,
    Transposed,
    Unmapped,
    aten,
    dims_arg,
    op_key,
    self_arg,
    zeros_bias,
)
from .._budget import fold_room, matmul_room
from .._build import finite_mask
from .._einsum import EinsumUnmapped, einsum, fold
from .complex import complex_mul, complex_operand
from .conv import unpool_positions


@aten("pow")
def _pow(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, p = self_arg(a), a.get("exponent")
    if t.const(x) and t.const(p):
        fold_room((x, p), f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where)
        return np.asarray(x, dtype=np.float64) ** np.asarray(p)
    if isinstance(p, int | float) and not isinstance(p, bool):
        return t.b.op("pow", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"exponent": float(p)})
    known = t.known(p)
    if known is not None and known.size == 1 and t.known(x) is None:  # a tensor holding one number
        return t.b.op("pow", t.node(x, ctx), name=ctx.name, module=ctx.module,
                      attrs={"exponent": float(known.reshape(()))})
    return t.b.op("power", t.node(x, ctx, "self"), t.node(p, ctx, "exponent"), name=ctx.name, module=ctx.module)


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


@aten("add", "sub", "mul", "div", "rsub")
def _binary(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x, y = self_arg(a), a["other"]
    rounding = a.get("rounding_mode")
    if rounding is not None:
        return _rounded_div(t, x, y, str(rounding), ctx)
    alpha = a.get("alpha", 1)
    if op == "rsub":
        op, x, y = "sub", y, x
        if alpha != 1:
            y = np.asarray(y) * alpha if t.const(y) else t.b.op(
                "mul", t.node(y, ctx), t.b.const(np.array(float(alpha)), ctx.module, "alpha"),
                name=f"{ctx.name}.alpha", module=ctx.module)
            alpha = 1
    if alpha != 1:
        y = np.asarray(y) * alpha if t.const(y) else t.b.op(
            "mul", t.node(y, ctx), t.b.const(np.array(float(alpha)), ctx.module, "alpha"),
            name=f"{ctx.name}.alpha", module=ctx.module)
    if op == "mul" and (complex_operand(t, x) or complex_operand(t, y)):  # a rotary embedding turns its pairs so
        return complex_mul(t, x, y, ctx)
    if t.const(x) and t.const(y):
        fold_room((x, y), f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where)
        return _BINARY[op](np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    offset = t.known(y) if op == "add" and isinstance(x, PoolIndices) else None
    if offset is not None:  # a decomposed max_unpool2d: the pool's indices made positions in the flat output
        positions = unpool_positions(x, offset, ctx.shapes[0])
        if positions is not None:
            return positions
    if op == "add":
        x, y = finite_mask(x), finite_mask(y)
    return t.b.op(op, t.node(x, ctx, "self"), t.node(y, ctx, "other"), name=ctx.name, module=ctx.module)


def _rounded_div(t: Translator, x: Any, y: Any, rounding: str, ctx: Ctx) -> Any:
    """div(rounding_mode="floor" or "trunc"), as torch rounds: folded where both are constants (EdgeNeXt's
    positional encoding divides an arange by 2), else ⌊x / y⌋ as a division and a floor (no gradient passes
    through it, as in torch); a truncation, sign(x / y) · ⌊|x / y|⌋ (JetMoE finds each sorted row's token so)."""
    if rounding not in ("floor", "trunc"):
        raise Unmapped(f"div with rounding_mode={rounding!r}")
    if t.const(x) and t.const(y):
        fold_room((x, y), f"div {ctx.name!r} of constants", t.where)
        u, v = np.asarray(x), np.asarray(y)
        if u.dtype.kind in "iub" and v.dtype.kind in "iub":  # integers stay integers, as torch keeps them
            quotient = np.floor_divide(u, v)
            return quotient if rounding == "floor" else quotient + ((u % v != 0) & ((u < 0) != (v < 0)))
        exact = u.astype(np.float64) / v.astype(np.float64)
        return np.floor(exact) if rounding == "floor" else np.trunc(exact)
    ratio = t.b.op("div", t.node(x, ctx, "self"), t.node(y, ctx, "other"), name=f"{ctx.name}.ratio",
                   module=ctx.module)
    if rounding == "floor":
        return t.b.op("floor", ratio, name=ctx.name, module=ctx.module)
    size = t.b.op("abs", ratio, name=f"{ctx.name}.size", module=ctx.module)
    whole = t.b.op("floor", size, name=f"{ctx.name}.whole", module=ctx.module)
    sign = t.b.op("sign", ratio, name=f"{ctx.name}.sign", module=ctx.module)
    return t.b.op("mul", sign, whole, name=ctx.name, module=ctx.module)


@aten("floor_divide")
def _floor_divide(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """`x // y`: div with rounding_mode='floor' (a mixture of experts finds the token of each row it sorted by
    expert as the row's position // top-k)."""
    return _rounded_div(t, self_arg(a), a["other"], "floor", ctx)


@aten("transformers.grouped_mm_fallback", "_grouped_mm")
def _grouped_mm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """A matrix product per group of consecutive rows: the experts of transformers' mixtures of experts (Mixtral,
    Qwen-MoE, OLMoE, GPT-OSS...), whose rows are the tokens sorted by expert and whose offsets are the running
    token counts per expert. torch's own `_grouped_mm` (bfloat16 on a GPU) is read as the same product."""
    x, w, offs = a.get("input", a.get("self")), a.get("weight", a.get("mat2")), a.get("offs")
    if offs is None:
        raise Unmapped("_grouped_mm without offsets (a batched matrix product)")
    if a.get("bias") is not None:
        raise Unmapped("_grouped_mm with a bias")
    if len(t.shape(x)) != 2 or len(t.shape(w)) != 3:
        raise Unmapped(f"grouped_mm of {len(t.shape(x))}-D rows and {len(t.shape(w))}-D matrices (read: 2-D rows, "
                       "a matrix per group)")
    return t.b.op("grouped_mm", t.node(x, ctx, "input"), t.node(w, ctx, "weight"), t.node(offs, ctx, "offs"),
                  name=ctx.name, module=ctx.module)


@aten("addcmul", "addcdiv")
def _addc(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """self + value · tensor1 · tensor2 (addcdiv: · tensor1 / tensor2), read as the product and the sum it is
    (ConvNeXt V2's global response norm: γ · (x · N(x)) + β + x)."""
    op = op_key(ctx.target)
    x, t1, t2, value = self_arg(a), a["tensor1"], a["tensor2"], a.get("value", 1)
    if all(t.const(v) for v in (x, t1, t2)):
        fold_room((x, t1, t2), f"{op} {ctx.name!r} of constants", t.where)
        t1, t2 = np.asarray(t1, dtype=np.float64), np.asarray(t2, dtype=np.float64)
        return np.asarray(x, dtype=np.float64) + value * (t1 * t2 if op == "addcmul" else t1 / t2)
    product = t.b.op("mul" if op == "addcmul" else "div", t.node(t1, ctx, "tensor1"), t.node(t2, ctx, "tensor2"),
                     name=f"{ctx.name}.product", module=ctx.module)
    if value != 1:
        product = t.b.op("mul", product, t.b.const(np.array(float(value)), ctx.module, "value"),
                         name=f"{ctx.name}.value", module=ctx.module)
    return t.b.op("add", t.node(x, ctx, "self"), product, name=ctx.name, module=ctx.module)


@aten("mean", "sum")
def _reduce(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x = self_arg(a)
    axis, keep = dims_arg(a.get("dim")), bool(a.get("keepdim", False))
    if t.const(x):
        return getattr(np, op)(np.asarray(x), axis=axis, keepdims=keep)
    return t.b.op(op, t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axis": axis, "keepdims": keep})


@aten("linear")
def _linear(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    w = t.node(a["weight"], ctx, "weight")
    if len(w.shape) == 1:  # x · w over the last axis, dropping it (D-FINE's expectation over its distance bins)
        return _linear_vector(t, a, ctx, w)
    if len(w.shape) != 2:
        raise Unmapped("a linear weight that is not 1-D or 2-D")
    b = zeros_bias(t, w, ctx) if a.get("bias") is None else t.node(a["bias"], ctx, "bias")
    return t.b.op("linear", t.node(self_arg(a), ctx), w, b, name=ctx.name, module=ctx.module,
                  attrs={"transpose_weight": True})


def _linear_vector(t: Translator, a: dict[str, Any], ctx: Ctx, w: Node) -> Node:
    """F.linear with a 1-D weight (k,): y = x · w + b, shape x.shape[:-1]; read as a linear layer of one output
    whose weight is w as a row, its output's last axis of 1 dropped."""
    x = t.node(self_arg(a), ctx)
    row = t.b.op("reshape", w, name=f"{ctx.name}.row", module=ctx.module, attrs={"shape": (1, w.shape[0])})
    bias = a.get("bias")
    if bias is None:
        b = zeros_bias(t, row, ctx)
    else:
        b = t.b.op("reshape", t.node(bias, ctx, "bias"), name=f"{ctx.name}.bias1", module=ctx.module,
                   attrs={"shape": (1,)})
    y = t.b.op("linear", x, row, b, name=f"{ctx.name}.linear", module=ctx.module, attrs={"transpose_weight": True})
    return t.b.op("reshape", y, name=ctx.name, module=ctx.module, attrs={"shape": tuple(x.shape[:-1])})


@aten("addmm")
def _addmm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if a.get("beta", 1) != 1 or a.get("alpha", 1) != 1:
        return _scaled_product(t, a, ctx, a["mat1"], a["mat2"])
    m1, m2 = a["mat1"], a["mat2"]
    bias = t.node(self_arg(a), ctx, "bias")
    if isinstance(m2, Transposed):
        return t.b.op("linear", t.node(m1, ctx), m2.leaf, bias, name=ctx.name, module=ctx.module,
                      attrs={"transpose_weight": True})
    return t.b.op("linear", t.node(m1, ctx), t.node(m2, ctx), bias, name=ctx.name, module=ctx.module)


@aten("outer", "ger")
def _outer(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """outer(u, v) = u vᵀ (a FIR filter's 2-D taps from its 1-D ones, in diffusers' up- and downsamplers): folded
    where both are constants, else u as a column times v as a row."""
    u, v = self_arg(a), a["vec2"]
    ku, kv = t.known(u), t.known(v)
    if ku is not None and kv is not None:
        if ku.ndim != 1 or kv.ndim != 1:
            raise Unmapped("outer of tensors that are not vectors")
        fold_room((ku, kv), f"outer {ctx.name!r} of constants", t.where, shape=(ku.size, kv.size))
        wide = ku.dtype.kind == "f" or kv.dtype.kind == "f"
        return np.outer(*(np.asarray(k, dtype=np.float64) if wide else k for k in (ku, kv)))
    n, m = (t.shape(w) for w in (u, v))
    if len(n) != 1 or len(m) != 1:
        raise Unmapped("outer of tensors that are not vectors")
    column = t.b.op("reshape", t.node(u, ctx, "self"), name=f"{ctx.name}.column", module=ctx.module,
                    attrs={"shape": (n[0], 1)})
    row = t.b.op("reshape", t.node(v, ctx, "vec2"), name=f"{ctx.name}.row", module=ctx.module,
                 attrs={"shape": (1, m[0])})
    return t.b.op("mul", column, row, name=ctx.name, module=ctx.module)


@aten("einsum")
def _einsum(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Read as the sums, transposes, reshapes and batched products it is made of (see readers/_einsum.py)."""
    equation, operands = str(a["equation"]), list(a["tensors"])
    known = [t.known(v) for v in operands]
    try:
        if all(k is not None for k in known):
            return fold(equation, [np.asarray(k) for k in known], f"einsum {ctx.name!r} of constants", t.where)
        return einsum(t.b, equation, [t.node(v, ctx, f"in{i}") for i, v in enumerate(operands)], ctx.name,
                      ctx.module)
    except EinsumUnmapped as exc:
        raise Unmapped(str(exc)) from None


@aten("mm", "bmm", "matmul")
def _matmul(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, y = self_arg(a), a.get("mat2", a.get("other"))
    if t.const(x) and t.const(y):
        matmul_room(x, y, f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where)
        return np.matmul(np.asarray(x), np.asarray(y))
    if isinstance(y, Transposed) and not isinstance(x, Transposed):
        return t.b.op("linear", t.node(x, ctx), y.leaf, zeros_bias(t, y.leaf, ctx), name=ctx.name,
                      module=ctx.module, attrs={"transpose_weight": True})
    return t.b.op("matmul", t.node(x, ctx), t.node(y, ctx), name=ctx.name, module=ctx.module)


@aten("baddbmm")
def _baddbmm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """β·self + α·(batch1 @ batch2) (BLOOM adds its ALiBi position bias to the attention scores so)."""
    return _scaled_product(t, a, ctx, a["batch1"], a["batch2"])


def _scaled_product(t: Translator, a: dict[str, Any], ctx: Ctx, x: Any, y: Any) -> Any:
    """β·self + α·(x @ y) as its steps: the product, each scaling that is not 1, the sum (none of self when β
    is 0: torch then ignores self, NaN and all)."""
    beta, alpha = float(a.get("beta", 1)), float(a.get("alpha", 1))
    base = self_arg(a)
    if all(t.const(v) for v in (x, y, base)):
        matmul_room(x, y, f"{op_key(ctx.target)} {ctx.name!r} of constants", t.where)
        product = alpha * np.matmul(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
        return product if beta == 0 else beta * np.asarray(base, dtype=np.float64) + product

    def scaled(node: Node, factor: float, role: str) -> Node:
        if factor == 1:
            return node
        return t.b.op("mul", node, t.b.const(np.array(factor), ctx.module, role), name=f"{ctx.name}.{role}",
                      module=ctx.module)

    product = t.b.op("matmul", t.node(x, ctx, "mat1"), t.node(y, ctx, "mat2"),
                     name=ctx.name if beta == 0 and alpha == 1 else f"{ctx.name}.product", module=ctx.module)
    product = scaled(product, alpha, "alpha")
    if beta == 0:
        return product
    return t.b.op("add", scaled(t.node(base, ctx, "self"), beta, "beta"), product, name=ctx.name,
                  module=ctx.module, original_op=op_key(ctx.target))

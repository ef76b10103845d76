"""ONNX plumbing folded at load time: Where on constants, Identity/Cast, Trilu, Constant, Shape, Range, EyeLike."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._aten import Missing, Unmapped
from .._budget import array_room, fold_room, range_length
from .._build import check_shape, finite_mask
from ..onnx_reader import ONNX_DTYPES, Ctx, Init, Reader, onnx_op


@onnx_op("Where")
def _where(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    cond, x, y = (r.folded(v) for v in ins)
    fold_room([v for v in (cond, x, y) if v is not None], f"Where {ctx.name!r} of constants", r.where)
    if cond is not None and x is not None and y is not None:
        return np.where(cond.astype(bool), x, y)
    if cond is None:
        raise Unmapped("Where on a computed condition")
    # one `where` with the condition as a constant mask: exact where a branch holds ±∞ (a mask times 0 would be
    # NaN); a −∞ fill becomes the finite attention fill, which gives softmax the same zeros
    picks = [r.node(v, ctx) if c is None else r.b.const(finite_mask(c.astype(np.float64)), ctx.module, tag)
             for v, c, tag in ((ins[1], x, "a"), (ins[2], y, "b"))]
    return r.b.op("where", r.b.const(cond.astype(bool), ctx.module, "condition"), *picks, name=ctx.name,
                  module=ctx.module, original_op="Where")


@onnx_op("Identity", "Dropout")  # Cast and CastLike: elementwise.py
def _identity(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    if ctx.op == "Dropout":
        training = r.folded(ins[2]) if len(ins) > 2 and ins[2] is not None else None
        if training is not None and bool(training):
            raise Unmapped("Dropout in training mode")
        return [x, Missing("the dropout mask")]
    if isinstance(x, Init) and x.array.dtype.kind == "f" and ctx.outputs and ctx.outputs[0] != x.name:
        # exporters tie initializers that happen to be equal (two fresh LayerNorms' ones and zeros) through an
        # Identity; the model had two parameters, so it gets two again, under the name it used
        return Init(ctx.outputs[0], x.array.copy())
    return x


@onnx_op("Trilu")
def _trilu(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.folded(ins[0])
    k = r.folded(ins[1]) if len(ins) > 1 and ins[1] is not None else np.array(0)
    if x is None or k is None:
        raise Unmapped("Trilu of a computed tensor")
    return (np.triu if ctx.attrs.get("upper", 1) else np.tril)(x, int(k))


@onnx_op("Constant")
def _constant(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    a = ctx.attrs
    if "value" in a:
        return a["value"]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in a:
            return np.asarray(a[key], dtype=dtype)
    raise Unmapped("a Constant with a sparse or string value")


@onnx_op("ConstantOfShape")
def _constant_of_shape(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    shape = r.folded(ins[0])
    if shape is None:
        raise Unmapped("a shape computed at run time")
    dims = check_shape(shape.reshape(-1), "ConstantOfShape", r.where)
    value = ctx.attrs.get("value", np.zeros(1, dtype=np.float32))
    array_room(dims, value.dtype, "ConstantOfShape", r.where)
    return np.full(dims, value.reshape(-1)[0], dtype=value.dtype)


@onnx_op("Shape")
def _shape(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    dims = np.asarray(r.shape(ins[0]), dtype=np.int64)
    start, end = ctx.attrs.get("start", 0), ctx.attrs.get("end")
    return dims[start:end]


@onnx_op("Size")
def _size(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    return np.asarray(math.prod(r.shape(ins[0])), dtype=np.int64)


@onnx_op("Range")
def _range(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    start, limit, delta = (r.folded(v) for v in ins)
    if start is None or limit is None or delta is None:
        raise Unmapped("a range computed at run time")
    count = range_length(start.item(), limit.item(), delta.item(), "Range", r.where)
    array_room((count,), start.dtype, "Range", r.where)
    out = np.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)
    check_shape(out.shape, "Range", r.where)
    return out


@onnx_op("EyeLike")
def _eye_like(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Ones on diagonal k of a matrix shaped like the input, zeros elsewhere: it reads only the input's shape (and
    type), so it is a constant whatever the input is."""
    shape = r.shape(ins[0])
    if len(shape) != 2:
        raise Unmapped(f"EyeLike of a {len(shape)}-D input (ONNX: a matrix)")
    code = ctx.attrs.get("dtype")
    if code is not None:
        if int(code) not in ONNX_DTYPES:
            raise Unmapped(f"EyeLike of ONNX type {code}")
        dtype = ONNX_DTYPES[int(code)]
    else:
        known = ins[0].array if isinstance(ins[0], Init) else r.folded(ins[0])
        dtype = str(known.dtype) if known is not None else str(getattr(ins[0], "meta", {}).get("dtype", "float32"))
    array_room(shape, np.dtype(dtype), "EyeLike", r.where)
    return np.eye(shape[0], shape[1], int(ctx.attrs.get("k", 0)), dtype=dtype)

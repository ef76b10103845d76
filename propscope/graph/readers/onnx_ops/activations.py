"""ONNX activations and elementwise arithmetic, one catalog op each; constants fold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._aten import Unmapped
from .._build import finite_mask
from ..onnx_reader import Ctx, Reader, onnx_op

_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Neg": "neg"}
_NP_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Relu": lambda x: np.maximum(x, 0), "Sigmoid": lambda x: 1 / (1 + np.exp(-x)), "Tanh": np.tanh, "Exp": np.exp,
    "Log": np.log, "Neg": np.negative, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal, "Abs": np.abs,
    "Floor": np.floor, "Ceil": np.ceil, "Not": np.logical_not,
}


@onnx_op("Relu", "Sigmoid", "Tanh", "Exp", "Log", "Neg", "Sqrt", "Reciprocal", "Abs", "Floor", "Ceil", "Not")
def _unary(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    c = r.folded(x)
    if c is not None:
        return _NP_UNARY[ctx.op](c)
    if ctx.op in ("Sqrt", "Reciprocal"):
        exponent = 0.5 if ctx.op == "Sqrt" else -1.0
        return r.b.op("pow", r.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"exponent": exponent})
    if ctx.op not in _UNARY:
        raise Unmapped(f"{ctx.op} of a computed value")
    return r.b.op(_UNARY[ctx.op], r.node(x, ctx), name=ctx.name, module=ctx.module)


@onnx_op("LeakyRelu", "Gelu")
def _activation(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    if ctx.op == "LeakyRelu":
        return r.b.op("leaky_relu", x, name=ctx.name, module=ctx.module,
                      attrs={"negative_slope": float(ctx.attrs.get("alpha", 0.01))})
    return r.b.op("gelu", x, name=ctx.name, module=ctx.module,
                  attrs={"approximate": str(ctx.attrs.get("approximate", "none"))})


@onnx_op("Softmax", "LogSoftmax")
def _softmax(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    axis = int(ctx.attrs.get("axis", -1 if ctx.opset >= 13 else 1))
    if ctx.opset < 13 and axis % len(x.shape) != len(x.shape) - 1:
        raise Unmapped("an opset < 13 softmax over several axes")
    op = "softmax" if ctx.op == "Softmax" else "log_softmax"
    return r.b.op(op, x, name=ctx.name, module=ctx.module, attrs={"axis": axis})


_NP_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Pow": np.power,
    "Mod": np.mod, "Equal": np.equal, "Less": np.less, "Greater": np.greater, "And": np.logical_and,
    "Or": np.logical_or, "Min": np.minimum, "Max": np.maximum, "LessOrEqual": np.less_equal,
    "GreaterOrEqual": np.greater_equal,
}


@onnx_op(*_NP_BINARY, "Div")
def _binary(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x, y = ins[0], ins[1]
    cx, cy = r.folded(x), r.folded(y)
    if cx is not None and cy is not None:
        if ctx.op == "Div":
            return cx // cy if cx.dtype.kind in "iu" and cy.dtype.kind in "iu" else np.divide(cx, cy)
        if ctx.op in ("Min", "Max") and len(ins) > 2:
            raise Unmapped("a variadic Min/Max")
        return _NP_BINARY[ctx.op](cx, cy)
    if ctx.op == "Pow":
        if cy is None or cy.size != 1:
            raise Unmapped("a computed exponent")
        return r.b.op("pow", r.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"exponent": float(cy)})
    op = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}.get(ctx.op)
    if op is None:
        raise Unmapped(f"{ctx.op} of computed values")
    if op == "add":
        x, y = finite_mask(x), finite_mask(y)
    return r.b.op(op, r.node(x, ctx), r.node(y, ctx, hint="other"), name=ctx.name, module=ctx.module)

"""ONNX elementwise math on computed values: one catalog op each (constants fold with NumPy).

Comparisons, logic and NaN/Inf tests on computed values (the masks of an expanded Clip, Elu or PRelu, the
dynamo exporter's IsNaN/Where around attention) become the catalog's mask ops (compare, logical, isnan,
isinf), through which no gradient flows, as in PyTorch.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ...ir import Node
from ...ops.shape import narrows, round_to_float
from .._aten import Missing, Unmapped
from .._budget import fold_room
from .._build import finite_mask
from ..onnx_reader import CATALOG_UNARY, ONNX_DTYPES, Ctx, Init, Reader, onnx_op
from .constants import _identity
from .constants import _where as _where_folded
from .naming import operand

_NUMPY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Relu": lambda x: np.maximum(x, 0), "Sigmoid": lambda x: 1 / (1 + np.exp(-x)), "Tanh": np.tanh, "Exp": np.exp,
    "Log": np.log, "Neg": np.negative, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal, "Abs": np.abs,
    "Floor": np.floor, "Ceil": np.ceil, "Not": np.logical_not, "Sign": np.sign, "Sin": np.sin, "Cos": np.cos,
    "Round": np.round, "Tan": np.tan, "IsNaN": np.isnan, "Asin": np.arcsin, "Acos": np.arccos, "Atan": np.arctan,
    "Sinh": np.sinh, "Cosh": np.cosh, "Asinh": np.arcsinh, "Acosh": np.arccosh, "Atanh": np.arctanh,
}
_CATALOG = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Neg": "neg",
            "Sqrt": "sqrt", "Reciprocal": "reciprocal", "Abs": "abs", "Floor": "floor", "Ceil": "ceil",
            "Sign": "sign", "Sin": "sin", "Cos": "cos", "Round": "round", "Erf": "erf", "Asin": "asin", "Acos": "acos",
            "Atan": "atan", "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh"}


def op(r: Reader, ctx: Ctx, name: str, *inputs: Node, suffix: str = "", **attrs: Any) -> Node:
    """A catalog op for this ONNX node (a helper step of it with `suffix`), under the node's module."""
    return r.b.op(name, *inputs, name=f"{ctx.name}.{suffix}" if suffix else ctx.name, module=ctx.module,
                  attrs=attrs or None, original_op=ctx.op)


def const(r: Reader, ctx: Ctx, value: Any, hint: str) -> Node:
    return r.b.const(np.asarray(value, dtype=np.float64), ctx.module, hint)


@onnx_op(*_NUMPY, "Erf", "IsInf")
def _unary(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    if isinstance(x, Node) and ctx.op in _CATALOG:  # the common case first: one catalog op on a computed value
        return r.b.op(_CATALOG[ctx.op], x, name=ctx.name, module=ctx.module, original_op=ctx.op)
    c = r.folded(x)
    if c is not None:
        if ctx.op == "IsInf":
            pos, neg = int(ctx.attrs.get("detect_positive", 1)), int(ctx.attrs.get("detect_negative", 1))
            return (np.isposinf(c) & bool(pos)) | (np.isneginf(c) & bool(neg))
        if ctx.op == "Erf":
            from math import erf

            return np.vectorize(erf, otypes=[c.dtype])(c)
        return _NUMPY[ctx.op](c)
    node = r.node(x, ctx)
    if ctx.op in _CATALOG:
        return op(r, ctx, _CATALOG[ctx.op], node)
    if ctx.op == "Tan":
        return op(r, ctx, "div", op(r, ctx, "sin", node, suffix="sin"), op(r, ctx, "cos", node, suffix="cos"))
    if ctx.op == "Not":
        return op(r, ctx, "logical", node, op="not")
    if ctx.op == "IsNaN":
        return op(r, ctx, "isnan", node)
    if ctx.op == "IsInf":
        return op(r, ctx, "isinf", node, detect_positive=bool(ctx.attrs.get("detect_positive", 1)),
                  detect_negative=bool(ctx.attrs.get("detect_negative", 1)))
    raise Unmapped(f"{ctx.op} of a computed value")


CATALOG_UNARY.update((name, (_unary, op)) for name, op in _CATALOG.items())  # what _unary's first line does


_NP_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Equal": np.equal, "Less": np.less,
    "Greater": np.greater, "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor,
    "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal,
}


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":  # ONNX's integer division truncates toward zero
        return (np.sign(a) * np.sign(b) * (np.abs(a) // np.abs(b))).astype(np.result_type(a, b))
    return np.divide(a, b)


def _power(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.power(a, b.astype(a.dtype) if a.dtype.kind == "f" else b).astype(a.dtype)  # ONNX: the base's type


def legacy_broadcast(r: Reader, ctx: Ctx, x: Any, y: Any) -> Any:
    """Before opset 7, `broadcast=1` lines B up with A from `axis` on (default: A's last axes), where NumPy's rule
    lines it up from the right: a (C,) bias added to (N, C, H, W) at axis 1 becomes (C, 1, 1). Returns B so shaped."""
    if ctx.opset >= 7 or not int(ctx.attrs.get("broadcast", 0)):
        return y
    rank, inner = len(r.shape(x)), r.shape(y)
    axis = int(ctx.attrs.get("axis", rank - len(inner)))
    axis += rank if axis < 0 else 0
    if not 0 <= axis <= rank - len(inner):
        raise Unmapped(f"{ctx.op} broadcasting a {len(inner)}-D operand from axis {axis} of a {rank}-D one")
    shape = (*inner, *(1,) * (rank - axis - len(inner)))
    if shape == inner:
        return y
    c = r.folded(y)
    if c is not None:
        return c.reshape(shape)
    return op(r, ctx, "reshape", r.node(y, ctx, hint="other"), suffix="aligned", shape=shape)


@onnx_op(*_NP_BINARY, "Div", "Pow", "Mod")
def _binary(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    if ctx.op == "Add" and "axis" not in ctx.attrs:  # a Linear's product and its bias: one `linear` step
        from .core import biased

        fused = biased(r, ins[0], ins[1], ctx)
        if fused is not None:
            return fused
    x, y = ins[0], legacy_broadcast(r, ctx, ins[0], ins[1])
    cx, cy = r.folded(x), r.folded(y)
    if cx is not None and cy is not None:
        fold_room((cx, cy), f"{ctx.op} {ctx.name!r} of constants", r.where)
        if ctx.op == "Div":
            return _divide(cx, cy)
        if ctx.op == "Pow":
            return _power(cx, cy)
        if ctx.op == "Mod":
            return (np.fmod if ctx.attrs.get("fmod", 0) else np.mod)(cx, cy)
        return _NP_BINARY[ctx.op](cx, cy)
    if isinstance(x, Missing) or isinstance(y, Missing):  # max-pool indices made unpool positions, else refused
        from .conv import pool_arithmetic

        a, b = (y, x) if ctx.op == "Add" and isinstance(y, Missing) else (x, y)
        if not isinstance(a, Missing):  # the missing value is the second operand of an op other than Add
            raise Unmapped(b.reason)
        return pool_arithmetic(r, a, b, ctx)
    if ctx.op == "Pow":
        if cy is not None and cy.size == 1:
            return op(r, ctx, "pow", r.node(x, ctx), exponent=float(cy.reshape(())))
        return op(r, ctx, "power", r.node(x, ctx), r.node(y, ctx, hint="exponent"))
    if ctx.op == "Mod":  # on integers too: fmod=0 takes the divisor's sign (remainder), fmod=1 the dividend's
        return op(r, ctx, "fmod" if ctx.attrs.get("fmod", 0) else "remainder", r.node(x, ctx),
                  r.node(y, ctx, hint="divisor"))
    if ctx.op == "Div" and _integer(r, ctx, x, y):
        # ONNX's Div of integers truncates toward zero (7/2 = 3, −7/2 = −3; the TorchScript exporter writes
        # Python's `//` and torch.div(rounding_mode="trunc") so): the float quotient less its fraction, as a
        # Cast drops it (exact for |x| < 2^53, derivative 0 as trunc's)
        quotient = op(r, ctx, "div", operand(r, x, ctx, "a"), operand(r, y, ctx, "other"), suffix="quotient")
        fraction = op(r, ctx, "fmod", quotient, const(r, ctx, 1.0, "one"), suffix="fraction")
        return op(r, ctx, "sub", quotient, fraction)
    if ctx.op in ("Add", "Sub", "Mul", "Div"):
        if ctx.op == "Add":
            x, y = finite_mask(x), finite_mask(y)
        return op(r, ctx, ctx.op.lower(), operand(r, x, ctx, "a"), operand(r, y, ctx, "other"))
    return _compare(r, ctx, r.node(x, ctx), r.node(y, ctx, hint="other"))


_COMPARE = {"Greater": "gt", "GreaterOrEqual": "ge", "Less": "lt", "LessOrEqual": "le", "Equal": "eq"}


def _compare(r: Reader, ctx: Ctx, a: Node, b: Node) -> Node:
    """A comparison or logical op of computed values: the catalog's mask ops, through which no gradient flows."""
    if ctx.op in _COMPARE:
        return op(r, ctx, "compare", a, b, op=_COMPARE[ctx.op])
    if ctx.op in ("And", "Or", "Xor"):
        return op(r, ctx, "logical", a, b, op=ctx.op.lower())
    raise Unmapped(f"{ctx.op} of computed values")


@onnx_op("Max", "Min", "Sum", "Mean")
def _variadic(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Max/Min/Sum/Mean of any number of broadcast inputs: a chain of the binary catalog op."""
    items = [v for v in ins if v is not None]
    if not items:
        raise Unmapped(f"{ctx.op} without inputs")
    folded = [r.folded(v) for v in items]
    if all(f is not None for f in folded):
        fold_room(folded, f"{ctx.op} {ctx.name!r} of constants", r.where)
        fold: Any = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add, "Mean": np.add}[ctx.op]
        total: Any = folded[0]
        for f in folded[1:]:
            total = fold(total, f)
        return total / len(items) if ctx.op == "Mean" else total
    name = {"Max": "maximum", "Min": "minimum", "Sum": "add", "Mean": "add"}[ctx.op]
    nodes = [r.node(v, ctx, hint=f"in{i}") for i, v in enumerate(items)]
    out_node = nodes[0]
    last = len(nodes) - 1
    for i, n in enumerate(nodes[1:], start=1):
        out_node = op(r, ctx, name, out_node, n, suffix="" if i == last and ctx.op != "Mean" else f"acc{i}")
    if len(nodes) == 1:  # one input: the result is that input, as a step of its own
        return op(r, ctx, "mul", out_node, const(r, ctx, 1.0, "one"))
    if ctx.op == "Mean":
        return op(r, ctx, "mul", out_node, const(r, ctx, 1.0 / len(nodes), "1/n"))
    return out_node


@onnx_op("Clip")
def _clip(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """clamp for bounds known at load time; maximum then minimum for bounds that are tensors of the run."""
    x = ins[0]
    given: list[Any] = ([None if ctx.attrs.get(k) is None else np.asarray(ctx.attrs[k]) for k in ("min", "max")]
                        if ctx.opset < 11 else [*ins[1:3], None, None][:2])
    bounds = [None if v is None else r.folded(v) for v in given]
    c = r.folded(x)
    if c is not None and all(v is None or b is not None for v, b in zip(given, bounds, strict=True)):
        fold_room([c, *(b for b in bounds if b is not None)], f"Clip {ctx.name!r} of constants", r.where)
        out = c
        if bounds[0] is not None:
            out = np.maximum(out, bounds[0])
        if bounds[1] is not None:
            out = np.minimum(out, bounds[1])
        return out.astype(c.dtype)
    node = r.node(x, ctx)
    if any(v is not None and b is None for v, b in zip(given, bounds, strict=True)):
        bounded = node
        for v, name, tag in ((given[0], "maximum", "lo"), (given[1], "minimum", "hi")):
            if v is not None:
                bounded = op(r, ctx, name, bounded, r.node(v, ctx, hint=tag),
                             suffix="" if tag == "hi" or given[1] is None else "above_min")
        return bounded
    lo, hi = (None if b is None else float(b.reshape(()).item()) for b in bounds)
    if lo is not None and hi is not None and lo > hi:  # ONNX and torch.clamp: every value becomes max
        lo = hi
    return op(r, ctx, "clamp", node, min=lo, max=hi)


@onnx_op("ImageScaler")
def _image_scaler(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """ImageScaler (experimental, opsets 1 to 9; the Model Zoo's Tiny YOLOv2 opens with it): x · scale + bias[c],
    one bias per channel."""
    x = r.node(ins[0], ctx)
    bias = np.asarray(ctx.attrs.get("bias", []), dtype=np.float64)
    if len(x.shape) < 2 or (bias.size and bias.size != x.shape[1]):
        raise Unmapped(f"ImageScaler with {bias.size} biases for {x.shape}")
    scaled = op(r, ctx, "mul", x, const(r, ctx, float(ctx.attrs.get("scale", 1.0)), "scale"), suffix="scaled")
    if not bias.size:
        return scaled
    per_channel = bias.reshape(-1, *(1,) * (len(x.shape) - 2))
    return op(r, ctx, "add", scaled, r.b.const(per_channel, ctx.module, "bias", name=f"{ctx.name}.bias"))


@onnx_op("Where")
def _where(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Where on a computed condition is the catalog's `where`; on a known one it folds into masks."""
    if r.folded(ins[0]) is not None:
        return _where_folded(r, ins, ctx)
    cond = r.node(ins[0], ctx, hint="condition")
    return op(r, ctx, "where", cond, r.node(finite_mask(ins[1]), ctx, hint="a"),
              r.node(finite_mask(ins[2]), ctx, hint="b"))


# -- Cast --------------------------------------------------------------------------------------------------------
# Cast-1 (opset 1 to 5) names its target type where later opsets give TensorProto's number
CAST_NAMES = {"FLOAT": 1, "UINT8": 2, "INT8": 3, "UINT16": 4, "INT16": 5, "INT32": 6, "INT64": 7, "STRING": 8,
              "BOOL": 9, "FLOAT16": 10, "DOUBLE": 11, "UINT32": 12, "UINT64": 13}
_MASKS = frozenset({"compare", "logical", "isnan", "isinf"})  # catalog ops whose values are booleans
_WHOLE = frozenset({"argmax", "argmin", "floor", "ceil", "round", "sign"})  # and those whose values are whole
_FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
_HALVES = frozenset({"float16", "bfloat16"})  # the float types a cast to always rounds to
# per open file: each value's element type (as the file declares it, else as ONNX's type rules imply it), and the
# input of each Cast (worked out once, and only for a file that asks: a cast of a computed value to an integer or
# bool type, or a Div of computed values)
_TYPES: weakref.WeakKeyDictionary[Reader, tuple[dict[str, str], dict[str, str]]] = weakref.WeakKeyDictionary()
# ONNX ops whose inputs and output all have one type T (the first input known tells), those whose output has
# the type of their first input (the others are indices, axes, shapes), and those of a fixed type. An op not
# listed leaves its outputs unknown, read as floats: a value is treated as an integer only where the file says so.
_SAME_ALL = frozenset({"Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Sum", "Mean", "Concat", "BitShift"})
_SAME_FIRST = frozenset({"Neg", "Abs", "Sign", "Relu", "Clip", "Pow", "Identity", "Reshape", "Squeeze",
                         "Unsqueeze", "Flatten", "Transpose", "Slice", "Gather", "GatherElements", "GatherND",
                         "Expand", "Tile", "Pad", "Split", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
                         "CumSum", "Range", "TopK", "Trilu", "ScatterND", "ScatterElements"})
_FIXED = {**dict.fromkeys(("Shape", "Size", "ArgMax", "ArgMin", "NonZero"), "int64"),
          **dict.fromkeys(("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Xor",
                           "IsNaN", "IsInf"), "bool")}


def _constant_type(n: Any) -> str:
    """The element type of a Constant's (or ConstantOfShape's) value attribute ("" where none is read)."""
    for a in n.attribute:
        if a.name == "value":
            return ONNX_DTYPES.get(a.t.data_type, "")
        if a.name in ("value_int", "value_ints"):
            return "int64"
        if a.name in ("value_float", "value_floats"):
            return "float32"
    return "float32" if n.op_type == "ConstantOfShape" else ""


def _file_types(r: Reader) -> tuple[dict[str, str], dict[str, str]]:
    found = _TYPES.get(r)
    if found is None:
        g = r.graph
        declared = {vi.name: ONNX_DTYPES.get(vi.type.tensor_type.elem_type, "")
                    for vi in (*g.input, *g.value_info, *g.output)}
        declared.update((i.name, ONNX_DTYPES.get(i.data_type, "")) for i in g.initializer)
        types = {k: v for k, v in declared.items() if v}
        # a value the file leaves untyped (the TorchScript exporter writes no value_info) takes its type from its
        # node, in the file's (topological) order: Python's `//` exported as Div of int64 tensors is found so
        for n in g.node:
            kind = n.op_type
            if kind == "Cast":
                t = next((ONNX_DTYPES.get(a.i or CAST_NAMES.get(bytes(a.s).decode("ascii", "replace").upper(), 0), "")
                          for a in n.attribute if a.name == "to"), "")
            elif kind in ("Constant", "ConstantOfShape"):
                t = _constant_type(n)
            elif kind in _FIXED:
                t = _FIXED[kind]
            elif kind in _SAME_ALL:
                t = next((types[i] for i in n.input if i in types), "")
            elif kind in _SAME_FIRST:
                t = types.get(n.input[0], "") if n.input else ""
            elif kind == "CastLike":
                t = types.get(n.input[1], "") if len(n.input) > 1 else ""
            elif kind == "Where" and len(n.input) == 3:
                t = types.get(n.input[1]) or types.get(n.input[2], "")
            else:
                continue
            outs = n.output if kind == "Split" else n.output[:1]
            types.update((o, t) for o in outs if t and o and o not in types)
        sources = {o: n.input[0] for n in g.node if n.op_type in ("Cast", "CastLike") and n.input for o in n.output}
        found = _TYPES[r] = types, sources
    return found


def _integer(r: Reader, ctx: Ctx, *operands: Any) -> bool:
    """Whether this arithmetic node computes on integers. ONNX gives its inputs and output one type, so a
    constant operand's type tells; else the file's type of the output, declared or implied (`_file_types`)."""
    for v in operands:
        known = v.array if isinstance(v, Init) else v if isinstance(v, np.ndarray) else None
        if known is not None:
            return known.dtype.kind in "iu"
    types, _ = _file_types(r)
    found = types.get(ctx.outputs[0], "") if ctx.outputs else ""
    return bool(found) and found not in _FLOATS and found != "bool"


def _source_type(r: Reader, x: Any, ctx: Ctx) -> str:
    """The element type of a Cast's input: a typed input's own, else the file's (declared or implied), else ""."""
    dtype = str(x.meta.get("dtype", "")) if isinstance(x, Node) and x.is_leaf else ""
    if not dtype and ctx.outputs:
        types, sources = _file_types(r)
        dtype = types.get(sources.get(ctx.outputs[0], ""), "")
    return dtype


def _kind(r: Reader, x: Node, ctx: Ctx) -> str:
    """What a computed value holds: "bool", "int" (whole numbers) or "float" (anything, as far as we know).

    The producing op tells (masks, argmax, an earlier cast or integer Div, whose last steps are a `sub`, or a
    `remainder` for a wrap into an unsigned type); else the type of the Cast's input: a typed input's, or the
    file's, declared or implied by ONNX's type rules (`_file_types`)."""
    name = x.op.name
    if name in _MASKS:
        return "bool"
    origin = x.meta.get("original_op")
    if name in _WHOLE or (origin in ("Cast", "CastLike", "Div") and name == "sub") \
            or (origin in ("Cast", "CastLike") and name == "remainder"):
        return "int"
    dtype = _source_type(r, x, ctx)
    return "bool" if dtype == "bool" else "float" if not dtype or dtype in _FLOATS else "int"


def _wrap(r: Reader, ctx: Ctx, node: Node, source: str, target: str) -> Node:
    """ONNX casts between integer types keep the low bits (two's complement: int16 200 → int8 −56, int64 −1 →
    uint8 255). Where the source's range exceeds the target's, the value is wrapped into it with a remainder
    (exact in float64 for |x| < 2^53; derivative 1, as the cast's). A cast to uint64 (or from uint64 to int64)
    keeps the value: the wrapped numbers (2^64 − n) are past what float64 holds exactly."""
    if not source or source in _FLOATS or source == "bool" or target == "uint64" or source == "uint64":
        return node
    have, want = np.iinfo(source), np.iinfo(target)
    if want.min <= have.min and have.max <= want.max:
        return node
    span = const(r, ctx, float(want.max) - float(want.min) + 1, "span")
    if want.min == 0:  # unsigned: x mod 2^n
        return op(r, ctx, "remainder", node, span)
    # signed: x − (s − s mod 2^n) with s = x + 2^(n−1), the whole turns taken off x itself. Not (s mod 2^n) − 2^(n−1):
    # in float32, s rounds a small x away next to 2^31 (an attention mask's 0/1 cast to int32 read as 0), while
    # s − s mod 2^n is a multiple of 2^n, exact, and 0 for every x in range
    half = -float(want.min)
    shifted = op(r, ctx, "add", node, const(r, ctx, half, "half"), suffix="shifted")
    wrapped = op(r, ctx, "remainder", shifted, span, suffix="wrapped")
    turns = op(r, ctx, "sub", shifted, wrapped, suffix="turns")
    return op(r, ctx, "sub", node, turns)


def _rounds(source: str, target: str) -> bool:
    """Whether a cast from `source` (the file's type, "" where it gives none) to float `target` rounds: to float16
    or bfloat16 from any other type (an unknown one too: rounding a value already in the type changes nothing), as
    the .pt2 reader's `narrows`."""
    if target in _HALVES:
        return source != target
    return narrows(source or None, target)


@onnx_op("Cast", "CastLike")
def _cast(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """A cast to a narrower float type rounds through it, values and gradient (a `cast` step, as the .pt2 reader's:
    1e5 in float16 is inf), in any session dtype; a cast to a wider float type is the value itself (the session's
    dtype governs). A cast to an integer type drops a
    computed float's fraction, x − fmod(x, 1) (exactly truncation toward zero, with trunc's derivative 0), and one
    to bool is x ≠ 0, a mask; T5's relative-position buckets are logarithms truncated so. Values the file or their
    op shows to be integers or masks already keep their values, except that an integer cast to a narrower integer
    type wraps around (`_wrap`). A float out of the target's range is only truncated: ONNX leaves that undefined."""
    if ctx.op == "Cast":
        to = ctx.attrs.get("to", 1)
        code = CAST_NAMES.get(to.upper(), 0) if isinstance(to, str) else int(to)  # Cast-1 names the type
        if code not in ONNX_DTYPES:  # strings, complex numbers, 8- and 4-bit floats
            raise Unmapped(f"Cast to ONNX type {code} (propscope reads floats, integers and bools)")
        target = ONNX_DTYPES[code]
    else:
        like = ins[1] if len(ins) > 1 else None
        known = like.array if isinstance(like, Init) else r.folded(like)
        if known is not None:
            target = known.dtype.name
        else:
            types, _ = _file_types(r)
            target = types.get(ctx.outputs[0], "") if ctx.outputs else ""
    x = ins[0]
    c = r.folded(x)
    if c is not None:
        fold_room((c,), f"{ctx.op} {ctx.name!r} of a constant", r.where)
        if target in _HALVES:  # an explicit half or bfloat16 of a constant rounds as torch's would
            return round_to_float(c.astype(np.float64), target)
        if not target or target in _FLOATS:  # folded float math runs in float64, as PyTorch's float64 run
            return c.astype(np.float64) if target else c
        return c != 0 if target == "bool" else c.astype(target)  # NumPy truncates toward zero, as ONNX
    if target and _rounds(_source_type(r, x, ctx), target):
        return op(r, ctx, "cast", r.node(x, ctx), dtype=target)
    if not target or target in _FLOATS:
        return _identity(r, ins[:1], ctx)
    node = r.node(x, ctx)
    kind = _kind(r, node, ctx)
    if target == "bool":
        return node if kind == "bool" else op(r, ctx, "compare", node, const(r, ctx, 0.0, "zero"), op="ne")
    if kind == "int":
        return _wrap(r, ctx, node, _source_type(r, node, ctx), target)
    if kind == "bool":
        return node
    fraction = op(r, ctx, "fmod", node, const(r, ctx, 1.0, "one"), suffix="fraction")
    return op(r, ctx, "sub", node, fraction)


@onnx_op("com.microsoft.BiasAdd")
def _bias_add(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """X + bias + skip (Stable Diffusion's feed-forward output, its bias and the residual), as two additions."""
    biased = op(r, ctx, "add", r.node(ins[0], ctx), r.node(ins[1], ctx, hint="bias"), suffix="biased")
    return op(r, ctx, "add", biased, r.node(ins[2], ctx, hint="skip"))

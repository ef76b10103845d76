"""ONNX models (`.onnx`), with the optional `onnx` package, mapped onto catalog ops.

Exporters surround the network with shape plumbing (Shape, Gather, Unsqueeze, Concat, Expand,
Constant, ConstantOfShape, Cast...). Every value computable at load time is folded with NumPy, so
the graph shows the network, not the plumbing. Float initializers become parameters named as the
file names them (`fc.weight`); name scopes (`/layer1/Gemm`, or the torch exporter's metadata) give
each node its module. ONNX's GRU, LSTM and RNN are unrolled into PyTorch-layout cells per time step.

Safety: the protobuf is parsed with `load_external_data=False`; external data is refused; every
tensor's declared size is checked against its bytes before an array is made.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError
from ..ir import Node
from ..model import Model
from ._aten import Lazy, Missing, Transposed, Unmapped
from ._build import CAUSAL_FILL, Builder, additive_mask, check_shape, clean_name, file_size, finite_mask, from_bytes

SUFFIX = ".onnx"
INSTALL = "pip install 'propscope[onnx]' (or pip install onnx)"
MAX_FILE_BYTES = 2 * 2**30  # protobuf's own limit
INT64_MAX = 2**63 - 1
# TensorProto.DataType numbers -> our dtype names (strings, complex and float8 are refused by name)
ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
               10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


def match(path: Path) -> bool:
    return path.suffix.lower() == SUFFIX


class Init:
    """An initializer: a parameter (floats) or a constant, made a leaf only when a node uses it."""

    def __init__(self, name: str, array: np.ndarray) -> None:
        self.name, self.array = name, array
        self.node: Node | None = None


def tensor_array(t: Any, where: str, what: str, folder: Path | None = None) -> np.ndarray:
    """A TensorProto as NumPy, refusing any size that does not match its bytes.

    External data (the torch exporter's default for weights) is read only from a plain file beside the
    model, at an offset and length checked against that file; never from another folder.
    """
    dtype = ONNX_DTYPES.get(int(t.data_type))
    if dtype is None:
        raise ModelFormatError(f"{where}: {what} has ONNX data type {t.data_type}, which propscope cannot use")
    shape = check_shape(t.dims, what, where)
    count = math.prod(shape)
    if getattr(t, "data_location", 0) == 1 or len(getattr(t, "external_data", ())):
        data = _external(t, where, what, folder)
        if dtype == "bool":
            return from_bytes(data, "uint8", shape, where, what).astype(bool)
        arr = from_bytes(data, dtype, shape, where, what)
    elif t.raw_data:
        if dtype == "bool":
            return from_bytes(t.raw_data, "uint8", shape, where, what).astype(bool)
        arr = from_bytes(t.raw_data, dtype, shape, where, what)
    else:
        field = {"float32": t.float_data, "float64": t.double_data, "int64": t.int64_data,
                 "uint32": t.uint64_data, "uint64": t.uint64_data}.get(dtype, t.int32_data)
        if len(field) != count:
            raise ModelFormatError(f"{where}: {what} declares {shape} ({count} values) but holds {len(field)}")
        if dtype in ("float16", "bfloat16"):
            bits = np.asarray(field, dtype=np.uint16)
            arr = bits.view(np.float16).astype(np.float32) if dtype == "float16" else \
                (bits.astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.asarray(field, dtype=np.dtype(dtype))
        arr = arr.reshape(shape)
    return arr.astype(np.float32) if arr.dtype == np.float16 else arr


def _external(t: Any, where: str, what: str, folder: Path | None) -> bytes:
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if folder is None or not location or Path(location).is_absolute() or Path(location).name != location:
        raise ModelFormatError(f"{where}: {what} keeps its data in {location!r}; propscope reads external data "
                               "only from a file in the model's own folder")
    file = folder / location
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", -1))
        size = file.stat().st_size
    except ValueError:
        raise ModelFormatError(f"{where}: {what} has a malformed external data offset or length") from None
    except OSError:
        raise ModelFormatError(f"{where}: {what} keeps its data in {location!r}, which is missing beside the model") \
            from None
    if length < 0:
        length = size - offset
    if offset < 0 or offset + length > size:
        raise ModelFormatError(f"{where}: {what} claims bytes {offset}..{offset + length} of {location}, "
                               f"which holds {size}; the data file may be truncated")
    with file.open("rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def _dims(value_info: Any) -> tuple[int | None, ...] | None:
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.tensor_type.shape.dim)


def _module(node: Any) -> str:
    """The module path: the torch exporter's name_scopes metadata, else the scope in `/layer1/fc/Gemm`."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes" and len(prop.value) < 4000:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                break
            if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes):
                return ".".join(s for s in scopes[:-1] if s)
    name = node.name or ""
    if name.startswith("/") and name.count("/") >= 2:
        return ".".join(p for p in name.split("/")[1:-1] if p)
    return ""


def _node_name(node: Any, index: int) -> str:
    if node.name:
        return clean_name(node.name.strip("/").replace("/", "."))
    out = next((o for o in node.output if o), "")
    return clean_name(out) if out else f"{node.op_type}_{index}"


class Ctx:
    def __init__(self, op: str, name: str, module: str, shapes: list[tuple[int, ...] | None], attrs: dict[str, Any],
                 opset: int, outputs: tuple[str, ...] = ()) -> None:
        self.op, self.name, self.module, self.shapes, self.attrs, self.opset = op, name, module, shapes, attrs, opset
        self.outputs = outputs


HANDLERS: dict[str, Callable[[Reader, list[Any], Ctx], Any]] = {}


def onnx_op(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return register


class Reader:
    def __init__(self, model: Any, where: str, name: str) -> None:
        self.model, self.where = model, where
        self.graph = model.graph
        self.opset = next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.b = Builder(name, where)
        self.env: dict[str, Any] = {}
        self.shapes: dict[str, tuple[int | None, ...]] = {}
        self.inferred = False
        self.gru_count: dict[str, int] = {}
        self.folder: Path | None = None
        self.fold_weights = False

    # -- values ------------------------------------------------------------------------------------
    def node(self, value: Any, ctx: Ctx, kind: str = "parameter", hint: str = "const") -> Node:
        if isinstance(value, Node):
            return value
        if isinstance(value, Init):
            if value.node is None:
                leaf = kind if value.array.dtype.kind == "f" else "constant"
                value.node = self.b.leaf(leaf, clean_name(value.name), value.array,
                                         module=_param_module(value.name, ctx.module))
            return value.node
        if isinstance(value, Lazy):
            return self.node(value.get(), ctx, kind, hint)
        if isinstance(value, Transposed):
            if value.node is None:
                value.node = self.b.op("transpose", value.leaf, name=f"{value.leaf.name}.T", module=value.leaf.module,
                                       attrs={"axes": (1, 0)})
            return value.node
        if isinstance(value, Missing):
            raise Unmapped(value.reason)
        if isinstance(value, np.ndarray):
            return self.b.const(value, ctx.module, hint, name=f"{ctx.name}.{hint}")
        raise Unmapped(f"a missing input ({type(value).__name__})")

    @staticmethod
    def const(value: Any) -> bool:
        return isinstance(value, np.ndarray)

    def folded(self, value: Any) -> np.ndarray | None:
        """A value known at load time: constants and integer initializers (shapes, indices), else None.

        Float initializers are parameters and stay nodes, except in the plumbing that only rearranges
        weights for a recurrent layer (`fold_weights`): that is evaluated, and the layer's own cells
        get parameters in PyTorch's layout.
        """
        if isinstance(value, np.ndarray):
            return value
        if isinstance(value, Init) and (value.array.dtype.kind != "f" or self.fold_weights):
            return value.array
        return None

    def _weight_plumbing(self) -> set[int]:
        """The nodes that compute recurrent weights from initializers alone (exporters reorder gates so)."""
        made_by: dict[str, int] = {}
        constant: set[str] = {i.name for i in self.graph.initializer}
        for i, n in enumerate(self.graph.node):
            if all(not x or x in constant for x in n.input) and not any(
                    a.type in (5, 10) for a in n.attribute):  # no subgraphs
                constant.update(o for o in n.output if o)
            for o in n.output:
                made_by[o] = i
        wanted: set[int] = set()
        stack = [x for n in self.graph.node if n.op_type in ("GRU", "LSTM", "RNN") for x in n.input[1:4] if x]
        while stack:
            name = stack.pop()
            index = made_by.get(name)
            if index is None or index in wanted or name not in constant:
                continue
            wanted.add(index)
            stack.extend(x for x in self.graph.node[index].input if x)
        return wanted

    def shape(self, value: Any) -> tuple[int, ...]:
        if isinstance(value, Node):
            return value.shape
        if isinstance(value, Init):
            return value.array.shape
        if isinstance(value, np.ndarray):
            return value.shape
        if isinstance(value, Transposed):
            return value.leaf.shape[::-1]
        if isinstance(value, Lazy):
            return self.shape(value.get())
        raise Unmapped(f"no shape for {type(value).__name__}")

    def declared(self, name: str) -> tuple[int, ...] | None:
        dims = self.shapes.get(name)
        if dims is None and not self.inferred:
            self._infer()
            dims = self.shapes.get(name)
        if dims is None or any(d is None for d in dims):
            return None
        return check_shape(dims, f"value {name!r}", self.where)

    def _infer(self) -> None:
        """ONNX's own shape inference, only when a placeholder needs a shape the file does not declare."""
        self.inferred = True
        try:
            import onnx

            inferred = onnx.shape_inference.infer_shapes(self.model, strict_mode=False)
        except Exception:  # inference is a convenience: without it the placeholder just has no shape
            return
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
            dims = _dims(vi)
            if dims is not None and vi.name not in self.shapes:
                self.shapes[vi.name] = dims

    # -- the graph ---------------------------------------------------------------------------------
    def read(self) -> Model:
        g = self.graph
        for vi in list(g.value_info) + list(g.output) + list(g.input):
            dims = _dims(vi)
            if dims is not None:
                self.shapes[vi.name] = dims
        for i, init in enumerate(g.initializer):
            name = init.name or f"initializer_{i}"
            self.env[name] = Init(name, tensor_array(init, self.where, f"initializer {name!r}", self.folder))
        for vi in g.input:
            if vi.name in self.env:
                continue  # an initializer listed as an input too (older exporters)
            dims = _dims(vi)
            if dims is None:
                raise ModelFormatError(f"{self.where}: input {vi.name!r} is not a tensor with a shape")
            if any(d is None for d in dims):
                self.b.warnings.append(f"input {vi.name!r} has symbolic sizes; they are taken as 1 "
                                       f"(shape {tuple(d or 1 for d in dims)}); pass --data to see the real sizes")
            shape = check_shape(tuple(d or 1 for d in dims), f"input {vi.name!r}", self.where)
            elem = vi.type.tensor_type.elem_type
            self.env[vi.name] = self.b.input(vi.name, shape, dtype=ONNX_DTYPES.get(elem, "float32"))
            self.shapes[vi.name] = shape
        plumbing = self._weight_plumbing()
        for i, n in enumerate(g.node):
            self.fold_weights = i in plumbing
            self._op(n, i)
        self.fold_weights = False
        outputs = []
        for vi in g.output:
            if vi.name not in self.env:
                raise ModelFormatError(f"{self.where}: output {vi.name!r} is not produced by any node")
            value = self.env[vi.name]
            try:
                outputs.append(self.node(value, Ctx("output", vi.name, "", [], {}, self.opset), hint=vi.name))
            except Unmapped as exc:
                raise ModelFormatError(f"{self.where}: output {vi.name!r} cannot be built ({exc})") from None
        producer = f"{self.model.producer_name} {self.model.producer_version}".strip() or "an unknown producer"
        return self.b.model(outputs, None, f"ONNX model (opset {self.opset}, from {producer})")

    def _op(self, n: Any, index: int) -> None:
        import onnx

        name = _node_name(n, index)
        module = _module(n)
        shapes = [self.declared(o) if o else None for o in n.output]
        attrs: dict[str, Any] = {}
        ctx = Ctx(n.op_type, name, module, shapes, attrs, self.opset, tuple(n.output))
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                attrs[a.name] = tensor_array(a.t, self.where, f"attribute {a.name!r} of node {name!r}", self.folder)
            elif a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                attrs[a.name] = Missing("a subgraph (control flow)")
            else:
                value = onnx.helper.get_attribute_value(a)
                if isinstance(value, bytes):
                    value = value.decode("utf-8", "replace")
                elif isinstance(value, float):  # stored as float32: 0.1 comes back as the 0.1 the exporter saw
                    value = float(str(np.float32(value)))
                attrs[a.name] = value
        inputs: list[Any] = []
        for i in n.input:
            if not i:
                inputs.append(None)
            elif i in self.env:
                inputs.append(self.env[i])
            else:
                raise ModelFormatError(f"{self.where}: node {name!r} uses {i!r} before any node produces it")
        mark = len(self.b.graph)
        domain = n.domain if n.domain not in ("", "ai.onnx") else ""
        key = f"{domain}.{n.op_type}" if domain else n.op_type
        try:
            handler = HANDLERS.get(key)
            if handler is None or any(isinstance(v, Missing) for v in attrs.values()):
                raise Unmapped("")
            result = handler(self, inputs, ctx)
            results = list(result) if isinstance(result, list | tuple) else [result]
            results = [np.asarray(v) if isinstance(v, np.generic) else v for v in results]
            for value, declared in zip(results, shapes, strict=False):
                if isinstance(value, Node) and declared is not None and value.shape != declared:
                    raise Unmapped(f"mapped to shape {value.shape}, the file declares {declared}")
        except (Unmapped, GraphError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
            if len(self.b.graph) != mark:
                self.b.warnings.append(f"{key} at {name!r}: partial mapping dropped ({exc})")
            results = self._placeholder(key, inputs, ctx, str(exc) if isinstance(exc, Unmapped) else
                                        f"{type(exc).__name__}: {exc}")
        for out, value in zip(n.output, results, strict=False):
            if out:
                self.env[out] = value

    def _placeholder(self, key: str, inputs: list[Any], ctx: Ctx, reason: str) -> list[Any]:
        nodes: list[Node] = []
        for v in inputs:
            if v is None or (isinstance(v, np.ndarray) and v.size < 64):
                continue
            try:
                node = self.node(v, ctx)
            except Unmapped:
                continue
            if node not in nodes:
                nodes.append(node)
        results: list[Any] = []
        for i, shape in enumerate(ctx.shapes):
            if shape is None:
                results.append(Missing(f"an output of unsupported op {key} (shape unknown)"))
                continue
            name = ctx.name if i == 0 else f"{ctx.name}.out{i}"
            results.append(self.b.unsupported(key, nodes, shape, name, ctx.module, reason))
        return results


def _param_module(name: str, fallback: str) -> str:
    if "." in name and not name.startswith("onnx::"):
        return name.rsplit(".", 1)[0]
    return fallback


def open(path: str | Path) -> Model:
    path = Path(path)
    where = str(path)
    file_size(path, where, MAX_FILE_BYTES, "more than an ONNX file can hold without external data")
    try:
        import onnx
    except ImportError:
        raise ModelFormatError(f"{where}: reading ONNX needs the onnx package: {INSTALL}") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: the bytes are not an ONNX model
        raise ModelFormatError(f"{where}: not a valid ONNX file ({type(exc).__name__}: {str(exc)[:120]})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not (model.graph.node or model.graph.output):
        raise ModelFormatError(f"{where}: not an ONNX model (no graph with nodes and outputs)")
    if model.functions:
        names = ", ".join(f.name for f in model.functions[:4])
        model_warning = f"the model defines local functions ({names}); nodes that call them are unsupported"
    else:
        model_warning = ""
    reader = Reader(model, where, clean_name(model.graph.name or path.stem))
    reader.folder = path.resolve().parent
    if model_warning:
        reader.b.warnings.append(model_warning)
    return reader.read()


# -- handlers ------------------------------------------------------------------------------------------
def _attr_or_input(r: Reader, ins: list[Any], ctx: Ctx, index: int, name: str, default: Any = None) -> Any:
    """An operand that newer opsets pass as an input and older ones as an attribute (axes, pads, split...)."""
    if len(ins) > index and ins[index] is not None:
        value = r.folded(ins[index])
        if value is None:
            raise Unmapped(f"{name} computed at run time")
        return [int(v) for v in value.reshape(-1)]
    value = ctx.attrs.get(name, default)
    return None if value is None else list(value) if isinstance(value, list | tuple) else value


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


@onnx_op("Where")
def _where(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    cond, x, y = (r.folded(v) for v in ins)
    if cond is not None and x is not None and y is not None:
        return np.where(cond.astype(bool), x, y)
    if cond is None:
        raise Unmapped("Where on a computed condition")
    m = cond.astype(np.float64)
    parts = []
    for value, weight, tag in ((ins[1], m, "a"), (ins[2], 1.0 - m, "b")):
        c = r.folded(value)
        if c is not None:
            # a −∞ fill is an attention mask: the finite fill gives softmax the same zeros, and stays finite
            c = np.where(np.isneginf(c), CAUSAL_FILL, c.astype(np.float64))
            if not np.all(np.isfinite(c)):
                raise Unmapped("Where that fills with +∞ or NaN")
            parts.append(r.b.const(c * weight, ctx.module, "fill"))
        else:
            parts.append(r.b.op("mul", r.node(value, ctx), r.b.const(weight, ctx.module, "mask"),
                                name=f"{ctx.name}.{tag}", module=ctx.module))
    return r.b.op("add", parts[0], parts[1], name=ctx.name, module=ctx.module)


@onnx_op("Identity", "Dropout", "Cast", "CastLike")
def _identity(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    c = r.folded(x)
    if ctx.op == "Cast" and c is not None:
        dtype = ONNX_DTYPES.get(int(ctx.attrs.get("to", 1)), "float32")
        # folded float math runs in float64: sqrt(head_dim) in float32 would differ from PyTorch's float64 run
        return c.astype(np.float64 if dtype in ("float16", "bfloat16", "float32") else dtype)
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
    out = np.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)
    check_shape(out.shape, "Range", r.where)
    return out


def _reshape_node(r: Reader, x: Any, out: tuple[int, ...], ctx: Ctx) -> Any:
    c = r.folded(x)
    if c is not None:
        return c.reshape(out)
    node = r.node(x, ctx)
    if node.shape == out:
        return node
    target = out
    if out and node.shape and out[0] == node.shape[0] and math.prod(out[1:]) > 0:
        target = (-1, *out[1:])  # the batch axis passes through: another batch size still fits
    return r.b.op("reshape", node, name=ctx.name, module=ctx.module, attrs={"shape": target})


@onnx_op("Reshape")
def _reshape(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    spec = r.folded(ins[1])
    if spec is None:
        raise Unmapped("a target shape computed at run time")
    shape = r.shape(ins[0])
    target = [int(d) for d in spec.reshape(-1)]
    if not ctx.attrs.get("allowzero", 0):
        target = [shape[i] if d == 0 else d for i, d in enumerate(target)]
    if target.count(-1) == 1:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = math.prod(shape) // known if known else 0
    out = check_shape(target, f"Reshape {ctx.name!r}", r.where)
    if math.prod(out) != math.prod(shape):
        raise Unmapped(f"cannot reshape {shape} to {out}")
    return _reshape_node(r, ins[0], out, ctx)


@onnx_op("Flatten")
def _flatten(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    shape = r.shape(ins[0])
    axis = int(ctx.attrs.get("axis", 1)) % (len(shape) or 1)
    out = (math.prod(shape[:axis]), math.prod(shape[axis:]))
    if axis == 1 and r.folded(ins[0]) is None and len(shape) > 2:
        return r.b.op("flatten", r.node(ins[0], ctx), name=ctx.name, module=ctx.module, attrs={"start_dim": 1})
    return _reshape_node(r, ins[0], out, ctx)


@onnx_op("Squeeze", "Unsqueeze")
def _squeeze(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    shape = list(r.shape(ins[0]))
    axes = _attr_or_input(r, ins, ctx, 1, "axes")
    if ctx.op == "Squeeze":
        if axes is None:
            out = [d for d in shape if d != 1]
        else:
            drop = {a % len(shape) for a in axes}
            out = [d for i, d in enumerate(shape) if i not in drop]
    else:
        rank = len(shape) + len(axes)
        out = list(shape)
        for a in sorted(x % rank for x in axes):
            out.insert(a, 1)
    return _reshape_node(r, ins[0], tuple(out), ctx)


@onnx_op("Transpose")
def _transpose(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    ndim = len(r.shape(x))
    perm = tuple(int(p) for p in ctx.attrs.get("perm", reversed(range(ndim))))
    c = r.folded(x)
    if c is not None:
        return np.transpose(c, perm)
    if perm == tuple(range(ndim)):
        return x
    if isinstance(x, Init) and ndim == 2:
        return Transposed(r.node(x, ctx))
    return r.b.op("transpose", r.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axes": perm})


@onnx_op("Expand")
def _expand(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    spec = r.folded(ins[1])
    if spec is None:
        raise Unmapped("a shape computed at run time")
    shape = r.shape(ins[0])
    out = check_shape(np.broadcast_shapes(shape, tuple(int(d) for d in spec.reshape(-1))), "Expand", r.where)
    c = r.folded(ins[0])
    if c is not None:
        return np.broadcast_to(c, out).copy()
    node = r.node(ins[0], ctx)
    if node.shape == out:
        return node
    if math.prod(node.shape) == math.prod(out):
        return _reshape_node(r, node, out, ctx)
    return r.b.op("add", node, r.b.const(np.zeros(out), ctx.module, "expand"), name=ctx.name, module=ctx.module,
                  original_op="Expand")


@onnx_op("Concat")
def _concat(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    axis = int(ctx.attrs["axis"])
    items = [v for v in ins if v is not None]
    folded = [r.folded(v) for v in items]
    if all(f is not None for f in folded):
        return np.concatenate(folded, axis=axis)  # type: ignore[arg-type]
    items = [v for v, f in zip(items, folded, strict=True) if f is None or f.size]
    if len(items) == 1:
        return items[0]
    return r.b.op("concat", *(r.node(v, ctx, hint="part") for v in items), name=ctx.name, module=ctx.module,
                  attrs={"axis": axis})


@onnx_op("Gather")
def _gather(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    data, idx = ins[0], ins[1]
    axis = int(ctx.attrs.get("axis", 0))
    cd, ci = r.folded(data), r.folded(idx)
    if cd is not None and ci is not None:
        return np.take(cd, ci.astype(np.int64), axis=axis)
    if ci is not None and ci.ndim == 0:
        return r.b.op("select", r.node(data, ctx), name=ctx.name, module=ctx.module,
                      attrs={"axis": axis, "index": int(ci)})
    if ci is None and isinstance(data, Init) and axis == 0 and len(data.array.shape) == 2:
        return r.b.op("embedding", r.node(idx, ctx), r.node(data, ctx), name=ctx.name, module=ctx.module)
    return r.b.op("index", r.node(data, ctx), r.node(idx, ctx, hint="index"), name=ctx.name, module=ctx.module,
                  attrs={"axis": axis})


@onnx_op("Slice")
def _slice(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    shape = r.shape(x)
    if ctx.opset < 10:
        starts, ends = list(ctx.attrs["starts"]), list(ctx.attrs["ends"])
        axes = list(ctx.attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = _attr_or_input(r, ins, ctx, 1, "starts")
        ends = _attr_or_input(r, ins, ctx, 2, "ends")
        axes = _attr_or_input(r, ins, ctx, 3, "axes") or list(range(len(starts)))
        steps = _attr_or_input(r, ins, ctx, 4, "steps") or [1] * len(starts)
    axes = [a % len(shape) for a in axes]
    stops: list[int | None] = []
    begins: list[int | None] = []
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        size = shape[a]
        begins.append(None if (st > 0 and s <= -INT64_MAX // 2) or (st > 0 and s == 0) else max(min(s, size), -size))
        if st > 0:
            stops.append(None if e >= size else e)
        else:
            stops.append(None if e < -size else e)
    c = r.folded(x)
    if c is not None:
        cut = [slice(None)] * len(shape)
        for a, s, e, st in zip(axes, begins, stops, steps, strict=True):
            cut[a] = slice(s, e, st)
        return c[tuple(cut)]
    if all(s is None and e is None and st == 1 for s, e, st in zip(begins, stops, steps, strict=True)):
        return x
    return r.b.op("slice", r.node(x, ctx), name=ctx.name, module=ctx.module,
                  attrs={"axes": tuple(axes), "starts": tuple(begins), "stops": tuple(stops), "steps": tuple(steps)})


@onnx_op("Split")
def _split(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    shape = r.shape(x)
    axis = int(ctx.attrs.get("axis", 0)) % len(shape)
    sizes = _attr_or_input(r, ins, ctx, 1, "split")
    if sizes is None:
        n = int(ctx.attrs.get("num_outputs", len(ctx.shapes)))
        each = -(-shape[axis] // n)
        sizes = [min(each, shape[axis] - s) for s in range(0, shape[axis], each)]
    out: list[Any] = []
    start = 0
    c = r.folded(x)
    for i, n in enumerate(sizes):
        stop = start + n
        if c is not None:
            out.append(np.take(c, range(start, stop), axis=axis))
        else:
            out.append(Lazy(partial(_cut, r, x, ctx, f"{ctx.name}.{i}", axis, start, stop)))
        start = stop
    return out


def _cut(r: Reader, x: Any, ctx: Ctx, name: str, axis: int, start: int, stop: int) -> Node:
    return r.b.op("slice", r.node(x, ctx), name=name, module=ctx.module,
                  attrs={"axes": (axis,), "starts": (start,), "stops": (stop,), "steps": (1,)})


@onnx_op("ReduceMean", "ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin")
def _reduce(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    takes_input = (ctx.op == "ReduceSum" and ctx.opset >= 13) or ctx.opset >= 18
    axes = _attr_or_input(r, ins, ctx, 1, "axes") if takes_input else ctx.attrs.get("axes")
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


def _zeros_bias(r: Reader, out: int, ctx: Ctx) -> Node:
    return r.b.const(np.zeros(out), ctx.module, "no_bias")


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
    bias = _zeros_bias(r, out, ctx) if len(ins) < 3 or ins[2] is None else r.node(ins[2], ctx, hint="bias")
    return r.b.op("linear", x, w, bias, name=ctx.name, module=ctx.module, attrs={"transpose_weight": trans_b})


@onnx_op("MatMul")
def _matmul(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    a, b = ins
    ca, cb = r.folded(a), r.folded(b)
    if ca is not None and cb is not None:
        return np.matmul(ca, cb)
    if isinstance(b, Transposed) and not isinstance(a, Transposed):
        return r.b.op("linear", r.node(a, ctx), b.leaf, _zeros_bias(r, b.leaf.shape[0], ctx), name=ctx.name,
                      module=ctx.module, attrs={"transpose_weight": True})
    return r.b.op("matmul", r.node(a, ctx), r.node(b, ctx), name=ctx.name, module=ctx.module)


def _pads(ctx: Ctx, kernel: tuple[int, ...]) -> Any:
    auto = str(ctx.attrs.get("auto_pad", "NOTSET"))
    if auto == "VALID":
        return 0
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        strides = list(ctx.attrs.get("strides", [1, 1]))
        dilations = list(ctx.attrs.get("dilations", [1, 1]))
        totals = [d * (k - 1) for d, k in zip(dilations, kernel, strict=False)]
        if any(s != 1 for s in strides) or any(t % 2 for t in totals):
            raise Unmapped(f"auto_pad={auto} that pads one side more than the other")
        return _pair([t // 2 for t in totals], 0)
    pads = list(ctx.attrs.get("pads", [0] * 4))
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise Unmapped(f"asymmetric padding {pads}")
    return pads[0] if pads[0] == pads[1] else (pads[0], pads[1])


def _pair(values: Any, default: int) -> Any:
    if not values:
        return default
    values = [int(v) for v in values]
    return values[0] if len(set(values)) == 1 else tuple(values)


@onnx_op("Conv")
def _conv(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x, w = r.node(ins[0], ctx), r.node(ins[1], ctx)
    if len(x.shape) != 4:
        raise Unmapped(f"a {len(x.shape) - 2}-D convolution (only 2-D is in the catalog)")
    attrs = {"stride": _pair(ctx.attrs.get("strides"), 1), "padding": _pads(ctx, w.shape[2:]),
             "dilation": _pair(ctx.attrs.get("dilations"), 1), "groups": int(ctx.attrs.get("group", 1))}
    inputs = [x, w] + ([] if len(ins) < 3 or ins[2] is None else [r.node(ins[2], ctx, hint="bias")])
    return r.b.op("conv2d", *inputs, name=ctx.name, module=ctx.module, attrs=attrs)


@onnx_op("MaxPool", "AveragePool")
def _pool(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    if len(x.shape) != 4:
        raise Unmapped("pooling that is not 2-D")
    kernel = tuple(int(k) for k in ctx.attrs["kernel_shape"])
    padding = _pads(ctx, kernel)
    attrs: dict[str, Any] = {"kernel_size": _pair(kernel, 1), "stride": _pair(ctx.attrs.get("strides"), 1),
                             "padding": padding}
    if ctx.op == "MaxPool":
        attrs["dilation"] = _pair(ctx.attrs.get("dilations"), 1)
        node = r.b.op("max_pool2d", x, name=ctx.name, module=ctx.module, attrs=attrs)
        return [node, Missing("max-pool indices")]
    if padding != 0 and not ctx.attrs.get("count_include_pad", 0):
        raise Unmapped("AveragePool with count_include_pad=0 and padding")
    return r.b.op("avg_pool2d", x, name=ctx.name, module=ctx.module, attrs=attrs)


@onnx_op("BatchNormalization")
def _batch_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    if ctx.attrs.get("training_mode", 0):
        raise Unmapped("BatchNormalization in training mode")
    x = r.node(ins[0], ctx)
    scale, bias = r.node(ins[1], ctx), r.node(ins[2], ctx)
    mean, var = r.node(ins[3], ctx, kind="constant"), r.node(ins[4], ctx, kind="constant")
    node = r.b.op("batch_norm", x, scale, bias, mean, var, name=ctx.name, module=ctx.module,
                  attrs={"training": False, "momentum": 1.0 - float(ctx.attrs.get("momentum", 0.9)),
                         "eps": float(ctx.attrs.get("epsilon", 1e-5))})
    return [node, Missing("running mean"), Missing("running variance")]


@onnx_op("LayerNormalization")
def _layer_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    axis = int(ctx.attrs.get("axis", -1)) % len(x.shape)
    norm = x.shape[axis:]
    w = r.node(ins[1], ctx)
    b = r.b.const(np.zeros(norm), ctx.module, "bias") if len(ins) < 3 or ins[2] is None else r.node(ins[2], ctx)
    if w.shape != norm or b.shape != norm:
        raise Unmapped(f"LayerNormalization with scale {w.shape} or bias {b.shape} broadcast over {norm}")
    node = r.b.op("layer_norm", x, w, b, name=ctx.name, module=ctx.module,
                  attrs={"normalized_shape": norm, "eps": float(ctx.attrs.get("epsilon", 1e-5))})
    return [node, Missing("layer-norm mean"), Missing("layer-norm inverse deviation")]


# -- recurrent layers: ONNX gate order and layout -> PyTorch's cells --------------------------------
# rows of ONNX's stacked gates, in PyTorch's order: GRU z, r, h -> r, z, n; LSTM i, o, f, c -> i, f, g, o
_GATES = {"GRU": (1, 0, 2), "LSTM": (0, 2, 3, 1), "RNN": (0,)}


def _reorder(w: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    parts = np.split(w, len(order), axis=0)
    return np.concatenate([parts[i] for i in order], axis=0)


@onnx_op("GRU", "LSTM", "RNN")
def _recurrent(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    kind = {"GRU": "gru", "LSTM": "lstm", "RNN": "rnn"}[ctx.op]
    a = ctx.attrs
    if int(a.get("layout", 0)) != 0:
        raise Unmapped("batch-first layout=1")
    if a.get("clip") is not None or a.get("activation_alpha") or a.get("input_forget", 0):
        raise Unmapped("clip, activation parameters or coupled input-forget gates")
    if kind == "gru" and not a.get("linear_before_reset", 0):
        raise Unmapped("a GRU with linear_before_reset=0 (PyTorch's GRU has 1)")
    acts = [s.decode() if isinstance(s, bytes) else str(s) for s in a.get("activations", [])]
    nonlinearity = "tanh"
    if kind == "rnn" and acts:
        nonlinearity = acts[0].lower()
        if nonlinearity not in ("tanh", "relu"):
            raise Unmapped(f"an RNN with activation {acts[0]}")
    elif acts and [s.lower() for s in acts] != (["sigmoid", "tanh"] if kind == "gru" else
                                               ["sigmoid", "tanh", "tanh"]) * (len(acts) // (2 if kind == "gru"
                                                                                              else 3)):
        raise Unmapped(f"activations {acts}")
    if len(ins) > 4 and ins[4] is not None:
        lens = r.folded(ins[4])
        if lens is None or not np.all(lens == r.shape(ins[0])[0]):
            raise Unmapped("sequences of different lengths (sequence_lens)")
    found = [r.folded(v) if not isinstance(v, Init) else v.array for v in ins[1:4] if v is not None]
    weights = [w for w in found if w is not None]
    if len(weights) < 2 or len(weights) != len(found):
        raise Unmapped("recurrent weights computed at run time")
    W, R = weights[0], weights[1]
    B = weights[2] if len(weights) > 2 and ins[3] is not None else None
    x = r.node(ins[0], ctx)
    steps, batch = x.shape[0], x.shape[1]
    dirs = W.shape[0]
    hidden = int(a.get("hidden_size") or R.shape[-1])
    order = _GATES[ctx.op]
    g = len(order)
    direction = str(a.get("direction", "forward"))
    layer = r.gru_count.get(ctx.module, 0)
    r.gru_count[ctx.module] = layer + 1
    base = ctx.module or ctx.name
    xs = [r.b.op("select", x, name=f"{base}.x{t}", module=ctx.module, attrs={"axis": 0, "index": t})
          for t in range(steps)]
    h0 = r.folded(ins[5]) if len(ins) > 5 and ins[5] is not None else np.zeros((dirs, batch, hidden))
    c0 = r.folded(ins[6]) if len(ins) > 6 and ins[6] is not None else np.zeros((dirs, batch, hidden))
    if h0 is None or c0 is None:
        raise Unmapped("an initial state computed at run time")
    per_dir: list[list[Node]] = []
    finals: list[Node] = []
    for d in range(dirs):
        suffix = f"_l{layer}" + ("_reverse" if d == 1 or direction == "reverse" else "")
        w_ih = r.b.leaf("parameter", f"{base}.weight_ih{suffix}", np.ascontiguousarray(_reorder(W[d], order)),
                        module=ctx.module)
        w_hh = r.b.leaf("parameter", f"{base}.weight_hh{suffix}", np.ascontiguousarray(_reorder(R[d], order)),
                        module=ctx.module)
        bias = np.zeros(2 * g * hidden, dtype=W.dtype) if B is None else B[d]
        b_ih = r.b.leaf("parameter", f"{base}.bias_ih{suffix}", _reorder(bias[: g * hidden], order), module=ctx.module)
        b_hh = r.b.leaf("parameter", f"{base}.bias_hh{suffix}", _reorder(bias[g * hidden:], order), module=ctx.module)
        if kind == "lstm":
            state0 = np.stack([h0[d], c0[d]])
            state0 = state0 if state0.any() else np.zeros((2, 1, hidden))
        else:
            state0 = h0[d] if h0[d].any() else np.zeros(hidden)
        state = r.b.const(state0.astype(np.float64), ctx.module, f"state0{suffix}")
        reverse = d == 1 or direction == "reverse"
        states = r.b.recurrent(kind, xs, state, (w_ih, w_hh, b_ih, b_hh), ctx.module, f"{base}{suffix}",
                               reverse=reverse, nonlinearity=nonlinearity)
        per_dir.append(states)
        finals.append(states[0] if reverse else states[-1])

    def h_of(s: Node, tag: str) -> Node:
        if kind != "lstm":
            return s
        return r.b.op("select", s, name=f"{s.name}.{tag}", module=ctx.module, attrs={"axis": 0, "index": 0})

    def y() -> Node:
        parts = []
        for t in range(steps):
            hs = [r.b.op("reshape", h_of(per_dir[d][t], "h"), name=f"{base}{'' if d == 0 else '_reverse'}.y{t}",
                         module=ctx.module, attrs={"shape": (1, 1, batch, hidden)}) for d in range(dirs)]
            parts.append(hs[0] if dirs == 1 else r.b.op("concat", *hs, name=f"{base}.y{t}", module=ctx.module,
                                                        attrs={"axis": 1}))
        return parts[0] if steps == 1 else r.b.op("concat", *parts, name=f"{ctx.name}.Y", module=ctx.module,
                                                  attrs={"axis": 0})

    def final(index: int, tag: str) -> Node:
        parts = []
        for d, s in enumerate(finals):
            v = s if kind != "lstm" else r.b.op("select", s, name=f"{s.name}.{tag}", module=ctx.module,
                                                attrs={"axis": 0, "index": index})
            parts.append(r.b.op("reshape", v, name=f"{ctx.name}.{tag}{d}", module=ctx.module,
                                attrs={"shape": (1, batch, hidden)}))
        return parts[0] if dirs == 1 else r.b.op("concat", *parts, name=f"{ctx.name}.{tag}", module=ctx.module,
                                                 attrs={"axis": 0})

    out: list[Any] = [Lazy(y), Lazy(partial(final, 0, "h_n"))]
    if kind == "lstm":
        out.append(Lazy(partial(final, 1, "c_n")))
    return out


# -- attention as one operator (opset 23), lowered like torch's --------------------------------------
@onnx_op("Attention")
def _attention(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    if len(ins) > 4 or ctx.attrs.get("softcap") or ctx.attrs.get("q_num_heads"):
        raise Unmapped("Attention with a KV cache, softcap or packed heads")
    q, k, v = (r.node(t, ctx) for t in ins[:3])
    mask = None
    if len(ins) > 3 and ins[3] is not None:
        m = r.folded(ins[3])
        mask = r.b.const(additive_mask(m), ctx.module, "attn_mask") if m is not None else r.node(ins[3], ctx)
    module = f"{ctx.module}.attention" if ctx.module else "attention"
    return r.b.attention(q, k, v, ctx.name, module, ctx.attrs.get("scale"), bool(ctx.attrs.get("is_causal", 0)),
                         mask)


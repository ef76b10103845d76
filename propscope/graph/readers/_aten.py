"""A torch.export program (its serialized JSON graph) mapped onto catalog ops.

Each ATen op has a small handler. Shape plumbing that only moves constants (zeros for an initial
state, a mask built with `ones().triu()`) is folded at load time with NumPy, so the user sees the
network. Fused layers are lowered to steppable ops: recurrent layers are unrolled into one cell per
time step, scaled dot-product attention into its products and softmax, each under its module.
An op without a handler, or whose mapping disagrees with the shape the file declares, becomes an
`unsupported` placeholder: the graph still opens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError
from ..ir import Node
from ..model import Model
from ._build import Builder, additive_mask, check_shape, finite_mask, module_of

# torch's ScalarType numbers, as torch/_export/serde/schema.py writes them
SCALAR_TYPES = {
    1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32", 8: "float64",
    12: "bool", 13: "bfloat16", 28: "uint16", 34: "uint32", 35: "uint64",
}


class Unmapped(Exception):
    """This op (or this use of it) has no catalog equivalent; the reason is shown to the user."""


@dataclass
class Lazy:
    """A value that becomes a node only when something uses it (the unused outputs of a split stay out)."""

    make: Callable[[], Any]
    done: Any = None

    def get(self) -> Any:
        if self.done is None:
            self.done = self.make()
        return self.done


@dataclass
class Stored(Lazy):
    """A buffer or constant of the program: a named leaf when an op uses it, its array when a mask is
    computed from it at load time (`~self.mask`)."""

    array: Callable[[], np.ndarray] | None = None


@dataclass
class Transposed:
    """`W.t()` of a 2-D weight: `linear(x, W, b, transpose_weight)` uses W itself, so its name stays."""

    leaf: Node
    node: Node | None = None


@dataclass
class Sequence:
    """A recurrent layer's output over time: one step is picked by `select` without building the rest."""

    steps: list[Lazy]
    time_axis: int
    full: Lazy


@dataclass
class Missing:
    """An auxiliary output (max-pool indices, batch-norm statistics) that propscope does not compute."""

    reason: str


@dataclass
class Ctx:
    name: str
    module: str
    shapes: list[tuple[int, ...] | None]
    target: str


HANDLERS: dict[str, Callable[[Translator, dict[str, Any], Ctx], Any]] = {}


def aten(*names: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return register


def op_key(target: str) -> str:
    """`torch.ops.aten.linear.default` -> `linear`; other namespaces keep theirs (`quantized.linear`)."""
    parts = target.split(".")
    if len(parts) >= 4 and parts[0] == "torch" and parts[1] == "ops":
        return parts[3] if parts[2] == "aten" else f"{parts[2]}.{parts[3]}"
    return target


def module_path(meta: Mapping[str, Any]) -> str:
    """The innermost module of `nn_module_stack` ("L__self__,,M;L__self___fc,fc,Linear" -> "fc")."""
    stack = meta.get("nn_module_stack") if isinstance(meta, Mapping) else None
    if not isinstance(stack, str) or not stack:
        return ""
    last = stack.split(";")[-1].split(",")
    return last[1] if len(last) >= 2 else ""


def sizes(spec: Any, what: str, where: str) -> tuple[int, ...]:
    """A serialized shape: plain ints, or symbolic sizes with the hint torch recorded."""
    if not isinstance(spec, list):
        raise ModelFormatError(f"{where}: {what} has no list of sizes")
    dims = []
    for d in spec:
        if isinstance(d, dict) and isinstance(d.get("as_int"), int):
            dims.append(d["as_int"])
        elif isinstance(d, dict) and isinstance(d.get("as_expr"), dict):
            hint = d["as_expr"].get("hint") or {}
            if not isinstance(hint.get("as_int"), int):
                raise ModelFormatError(f"{where}: {what} has a symbolic size without a hint")
            dims.append(hint["as_int"])
        else:
            raise ModelFormatError(f"{where}: {what} has a malformed size {d!r}")
    return check_shape(dims, what, where)


class Translator:
    def __init__(self, program: Mapping[str, Any], fetch: Callable[[str, str], np.ndarray], where: str,
                 name: str) -> None:
        try:
            gm = program["graph_module"]
            self.graph_spec = gm["graph"]
            self.signature = gm["signature"]
            self.nodes = list(self.graph_spec["nodes"])
            self.tensor_values = dict(self.graph_spec.get("tensor_values") or {})
        except (KeyError, TypeError) as exc:
            raise ModelFormatError(f"{where}: the program JSON lacks {exc} (not a torch.export program?)") from None
        self.fetch = fetch
        self.where = where
        self.b = Builder(name, where)
        self.env: dict[str, Any] = {}
        self.user_inputs: list[str] = []

    # -- values ------------------------------------------------------------------------------------
    def declared(self, name: str) -> tuple[int, ...] | None:
        meta = self.tensor_values.get(name)
        if not isinstance(meta, dict):
            return None
        return sizes(meta.get("sizes"), f"value {name!r}", self.where)

    def node(self, value: Any, ctx: Ctx, hint: str = "const") -> Node:
        """Any value as a graph node: constants become constant leaves, lazy values are built now."""
        if isinstance(value, Node):
            return value
        if isinstance(value, Lazy):
            return self.node(value.get(), ctx, hint)
        if isinstance(value, Transposed):
            if value.node is None:
                value.node = self.b.op("transpose", value.leaf, name=f"{value.leaf.name}.T",
                                       module=value.leaf.module, attrs={"axes": (1, 0)})
            return value.node
        if isinstance(value, Sequence):
            return self.node(value.full.get(), ctx, hint)
        if isinstance(value, Missing):
            raise Unmapped(value.reason)
        if isinstance(value, np.ndarray | int | float | bool | np.generic):
            return self.b.const(np.asarray(value, dtype=np.float64 if isinstance(value, bool | int | float)
                                           else None), ctx.module, hint, name=f"{ctx.name}.{hint}")
        raise Unmapped(f"cannot use a {type(value).__name__} as a tensor")

    @staticmethod
    def const(value: Any) -> bool:
        return isinstance(value, np.ndarray | int | float | np.generic) and not isinstance(value, bool)

    @staticmethod
    def known(value: Any) -> np.ndarray | None:
        """The value as an array when it is fixed at load time (constants, buffers), else None."""
        if isinstance(value, Stored) and value.array is not None:
            return value.array()
        if isinstance(value, np.ndarray | int | float | bool | np.generic):
            return np.asarray(value)
        return None

    def shape(self, value: Any) -> tuple[int, ...]:
        if isinstance(value, Node):
            return value.shape
        if isinstance(value, Transposed):
            return value.leaf.shape[::-1]
        if isinstance(value, np.ndarray):
            return value.shape
        if isinstance(value, Lazy):
            return self.shape(value.get())
        if isinstance(value, Sequence):
            return self.shape(value.full.get())
        if isinstance(value, int | float):
            return ()
        raise Unmapped(f"no shape for a {type(value).__name__}")

    def _arg(self, arg: Any) -> Any:
        if not isinstance(arg, dict) or len(arg) != 1:
            raise ModelFormatError(f"{self.where}: malformed argument {str(arg)[:80]}")
        ((kind, v),) = arg.items()
        if kind == "as_none":
            return None
        if kind == "as_tensor":
            return self._ref(v)
        if kind == "as_tensors":
            return [self._ref(t) for t in v]
        if kind == "as_optional_tensor":
            return None if "as_none" in v else self._ref(v.get("as_tensor"))
        if kind == "as_optional_tensors":
            return [None if "as_none" in t else self._ref(t.get("as_tensor")) for t in v]
        if kind == "as_float":
            return float(v)
        if kind == "as_floats":
            return [float(f) for f in v]
        if kind == "as_sym_int":
            if isinstance(v, dict) and isinstance(v.get("as_int"), int):
                return v["as_int"]
            return Missing("a size computed at run time (dynamic shapes)")
        if kind == "as_sym_ints":
            return [self._arg({"as_sym_int": s}) for s in v]
        if kind in ("as_int", "as_ints", "as_bool", "as_bools", "as_string", "as_strings", "as_scalar_type",
                    "as_device", "as_layout", "as_memory_format", "as_int_lists"):
            return v
        return Missing(f"an argument of kind {kind}")

    def _ref(self, t: Any) -> Any:
        name = t.get("name") if isinstance(t, dict) else None
        if name not in self.env:
            raise ModelFormatError(f"{self.where}: the program uses value {name!r} before defining it")
        return self.env[name]

    # -- the program -------------------------------------------------------------------------------
    def _placeholders(self) -> None:
        for spec in self.signature.get("input_specs", []):
            ((kind, body),) = spec.items()
            arg = body.get("arg", {})
            name = arg.get("name") or arg.get("as_tensor", {}).get("name")
            if name is None:
                continue
            if kind == "user_input":
                if "as_tensor" not in arg:
                    self.env[name] = Missing("a non-tensor input")
                    continue
                shape = self.declared(name)
                if shape is None:
                    raise ModelFormatError(f"{self.where}: input {name!r} has no declared shape")
                dtype = SCALAR_TYPES.get(self.tensor_values[name].get("dtype"), "float32")
                self.env[name] = self.b.input(name, shape, dtype=dtype)
                self.user_inputs.append(name)
            elif kind in ("parameter", "buffer", "tensor_constant"):
                fqn = body.get(f"{kind}_name")
                if not isinstance(fqn, str):
                    raise ModelFormatError(f"{self.where}: a {kind} input has no name")
                maker = self._leaf_maker(kind, fqn, name)
                if kind == "parameter":
                    self.env[name] = Lazy(maker)
                else:
                    self.env[name] = Stored(maker, array=partial(self.fetch, kind, fqn))
            else:
                self.env[name] = Missing(f"a {kind} input")

    def _leaf_maker(self, kind: str, fqn: str, placeholder: str) -> Callable[[], Node]:
        def make() -> Node:
            value = self.fetch(kind, fqn)
            declared = self.declared(placeholder)
            if declared is not None and tuple(value.shape) != declared:
                raise ModelFormatError(f"{self.where}: {kind} {fqn!r} holds shape {value.shape}, "
                                       f"the program declares {declared}")
            leaf = "parameter" if kind == "parameter" else "constant"
            if leaf == "parameter" and value.dtype.kind not in "f":
                leaf = "constant"
            return self.b.leaf(leaf, fqn, value, module=module_of(fqn))

        return make

    def translate(self, batch: Mapping[str, np.ndarray] | None, description: str) -> Model:
        self._placeholders()
        for spec in self.nodes:
            self._node(spec)
        outputs = []
        for spec in self.signature.get("output_specs", []):
            ((kind, body),) = spec.items()
            if kind != "user_output":
                continue
            arg = body.get("arg", {})
            if "as_tensor" not in arg:
                continue
            value = self._ref(arg["as_tensor"])
            ctx = Ctx(arg["as_tensor"]["name"], "", [None], "output")
            try:
                outputs.append(self.node(value, ctx, "output"))
            except Unmapped as exc:
                raise ModelFormatError(f"{self.where}: the model's output cannot be built ({exc})") from None
        return self.b.model(outputs, batch, description)

    def _node(self, spec: Mapping[str, Any]) -> None:
        target = str(spec.get("target", "?"))
        out_names: list[str | None] = []
        for out in spec.get("outputs", []):
            if "as_tensor" in out:
                out_names.append(out["as_tensor"]["name"])
            elif "as_tensors" in out:
                out_names.extend(t["name"] for t in out["as_tensors"])
            elif "as_sym_int" in out and isinstance(out["as_sym_int"], dict):
                out_names.append(out["as_sym_int"].get("as_name"))
            else:
                out_names.append(None)
        shapes = [self.declared(n) if n else None for n in out_names]
        name = next((n for n in out_names if n), str(spec.get("name", "node")))
        module = module_path(spec.get("metadata") or {})
        ctx = Ctx(name, module, shapes, target)
        key = op_key(target)
        args: dict[str, Any] = {}
        for i, item in enumerate(spec.get("inputs", [])):
            if not isinstance(item, dict) or "arg" not in item:
                raise ModelFormatError(f"{self.where}: node {name!r} has a malformed input")
            args[str(item.get("name", i))] = self._arg(item["arg"])
        mark = len(self.b.graph)
        try:
            handler = HANDLERS.get(key)
            if handler is None:
                raise Unmapped("")
            result = handler(self, args, ctx)
            results = list(result) if isinstance(result, list | tuple) else [result]
            results = [np.asarray(v) if isinstance(v, np.generic) else v for v in results]
            for value, declared in zip(results, shapes, strict=False):
                if isinstance(value, Node) and declared is not None and value.shape != declared:
                    raise Unmapped(f"mapped to shape {value.shape}, the file declares {declared}")
        except (Unmapped, GraphError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
            if len(self.b.graph) != mark:
                self.b.warnings.append(f"{target} at {name!r}: partial mapping dropped ({exc})")
            results = self._placeholder(key, args, ctx, str(exc) if isinstance(exc, Unmapped) else
                                        f"{type(exc).__name__}: {exc}")
        for out, value in zip(out_names, results, strict=False):
            if out:
                self.env[out] = value

    def _placeholder(self, key: str, args: Mapping[str, Any], ctx: Ctx, reason: str) -> list[Any]:
        inputs: list[Node] = []
        for value in args.values():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, Node | Lazy | Transposed | Sequence):
                    try:
                        node = self.node(v, ctx)
                    except Unmapped:
                        continue
                    if node not in inputs:
                        inputs.append(node)
        results: list[Any] = []
        for i, shape in enumerate(ctx.shapes):
            if shape is None:
                results.append(Missing(f"an output of unsupported op aten.{key}"))
                continue
            name = ctx.name if i == 0 else f"{ctx.name}.out{i}"
            results.append(self.b.unsupported(f"aten.{key}", inputs, shape, name, ctx.module, reason))
        return results


# -- handlers ----------------------------------------------------------------------------------------
def _x(a: Mapping[str, Any]) -> Any:
    return a["self"] if "self" in a else a["input"]


def _axis(dim: Any) -> Any:
    if dim is None or dim == []:
        return None
    return int(dim) if isinstance(dim, int) else tuple(int(d) for d in dim)


_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda a: np.maximum(a, 0.0), "tanh": np.tanh, "exp": np.exp, "log": np.log, "neg": np.negative,
}


@aten("relu", "sigmoid", "tanh", "exp", "log", "neg", "silu", "gelu", "leaky_relu")
def _unary(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x = _x(a)
    attrs: dict[str, Any] = {}
    if op == "gelu":
        attrs["approximate"] = a.get("approximate", "none")
    elif op == "leaky_relu":
        attrs["negative_slope"] = float(a.get("negative_slope", 0.01))
    if t.const(x) and op in _UNARY:
        return _UNARY[op](np.asarray(x, dtype=np.float64))
    return t.b.op(op, t.node(x, ctx), name=ctx.name, module=ctx.module, attrs=attrs)


@aten("sqrt", "rsqrt", "reciprocal", "square")
def _power(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    p = {"sqrt": 0.5, "rsqrt": -0.5, "reciprocal": -1.0, "square": 2.0}[op_key(ctx.target)]
    x = _x(a)
    if t.const(x):
        return np.asarray(x, dtype=np.float64) ** p
    return t.b.op("pow", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"exponent": p})


@aten("pow")
def _pow(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, p = _x(a), a.get("exponent")
    if t.const(x) and t.const(p):
        return np.asarray(x, dtype=np.float64) ** np.asarray(p)
    if not isinstance(p, int | float):
        raise Unmapped("a tensor exponent")
    return t.b.op("pow", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"exponent": float(p)})


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}


@aten("add", "sub", "mul", "div", "rsub")
def _binary(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x, y = _x(a), a["other"]
    if a.get("rounding_mode") is not None:
        raise Unmapped(f"div with rounding_mode={a['rounding_mode']!r}")
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
    if t.const(x) and t.const(y):
        return _BINARY[op](np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    if op == "add":
        x, y = finite_mask(x), finite_mask(y)
    return t.b.op(op, t.node(x, ctx, "self"), t.node(y, ctx, "other"), name=ctx.name, module=ctx.module)


@aten("mean", "sum")
def _reduce(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x = _x(a)
    axis, keep = _axis(a.get("dim")), bool(a.get("keepdim", False))
    if t.const(x):
        return getattr(np, op)(np.asarray(x), axis=axis, keepdims=keep)
    return t.b.op(op, t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axis": axis, "keepdims": keep})


def _zeros_bias(t: Translator, weight: Node, ctx: Ctx) -> Node:
    return t.b.const(np.zeros(weight.shape[0]), weight.module or ctx.module, "no_bias")


@aten("linear")
def _linear(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    w = t.node(a["weight"], ctx, "weight")
    if len(w.shape) != 2:
        raise Unmapped("a linear weight that is not 2-D")
    b = _zeros_bias(t, w, ctx) if a.get("bias") is None else t.node(a["bias"], ctx, "bias")
    return t.b.op("linear", t.node(_x(a), ctx), w, b, name=ctx.name, module=ctx.module,
                  attrs={"transpose_weight": True})


@aten("addmm")
def _addmm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if a.get("beta", 1) != 1 or a.get("alpha", 1) != 1:
        raise Unmapped("addmm with beta or alpha other than 1")
    m1, m2 = a["mat1"], a["mat2"]
    bias = t.node(_x(a), ctx, "bias")
    if isinstance(m2, Transposed):
        return t.b.op("linear", t.node(m1, ctx), m2.leaf, bias, name=ctx.name, module=ctx.module,
                      attrs={"transpose_weight": True})
    return t.b.op("linear", t.node(m1, ctx), t.node(m2, ctx), bias, name=ctx.name, module=ctx.module)


@aten("mm", "bmm", "matmul")
def _matmul(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, y = _x(a), a.get("mat2", a.get("other"))
    if t.const(x) and t.const(y):
        return np.matmul(np.asarray(x), np.asarray(y))
    if isinstance(y, Transposed) and not isinstance(x, Transposed):
        return t.b.op("linear", t.node(x, ctx), y.leaf, _zeros_bias(t, y.leaf, ctx), name=ctx.name,
                      module=ctx.module, attrs={"transpose_weight": True})
    return t.b.op("matmul", t.node(x, ctx), t.node(y, ctx), name=ctx.name, module=ctx.module)


@aten("t", "permute", "transpose", "numpy_T", "permute_copy", "transpose_copy", "t_copy")
def _permute(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target).removesuffix("_copy")
    x = _x(a)
    ndim = len(t.shape(x))
    if op == "permute":
        perm = tuple(int(d) % ndim for d in a["dims"])
    elif op == "transpose":
        perm_list = list(range(ndim))
        d0, d1 = int(a["dim0"]) % ndim, int(a["dim1"]) % ndim
        perm_list[d0], perm_list[d1] = perm_list[d1], perm_list[d0]
        perm = tuple(perm_list)
    else:
        perm = tuple(reversed(range(ndim)))
    if perm == tuple(range(ndim)):
        return x
    if t.const(x):
        return np.transpose(np.asarray(x), perm)
    if isinstance(x, Transposed) and perm == (1, 0):
        return x.leaf
    if isinstance(x, Lazy):
        x = x.get()
    if isinstance(x, Node) and x.is_leaf and ndim == 2:
        return Transposed(x)
    return t.b.op("transpose", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axes": perm})


def _reshape_to(t: Translator, x: Any, ctx: Ctx) -> Any:
    out = ctx.shapes[0]
    if out is None:
        raise Unmapped("no declared output shape")
    if t.const(x):
        return np.reshape(np.asarray(x), out)
    node = t.node(x, ctx)
    if node.shape == out:
        return node
    target: tuple[int, ...] = out
    # keep the batch axis free when it passes through unchanged, so a batch of another size still fits
    if out and node.shape and out[0] == node.shape[0] and math.prod(out[1:]) > 0:
        target = (-1, *out[1:])
    return t.b.op("reshape", node, name=ctx.name, module=ctx.module, attrs={"shape": target})


@aten("view", "_unsafe_view", "reshape", "view_copy", "unflatten", "squeeze", "unsqueeze", "_reshape_alias",
      "squeeze_copy", "unsqueeze_copy", "flatten")
def _reshape(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = _x(a)
    if op_key(ctx.target) == "flatten" and not t.const(x):
        node = t.node(x, ctx)
        start, end = int(a.get("start_dim", 0)), int(a.get("end_dim", -1))
        if len(node.shape) >= 1 and not (start == 0 and end in (-1, len(node.shape) - 1) and len(node.shape) > 1):
            return t.b.op("flatten", node, name=ctx.name, module=ctx.module,
                          attrs={"start_dim": start, "end_dim": end})
    return _reshape_to(t, x, ctx)


@aten("expand", "expand_copy", "broadcast_to", "expand_as")
def _expand(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, out = _x(a), ctx.shapes[0]
    if out is None:
        raise Unmapped("no declared output shape")
    if t.const(x):
        return np.broadcast_to(np.asarray(x), out).copy()
    node = t.node(x, ctx)
    if math.prod(node.shape) == math.prod(out):
        return _reshape_to(t, node, ctx)
    zeros = t.b.const(np.zeros(out), ctx.module, "expand")
    return t.b.op("add", node, zeros, name=ctx.name, module=ctx.module, original_op="expand")


@aten("clone", "contiguous", "alias", "detach", "lift_fresh_copy", "_to_copy", "to", "type_as", "alias_copy",
      "detach_copy", "_assert_tensor_metadata")
def _same(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return _x(a) if ("self" in a or "input" in a) else a.get("a")


@aten("dropout", "native_dropout", "feature_dropout")
def _dropout(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = _x(a)
    train, p = a.get("train", True), float(a.get("p", 0.5))
    if op_key(ctx.target) == "native_dropout":
        if not train or p == 0:
            return [x, Missing("dropout's mask")]
        raise Unmapped("native_dropout in training mode")
    if not train or p == 0:
        return x
    return t.b.op("dropout", t.node(x, ctx), name=ctx.name, module=ctx.module,
                  attrs={"p": p, "training": True, "seed": 0})


@aten("softmax", "_softmax", "log_softmax", "_log_softmax")
def _softmax(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target).lstrip("_")
    return t.b.op(op, t.node(_x(a), ctx), name=ctx.name, module=ctx.module, attrs={"axis": int(a["dim"])})


def _pair(v: Any, default: int) -> Any:
    if v is None or v == []:
        return default
    if isinstance(v, int):
        return v
    v = [int(i) for i in v]
    return v[0] if len(v) == 1 else tuple(v)


@aten("conv2d", "convolution", "_convolution")
def _conv(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if a.get("transposed", False):
        raise Unmapped("transposed convolution")
    x, w = t.node(_x(a), ctx), t.node(a["weight"], ctx, "weight")
    if len(x.shape) != 4:
        raise Unmapped(f"a {len(x.shape) - 2}-D convolution (only 2-D is in the catalog)")
    padding = a.get("padding", 0)
    if isinstance(padding, str):
        dil = _pair(a.get("dilation"), 1)
        dh, dw = (dil, dil) if isinstance(dil, int) else dil
        if padding == "valid":
            padding = 0
        elif all((d * (k - 1)) % 2 == 0 for d, k in ((dh, w.shape[2]), (dw, w.shape[3]))):
            padding = (dh * (w.shape[2] - 1) // 2, dw * (w.shape[3] - 1) // 2)
        else:
            raise Unmapped("padding='same' that pads one side more than the other")
    attrs = {"stride": _pair(a.get("stride"), 1), "padding": _pair(padding, 0), "dilation": _pair(a.get("dilation"), 1),
             "groups": int(a.get("groups", 1))}
    inputs = [x, w] + ([] if a.get("bias") is None else [t.node(a["bias"], ctx, "bias")])
    return t.b.op("conv2d", *inputs, name=ctx.name, module=ctx.module, attrs=attrs)


@aten("max_pool2d", "max_pool2d_with_indices")
def _max_pool(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    attrs = {"kernel_size": _pair(a["kernel_size"], 1), "stride": _pair(a.get("stride"), 0) or None,
             "padding": _pair(a.get("padding"), 0), "dilation": _pair(a.get("dilation"), 1)}
    node = t.b.op("max_pool2d", t.node(_x(a), ctx), name=ctx.name, module=ctx.module, attrs=attrs)
    return [node, Missing("max-pool indices")] if op_key(ctx.target).endswith("indices") else node


@aten("avg_pool2d")
def _avg_pool(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    padding = _pair(a.get("padding"), 0)
    if a.get("divisor_override") is not None:
        raise Unmapped("avg_pool2d with divisor_override")
    if not a.get("count_include_pad", True) and padding != 0:
        raise Unmapped("avg_pool2d with count_include_pad=False")
    attrs = {"kernel_size": _pair(a["kernel_size"], 1), "stride": _pair(a.get("stride"), 0) or None,
             "padding": padding}
    return t.b.op("avg_pool2d", t.node(_x(a), ctx), name=ctx.name, module=ctx.module, attrs=attrs)


@aten("adaptive_avg_pool2d", "_adaptive_avg_pool2d")
def _adaptive_pool(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = t.node(_x(a), ctx)
    size = _pair(a["output_size"], 1)
    oh, ow = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if (oh, ow) == (1, 1):
        return t.b.op("mean", x, name=ctx.name, module=ctx.module, attrs={"axis": (2, 3), "keepdims": True})
    if h % oh or w % ow:
        raise Unmapped("adaptive pooling whose windows differ in size")
    kernel = (h // oh, w // ow)
    return t.b.op("avg_pool2d", x, name=ctx.name, module=ctx.module,
                  attrs={"kernel_size": kernel, "stride": kernel, "padding": 0})


def _bn(t: Translator, a: dict[str, Any], ctx: Ctx, training: bool) -> Node:
    x = t.node(_x(a), ctx)
    channels = x.shape[1]
    module = ctx.module

    def part(key: str, fill: float, hint: str) -> Node:
        v = a.get(key)
        return t.b.const(np.full(channels, fill), module, hint) if v is None else t.node(v, ctx, hint)

    if not training and (a.get("running_mean") is None or a.get("running_var") is None):
        raise Unmapped("evaluation-mode batch norm without running statistics")
    inputs = (x, part("weight", 1.0, "weight"), part("bias", 0.0, "bias"), part("running_mean", 0.0, "running_mean"),
              part("running_var", 1.0, "running_var"))
    attrs = {"training": training, "momentum": float(a.get("momentum") or 0.1), "eps": float(a.get("eps", 1e-5))}
    return t.b.op("batch_norm", *inputs, name=ctx.name, module=module, attrs=attrs)


@aten("batch_norm")
def _batch_norm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return _bn(t, a, ctx, bool(a.get("training", False)))


@aten("_native_batch_norm_legit_no_training")
def _bn_eval(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return [_bn(t, a, ctx, False), Missing("batch-norm statistics"), Missing("batch-norm statistics")]


@aten("_native_batch_norm_legit_functional", "native_batch_norm", "_native_batch_norm_legit")
def _bn_train(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    out = _bn(t, a, ctx, bool(a.get("training", True)))
    return [out] + [Missing("batch-norm statistics")] * (len(ctx.shapes) - 1)


@aten("layer_norm", "native_layer_norm")
def _layer_norm(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = t.node(_x(a), ctx)
    norm = tuple(int(d) for d in a["normalized_shape"])
    w = t.b.const(np.ones(norm), ctx.module, "weight") if a.get("weight") is None else t.node(a["weight"], ctx)
    b = t.b.const(np.zeros(norm), ctx.module, "bias") if a.get("bias") is None else t.node(a["bias"], ctx)
    node = t.b.op("layer_norm", x, w, b, name=ctx.name, module=ctx.module,
                  attrs={"normalized_shape": norm, "eps": float(a.get("eps", 1e-5))})
    if op_key(ctx.target) == "native_layer_norm":
        return [node, Missing("layer-norm mean"), Missing("layer-norm rstd")]
    return node


@aten("embedding")
def _embedding(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if int(a.get("padding_idx", -1)) >= 0:
        t.b.warnings.append(f"embedding {ctx.name!r}: padding_idx is ignored, so its row gets a gradient here")
    if a.get("scale_grad_by_freq"):
        raise Unmapped("embedding with scale_grad_by_freq")
    return t.b.op("embedding", t.node(a["indices"], ctx, "ids"), t.node(a["weight"], ctx, "weight"),
                  name=ctx.name, module=ctx.module)


@aten("cat", "concat", "concatenate")
def _cat(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    items = [v for v in a["tensors"] if not (isinstance(v, np.ndarray) and v.size == 0 and v.ndim == 1)]
    dim = int(a.get("dim", 0))
    if all(t.const(v) for v in items):
        return np.concatenate([np.asarray(v) for v in items], axis=dim)
    if len(items) == 1:
        return items[0]
    nodes = [t.node(v, ctx, "part") for v in items]
    return t.b.op("concat", *nodes, name=ctx.name, module=ctx.module, attrs={"axis": dim})


@aten("stack")
def _stack(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    items, dim = a["tensors"], int(a.get("dim", 0))
    if all(t.const(v) for v in items):
        return np.stack([np.asarray(v) for v in items], axis=dim)
    nodes = [t.node(v, ctx, "part") for v in items]
    shape = nodes[0].shape
    dim %= len(shape) + 1
    one = (*shape[:dim], 1, *shape[dim:])
    parts = [t.b.op("reshape", n, name=f"{ctx.name}.in{i}", module=ctx.module, attrs={"shape": one})
             for i, n in enumerate(nodes)]
    return t.b.op("concat", *parts, name=ctx.name, module=ctx.module, attrs={"axis": dim})


def _slice_bounds(size: int, start: Any, end: Any, step: int) -> tuple[int | None, int | None]:
    start = None if start is None or start == 0 else int(start)
    end = None if end is None or int(end) >= size else int(end)
    return start, end


@aten("slice", "slice_copy")
def _slice(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = _x(a)
    shape = t.shape(x)
    dim = int(a.get("dim", 0)) % len(shape)
    step = int(a.get("step", 1))
    start, end = _slice_bounds(shape[dim], a.get("start"), a.get("end"), step)
    if start is None and end is None and step == 1:
        return x
    if t.const(x):
        cut = [slice(None)] * len(shape)
        cut[dim] = slice(start, end, step)
        return np.asarray(x)[tuple(cut)]
    return t.b.op("slice", t.node(x, ctx), name=ctx.name, module=ctx.module,
                  attrs={"axes": (dim,), "starts": (start,), "stops": (end,), "steps": (step,)})


@aten("select", "select_copy")
def _select(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = _x(a)
    dim, index = int(a["dim"]), int(a["index"])
    if isinstance(x, Sequence):
        ndim = 3
        if dim % ndim == x.time_axis:
            return x.steps[index].get()
    if t.const(x):
        return np.take(np.asarray(x), index, axis=dim)
    return t.b.op("select", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axis": dim, "index": index})


@aten("index_select")
def _index_select(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, idx, dim = _x(a), a["index"], int(a["dim"])
    if t.const(x) and t.const(idx):
        return np.take(np.asarray(x), np.asarray(idx), axis=dim)
    return t.b.op("index", t.node(x, ctx), t.node(idx, ctx, "index"), name=ctx.name, module=ctx.module,
                  attrs={"axis": dim})


@aten("index")
def _index(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    indices = a["indices"]
    used = [(i, v) for i, v in enumerate(indices) if v is not None]
    if len(used) != 1:
        raise Unmapped("indexing with several index tensors")
    axis, idx = used[0]
    x = _x(a)
    if t.const(x) and t.const(idx):
        return np.take(np.asarray(x), np.asarray(idx), axis=axis)
    return t.b.op("index", t.node(x, ctx), t.node(idx, ctx, "index"), name=ctx.name, module=ctx.module,
                  attrs={"axis": axis})


@aten("split", "split_with_sizes", "unsafe_split", "chunk", "unbind", "split_copy", "split_with_sizes_copy")
def _split(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target).removesuffix("_copy")
    x = _x(a)
    shape = t.shape(x)
    dim = int(a.get("dim", 0)) % len(shape)
    size = shape[dim]
    if op == "unbind":
        return [_piece(t, x, ctx, dim, i, None, i) for i in range(size)]
    if op == "chunk":
        each = -(-size // int(a["chunks"]))
        lengths = [min(each, size - s) for s in range(0, size, each)]
    elif isinstance(a.get("split_sizes"), list):
        lengths = [int(v) for v in a["split_sizes"]]
    else:
        each = int(a["split_size"])
        lengths = [min(each, size - s) for s in range(0, size, each)]
    out, start = [], 0
    for i, n in enumerate(lengths):
        out.append(_piece(t, x, ctx, dim, start, start + n, i))
        start += n
    return out


def _piece(t: Translator, x: Any, ctx: Ctx, dim: int, start: int, stop: int | None, i: int) -> Any:
    if t.const(x):
        arr = np.asarray(x)
        return np.take(arr, start, axis=dim) if stop is None else np.take(arr, range(start, stop), axis=dim)

    def make() -> Node:
        node = t.node(x, ctx)
        name = f"{ctx.name}.{i}"
        if stop is None:
            return t.b.op("select", node, name=name, module=ctx.module, attrs={"axis": dim, "index": start})
        return t.b.op("slice", node, name=name, module=ctx.module,
                      attrs={"axes": (dim,), "starts": (start,), "stops": (stop,), "steps": (1,)})

    return Lazy(make)


def _dtype(a: Mapping[str, Any], like: Any = None) -> Any:
    code = a.get("dtype")
    if isinstance(code, int) and code in SCALAR_TYPES and SCALAR_TYPES[code] != "bfloat16":
        return np.dtype(SCALAR_TYPES[code])
    if isinstance(like, np.ndarray):
        return like.dtype
    return np.float64


@aten("zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like", "empty_like", "new_zeros",
      "new_ones", "new_full", "new_empty", "scalar_tensor", "arange", "fill", "empty_strided")
def _create(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    if op == "scalar_tensor":
        return np.asarray(a["s"], dtype=_dtype(a))
    if op == "arange":
        start, end, step = a.get("start", 0), a.get("end"), a.get("step", 1)
        return np.arange(start, end, step, dtype=_dtype(a))
    shape = ctx.shapes[0]
    if shape is None:
        raise Unmapped("no declared output shape")
    fill = {"zeros": 0.0, "ones": 1.0, "empty": 0.0}.get(op.split("_")[-1] if "_" in op else op)
    if fill is None:
        fill = a.get("fill_value", a.get("value", 0.0))
    like = _x(a) if ("self" in a or "input" in a) else None
    return np.full(shape, fill, dtype=_dtype(a, like))


@aten("triu", "tril")
def _tri(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = t.known(_x(a))
    if x is None:
        raise Unmapped("triu/tril of a computed tensor")
    fn = np.triu if op_key(ctx.target) == "triu" else np.tril
    return fn(x, int(a.get("diagonal", 0)))


_LOGIC = {"logical_not": np.logical_not, "eq": np.equal, "ne": np.not_equal, "lt": np.less, "gt": np.greater,
          "le": np.less_equal, "ge": np.greater_equal, "bitwise_not": np.logical_not}


@dataclass
class Guard:
    """A test for rows that are entirely −∞ (the "safe softmax" of decomposed attention): always false here,
    because propscope's masks are finite, so `where(guard, 0, y)` is `y`."""


@aten(*_LOGIC, "any", "all")
def _logic(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x, y = _x(a), a.get("other")
    if isinstance(x, Guard) or (op == "eq" and isinstance(y, float) and y == -math.inf and not t.const(x)):
        return Guard()
    kx, ky = t.known(x), t.known(y)
    if op in ("any", "all"):
        if kx is None:
            raise Unmapped(f"{op} of computed values")
        fn = np.any if op == "any" else np.all
        return fn(kx, axis=_axis(a.get("dim")), keepdims=bool(a.get("keepdim", False)))
    if kx is None or (y is not None and ky is None):
        raise Unmapped("a comparison of computed values (no gradient flows through it)")
    logic = _LOGIC[op_key(ctx.target)]
    return logic(kx) if ky is None else logic(kx, ky)


@aten("where")
def _where(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    cond, x, y = a["condition"], _x(a), a["other"]
    if isinstance(cond, Guard):
        return y
    known = t.known(cond)
    if known is None:
        raise Unmapped("where on a computed condition")
    if t.const(x) and t.const(y):
        return np.where(known.astype(bool), x, y)
    return _blend(t, ctx, x, y, known.astype(bool))


@aten("masked_fill")
def _masked_fill(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, value = _x(a), a["value"]
    mask = t.known(a["mask"])
    if mask is None:
        raise Unmapped("masked_fill with a computed mask")
    if t.const(x):
        return np.where(mask.astype(bool), value, x)
    return _blend(t, ctx, value, x, mask.astype(bool))


def _blend(t: Translator, ctx: Ctx, where_true: Any, where_false: Any, keep: np.ndarray) -> Node:
    """where(keep, a, b) with a constant condition as steppable arithmetic: a·m + b·(1 − m)."""
    m = keep.astype(np.float64)
    # −∞ fills are attention masks: the finite fill gives softmax the same zeros and keeps values finite
    where_true, where_false = (finite_mask(np.asarray(v, dtype=np.float64)) if t.const(v) else v
                               for v in (where_true, where_false))
    if t.const(where_true) and np.all(np.isfinite(np.asarray(where_true, dtype=np.float64))):
        node = t.node(where_false, ctx)
        fill = t.b.const(np.asarray(where_true, dtype=np.float64) * m, ctx.module, "fill")
        kept = t.b.op("mul", node, t.b.const(1.0 - m, ctx.module, "mask"), name=f"{ctx.name}.keep", module=ctx.module)
        return t.b.op("add", kept, fill, name=ctx.name, module=ctx.module)
    if t.const(where_false) and np.all(np.isfinite(np.asarray(where_false, dtype=np.float64))):
        return _blend(t, ctx, where_false, where_true, ~keep)
    if t.const(where_true) or t.const(where_false):
        raise Unmapped("a fill with an infinite value (add a finite mask instead)")
    a_node, b_node = t.node(where_true, ctx), t.node(where_false, ctx)
    pa = t.b.op("mul", a_node, t.b.const(m, ctx.module, "mask"), name=f"{ctx.name}.a", module=ctx.module)
    pb = t.b.op("mul", b_node, t.b.const(1.0 - m, ctx.module, "mask"), name=f"{ctx.name}.b", module=ctx.module)
    return t.b.op("add", pa, pb, name=ctx.name, module=ctx.module)


# -- fused layers --------------------------------------------------------------------------------------
@aten("gru", "lstm", "rnn_tanh", "rnn_relu")
def _recurrent(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    kind = {"gru": "gru", "lstm": "lstm", "rnn_tanh": "rnn", "rnn_relu": "rnn"}[op]
    if not ctx.target.endswith(".input"):
        raise Unmapped("a packed sequence")
    x = t.node(_x(a), ctx)
    if len(x.shape) != 3:
        raise Unmapped(f"a recurrent input of shape {x.shape}")
    layers, bidir = int(a["num_layers"]), bool(a["bidirectional"])
    batch_first, has_bias = bool(a["batch_first"]), bool(a["has_biases"])
    if a.get("train") and float(a.get("dropout", 0.0)) > 0 and layers > 1:
        t.b.warnings.append(f"{kind} {ctx.name!r}: dropout between layers is left out")
    params = list(a["params"])
    per = 4 if has_bias else 2
    dirs = 2 if bidir else 1
    if len(params) != per * layers * dirs:
        raise Unmapped("recurrent weights with projections (proj_size) or an unexpected layout")
    time_axis = 1 if batch_first else 0
    steps = x.shape[time_axis]
    module = ctx.module
    hidden = t.shape(params[1])[1]
    h0 = a["hx"][0] if kind == "lstm" else a["hx"]
    c0 = a["hx"][1] if kind == "lstm" else None
    base = module or ctx.name
    xs: list[Any] = [Lazy(partial(_pick, t, x, f"{base}.x{i}", module, time_axis, i)) for i in range(steps)]
    finals: list[tuple[Node, Node | None]] = []
    outs: list[Lazy] = []
    for layer in range(layers):
        layer_outs: list[list[Lazy]] = []
        for d in range(dirs):
            k = layer * dirs + d
            w = params[k * per: (k + 1) * per]
            w_ih, w_hh = t.node(w[0], ctx), t.node(w[1], ctx)
            if has_bias:
                b_ih, b_hh = t.node(w[2], ctx), t.node(w[3], ctx)
            else:
                b_ih = t.b.const(np.zeros(w_ih.shape[0]), module, "no_bias")
                b_hh = b_ih
            state = _initial_state(t, ctx, kind, h0, c0, k, hidden)
            suffix = ("" if layers == 1 else f".l{layer}") + ("_reverse" if d else "")
            inputs = [t.node(v, ctx) for v in xs]
            states = t.b.recurrent(kind, inputs, state, (w_ih, w_hh, b_ih, b_hh), module,
                                   f"{base}{suffix}", reverse=bool(d),
                                   nonlinearity="relu" if op == "rnn_relu" else "tanh")
            if kind == "lstm":  # h is the first half of the stacked state
                hs = [Lazy(partial(_pick, t, s, f"{base}{suffix}.h{i}", module, 0, 0)) for i, s in enumerate(states)]
            else:
                hs = [Lazy(partial(_same_node, s)) for s in states]
            last = states[0] if d else states[-1]
            finals.append((last, None))
            layer_outs.append(hs)
        if dirs == 1:
            outs = layer_outs[0]
        else:
            outs = [Lazy(partial(_join, t, ctx, f, r, f"{base}.l{layer}.h{i}"))
                    for i, (f, r) in enumerate(zip(layer_outs[0], layer_outs[1], strict=True))]
        xs = list(outs)

    def full() -> Node:
        batch = x.shape[1 - time_axis]
        width = hidden * dirs
        one = (batch, 1, width) if batch_first else (1, batch, width)
        parts = [t.b.op("reshape", t.node(h, ctx), name=f"{base}.out{i}", module=module, attrs={"shape": one})
                 for i, h in enumerate(outs)]
        return t.b.op("concat", *parts, name=ctx.name, module=module, attrs={"axis": time_axis})

    def stacked(index: int) -> Node:
        parts = []
        for k, (s, _) in enumerate(finals):
            h = s if kind != "lstm" else t.b.op("select", s, name=f"{ctx.name}.final{index}_{k}", module=module,
                                               attrs={"axis": 0, "index": index})
            parts.append(t.b.op("reshape", h, name=f"{ctx.name}.n{index}_{k}", module=module,
                                attrs={"shape": (1, *h.shape)}))
        return parts[0] if len(parts) == 1 else t.b.op("concat", *parts, name=f"{ctx.name}.n{index}",
                                                          module=module, attrs={"axis": 0})

    result: list[Any] = [Sequence(outs, time_axis, Lazy(full)), Lazy(partial(stacked, 0))]
    if kind == "lstm":
        result.append(Lazy(partial(stacked, 1)))
    return result


def _pick(t: Translator, x: Node, name: str, module: str, axis: int, index: int) -> Node:
    return t.b.op("select", x, name=name, module=module, attrs={"axis": axis, "index": index})


def _same_node(node: Node) -> Node:
    return node


def _join(t: Translator, ctx: Ctx, forward: Any, backward: Any, name: str) -> Node:
    """The two directions of a bidirectional layer, side by side in the features."""
    return t.b.op("concat", t.node(forward, ctx), t.node(backward, ctx), name=name, module=ctx.module,
                  attrs={"axis": -1})


def _initial_state(t: Translator, ctx: Ctx, kind: str, h0: Any, c0: Any, k: int, hidden: int) -> Node:
    """h (or the LSTM's stacked [h; c]) before the first step; an all-zero state serves any batch size."""
    if t.const(h0) and (c0 is None or t.const(c0)):
        h = np.asarray(h0)[k]
        if kind == "lstm":
            state = np.stack([h, np.asarray(c0)[k]])
            if not state.any():
                state = np.zeros((2, 1, hidden))
        else:
            state = h if h.any() else np.zeros(hidden)
        return t.b.const(state.astype(np.float64), ctx.module, "state0")
    h = t.b.op("select", t.node(h0, ctx), name=f"{ctx.name}.h0_{k}", module=ctx.module, attrs={"axis": 0, "index": k})
    if kind != "lstm":
        return h
    c = t.b.op("select", t.node(c0, ctx), name=f"{ctx.name}.c0_{k}", module=ctx.module, attrs={"axis": 0, "index": k})
    one = (1, *h.shape)
    hr = t.b.op("reshape", h, name=f"{ctx.name}.h0r_{k}", module=ctx.module, attrs={"shape": one})
    cr = t.b.op("reshape", c, name=f"{ctx.name}.c0r_{k}", module=ctx.module, attrs={"shape": one})
    return t.b.op("concat", hr, cr, name=f"{ctx.name}.s0_{k}", module=ctx.module, attrs={"axis": 0})


@aten("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu",
      "_scaled_dot_product_attention_math")
def _sdpa(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if float(a.get("dropout_p", 0.0)) > 0:
        raise Unmapped("attention dropout")
    if a.get("enable_gqa"):
        raise Unmapped("grouped-query attention")
    q, k, v = (t.node(a[r], ctx) for r in ("query", "key", "value"))
    module = f"{ctx.module}.attention" if ctx.module else "attention"
    mask = a.get("attn_mask")
    mask_node = None
    if mask is not None:
        mask_node = t.b.const(additive_mask(np.asarray(mask)), module, "attn_mask") if t.const(mask) \
            else t.node(mask, ctx)
    out = t.b.attention(q, k, v, ctx.name, module, a.get("scale"), bool(a.get("is_causal", False)), mask_node)
    if len(ctx.shapes) > 1:
        return [out] + [Missing("attention statistics")] * (len(ctx.shapes) - 1)
    return out

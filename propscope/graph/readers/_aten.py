"""A torch.export program (its serialized JSON graph) mapped onto catalog ops.

Each ATen op has a small handler. Shape plumbing that only moves constants (zeros for an initial
state, a mask built with `ones().triu()`) is folded at load time with NumPy, so the user sees the
network. Fused layers are lowered to steppable ops: recurrent layers are unrolled into one cell per
time step, scaled dot-product attention into its products and softmax, each under its module.
An op without a handler, or whose mapping disagrees with the shape the file declares, becomes an
`unsupported` placeholder: the graph still opens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError
from ..ir import Node
from ..model import Model
from ._build import Builder, check_shape, module_of

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
    """`torch.ops.aten.linear.default` -> `linear`; other namespaces keep theirs (`quantized.linear`).

    In-place variants map to their functional op by one rule: `relu_`, `add_`, `hardtanh_` -> `relu`, `add`,
    `hardtanh` (the translator then rebinds the mutated input to the result, see `in_place`). Out variants
    differ only in the overload (`add.out`), which is dropped anyway.
    """
    parts = target.split(".")
    if len(parts) >= 4 and parts[0] == "torch" and parts[1] == "ops":
        name = parts[3]
        if in_place(name):
            name = name[:-1]
        return name if parts[2] == "aten" else f"{parts[2]}.{name}"
    return target


def in_place(name: str) -> bool:
    """ATen's naming rule: a trailing underscore (and no dunder) marks the in-place variant of an op."""
    return name.endswith("_") and not name.endswith("__") and len(name) > 1


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
        parts = target.split(".")
        if len(parts) >= 4 and in_place(parts[3]) and results:
            # `x.relu_()` changed x itself: later uses of x's name must see the result, not the old value
            mutated = self._mutated_input(spec)
            if mutated is not None:
                self.env[mutated] = results[0]

    @staticmethod
    def _mutated_input(spec: Mapping[str, Any]) -> str | None:
        """The value an in-place op writes to: its `self` argument's name."""
        for item in spec.get("inputs", []):
            if isinstance(item, dict) and item.get("name") == "self":
                arg = item.get("arg")
                tensor = arg.get("as_tensor") if isinstance(arg, dict) else None
                name = tensor.get("name") if isinstance(tensor, dict) else None
                return name if isinstance(name, str) else None
        return None

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


@dataclass
class Guard:
    """A test for rows that are entirely −∞ (the "safe softmax" of decomposed attention): always false here,
    because propscope's masks are finite, so `where(guard, 0, y)` is `y`."""


# -- what every handler module uses ------------------------------------------------------------------
def self_arg(a: Mapping[str, Any]) -> Any:
    """The tensor an ATen op works on: its `self` (or `input`) argument."""
    return a["self"] if "self" in a else a["input"]


def dims_arg(dim: Any) -> Any:
    """A `dim` argument as NumPy's `axis`: None for all, an int, or a tuple."""
    if dim is None or dim == []:
        return None
    return int(dim) if isinstance(dim, int) else tuple(int(d) for d in dim)


def pair_arg(v: Any, default: int) -> Any:
    """An int-or-list size argument as an int (both sides equal) or a tuple."""
    if v is None or v == []:
        return default
    if isinstance(v, int):
        return v
    v = [int(i) for i in v]
    return v[0] if len(v) == 1 else tuple(v)


def dtype_arg(a: Mapping[str, Any], like: Any = None) -> Any:
    """The NumPy dtype a creation op asks for (bfloat16 widened), else that of `like`, else float64."""
    code = a.get("dtype")
    if isinstance(code, int) and code in SCALAR_TYPES and SCALAR_TYPES[code] != "bfloat16":
        return np.dtype(SCALAR_TYPES[code])
    if isinstance(like, np.ndarray):
        return like.dtype
    return np.float64


def zeros_bias(t: Translator, weight: Node, ctx: Ctx) -> Node:
    """A zero bias for an op the file gave none (linear, conv without bias)."""
    return t.b.const(np.zeros(weight.shape[0]), weight.module or ctx.module, "no_bias")

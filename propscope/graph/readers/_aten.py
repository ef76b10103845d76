"""A torch.export program (its serialized JSON graph) mapped onto catalog ops.

Each ATen op has a small handler. Shape plumbing that only moves constants (zeros for an initial
state, a mask built with `ones().triu()`) is folded at load time with NumPy, so the user sees the
network. Fused layers are lowered to steppable ops: recurrent layers are unrolled into one cell per
time step, scaled dot-product attention into its products and softmax, each under its module.
An op without a handler, or whose mapping disagrees with the shape the file declares, becomes an
`unsupported` placeholder: the graph still opens.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError, ShapeError
from ..ir import Node
from ..model import Model
from ._budget import charge
from ._build import Builder, check_shape, clean_name, downstream, module_of
from ._failure import shorten
from .sizes import bind_symbol

# torch's ScalarType numbers, as torch/_export/serde/schema.py writes them
SCALAR_TYPES = {
    1: "uint8", 2: "int8", 3: "int16", 4: "int32", 5: "int64", 6: "float16", 7: "float32", 8: "float64",
    12: "bool", 13: "bfloat16", 28: "uint16", 34: "uint32", 35: "uint64",
}


COMPLEX_TYPES = frozenset({9, 10, 11})  # complex32, complex64, complex128


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
class PoolIndices(Missing):
    """A 2-D max pool's indices: not computed, but a max unpool that reads them becomes `max_unpool2d` of the pooled
    values and the pool's input (`source`), under the pool's geometry (`attrs`); any other use is Missing's."""

    source: Any
    attrs: dict[str, Any]


@dataclass
class UnpoolPositions(Missing):
    """A 2-D max pool's indices made positions in an unpooled (N, C, H, W) output flattened, as max_unpool2d
    decomposes: the index plus (n·C + c)·`plane` (H·W). An index_put of the pooled values into zeros at them is
    `max_unpool2d`; any other use is Missing's."""

    pool: PoolIndices
    plane: int
    shape: tuple[int, ...]  # the indices' own shape: the pooled (N, C, h, w)
    flat: bool = False


@dataclass(frozen=True)
class Subgraph:
    """A higher-order op's body (a `torch.no_grad()` or `torch.autocast` block inside a forward), as its JSON graph:
    `Translator.inline` reads its nodes in place of the op."""

    name: str
    graph: Mapping[str, Any]


MAX_NESTING = 16  # bodies within bodies; real programs nest one or two


@dataclass
class Ctx:
    name: str
    module: str
    shapes: list[tuple[int, ...] | None]
    target: str


HANDLERS: dict[str, Callable[[Translator, dict[str, Any], Ctx], Any]] = {}
# the handlers of ops on a complex tensor computed from the data (`aten/complex.py`'s `Pairs`), where they differ
PAIRS_HANDLERS: dict[str, Callable[[Translator, dict[str, Any], Ctx], Any]] = {}


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
    if not isinstance(stack, str) or not stack or len(stack) > 65536:
        return ""
    last = stack.split(";")[-1].split(",")
    return last[1] if len(last) >= 2 else ""


def _unhinted(size: Any) -> bool:
    """A symbolic size for which torch recorded no example value (a data-dependent size)."""
    if not isinstance(size, dict) or not isinstance(size.get("as_expr"), dict):
        return False
    hint = size["as_expr"].get("hint")
    return not (isinstance(hint, dict) and isinstance(hint.get("as_int"), int))


def sizes(spec: Any, what: str, where: str, symbols: Mapping[str, int] | None = None) -> tuple[int, ...]:
    """A serialized shape: plain ints, or symbolic sizes: with the hint torch recorded (the example inputs' sizes),
    or, given `symbols` (each dynamic dimension's value where the inputs are read at other sizes), worked out."""
    if not isinstance(spec, list):
        raise ModelFormatError(f"{where}: {what} has no list of sizes")
    dims = []
    for d in spec:
        if isinstance(d, dict) and isinstance(d.get("as_int"), int):
            dims.append(d["as_int"])
        elif isinstance(d, dict) and isinstance(d.get("as_expr"), dict):
            value = symbolic_size(d["as_expr"], symbols)
            if value is None:
                raise ModelFormatError(f"{where}: {what} has a symbolic size without a "
                                       f"{'hint' if symbols is None else 'value'}")
            dims.append(value)
        else:
            raise ModelFormatError(f"{where}: {what} has a malformed size {d!r}")
    return check_shape(dims, what, where)


# -- dynamic (symbolic) sizes -----------------------------------------------------------------------
MAX_EXPRESSION = 4096  # characters of a size expression; real ones are a few hundred


def symbolic_size(expr: Mapping[str, Any], symbols: Mapping[str, int] | None) -> int | None:
    """A symbolic size (`{"expr_str": "Mul(Integer(2), Symbol('s27', ...))", "hint": {"as_int": 12}}`) as a number:
    its hint where `symbols` is None, else its expression worked out with them; None where it cannot be."""
    if symbols is None:
        hint = expr.get("hint")
        value = hint.get("as_int") if isinstance(hint, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    text = expr.get("expr_str")
    if not isinstance(text, str) or len(text) > MAX_EXPRESSION:
        return None
    try:
        value = _evaluate(ast.parse(text, mode="eval").body, symbols)
    except (KeyError, ValueError, TypeError, SyntaxError, ZeroDivisionError, RecursionError, MemoryError):
        return None
    return value if isinstance(value, int) and -INT64 <= value < INT64 else None


def bare_symbol(size: Any) -> str | None:
    """The name of the symbol a serialized size is by itself (`Symbol('s72', ...)` or `s72`), else None."""
    expr = size.get("as_expr") if isinstance(size, dict) else None
    text = expr.get("expr_str") if isinstance(expr, dict) else None
    if not isinstance(text, str) or len(text) > MAX_EXPRESSION:
        return None
    try:
        node = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Symbol" and node.args \
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def _floor_div(a: int, b: int) -> int:
    return a // b


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _power(a: int, b: int) -> int:
    if not 0 <= b <= 64 or abs(a) > INT64:
        raise ValueError("a power out of range")
    return int(a**b)


# sympy's functions as torch writes size expressions (`sympy.srepr`, or `str` in older versions), on integers only
_SIZE_FUNCTIONS: dict[str, Callable[..., int]] = {
    "Add": lambda *v: sum(v), "Mul": lambda *v: math.prod(v), "Max": max, "Min": min, "Pow": _power,
    "FloorDiv": _floor_div, "CleanDiv": _floor_div, "CeilDiv": _ceil_div, "Mod": lambda a, b: a % b,
    "PythonMod": lambda a, b: a % b, "Abs": abs,
}
_BINARY: dict[type, Callable[[int, int], int]] = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: _floor_div, ast.Mod: lambda a, b: a % b, ast.Pow: _power,
}


def _evaluate(node: ast.AST, symbols: Mapping[str, int]) -> int:
    """An integer expression of sizes, read from its syntax tree: nothing is executed (a KeyError for an unknown
    symbol, a ValueError for anything else it does not know)."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name):
        return int(symbols[node.id])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, symbols)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left, symbols), _evaluate(node.right, symbols))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args:
        name, args = node.func.id, node.args
        if name == "Symbol" and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
            return int(symbols[args[0].value])
        if name == "Integer" and len(args) == 1:
            return _evaluate(args[0], symbols)
        if name in _SIZE_FUNCTIONS:
            return int(_SIZE_FUNCTIONS[name](*(_evaluate(a, symbols) for a in args)))
    raise ValueError(f"a size expression propscope does not know ({type(node).__name__})")


# -- validating the program JSON: every field's type checked before it is used -----------------------
MAX_NAME = 4096  # a value or node name; real ones are under a few hundred characters
INT64 = 2**63


def short(value: Any, limit: int = 60) -> str:
    """A value from the file for an error message, never longer than `limit`."""
    text = repr(value) if not isinstance(value, str) else repr(value[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def expect(value: Any, kind: type | tuple[type, ...], what: str, where: str) -> Any:
    """`value` when it has the JSON type `kind`, else the one-line error naming the field."""
    if isinstance(value, kind) and (value.__class__ is not bool or kind is bool):  # the fast path: valid
        return value
    names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
    names = names.replace("dict", "an object").replace("list", "a list").replace("str", "a string")
    raise ModelFormatError(f"{where}: {shorten(what, 120)} should be {names}, not {short(value, 40)}")


def json_int(value: Any, what: str, where: str) -> int:
    value = expect(value, int, what, where)
    if not -INT64 <= value < INT64:
        raise ModelFormatError(f"{where}: {what} is {short(value, 30)}, outside the 64-bit range")
    return int(value)


_NON_FINITE = {"Infinity": np.inf, "-Infinity": -np.inf, "NaN": np.nan, "inf": np.inf, "-inf": -np.inf,
               "nan": np.nan}  # torch writes non-finite floats as these strings


def json_float(value: Any, what: str, where: str) -> float:
    if isinstance(value, str) and value in _NON_FINITE:
        return float(_NON_FINITE[value])
    if isinstance(value, int) and not isinstance(value, bool):
        return float(json_int(value, what, where))
    return float(expect(value, float, what, where))


def json_name(value: Any, what: str, where: str) -> str:
    value = expect(value, str, what, where)
    if not value or len(value) > MAX_NAME:
        raise ModelFormatError(f"{where}: {what} is a name of {len(value)} characters")
    return str(value)


def single(spec: Any, what: str, where: str) -> tuple[str, Any]:
    """A one-key tagged union (`{"user_input": {...}}`) as (tag, body)."""
    if spec.__class__ is dict and len(spec) == 1:
        for kind, body in spec.items():
            return str(kind), body
    spec = expect(spec, dict, what, where)
    if len(spec) != 1:
        raise ModelFormatError(f"{where}: {what} should have one kind, has {len(spec)}")
    ((kind, body),) = spec.items()
    return str(kind), body


MAX_SPEC_DEPTH = 32  # how deep a returned structure's spec is walked for names (deeper: no names)


def returned_names(gm: Mapping[str, Any]) -> list[str] | None:
    """The name of each leaf of the structure the program's forward returns, as the structure names it (a dict's
    keys, a dataclass's fields, joined by dots: "aux.z"), from the pytree spec torch.export keeps in the program's
    module call graph; None where it names nothing but positions, or where the spec is missing or not as expected
    (names are a courtesy: a file without them opens as before)."""
    try:
        calls = gm.get("module_call_graph")
        spec = calls[0]["signature"]["out_spec"] if isinstance(calls, list) and calls else None
        tree = json.loads(spec) if isinstance(spec, str) and len(spec) < 1_000_000 else None
        if not (isinstance(tree, list) and len(tree) == 2):
            return None
        names: list[str] = []
        named = _walk_spec(tree[1], (), names, 0)
        return names if named else None
    except (KeyError, IndexError, TypeError, ValueError, RecursionError):
        return None


def _walk_spec(node: Any, path: tuple[str, ...], names: list[str], depth: int) -> bool:
    """Append the names of `node`'s leaves to `names`; whether any step on the way had a name (not a position)."""
    if not isinstance(node, dict) or depth > MAX_SPEC_DEPTH:
        raise ValueError("not a pytree spec")
    children = node.get("children_spec") or []
    if node.get("type") is None and not children:
        names.append(clean_name(".".join(path)))
        return False
    if not isinstance(children, list):
        raise ValueError("not a pytree spec")
    context = node.get("context")
    keys = json.loads(context) if isinstance(context, str) and context.startswith("[") else None
    named = isinstance(keys, list) and len(keys) == len(children) and all(isinstance(k, str) for k in keys)
    labels = [str(k) for k in keys] if named and keys is not None else [str(i) for i in range(len(children))]
    found = False
    for label, child in zip(labels, children, strict=True):
        found = _walk_spec(child, (*path, label), names, depth + 1) or found
    return found or named


class Translator:
    def __init__(self, program: Mapping[str, Any], fetch: Callable[[str, str], np.ndarray], where: str,
                 name: str, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> None:
        for key, holder in (("graph_module", program),):
            if not isinstance(holder, Mapping) or key not in holder:
                raise ModelFormatError(f"{where}: the program JSON lacks {key!r} (not a torch.export program?)")
        gm = expect(program["graph_module"], dict, "graph_module", where)
        for key in ("graph", "signature"):
            if key not in gm:
                raise ModelFormatError(f"{where}: the program JSON lacks {key!r} (not a torch.export program?)")
        self.graph_spec = expect(gm["graph"], dict, "graph_module.graph", where)
        self.signature = expect(gm["signature"], dict, "graph_module.signature", where)
        if "nodes" not in self.graph_spec:
            raise ModelFormatError(f"{where}: the program JSON lacks 'nodes' (not a torch.export program?)")
        self.nodes = expect(self.graph_spec["nodes"], list, "graph.nodes", where)
        for i, node in enumerate(self.nodes):
            expect(node, dict, f"graph node #{i}", where)
        self.tensor_values = dict(expect(self.graph_spec.get("tensor_values") or {}, dict, "graph.tensor_values",
                                         where))
        self.input_specs = expect(self.signature.get("input_specs", []), list, "signature.input_specs", where)
        self.output_specs = expect(self.signature.get("output_specs", []), list, "signature.output_specs", where)
        self.returned = returned_names(gm)
        ranges = program.get("range_constraints")
        self.ranges: Mapping[str, Any] = ranges if isinstance(ranges, dict) else {}
        self.input_shapes = dict(input_shapes or {})  # the data's, by input name: dynamic sizes follow them
        self.bound: dict[str, tuple[int, str, int]] = {}  # each dynamic dimension: its value, input and axis
        self.symbolic: dict[str, tuple[str | None, ...]] = {}  # each input's symbol per axis (None: a fixed size)
        # the dynamic dimensions' values where some differ from the example's (hints): sizes are then worked out
        # from the file's expressions; None while every size is the example's, which the hints give as they are
        self.symbols: dict[str, int] | None = None
        self.fetch = fetch
        self.where = where
        self.b = Builder(name, where)
        self.env: dict[str, Any] = {}
        self.views: dict[str, tuple[str, str, dict[str, Any]]] = {}  # a slice's name -> what it was taken from
        self.user_inputs: list[str] = []
        self.float_casts: list[str] = []  # casts of computed values between float dtypes (mixed precision)
        self.spec: Mapping[str, Any] | None = None  # the node being read
        self.nesting = 0  # how deep in higher-order ops' bodies (`inline`)

    # -- values ------------------------------------------------------------------------------------
    def declared(self, name: str) -> tuple[int, ...] | None:
        """The shape the file records for a value; None where it has none, or where a size depends on the
        data (nonzero, a boolean mask's selection: no hint recorded; such values are folded or unsupported)."""
        meta = self.tensor_values.get(name)
        if not isinstance(meta, dict):
            return None
        spec = meta.get("sizes")
        if self.symbols is not None:  # at the data's sizes: what cannot be worked out is left to the handlers
            try:
                return sizes(spec, f"value {short(name)}", self.where, self.symbols)
            except ModelFormatError:
                return None
        if isinstance(spec, list) and any(_unhinted(d) for d in spec):
            return None
        return sizes(spec, f"value {short(name)}", self.where)

    def _bind_symbols(self, name: str) -> None:
        """Give each dynamic dimension of input `name` its value: the data's size (`input_shapes`), else the example
        input's (the hint torch recorded); one the file records no size for, with no data, is refused by name, as is
        a size outside the range the program was exported for."""
        meta = self.tensor_values.get(name)
        spec = meta.get("sizes") if isinstance(meta, dict) else None
        if not isinstance(spec, list):
            return
        given = self.input_shapes.get(name)
        if given is None and sum(isinstance(i, dict) and "user_input" in i for i in self.input_specs) == 1:
            given = self.input_shapes.get("x")  # `x` always names the single input
        given = given if given is not None and len(given) == len(spec) else None
        axes = tuple(bare_symbol(d) for d in spec)
        for axis, (d, symbol) in enumerate(zip(spec, axes, strict=True)):
            if symbol is None:
                continue
            value = int(given[axis]) if given is not None else symbolic_size(d["as_expr"], None)
            if value is None:
                raise ModelFormatError(f"{self.where}: input {short(name)} dimension {axis} is dynamic ({symbol}) and "
                                       f"the file records no size for it; give it with data (--data, an array "
                                       f"{short(name)}), or export the model with a static size there")
            self._check_range(symbol, value, name, axis)
            bind_symbol(self.bound, symbol, value, name, axis)
            if value != symbolic_size(d["as_expr"], None):
                self.symbols = {}
        if any(axes):
            self.symbolic[name] = axes
        if self.symbols is not None:
            self.symbols = {symbol: value for symbol, (value, _, _) in self.bound.items()}

    def _check_range(self, symbol: str, value: int, name: str, axis: int) -> None:
        """A dynamic size outside the range torch exported the program for (`Dim(min=, max=)`) is refused."""
        limits = self.ranges.get(symbol)
        low = limits.get("min_val") if isinstance(limits, dict) else None
        high = limits.get("max_val") if isinstance(limits, dict) else None
        low = low if isinstance(low, int) and not isinstance(low, bool) else 0
        high = high if isinstance(high, int) and not isinstance(high, bool) else INT64
        if not low <= value <= high:
            shown = f"{low}..{high}" if high < INT64 // 2 else f"at least {low}"
            raise ShapeError(f"input {short(name)} dimension {axis} ({symbol}) is {value}; the program was exported "
                             f"for {shown} there")

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
        if isinstance(value, Missing):  # what is missing, and why (the op that made no output)
            raise Unmapped(value.reason)
        raise Unmapped(f"no shape for a {type(value).__name__}")

    def _arg(self, arg: Any, what: str = "an argument") -> Any:
        """One serialized argument as a Python value, each kind's JSON type checked first."""
        where = self.where
        kind, v = single(arg, what, where)
        if kind == "as_none":
            return None
        if kind == "as_tensor":
            return self._ref(v)
        if kind == "as_tensors":
            return [self._ref(t) for t in expect(v, list, f"{what} (as_tensors)", where)]
        if kind == "as_optional_tensor":
            v = expect(v, dict, f"{what} (as_optional_tensor)", where)
            return None if "as_none" in v else self._ref(v.get("as_tensor"))
        if kind == "as_optional_tensors":
            items = [expect(t, dict, f"{what} (as_optional_tensors)", where)
                     for t in expect(v, list, f"{what} (as_optional_tensors)", where)]
            return [None if "as_none" in t else self._ref(t.get("as_tensor")) for t in items]
        if kind == "as_float":
            return json_float(v, f"{what} (as_float)", where)
        if kind == "as_floats":
            return [json_float(f, f"{what} (as_floats)", where) for f in expect(v, list, f"{what} (as_floats)", where)]
        if kind == "as_int":
            return json_int(v, f"{what} (as_int)", where)
        if kind == "as_ints":
            return [json_int(i, f"{what} (as_ints)", where) for i in expect(v, list, f"{what} (as_ints)", where)]
        if kind in ("as_sym_int", "as_sym_bool", "as_sym_float"):
            if isinstance(v, dict) and len(v) == 1 and ("as_int" in v or "as_bool" in v or "as_float" in v):
                return self._arg(v, what)
            named = v.get("as_name") if isinstance(v, dict) else None
            value = self.env.get(named) if isinstance(named, str) else None
            if isinstance(value, int | float | Missing):  # worked out by the handlers of aten/symbolic.py
                return value
            return Missing("a size computed at run time from the data (not from the inputs' sizes)")
        if kind in ("as_sym_ints", "as_sym_bools", "as_sym_floats"):
            return [self._arg({kind[:-1]: i}, what) for i in expect(v, list, f"{what} ({kind})", where)]
        if kind == "as_bool":
            return expect(v, bool, f"{what} (as_bool)", where)
        if kind == "as_bools":
            return [expect(b, bool, f"{what} (as_bools)", where) for b in expect(v, list, f"{what} (as_bools)", where)]
        if kind == "as_string":
            return expect(v, str, f"{what} (as_string)", where)
        if kind == "as_strings":
            return [expect(t, str, f"{what} (as_strings)", where)
                    for t in expect(v, list, f"{what} (as_strings)", where)]
        if kind in ("as_scalar_type", "as_layout", "as_memory_format"):
            return json_int(v, f"{what} ({kind})", where)
        if kind == "as_int_lists":
            return [[json_int(i, f"{what} (as_int_lists)", where) for i in expect(row, list, what, where)]
                    for row in expect(v, list, f"{what} (as_int_lists)", where)]
        if kind == "as_device":
            return v
        if kind == "as_graph":
            v = expect(v, dict, f"{what} (as_graph)", where)
            body = expect(v.get("graph"), dict, f"{what} (as_graph)", where)
            return Subgraph(str(v.get("name", ""))[:MAX_NAME], body)
        return Missing(f"an argument of kind {short(kind, 40)}")

    def _ref(self, t: Any) -> Any:
        name = t.get("name") if isinstance(t, dict) else None
        if not isinstance(name, str) or name not in self.env:
            raise ModelFormatError(f"{self.where}: the program uses value {short(name)} before defining it")
        return self.env[name]

    # -- the program -------------------------------------------------------------------------------
    def _placeholders(self) -> None:
        where = self.where
        for i, spec in enumerate(self.input_specs):
            kind, body = single(spec, f"input spec #{i}", where)
            body = expect(body, dict, f"input spec #{i} ({short(kind, 30)})", where)
            arg = expect(body.get("arg", {}), dict, f"input spec #{i} arg", where)
            tensor = arg.get("as_tensor", {})
            name = arg.get("name") or (tensor.get("name") if isinstance(tensor, dict) else None)
            if name is None:
                continue
            name = json_name(name, f"input spec #{i} name", where)
            if kind == "user_input":
                if "as_tensor" not in arg:
                    self.env[name] = Missing("a non-tensor input")
                    continue
                self._bind_symbols(name)
                shape = self.declared(name)
                if shape is None:
                    raise ModelFormatError(f"{self.where}: input {short(name)} has no declared shape")
                code = self.tensor_values[name].get("dtype")
                dtype = SCALAR_TYPES.get(code, "float32") if isinstance(code, int) else "float32"
                self.env[name] = self.b.input(name, shape, dtype=dtype)
                self.user_inputs.append(name)
            elif kind in ("parameter", "buffer", "tensor_constant"):
                fqn = body.get(f"{kind}_name")
                if not isinstance(fqn, str):
                    raise ModelFormatError(f"{self.where}: a {kind} input has no name")
                json_name(fqn, f"{kind} name", where)
                self.b.reserved.add(clean_name(fqn))
                maker = self._leaf_maker(kind, fqn, name)
                if kind == "parameter":
                    self.env[name] = Lazy(maker)
                elif self.tensor_values.get(name, {}).get("dtype") in COMPLEX_TYPES:  # never a leaf: read as a
                    self.env[name] = self.fetch(kind, fqn)  # constant, folded or turned into pairs where used
                else:
                    self.env[name] = Stored(maker, array=partial(self.fetch, kind, fqn))
            else:
                self.env[name] = Missing(f"a {short(kind, 40)} input")

    def _leaf_maker(self, kind: str, fqn: str, placeholder: str) -> Callable[[], Node]:
        def make() -> Node:
            value = self.fetch(kind, fqn)
            declared = self.declared(placeholder)
            if declared is not None and tuple(value.shape) != declared:
                raise ModelFormatError(f"{self.where}: {kind} {fqn!r} holds shape {value.shape}, "
                                       f"the program declares {declared}")
            leaf = "parameter" if kind == "parameter" else "constant"
            if leaf == "parameter" and (value.dtype.kind not in "f" or self.frozen(placeholder)):
                leaf = "constant"
            return self.b.leaf(leaf, fqn, value, module=module_of(fqn))

        return make

    def frozen(self, placeholder: str) -> bool:
        """A parameter the model does not train (`requires_grad_(False)`, Whisper's sinusoidal positions): a
        constant here, as it has no gradient in torch and an optimizer must leave it alone."""
        meta = self.tensor_values.get(placeholder)
        return isinstance(meta, dict) and meta.get("requires_grad") is False

    def translate(self, batch: Mapping[str, np.ndarray] | None, description: str) -> Model:
        self._placeholders()
        for spec in self.nodes:
            self._node(spec)
        outputs = []
        returned = iter(self.returned or [])
        for i, spec in enumerate(self.output_specs):
            kind, body = single(spec, f"output spec #{i}", self.where)
            if kind != "user_output":
                continue
            name = next(returned, None)  # user outputs come in the order of the returned structure's leaves
            body = expect(body, dict, f"output spec #{i}", self.where)
            arg = expect(body.get("arg", {}), dict, f"output spec #{i} arg", self.where)
            if "as_tensor" not in arg:
                continue
            tensor = expect(arg["as_tensor"], dict, f"output spec #{i} as_tensor", self.where)
            value = self._ref(tensor)
            ctx = Ctx(tensor["name"], "", [None], "output")
            try:
                outputs.append(self.node(value, ctx, "output"))
            except Unmapped as exc:
                raise ModelFormatError(f"{self.where}: the model's output cannot be built ({exc})") from None
            if name and outputs[-1].op.name != "input":
                outputs[-1].meta.setdefault("returns", name)
        if self.float_casts:
            self.b.warnings.append(
                f"{len(self.float_casts)} cast(s) between float dtypes (mixed precision, the first in "
                f"{short(self.float_casts[0])}): a cast to float16 or bfloat16 rounds through it, values and "
                "gradients, as torch's does (1e10 in float16 is inf), but the ops between casts, and a float32 island "
                "in a float64 model, compute in the session's dtype; there propscope's numbers differ from torch's "
                "by the narrower dtype's rounding")
        return self.b.model(outputs, batch, description)

    def _node(self, spec: Mapping[str, Any]) -> None:
        where = self.where
        target = spec.get("target", "?")
        if target.__class__ is not str or not 0 < len(target) <= MAX_NAME:
            json_name(target, "a node's target", where)
        out_names: list[str | None] = []
        outputs = spec.get("outputs", [])
        if outputs.__class__ is not list:
            expect(outputs, list, f"the outputs of {target}", where)
        for out in outputs:
            if out.__class__ is not dict:
                expect(out, dict, f"an output of {target}", where)
            if "as_tensor" in out:
                out_names.append(self._out_name(out["as_tensor"], target))
            elif "as_tensors" in out:
                tensors = out["as_tensors"]
                out_names.extend(self._out_name(t, target)
                                 for t in expect(tensors, list, f"an output of {target}", where))
            elif isinstance(out.get("as_sym_int") or out.get("as_sym_bool") or out.get("as_sym_float"), dict):
                sym = (out.get("as_sym_int") or out.get("as_sym_bool") or out.get("as_sym_float")).get("as_name")
                out_names.append(sym if isinstance(sym, str) and 0 < len(sym) <= MAX_NAME else None)
            else:
                out_names.append(None)
        shapes = [self.declared(n) if n else None for n in out_names]
        name = next((n for n in out_names if n), None) or json_name(spec.get("name", "node"), "a node's name", where)
        module = module_path(spec.get("metadata") or {})
        ctx = Ctx(name, module, shapes, target)
        key = op_key(target)
        args: dict[str, Any] = {}
        inputs = spec.get("inputs", [])
        if inputs.__class__ is not list:
            expect(inputs, list, f"the inputs of {name}", where)
        for i, item in enumerate(inputs):
            if not isinstance(item, dict) or "arg" not in item:
                raise ModelFormatError(f"{self.where}: node {short(name)} has a malformed input")
            key_name = str(item.get("name") or i)[:MAX_NAME]  # a higher-order op's are unnamed: by position
            args[key_name] = self._arg(item["arg"], f"input {key_name} of node {name}")
        mark = len(self.b.graph)
        self.spec = spec  # for a handler that needs what the file records of its inputs (`input_layout`)
        try:
            handler = HANDLERS.get(key)
            if key in PAIRS_HANDLERS and isinstance(args.get("self", args.get("input")), Missing):
                handler = PAIRS_HANDLERS[key]  # a view of complex pairs (or refused, as a Missing's use is)
            if handler is None:
                raise Unmapped("")
            result = handler(self, args, ctx)
            results = list(result) if isinstance(result, list | tuple) else [result]
            results = [np.asarray(v) if isinstance(v, np.generic) else v for v in results]
            for value, declared in zip(results, shapes, strict=False):
                if isinstance(value, Node) and declared is not None and value.shape != declared:
                    raise Unmapped(f"mapped to shape {value.shape}, the file declares {declared}")
        except (Unmapped, GraphError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError,
                OverflowError, AttributeError) as exc:  # a handler meeting arguments it cannot use: unsupported
            if len(self.b.graph) != mark:
                self.b.warnings.append(f"{short(target)} at {short(name)}: partial mapping dropped ({str(exc)[:120]})")
            results = self._placeholder(key, args, ctx, str(exc)[:200] if isinstance(exc, Unmapped) else
                                        f"{type(exc).__name__}: {str(exc)[:200]}")
        self._charge_folded(results, name)
        for out, value in zip(out_names, results, strict=False):
            if out:
                self.env[out] = value
        parts = target.split(".")
        if key in ("slice", "select") and out_names and out_names[0]:
            base = self._mutated_input(spec)
            if base is not None:
                self.views[out_names[0]] = (base, key, {k: v for k, v in args.items() if k not in ("self", "input")})
        if len(parts) >= 4 and in_place(parts[3]) and results:
            # `x.relu_()` changed x itself: later uses of x's name must see the result, not the old value
            mutated = self._mutated_input(spec)
            if mutated is not None:
                self.env[mutated] = results[0]
                self._write_through(mutated, ctx)

    def inline(self, body: Subgraph, values: list[Any]) -> list[Any]:
        """The values a higher-order op's body gives for `values`, its nodes read as if they stood in the program.
        The body names its values on its own (they may repeat the program's), so what the program held under them
        is put back afterwards."""
        where = self.where
        graph = body.graph
        inputs = expect(graph.get("inputs", []), list, f"the inputs of {short(body.name)}", where)
        nodes = expect(graph.get("nodes", []), list, f"the nodes of {short(body.name)}", where)
        outputs = expect(graph.get("outputs", []), list, f"the outputs of {short(body.name)}", where)
        described = expect(graph.get("tensor_values") or {}, dict, f"the values of {short(body.name)}", where)
        if self.nesting >= MAX_NESTING:
            raise ModelFormatError(f"{where}: higher-order ops nested more than {MAX_NESTING} deep")
        names = [self._out_name(expect(i, dict, "a body's input", where).get("as_tensor"), body.name) for i in inputs]
        if len(names) != len(values):
            raise Unmapped(f"{body.name} takes {len(names)} inputs, given {len(values)}")
        env, views, described_before = dict(self.env), dict(self.views), self.tensor_values
        self.tensor_values = {**self.tensor_values, **described}
        self.nesting += 1
        try:
            self.env.update(zip(names, values, strict=True))
            for i, spec in enumerate(nodes):
                self._node(expect(spec, dict, f"node #{i} of {short(body.name)}", where))
            return [self._arg(out, f"an output of {short(body.name)}") for out in outputs]
        finally:
            self.nesting -= 1
            self.env, self.views, self.tensor_values = env, views, described_before

    def _write_through(self, view: str, ctx: Ctx) -> None:
        """An in-place op on a slice or a selection (`out[:, 1:3] = y` is `copy_` on a slice of out) changes
        the tensor it was taken from: rebuild that tensor with the new part scattered in, up the chain."""
        seen = set()
        while view in self.views and view not in seen:
            seen.add(view)
            base, kind, params = self.views[view]
            scatter = "slice_scatter" if kind == "slice" else "select_scatter"
            args = {**params, "self": self.env[base], "src": self.env[view]}
            step_ctx = Ctx(f"{ctx.name}.{base}", ctx.module, [None], f"torch.ops.aten.{scatter}.default")
            try:
                self.env[base] = HANDLERS[scatter](self, args, step_ctx)
            except (Unmapped, GraphError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError,
                    OverflowError, AttributeError) as exc:  # as in _node: the rest of the graph still opens
                self.env[base] = Missing(f"a tensor changed in place through a view ({str(exc)[:200]})")
            view = base

    def _out_name(self, tensor: Any, target: str) -> str:
        """The name a node's output defines (checked: text of a sensible length)."""
        name = tensor.get("name") if tensor.__class__ is dict else None
        if isinstance(name, str) and 0 < len(name) <= MAX_NAME:
            return name
        return json_name(expect(tensor, dict, f"an output of {target}", self.where).get("name"),
                         f"an output of {target}", self.where)

    def _charge_folded(self, results: list[Any], name: str) -> None:
        """Arrays folded at load time count against the open's memory budget (large folds are also checked
        before they are made, in the constant handlers)."""
        for value in results:
            if isinstance(value, np.ndarray) and value.nbytes > 4096:
                charge(value.nbytes, f"the constant folded at {short(name)}", self.where)

    @staticmethod
    def _mutated_input(spec: Mapping[str, Any]) -> str | None:
        """The value an in-place op writes to: its `self` argument's name."""
        inputs = spec.get("inputs", [])
        for item in inputs if isinstance(inputs, list) else []:
            if isinstance(item, dict) and item.get("name") == "self":
                arg = item.get("arg")
                tensor = arg.get("as_tensor") if isinstance(arg, dict) else None
                name = tensor.get("name") if isinstance(tensor, dict) else None
                return name if isinstance(name, str) else None
        return None

    def input_layout(self) -> tuple[tuple[int, ...], int] | None:
        """The strides and storage offset the file records for the current node's `self` input; None where it
        records none (a tensor's layout in memory, which an `as_strided` reads)."""
        name = self._mutated_input(self.spec) if self.spec is not None else None
        meta = self.tensor_values.get(name) if name is not None else None
        if not isinstance(meta, dict):
            return None
        try:
            strides = sizes(meta.get("strides"), f"value {short(name or '')} strides", self.where)
        except ModelFormatError:
            return None
        offset = meta.get("storage_offset", {"as_int": 0})
        offset = offset.get("as_int") if isinstance(offset, dict) else None
        return (strides, offset) if isinstance(offset, int) else None

    def input_dtype(self) -> str | None:
        """The dtype the file records for the current node's `self` input ("float32", "int64", "bool"); None
        where it records none."""
        name = self._mutated_input(self.spec) if self.spec is not None else None
        meta = self.tensor_values.get(name) if name is not None else None
        code = meta.get("dtype") if isinstance(meta, dict) else None
        return SCALAR_TYPES.get(code) if isinstance(code, int) else None

    def argument_dtypes(self, argument: str) -> list[str | None]:
        """The dtypes the file records for the tensors the current node takes as `argument` (an index's
        `indices`: a list of optional tensors), None where it records none."""
        inputs = self.spec.get("inputs", []) if self.spec is not None else []
        for item in inputs if isinstance(inputs, list) else []:
            if not isinstance(item, dict) or item.get("name") != argument or not isinstance(item.get("arg"), dict):
                continue
            arg = item["arg"]
            tensors = arg.get("as_tensors") or arg.get("as_optional_tensors") or [arg.get("as_tensor")]
            names = [t.get("as_tensor", t).get("name") if isinstance(t, dict) and isinstance(t.get("as_tensor", t),
                                                                                             dict) else None
                     for t in (tensors if isinstance(tensors, list) else [])]
            codes = [(self.tensor_values.get(n) or {}).get("dtype") if isinstance(n, str) else None for n in names]
            return [SCALAR_TYPES.get(c) if isinstance(c, int) else None for c in codes]
        return []

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
                results.append(Missing(downstream(f"aten.{key}", reason)))
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

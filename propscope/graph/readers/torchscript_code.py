"""A TorchScript archive's code (`code/__torch__/**.py`) interpreted symbolically into a graph: never run.

The code is read with `ast` and walked here: nothing of it is compiled, executed or imported, and no name in it
reaches Python's own `getattr`. Each `torch.X(...)` call is a call of the ATen handler for `aten::X` (the handlers
of the torch.export reader, `aten/`), its positional arguments named by torch's own schema for the op; a call of a
submodule's method inlines that method's body under the submodule's path (so the graph's modules are
`layer1.0.conv1`, folding as for a `.pt2`); a TorchScript function (`__torch__.torch.nn.functional.relu`) inlines
its body. Tensors are graph nodes; ints, floats, bools, strings, lists and None are Python values, and shape
queries (`torch.size`, `torch.dim`) are worked out from the nodes' shapes. An `if` whose condition is known at read
time takes its branch, a loop over a known range is unrolled; anything that depends on the data or that the
interpreter does not know is refused in one line naming it and the module. Everything a file can cause is bounded:
call depth, loop iterations, statements interpreted, nodes made, list sizes.
"""

from __future__ import annotations

import ast
import contextlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import GraphError, ModelFormatError
from ..ir import Node
from ._aten import HANDLERS, Ctx, Lazy, Missing, Sequence, Stored, Translator, Transposed, Unmapped, in_place
from ._budget import charge
from ._build import Builder, module_of
from ._pickle import Pickled, is_tensor

MAX_DEPTH = 64  # nested calls (a module's forward calling its submodules' and functions): real ones are < 20
MAX_ITERATIONS = 10_000  # iterations of one unrolled loop
MAX_STEPS = 2_000_000  # work in one open, in steps: a statement or an expression interpreted is one (~2 µs)
NODE_STEPS = 16  # a graph node made costs as long as this many steps (torch asked, the handler run: ~30 µs)
ELEMENTS_PER_STEP = 100  # numbers folded at read time (a constant computed by NumPy) cost one step per this many
MAX_NODES = 500_000  # graph nodes one open makes
MAX_LIST = 100_000  # elements of one list the code makes
MAX_TENSOR_LITERAL = 1_000_000  # numbers in one `torch.tensor([...])` (lists nested by reference multiply)
LIST_ITEM_BYTES = 8  # what one element of a list the code makes costs, charged to the open's budget
NODE_BYTES = 2048  # what one graph node costs in memory, charged to the open's budget
MAX_META_ELEMENTS = 2**40  # elements of a tensor or a size torch's shape functions are asked about (meta: none made)
MAX_META_CACHE = 100_000  # shapes torch gave, kept by op and arguments (a loop asks the same thing again)
TORCH_INSTALL = "pip install 'propscope[torch]'"

# dunder names that are TorchScript's own op names (`torch.__is__`), not Python's attribute machinery
_DUNDER_OPS = frozenset({"__is__", "__isnot__", "__not__", "__and__", "__or__", "__xor__", "__contains__",
                         "__getitem__", "__round_to_zero_floordiv", "__derive_index", "__range_length",
                         "__torch__", "__interpolate", "__upsample", "__upsample_bilinear", "__lshift__",
                         "__rshift__", "__iand__", "__ior__", "__ixor__"})


# the namespace TorchScript gives a second compilation of a name (`functional.___torch_mangle_99.interpolate`)
_MANGLED = re.compile(r"___torch_mangle_[0-9]{1,9}")


_MEMBER = "propscope_member"  # the attribute of a parsed function naming its code file


class Refusal(Exception):
    """The code does something propscope will not interpret (one line, without the file's name)."""


@dataclass(frozen=True)
class Qualified:
    """A dotted name the code refers to (`torch.add`, `ops.prim.NumToTensor`, `__torch__.torch.nn.functional.relu`)."""

    name: str


@dataclass(frozen=True)
class Builtin:
    """One of the few Python builtins TorchScript code calls (`int`, `range`, `getattr`, `annotate`)."""

    name: str


@dataclass
class ScriptModule:
    """A module object of the archive's module tree (data.pkl), where it sits in the tree (`layer1.0`)."""

    obj: Pickled
    path: str

    @property
    def state(self) -> dict[str, Any]:
        state = self.obj.state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = state[0]
        return state if isinstance(state, dict) else {}


@dataclass
class Method:
    """A module's method, bound: called, its body is inlined under the module's path."""

    module: ScriptModule
    name: str


@dataclass(frozen=True)
class Device:
    """`torch.device("cpu")`: where a tensor lives, which changes nothing in the graph (meta when shapes are
    worked out)."""

    name: str


class Uninitialized:
    """`uninitialized(T)`: a value TorchScript declares before a branch assigns it; using it is refused."""


@dataclass
class ClassInfo:
    """A class of the code: its methods and the constants its body declares (`padding : Final[...] = (3, 3)`)."""

    name: str
    methods: dict[str, ast.FunctionDef] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    parameters: set[str] = field(default_factory=set)


def literal(node: ast.AST, depth: int = 0) -> Any:
    """A constant written in the code (numbers, strings, None, tuples and lists of them), else Refusal."""
    if depth > 16:
        raise Refusal("a constant nested too deeply")
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool | type(None)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = literal(node.operand, depth + 1)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value
    if isinstance(node, ast.Tuple | ast.List):
        if len(node.elts) > MAX_LIST:
            raise Refusal(f"a list of {len(node.elts)} constants")
        items = [literal(e, depth + 1) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    raise Refusal(f"a class constant that is not a literal ({type(node).__name__})")


def parse_code(text: str, where: str, member: str) -> dict[str, ClassInfo | ast.FunctionDef]:
    """A code file's classes and functions by name; any other top-level statement is refused."""
    try:
        tree = ast.parse(text, filename=member)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ModelFormatError(f"{where}: {member} is not readable TorchScript code ({type(exc).__name__})") from None
    found: dict[str, ClassInfo | ast.FunctionDef] = {}
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef):
            setattr(fn, _MEMBER, member)  # where a failure inside it is said to be
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef):
            found[stmt.name] = stmt
        elif isinstance(stmt, ast.ClassDef):
            found[stmt.name] = _class_info(stmt, where, member)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring
        else:
            raise ModelFormatError(f"{where}: {member} line {getattr(stmt, 'lineno', '?')} has a "
                                   f"{type(stmt).__name__} statement, which TorchScript code does not contain; "
                                   "refused (the code is never run)")
    return found


def _class_info(cls: ast.ClassDef, where: str, member: str) -> ClassInfo:
    info = ClassInfo(cls.name)
    for stmt in cls.body:
        if isinstance(stmt, ast.FunctionDef):
            info.methods[stmt.name] = stmt
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            try:
                info.constants[stmt.target.id] = literal(stmt.value)
            except Refusal as exc:
                raise ModelFormatError(f"{where}: {member} class {cls.name}: {exc}") from None
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                and stmt.targets[0].id in ("__parameters__", "__buffers__"):
            try:
                names = literal(stmt.value)
            except Refusal as exc:
                raise ModelFormatError(f"{where}: {member} class {cls.name}: {exc}") from None
            if stmt.targets[0].id == "__parameters__" and isinstance(names, list):
                info.parameters = {n for n in names if isinstance(n, str)}
    return info


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass
class _Frame:
    module: ScriptModule | None  # whose method runs (a function keeps its caller's)
    where: str  # the function's name, for messages
    env: dict[str, Any] = field(default_factory=dict)
    member: str = ""  # the code file the function is in

    @property
    def path(self) -> str:
        return self.module.path if self.module is not None else ""


class ScriptTranslator(Translator):
    """The torch.export Translator's handler interface (`b`, `node`, `shape`, `known`) without a program: handlers
    called from the interpreter see what they see for a `.pt2`, without declared shapes."""

    def __init__(self, where: str, name: str) -> None:  # no program to read: Translator's fields only
        self.where = where
        self.b = Builder(name, where)
        self.tensor_values: dict[str, Any] = {}
        self.float_casts: list[str] = []
        self.spec = None
        self.symbols = None
        self.env = {}
        self.views = {}
        self.dtypes: dict[int, str] = {}  # a tensor value (by id) -> its dtype, as torch's meta tensors give it
        self.current: Any = None  # the `self` argument of the op being mapped, whose dtype `input_dtype` says

    def dtype_of(self, value: Any) -> str:
        """A tensor value's dtype ("float32", "int64", "bool"): what the reading recorded, else its array's, else
        float32 (a computed value whose op torch's meta kernels could not say)."""
        found = self.dtypes.get(id(value))
        if found is not None:
            return found
        known = self.known(value)
        if known is not None:
            return "bool" if known.dtype.kind == "b" else str(known.dtype) if known.dtype.kind in "iuf" else "float32"
        if isinstance(value, Node):
            return str(value.meta.get("dtype", "float32"))
        if isinstance(value, Lazy) and value.done is not None:
            return self.dtype_of(value.done)
        return "float32"

    def input_dtype(self) -> str | None:
        return None if self.current is None else self.dtype_of(self.current)


class Interpreter:
    """Walks a TorchScript archive's code from the root module's `forward`, building the graph."""

    def __init__(self, classes: Callable[[str], ClassInfo | ast.FunctionDef], constants: list[Any], where: str,
                 name: str, frozen: list[np.ndarray] | None = None) -> None:
        self.lookup = classes
        self.frozen = {id(a) for a in frozen or []}  # arrays of the module tree saved with requires_grad=False
        self.constants = constants
        self.where = where
        self.t = ScriptTranslator(where, name)
        self.depth = 0
        self.steps = 0
        self.replaced: dict[int, Any] = {}  # a tensor changed in place (`relu_`) -> its new value
        self.integer_inputs: set[str] = set()  # inputs read as floats that an embedding looks up (`_note_indices`)
        self.alive: list[Any] = []  # the values the dicts keyed by id() name, kept so that no id is reused
        self.leaves: dict[int, Any] = {}  # an array of the module tree -> its leaf (tied weights stay one)
        self.frame = _Frame(None, "forward")
        self.failed_at = ""  # the code file and line where the reading failed, said with the failure
        self.failed_in = ""  # the function and module that line is in
        self.schemas: dict[str, list[Any]] = {}
        self.views: dict[int, _View] = {}  # a tensor sharing another's memory (by id) -> how it was taken from it
        self.children: dict[int, list[Any]] = {}  # a tensor (by id) -> the views taken from it
        self.strides: dict[int, tuple[int, ...]] = {}  # a view (by id) -> its strides, where not row-major
        self.declared: dict[tuple[Any, ...], tuple[list[Any], list[Any]]] = {}  # torch's answers, by question

    # -- entry ------------------------------------------------------------------------------------
    def inputs_of(self, root: ScriptModule) -> list[str]:
        """The root's forward parameters after `self`: the model's input names."""
        fn = self._method(root, "forward")
        return [a.arg for a in fn.args.args[1:]]

    def run(self, root: ScriptModule, inputs: Mapping[str, tuple[int, ...]],
            dtypes: Mapping[str, str] | None = None) -> list[Node]:
        """The graph of the root's forward on inputs of these shapes (and dtypes: float32 where not given); its
        outputs, the tensors forward returns (a tuple's, a dict's values)."""
        fn = self._method(root, "forward")
        args = []
        for name, shape in inputs.items():
            dtype = (dtypes or {}).get(name, "float32")
            args.append(self.t.b.input(name, shape, dtype=dtype))
            self.t.dtypes[id(args[-1])] = dtype
        self.failed_at = self.failed_in = ""
        try:
            result = self._call(fn, root, args, {}, bound=True)
            return self._outputs(self._resolve(result))
        except Refusal as exc:  # which names the function and module already
            raise ModelFormatError(f"{self.where}: {exc}{self._failure_line()}") from None
        except RecursionError:
            raise ModelFormatError(f"{self.where}: the code nests too deeply to read") from None
        except ModelFormatError as exc:  # the memory budget's refusal, which names the file already
            raise ModelFormatError(f"{exc}{self._failure_line(True)}") from None
        except Exception as exc:  # anything else the code's values raise (a float past float64 made an int)
            raise ModelFormatError(f"{self.where}: the code cannot be read ({type(exc).__name__}: "
                                   f"{' '.join(str(exc).split())[:160]}){self._failure_line(True)}") from None

    def _failure_line(self, with_module: bool = False) -> str:
        """` (at code/__torch__/m.py line 12, forward of module fc)`: where the reading failed."""
        if not self.failed_at:
            return ""
        return f" (at {self.failed_at}, {self.failed_in})" if with_module else f" (at {self.failed_at})"

    def _outputs(self, result: Any) -> list[Node]:
        """The tensors among what forward returns; nested structures of tensors (a key/value cache) are not read
        and said so, numbers and None are left out."""
        labelled = list(result.items()) if isinstance(result, dict) else \
            list(enumerate(result)) if isinstance(result, list | tuple) else [(0, result)]
        nodes, nested = [], []
        for label, value in labelled:
            value = self._resolve(value)
            if self._is_tensor(value):
                try:
                    nodes.append(self._tensor(value, "output"))
                except Refusal as exc:
                    raise Refusal(f"the model's output {label!r} cannot be built ({str(exc)[:200]})") from None
                if isinstance(label, str) and nodes[-1].op.name != "input":
                    nodes[-1].meta.setdefault("returns", label)
            elif isinstance(value, list | tuple | dict):
                nested.append(repr(label))
        if not nodes:
            raise Refusal("the model's forward returns no tensor" + (
                f" (only nested structures: {', '.join(nested[:4])})" if nested else ""))
        if nested:
            self.t.b.warnings.append(
                f"the model's output{'s' if len(nested) > 1 else ''} {', '.join(nested[:4])} "
                f"{'are' if len(nested) > 1 else 'is'} a nested structure of tensors (a key/value cache?), which "
                "propscope does not read: the graph ends at the model's tensor outputs")
        return nodes

    # -- calls ------------------------------------------------------------------------------------
    def _method(self, module: ScriptModule, name: str) -> ast.FunctionDef:
        info = self.lookup(module.obj.name)
        if not isinstance(info, ClassInfo):
            raise Refusal(f"module {module.path or 'the root'} has class {module.obj.name[:80]}, not a class")
        fn = info.methods.get(name)
        if fn is None:
            raise Refusal(f"module {module.path or 'the root'} ({info.name}) has no method {name[:60]!r}")
        return fn

    def _call(self, fn: ast.FunctionDef, module: ScriptModule | None, args: list[Any], kwargs: dict[str, Any],
              bound: bool) -> Any:
        if self.depth >= MAX_DEPTH:
            raise Refusal(f"calls nest deeper than {MAX_DEPTH} (at {fn.name[:60]}): recursion, which real models "
                          "do not have")
        params = fn.args.args[1:] if bound else fn.args.args
        if fn.args.vararg or fn.args.kwarg or fn.args.kwonlyargs:
            raise Refusal(f"function {fn.name[:60]} takes *args or **kwargs")
        defaults = fn.args.defaults
        first_default = len(params) - len(defaults)
        env: dict[str, Any] = {}
        if len(args) > len(params):
            raise Refusal(f"{fn.name[:60]} called with {len(args)} arguments, it takes {len(params)}")
        for i, param in enumerate(params):
            if i < len(args):
                env[param.arg] = args[i]
            elif param.arg in kwargs:
                env[param.arg] = kwargs[param.arg]
            elif i >= first_default:
                env[param.arg] = literal(defaults[i - first_default])
            else:
                raise Refusal(f"{fn.name[:60]} called without its argument {param.arg[:40]!r}")
        if bound:
            env[fn.args.args[0].arg if fn.args.args else "self"] = module
        caller = self.frame
        self.frame = _Frame(module if bound else caller.module, fn.name, env, getattr(fn, _MEMBER, ""))
        self.depth += 1
        try:
            self._block(fn.body)
            return None
        except _Return as ret:
            return ret.value
        finally:
            self.depth -= 1
            self.frame = caller

    def _block(self, body: list[ast.stmt]) -> None:
        for stmt in body:
            self._statement(stmt)

    def _tick(self, steps: int = 1) -> None:
        """Count work done reading the code (statements, nodes made, numbers folded): a hostile file is refused
        within seconds, a real model takes a few percent of the bound."""
        self.steps += steps
        if self.steps > MAX_STEPS:
            raise Refusal(f"the code takes more than {MAX_STEPS} steps to read (a step is a statement or an "
                          f"expression, a graph node {NODE_STEPS}, {ELEMENTS_PER_STEP} numbers folded one)")

    def _statement(self, stmt: ast.stmt) -> None:
        try:
            self._interpret(stmt)
        except _Return:
            raise
        except RecursionError:
            raise  # nothing more is called this deep: `run` says it
        except Exception:
            if not self.failed_at:  # the innermost statement: where the failure is
                self.failed_at = f"{self.frame.member or 'the code'} line {getattr(stmt, 'lineno', '?')}"
                self.failed_in = self._here()
            raise

    def _interpret(self, stmt: ast.stmt) -> None:
        self._tick()
        if isinstance(stmt, ast.Assign):
            value = self._expr(stmt.value)
            for target in stmt.targets:
                self._assign(target, value)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self._assign(stmt.target, self._expr(stmt.value))
        elif isinstance(stmt, ast.Expr):
            self._expr(stmt.value)
        elif isinstance(stmt, ast.Return):
            raise _Return(None if stmt.value is None else self._expr(stmt.value))
        elif isinstance(stmt, ast.If):
            self._block(stmt.body if self._condition(stmt.test, "if") else stmt.orelse)
        elif isinstance(stmt, ast.For):
            self._for(stmt)
        elif isinstance(stmt, ast.Pass):
            return
        elif isinstance(stmt, ast.While):
            raise Refusal(f"a while loop in {self._here()}: its iterations depend on values computed at run time")
        else:
            raise Refusal(f"a {type(stmt).__name__} statement in {self._here()}, which propscope does not interpret")

    def _here(self) -> str:
        path = self.frame.path
        return f"{self.frame.where} of module {path}" if path else f"{self.frame.where} of the root module"

    def _assign(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.frame.env[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            items = self._resolve(value)
            if not isinstance(items, list | tuple) or len(items) != len(target.elts):
                raise Refusal(f"unpacking a {type(items).__name__} into {len(target.elts)} names in {self._here()}")
            for t, v in zip(target.elts, items, strict=True):
                self._assign(t, v)
        else:
            raise Refusal(f"assignment to a {type(target).__name__} in {self._here()}")

    def _condition(self, test: ast.expr, what: str) -> bool:
        value = self._resolve(self._expr(test))
        if isinstance(value, bool | int | float) or value is None:
            return bool(value)
        if isinstance(value, np.ndarray) and value.size == 1:
            return bool(value.item())
        raise Refusal(f"an {what} on a tensor's value in {self._here()}: which branch runs depends on the data")

    def _for(self, stmt: ast.For) -> None:
        if stmt.orelse:
            raise Refusal(f"a for-else loop in {self._here()}")
        items = self._resolve(self._expr(stmt.iter))
        if isinstance(items, range | list | tuple):
            if len(items) > MAX_ITERATIONS:
                raise Refusal(f"a loop of {len(items)} iterations in {self._here()} (more than {MAX_ITERATIONS} "
                              "will not be unrolled)")
        else:
            raise Refusal(f"a loop over a {type(items).__name__} in {self._here()}: its length is not known when "
                          "the file is read, so it cannot be unrolled")
        for item in list(items):
            self._assign(stmt.target, item)
            self._block(stmt.body)

    # -- expressions --------------------------------------------------------------------------------
    def _expr(self, node: ast.expr) -> Any:
        self._tick()
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str) and len(node.value) > MAX_LIST:
                raise Refusal(f"a string of {len(node.value)} characters")
            return node.value
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.Call):
            return self._call_expr(node)
        if isinstance(node, ast.List | ast.Tuple):
            if len(node.elts) > MAX_LIST:
                raise Refusal(f"a list of {len(node.elts)} elements in {self._here()} (more than {MAX_LIST})")
            items = [self._expr(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Subscript):
            return self._subscript(node)
        if isinstance(node, ast.UnaryOp):
            value = self._resolve(self._expr(node.operand))
            if isinstance(node.op, ast.USub) and _number(value):
                return -value
            if isinstance(node.op, ast.Not) and (_number(value) or value is None):
                return not value
            raise Refusal(f"a {type(node.op).__name__} of a {type(value).__name__} in {self._here()}")
        if isinstance(node, ast.IfExp):
            return self._expr(node.body if self._condition(node.test, "if-expression") else node.orelse)
        if isinstance(node, ast.Dict):
            if len(node.keys) > MAX_LIST:
                raise Refusal(f"a dict of {len(node.keys)} entries")
            keys = [self._resolve(self._expr(k)) if k is not None else None for k in node.keys]
            if not all(isinstance(k, str | int | float | bool) for k in keys):
                raise Refusal(f"a dict whose keys are not constants in {self._here()}")
            return {k: self._expr(v) for k, v in zip(keys, node.values, strict=True)}
        raise Refusal(f"a {type(node).__name__} expression in {self._here()}, which propscope does not interpret")

    def _name(self, name: str) -> Any:
        env = self.frame.env
        if name in env:
            return self._resolve(env[name])
        if name in ("torch", "ops", "__torch__", "CONSTANTS"):
            return Qualified(name)
        if name in _BUILTINS:
            return Builtin(name)
        if name in ("None", "True", "False"):  # Python 2 style names never appear; ast makes these Constants
            return {"None": None, "True": True, "False": False}[name]
        raise Refusal(f"an unknown name {name[:60]!r} in {self._here()}")

    def _attribute(self, node: ast.Attribute) -> Any:
        owner = self._expr(node.value)
        attr = node.attr
        if isinstance(owner, Qualified):
            if attr.startswith("__") and attr not in _DUNDER_OPS and not _MANGLED.fullmatch(attr):
                raise Refusal(f"attribute access to {attr[:40]} in {self._here()}, which TorchScript code does not "
                              "do")
            if owner.name == "CONSTANTS":
                return self._constant(attr)
            return Qualified(f"{owner.name}.{attr}")
        if attr.startswith("__") and attr.endswith("__"):
            raise Refusal(f"attribute access to {attr[:40]} in {self._here()}, which TorchScript code does not do")
        if isinstance(owner, ScriptModule):
            return self._module_attribute(owner, attr)
        raise Refusal(f"attribute {attr[:40]!r} of a {type(owner).__name__} in {self._here()}")

    def _constant(self, attr: str) -> Any:
        if not (attr.startswith("c") and attr[1:].isdigit()) or int(attr[1:]) >= len(self.constants):
            raise Refusal(f"CONSTANTS.{attr[:40]} is not in the archive's constants")
        # a 0-d constant stays a tensor (`torch.tensor(0.5)`, which traced code moves with `torch.to`): where the
        # code uses one as a number (a head count), `_bind` and the builtins read it as one
        return self.constants[int(attr[1:])]

    def _module_attribute(self, module: ScriptModule, attr: str) -> Any:
        state = module.state
        path = f"{module.path}.{attr}" if module.path else attr
        if attr in state:
            value = state[attr]
            if isinstance(value, Pickled):
                if not value.name.startswith("__torch__."):
                    raise Refusal(f"{path} is a {value.name[:80]}, not a module of the archive's code")
                return ScriptModule(value, path)
            if is_tensor(value):
                return self._leaf(module, attr, path, value)
            if isinstance(value, bool | int | float | str | type(None)):
                return value
            if isinstance(value, list | tuple) and len(value) <= MAX_LIST:
                items = [self._listed_leaf(module, attr, i, v) if is_tensor(v) else v for i, v in enumerate(value)]
                return items if isinstance(value, list) else tuple(items)
            if isinstance(value, dict) and len(value) <= MAX_LIST and all(
                    isinstance(k, str | int) and isinstance(v, bool | int | float | str | type(None))
                    for k, v in value.items()):
                return dict(value)  # a table of names (IntermediateLayerGetter's return_layers)
            raise Refusal(f"{path} holds a {type(value).__name__}, which propscope does not read")
        info = self.lookup(module.obj.name)
        if isinstance(info, ClassInfo):
            if attr in info.constants:
                return info.constants[attr]
            if attr in info.methods:
                return Method(module, attr)
        raise Refusal(f"module {module.path or 'the root'} has no attribute {attr[:60]!r}")

    def _listed_leaf(self, module: ScriptModule, attr: str, index: int, value: Any) -> Any:
        """A tensor in a list the module holds: the module's parameter or buffer where it is one of them (an RNN's
        `_flat_weights` are its `weight_ih_l0`, ...: the same tensors, which the pickle keeps one), else a constant
        named by its place in the list."""
        named = next((k for k, v in module.state.items() if v is value), None)
        if named is not None:
            return self._leaf(module, named, f"{module.path}.{named}" if module.path else named, value)
        path = f"{module.path}.{attr}.{index}" if module.path else f"{attr}.{index}"
        return self._leaf(module, f"{attr}.{index}", path, value)

    def _leaf(self, module: ScriptModule, attr: str, path: str, value: Any) -> Any:
        array = np.asarray(value)
        key = id(value)
        if key not in self.leaves:
            info = self.lookup(module.obj.name)
            if array.dtype.kind == "c" and isinstance(info, ClassInfo) and attr in info.parameters:
                raise Refusal(f"parameter {path!r} is complex; propscope trains real weights only")
            trained = isinstance(info, ClassInfo) and attr in info.parameters and array.dtype.kind == "f" \
                and id(value) not in self.frozen
            kind = "parameter" if trained else "constant"

            def make() -> Node:
                return self.t.b.leaf(kind, path, array, module=module_of(path))

            # complex values (a rotary embedding's rotations) are never a leaf: a constant, folded or made pairs
            self.leaves[key] = Lazy(make) if trained else array if array.dtype.kind == "c" else Stored(
                make, array=lambda: array)
            self.t.dtypes[id(self.leaves[key])] = "bool" if array.dtype.kind == "b" else str(array.dtype)
        return self.leaves[key]

    def _subscript(self, node: ast.Subscript) -> Any:
        owner = self._resolve(self._expr(node.value))
        if isinstance(node.slice, ast.Slice):
            raise Refusal(f"a slice expression in {self._here()}")
        index = self._resolve(self._expr(node.slice))
        if isinstance(owner, list | tuple) and isinstance(index, int) and not isinstance(index, bool):
            if not -len(owner) <= index < len(owner):
                raise Refusal(f"index {index} of a list of {len(owner)} in {self._here()}")
            return owner[index]
        if isinstance(owner, dict) and isinstance(index, str | int) and index in owner:
            return owner[index]
        raise Refusal(f"indexing a {type(owner).__name__} with a {type(index).__name__} in {self._here()}")

    def _call_expr(self, node: ast.Call) -> Any:
        func = self._expr(node.func)
        if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
            raise Refusal(f"a call with *args or **kwargs in {self._here()}")
        typed = isinstance(func, Builtin) and func.name in _TYPED  # `annotate(List[int], [])`: the type is not read
        args = [None if typed and i == 0 else self._expr(a) for i, a in enumerate(node.args)]
        kwargs = {str(k.arg): self._expr(k.value) for k in node.keywords}
        if isinstance(func, Method):
            fn = self._method(func.module, func.name)
            return self._call(fn, func.module, args, kwargs, bound=True)
        if isinstance(func, Builtin):
            return self._builtin(func.name, args, kwargs)
        if isinstance(func, Qualified):
            return self._qualified(func.name, args, kwargs)
        raise Refusal(f"a call of a {type(func).__name__} in {self._here()}")

    def _builtin(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        args = [self._resolve(a) for a in args]
        if name in ("annotate", "unchecked_cast") and len(args) == 2:
            return args[1]
        if name == "uninitialized":
            return Uninitialized()
        if name == "getattr" and len(args) == 2 and isinstance(args[0], ScriptModule) and isinstance(args[1], str):
            if args[1].startswith("__"):
                raise Refusal(f"getattr of {args[1][:40]} in {self._here()}")
            return self._module_attribute(args[0], args[1])
        if name == "range" and 1 <= len(args) <= 3 and all(_integer(a) for a in args):
            bounds = range(*args)
            try:
                length = len(bounds)
            except OverflowError:  # longer than a C ssize_t
                length = MAX_ITERATIONS + 1 if bounds else 0
                if length:
                    raise Refusal(f"a range of more than 2**63 in {self._here()} (more than {MAX_ITERATIONS} will "
                                  "not be unrolled)") from None
            if length > MAX_ITERATIONS:
                raise Refusal(f"a range of {length} in {self._here()} (more than {MAX_ITERATIONS} will not be "
                              "unrolled)")
            return bounds
        if name in ("int", "float", "bool") and len(args) == 1:
            value = _scalar_of(args[0])
            if value is None:
                raise Refusal(f"{name}() of a tensor computed from the data in {self._here()}")
            if name == "int" and isinstance(value, float) and not math.isfinite(value):
                raise Refusal(f"int() of {value} in {self._here()}, which no integer is")
            if name == "int" and not _INT64_MIN <= value <= _INT64_MAX:
                raise Refusal(f"int() of {value:.3g} in {self._here()}, outside int64")
            return {"int": int, "float": float, "bool": bool}[name](value)
        if name == "len" and len(args) == 1 and isinstance(args[0], list | tuple | str | dict):
            return len(args[0])
        raise Refusal(f"{name}() called as the code does in {self._here()}, which propscope does not interpret")

    def _qualified(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if name.startswith("__torch__."):
            return self._function(name, args, kwargs)
        parts = name.split(".")
        if len(parts) == 3 and parts[:2] == ["ops", "prim"]:
            return self._prim(parts[2], args, kwargs)
        if len(parts) == 3 and parts[:2] == ["ops", "aten"]:
            return self._torch_op(parts[2], args, kwargs)
        if len(parts) == 2 and parts[0] == "torch":
            return self._torch_op(parts[1], args, kwargs)
        raise Refusal(f"an unknown function {name[:80]} in {self._here()}")

    def _function(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        found = self.lookup(name)
        if not isinstance(found, ast.FunctionDef):
            raise Refusal(f"{name[:80]} called in {self._here()} is not a function of the archive's code")
        return self._call(found, None, args, kwargs, bound=False)

    def _prim(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        args = [self._resolve(a) for a in args]
        if name == "NumToTensor" and len(args) == 1 and _number(args[0]):
            return args[0]  # a size the tracer made a tensor: still the number it is
        if name == "RaiseException":
            said = args[0] if args and isinstance(args[0], str) else "an exception"
            raise Refusal(f"the code raises an exception in {self._here()} ({said[:160]!r}): the model refuses "
                          "these inputs")
        if name in ("min", "max") and args and all(_number(a) for a in args):
            return (min if name == "min" else max)(args)
        if name in ("min", "max") and len(args) == 1 and isinstance(args[0], list | tuple) and args[0] \
                and all(_number(a) for a in args[0]):
            return (min if name == "min" else max)(args[0])
        if name == "dtype" and len(args) == 1 and self._is_tensor(args[0]):
            return _C10_DTYPE.get(self.t.dtype_of(args[0]), 6)  # c10's number, as the code passes it on
        if name == "device":
            return Device("cpu")
        if name == "type" and len(args) == 1 and isinstance(args[0], Device):
            return args[0].name.partition(":")[0]  # `x.device.type`
        if name == "requires_grad" and len(args) == 1 and self._is_tensor(args[0]):
            return self.t.dtype_of(args[0]).startswith("float")  # propscope differentiates every float value
        if name in _DENSE_CPU and len(args) == 1 and self._is_tensor(args[0]):
            return False  # what the graph holds is a dense tensor on the CPU, whatever device it runs on later
        raise Refusal(f"an unknown function ops.prim.{name[:60]} in {self._here()}")

    # -- ATen ops ---------------------------------------------------------------------------------
    def _torch_op(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        args = [self._resolve(a) for a in args]
        kwargs = {k: self._resolve(v) for k, v in kwargs.items()}
        if any(isinstance(v, Uninitialized) for v in (*args, *kwargs.values())):
            raise Refusal(f"torch.{name} in {self._here()} uses a value no branch assigned")
        if name == "tensor" and args and not any(self._is_tensor(v) for v in (*args, *kwargs.values())):
            array = _tensor_of(args[0], kwargs.get("dtype", args[1] if len(args) > 1 else None))
            self._charge_made([array], [], name)
            return array
        if name in ("__is__", "__isnot__") and len(args) == 2 and not kwargs:
            same = _is(*args)  # `query is key` in MultiheadAttention: the same value, passed twice
            return same if name == "__is__" else not same
        plain = _PLAIN.get(name)
        if plain is not None and any(_number(v) for v in args) \
                and all(_number(v) or _scalar_constant(v, "iufb") or not self._is_tensor(v) for v in args):
            args = [_numbers_of(v) for v in args]  # `size // CONSTANTS.c0` (a head count): a number, as a tracer's
        on_container = name in _CONTAINER_OPS and bool(args) and isinstance(args[0], list | tuple | dict)
        if plain is not None and (on_container or not any(self._is_tensor(v) for v in (*args, *kwargs.values()))):
            try:
                value = plain(*args, **kwargs)
            except (TypeError, ValueError, ZeroDivisionError, OverflowError, IndexError) as exc:
                raise Refusal(f"torch.{name} of {_kinds(args)} in {self._here()}: {str(exc)[:100]}") from None
            if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
                raise Refusal(f"torch.{name} in {self._here()} makes an integer outside int64 (about "
                              f"2**{value.bit_length()}), which torch would overflow")
            if isinstance(value, list | tuple | dict) and not isinstance(args[0] if args else None, dict):
                charge(LIST_ITEM_BYTES * (len(value) + 1), f"a list made by torch.{name} in {self._here()}",
                       self.where)
            return value
        shaped = _SHAPES.get(name)
        if shaped is not None and args and self._is_tensor(args[0]):
            return shaped(self, args, kwargs)
        return self._aten(name, args, kwargs)

    def _aten(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        schema, named = self._bind(name, args, kwargs)
        key = name[:-1] if in_place(name) else name
        module = self.frame.path
        shapes, dtypes = self._declared(name, schema, named)
        overload = schema.overload_name or "default"
        if key == "_convolution_mode":  # a traced convolution with padding="same": conv2d's `padding` form
            key, overload = _exported_name(key, named, self._ndim(named.get("input"))), "padding"
        label = _exported_name(key, named, self._ndim(named.get("input")))
        # the overload bound (`gru.input`, `bernoulli_.float`): handlers tell an op's forms apart by it
        ctx = Ctx(self.t.b.fresh(f"{module}.{label}" if module else label), module, shapes,
                  f"torch.ops.aten.{key}.{overload}")
        if _integer(named.get("dtype")):  # the handlers read torch.export's numbering of dtypes, not c10's
            named = {**named, "dtype": _EXPORT_DTYPE.get(named["dtype"], -1)}
        target = named.get("self", named.get("input"))
        mark = len(self.t.b.graph)
        self.t.current = target
        try:
            handler = HANDLERS.get(key)
            if handler is None:
                raise Unmapped(f"propscope has no mapping for aten::{key}")
            result = handler(self.t, named, ctx)
            results = result if isinstance(result, list | tuple) else [result]
            for value, declared in zip(results, shapes, strict=False):
                if isinstance(value, Node) and declared is not None and value.shape != declared:
                    raise Unmapped(f"mapped to shape {value.shape}, torch gives {declared}")
        except (Unmapped, GraphError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError,
                OverflowError, AttributeError) as exc:  # as a .pt2's: a placeholder, and the graph still opens
            reason = str(exc)[:200] if isinstance(exc, Unmapped) else f"{type(exc).__name__}: {str(exc)[:200]}"
            if len(self.t.b.graph) != mark:
                self.t.b.warnings.append(f"torch.{name} in {self._here()}: partial mapping dropped ({reason[:120]})")
            result = self._placeholder(key, named, ctx, reason)
        finally:
            self.t.current = None
        self._charge_made(list(result) if isinstance(result, list | tuple) else [result], list(named.values()), name)
        made = len(self.t.b.graph) - mark
        if made:
            charge(made * NODE_BYTES, "the graph's nodes", self.where)
            self._tick(made * NODE_STEPS)
            if len(self.t.b.graph) > MAX_NODES:
                raise Refusal(f"the code makes more than {MAX_NODES} graph nodes")
        if isinstance(result, np.generic):
            result = np.asarray(result)
        for value, dtype in zip(result if isinstance(result, list | tuple) else [result], dtypes, strict=False):
            if dtype is not None and isinstance(value, Node | Lazy) and id(value) not in self.t.dtypes:
                self.alive.append(value)
                self.t.dtypes[id(value)] = dtype
        indices = named.get("indices")
        if key in ("embedding", "embedding_bag") and isinstance(indices, Node | Lazy):
            self._note_indices(self.t.node(indices, ctx))
        if not self._is_tensor(target):
            return result
        params = {k: v for k, v in named.items() if k not in ("self", "input")}
        if in_place(name) and key in _RESHAPES | _PERMUTES:  # `t_(x)`, `unsqueeze_(x)`: x laid out anew
            if result is not target:
                self._relaid(target, result, key, params, shapes)
        elif in_place(name) and result is not target:
            # `relu_(x)` changed x: every later use of x sees the result, and the tensors x views and is viewed by
            self._written(target, name)
            self._replace(target, result)
            self._write_through(target, ctx)
        elif not isinstance(target, Sequence | Missing):  # a recurrent output's steps are not views of a tensor
            with contextlib.suppress(Refusal):  # a value whose shape is not known (a placeholder's): no view
                result = self._note_alias(key, target, params, result, shapes, dtypes)
        return result

    def _ndim(self, value: Any) -> int | None:
        try:
            return len(self.shape(value)) if self._is_tensor(value) else None
        except Refusal:
            return None

    def _charge_made(self, results: list[Any], inputs: list[Any], name: str) -> None:
        """Arrays an op folded at read time count against the open's memory budget, as the torch.export reader's
        do (`_charge_folded`), every one of them: a view shares its base's memory, an input passed through is
        counted already."""
        for value in results:
            if isinstance(value, np.ndarray) and value.flags.owndata and not any(value is v for v in inputs):
                charge(value.nbytes, f"the constant folded by torch.{name} in {self._here()}", self.where)
                self._tick(value.size // ELEMENTS_PER_STEP)

    def _note_indices(self, indices: Node) -> None:
        """An input read as a float that an embedding looks up (through reshapes and slices): token ids, which a
        scripted archive does not say are integers; the reader opens it again with that input int64."""
        node, seen = indices, 0
        while node.op.name != "input" and seen < 64:
            computed = [n for n in node.inputs if not n.is_leaf or n.op.name == "input"]
            if len(computed) != 1:
                return
            node, seen = computed[0], seen + 1
        if node.op.name == "input" and str(node.meta.get("dtype", "float32")).startswith("float"):
            self.integer_inputs.add(node.name)

    def _placeholder(self, key: str, named: dict[str, Any], ctx: Ctx, reason: str) -> Any:
        """An op propscope cannot map: an `unsupported` node of the shape torch gives (stepping stops before it),
        or, where torch cannot say its shape, a value that refuses the ops that use it (the `.pt2` reader's own)."""
        results = self.t._placeholder(key, named, ctx, reason)
        return results[0] if len(results) == 1 else results

    # -- views: tensors sharing another's memory, which an in-place op writes through ----------------------
    def _note_alias(self, key: str, target: Any, params: dict[str, Any], result: Any,
                    shapes: list[tuple[int, ...] | None], dtypes: list[str | None]) -> Any:
        """What `result` of op `key` on `target` shares with it, so that an in-place op on either reaches the other
        as in torch: a view is recorded (`_view`), a copy that the handler left as the same value (`clone`, a
        `contiguous` of a strided tensor, a cast) becomes a value of its own. The result, as later ops see it."""
        if key in _PARTS and isinstance(result, list | tuple):
            self._note_parts(key, target, params, list(result), shapes)
            return result
        if result is target:
            changed = dtypes[0] is not None and dtypes[0] != self.t.dtype_of(target)
            copied = key in _COPIES or key.endswith("_copy") or (key in _CASTS and changed) or \
                (key == "contiguous" and id(target) in self.strides)
            if copied:
                return self._copy_of(target)
            if key not in _RESHAPES | _PERMUTES:
                return result
            # a view that changes nothing (`view` to the same shape) is still a tensor of its own in torch: a later
            # `t_` of it lays out it, not the tensor it views
            alias, shape = self._copy_of(target), self.shape(target)
            self._view(alias, _View(target, key, params, shape, shape), self.strides.get(id(target)))
            return alias
        if not self._is_tensor(result) or key not in _VIEWS:
            return result
        base_shape = self.shape(target)
        shape = shapes[0] if shapes and shapes[0] is not None else self.shape(result)
        base_strides = self.strides.get(id(target), _row_major(base_shape))
        if key in _RESHAPES:
            strides = _reshaped_strides(base_shape, base_strides, shape)
            unwritable = id(target) in self.views and self.views[id(target)].kind in _UNWRITABLE
            if strides is None and not unwritable:
                return result  # torch's reshape of a strided tensor copies it: no view
            self._view(result, _View(target, key, params, base_shape, shape), strides)
        elif key in _PERMUTES:
            perm = _permutation(key, params, len(base_shape))
            self._view(result, _View(target, key, params, base_shape, shape), tuple(base_strides[p] for p in perm))
        elif key in ("slice", "select") and base_shape:
            dim = int(params.get("dim", 0)) % len(base_shape)
            kept = list(base_strides)
            if key == "select":
                del kept[dim]
            else:
                kept[dim] *= int(params.get("step", 1))
            self._view(result, _View(target, key, params, base_shape, shape), tuple(kept))
        else:  # an expand, a diagonal, as_strided: in-place ops on these are refused (`_written`)
            self._view(result, _View(target, key, params, base_shape, shape), None)
        return result

    def _note_parts(self, key: str, target: Any, params: dict[str, Any], parts: list[Any],
                    shapes: list[tuple[int, ...] | None]) -> None:
        """`chunk`, `split`, `unbind`: each part a slice (a selection) of the tensor, where torch gave their shapes;
        else each part a view that an in-place op may not write into."""
        base_shape = self.shape(target)
        known = len(shapes) == len(parts) and all(s is not None for s in shapes) and bool(base_shape)
        dim = int(params.get("dim", 0)) % len(base_shape) if base_shape else 0
        start = 0
        for part, shape in zip(parts, shapes if known else [None] * len(parts), strict=True):
            if not self._is_tensor(part) or part is target:
                continue
            if shape is None:
                self._view(part, _View(target, key, params, base_shape, ()), None)
                continue
            kind = "select" if key == "unbind" else "slice"
            cut = {"dim": dim, "index": start} if kind == "select" else \
                {"dim": dim, "start": start, "end": start + shape[dim], "step": 1}
            start += 1 if kind == "select" else shape[dim]
            self._note_alias(kind, target, cut, part, [shape], [None])

    def _view(self, view: Any, how: _View, strides: tuple[int, ...] | None) -> None:
        self.alive += [view, how.base]
        self.views[id(view)] = how
        self.children.setdefault(id(how.base), []).append(view)
        if strides is None or strides != _row_major(how.shape):
            self.strides[id(view)] = strides if strides is not None else (-1,) * len(how.shape)

    def _copy_of(self, value: Any) -> Any:
        """`value` as a new tensor of its own (what torch's `clone` makes): the same node, another identity, so
        that an in-place op on either leaves the other as it was."""
        copy: Any
        if isinstance(value, Stored):
            copy = Stored(value.get, array=value.array)
        elif isinstance(value, Lazy):
            copy = Lazy(value.get)
        elif isinstance(value, Node):
            copy = Lazy(lambda: value)
        elif isinstance(value, np.ndarray):
            copy = value.view()
        elif isinstance(value, Transposed):
            copy = Transposed(value.leaf, value.node)
        else:
            return value
        self.alive += [value, copy]
        self.t.dtypes[id(copy)] = self.t.dtype_of(value)
        return copy

    def _written(self, view: Any, op: str) -> None:
        """Refuses, before anything changes, an in-place op on a view that cannot be written back: an expand, a
        diagonal, a strided window of the tensor it views, anywhere up the chain of views."""
        seen: set[int] = set()
        while id(view) in self.views and id(view) not in seen:
            seen.add(id(view))
            how = self.views[id(view)]
            if how.kind in _UNWRITABLE or how.kind in _PARTS:
                raise Refusal(f"torch.{op} in {self._here()} changes in place a {how.kind} of another tensor, "
                              "which propscope cannot write back into that tensor")
            view = how.base

    def _write_through(self, view: Any, ctx: Ctx) -> None:
        """An in-place op on a view (`x.view(-1).add_(1)`, `x[:, 0].mul_(2)`, `x.t().copy_(y)`) changes the tensor
        it was taken from: that tensor rebuilt with the view's new values put back (reshaped, transposed back,
        scattered in), up the chain of views, as the `.pt2` reader does; the tensor's other views see it too."""
        seen: set[int] = set()
        while id(view) in self.views and id(view) not in seen:
            seen.add(id(view))
            how = self.views[id(view)]
            current, src = self._resolve(how.base), self._resolve(view)
            self._replace(current, self._put_back(how, current, src, ctx), came_from=src)
            view = how.base

    def _put_back(self, how: _View, current: Any, src: Any, ctx: Ctx) -> Any:
        """The tensor `how` views, its view's values now `src`: made when something uses it (a tensor changed
        through a view is often never read again), at once where both are constants."""
        if how.kind in _RESHAPES:
            op, args = "reshape", {"self": src, "shape": list(how.base_shape)}
        elif how.kind in _PERMUTES:
            perm = _permutation(how.kind, how.params, len(how.base_shape))
            op, args = "permute", {"self": src, "dims": [perm.index(i) for i in range(len(perm))]}
        else:
            op = "slice_scatter" if how.kind == "slice" else "select_scatter"
            args = {**how.params, "self": current, "src": src}
        name, module = f"{ctx.name}.{op}", ctx.module

        def make() -> Any:
            step = Ctx(self.t.b.fresh(name), module, [how.base_shape], f"torch.ops.aten.{op}.default")
            try:
                return HANDLERS[op](self.t, args, step)
            except (Unmapped, GraphError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError,
                    OverflowError, AttributeError) as exc:
                raise Unmapped(f"an in-place op on a {how.kind} cannot be written back into the tensor it views "
                               f"({str(exc)[:160]})") from None

        if self.t.known(src) is not None and (op == "reshape" or op == "permute" or self.t.known(current) is not None):
            return make()
        updated = Lazy(make)
        self.alive.append(updated)
        self.t.dtypes[id(updated)] = self.t.dtype_of(current)
        return updated

    def _replayed(self, how: _View, base: Any, module: str) -> Any:
        """The view `how` taken again from `base`, the tensor's new value, when something uses it."""
        def make() -> Any:
            step = Ctx(self.t.b.fresh(f"{module}.{how.kind}" if module else how.kind), module, [how.shape],
                       f"torch.ops.aten.{how.kind}.default")
            return HANDLERS[how.kind](self.t, {**how.params, "self": base}, step)

        return Lazy(make)

    def _relaid(self, target: Any, result: Any, key: str, params: dict[str, Any],
                shapes: list[tuple[int, ...] | None]) -> None:
        """`t_(x)`, `unsqueeze_(x)`: x itself becomes a view of its old layout, whose memory it keeps. That old
        layout is kept as a value of its own, taking x's place among the views, and x is the new view of it."""
        old = self._copy_of(target)
        how = self.views.get(id(target))
        if how is not None:  # `old`, not x, is now what the tensor x viewed has among its views
            siblings = self.children.get(id(how.base), [])
            siblings[:] = [c for c in siblings if self._resolve(c) is not target]
            self._view(old, _View(how.base, how.kind, how.params, how.base_shape, how.shape),
                       self.strides.get(id(target)))
        elif id(target) in self.strides:
            self.strides[id(old)] = self.strides[id(target)]
        for child in self.children.pop(id(target), []):
            view = self.views.get(id(child))
            if view is not None and view.base is target:
                self.views[id(child)] = _View(old, view.kind, view.params, view.base_shape, view.shape)
                self.children.setdefault(id(old), []).append(child)
        self._note_alias(key, old, params, result, shapes, [None])
        self.alive.append(target)
        self.replaced[id(target)] = result

    def _replace(self, old: Any, new: Any, came_from: Any = None) -> None:
        """`old` is `new` from now on (an in-place op changed it); `old` is kept alive, so its id stays its own.
        `new` views what `old` viewed; the views taken from `old` are taken again from `new` when used, all but
        the one the change came through (`came_from`), which is current already."""
        if new is old:
            return
        self.alive += [old, new]
        self.replaced[id(old)] = new
        if id(old) in self.t.dtypes and self._is_tensor(new):
            self.t.dtypes.setdefault(id(new), self.t.dtypes[id(old)])
        how = self.views.get(id(old))
        if how is not None and id(new) not in self.views:
            self._view(new, how, self.strides.get(id(old)))
        module, done = self.frame.path, set()
        for child in self.children.pop(id(old), []):
            current = self._resolve(child)
            view = self.views.get(id(child))
            if view is None or current is new or id(current) in done:
                continue
            done.add(id(current))
            if current is came_from:
                self.children.setdefault(id(new), []).append(current)
                continue
            retaken = self._replayed(view, new, module)
            self.t.dtypes[id(retaken)] = self.t.dtype_of(current)
            self._view(retaken, _View(new, view.kind, view.params, view.base_shape, view.shape),
                       self.strides.get(id(child)))
            self._replace(current, retaken)

    def _schemas(self, name: str) -> list[Any]:
        if name not in self.schemas:
            try:
                import torch
            except ImportError:
                raise Refusal("reading a TorchScript archive's code needs PyTorch for the signatures of its ops: "
                              f"{TORCH_INSTALL}") from None
            try:
                found = torch._C._jit_get_schemas_for_operator(f"aten::{name}")
            except RuntimeError:
                found = []
            # `dtype_layout` ends in "out" too: only `out` and `*_out` overloads write into an argument
            self.schemas[name] = [s for s in found if s.overload_name != "out" and not s.overload_name.endswith("_out")
                                  and not any(a.name == "out" and a.kwarg_only for a in s.arguments)]
        return self.schemas[name]

    def _bind(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """The op's schema and its arguments by their names there, the overload chosen by what the values are."""
        schemas = self._schemas(name)
        if not schemas:
            raise Refusal(f"an unknown function torch.{name[:60]} in {self._here()}")
        for schema in schemas:
            named = self._fit(schema, args, kwargs)
            if named is not None:
                return schema, named
        raise Refusal(f"torch.{name} in {self._here()} is called with {_kinds(args)}, which fits none of its "
                      "signatures")

    def _declared(self, name: str, schema: Any, named: dict[str, Any]
                  ) -> tuple[list[tuple[int, ...] | None], list[str | None]]:
        """The shapes and dtypes of the op's outputs, as torch's own shape functions give them on "meta" tensors (no
        data, no computation: the declared shapes a `.pt2` records); [None] where torch cannot say or is not asked.

        Torch is asked only where that is safe by construction (`_meta_arguments`): a functional op returning
        tensors, given only meta tensors, numbers, vetted dtypes and modes, its device forced to meta. An in-place
        op returns the tensor it changed, whose shape and dtype are known without asking."""
        if schema.is_mutable:
            target = named.get("self")
            if in_place(name) and len(schema.returns) == 1 and self._is_tensor(target):
                relaid = name[:-1] in _RESHAPES | _PERMUTES  # `t_`, `unsqueeze_`: the tensor's shape changes
                return [None if relaid else self.shape(target)], [self.t.dtype_of(target)]
            return [None], [None]
        prepared = self._meta_arguments(schema, named)
        if prepared is None:
            return [None], [None]
        key = (name, schema.overload_name, tuple(sorted(prepared.items())))
        if key not in self.declared:
            if len(self.declared) >= MAX_META_CACHE:
                self.declared.clear()
            self.declared[key] = _ask_meta(name, schema.overload_name, prepared)
        shapes, dtypes = self.declared[key]
        return list(shapes), list(dtypes)

    def _meta_arguments(self, schema: Any, named: dict[str, Any]) -> dict[str, Any] | None:
        """The op's arguments as torch's shape functions may be given them (tensors as `("tensor", shape,
        dtype)`, lists as tuples, the device as meta), hashable; None where the rule does not ask torch: an op
        returning anything but tensors, an argument of a kind that cannot be vetted (a file name, a generator, a
        storage), a value outside int64, a tensor or a size of more than MAX_META_ELEMENTS elements, a factory
        without a device argument to put on meta."""
        if not schema.returns or not all(str(r.type) in ("Tensor", "List[Tensor]") for r in schema.returns):
            return None
        parts = any(str(r.type) == "List[Tensor]" for r in schema.returns)
        kinds = {a.name: str(a.real_type) for a in schema.arguments}
        takes_tensor = any("Tensor" in kind for kind in kinds.values())
        if not takes_tensor and "device" not in kinds:
            return None  # a factory must be put on meta: one without a device would run on the CPU
        prepared: dict[str, Any] = {}
        for arg, value in named.items():
            kind = kinds[arg]
            if kind.startswith("Optional[") and value is None:
                prepared[arg] = None
                continue
            kind = kind.removeprefix("Optional[").removesuffix("]") if kind.startswith("Optional[") else kind
            if kind == "Device":
                continue  # put on meta below, whatever the code names
            vetted = self._meta_value(kind, arg, value, parts)
            if vetted is _REFUSED:
                return None
            prepared[arg] = vetted
        if "device" in kinds:
            prepared["device"] = "meta"
        return prepared

    def _meta_value(self, kind: str, arg: str, value: Any, parts: bool) -> Any:
        if "Tensor" in kind:
            items = value if kind.startswith("List[") and isinstance(value, list | tuple) else [value]
            if kind.startswith("List[") and not isinstance(value, list | tuple):
                return _REFUSED
            vetted: list[Any] = []
            for item in items:
                if item is None and "Optional[Tensor]" in kind:
                    vetted.append(None)
                    continue
                if isinstance(item, Missing) or not self._is_tensor(item):
                    return _REFUSED
                shape = self.shape(item)
                # an op returning a list makes one output per step of a dimension (`unbind`): short ones only
                if math.prod(shape) > MAX_META_ELEMENTS or (parts and any(d > MAX_LIST for d in shape)):
                    return _REFUSED
                vetted.append(("tensor", shape, self.t.dtype_of(item)))
            return tuple(vetted) if kind.startswith("List[") else vetted[0]
        if kind == "ScalarType":
            known = _integer(value) and not isinstance(value, bool) and value in _C10_DTYPE.values()
            return value if known else _REFUSED
        if kind == "Layout":
            return value if value == 0 and not isinstance(value, bool) else _REFUSED  # strided only
        if kind == "MemoryFormat":
            return value if _integer(value) and 0 <= value <= 3 else _REFUSED
        if kind == "str":
            ok = arg in _META_STRINGS and isinstance(value, str) and len(value) <= 64 and value.isprintable()
            return value if ok else _REFUSED
        if kind in _META_NUMBERS:
            return value if _plain_number(value) else _REFUSED
        if kind.startswith("List[") and kind[5:-1] in _META_NUMBERS:
            if not isinstance(value, list | tuple) or len(value) > 64 or not all(_plain_number(v) for v in value):
                return _REFUSED
            if math.prod(abs(v) for v in value if isinstance(v, int)) > MAX_META_ELEMENTS:
                return _REFUSED  # a size: its product bounded before torch loops over it
            return tuple(value)
        return _REFUSED  # Generator, Storage, Stream, Any, ...: never passed through

    def _fit(self, schema: Any, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        params = list(schema.arguments)
        positional = [p for p in params if not p.kwarg_only]
        if len(args) > len(positional) or any(k not in {p.name for p in params} for k in kwargs):
            return None
        named: dict[str, Any] = {}
        for i, param in enumerate(params):
            if i < len(args) and not param.kwarg_only:
                value = args[i]
            elif param.name in kwargs:
                value = kwargs[param.name]
            elif param.has_default_value():
                continue
            else:
                return None
            if not self._fits(str(param.type), value):
                return None
            # a 0-d constant where the op takes a number (`view(x, [b, CONSTANTS.c0])`): the number it holds
            named[param.name] = value if "Tensor" in str(param.type) else _numbers_of(value)
        return named

    def _fits(self, kind: str, value: Any) -> bool:
        if kind.startswith("Optional[") and value is None:
            return True
        kind = kind.removeprefix("Optional[").removesuffix("]") if kind.startswith("Optional[") else kind
        if kind == "Tensor":
            return self._is_tensor(value)
        if kind in ("int", "SymInt", "ScalarType", "Layout", "MemoryFormat"):
            return _integer(value) or _scalar_constant(value, "iu")
        if kind in ("float", "number", "Scalar", "complex"):
            return _number(value) or _scalar_constant(value, "iuf")
        if kind == "bool":
            return isinstance(value, bool | int) and not isinstance(value, float)
        if kind == "str":
            return isinstance(value, str)
        if kind.startswith("List[") and isinstance(value, list | tuple):
            inner = kind[5:-1]
            return all(self._fits(inner, v) for v in value) if inner != "t" else True
        if kind == "Device":
            return isinstance(value, Device | str)
        return kind in ("Generator", "Any", "t")

    # -- values -----------------------------------------------------------------------------------
    def _resolve(self, value: Any) -> Any:
        """A value as it is now: a tensor changed in place since is its new value."""
        seen = 0
        while isinstance(value, Node | Lazy | np.ndarray) and id(value) in self.replaced and seen < 10_000:
            value = self.replaced[id(value)]
            seen += 1
        # ids of the values changed in place are those of live objects (kept in `alive`): no other shares one
        if isinstance(value, list) and self.replaced and not self.replaced.keys().isdisjoint(map(id, value)):
            return [self._resolve(v) for v in value]
        return value

    @staticmethod
    def _is_tensor(value: Any) -> bool:
        return isinstance(value, Node | Lazy | Transposed | Sequence | Missing | np.ndarray)  # 0-d: `new_ones(x, [])`

    def _tensor(self, value: Any, hint: str) -> Node:
        module = self.frame.path
        try:
            return self.t.node(value, Ctx(hint, module, [None], hint))
        except Unmapped as exc:
            raise Refusal(f"a value of {self._here()} cannot be a tensor ({exc})") from None

    def shape(self, value: Any) -> tuple[int, ...]:
        try:
            return tuple(int(d) for d in self.t.shape(value))
        except Unmapped as exc:
            raise Refusal(f"the shape of a value in {self._here()} is not known ({exc})") from None


# -- what the interpreter computes itself --------------------------------------------------------------
def _number(value: Any) -> bool:
    return isinstance(value, int | float)


def _integer(value: Any) -> bool:
    return isinstance(value, int)


def _scalar_constant(value: Any, kinds: str) -> bool:
    """A 0-d array (a constant of the archive, `torch.tensor(8)`) of one of these NumPy kinds."""
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in kinds


def _numbers_of(value: Any) -> Any:
    """0-d arrays (in a list too) as the Python numbers they hold; anything else as it is."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    if isinstance(value, list | tuple) and any(isinstance(v, np.ndarray) for v in value):
        return type(value)(_numbers_of(v) for v in value)
    return value


def _scalar_of(value: Any) -> int | float | bool | None:
    if isinstance(value, int | float | bool):
        return value
    if isinstance(value, np.ndarray | np.generic) and np.size(value) == 1:
        return value.item()
    return None


def _kinds(args: list[Any]) -> str:
    names = [type(a).__name__ if not isinstance(a, Node | Lazy) else "tensor" for a in args[:6]]
    return "(" + ", ".join(names) + ")"


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_REFUSED = object()  # an argument torch's shape functions are not given
_META_NUMBERS = frozenset({"int", "SymInt", "float", "bool", "number", "Scalar"})
# the string arguments torch's shape functions may be given: modes and equations (a file name never)
_META_STRINGS = frozenset({"rounding_mode", "approximate", "equation", "mode", "padding_mode", "side", "reduce",
                           "reduction", "indexing", "padding", "interpolation"})


def _plain_number(value: Any) -> bool:
    """A bool, a float, or an int that fits in int64 (what torch's number arguments hold)."""
    return isinstance(value, bool | float) or (isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX)


def _ask_meta(name: str, overload: str, prepared: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Torch's shapes and dtypes for `aten::name.overload` on the vetted arguments (`_meta_arguments`), its
    tensors empty on the meta device; [None] where torch raises (an argument its meta kernel does not take)."""
    import torch

    dtypes = {dtype: getattr(torch, dtype) for dtype in _C10_DTYPE}

    def meta(value: Any) -> Any:
        if isinstance(value, tuple) and len(value) == 3 and value[0] == "tensor":
            return torch.empty(value[1], dtype=dtypes.get(value[2], torch.float32), device="meta")
        if isinstance(value, tuple):
            return [meta(v) for v in value]
        return value

    try:
        op = getattr(getattr(torch.ops.aten, name), overload or "default")
        out = op(**{k: meta(v) for k, v in prepared.items()})
    except Exception:  # torch raises anything for arguments its meta kernel does not take
        return [None], [None]
    outs = out if isinstance(out, list | tuple) else [out]
    shapes = [tuple(int(d) for d in o.shape) if isinstance(o, torch.Tensor) else None for o in outs]
    kinds = [str(o.dtype).removeprefix("torch.") if isinstance(o, torch.Tensor) else None for o in outs]
    return shapes or [None], kinds or [None]


# c10's ScalarType numbers (TorchScript code's `dtype=6`) -> torch.export's (`_aten.SCALAR_TYPES`, the handlers')
_EXPORT_DTYPE = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 7, 7: 8, 11: 12, 15: 13, 27: 28, 28: 34, 29: 35}
_C10_DTYPE = {"uint8": 0, "int8": 1, "int16": 2, "int32": 3, "int64": 4, "float16": 5, "float32": 6, "float64": 7,
              "bool": 11, "bfloat16": 15}
_NUMPY_OF_C10 = {code: name for name, code in _C10_DTYPE.items() if name != "bfloat16"}


def _tensor_of(data: Any, dtype: Any) -> np.ndarray:
    """`torch.tensor(1.5)`, `torch.tensor([0, 1])`: numbers written in the code, as a constant array."""
    count = 0

    def numbers(value: Any, depth: int = 0) -> bool:
        nonlocal count
        if isinstance(value, list | tuple):
            count += len(value)
            if count > MAX_TENSOR_LITERAL:
                raise Refusal(f"torch.tensor of more than {MAX_TENSOR_LITERAL} numbers")
            return depth < 8 and len(value) <= MAX_LIST and all(numbers(v, depth + 1) for v in value)
        return _number(value)

    if not numbers(data):
        raise Refusal(f"torch.tensor of a {type(data).__name__}")
    array = np.asarray(data)
    wanted = _NUMPY_OF_C10.get(dtype) if _integer(dtype) else None
    return array.astype(wanted if wanted is not None else np.float32 if array.dtype.kind == "f" else array.dtype)


# ops on a list or a dict the code made, whatever it holds (`features.append(x)`, `out["out"] = x`)
_CONTAINER_OPS = frozenset({"append", "_set_item", "copy", "len", "list", "slice"})
_DENSE_CPU = frozenset({"is_nested", "is_sparse", "is_quantized", "is_mkldnn", "is_meta", "is_cuda", "is_xpu",
                        "is_mps", "is_vulkan"})
_TYPED = frozenset({"annotate", "unchecked_cast", "uninitialized", "isinstance"})
_BUILTINS = frozenset({"int", "float", "bool", "range", "getattr", "annotate", "unchecked_cast", "uninitialized",
                       "len"})


def _div(a: Any, b: Any, rounding_mode: str | None = None) -> Any:
    if rounding_mode == "trunc":
        return math.trunc(a / b) if isinstance(a, int) and isinstance(b, int) else float(math.trunc(a / b))
    if rounding_mode == "floor":
        return a // b
    return a / b


def _is(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a is b


def _format(text: Any, *args: Any) -> str:
    """`torch.format`, only ever in a message: `{}` filled with short reprs, never `str.format` (whose field
    syntax reaches attributes)."""
    out = str(text)[:1000]
    for arg in args:
        out = out.replace("{}", repr(arg)[:60] if isinstance(arg, int | float | str | list | tuple) else "?", 1)
    return out


def _slice(items: Any, start: Any = None, end: Any = None, step: int = 1) -> Any:
    if not isinstance(items, list | tuple):
        raise TypeError("a slice of something other than a list")
    return list(items[start:end:step])


def _append(items: Any, value: Any) -> None:
    if not isinstance(items, list) or len(items) >= MAX_LIST:
        raise ValueError("append to something other than a short list")
    items.append(value)


def _copy(items: Any) -> Any:
    """`torch.copy` of a list or a dict (`shift_size.copy()`): a list the code may then change."""
    if isinstance(items, list | tuple):
        return list(items)
    if isinstance(items, dict):
        return dict(items)
    raise TypeError("a copy of something other than a list or a dict")


def _set_item(items: Any, index: Any, value: Any) -> Any:
    """`torch._set_item(xs, i, v)`, TorchScript's `xs[i] = v` on a list or a dict the code made."""
    in_list = isinstance(items, list) and _integer(index) and -len(items) <= index < len(items)
    in_dict = isinstance(items, dict) and isinstance(index, str | int) and (index in items or len(items) < MAX_LIST)
    if not (in_list or in_dict):
        raise IndexError("an item set outside a list or a dict")
    items[index] = value
    return items


def _flags(items: Any) -> list[Any]:
    if not isinstance(items, list | tuple) or not all(_number(v) for v in items):
        raise TypeError("all or any of something other than a list of bools")
    return list(items)


def _sum(items: Any) -> Any:
    if not isinstance(items, list | tuple) or not all(_number(v) for v in items):
        raise TypeError("a sum of something other than a list of numbers")
    return sum(items)


_PLAIN: dict[str, Callable[..., Any]] = {  # on numbers, lists, strings and None (no tensor among the arguments)
    "add": lambda a, b: a + b if not isinstance(a, str | list | tuple) or len(a) + len(b) <= MAX_LIST else _too_long(),
    "sub": lambda a, b: a - b, "rsub": lambda a, b, alpha=1: b - alpha * a,
    "mul": lambda a, b: a * b if _number(a) and _number(b) else _too_long(),
    "div": _div, "floordiv": lambda a, b: a // b, "floor_divide": lambda a, b: a // b,
    "remainder": lambda a, b: a % b, "neg": lambda a: -a, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b,
    "lt": lambda a, b: a < b, "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "__is__": _is, "__isnot__": lambda a, b: not _is(a, b), "__not__": lambda a: not a,
    "__and__": lambda a, b: a and b, "__or__": lambda a, b: a or b, "len": len, "format": _format,
    "list": lambda a: list(a), "slice": _slice, "append": _append, "floor": math.floor, "ceil": math.ceil,
    "sqrt": math.sqrt, "pow": lambda a, b: a**b if abs(b) <= 64 else _too_long(),
    "__contains__": lambda a, b: b in a, "warn": lambda *a, **k: None,
    "device": lambda kind, index=None: Device(str(kind)[:40]),
    # TorchScript's builtins on the lists and dicts the code makes
    "copy": _copy, "_set_item": _set_item, "sum": _sum, "dict": lambda: {},
    "__range_length": lambda lo, hi, step: len(range(lo, hi, step)),
    "all": lambda items: all(_flags(items)), "any": lambda items: any(_flags(items)),
    # propscope steps the backward pass and runs no autocast: the code takes the paths of training's autograd
    # (MultiheadAttention's fast path is for inference without gradients)
    "is_grad_enabled": lambda: True, "is_autocast_enabled": lambda *device: False,
    "__derive_index": lambda index, start, step: start + index * step,
}


def _too_long() -> Any:
    raise ValueError("a value larger than propscope computes at read time")


def _size(interp: Interpreter, args: list[Any], kwargs: dict[str, Any]) -> Any:
    shape = interp.shape(args[0])
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    if dim is None:
        return list(shape)
    if not _integer(dim) or not -len(shape) <= dim < len(shape):
        raise Refusal(f"torch.size of dimension {dim!r} of a {len(shape)}-D tensor in {interp._here()}")
    return shape[dim]


def _dim(interp: Interpreter, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return len(interp.shape(args[0]))


def _numel(interp: Interpreter, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return math.prod(interp.shape(args[0]))


def _len(interp: Interpreter, args: list[Any], kwargs: dict[str, Any]) -> Any:
    shape = interp.shape(args[0])
    if not shape:
        raise Refusal(f"torch.len of a 0-d tensor in {interp._here()}")
    return shape[0]


_SHAPES: dict[str, Callable[[Interpreter, list[Any], dict[str, Any]], Any]] = {
    "size": _size, "dim": _dim, "numel": _numel, "len": _len}


# -- views: which ops share their input's memory, and how a write into the result reaches the input ------------------
@dataclass(frozen=True)
class _View:
    """How a tensor was taken from `base` (the op, its arguments but the tensor), and both shapes."""

    base: Any
    kind: str
    params: dict[str, Any]
    base_shape: tuple[int, ...]
    shape: tuple[int, ...]


# the same elements in another shape: written back by a reshape (`reshape`, `flatten`: where torch's strides allow a
# view; of a strided tensor they copy)
_RESHAPES = frozenset({"view", "_unsafe_view", "_reshape_alias", "unflatten", "unsqueeze", "squeeze", "view_as",
                       "alias", "reshape", "flatten", "reshape_as"})
_PERMUTES = frozenset({"transpose", "t", "permute", "numpy_T", "swapaxes", "swapdims"})  # written back transposed
# parts of a tensor, each a slice (a selection for `unbind`) where torch gave the parts' shapes
_PARTS = frozenset({"chunk", "split", "split_with_sizes", "unsafe_chunk", "unsafe_split", "unsafe_split_with_sizes",
                    "unbind", "tensor_split"})
# views whose write-back propscope does not express: an in-place op on one is refused
_UNWRITABLE = frozenset({"expand", "expand_as", "broadcast_to", "diagonal", "as_strided", "unfold", "narrow", "movedim",
                         "moveaxis", "view_as_real", "view_as_complex", "real", "imag"})
_VIEWS = _RESHAPES | _PERMUTES | _UNWRITABLE | {"slice", "select"}
_COPIES = frozenset({"clone", "_to_copy", "lift_fresh_copy"})  # always a new tensor, whatever the handler returns
_CASTS = frozenset({"to", "type_as"})  # a new tensor where the dtype changes, else the tensor itself


def _exported_name(key: str, named: Mapping[str, Any], ndim: int | None) -> str:
    """The name torch.export gives the op TorchScript spells `key`: a traced convolution is `_convolution` (the
    tracer records below `conv2d`), a `.pt2`'s the `conv2d` (`conv_transpose2d`, ...) of its input's rank, so the
    two files of one model read alike on the canvas, in search and in `propscope inspect`. Any other op: `key`."""
    if key in ("_convolution", "_convolution_mode") and ndim in (3, 4, 5):
        return f"conv_transpose{ndim - 2}d" if named.get("transposed") is True else f"conv{ndim - 2}d"
    return key


def _row_major(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def _reshaped_strides(shape: tuple[int, ...], strides: tuple[int, ...], new: tuple[int, ...]
                      ) -> tuple[int, ...] | None:
    """The strides of `new`-shaped view of a tensor with these strides, where torch's `view` can make one (its
    `computeStride`); None where it cannot, and `reshape` copies."""
    if not shape:
        return tuple(1 for _ in new)
    if math.prod(shape) == 0:
        return strides if shape == new else _row_major(new)
    out = [0] * len(new)
    view_d, base_stride = len(new) - 1, strides[-1]
    tensor_numel = view_numel = 1
    for d in range(len(shape) - 1, -1, -1):
        tensor_numel *= shape[d]
        if d == 0 or (shape[d - 1] != 1 and strides[d - 1] != tensor_numel * base_stride):
            while view_d >= 0 and (view_numel < tensor_numel or new[view_d] == 1):
                out[view_d] = view_numel * base_stride
                view_numel *= new[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                base_stride, tensor_numel, view_numel = strides[d - 1], 1, 1
    return tuple(out) if view_d == -1 else None


def _permutation(kind: str, params: Mapping[str, Any], ndim: int) -> tuple[int, ...]:
    """The axes of the tensor a transposing view (`transpose`, `t`, `permute`, ...) puts in its place."""
    if ndim == 0:
        return ()
    if kind == "permute":
        return tuple(int(d) % ndim for d in params["dims"])
    if kind in ("transpose", "swapaxes", "swapdims"):
        first, second = ("axis0", "axis1") if "axis0" in params else ("dim0", "dim1")
        axes = list(range(ndim))
        a, b = int(params[first]) % ndim, int(params[second]) % ndim
        axes[a], axes[b] = axes[b], axes[a]
        return tuple(axes)
    return tuple(reversed(range(ndim)))  # t, numpy_T

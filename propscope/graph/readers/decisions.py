"""A module whose forward decides by its tensors' values: `if x.max() > 1:`, `for _ in range(int(n)):`, `.item()`,
`.tolist()`. torch.export traces with symbolic tensors and cannot take such a decision ("Could not guard on
data-dependent expression"); TorchLens-like tools record the path one call takes instead. So does this: the module is
run once on the inputs it is opened with, each decision's value recorded (`record`), then exported again with every
decision answered by its recorded value in the same order (`replaying`), so the program is the path those inputs take,
the decided values constants in it. The program is checked by running it on the same inputs against the recorded
outputs (`check_same`); a path that cannot be replayed (the trace asks a decision the run did not take) is refused.

The run is made to decide as the trace will: Python is as torch.export leaves it (`_as_exported`: is_exporting()
true, max and min of tensors torch.maximum and torch.minimum, an index by a 0-d tensor read by `item()`); a traced
`tolist` asks an `item()` per element, each answered from the recorded list; a decision the run took that the trace
does not ask is passed over. A size torch leaves to the values (repeat_interleave by a tensor, x[mask], nonzero: an
unbacked symbol) is answered by the size the same call's output had in the run, and counted among the decisions.

torch's own `draft_export` does this too, but on this torch it reads the module's parameters as stand-ins when it
evaluates a decision (a count of positive activations came out 0 where the module computes 5), so its path can be
another than the inputs take; the replay asks the module itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any

from ..errors import ModelFormatError

# The conversions of a tensor to a Python value: the moments a forward decides by a value.
CONVERSIONS = frozenset({"__bool__", "__int__", "__float__", "__index__", "item", "tolist"})
MAX_DECISIONS = 100_000  # a loop taking one per step stays within this; more is not a path worth unrolling


@dataclass(frozen=True)
class Decision:
    """One conversion the forward made: which (`kind`), the value it gave, and the line of the user's code."""

    kind: str
    value: Any
    where: str  # "model.py:12 `if h.sum() > 0:`", or "" where no frame outside torch was found

    def text(self) -> str:
        value = f"a list of {len(self.value)}" if isinstance(self.value, list) else \
            f"a tensor of {tuple(self.value.shape)}" if hasattr(self.value, "shape") else \
            f"a size of {self.value}" if self.kind == "size" else self.value
        return f"{self.where or self.kind} → {value}"


def _caller() -> str:
    """The innermost frame outside torch and propscope: the line of the module's code that converted."""
    frame: Any = sys._getframe(2)
    skip = (os.sep + "torch" + os.sep, os.sep + "propscope" + os.sep + "graph" + os.sep)
    while frame is not None and any(part in frame.f_code.co_filename for part in skip):
        frame = frame.f_back
    if frame is None:
        return ""
    import linecache

    code = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    place = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"
    return f"{place} `{code[:80]}`" if code else place


def _modes() -> Any:
    from torch.overrides import TorchFunctionMode

    class Record(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.decisions: list[Decision] = []
            self.shapes: dict[str, list[Any]] = {}  # each function's outputs' shapes, call by call

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            self.shapes.setdefault(_key(func), []).append(_shapes(out))
            kind = _conversion(func, args)
            if kind:
                if kind == "tensor":
                    out = out.clone()  # the value read, kept as it was
                if len(self.decisions) >= MAX_DECISIONS:
                    raise ModelFormatError(f"its forward decides by tensor values more than {MAX_DECISIONS:,} "
                                           "times on these inputs")
                self.decisions.append(Decision(kind, out, _caller()))
            return out

    class Replay(TorchFunctionMode):
        def __init__(self, decisions: list[Decision], shapes: dict[str, list[Any]]) -> None:
            super().__init__()
            self.decisions, self.used = decisions, 0
            self.elements: list[Any] = []  # what is left of a recorded `tolist` the export asks element by element
            self.shapes, self.calls = shapes, dict.fromkeys(shapes, 0)
            self.sizes: list[Decision] = []  # the sizes its values decide, as answered

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kind = _conversion(func, args)
            if not kind:
                out = func(*args, **(kwargs or {}))
                key = _key(func)
                done = self.calls.get(key, 0)
                self.calls[key] = done + 1
                recorded = self.shapes.get(key, [])
                _settle(out, recorded[done] if done < len(recorded) else None, self.used, self.sizes)
                return out
            if self.elements:
                return self._element(kind)
            # skip what asks nothing when traced: a `tolist` of no elements
            while self._at("tolist") and kind == "item" and not _leaves(self.decisions[self.used].value):
                self.used += 1
            if self._at(kind):
                self.used += 1
                value = self.decisions[self.used - 1].value
                if kind == "tensor":  # made anew from the numbers read, a constant of the program
                    return func(value.tolist(), dtype=value.dtype, device=(kwargs or {}).get("device"))
                return value
            if self._at("tolist") and kind == "item":  # a traced tensor's tolist is an item() per element
                self.elements = _leaves(self.decisions[self.used].value)
                return self._element(kind)
            # a decision the run took and the trace does not (transformers skips a mask's check on a traced
            # tensor): on to the next the run took at the line that asks now, where there is one
            where = _caller()
            ahead = next((i for i in range(self.used + 1, len(self.decisions))
                          if self.decisions[i].kind == kind and self.decisions[i].where == where), None)
            if ahead is None:
                raise _Diverged(self.used, f"{kind} at {where}")
            self.used = ahead
            return self.__torch_function__(func, types, args, kwargs)

        def _at(self, kind: str) -> bool:
            return self.used < len(self.decisions) and self.decisions[self.used].kind == kind

        def _element(self, kind: str) -> Any:
            if kind != "item":
                raise _Diverged(self.used, f"{kind} at {_caller()}")
            value = self.elements.pop(0)
            if not self.elements:
                self.used += 1
            return value

    return Record, Replay


def _conversion(func: Any, args: Any) -> str:
    """Which conversion of a tensor's values to Python a call is ("item", "tolist", ...), "tensor" for
    `torch.tensor` of a list holding tensors (it reads their values: `torch.tensor([x.max() + 1 for ...])`), or ""."""
    import torch

    kind = getattr(func, "__name__", "")
    if kind in CONVERSIONS:
        return kind
    if func is torch.tensor and args and isinstance(args[0], list | tuple):
        from torch.utils import _pytree as pytree

        if any(isinstance(leaf, torch.Tensor) for leaf in pytree.tree_leaves(args[0])):
            return "tensor"
    return ""


def _key(func: Any) -> str:
    return f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', getattr(func, '__name__', func))}"


def _shapes(out: Any) -> Any:
    """The shapes of a function's tensor outputs (a tensor, or a tuple or list of them), else None."""
    if hasattr(out, "shape") and hasattr(out, "dim"):
        return tuple(out.shape)
    if isinstance(out, tuple | list) and out and all(hasattr(o, "shape") and hasattr(o, "dim") for o in out):
        return [tuple(o.shape) for o in out]
    return None


def _settle(out: Any, recorded: Any, used: int, answered: list[Decision]) -> None:
    """A traced output whose size its values decide (`repeat_interleave` by a tensor, `nonzero`, a boolean mask's
    `x[mask]`) holds a symbol torch cannot decide by; each is answered by the size the same call gave when run, and
    counted among the decisions (`answered`)."""
    import torch
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    traced = _shapes(out)
    if traced is None:
        return
    pairs = [(traced, recorded)] if isinstance(traced, tuple) else list(zip(traced, recorded or [], strict=False))
    if isinstance(traced, list) and (not isinstance(recorded, list) or len(recorded) != len(traced)):
        pairs = [(shape, None) for shape in traced]
    for shape, known in pairs:
        for position, size in enumerate(shape):
            if not isinstance(size, torch.SymInt) or not free_unbacked_symbols(size):
                continue  # a number, or a size the inputs' sizes give (torch's own dynamic dimensions)
            if not isinstance(known, tuple) or len(known) != len(shape):
                raise _Diverged(used, f"a size its values decide at {_caller()}")
            _answer(size, known[position])
            answered.append(Decision("size", known[position], _caller()))


def _answer(size: Any, value: int) -> None:
    """Make the traced size `size` the number `value` for the rest of the trace. `torch._check(size == value)` alone
    records the fact but, as torch.export prefers runtime checks over specialising, leaves the symbol in every
    later size, so a `tolist` or `split` by it still cannot be traced; this specialises it, as a guard would."""
    import dataclasses

    import torch

    shape_env = size.node.shape_env
    settings = shape_env.settings
    shape_env.settings = dataclasses.replace(settings, prefer_deferred_runtime_asserts_over_guards=False)
    # a size-like symbol is taken to be at least 2 (so that 0 and 1 need no special case): it is 1 here
    shape_env.size_like -= size.node.expr.free_symbols
    try:
        torch._check(size == value)
    finally:
        shape_env.settings = settings


def _leaves(value: Any) -> list[Any]:
    """The numbers of a `tolist` value (nested lists), in order."""
    if not isinstance(value, list):
        return [value]
    return [leaf for part in value for leaf in _leaves(part)]


class _Diverged(Exception):
    """The export met another decision than the recorded run at this position."""


class Recorded(list[Decision]):
    """The decisions a run took, in order, with the shapes each function's outputs had in it (call by call), which
    answer the sizes a traced output leaves to its values."""

    def __init__(self, decisions: list[Decision], shapes: dict[str, list[Any]]) -> None:
        super().__init__(decisions)
        self.shapes = shapes


@contextmanager
def _as_exported() -> Iterator[None]:
    """While open, Python is as torch.export leaves it while it traces, so that the run decides as the trace will:
    `torch.compiler.is_exporting()` is true (transformers then skips its shortcuts that read a mask's values: the
    trace never takes them), and `max(a, b)` and `min` of tensors are `torch.maximum` and `torch.minimum` (no
    `__bool__` asked: Qwen2-VL's `max(grid_thw[1], grid_thw[2])`)."""
    import torch

    builtins: Any = nullcontext  # another torch: its export may leave Python's builtins alone
    with suppress(ImportError):
        from torch._export.non_strict_utils import _override_builtin_ops as builtins
    flag = torch.compiler._is_exporting_flag
    torch.compiler._is_exporting_flag = True
    try:
        with builtins():
            yield
    finally:
        torch.compiler._is_exporting_flag = flag


def _export_handler() -> Any:
    """torch.export's own handler of torch functions, over the recorder as it is over the replay while export
    traces: an index by a 0-d tensor (Pixtral's `embed[..., : size[0] // patch]`, image_sizes' values) is read by
    `item()` there, a conversion the recorder then sees as the replay will (run plainly, Python reads it without
    asking torch)."""
    try:
        from torch._export.non_strict_utils import _NonStrictTorchFunctionHandler
    except ImportError:
        return nullcontext()
    return _NonStrictTorchFunctionHandler()


def record(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[Decision], Any]:
    """Run `module` once on the inputs (no gradient), recording each decision it takes by a value; the decisions
    and the outputs."""
    import torch

    Record, _ = _modes()
    with torch.no_grad(), _as_exported(), Record() as recorder, _export_handler():
        outputs = module(*args, **kwargs)
    return Recorded(recorder.decisions, recorder.shapes), outputs


@contextmanager
def replaying(decisions: list[Decision]) -> Iterator[list[Decision]]:
    """While open, each conversion of a tensor to a Python value answers the next recorded decision's value, and
    each size the values decide the size the run gave (the list it yields gathers those, decisions too); a
    conversion out of turn, or one too many or too few, is refused in one line."""
    _, Replay = _modes()
    replay = Replay(decisions, getattr(decisions, "shapes", {}))
    try:
        with replay:
            yield replay.sizes
    except _Diverged as exc:
        used, asked = exc.args
        took = f"{decisions[used].kind} at {decisions[used].where}" if used < len(decisions) else "no more"
        raise ModelFormatError(f"its forward took its decisions in another order when traced than when run "
                               f"(decision #{used + 1} of {len(decisions)}: traced, {asked}; run, {took}), so its "
                               "path cannot be replayed") from None
    # decisions the run took after the trace's last are left unasked: the trace's path did not need them, and the
    # program it gives is checked against the module's outputs (`check_same`)


def undecided_sizes(program: Any) -> bool:
    """Whether an exported program holds sizes only its values decide (x[mask], nonzero: torch's unbacked symbols,
    u0), which propscope reads only as numbers: the path its inputs take answers them (`replaying`)."""
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    return any(free_unbacked_symbols(node.meta.get("val")) for node in program.graph.nodes
               if node.meta.get("val") is not None)


def check_same(program: Any, args: tuple[Any, ...], kwargs: dict[str, Any], expected: Any) -> None:
    """Refuse a replayed program that does not compute what the module computed on these inputs."""
    import torch
    from torch.utils import _pytree as pytree

    with torch.no_grad():
        got = program.module()(*args, **kwargs)
    mine = [t for t in pytree.tree_leaves(got) if isinstance(t, torch.Tensor)]
    theirs = [t for t in pytree.tree_leaves(expected) if isinstance(t, torch.Tensor)]
    if len(mine) != len(theirs) or not all(
            a.shape == b.shape and torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6, equal_nan=True)
            for a, b in zip(mine, theirs, strict=False)):
        raise ModelFormatError("the path its inputs took, replayed, does not compute what the module computes")


def mark(opened: Any, decided: list[Decision]) -> None:
    """Say on a Model read from a program traced along one path that it is that path: its decisions (which refuse
    other data and training), the warning naming them, and its description."""
    opened.decisions = tuple(d.text() for d in decided)
    opened.warnings.append(summary(decided))
    opened.description += f", along the path these inputs take ({len(decided)} decisions by value)"


def summary(decisions: list[Decision], limit: int = 3) -> str:
    """The warning a model traced along one path carries: what was decided where."""
    return summary_of([d.text() for d in decisions], limit)


def summary_of(decisions: list[str] | tuple[str, ...], limit: int = 3) -> str:
    """`summary` of the decisions' texts (as `Model.decisions` keeps them)."""
    shown = "; ".join(decisions[:limit])
    more = f" and {len(decisions) - limit} more" if len(decisions) > limit else ""
    return (f"its forward decided by tensor values {len(decisions)} time(s), traced along the path these inputs take "
            f"({shown}{more}): the graph is that path, each value a constant; other data may take another, so it is "
            "refused for other data and for training (open the module again on that data)")

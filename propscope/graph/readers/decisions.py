"""A module whose forward decides by its tensors' values: `if x.max() > 1:`, `for _ in range(int(n)):`, `.item()`,
`.tolist()`. torch.export traces with symbolic tensors and cannot take such a decision ("Could not guard on
data-dependent expression"); TorchLens-like tools record the path one call takes instead. So does this: the module is
run once on the inputs it is opened with, each decision's value recorded (`record`), then exported again with every
decision answered by its recorded value in the same order (`replaying`), so the program is the path those inputs take,
the decided values constants in it. The program is checked by running it on the same inputs against the recorded
outputs (`check_same`); a path that cannot be replayed (decisions met in another order, another count) is refused.

torch's own `draft_export` does this too, but on this torch it reads the module's parameters as stand-ins when it
evaluates a decision (a count of positive activations came out 0 where the module computes 5), so its path can be
another than the inputs take; the replay asks the module itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
        value = self.value if not isinstance(self.value, list) else f"a list of {len(self.value)}"
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

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            kind = getattr(func, "__name__", "")
            if kind in CONVERSIONS:
                if len(self.decisions) >= MAX_DECISIONS:
                    raise ModelFormatError(f"its forward decides by tensor values more than {MAX_DECISIONS:,} "
                                           "times on these inputs")
                self.decisions.append(Decision(kind, out, _caller()))
            return out

    class Replay(TorchFunctionMode):
        def __init__(self, decisions: list[Decision]) -> None:
            super().__init__()
            self.decisions, self.used = decisions, 0

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kind = getattr(func, "__name__", "")
            if kind not in CONVERSIONS:
                return func(*args, **(kwargs or {}))
            if self.used >= len(self.decisions) or self.decisions[self.used].kind != kind:
                raise _Diverged(self.used)
            self.used += 1
            return self.decisions[self.used - 1].value

    return Record, Replay


class _Diverged(Exception):
    """The export met another decision than the recorded run at this position."""


def record(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[Decision], Any]:
    """Run `module` once on the inputs (no gradient), recording each decision it takes by a value; the decisions
    and the outputs."""
    import torch

    Record, _ = _modes()
    with torch.no_grad(), Record() as recorder:
        outputs = module(*args, **kwargs)
    return recorder.decisions, outputs


@contextmanager
def replaying(decisions: list[Decision]) -> Iterator[None]:
    """While open, each conversion of a tensor to a Python value answers the next recorded decision's value; a
    conversion out of turn, or one too many or too few, is refused in one line."""
    _, Replay = _modes()
    replay = Replay(decisions)
    try:
        with replay:
            yield
    except _Diverged as exc:
        raise ModelFormatError(f"its forward took its decisions in another order when traced than when run "
                               f"(decision #{exc.args[0] + 1} of {len(decisions)}), so its path cannot be "
                               "replayed") from None
    if replay.used != len(decisions):
        raise ModelFormatError(f"its forward took {replay.used} decisions by value when traced and {len(decisions)} "
                               "when run, so its path cannot be replayed")


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

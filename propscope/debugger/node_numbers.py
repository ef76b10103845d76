"""One number per node at the session's cursor, to colour the graph by (View ▸ Colour nodes by). No Qt here.

- gradient size: the RMS of ∂L/∂(the node's output), once its last contribution has arrived (a node's own backward
  step; for a parameter, the last of its users'), so the colour never shows a half-summed gradient;
- value size: the RMS of the node's output after its forward step;
- non-finite: whether the value or the gradient holds NaN or ±inf;
- backends disagree: the relative difference a backend comparison found (set from outside, `set_disagreement`).

A step changes one value or a few gradients: `follow` recomputes only those rows, and the RMS of an array is kept by
the array's identity (the trace never changes an array once made), so stepping back and forth recomputes nothing and a
repaint reads arrays. The numbers are NumPy arrays over the graph's nodes, in graph order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from psygnal import Signal

from ..graph.model import TARGET
from .steps import FORWARD

GRAD, VALUE, NONFINITE, DISAGREE = "grad", "value", "nonfinite", "disagree"
MODES = (GRAD, VALUE, NONFINITE, DISAGREE)
LEVELS = 64  # steps of the colour ramp: one `drawRects` each in the overview
NO_NUMBER, BAD, NEUTRAL = -1, LEVELS, LEVELS + 1  # codes beside the ramp's 0 .. LEVELS - 1
NEVER = -2  # a node the mode gives no number at any step (the loss's ∂L/∂L, the labels' values): drawn by kind
# the non-finite mode's own: where the pass's NaN/inf starts (a weight holding one, the step that made the first), and
# the nodes it was carried on to, which after a backward pass are most of the graph
ORIGIN, CARRIED = LEVELS + 2, LEVELS + 3
FLOOR = 1e-12  # the ramp starts no lower than this much of the largest number (zeros take its colour)
FULL_REFRESH = 48  # a jump over more steps than this reads every node again (cheap: sizes are kept)


@dataclass(frozen=True)
class Size:
    """How big a tensor is: the RMS of its finite entries, and how many are NaN or ±inf."""

    rms: float
    nonfinite: int
    entries: int


def tensor_size(array: Any) -> Size | None:
    """The size of a NumPy array (None for no numbers: empty, or not numeric).

    One BLAS dot product, no copy, in the common case: NaN and inf carry into the sum, so a finite sum means every
    entry is finite; only then (a float32 overflow, or real NaN) is the array looked at entry by entry."""
    a = np.asarray(array)
    if a.size == 0 or a.dtype.kind not in "biufc":
        return None
    if a.dtype.kind == "c":
        a = np.abs(a)
    elif a.dtype.kind != "f":
        a = a.astype(np.float64)
    flat = a.reshape(-1)
    n = flat.size
    total = float(np.vdot(flat, flat))
    if math.isfinite(total):
        return Size(math.sqrt(total / n), 0, n)
    finite = np.isfinite(flat)
    kept = flat[finite].astype(np.float64)
    return Size(math.sqrt(float(np.vdot(kept, kept)) / n) if kept.size else math.nan, n - kept.size, n)


@dataclass(frozen=True)
class Scale:
    """The ramp's ends: log10 from `low` to `high`; numbers below `low` (zeros too) take its bottom colour."""

    low: float
    high: float

    def position(self, numbers: np.ndarray) -> np.ndarray:
        """Where each number sits on the ramp, 0 to 1 (1 for all when both ends are one number)."""
        if not self.high > self.low:
            return np.ones_like(numbers) if self.high > 0 else np.zeros_like(numbers)
        lo, hi = math.log10(self.low), math.log10(self.high)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log10(np.clip(numbers, self.low, self.high))
        return np.clip((logs - lo) / (hi - lo), 0.0, 1.0)


def scale_of(numbers: np.ndarray) -> Scale | None:
    """The range of the finite numbers present (NaN: absent), its floor at `FLOOR` of the largest; None for none."""
    present = numbers[np.isfinite(numbers)]
    if not present.size:
        return None
    high = float(present.max())
    positive = present[present > 0]
    low = max(float(positive.min()), high * FLOOR) if positive.size else high
    return Scale(low, high)


WHAT = {GRAD: "∇ RMS", VALUE: "value RMS", DISAGREE: "backends differ by"}


class NodeNumbers:
    """The numbers of one session's nodes at its cursor, for the mode chosen; `changed` after they moved."""

    changed = Signal()

    def __init__(self, session: Any) -> None:
        self.session = session
        self.mode: str | None = None
        self._graph: Any = None
        self._trace: Any = None
        self._cursor = -1
        self._have: set[str] = set()  # which of VALUE and GRAD are up to date at `_cursor`
        self._sizes: dict[int, tuple[Any, Size | None]] = {}  # id(array) -> (the array, kept alive; its size)
        self._finals: dict[int, list[int]] | None = None  # cursor -> rows whose gradient is complete from there on
        self._final_of: np.ndarray = np.zeros(0, dtype=np.int64)
        self.disagreement: np.ndarray | None = None
        self._compared: Any = None  # the trace the backends were compared on
        self._new_graph()

    # -- following the session ----------------------------------------------------------------
    def set_mode(self, mode: str | None) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"no colouring {mode!r}: choose one of {', '.join(MODES)}")
        if mode != self.mode:
            self.mode = mode
            self.follow(force=True)

    def set_disagreement(self, diffs: Mapping[str, float] | None) -> None:
        """Each node's relative difference between two backends (a comparison's); None: no comparison."""
        self._compared = self.session.trace  # what the differences hold for
        if diffs is None:
            self.disagreement = None
        else:
            numbers = np.full(len(self.names), math.nan)
            for name, d in diffs.items():
                row = self.row.get(name)
                if row is not None:
                    numbers[row] = d
            self.disagreement = numbers
        if self.mode == DISAGREE:
            self.changed.emit()

    def follow(self, force: bool = False) -> None:
        """Bring the numbers the mode needs to the session's cursor; `changed` when any moved (or `force`)."""
        s = self.session
        if s.graph is not self._graph:
            self._new_graph()
            force = True
        if s.trace is not self._trace:
            self._trace = s.trace
            if self._compared is not s.trace:  # compared on another trace (other parameters, dtype, backend)
                self.disagreement = None
            self._sizes.clear()
            self._finals = None
            self._have.clear()
            force = True
        need = {VALUE} if self.mode == VALUE else {GRAD} if self.mode == GRAD else \
            {VALUE, GRAD} if self.mode == NONFINITE else set()
        cursor = s.cursor
        moved = False
        for part in sorted(need):
            if part in self._have and abs(cursor - self._cursor) <= FULL_REFRESH:
                moved |= self._update(part, self._cursor, cursor)
            else:
                self._read_all(part, cursor)
                moved = True
        self._have = need  # a part not kept up to date is read whole again when next needed
        self._cursor = cursor
        if moved or force:
            self.changed.emit()

    def _new_graph(self) -> None:
        g = self.session.graph
        self._graph = g
        self.names = [n.name for n in g.nodes]
        self.row = {name: i for i, name in enumerate(self.names)}
        n = len(self.names)
        self.values, self.grads = np.full(n, math.nan), np.full(n, math.nan)
        self.value_bad, self.grad_bad = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        self._have.clear()
        self._finals = None
        self._forward: np.ndarray | None = None  # each row's forward step (-1: a leaf), made when first asked
        self.disagreement = None
        # rows the ramp leaves out, as no part of the network's numbers: the gradient of the loss itself (∂L/∂L = 1,
        # which would top every scale), the labels and integer values (class indices, token ids) as values
        loss = g.output.name if g.outputs and g.output.op.is_loss else None
        self._no_gradient = np.array([name == loss for name in self.names], dtype=bool)
        self._no_value = np.array([n.name == TARGET or str(n.meta.get("dtype", "float")).startswith(("int", "uint",
                                                                                                      "bool"))
                                   for n in g.nodes], dtype=bool)

    def _update(self, part: str, old: int, new: int) -> bool:
        """Read again the rows that the steps between cursors `old` and `new` changed; whether any did."""
        lo, hi = min(old, new), max(old, new)
        if part == VALUE:
            steps = self.session.steps
            rows = [self.row[steps[i].node.name] for i in range(lo, hi) if steps[i].phase == FORWARD]
        else:
            finals = self._gradient_finals()
            rows = [r for c in range(lo + 1, hi + 1) for r in finals.get(c, ())]
        for r in rows:
            self._read(part, r, new)
        return bool(rows)

    def _read_all(self, part: str, cursor: int) -> None:
        if part == GRAD:
            self._gradient_finals()
        for r in range(len(self.names)):
            self._read(part, r, cursor)

    def _read(self, part: str, row: int, cursor: int) -> None:
        trace, name = self.session.trace, self.names[row]
        if part == VALUE:
            size = self._size(trace.value(name, cursor))
            numbers, bad = self.values, self.value_bad
        else:
            complete = cursor >= self._final_of[row] >= 0
            size = self._size(trace.grad(name, cursor)) if complete else None
            numbers, bad = self.grads, self.grad_bad
        numbers[row] = math.nan if size is None else size.rms
        bad[row] = 0 if size is None else size.nonfinite

    def _size(self, array: Any) -> Size | None:
        if array is None:
            return None
        kept = self._sizes.get(id(array))
        if kept is not None and kept[0] is array:
            return kept[1]
        size = tensor_size(self.session.backend.to_numpy(array))
        self._sizes[id(array)] = (array, size)
        return size

    def _gradient_finals(self) -> dict[int, list[int]]:
        """For each cursor, the rows whose gradient is complete from there on: after the last backward step that
        can add to it (the loss's own gradient: from the end of the forward pass)."""
        if self._finals is not None:
            return self._finals
        trace = self.session.trace
        final = np.full(len(self.names), -1, dtype=np.int64)
        reached = trace.reached
        for planned in trace.schedule[trace.n_forward:]:
            node = planned.node
            for i, a in enumerate(node.inputs):
                if a.name in reached and node.op.differentiable(i):
                    final[self.row[a.name]] = planned.index + 1
        graph = self.session.graph
        if graph.outputs and graph.output.op.is_loss:
            final[self.row[graph.output.name]] = trace.n_forward
        finals: dict[int, list[int]] = {}
        for r in np.flatnonzero(final >= 0).tolist():
            finals.setdefault(int(final[r]), []).append(r)
        self._final_of, self._finals = final, finals
        return self._finals

    # -- what the canvas reads -----------------------------------------------------------------
    def numbers(self) -> tuple[np.ndarray, np.ndarray]:
        """The mode's number per node (NaN: none yet) and its count of NaN/inf entries (0 where none or finite)."""
        if self.mode == VALUE:
            return np.where(self._no_value, math.nan, self.values), self.value_bad
        if self.mode == GRAD:
            return np.where(self._no_gradient, math.nan, self.grads), self.grad_bad
        if self.mode == DISAGREE and self.disagreement is not None:
            d = np.where(self._computed(), self.disagreement, math.nan)  # nothing ahead of the cursor is shown
            return np.where(np.isinf(d), math.nan, d), np.isinf(d).astype(np.int64)
        if self.mode == NONFINITE:
            present = np.isfinite(self.values) | np.isfinite(self.grads) | (self.value_bad + self.grad_bad > 0)
            return np.where(present, 0.0, math.nan), self.value_bad + self.grad_bad
        n = len(self.names)
        return np.full(n, math.nan), np.zeros(n, dtype=np.int64)

    def never(self) -> np.ndarray:
        """The rows the mode gives no number at any step: drawn by their kind, not as waiting for one."""
        n = len(self.names)
        if self.mode == GRAD:
            self._gradient_finals()
            return self._no_gradient | (self._final_of < 0)
        if self.mode == VALUE:
            return self._no_value
        if self.mode == DISAGREE:
            return np.ones(n, dtype=bool) if self.disagreement is None else np.isnan(self.disagreement)
        return np.zeros(n, dtype=bool)

    def _computed(self) -> np.ndarray:
        """Whether each row's value exists at the cursor (a leaf always; an op once its forward step has run)."""
        return self._forward_steps() < self.session.cursor

    def _forward_steps(self) -> np.ndarray:
        """Each row's forward step (-1 for a leaf), made once per graph (2 ms at 5,000 nodes)."""
        if self._forward is None or len(self._forward) != len(self.names):
            steps = self.session.steps[:self.session.n_forward]
            self._forward = np.full(len(self.names), -1.0)
            self._forward[[self.row[st.node.name] for st in steps]] = [st.index for st in steps]
        return self._forward

    def scale(self) -> Scale | None:
        """The ramp's range over the numbers present; None in the non-finite mode or with no numbers."""
        if self.mode in (None, NONFINITE):
            return None
        return scale_of(self.numbers()[0])

    def codes(self) -> np.ndarray:
        """Each node's colour: 0 .. LEVELS - 1 on the ramp, BAD (NaN/inf), NEUTRAL (finite, in the non-finite
        mode), NO_NUMBER (none yet: drawn washed out, as before its step), NEVER (none at any step: drawn by kind)."""
        numbers, bad = self.numbers()
        present = np.isfinite(numbers)
        if self.mode == NONFINITE:
            codes = np.where(present, NEUTRAL, NO_NUMBER)
        else:
            scale = scale_of(numbers)
            codes = np.full(len(numbers), NO_NUMBER)
            if scale is not None:
                codes[present] = np.rint(scale.position(numbers[present]) * (LEVELS - 1)).astype(np.int64)
        codes[self.never() & ~present] = NEVER
        codes[bad > 0] = BAD
        if self.mode == NONFINITE:
            origin = self.origins()
            if origin.any():
                codes[bad > 0] = CARRIED
                codes[origin] = ORIGIN
        return codes

    def origins(self) -> np.ndarray:
        """The rows where the pass's NaN/inf starts, at the cursor: a weight or input holding one itself, and the
        op whose step first made one from finite inputs (a log of 0; in the backward pass, a sqrt's derivative at 0,
        though the node's own numbers stay finite)."""
        origin = (self._forward_steps() < 0) & (self.value_bad > 0)
        trace = self.session.trace
        first = trace.first_nonfinite if trace.computed else None
        if first is not None and first[0] < self.session.cursor:
            index, node = first
            carried_in = index < trace.n_forward and any(self.value_bad[self.row[a.name]] > 0 for a in node.inputs)
            if not carried_in and node.name in self.row:
                origin[self.row[node.name]] = True
        return origin

    def alarm(self) -> np.ndarray:
        """How alarming each node's number is, to pick the one a folded box shows (NaN: none): NaN/inf first (inf),
        then the farthest from the typical (the median, in decades) in either direction, vanishing or exploding; for
        backends, the largest difference."""
        numbers, bad = self.numbers()
        present = np.isfinite(numbers)
        alarm = np.full(len(numbers), math.nan)
        scale = scale_of(numbers)
        if self.mode == NONFINITE or scale is None:
            alarm[present] = 0.0
        else:
            logs = np.log10(np.clip(numbers[present], scale.low, max(scale.high, scale.low)))
            alarm[present] = logs - logs.min() if self.mode == DISAGREE else np.abs(logs - np.median(logs))
        alarm[bad > 0] = math.inf
        if self.mode == NONFINITE:  # a box holding where it starts shows that, not what it was carried to
            origin = self.origins()
            if origin.any():
                alarm[bad > 0] = np.finfo(np.float64).max
                alarm[origin] = math.inf
        return alarm

    def onset(self) -> np.ndarray:
        """For ranking equals: the step where each node's NaN/inf began (its forward step for a value, -1 for a leaf
        such as a weight; the step completing its gradient for a gradient), so that of the many nodes a NaN spreads
        to, the first comes first; the graph order for the others."""
        onset = np.arange(len(self.names), dtype=np.float64)
        if self.mode == DISAGREE:
            return onset
        forward = self._forward_steps()
        if GRAD in self._have and len(self._final_of) == len(self.names):
            onset = np.where(self.grad_bad > 0, self._final_of.astype(np.float64), onset)
        if VALUE in self._have:
            onset = np.where(self.value_bad > 0, forward, onset)
        return onset

    def describe(self, name: str) -> str:
        """The node's number in words, for its tooltip: `∇ RMS 3.2e-05`, `value: 3 NaN/inf of 64`."""
        row = self.row.get(name)
        if row is None or self.mode is None:
            return ""
        if self.mode == NONFINITE:
            starts = "; the NaN/inf starts here" if self.origins()[row] else ""
            return f"{_bad_text('value', self.values[row], self.value_bad[row])}; " \
                   f"{_bad_text('∇', self.grads[row], self.grad_bad[row])}{starts}"
        numbers, bad = self.numbers()
        what = WHAT[self.mode]
        if bad[row]:
            return f"{what.split()[0]}: NaN or inf" + (f" ({bad[row]} entries)" if self.mode != DISAGREE else "")
        if not math.isfinite(numbers[row]):
            return f"{what.split()[0]}: not computed yet" if self.mode != DISAGREE else "backends: not compared"
        return f"{what} {numbers[row]:.3g}" + (" (relative)" if self.mode == DISAGREE else "")


def _bad_text(what: str, number: float, bad: int) -> str:
    if bad:
        return f"{what}: {bad} NaN/inf"
    return f"{what}: finite" if math.isfinite(number) else f"{what}: not yet"

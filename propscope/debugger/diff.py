"""Diffs on the graph: how two states of a network differ, node by node. No Qt here.

A state is a graph with its parameters: a session (as it stands, or at a recorded epoch), a
model file (`.propscope`, `.pt2`, `.onnx`, a state dict with its architecture; `FILE@EPOCH` for a
snapshot a file holds), an example, or one backend's run of a session. Two states are compared

- by parameter: the relative change `|A - B| / max(|A|, |B|)` (2-norms; 0 where both are zero), and
- with a trace (`trace=True`): every node's value and gradient on one batch, relative change likewise.

Where the two differ in a NaN or infinite entry (a weight that went NaN in training) the change has no number: it
is NaN (None in JSON), the row's status is "not finite (B: 1 NaN)", naming the side and the count, and it ranks,
counts and colours as the largest change there is.

Graphs that differ in structure are matched by node name, then by module path and op (in order
within the module); nodes left over are reported as only in A or only in B. `compare_backends`
(debugger.compare) is the absolute-difference check of two backends with a tolerance; the same
run shown as a diff is `diff_backends`, so the app has one view for every comparison.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import get_backend
from ..backends.base import Backend
from ..graph.errors import PropscopeError
from ..graph.ir import Graph, Node
from ..graph.model import Model
from .compare import Comparison
from .grad_flow import counts_text, nonfinite_counts
from .session import Session

KINDS = ("params", "values", "grads")
SAME, CHANGED, ONLY_A, ONLY_B, SHAPE = "same", "changed", "only in A", "only in B", "shape differs"
NONFINITE = "not finite"  # the status begins so where A and B differ in a NaN or ±inf entry, then says which
KIND_WORDS = {"params": "", "values": "value ", "grads": "gradient "}  # in a status: "value B: 4 NaN"


class DiffError(PropscopeError):
    """Two things that cannot be compared (an epoch not recorded, no common batch), said in one sentence."""


# -- states ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class State:
    """One side of a diff: a label, the model (graph, constants, default batch, loss) and its parameters."""

    label: str
    model: Model
    params: dict[str, np.ndarray]
    batch: dict[str, np.ndarray] | None = None  # the data it was seen on (a session's), if any

    @property
    def graph(self) -> Graph:
        return self.model.graph

    def as_model(self) -> Model:
        return dataclasses.replace(self.model, arrays={**self.model.arrays, **self.params})


def as_state(what: Any, arch: str | Path | None = None, seed: int = 0) -> State:
    """A diff side from a Session, a (Session, epoch) pair, a Model, a State, or a file/example name.

    A name `FILE@EPOCH` is the snapshot of that epoch the file holds.
    """
    if isinstance(what, State):
        return what
    if isinstance(what, Session):
        label = what.name + (f"@{what.epoch}" if what.epoch is not None else "")
        return State(label, what.model, what.parameters_numpy(), dict(what.batch))
    if isinstance(what, tuple) and len(what) == 2 and isinstance(what[0], Session):
        session, epoch = what
        return _epoch_state(session.name, session.model, session.snapshots, int(epoch), dict(session.batch))
    if isinstance(what, Model):
        return State(what.graph.name, what, dict(what.parameters))
    if isinstance(what, str | Path):
        return _named_state(str(what), arch, seed)
    raise DiffError(f"cannot compare a {type(what).__name__}; give a session, a model, or a file or example name")


def _named_state(text: str, arch: str | Path | None, seed: int) -> State:
    from ..graph.readers import load_target
    from ..graph.readers.snapshots import attached

    target, _, epoch = text.rpartition("@")
    if target and epoch.isdigit() and Path(target).is_file():
        model = load_target(target, seed=seed, arch=arch)
        return _epoch_state(text, model, attached(model), int(epoch), None)
    model = load_target(text, seed=seed, arch=arch)
    return State(text, model, dict(model.parameters))


def _epoch_state(label: str, model: Model, snaps: Any, epoch: int, batch: dict[str, np.ndarray] | None) -> State:
    if not snaps:
        raise DiffError(f"{label}: no snapshots were recorded, so there is no epoch {epoch}")
    if epoch not in snaps:
        raise DiffError(f"{label}: {snaps.missing(epoch)}")
    name = label if label.endswith(f"@{epoch}") else f"{label}@{epoch}"
    return State(name, model, {k: np.asarray(v) for k, v in snaps[epoch].params.items()}, batch)


# -- matching two graphs ---------------------------------------------------------------------
def match_nodes(a: Graph, b: Graph) -> list[tuple[Node | None, Node | None]]:
    """Pairs of nodes, A's order first: by name, then by (module path, op) in order; leftovers alone."""
    pairs: list[tuple[Node | None, Node | None]] = []
    unmatched_b = {n.name: n for n in b}
    left_a: list[Node] = []
    for node in a:
        other = unmatched_b.pop(node.name, None)
        if other is not None:
            pairs.append((node, other))
        else:
            pairs.append((node, None))
            left_a.append(node)
    by_place: dict[tuple[str, str], list[Node]] = defaultdict(list)
    for node in unmatched_b.values():
        if node.module:  # a top-level node has no path to match by
            by_place[(node.module, node.op.name)].append(node)
    matched: dict[str, Node] = {}
    for node in left_a:
        queue = by_place.get((node.module, node.op.name)) if node.module else None
        if queue:
            matched[node.name] = other = queue.pop(0)
            del unmatched_b[other.name]
    pairs = [(x, matched.get(x.name) if y is None and x is not None else y) for x, y in pairs]
    pairs += [(None, node) for node in unmatched_b.values()]
    return pairs


# -- numbers ---------------------------------------------------------------------------------
def relative_change(a: Any, b: Any) -> float:
    """|A - B| / max(|A|, |B|) in float64 2-norms; 0 for equal arrays (NaN where both have NaN), inf on
    a shape mismatch, NaN where either is missing or where they differ in a NaN or infinite entry (a change with
    no number: `nonfinite_text` says what)."""
    if a is None or b is None:
        return math.nan
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        return math.inf
    with np.errstate(all="ignore"):
        diff = a64 - b64
        same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
        diff = np.where(same, 0.0, diff)
        if not np.all(np.isfinite(diff)):
            return math.nan
        top = float(np.linalg.norm(diff))
        if top == 0.0:
            return 0.0
        scale = max(float(np.linalg.norm(np.where(np.isfinite(a64), a64, 0.0))),
                    float(np.linalg.norm(np.where(np.isfinite(b64), b64, 0.0))))
    return top / scale if scale > 0 else math.inf


def nonfinite_text(a: Any, b: Any) -> str:
    """Where A and B differ in a NaN or infinite entry, each side's count of them, `B: 1 NaN` or
    `A: 2 NaN, B: 1 NaN, 3 inf`; "" where they do not (none, or the same entries in both)."""
    if a is None or b is None:
        return ""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        return ""
    with np.errstate(all="ignore"):
        same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
        if np.all(same | (np.isfinite(a64) & np.isfinite(b64))):
            return ""
    sides = []
    for side, x in (("A", a64), ("B", b64)):
        found = counts_text(*nonfinite_counts(x))
        if found:
            sides.append(f"{side}: {found}")
    return ", ".join(sides)


def max_abs(a: Any, b: Any) -> float:
    if a is None or b is None:
        return math.nan
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        return math.inf
    if a64.size == 0:
        return 0.0
    with np.errstate(all="ignore"):
        same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
        return float(np.where(same, 0.0, np.abs(a64 - b64)).max())  # NaN where they differ in a NaN


# -- the result ------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeChange:
    """One row of a diff. Changes are relative (see `relative_change`); NaN where a side lacks the quantity, or
    where A and B differ in a NaN or infinite entry: `nonfinite` then says so per kind ({"params": "B: 1 NaN"}),
    and the status reads `not finite (B: 1 NaN)`."""

    name: str  # A's name (B's for a node only in B)
    name_b: str | None  # B's name, when it differs (matched by module path) or None if only in A
    op: str
    module: str
    status: str  # same, changed, only in A, only in B, shape differs, not finite (B: 1 NaN)
    is_parameter: bool
    shape_a: tuple[int, ...] | None
    shape_b: tuple[int, ...] | None
    param_change: float = math.nan
    value_change: float = math.nan
    grad_change: float = math.nan
    param_max_abs: float = math.nan
    nonfinite: dict[str, str] = field(default_factory=dict)  # kind -> `B: 1 NaN`, where they differ in one

    def change(self, kind: str) -> float:
        """The relative change of `kind` (params, values or grads); a node only on one side counts as inf; NaN
        where there is none to take (see `moved`)."""
        if self.status in (ONLY_A, ONLY_B, SHAPE):
            return math.inf
        return {"params": self.param_change, "values": self.value_change, "grads": self.grad_change}[kind]

    def moved(self, kind: str) -> float:
        """What ranks and colours a node by `kind`: its change, inf where A and B differ in a NaN or infinite entry
        (no change is larger)."""
        return math.inf if kind in self.nonfinite else self.change(kind)

    def record(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["shape_a"] = list(self.shape_a) if self.shape_a is not None else None
        out["shape_b"] = list(self.shape_b) if self.shape_b is not None else None
        return out


@dataclass
class GraphDiff:
    """What `diff` found: one row per node (A's order, then nodes only in B), and the arrays behind them."""

    label_a: str
    label_b: str
    rows: list[NodeChange]
    traced: bool
    arrays: dict[str, dict[str, tuple[np.ndarray | None, np.ndarray | None]]] = field(default_factory=dict)
    comparison: Comparison | None = None  # two backends' runs: the tolerance check (debugger.compare)

    def row(self, name: str) -> NodeChange:
        for r in self.rows:
            if r.name == name or r.name_b == name:
                return r
        raise KeyError(f"no node {name!r} in either graph")

    @property
    def parameters(self) -> list[NodeChange]:
        return [r for r in self.rows if r.is_parameter]

    def changed(self, kind: str = "params") -> list[NodeChange]:
        """Rows whose `kind` differs at all (or which only one side has, or which differ in a NaN), in graph
        order."""
        rows = self.parameters if kind == "params" else self.rows
        return [r for r in rows if r.moved(kind) != 0 and not math.isnan(r.moved(kind))]

    def ranked(self, kind: str = "params") -> list[NodeChange]:
        """Rows by change, largest first (those differing in a NaN or infinite entry first, NaN last)."""
        rows = self.parameters if kind == "params" else self.rows
        return sorted(rows, key=lambda r: (-1.0 if math.isnan(r.moved(kind)) else r.moved(kind)), reverse=True)

    def by_node(self, kind: str = "params") -> dict[str, float]:
        """Node name (A's) -> change, for colouring a graph (inf where A and B differ in a NaN); a parameter
        colours by `params` whatever `kind`."""
        out = {}
        for r in self.rows:
            out[r.name] = r.moved("params" if r.is_parameter and kind == "params" else kind)
        return out

    def pair(self, name: str, kind: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """A's and B's array of `kind` at node `name` (None where a side has none)."""
        return self.arrays.get(kind, {}).get(name, (None, None))

    def records(self) -> list[dict[str, Any]]:
        return [r.record() for r in self.rows]

    def table(self) -> Any:
        """The rows as a pandas DataFrame where pandas is installed, else as a list of dicts."""
        try:
            import pandas as pd
        except ImportError:
            return self.records()
        return pd.DataFrame.from_records(self.records())

    def to_json(self) -> str:
        def clean(x: Any) -> Any:
            return None if isinstance(x, float) and math.isnan(x) else ("inf" if x == math.inf else x)

        rows = [{k: clean(v) for k, v in r.items()} for r in self.records()]
        return json.dumps({"a": self.label_a, "b": self.label_b, "traced": self.traced, "nodes": rows}, indent=1)


# -- diffing ---------------------------------------------------------------------------------
def diff(a: Any, b: Any, trace: bool = False, data: Any = None, arch: str | Path | None = None,
         seed: int = 0) -> GraphDiff:
    """Compare two states (see `as_state`); with `trace`, also every value and gradient on one batch.

    The batch is `data` (a file, a data set name or arrays), else A's session data, else A's model's.
    """
    sa, sb = as_state(a, arch, seed), as_state(b, arch, seed)
    pairs = match_nodes(sa.graph, sb.graph)
    arrays: dict[str, dict[str, tuple[np.ndarray | None, np.ndarray | None]]] = {k: {} for k in KINDS}
    for x, y in pairs:
        if x is not None and y is not None and x.op.name == "parameter":
            arrays["params"][x.name] = (_array(sa.params.get(x.name)), _array(sb.params.get(y.name)))
    if trace:
        _trace_arrays(sa, sb, pairs, data, arrays)
    rows = [_row(x, y, arrays) for x, y in pairs]
    return GraphDiff(sa.label, sb.label, rows, trace, arrays)


def _array(x: Any) -> np.ndarray | None:
    return None if x is None else np.asarray(x)


def _trace_arrays(sa: State, sb: State, pairs: list[tuple[Node | None, Node | None]], data: Any,
                  arrays: dict[str, dict[str, tuple[np.ndarray | None, np.ndarray | None]]]) -> None:
    from ..graph.datasets import load_data

    batch = load_data(data) if isinstance(data, str | Path) else data
    backend = get_backend("numpy", "float64")
    run_a = Session(sa.as_model(), backend, batch if batch is not None else sa.batch, name=sa.label)
    try:
        run_b = Session(sb.as_model(), backend, dict(run_a.batch), name=sb.label)
    except PropscopeError as exc:
        raise DiffError(f"{sb.label} cannot run on {sa.label}'s batch ({exc})") from None
    values, grads = [], []
    for run in (run_a, run_b):
        run.run_to_end()
        values.append({k: backend.to_numpy(v) for k, v in run.trace.values.items()})
        grads.append({k: backend.to_numpy(v) for k, v in run.trace.final_grads().items()})
    for x, y in pairs:
        if x is not None and y is not None:
            arrays["values"][x.name] = (values[0].get(x.name), values[1].get(y.name))
            arrays["grads"][x.name] = (grads[0].get(x.name), grads[1].get(y.name))


def _row(x: Node | None, y: Node | None,
         arrays: Mapping[str, Mapping[str, tuple[np.ndarray | None, np.ndarray | None]]]) -> NodeChange:
    node = x if x is not None else y
    assert node is not None
    is_param = node.op.name == "parameter"
    shape_a = tuple(x.shape) if x is not None and x.shape is not None else None
    shape_b = tuple(y.shape) if y is not None and y.shape is not None else None
    if x is None or y is None:
        return NodeChange(node.name, None, node.op.name, node.module, ONLY_B if x is None else ONLY_A, is_param,
                          shape_a, shape_b)
    changes = {k: relative_change(*arrays[k][x.name]) if x.name in arrays.get(k, {}) else math.nan for k in KINDS}
    notes = {k: note for k in KINDS if x.name in arrays.get(k, {}) for note in [nonfinite_text(*arrays[k][x.name])]
             if note}
    if is_param and "params" in notes:
        notes.pop("values", None)  # a parameter's value is the parameter: said once
    pa, pb = arrays["params"].get(x.name, (None, None))
    if is_param and pa is not None and pb is not None and pa.shape != pb.shape:
        status = SHAPE
    elif notes:
        status = f"{NONFINITE} ({'; '.join(KIND_WORDS[k] + note for k, note in notes.items())})"
    elif x.op.name != y.op.name:
        status = CHANGED
    else:
        known = [v for v in changes.values() if not math.isnan(v)]
        status = CHANGED if any(v != 0 for v in known) else SAME
    return NodeChange(x.name, y.name if y.name != x.name else None, x.op.name, x.module, status, is_param,
                      shape_a, shape_b, changes["params"], changes["values"], changes["grads"],
                      max_abs(pa, pb) if is_param else math.nan, notes)


def diff_backends(session: Session, other: Backend, cursor: int | None = None,
                  tolerance: float | None = None) -> GraphDiff:
    """The session's pass against the same pass on `other` (the app's Compare backends), as a diff.

    Up to `cursor` (default: the whole pass); the result also carries the tolerance check
    (`GraphDiff.comparison`, as `propscope compare` prints it).
    """
    from .compare import backend_arrays, comparison_of

    cursor = len(session.steps) if cursor is None else cursor
    if cursor:
        session.trace.compute_through(cursor - 1)
    pairs = backend_arrays(session, other, cursor)
    arrays: dict[str, dict[str, tuple[np.ndarray | None, np.ndarray | None]]] = {k: {} for k in KINDS}
    for node in session.graph:
        arrays["values"][node.name], arrays["grads"][node.name] = pairs[node.name]
        if node.op.name == "parameter":
            arrays["params"][node.name] = arrays["values"][node.name]
    rows = [_row(n, n, arrays) for n in session.graph]
    check = comparison_of(session, other, cursor, pairs, tolerance)
    return GraphDiff(check.reference, check.other, rows, True, arrays, comparison=check)


def diff_epochs(session: Session, epoch_a: int, epoch_b: int, trace: bool = False) -> GraphDiff:
    """Two recorded epochs of the session's training run."""
    return diff((session, epoch_a), (session, epoch_b), trace=trace)

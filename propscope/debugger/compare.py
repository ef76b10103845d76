"""Compare two backends on the same graph, parameters and batch, node by node.

The reference run is the session's own trace; the other backend replays the same steps from
the same leaf values, up to the session's cursor. For each node we keep the largest absolute
difference of its value and of its gradient (as known at the cursor), which is what the app
colours nodes by and what `propscope compare` tabulates. No Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..backends.base import Backend
from ..graph.datasets import nonfinite_arrays
from .session import Session
from .trace import Trace

TOLERANCE = {"float64": 1e-10, "float32": 1e-5}

# Where torch's own kernel computes differently (device type, op), not propscope's derivative: said when such a node
# is the first beyond the tolerance (the nodes after it carry its difference on). Measured in tests/test_cuda.py.
TORCH_KERNEL_NOTES = {
    ("cuda", "hardswish"): "torch's CUDA hardswish multiplies by 1/6 rounded to float32, in float64 too (a relative "
                           "3e-8)",
    ("cuda", "hardsigmoid"): "torch's CUDA hardsigmoid multiplies by 1/6 rounded to float32, in float64 too (a "
                             "relative 3e-8)",
}


def default_tolerance(dtype: str) -> float:
    return TOLERANCE.get(dtype, 1e-5)


@dataclass(frozen=True)
class NodeDiff:
    """How far apart two backends are at one node. NaN where neither backend has that quantity yet."""

    name: str
    op: str
    value_diff: float  # max |a − b| over the value's elements (inf where only one side is finite)
    grad_diff: float
    value_scale: float  # max |reference| of the value, for the tolerance (see `Comparison.node_ok`)
    grad_scale: float

    @property
    def worst(self) -> float:
        """The larger of the two differences; what a node is coloured and ranked by."""
        return max((d for d in (self.value_diff, self.grad_diff) if not np.isnan(d)), default=0.0)

    def scaled(self, kind: str) -> float:
        """The value's ("values") or gradient's ("grads") difference over max(1, its size): what the tolerance
        bounds (see `Comparison.node_ok`), so a colour scale centred at the tolerance agrees with the verdict."""
        diff, scale = (self.grad_diff, self.grad_scale) if kind == "grads" else (self.value_diff, self.value_scale)
        if np.isnan(diff) or np.isinf(diff):
            return float(diff)
        return float(diff / max(1.0, 0.0 if np.isnan(scale) else scale))


@dataclass(frozen=True)
class Comparison:
    reference: str  # "numpy/float64 on cpu"
    other: str
    dtype: str
    cursor: int
    steps: int
    tolerance: float
    nodes: tuple[NodeDiff, ...]  # graph order
    # why the backends part where it is not a derivative that differs (see `value_routing_note`)
    note: str | None = None
    # the data itself holds NaN or inf (see `data_note`): said before any other reason, which it makes moot
    data_note: str | None = None

    def node_ok(self, d: NodeDiff) -> bool:
        """Within tolerance: absolute for magnitudes up to 1, relative to the value's size beyond."""
        return all(
            np.isnan(diff) or diff <= self.tolerance * max(1.0, scale)
            for diff, scale in ((d.value_diff, d.value_scale), (d.grad_diff, d.grad_scale))
        )

    @property
    def failures(self) -> list[NodeDiff]:
        return [d for d in self.nodes if not self.node_ok(d)]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def explanation(self) -> str | None:
        """Why the backends part: the data holding NaN or inf; else where the first node beyond the tolerance is an op
        whose torch kernel is known to compute differently on the device in use (see TORCH_KERNEL_NOTES); else the
        routing note; None otherwise."""
        failures = self.failures
        if not failures:
            return None
        if self.data_note is not None:
            return self.data_note
        first = failures[0]
        for side in (self.reference, self.other):
            if side.startswith("torch/"):
                device = side.rsplit(" on ", 1)[-1].split(":")[0]
                note = TORCH_KERNEL_NOTES.get((device, first.op))
                if note is not None:
                    return f"the first difference is at {first.name}: {note}; the nodes after it carry it on"
        return self.note

    @property
    def max_diff(self) -> float:
        return max((d.worst for d in self.nodes), default=0.0)

    def worst(self, n: int | None = None) -> list[NodeDiff]:
        """Nodes by largest difference, worst first."""
        ranked = sorted(self.nodes, key=lambda d: d.worst, reverse=True)
        return ranked if n is None else ranked[:n]

    def by_node(self) -> dict[str, float]:
        """Node name -> largest difference, for colouring the graph."""
        return {d.name: d.worst for d in self.nodes}


def max_abs_diff(a: Any, b: Any) -> tuple[float, float]:
    """(max |a − b|, max |a|) in float64; matching non-finite elements (NaN and NaN, inf and inf) agree."""
    if a is None or b is None:
        return (np.nan, np.nan) if a is None and b is None else (np.inf, np.nan)
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    if a64.shape != b64.shape:
        return np.inf, np.nan
    if a64.size == 0:
        return 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a64 - b64)
    same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
    diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
    finite = np.abs(a64[np.isfinite(a64)])
    return float(diff.max()), float(finite.max()) if finite.size else 0.0


def replay(session: Session, backend: Backend, cursor: int | None = None) -> Trace:
    """The session's pass on another backend, from the same leaf values, computed through `cursor` steps."""
    cursor = len(session.steps) if cursor is None else cursor
    src = session.backend
    values = session.trace.values
    leaves = {n.name: backend.asarray(src.to_numpy(values[n.name])) for n in session.graph.leaves}
    trace = Trace(session.graph, backend, leaves)
    if cursor:
        trace.compute_through(cursor - 1)
    return trace


Pair = tuple[np.ndarray | None, np.ndarray | None]


def backend_arrays(session: Session, other: Backend, cursor: int) -> dict[str, tuple[Pair, Pair]]:
    """Each node's (value, gradient) at `cursor` as (the session's, `other`'s) NumPy arrays; None where none yet.

    The session's trace must already be computed through `cursor` (see `compare_backends`). The other backend's
    pass keeps as much again: where both would not fit in the memory budget, it is refused before it runs.
    """
    if cursor:
        session.trace.estimate(cursor - 1, backends=2).check(session.trace.budget.limit)
    mine, theirs = session.trace, replay(session, other, cursor)
    ref = session.backend
    out = {}
    for node in session.graph:
        pairs = []
        for read in (Trace.value, Trace.grad):
            a, b = read(mine, node.name, cursor), read(theirs, node.name, cursor)
            pairs.append((None if a is None else np.asarray(ref.to_numpy(a)),
                          None if b is None else np.asarray(other.to_numpy(b))))
        out[node.name] = (pairs[0], pairs[1])
    return out


def comparison_of(session: Session, other: Backend, cursor: int, arrays: dict[str, tuple[Pair, Pair]],
                  tolerance: float | None = None) -> Comparison:
    """The tolerance check of `backend_arrays`: each node's largest value and gradient difference."""
    ref = session.backend
    rows = []
    for node in session.graph:
        (vd, vs), (gd, gs) = (max_abs_diff(*pair) for pair in arrays[node.name])
        rows.append(NodeDiff(node.name, node.op.name, vd, gd, vs, gs))
    comparison = Comparison(
        reference=_describe(ref),
        other=_describe(other),
        dtype=ref.dtype,
        cursor=cursor,
        steps=len(session.steps),
        tolerance=default_tolerance(ref.dtype) if tolerance is None else tolerance,
        nodes=tuple(rows),
    )
    if comparison.passed:
        return comparison
    return replace(comparison, note=value_routing_note(session, other, cursor, arrays, comparison),
                   data_note=data_note(session))


def data_note(session: Session) -> str | None:
    """Where the session's data holds NaN or inf, that sentence: each backend's kernels spread a NaN their own way
    (a product with a 0, a max, a sum in another order), so a node may hold NaN on one and a number on the other,
    an infinite difference that no derivative explains. None for finite data."""
    found = nonfinite_arrays({n.name: session.batch[n.name] for n in session.graph.inputs if n.name in session.batch})
    if not found:
        return None
    return (f"the data itself is not finite ({'; '.join(found)}): each backend's kernels spread NaN and inf their own "
            "way, so nodes that hold one on one backend and a number on the other differ by ∞; give finite data to "
            "compare the backends")


def value_routing_note(session: Session, other: Backend, cursor: int, arrays: dict[str, tuple[Pair, Pair]],
                       comparison: Comparison) -> str | None:
    """Where the backward pass first parts at a node whose value agrees, ask `other` for that node's gradient again
    from the reference's values (its users' values and gradients): if it then agrees, both backends' derivatives
    are the same and the difference came in through the values, one rounding apart (a matrix product summing in
    another order), which an op that routes its gradient by comparing values (a max pool meeting a tie on one
    backend and not on the other) turned into a different gradient. That sentence, or None."""
    by_name = {d.name: d for d in comparison.nodes}
    failing = {d.name for d in comparison.failures}
    graph, ref, trace = session.graph, session.backend, session.trace

    def ours(name: str, read: Any) -> Any:
        return other.asarray(ref.to_numpy(read(trace, name, cursor)))

    for d in comparison.failures:
        if np.isnan(d.grad_diff) or d.value_diff > comparison.tolerance * max(1.0, d.value_scale):
            continue  # its value differs too, or only its value does
        users = graph.users(d.name)
        if not users or any(u.name in failing and not np.isnan(by_name[u.name].grad_diff) for u in users):
            continue  # the gradient reached it different already: the origin is further down the backward pass
        total = None
        for user in users:
            if trace.grad(user.name, cursor) is None:
                continue
            inputs = [ours(a.name, Trace.value) for a in user.inputs]
            grads = other.vjp(user, inputs, ours(user.name, Trace.value), ours(user.name, Trace.grad))
            for arg, grad in zip(user.inputs, grads, strict=False):
                if arg.name == d.name and grad is not None:
                    part = np.asarray(other.to_numpy(grad), dtype=np.float64)
                    total = part if total is None else total + part
        mine = arrays[d.name][1][0]
        if total is None or mine is None:
            continue
        diff, scale = max_abs_diff(mine, total)
        if diff > comparison.tolerance * max(1.0, scale):
            return None  # the derivatives themselves differ: no excuse to offer
        ops = sorted({u.op.name for u in users})
        apart = max((by_name[a.name].value_diff for u in users for a in u.inputs), default=0.0)
        through = " and ".join(ops)
        return (f"{d.name}'s gradient differs ({d.grad_diff:.1e}) only through the values it is computed from: given "
                f"{comparison.reference}'s values, {comparison.other} computes the same gradient through {through} "
                f"({diff:.1e}); the values are one rounding apart ({apart:.1e}), and {through} routes its gradient by "
                "comparing values (a tie on one backend is none on the other); the nodes before it carry it on")
    return None


def compare_backends(
    session: Session, other: Backend, cursor: int | None = None, tolerance: float | None = None
) -> Comparison:
    """Each node's value and gradient at `cursor` (default: the session's) on its backend and on `other`."""
    cursor = session.cursor if cursor is None else cursor
    if cursor:
        session.trace.compute_through(cursor - 1)
    return comparison_of(session, other, cursor, backend_arrays(session, other, cursor), tolerance)


def _describe(backend: Backend) -> str:
    return f"{backend.name}/{backend.dtype} on {backend.device}"

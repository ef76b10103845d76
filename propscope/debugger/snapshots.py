"""Recording training snapshots: which epochs (a schedule), within how much memory (a budget).

The default schedule keeps every early epoch and thins later ones on a log scale, because early
training changes fastest: 50 snapshots of 2000 epochs are 0, 1, 2, ..., then ever wider apart,
ending at 2000. A snapshot at epoch k holds the parameters after k epochs (epoch 0: the initial
ones), copied at once from the trainer's buffers, so scrubbing to it is exact.

The recorder never holds more than its budget: a schedule that would not fit is shortened before
training starts (the count is cut to what fits), and a run continued in the app (more epochs on
top of the recorded ones) thins the oldest gaps when it would pass the budget. Training on from an
earlier recorded epoch (after `at_epoch`, scrubbing back) goes on from that epoch's parameters and
drops what was recorded after it, so the run stays one line of epochs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from ..graph.errors import PropscopeError
from ..graph.readers.snapshots import Snapshot, Snapshots
from .trace import Trace

if TYPE_CHECKING:
    from .session import Session

__all__ = ["DEFAULT_BUDGET_BYTES", "Snapshot", "SnapshotRecorder", "SnapshotSettings", "Snapshots",
           "log_schedule"]

DEFAULT_BUDGET_BYTES = 256 * 2**20
DEFAULT_COUNT = 200


class SnapshotError(PropscopeError):
    """Snapshot settings that cannot work (no snapshots, no room), or an epoch that was not recorded."""


def log_schedule(epochs: int, count: int) -> list[int]:
    """`count` epochs from 0 to `epochs` (both kept): every early one, then thinning on a log scale.

    Each next epoch is the previous one times a fixed ratio (at least one more); the ratio is the
    smallest for which the run ends within `count` points. Any points left over go into the widest
    gaps, so exactly `min(count, epochs + 1)` epochs come back.
    """
    if count < 2:
        raise SnapshotError(f"snapshots needs at least 2 (the start and the end), got {count}")
    if count >= epochs + 1:
        return list(range(epochs + 1))

    def walk(ratio: float, limit: int) -> list[int]:
        """The epochs `ratio` gives (stopping once past `limit` of them, where only their number matters)."""
        # each step is +1 while (p + 1) * ratio - 1 < p + 2, that is p + 1 < 2 / (ratio - 1): those come at once,
        # so the schedule costs its thinned part only (it is made on the GUI thread when the app trains)
        dense = epochs if ratio <= 1.0 else min(epochs, max(0, math.ceil(2.0 / (ratio - 1.0)) - 2))
        out = list(range(dense + 1))
        while out[-1] < epochs and len(out) <= limit:
            nxt = max(out[-1] + 1, math.floor((out[-1] + 1) * ratio) - 1)
            out.append(min(nxt, epochs))
        return out

    low, high = 1.0, float(epochs + 1)  # high: 0 then the end, two points
    for _ in range(60):
        mid = (low + high) / 2
        if len(walk(mid, count)) > count:
            low = mid
        else:
            high = mid
    chosen = walk(high, epochs + 1)
    logs = [math.log1p(e) for e in chosen]
    while len(chosen) < count:  # fill the widest gap (on a log scale) with its middle
        j = max(range(1, len(chosen)), key=lambda i: logs[i] - logs[i - 1] if chosen[i] - chosen[i - 1] > 1 else -1.0)
        middle = (chosen[j - 1] + chosen[j]) // 2
        chosen.insert(j, middle)
        logs.insert(j, math.log1p(middle))
    return chosen


@dataclass(frozen=True)
class SnapshotSettings:
    """What to record: how many snapshots (or exactly which epochs), whether one batch's whole trace, the budget."""

    count: int = DEFAULT_COUNT
    epochs: tuple[int, ...] | None = None  # explicit epochs instead of the log schedule
    trace: bool = False  # also every node's value and gradient on the batch
    budget_bytes: int = DEFAULT_BUDGET_BYTES

    def __post_init__(self) -> None:
        if self.budget_bytes <= 0:
            raise SnapshotError(f"the snapshot memory budget must be positive, got {self.budget_bytes}")
        if self.epochs is None and self.count < 2:
            raise SnapshotError(f"snapshots needs at least 2 (the start and the end), got {self.count}")
        if self.epochs is not None and any(e < 0 for e in self.epochs):
            raise SnapshotError("snapshot epochs must be 0 or more")


def settings_from(value: Any) -> SnapshotSettings | None:
    """`Trainer(snapshots=...)`: None/0/False (off), a count, a list of epochs, or SnapshotSettings."""
    if value is None or value is False or (isinstance(value, int) and not isinstance(value, bool) and value == 0):
        return None
    if isinstance(value, SnapshotSettings):
        return value
    if value is True:
        return SnapshotSettings()
    if isinstance(value, int | np.integer):
        return SnapshotSettings(count=int(value))
    if isinstance(value, Sequence):
        return SnapshotSettings(epochs=tuple(sorted({int(e) for e in value})))
    raise SnapshotError(f"snapshots should be a count, a list of epochs or SnapshotSettings, not {value!r}")


def _numpy_copy(backend: Any, x: Any) -> np.ndarray:
    """A copy that owns its memory: to_numpy may share a CPU tensor's buffer, which the trainer overwrites."""
    return np.array(backend.to_numpy(x), copy=True)


class SnapshotRecorder:
    """Records a Trainer's run into `snapshots` (the session's, when it continues the run they hold).

    `due(k)` says whether the parameters after k epochs of this run are wanted; `record(k, params)`
    stores them under the run's epoch offset. Called on the trainer's thread; the GUI reads
    `snapshots` between frames (adding is one list insert).
    """

    def __init__(self, session: Session, epochs: int, settings: SnapshotSettings) -> None:
        self.session = session
        self.settings = settings
        previous: Snapshots | None = getattr(session, "snapshots", None)
        start = continued_from(previous, session) if previous else None
        self.offset = start or 0
        self.snapshots: Snapshots = previous if previous is not None and self.offset else Snapshots()
        # training on from an earlier epoch (scrubbed back) is a new branch: what was recorded after it goes
        self.discarded = truncate_after(self.snapshots, self.offset) if self.offset else []
        per_snapshot = self.snapshot_bytes()
        room = max(0, settings.budget_bytes - self.snapshots.nbytes) // max(1, per_snapshot)
        self.epochs = epochs
        self.count = max(2, min(settings.count, room + (1 if self.offset else 0)))  # what fits the budget
        self.dropped: list[int] = []  # epochs thinned out to stay within the budget
        # what the snapshots hold, kept as they come: summing every snapshot per record would be quadratic
        # Python on the trainer's thread, holding the GIL that the GUI thread needs between frames
        self.nbytes = self.snapshots.nbytes
        session.snapshots = self.snapshots  # a viewer sees them grow while training runs

    def snapshot_bytes(self) -> int:
        """What one snapshot costs: the parameters, and with a trace every node's value and gradient."""
        s = self.session
        itemsize = np.dtype(str(s.backend.dtype)).itemsize
        params = sum(int(np.prod(s.graph[name].shape)) * itemsize for name in s.params)
        if not self.settings.trace:
            return params
        return params + sum(2 * int(np.prod(n.shape or ())) * itemsize for n in s.graph)

    @cached_property
    def wanted(self) -> frozenset[int]:
        """The epochs of this run to record. Worked out on first use, on the trainer's thread: the app makes
        its Trainer on the GUI thread, where a long schedule would cost a frame."""
        if self.settings.epochs is not None:
            wanted = [e for e in self.settings.epochs if e <= self.epochs]
        else:
            wanted = log_schedule(self.epochs, self.count)
        if self.offset:
            wanted = [e for e in wanted if e > 0]  # epoch 0 of a continued run is already recorded
        return frozenset(wanted)

    def due(self, epoch: int) -> bool:
        return epoch in self.wanted

    def record(self, epoch: int, params: Mapping[str, Any]) -> None:
        """Copy the parameters after `epoch` epochs of this run (and, if asked, trace one batch on them)."""
        backend = self.session.backend
        snap = Snapshot(self.offset + epoch, {k: _numpy_copy(backend, v) for k, v in params.items()})
        if self.settings.trace:
            self._trace(snap, params)
        replaced = self.snapshots[snap.epoch].nbytes if snap.epoch in self.snapshots else 0
        self.snapshots.add(snap)
        self.nbytes += snap.nbytes - replaced
        if self.nbytes > self.settings.budget_bytes:
            self.dropped += self.snapshots.thin_to(self.settings.budget_bytes, keep=snap.epoch)
            self.nbytes = self.snapshots.nbytes

    def _trace(self, snap: Snapshot, params: Mapping[str, Any]) -> None:
        s = self.session
        trace = Trace(s.graph, s.backend, {**s._leaves(), **params})
        if trace.schedule:
            trace.compute_through(len(trace.schedule) - 1)
        snap.values = {k: _numpy_copy(s.backend, v) for k, v in trace.values.items() if k not in params}
        snap.grads = {k: _numpy_copy(s.backend, v) for k, v in trace.final_grads().items()}

    def finish(self, epochs_done: int, params: Mapping[str, Any] | None, losses: Sequence[float]) -> None:
        """The end of the run is always recorded (also after a stop; not after a NaN: `params` None).

        The loss curve is kept beside."""
        if params is not None and self.offset + epochs_done not in self.snapshots:
            self.record(epochs_done, params)
        self.snapshots.loss.extend(float(v) for v in losses)
        self.session.snapshots = self.snapshots


def continued_from(previous: Snapshots, session: Session) -> int | None:
    """The recorded epoch that training the session now goes on from, or None for a new run.

    That is the epoch the session shows (after `at_epoch`, scrubbing back) or else the last one,
    where the session's parameters are still exactly that snapshot's.
    """
    if not len(previous):
        return None
    shown = getattr(session, "epoch", None)
    candidates = [shown] if shown is not None and shown in previous else []
    candidates.append(previous.epochs[-1])
    for epoch in candidates:
        if _same_params(previous[epoch], session):
            return int(epoch)
    return None


def truncate_after(snapshots: Snapshots, epoch: int) -> list[int]:
    """Drop the snapshots after `epoch` and the loss of the epochs after it; returns the epochs dropped."""
    later = [e for e in snapshots.epochs if e > epoch]
    for e in later:
        snapshots.remove(e)
    del snapshots.loss[epoch:]  # loss[i] is the loss of epoch i + 1, computed on the parameters after i epochs
    return later


def _same_params(snap: Snapshot, session: Session) -> bool:
    try:
        return all(np.array_equal(snap.params[k], session.backend.to_numpy(v)) for k, v in session.params.items())
    except KeyError:
        return False


def show_epoch(session: Session, epoch: int) -> None:
    """`Session.at_epoch`: the recorded parameters of `epoch` in the session, traced up to its cursor.

    The new trace is computed before anything is replaced; trace_changed (not cursor_moved: the cursor
    stays) and params_changed fire once each, so a viewer redraws once per scrub.
    """
    snaps = session.snapshots
    if not snaps:
        raise SnapshotError("no snapshots were recorded; train with snapshots (e.g. --snapshots 50)")
    if epoch not in snaps:
        raise SnapshotError(snaps.missing(int(epoch)))
    backend = session.backend
    params = dict(session.params)
    params.update({k: backend.asarray(v) for k, v in snaps[epoch].params.items()})
    trace = Trace(session.graph, backend, session._leaves(params=params))
    cursor = session.cursor
    if cursor:
        trace.compute_through(cursor - 1)
    session.params, session.trace, session.epoch = params, trace, int(epoch)
    session.trace_changed.emit()  # the cursor stays where it was: no cursor_moved, so each view redraws once
    session.params_changed.emit()

"""Training snapshots: the parameters (and optionally one batch's values and gradients) at chosen epochs.

The container (`Snapshots`) is plain NumPy so that the file reader can fill it; the trainer fills
it while training (`debugger.snapshots`). In a `.propscope` file (format version 2) a run's
snapshots are a few extra members beside the model, listed under `"snapshots"` in `model.json`:

    "snapshots": {"epochs": [0, 1, 2, 4, ...],            recorded epochs, strictly increasing
                  "params": {"W1": "snapshots/params/W1.npy", ...},   one stacked array per parameter,
                  "values": {...}, "grads": {...},        shape (len(epochs), *the parameter's shape)
                  "loss": "snapshots/loss.npy"}           the loss per epoch of the run (optional)

A file without that entry (every version-1 file) has no snapshots. Reading validates the epochs,
the names (parameters of the graph) and every shape before use; arrays are read by the native
reader's own bounded, budget-charged `.npy` reader.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelFormatError

if TYPE_CHECKING:
    import zipfile

    from ..model import Model

KEY = "snapshots"
ATTRIBUTE = "_propscope_snapshots"  # where a Model carries the snapshots read with it
MAX_SNAPSHOTS = 1_000_000


@dataclass
class Snapshot:
    """The state of a run after `epoch` epochs: parameters by name; values and gradients where recorded."""

    epoch: int
    params: dict[str, np.ndarray]
    values: dict[str, np.ndarray] = field(default_factory=dict)
    grads: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for part in (self.params, self.values, self.grads) for a in part.values())


class Snapshots:
    """A run's snapshots in epoch order, looked up by epoch (`snaps[100]`, `snaps.nearest(99)`)."""

    def __init__(self, items: list[Snapshot] | None = None, loss: list[float] | None = None) -> None:
        self._items: list[Snapshot] = sorted(items or [], key=lambda s: s.epoch)
        self.loss: list[float] = list(loss or [])  # the run's loss per epoch, where known

    # -- reading ---------------------------------------------------------------------------
    @property
    def epochs(self) -> list[int]:
        return [s.epoch for s in self._items]

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self._items)

    @property
    def has_trace(self) -> bool:
        return bool(self._items) and bool(self._items[0].values)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Snapshot]:
        return iter(list(self._items))

    def __contains__(self, epoch: object) -> bool:
        return isinstance(epoch, int | np.integer) and self._find(int(epoch)) is not None

    def _find(self, epoch: int) -> int | None:
        epochs = self.epochs
        i = bisect.bisect_left(epochs, epoch)
        return i if i < len(epochs) and epochs[i] == epoch else None

    def __getitem__(self, epoch: int) -> Snapshot:
        i = self._find(int(epoch))
        if i is None:
            raise KeyError(self.missing(int(epoch)))
        return self._items[i]

    def at_index(self, i: int) -> Snapshot:
        return self._items[i]

    def index_of(self, epoch: int) -> int | None:
        return self._find(epoch)

    def nearest(self, epoch: int) -> Snapshot:
        """The recorded snapshot closest to `epoch` (the earlier one on a tie)."""
        if not self._items:
            raise KeyError("no snapshots were recorded")
        epochs = self.epochs
        i = bisect.bisect_left(epochs, epoch)
        candidates = [j for j in (i - 1, i) if 0 <= j < len(epochs)]
        return self._items[min(candidates, key=lambda j: (abs(epochs[j] - epoch), epochs[j]))]

    def missing(self, epoch: int) -> str:
        """The sentence for an epoch that was not recorded, naming the recorded ones around it."""
        if not self._items:
            return "no snapshots were recorded (train with snapshots, e.g. --snapshots 50)"
        epochs = self.epochs
        i = bisect.bisect_left(epochs, epoch)
        near = [str(epochs[j]) for j in (i - 1, i) if 0 <= j < len(epochs)]
        return (f"epoch {epoch} was not recorded; the nearest recorded epochs are {' and '.join(near)} "
                f"({len(epochs)} snapshots from {epochs[0]} to {epochs[-1]})")

    # -- changing ------------------------------------------------------------------------
    def add(self, snapshot: Snapshot) -> None:
        """Insert (or replace) the snapshot of its epoch."""
        i = bisect.bisect_left(self.epochs, snapshot.epoch)
        if i < len(self._items) and self._items[i].epoch == snapshot.epoch:
            self._items[i] = snapshot
        else:
            self._items.insert(i, snapshot)

    def remove(self, epoch: int) -> None:
        i = self._find(epoch)
        if i is not None:
            del self._items[i]

    def thin_to(self, budget_bytes: int, keep: int | None = None) -> list[int]:
        """Drop snapshots until the rest fit `budget_bytes`; returns the epochs dropped.

        The first, the last and `keep` stay. Each drop removes the snapshot whose neighbours are
        closest on a log scale, so what remains keeps every early epoch and thins the later ones.
        """
        dropped: list[int] = []
        total = self.nbytes
        while total > budget_bytes and len(self._items) > 2:
            epochs = self.epochs
            best, best_gap = None, np.inf
            for j in range(1, len(epochs) - 1):
                if epochs[j] == keep:
                    continue
                gap = np.log1p(epochs[j + 1]) - np.log1p(epochs[j - 1])
                if gap < best_gap:
                    best, best_gap = j, gap
            if best is None:
                break
            total -= self._items[best].nbytes
            dropped.append(self._items.pop(best).epoch)
        return dropped

    def __repr__(self) -> str:
        if not self._items:
            return "<Snapshots: none>"
        return (f"<Snapshots {len(self)} epochs {self.epochs[0]}..{self.epochs[-1]}, "
                f"{self.nbytes / 2**20:.1f} MiB>")


# -- a Model's snapshots ---------------------------------------------------------------------
def attached(model: Model) -> Snapshots | None:
    """The snapshots read from a model's file (None where it had none)."""
    return getattr(model, ATTRIBUTE, None)


def attach(model: Model, snapshots: Snapshots | None) -> Model:
    """Give `model` its snapshots (saved with it, found by `attached`); returns the model."""
    object.__setattr__(model, ATTRIBUTE, snapshots)
    return model


# -- writing ---------------------------------------------------------------------------------
def members(model: Model) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest entry ({} without snapshots) and the arrays by member name, for `native.save`."""
    snaps = attached(model)
    if not snaps:
        return {}, {}
    first = snaps.at_index(0)
    entry: dict[str, Any] = {"epochs": snaps.epochs}
    arrays: dict[str, np.ndarray] = {}
    for part in ("params", "values", "grads"):
        names = list(getattr(first, part))
        if not names:
            continue
        entry[part] = {}
        for i, name in enumerate(names):
            member = f"{KEY}/{part}/{i}.npy"  # by position: a node name need not be a safe file name
            entry[part][name] = member
            arrays[member] = np.stack([np.asarray(getattr(s, part)[name]) for s in snaps])
    if snaps.loss:
        entry["loss"] = f"{KEY}/loss.npy"
        arrays[entry["loss"]] = np.asarray(snaps.loss, dtype=np.float64)
    return {KEY: entry}, arrays


# -- reading ---------------------------------------------------------------------------------
ReadArray = Callable[["zipfile.ZipFile", str, str], np.ndarray]


def read(model: Model, manifest: Mapping[str, Any], zf: zipfile.ZipFile, where: str, read_array: ReadArray) -> Model:
    """`model` with the snapshots its manifest lists, each array checked against the graph."""
    spec = manifest.get(KEY)
    if spec is None:
        return model
    if not isinstance(spec, dict):
        raise ModelFormatError(f"{where}: {KEY} should be an object")
    epochs = _epochs(spec.get("epochs"), where)
    shapes = {n.name: tuple(n.shape) for n in model.graph.leaves}
    parts: dict[str, dict[str, np.ndarray]] = {}
    for part in ("params", "values", "grads"):
        listed = spec.get(part, {})
        if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
            raise ModelFormatError(f"{where}: {KEY}.{part} should map names to members")
        parts[part] = {}
        for name, member in listed.items():
            if part == "params" and name not in shapes:
                raise ModelFormatError(f"{where}: snapshot parameter {name[:60]!r} is not in the graph")
            arr = read_array(zf, member, where)
            if arr.ndim == 0 or arr.shape[0] != len(epochs):
                raise ModelFormatError(f"{where}: snapshot {part} {name[:60]!r} holds {arr.shape[:1]} rows "
                                       f"for {len(epochs)} epochs")
            if part == "params" and arr.shape[1:] != shapes[name]:
                raise ModelFormatError(f"{where}: snapshot parameter {name[:60]!r} has shape {arr.shape[1:]}, "
                                       f"the graph declares {shapes[name]}")
            parts[part][name] = arr
    if not parts["params"]:
        raise ModelFormatError(f"{where}: {KEY} lists no parameters")
    loss: list[float] = []
    if "loss" in spec:
        if not isinstance(spec["loss"], str):
            raise ModelFormatError(f"{where}: {KEY}.loss should name a member")
        loss = [float(v) for v in read_array(zf, spec["loss"], where).reshape(-1)]
    items = [Snapshot(epoch, *({k: v[i] for k, v in parts[p].items()} for p in ("params", "values", "grads")))
             for i, epoch in enumerate(epochs)]
    return attach(model, Snapshots(items, loss))


def _epochs(value: Any, where: str) -> list[int]:
    if (not isinstance(value, list) or not value or len(value) > MAX_SNAPSHOTS
            or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in value)
            or any(b <= a for a, b in itertools.pairwise(value))):
        raise ModelFormatError(f"{where}: {KEY}.epochs should be increasing whole numbers from 0")
    return list(value)

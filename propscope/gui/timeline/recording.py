"""What the trainer records for the timeline, and how much memory it may use: a row in the training dock.

The settings become the session's `snapshot_settings`, which every Trainer the app starts reads;
the label shows how many snapshots are held and their memory against the budget.
"""

from __future__ import annotations

import time

from PySide6.QtWidgets import QCheckBox, QGridLayout, QLabel, QSpinBox, QWidget

from ...debugger.session import Session
from ...debugger.snapshots import DEFAULT_BUDGET_BYTES, DEFAULT_COUNT, SnapshotSettings
from ..bridge import SessionBridge

MIB = 2**20
USAGE_INTERVAL_S = 0.25  # while training, the memory label follows at this pace, not at the plots' 30 Hz


class SnapshotControls(QWidget):
    def __init__(self, bridge: SessionBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("snapshotControls")
        self.bridge = bridge
        self.record = QCheckBox("Record snapshots", self)
        self.record.setChecked(True)
        self.record.setToolTip("Keep the parameters at chosen epochs (every early one, later ones thinned) "
                               "for the timeline under the graph")
        self.count = QSpinBox(self)
        self.count.setObjectName("snapshotCount")
        self.count.setRange(2, 100_000)
        self.count.setValue(DEFAULT_COUNT)
        self.count.setToolTip("How many epochs of a run to keep at most")
        self.budget = QSpinBox(self)
        self.budget.setObjectName("snapshotBudget")
        self.budget.setRange(1, 1 << 20)
        self.budget.setValue(DEFAULT_BUDGET_BYTES // MIB)
        self.budget.setSuffix(" MiB")
        self.budget.setToolTip("The memory snapshots may use; past it, the later ones are thinned")
        self.trace = QCheckBox("with values and gradients", self)
        self.trace.setToolTip("Also keep every node's value and gradient on the batch (costs more memory)")
        self.usage = QLabel(self)
        self.usage.setObjectName("snapshotUsage")
        self._shown: tuple[object, ...] | None = None  # what the label says, to skip frames where nothing changed
        self._when = 0.0
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.record, 0, 0, 1, 2)
        grid.addWidget(QLabel("at most", self), 1, 0)
        grid.addWidget(self.count, 1, 1)
        grid.addWidget(QLabel("within", self), 2, 0)
        grid.addWidget(self.budget, 2, 1)
        grid.addWidget(self.trace, 3, 0, 1, 2)
        grid.addWidget(self.usage, 4, 0, 1, 2)
        for box in (self.record, self.trace):
            box.toggled.connect(self.apply)
        for spin in (self.count, self.budget):
            spin.valueChanged.connect(self.apply)
        bridge.sessionChanged.connect(lambda _s: self.apply())
        self.apply()

    @property
    def session(self) -> Session:
        return self.bridge.session

    @property
    def budget_bytes(self) -> int:
        return self.budget.value() * MIB

    def settings(self) -> SnapshotSettings | None:
        if not self.record.isChecked():
            return None
        return SnapshotSettings(count=self.count.value(), trace=self.trace.isChecked(), budget_bytes=self.budget_bytes)

    def apply(self) -> None:
        """The settings onto the session (the next training run uses them)."""
        for w in (self.count, self.budget, self.trace):
            w.setEnabled(self.record.isChecked())
        self.session.snapshot_settings = self.settings()
        self.refresh()

    def refresh(self, force: bool = True) -> None:
        """The count and memory of the snapshots held. Unforced (each frame while training records), at most
        every USAGE_INTERVAL_S and only after a change: summing the memory walks every snapshot."""
        snaps = self.session.snapshots
        count = len(snaps) if snaps else 0
        key = (id(snaps), count, snaps.epochs[-1] if count else None, self.budget.value())
        now = time.monotonic()
        if not force and (key == self._shown or now - self._when < USAGE_INTERVAL_S):
            return
        self._shown, self._when = key, now
        held = snaps.nbytes if snaps else 0
        self.usage.setText(f"{count} recorded · {held / MIB:.1f} of {self.budget.value()} MiB")

    def follow(self) -> None:
        """A frame of a training run: the label when due (see `refresh`)."""
        self.refresh(force=False)

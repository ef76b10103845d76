"""The timeline bar under the canvas: a slider over the recorded epochs, keys, and playback.

Moving it calls `Session.at_epoch`, so every view that follows the session (canvas, inspector,
neuron and layer views, decision boundary) redraws from that epoch's parameters through the
bridge, and the training plots get a marker at the epoch. Stepping then works on those
parameters. While training runs the slider only follows (the trainer owns the parameters).

Keys (free in the main window): [ and ] (or Alt+← and Alt+→) the previous and next recorded
epoch, Alt+Home and Alt+End the first and last, Ctrl+Shift+Space plays the run.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QStyle, QToolButton, QWidget

from ...debugger.session import Session
from ...graph.errors import PropscopeError
from ..bridge import SessionBridge

DEFAULT_SPEED = 10.0  # recorded epochs per second


def _action(parent: QWidget, text: str, keys: list[str], tip: str) -> QAction:
    act = QAction(text, parent)
    act.setShortcuts([QKeySequence(k) for k in keys])
    act.setToolTip(f"{tip} ({', '.join(keys)})")
    act.setStatusTip(tip)
    act.setObjectName("timeline_" + text.lower().replace(" ", "_"))
    act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    return act


class TimelineBar(QWidget):
    epochShown = Signal(object)  # the epoch now shown (int), or None when the timeline lets go
    message = Signal(str)

    def __init__(self, bridge: SessionBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.compact = False  # projector mode: hidden while nothing is recorded
        self.setObjectName("timeline")
        self.bridge = bridge
        self.epochs: list[int] = []
        self.last_seconds = 0.0  # how long the last scrub took to redraw everything (the benchmark reads it)
        self.training = False
        self.markers: Any = None  # the plots' epoch lines (EpochMarkers), set where the bar is installed
        sp = QStyle.StandardPixmap
        self.play_button = QToolButton(self)
        self.play_button.setIcon(self.style().standardIcon(sp.SP_MediaPlay))
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play the run: the network through its recorded epochs (Ctrl+Shift+Space)")
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setObjectName("timelineSlider")
        self.slider.setPageStep(5)
        self.slider.setToolTip("Scrub through the recorded epochs of the training run")
        self.label = QLabel(self)
        self.label.setObjectName("timelineEpoch")
        self.label.setMinimumWidth(self.fontMetrics().horizontalAdvance("epoch 000000 / 000000 (000 of 000)"))
        self.speed = QDoubleSpinBox(self)
        self.speed.setObjectName("timelineSpeed")
        self.speed.setRange(0.5, 120.0)
        self.speed.setValue(DEFAULT_SPEED)
        self.speed.setSuffix(" /s")
        self.speed.setToolTip("Playback speed: recorded epochs per second")
        for widget in (self.slider, self.speed, self.play_button):
            # as the app's other controls: the arrow and page keys (a presenter remote) stay with stepping, and
            # the first window does not open with the speed box holding the keyboard
            widget.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 0, 4, 2)
        lay.addWidget(QLabel("Timeline", self))
        lay.addWidget(self.play_button)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.label)
        lay.addWidget(self.speed)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.previous_action = _action(self, "Previous epoch", ["[", "Alt+Left"], "The previous recorded epoch")
        self.next_action = _action(self, "Next epoch", ["]", "Alt+Right"], "The next recorded epoch")
        self.first_action = _action(self, "First epoch", ["Alt+Home"], "The first recorded epoch")
        self.last_action = _action(self, "Last epoch", ["Alt+End"], "The last recorded epoch")
        self.play_action = _action(self, "Play run", ["Ctrl+Shift+Space"], "Play the training run")
        self.previous_action.triggered.connect(lambda: self.move_by(-1))
        self.next_action.triggered.connect(lambda: self.move_by(1))
        self.first_action.triggered.connect(lambda: self.show_index(0))
        self.last_action.triggered.connect(lambda: self.show_index(len(self.epochs) - 1))
        self.play_action.triggered.connect(self.play_button.toggle)
        self.play_button.toggled.connect(self._play_toggled)
        self.speed.valueChanged.connect(self._set_speed)
        self.slider.valueChanged.connect(self.show_index)
        bridge.sessionChanged.connect(lambda _s: self.refresh())
        self._set_speed(self.speed.value())
        self.refresh()

    @property
    def actions_(self) -> list[QAction]:
        return [self.previous_action, self.next_action, self.first_action, self.last_action, self.play_action]

    @property
    def session(self) -> Session:
        return self.bridge.session

    # -- what there is to show -----------------------------------------------------------------
    def refresh(self) -> None:
        """Read the session's recorded epochs again (after training, opening a file, a reset)."""
        self._take_epochs()
        usable = len(self.epochs) >= 2 and not self.training
        for w in (self.slider, self.play_button):
            w.setEnabled(usable)
        for act in self.actions_:
            act.setEnabled(usable)
        if not usable and self.play_button.isChecked():
            self.play_button.setChecked(False)
        # shown for any trainable network, so the first snapshots of a run do not shift the canvas mid-training;
        # in projector mode (`compact`) only when there is a run to scrub: the room needs the height
        waiting = self.session.loss_node is not None and not self.compact
        self.setVisible(len(self.epochs) >= 2 or waiting)
        self._label()

    def _take_epochs(self) -> None:
        snaps = self.session.snapshots
        self.epochs = snaps.epochs if snaps else []
        shown = self.session.epoch
        with QSignalBlocker(self.slider):
            self.slider.setRange(0, max(0, len(self.epochs) - 1))
            index = snaps.index_of(shown) if snaps and shown is not None else None
            self.slider.setValue(len(self.epochs) - 1 if index is None else index)

    def follow_recording(self) -> None:
        """While training runs: take in new snapshots (only when there are more: this runs every frame).

        Only the slider's range and the label move; what is enabled or shown changes when training
        starts or ends (`set_training`), not per frame."""
        snaps = self.session.snapshots
        if (len(snaps) if snaps else 0) != len(self.epochs):
            self._take_epochs()
            if not self.isVisible() and len(self.epochs) >= 2:
                self.setVisible(True)
            self._label()

    def set_training(self, running: bool) -> None:
        """While a trainer runs, the slider follows the recording but cannot be moved."""
        self.training = running
        self.refresh()

    def _label(self) -> None:
        if len(self.epochs) < 2:
            self.label.setText("no snapshots yet: train to record the run")
            return
        i = self.slider.value()
        last = self.epochs[-1]
        shown = self.session.epoch
        what = f"epoch {self.epochs[i]}" if shown is not None else "now"
        self.label.setText(f"{what} / {last} ({i + 1} of {len(self.epochs)})")

    # -- moving --------------------------------------------------------------------------------
    def show_index(self, index: int) -> bool:
        """Show the `index`-th recorded epoch everywhere; False where it cannot (training, nothing recorded)."""
        if self.training or not self.epochs:
            return False
        index = max(0, min(index, len(self.epochs) - 1))
        if self.slider.value() != index:
            with QSignalBlocker(self.slider):
                self.slider.setValue(index)
        epoch = self.epochs[index]
        start = time.perf_counter()
        try:
            self.session.at_epoch(epoch)
        except PropscopeError as exc:
            self.message.emit(str(exc))
            return False
        self.epochShown.emit(epoch)
        self.last_seconds = time.perf_counter() - start
        self._label()
        return True

    def show_epoch(self, epoch: int) -> bool:
        snaps = self.session.snapshots
        index = snaps.index_of(epoch) if snaps else None
        if index is None:
            self.message.emit(snaps.missing(epoch) if snaps else "no snapshots were recorded")
            return False
        return self.show_index(index)

    def move_by(self, steps: int) -> bool:
        return self.show_index(self.slider.value() + steps)

    # -- playback --------------------------------------------------------------------------------
    def _set_speed(self, per_second: float) -> None:
        self.timer.setInterval(max(8, int(1000 / per_second)))

    def _play_toggled(self, on: bool) -> None:
        sp = QStyle.StandardPixmap
        self.play_button.setIcon(self.style().standardIcon(sp.SP_MediaPause if on else sp.SP_MediaPlay))
        if on:
            if self.slider.value() >= len(self.epochs) - 1:
                self.show_index(0)
            self.timer.start()
        else:
            self.timer.stop()

    def _tick(self) -> None:
        if self.slider.value() >= len(self.epochs) - 1 or not self.move_by(1):
            self.play_button.setChecked(False)

    def stop(self) -> None:
        self.play_button.setChecked(False)

    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def forget(self) -> Any:
        """Drop the run's snapshots (the parameters went back to the start)."""
        self.stop()
        self.session.snapshots = None
        self.session.epoch = None
        self.epochShown.emit(None)
        self.refresh()

"""The training dock: settings and controls on the left, the live loss, output and gradient-health plots beside.

It turns the forms into `RunSettings`, the buttons into runner calls and the runner's progress into
plot refreshes (at the runner's ~30 Hz, and only while the dock is visible). Data set changes go to
the session through the bridge. A NaN selects the op that made it and moves the cursor there.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QLabel,
    QScrollArea,
    QSplitter,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...debugger import Session
from ...debugger.trainer import run_health
from ...graph.datasets import make_dataset
from ...graph.errors import PropscopeError
from ...graph.model import TARGET
from ..bridge import SessionBridge
from ..guard import guarded
from ..plot_style import steady_label
from ..selection import Selection
from ..theme import ThemeManager
from ..timeline.recording import SnapshotControls
from .data_form import DataForm
from .form import FormError, TrainingForm
from .frame_budget import FrameBudget
from .health_plot import HealthPlot
from .loss_plot import LossPlot
from .output_view import OutputView
from .runner import RunSettings, TrainingRunner

READABLE_PLOT_PX = 110  # (at the theme's scale) a plot column narrower than this is folded away


def _button(text: str, tip: str, icon: QStyle.StandardPixmap, parent: QWidget) -> QToolButton:
    b = QToolButton(parent)
    b.setText(text)
    b.setToolTip(tip)
    b.setIcon(parent.style().standardIcon(icon))
    b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    b.setObjectName(f"train{text.replace(' ', '').replace('+1', 'One')}")
    return b


class TrainingPanel(QWidget):
    liveParams = Signal(object)  # a running trainer's parameters (a copy), for views that draw weights
    message = Signal(str)  # for the status bar
    aboutToTrain = Signal()  # a new run starts next (the timeline first goes back to a scrubbed-back epoch)

    def __init__(self, bridge: SessionBridge, selection: Selection, themes: ThemeManager, seed: int = 0,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainingPanel")
        self.bridge, self.selection, self.themes, self.seed = bridge, selection, themes, seed
        self.runner = TrainingRunner(bridge, self)
        self.form = TrainingForm()
        self.data_form = DataForm()
        sp = QStyle.StandardPixmap
        self.play = _button("Play", "Train for the chosen epochs, or go on after a pause", sp.SP_MediaPlay, self)
        self.pause = _button("Pause", "Pause after this epoch; the session then shows the parameters reached",
                             sp.SP_MediaPause, self)
        self.one_epoch = _button("+1 epoch", "Train exactly one epoch", sp.SP_MediaSeekForward, self)
        self.one_batch = _button("+1 batch", "One optimizer step on the next mini-batch", sp.SP_ArrowRight, self)
        self.reset = _button("Reset", "Back to the initial parameters; clears the plots", sp.SP_BrowserReload, self)
        self.status = QLabel()
        self.status.setObjectName("trainingStatus")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        buttons = QGridLayout()
        buttons.setSpacing(2)
        for i, b in enumerate((self.play, self.pause, self.one_epoch, self.one_batch, self.reset)):
            buttons.addWidget(b, i // 2, i % 2)  # two to a row: three do not fit the column at 1366×768
        controls = QWidget()
        column = QVBoxLayout(controls)
        column.setContentsMargins(4, 4, 4, 4)
        column.addLayout(buttons)
        column.addWidget(self.status)
        column.addWidget(self.form)
        self.snapshot_controls = SnapshotControls(bridge)  # what the timeline gets, within a memory budget
        column.addWidget(self.snapshot_controls)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        column.addWidget(line)
        column.addWidget(self.data_form)
        column.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidget(controls)
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.budget = FrameBudget()
        self.loss_plot = LossPlot(self.runner.log, themes, self.budget)
        self.output_view = OutputView(bridge, themes, self.budget)
        self.health_plot = HealthPlot(self.runner.log, themes, self.budget)
        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.split.setChildrenCollapsible(False)
        for w in (self.scroll, self.loss_plot, self.output_view, self.health_plot):
            self.split.addWidget(w)
        for i, stretch in enumerate((0, 4, 3, 4)):  # the output plane wants to be about square
            self.split.setStretchFactor(i, stretch)
        for plot in (self.loss_plot, self.output_view, self.health_plot):
            plot.setMinimumWidth(60)  # a small window (projector mode at 1024×768) must still fit the dock
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.split)
        self.test_batch: dict[str, np.ndarray] | None = None
        self._own_batch: dict[str, np.ndarray] = {}
        self._session: Session | None = None
        self._turn = 0  # which view the next frame redraws while training runs
        self._user_sized = False  # the user moved a splitter handle: keep their sizes
        self.split.splitterMoved.connect(lambda _pos, _i: setattr(self, "_user_sized", True))
        self.play.clicked.connect(self.start)
        self.pause.clicked.connect(self.runner.pause)
        self.one_epoch.clicked.connect(lambda: self._run(self.runner.step_epoch))
        self.one_batch.clicked.connect(lambda: self._run(self.runner.step_batch))
        self.reset.clicked.connect(self.runner.reset)
        self.form.changed.connect(self._hparams_edited)
        self.data_form.changed.connect(self.apply_data)
        self.runner.stateChanged.connect(self._state_changed)
        self.runner.progressed.connect(self._progressed)
        self.runner.progressed.connect(self.snapshot_controls.follow)  # a few times a second, not per frame
        self.runner.stateChanged.connect(lambda _state: self.snapshot_controls.refresh())
        self.runner.failed.connect(self._failed)
        self.runner.diverged.connect(self._diverged)
        bridge.sessionChanged.connect(self._session_changed)
        themes.changed.connect(self._theme)
        self._session_changed(bridge.session)
        self._theme()

    # -- the session and its data --------------------------------------------------------------
    def _session_changed(self, session: Session) -> None:
        if session is self._session:
            return
        self._session = session
        for plot in (self.loss_plot, self.health_plot):  # the last model's axis ranges mean nothing here
            plot.follower.reset()
        t = session.model.training
        self.form.load(t.optimizer, t.lr, t.epochs, t.batch_size)
        self._own_batch = {k: np.array(v) for k, v in session.batch.items()}
        self.test_batch = None
        if session.model.dataset is not None:
            name, options = session.model.dataset
            self.data_form.load(name, options, getattr(session, "seed", self.seed))
        else:
            self.data_form.load("", {}, self.seed)
        self._show_data()
        self._update_buttons()
        self._say("Press Play to train." if session.loss_node is not None
                  else "This session has no loss, so there is nothing to train.")

    def apply_data(self) -> bool:
        """Give the session the data set the form describes; on a mismatch, say why and keep the data."""
        spec = self.data_form.spec()
        try:
            if spec is None:
                batch, test = dict(self._own_batch), None
            else:
                data = make_dataset(spec[0], **spec[1])
                batch, test = data.batch(), data.test_batch()
            self.bridge.set_batch(batch)
        except PropscopeError as exc:
            self._say(f"Cannot use this data: {exc}")
            return False
        self.test_batch = test
        self._show_data()
        self._say(f"{len(batch['x' if 'x' in batch else next(iter(batch))])} training samples"
                  + (f", {len(test['x'])} for testing." if test else "."))
        return True

    def _show_data(self) -> None:
        s = self.bridge.session
        inputs = [n.name for n in s.model.graph.inputs]
        if len(inputs) != 1 or inputs[0] not in s.batch or TARGET not in s.batch:
            self.output_view.set_data(np.zeros((0, 2)), np.zeros(0))
            return
        test = self.test_batch
        self.output_view.set_data(np.asarray(s.batch[inputs[0]]), np.asarray(s.batch[TARGET]),
                                  None if test is None else np.asarray(test["x"]),
                                  None if test is None else np.asarray(test["y"]))

    # -- controls ------------------------------------------------------------------------------
    def settings(self, epochs: int | None = None) -> RunSettings:
        """What the forms say (FormError for a field that is not a number)."""
        return RunSettings(self.form.optimizer_name, self.form.hparams(), epochs or self.form.epochs.value(),
                           self.form.batch_size, self.test_batch, self.health_plot.record.isChecked())

    def _run(self, action: Any, epochs: int | None = None) -> bool:
        self.data_form.flush()
        try:
            settings = self.settings(epochs)
        except FormError as exc:
            self._say(str(exc))
            return False
        if not self.runner.busy:
            self.aboutToTrain.emit()
        return bool(action(settings))

    def start(self, epochs: int | None = None) -> bool:
        """Play: train `epochs` (the form's by default), or go on after a pause."""
        return self._run(self.runner.play, epochs if isinstance(epochs, int) and epochs > 0 else None)

    def _hparams_edited(self) -> None:
        if self.runner.busy:
            try:
                self.runner.set_hparams(self.form.hparams())
            except FormError as exc:
                self._say(str(exc))

    def _update_buttons(self) -> None:
        state = self.runner.state
        busy = self.runner.busy
        trainable = self.bridge.session.loss_node is not None
        self.play.setEnabled(trainable and state != "running")
        self.pause.setEnabled(state == "running")
        self.one_epoch.setEnabled(trainable and (not busy or state == "paused"))
        self.one_batch.setEnabled(trainable and (not busy or state == "paused"))
        self.reset.setEnabled(busy or self.runner.log.n > 0 or state != "idle")
        self.data_form.setEnabled(not busy)
        self.form.optimizer.setEnabled(not busy)
        self.form.batch.setEnabled(not busy)

    # -- runner events -------------------------------------------------------------------------
    def _state_changed(self, state: str) -> None:
        if state == "running":
            self.budget.restart()
        self._update_buttons()
        self._status_text()
        if state in ("finished", "stopped"):
            self.runner.pull()
            health = self._health(self.runner.log)
            if health:  # the dock's few lines may cut it: the window's status bar says it whole
                self.message.emit(health.strip())

    def _progressed(self) -> None:
        """A frame when the budget allows one while training runs; always one when it has ended."""
        running = self.runner.state == "running"
        if running and not self.budget.due():
            return
        self.runner.pull()  # costs the same per epoch however often it runs: not part of a frame's cost
        start = time.thread_time()
        self._status_text()
        if self.isVisible():
            self.refresh_plots()
        if running:
            self.budget.spent(time.thread_time() - start)

    def refresh_plots(self) -> None:
        """The plots from the log, and the output and neuron views from the trainer's live parameters.

        While training runs, one view moves per frame: the loss plot every other frame, the gradient
        health and the output views in turn between. A frame then paints one plot, which keeps both
        its cost and the event loop's longest wait small. Once training ends, everything is drawn.
        """
        if self.runner.state != "running":
            self.loss_plot.refresh()
            self.health_plot.refresh()
            self.liveParams.emit(None)
            return
        self._turn = (self._turn + 1) % 4
        if self._turn % 2 == 0:
            self.loss_plot.refresh()
        elif self._turn == 1:
            self.health_plot.refresh()
        else:
            params = self.runner.latest_params()
            if params is not None:
                self.output_view.redraw(params)
                self.liveParams.emit(params)

    @guarded
    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh_plots()

    @guarded
    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._size_columns()

    def _size_columns(self) -> None:
        """The controls as wide as they like to be, the rest shared 4 : 3 : 4 by the plots (the output plane
        wants to be about square), until the user moves a splitter handle."""
        total = self.split.width()
        if total <= 0:
            return
        controls = min(self.themes.theme.px(270), total // 3)
        rest = max(0, total - controls)
        self._fold_plots(rest)
        if self._user_sized:
            return
        shares = [share if not plot.isHidden() else 0 for share, plot in
                  zip((4, 3, 4), (self.loss_plot, self.output_view, self.health_plot), strict=True)]
        self.split.setSizes([controls, *(rest * share // sum(shares) for share in shares)])

    def _fold_plots(self, room: int) -> None:
        """Show as many plots as the room reads: the gradient health goes first, then the output view, the loss
        stays. Squeezed to a sliver, a plot's caption wrapped a word to a line and grew the window past the screen
        (projector mode at 1024×768: the window grew, its type with it, and the dock again, without end)."""
        readable = self.themes.theme.px(READABLE_PLOT_PX)
        fits = max(1, room // readable)
        self.output_view.setHidden(fits < 2)
        self.health_plot.setHidden(fits < 3)

    def _status_text(self) -> None:
        r = self.runner
        log = r.log
        loss = f" · loss {log.loss[-1]:.4g}" if log.n else ""
        rate = f" · {r.rate:,.0f} epochs/s" if r.rate else ""
        done = r.epochs_done + (len(r.trainer.history) if r.busy and r.trainer is not None else 0)
        texts = {
            "idle": None,
            "running": f"Training: epoch {done:,}{loss}{rate}",
            "paused": f"Paused after epoch {done:,}{loss}. The session shows these parameters: step through "
                      "the pass (F10), or press Play.",
            "finished": r.note or f"Trained {r.epochs_done:,} epochs{loss}{rate}.{self._health(log)}",
            "stopped": f"Stopped at epoch {r.epochs_done:,}{loss}.{self._health(log)}",
        }
        text = texts.get(r.state)
        if text is not None:
            self.status.setText(text)
            self.status.setToolTip(text)

    @staticmethod
    def _health(log: Any) -> str:
        """What went wrong in the runs so far without a NaN stopping them: a diverged loss, dead parameters."""
        if not log.n:
            return ""
        note = run_health(log.loss, {name: log.grad_norm(name) for name in log.norm_names})
        return f" {note[:1].upper()}{note[1:]}." if note else ""

    def _say(self, text: str, loud: bool = False) -> None:
        """Show `text` in the dock; `loud` also sends it to the window's status bar."""
        self.status.setText(text)
        if loud:
            self.message.emit(text)

    def _failed(self, text: str) -> None:
        self._say(f"Training failed: {text}", loud=True)

    def _diverged(self, nonfinite: Any) -> None:
        """Name the op in the dock and the status bar, and put the cursor and the selection on it."""
        s = self.bridge.session
        if nonfinite.step is not None and nonfinite.step < len(s.steps):
            s.seek(nonfinite.step + 1)
        if nonfinite.node is not None and nonfinite.node in s.graph:
            self.selection.select(nonfinite.node)
        self._say(nonfinite.message[:1].upper() + nonfinite.message[1:], loud=True)  # after the move, which clears

    def _theme(self) -> None:
        theme = self.themes.theme
        self.scroll.setMinimumWidth(theme.px(120))  # small windows (projector mode at 1024×768) must still fit
        self.scroll.setMaximumWidth(theme.px(300))
        self.loss_plot.fit_width()
        self._size_columns()
        steady_label(self.status, 3, QApplication.font())  # the type it gets after this signal
        self.status.setStyleSheet(f"color: {theme.color('text').name()};")

    def shutdown(self) -> None:
        self.runner.shutdown()

    def train_for(self, epochs: int, dataset: str | None = None) -> bool:
        """Start `epochs` epochs now (the command line's --train); with `dataset`, on that generated data set
        (the generator's size and noise, 20% held out, as many classes as the network has outputs)."""
        if dataset and not self.use_dataset(dataset):
            return False
        self.form.epochs.setValue(epochs)
        return self.start(epochs)

    def use_dataset(self, dataset: str) -> bool:
        """Step and train on a generated data set (the command line's --dataset): the generator's size and
        noise, 20% held out, as many classes as the network has outputs. False, with the reason shown,
        when it does not fit the model."""
        s = self.bridge.session
        out = s.prediction_node.shape
        classes = int(out[-1]) if s.loss_name == "cross_entropy" and out else 2
        self.data_form.load(dataset, {"n": 200, "noise": 0.1, "test_fraction": 0.2, "classes": classes}, self.seed)
        return self.apply_data()


def train_in_window(window: Any, epochs: int, dataset: str | None = None) -> bool:
    """Show the training dock, train to the end in the window's event loop, and say how it went on stderr."""
    import sys

    from PySide6.QtCore import QEventLoop

    panel: TrainingPanel = window.training
    window.training_dock.show()
    window.training_dock.raise_()
    if window.projector.on:  # a tab over the chain rule, sized to leave the canvas its room
        window.projector.size_wide_dock(window.training_dock)
    else:
        window.resizeDocks([window.training_dock], [window.themes.theme.px(330)], Qt.Orientation.Vertical)
    runner = panel.runner
    loop = QEventLoop()
    runner.stateChanged.connect(lambda state: state not in ("running", "paused") and loop.quit())
    if not panel.train_for(epochs, dataset):
        print(f"propscope: error: {panel.status.text()}", file=sys.stderr)
        return False
    if runner.busy:
        loop.exec()
    if runner.state in ("failed", "diverged"):
        print(f"propscope: {panel.status.text()}", file=sys.stderr)
    return True

"""The one place where session events (psygnal) become Qt signals.

Session events may fire on a worker thread (training, loading). The psygnal callbacks here only
emit Qt signals of this QObject, which lives on the GUI thread; Qt then queues them to widgets
living there, so no widget is ever touched from a worker. Widgets hold this bridge rather than the
bare session because opening another model swaps the session under the same window and docks.

Losses come once per epoch, which can be tens of thousands a second: `lossAppended` is throttled to
the screen's rate and carries the latest record (the history holds them all). While the app's own
trainer runs, the loss event is not even listened to (`mute_losses`): the training view reads the
trainer's history directly, and a listener would cost the worker a fifth of an xor epoch.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal

from ..debugger import Session

LOSS_INTERVAL_MS = 33  # lossAppended at most ~30 times a second


class SessionBridge(QObject):
    cursorMoved = Signal(int)
    traceChanged = Signal()
    breakpointHit = Signal(object)
    lossAppended = Signal(object)
    paramsChanged = Signal()
    sessionChanged = Signal(object)  # a new Session replaced the old one (or set_batch rebuilt its graph)
    breakpointsChanged = Signal()  # breakpoints edited from the GUI (the session has no event for it)
    trainingState = Signal(object, str)  # (trainer, state) from a watched Trainer's state_changed
    _lossQueued = Signal()  # worker -> GUI thread: a loss record is waiting

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._session = session
        self._latest_loss: Any = None
        self._loss_pending = False
        self._losses_muted = False
        self._loss_timer = QTimer(self)
        self._loss_timer.setSingleShot(True)
        self._loss_timer.setInterval(LOSS_INTERVAL_MS)
        self._loss_timer.timeout.connect(self._deliver_loss)
        self._lossQueued.connect(self._schedule_loss, Qt.ConnectionType.QueuedConnection)
        self._connect(session)

    @property
    def session(self) -> Session:
        return self._session

    def set_session(self, session: Session) -> None:
        """Observe `session` from now on; the old one is let go, untouched."""
        self._disconnect(self._session)
        self._session = session
        self._connect(session)
        self.sessionChanged.emit(session)

    def close(self) -> None:
        self._disconnect(self._session)

    # -- GUI-side edits that have no session event -------------------------------------------
    def toggle_breakpoint(self, name: str) -> bool:
        """Set or clear the breakpoint on node `name`; True when it is now set."""
        s = self._session
        on = name not in s.node_breakpoints()
        if on:
            s.add_breakpoint(name)
        else:
            s.remove_breakpoint(name)
        self.breakpointsChanged.emit()
        return on

    def set_break_on_nonfinite(self, on: bool) -> None:
        self._session.break_on_nonfinite = on
        self.breakpointsChanged.emit()

    def set_batch(self, batch: Any, target_drawn: bool = False) -> None:
        """New data: the graph is rebuilt for its sizes, so every view rebuilds as for a new session
        (`sessionChanged` with the same session object). `target_drawn`: its `y` was drawn, not given.
        The session's own events meanwhile are not passed on: a view told "the trace changed" before it rebuilds
        would look up its old nodes in the new graph (data that picks a merged decoder's other branch has others)."""
        self._disconnect(self._session)
        try:
            self._session.set_batch(batch, target_drawn)
        finally:
            self._connect(self._session)
        self.sessionChanged.emit(self._session)

    # -- training ----------------------------------------------------------------------------
    def watch_trainer(self, trainer: Any) -> None:
        """Re-emit `trainer.state_changed` (fired on the worker) as `trainingState` on this thread."""
        trainer.state_changed.connect(lambda state: self.trainingState.emit(trainer, state))

    def mute_losses(self, muted: bool) -> None:
        """Stop (or go back to) listening to `loss_appended`; call it from this thread, not mid-epoch."""
        if muted == self._losses_muted:
            return
        self._losses_muted = muted
        if muted:
            self._session.loss_appended.disconnect(self._loss)
        else:
            self._session.loss_appended.connect(self._loss)

    # -- psygnal callbacks: emit only, never touch a widget ---------------------------------
    def _connect(self, s: Session) -> None:
        s.cursor_moved.connect(self._cursor)
        s.trace_changed.connect(self._trace)
        s.breakpoint_hit.connect(self._hit)
        if not self._losses_muted:
            s.loss_appended.connect(self._loss)
        s.params_changed.connect(self._params)

    def _disconnect(self, s: Session) -> None:
        for sig, slot in ((s.cursor_moved, self._cursor), (s.trace_changed, self._trace),
                          (s.breakpoint_hit, self._hit), (s.loss_appended, self._loss),
                          (s.params_changed, self._params)):
            sig.disconnect(slot, missing_ok=True)

    def _cursor(self, cursor: int) -> None:
        self.cursorMoved.emit(cursor)

    def _trace(self) -> None:
        self.traceChanged.emit()

    def _hit(self, stop: Any) -> None:
        self.breakpointHit.emit(stop)

    def _loss(self, record: Any) -> None:
        """Keep the latest record; ask the GUI thread for one delivery unless one is already due."""
        self._latest_loss = record
        if not self._loss_pending:
            self._loss_pending = True
            self._lossQueued.emit()

    def _schedule_loss(self) -> None:
        if not self._loss_timer.isActive():
            self._loss_timer.start()

    def _deliver_loss(self) -> None:
        self._loss_pending = False
        self.lossAppended.emit(self._latest_loss)

    def _params(self) -> None:
        self.paramsChanged.emit()

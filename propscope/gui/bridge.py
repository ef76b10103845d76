"""The one place where session events (psygnal) become Qt signals.

Session events may fire on a worker thread (training, loading). The psygnal callbacks here only
emit Qt signals of this QObject, which lives on the GUI thread; Qt then queues them to widgets
living there, so no widget is ever touched from a worker. Widgets hold this bridge rather than the
bare session because opening another model swaps the session under the same window and docks.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from ..debugger import Session


class SessionBridge(QObject):
    cursorMoved = Signal(int)
    traceChanged = Signal()
    breakpointHit = Signal(object)
    lossAppended = Signal(object)
    paramsChanged = Signal()
    sessionChanged = Signal(object)  # a new Session replaced the old one
    breakpointsChanged = Signal()  # breakpoints edited from the GUI (the session has no event for it)

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._session = session
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

    # -- psygnal callbacks: emit only, never touch a widget ---------------------------------
    def _connect(self, s: Session) -> None:
        s.cursor_moved.connect(self._cursor)
        s.trace_changed.connect(self._trace)
        s.breakpoint_hit.connect(self._hit)
        s.loss_appended.connect(self._loss)
        s.params_changed.connect(self._params)

    def _disconnect(self, s: Session) -> None:
        for sig, slot in ((s.cursor_moved, self._cursor), (s.trace_changed, self._trace),
                          (s.breakpoint_hit, self._hit), (s.loss_appended, self._loss),
                          (s.params_changed, self._params)):
            sig.disconnect(slot)

    def _cursor(self, cursor: int) -> None:
        self.cursorMoved.emit(cursor)

    def _trace(self) -> None:
        self.traceChanged.emit()

    def _hit(self, stop: Any) -> None:
        self.breakpointHit.emit(stop)

    def _loss(self, record: Any) -> None:
        self.lossAppended.emit(record)

    def _params(self) -> None:
        self.paramsChanged.emit()

"""The debugger's actions with their keys, shared by the toolbar and the Debug menu.

Keys follow debuggers and presenter remotes: F10, → or PageDown step; Shift+F10, ← or PageUp
step back; F5 continue; Home reset; End run to the end.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QStyle, QWidget

from ..graph.errors import PropscopeError
from .bridge import SessionBridge

DEFAULT_PACE_S = 0.8


def _action(parent: QWidget, text: str, keys: list[str], tip: str, icon: QStyle.StandardPixmap | None = None,
            checkable: bool = False) -> QAction:
    act = QAction(text, parent)
    sequences = [QKeySequence(k) for k in keys]
    assert all(not seq.isEmpty() for seq in sequences), f"a key of {text!r} does not parse: {keys}"
    act.setShortcuts(sequences)
    shown = ", ".join(seq.toString(QKeySequence.SequenceFormat.NativeText) for seq in sequences)
    act.setToolTip(f"{tip} ({shown})" if keys else tip)
    act.setStatusTip(tip)
    act.setCheckable(checkable)
    if icon is not None:
        act.setIcon(parent.style().standardIcon(icon))
    act.setObjectName(text.lower().replace(" ", "_").strip("…"))
    return act


class Autoplay(QObject):
    """Steps at a steady pace; stops at the end and on a node breakpoint."""

    stopped = Signal(str)

    def __init__(self, bridge: SessionBridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.set_pace(DEFAULT_PACE_S)

    @property
    def running(self) -> bool:
        return self.timer.isActive()

    def set_pace(self, seconds: float) -> None:
        self.timer.setInterval(max(20, int(seconds * 1000)))

    def start(self) -> None:
        if self.bridge.session.at_end:
            self.bridge.session.reset()
        self.timer.start()

    def stop(self, why: str = "") -> None:
        if self.timer.isActive():
            self.timer.stop()
            self.stopped.emit(why)

    def _tick(self) -> None:
        s = self.bridge.session
        try:
            record = s.step()
        except PropscopeError as exc:  # an op the app cannot run: stop before it, saying why
            self.stop(str(exc))
            return
        if s.at_end:
            self.stop("reached the end of the pass")
        elif record is not None and record.node.name in s.node_breakpoints():
            self.stop(f"breakpoint on {record.phase} {record.node.name}")


class DebugActions(QObject):
    failed = Signal(str)  # a move stopped early: why (an unsupported op ahead)

    def __init__(self, bridge: SessionBridge, window: QWidget) -> None:
        super().__init__(window)
        self.bridge = bridge
        sp = QStyle.StandardPixmap
        self.reset = _action(window, "Reset", ["Home"], "Back to before the first step", sp.SP_MediaSkipBackward)
        self.back = _action(window, "Back", ["Shift+F10", "Left", "PgUp"], "Undo the last step",
                            sp.SP_MediaSeekBackward)
        self.step = _action(window, "Step", ["F10", "Right", "PgDown"], "Take the next step", sp.SP_MediaSeekForward)
        self.cont = _action(window, "Continue", ["F5"], "Run to the next breakpoint", sp.SP_MediaSkipForward)
        self.to_end = _action(window, "Run to end", ["End"], "Finish the forward and backward pass",
                              sp.SP_MediaSkipForward)
        self.play = _action(window, "Autoplay", ["Ctrl+Space"], "Step on its own at the chosen pace",
                            sp.SP_MediaPlay, checkable=True)
        self.toggle_breakpoint = _action(window, "Toggle breakpoint", ["F9"],
                                         "Set or clear a breakpoint on the selected node")
        self.break_nonfinite = _action(window, "Break on NaN/Inf", [],
                                       "Continue stops at the first NaN or infinity", checkable=True)
        self.all = [self.reset, self.back, self.step, self.cont, self.to_end, self.play]
        for act in [*self.all, self.toggle_breakpoint, self.break_nonfinite]:
            window.addAction(act)  # keys work wherever the focus is in the window
        self.autoplay = Autoplay(bridge, self)
        # A lesson takes Step and Back first (reveal an answer, train at its block); None: plain stepping.
        self.step_hook: Callable[[], bool] | None = None
        self.back_hook: Callable[[], bool] | None = None
        self.reset.triggered.connect(lambda: self._run(lambda s: s.reset()))
        self.back.triggered.connect(lambda: self._hooked(self.back_hook) or self._run(lambda s: s.step_back()))
        self.step.triggered.connect(lambda: self._hooked(self.step_hook) or self._run(lambda s: s.step()))
        self.cont.triggered.connect(lambda: self._run(lambda s: s.continue_()))
        self.to_end.triggered.connect(lambda: self._run(lambda s: s.run_to_end()))
        self.play.toggled.connect(self._play)
        self.autoplay.stopped.connect(lambda _why: self.play.setChecked(False))
        self.break_nonfinite.toggled.connect(bridge.set_break_on_nonfinite)
        bridge.cursorMoved.connect(lambda _c: self.update_enabled())
        bridge.sessionChanged.connect(self._session_changed)
        self.update_enabled()

    def _hooked(self, hook: Callable[[], bool] | None) -> bool:
        """True when a hook (a lesson) handled the key press itself."""
        if hook is None:
            return False
        self.autoplay.stop()
        return bool(hook())

    def _run(self, move: object) -> None:
        """A manual move stops autoplay first, so the two never fight over the cursor. A move that cannot
        go on (an unsupported op ahead) leaves the cursor before it and says why."""
        self.autoplay.stop()
        s = self.bridge.session
        try:
            move(s)  # type: ignore[operator]
        except PropscopeError as exc:
            if s.trace.computed > s.cursor:  # run as far as it can: to just before the op that cannot run
                s.seek(s.trace.computed)
            self.failed.emit(str(exc))

    def _play(self, on: bool) -> None:
        if on:
            self.autoplay.start()
        else:
            self.autoplay.stop()

    def _session_changed(self, session: object) -> None:
        self.autoplay.stop()
        self.break_nonfinite.setChecked(self.bridge.session.break_on_nonfinite)
        self.update_enabled()

    def update_enabled(self) -> None:
        s = self.bridge.session
        start, end = s.cursor == 0, s.at_end
        self.reset.setEnabled(not start)
        self.back.setEnabled(not start)
        self.step.setEnabled(not end)
        self.cont.setEnabled(not end)
        self.to_end.setEnabled(not end)

"""The debugger's actions with their keys, shared by the toolbar and the Debug menu.

Keys follow debuggers and presenter remotes: F10, → or PageDown step; Shift+F10, ← or PageUp
step back; F5 continue; Home reset; End run to the end.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QStyle, QWidget

from ..debugger.stepping import StepRun
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


FIRST_SLICE_S = 0.25  # a move that takes no longer is over before the key comes up, as it always was
SLICE_S = 0.04  # then this much computing between events: the window answers within a slice (and one step)
SLICE_GAP_MS = 0  # the events waiting are taken between slices; nothing more is waited for


class SlicedRun(QObject):
    """Run to end, Continue and far moves taken a slice at a time between events (`debugger.stepping.StepRun`), so
    the window stays live on a real-size network (DeepLabV3-ResNet50's pass took 7 s, the window frozen): the first
    slice runs at once, the rest from the event loop, `progressed` telling how far it got; `halt` stops it there."""

    progressed = Signal(int, int, str)  # steps gone through, of, what the run is ("Running to the end")
    ended = Signal()  # over, halted or failed: the progress display goes
    failed = Signal(str)  # a step could not run: why (the cursor is left before it)

    def __init__(self, bridge: SessionBridge, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.run: StepRun | None = None
        self.label = ""
        self.then: Callable[[], object] | None = None  # called when the run ends by itself (not halted, not failed)
        self.otherwise: Callable[[str], object] | None = None  # called with why, when a step cannot run
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self._slice)
        # another session, or new parameters or a new backend (a fresh trace): the run's steps are not this
        # trace's, and the cursor is the new trace's; the run is let go without moving anything
        bridge.sessionChanged.connect(lambda _s: self.drop())
        bridge.traceChanged.connect(self.drop)

    @property
    def running(self) -> bool:
        return self.run is not None

    def start(self, run: StepRun, label: str, then: Callable[[], object] | None = None,
              otherwise: Callable[[str], object] | None = None) -> None:
        self.halt()
        self.run, self.label, self.then, self.otherwise = run, label, then, otherwise
        self._slice(FIRST_SLICE_S)

    def halt(self) -> None:
        """Stop where the run got: the cursor goes just after the last step it took."""
        run = self.run
        if run is not None:
            self._end()
            run.halt()

    def drop(self) -> None:
        """Forget the run without moving the cursor."""
        if self.run is not None:
            self._end()

    def _end(self) -> None:
        self.run, self.then, self.otherwise = None, None, None
        self.timer.stop()
        self.ended.emit()

    def _slice(self, seconds: float | None = None) -> None:
        run = self.run
        if run is None:
            return
        s = self.bridge.session
        try:
            over = run.advance(SLICE_S if seconds is None else seconds)
        except PropscopeError as exc:  # an op the app cannot run: as far as it can, then say why
            otherwise = self.otherwise
            self._end()
            if run.move and s.trace.computed > s.cursor:
                s.seek(s.trace.computed)
            self.failed.emit(str(exc))
            if otherwise is not None:
                otherwise(str(exc))
            return
        except Exception:
            self._end()
            raise
        if over:
            then = self.then
            self._end()
            if then is not None:
                then()
            return
        self.progressed.emit(run.done, run.total, self.label)
        self.timer.start(SLICE_GAP_MS)


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
        self.sliced = SlicedRun(bridge, self)
        self.sliced.failed.connect(self.failed)
        self.stop_run = _action(window, "Stop running", ["Esc"], "Stop Run to end or Continue where it got to")
        self.stop_run.setEnabled(False)
        self.stop_run.triggered.connect(self.sliced.halt)
        window.addAction(self.stop_run)
        self.sliced.progressed.connect(lambda *_: self.stop_run.setEnabled(True))
        self.sliced.ended.connect(lambda: self.stop_run.setEnabled(False))
        # A lesson takes Step and Back first (reveal an answer, train at its block); None: plain stepping.
        self.step_hook: Callable[[], bool] | None = None
        self.back_hook: Callable[[], bool] | None = None
        self.reset.triggered.connect(lambda: self._run(lambda s: s.reset()))
        self.back.triggered.connect(lambda: self._hooked(self.back_hook) or self._run(lambda s: s.step_back()))
        self.step.triggered.connect(lambda: self._hooked(self.step_hook) or self._run(lambda s: s.step()))
        self.cont.triggered.connect(lambda: self.run_sliced(None, "Continuing to the next breakpoint", True))
        self.to_end.triggered.connect(lambda: self.run_sliced(None, "Running to the end"))
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

    def run_sliced(self, target: int | None, label: str, breakpoints: bool = False,
                   then: Callable[[], object] | None = None, otherwise: Callable[[str], object] | None = None) -> None:
        """Move to cursor position `target` (None: the end; with `breakpoints`, Continue), a slice at a time; `then`
        once it is there, `otherwise(why)` where it cannot get there (an op that cannot run, the memory budget)."""
        run = self.sliced.run
        if run is not None and run.move and run.session is self.bridge.session and (run.target, run.breakpoints) == (
                target if target is not None else len(run.session.steps), breakpoints):
            self.sliced.then = then or self.sliced.then  # asked again (Gradient flow after End): told as well
            self.sliced.otherwise = otherwise or self.sliced.otherwise
            return  # the same key again while it runs: it is already on its way
        self.autoplay.stop()
        self.sliced.halt()
        try:
            run = self.bridge.session.start_run(target, breakpoints)
        except PropscopeError as exc:  # more than the memory budget allows: nothing was computed
            self.failed.emit(str(exc))
            if otherwise is not None:
                otherwise(str(exc))
            return
        self.sliced.start(run, label, then, otherwise)

    def _run(self, move: object) -> None:
        """A manual move stops autoplay and a run in slices first (the cursor where it got), so none fight over
        the cursor. A move that cannot go on (an unsupported op ahead) leaves the cursor before it and says why."""
        self.autoplay.stop()
        self.sliced.halt()
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

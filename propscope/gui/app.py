"""Starting the desktop app, or rendering one screenshot of it and exiting (`propscope open --screenshot`), or
showing a window from a script or a notebook (`propscope.show`)."""

from __future__ import annotations

import gc
import signal
import sys
import threading
from pathlib import Path

from PySide6.QtCore import QEvent, QEventLoop, QObject, QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from ..debugger import Session
from . import feature_scan  # noqa: F401  (before the app's own modules: shiboken reads no file it need not)
from .guard import guarded_answer
from .main_window import MainWindow
from .training.dock import train_in_window

ORGANIZATION = "propscope"
APPLICATION = "propscope"


def application() -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    return app


def settle(app: QApplication) -> None:
    """What a running event loop does before the first paint, for a screenshot taken without one: the posted
    events, and deleting what Qt deletes later. Qt (6.11) lays out a spare dock tab bar when a second tab group
    forms and deletes it later; without that, the screenshot shows it painted over the chain rule's title."""
    for _ in range(2):
        app.processEvents()
        app.sendPostedEvents(None, QEvent.Type.DeferredDelete)


def parse_size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or int(w) < 200 or int(h) < 150:
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT (at least 200x150), e.g. 1280x800")
    return int(w), int(h)


def collect_garbage_once_shown() -> None:
    """The console script holds Python's cyclic GC off while the app starts (propscope/console.py): it comes back on
    as the event loop's first round, which paints the window, ends."""
    QTimer.singleShot(0, gc.enable)


def run(session: Session, step: int = 0, projector: bool = False, size: tuple[int, int] | None = None,
        screenshot: str | Path | None = None, seed: int = 0, train: int = 0, dataset: str | None = None,
        colour_by: str | None = None, message: tuple[str, str] = ("", "")) -> int:
    """Show the window after `step` steps; with `screenshot`, save it as a PNG and return instead.

    With `train`, the training dock first trains that many epochs (on `dataset` when given); with `colour_by` (a
    mode of View ▸ Colour nodes by), the nodes are coloured so; `message` (text, details) is the status bar's first.
    """
    app = application()
    # A screenshot is reproducible: it neither reads nor writes the user's saved window layout.
    window = MainWindow(session, settings=None if screenshot else QSettings(), seed=seed)
    if size is not None:
        window.resize(*size)
    if screenshot is not None:
        # Laid out and shown as on screen, but never painted to one: the grab below is the only paint (the
        # PNG is pixel for pixel the same; one full paint of the window less, ~15 ms of a small file's open).
        window.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
    if colour_by is not None:
        window.colour_by.set_mode(colour_by)
    window.show()
    app.processEvents()
    if projector:
        window.set_projector(True, full_screen=screenshot is None and size is None)
    if train and not train_in_window(window, train, dataset):
        window.close()
        return 2
    if dataset and not train and not window.training.use_dataset(dataset):  # step through it without training
        print(f"propscope: error: {window.training.status.text()}", file=sys.stderr)
        window.close()
        return 2
    session.seek(step)
    app.processEvents()
    if message[0]:  # after the step: a move clears the status message
        window.message(*message)
    if screenshot is None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl+C in the terminal quits, as for any command
        collect_garbage_once_shown()
        code = int(app.exec())
        if window.settings is not None:  # the console script exits without destructors (cli.entry): write now
            window.settings.sync()
        return code
    settle(app)
    path = Path(screenshot)
    ok = window.grab().save(str(path), "PNG", 80)  # light compression: a quarter faster to write, ~10% larger
    window.close()
    if not ok:
        print(f"propscope: error: could not write {path}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


_SHOWN: set[MainWindow] = set()  # windows shown without blocking, kept alive until they close


class _OnClose(QObject):
    """Calls `then` when the window it watches is closed (the window's own closeEvent still runs)."""

    def __init__(self, window: MainWindow, then: object) -> None:
        super().__init__(window)
        self.then = then
        window.installEventFilter(self)

    @guarded_answer(False)
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Close and callable(self.then):
            self.then()
        return False


def qt_loop_in_ipython() -> bool:
    """Whether this is IPython (a terminal or a Jupyter kernel) running Qt's event loop beside its own (`%gui qt`):
    then a window lives on between cells, and showing one must not block."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    if shell is None:
        return False
    kernel_loop = getattr(getattr(shell, "kernel", None), "eventloop", None)  # ipykernel: the loop's function
    if kernel_loop is not None:
        return "qt" in getattr(kernel_loop, "__name__", "").lower()
    return str(getattr(shell, "active_eventloop", "") or "").lower().startswith("qt")  # terminal IPython


def show(session: Session, block: bool | None = None, projector: bool = False,
         size: tuple[int, int] | None = None) -> Session:
    """The desktop app's window on `session`, from a script or a notebook. Blocking (the default outside IPython's
    Qt loop) returns when the window closes, with the session the window had then (File ▸ Open may have replaced
    it), cursor where it was left; Ctrl+C in the terminal closes the window and raises KeyboardInterrupt.
    Without blocking the window stays open beside the caller's own Qt loop, and the session is returned at once.
    A closed window is deleted (with what it holds of the session: views, caches), not kept until the process ends."""
    app = application()
    window = MainWindow(session, settings=QSettings())
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    if size is not None:
        window.resize(*size)
    window.show()
    if projector:
        window.set_projector(True, full_screen=size is None)
    if block is None:
        block = not qt_loop_in_ipython()
    if not block:
        _SHOWN.add(window)
        _OnClose(window, lambda: _SHOWN.discard(window))
        return session
    loop = QEventLoop()
    final: list[Session] = []
    _OnClose(window, lambda: (final.append(window.bridge.session), loop.quit()))
    interrupted: list[bool] = []

    def on_interrupt(*_: object) -> None:
        interrupted.append(True)
        window.close()

    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    ours = previous is not None and previous is not signal.SIG_IGN  # a SIGINT the caller ignores stays ignored
    if ours:
        signal.signal(signal.SIGINT, on_interrupt)
    wake = QTimer()  # Python runs its signal handlers only between bytecodes: Qt's loop must give it some
    wake.timeout.connect(lambda: None)
    wake.start(200)
    try:
        loop.exec()
    finally:
        wake.stop()
        if ours:
            signal.signal(signal.SIGINT, previous)
    app.sendPostedEvents(None, QEvent.Type.DeferredDelete)  # WA_DeleteOnClose's deletion, now, not at the next loop
    if interrupted:
        raise KeyboardInterrupt
    return final[0] if final else session

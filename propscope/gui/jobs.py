"""Long work (opening a big model, laying out its graph, explaining a gradient) off the GUI thread.

The work runs in a Python thread and must not touch widgets or the live session; its result or
error comes back through a queued Qt signal and is handled on the GUI thread. Cancel lets the
user go on at once: the result, when it comes, is dropped, so the current session stays as it was.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

SHOW_AFTER_MS = 300  # quick work finishes without a dialog flashing up
CLOSE_WAIT_S = 2.0  # a closing window waits this long for its cancelled jobs' threads, then closes all the same


# The cyclic garbage collector runs in whichever thread happens to allocate: while a job imports torch or timm in
# its thread, that is the job's, and a collection there finalises Qt wrappers the GUI thread owns (a widget from a
# closed dialog), which crashes the GUI thread later (seen as a segfault in its event loop while a worker imported
# timm). So the collector is held off while any job runs and given back on the GUI thread, where jobs start and end.
_workers: set[threading.Thread] = set()  # the job threads running, each holding the collector off
_was_enabled = [True]  # the collector's state before the first of them


def _hold_collector(worker: threading.Thread) -> None:
    _forget_finished()
    if not _workers:
        _was_enabled[0] = gc.isenabled()
        gc.disable()
    _workers.add(worker)


def _release_collector(worker: threading.Thread | None) -> None:
    _workers.discard(worker)  # type: ignore[arg-type]
    _forget_finished()
    if not _workers and _was_enabled[0]:
        gc.enable()


def _forget_finished() -> None:
    """A job whose window went away before its result came back never releases: its thread's end does."""
    held = bool(_workers)
    _workers.difference_update([w for w in _workers if not w.is_alive()])
    if held and not _workers and _was_enabled[0]:
        gc.enable()


class Job(QObject):
    finished = Signal(object)  # the result
    failed = Signal(object)  # the exception
    cancelled = Signal()
    # emitted from the worker thread with no arguments: the result waits in Python attributes, so no Python
    # object crosses threads inside a queued Qt event (PySide 6.11 can release such an object's last reference
    # in the wrong place, which showed as a crash in a later garbage collection)
    _done = Signal()

    def __init__(self, label: str, work: Callable[[], Any], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self.work = work
        self.running = False
        self.was_cancelled = False
        self.dialog: QProgressDialog | None = None
        self._parent = parent
        self._outcome: tuple[Any, BaseException | None] = (None, None)
        self._worker: threading.Thread | None = None
        self._done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)

    def start(self) -> Job:
        self.running = True
        self._worker = threading.Thread(target=self._run, name=f"propscope: {self.label}", daemon=True)
        _hold_collector(self._worker)
        self._worker.start()
        QTimer.singleShot(SHOW_AFTER_MS, self._show_progress)
        return self

    def _run(self) -> None:
        try:
            self._outcome = (self.work(), None)
        except Exception as exc:  # handed to the GUI thread, shown in a dialog there
            self._outcome = (None, exc)
        self._done.emit()

    def _show_progress(self) -> None:
        if not self.running or self.was_cancelled:
            return
        d = QProgressDialog(self.label, "Cancel", 0, 0, self._parent)
        d.setWindowTitle("propscope")
        d.setWindowModality(Qt.WindowModality.WindowModal)
        d.setMinimumDuration(0)
        d.canceled.connect(self.cancel)
        d.show()
        self.dialog = d

    def cancel(self) -> None:
        if self.running and not self.was_cancelled:
            self.was_cancelled = True
            self._close_dialog()
            self.cancelled.emit()

    @staticmethod
    def cancel_all(jobs: list[Job], timeout: float = CLOSE_WAIT_S) -> list[Job]:
        """Cancel `jobs` and wait for their threads, `timeout` seconds for all of them together (a window closing);
        the jobs whose work has not stopped by then."""
        for job in jobs:
            job.cancel()
        deadline = time.monotonic() + timeout
        return [job for job in jobs if not job.wait(deadline - time.monotonic())]

    def wait(self, timeout: float) -> bool:
        """Block until the work's thread has ended, at most `timeout` seconds; whether it has. A window closing
        cancels its jobs and waits here, so no thread goes on reading a session its caller (a notebook, after
        `propscope.show`) is using again; the work stops at its next check of `cancel` (a gradient check: before
        its next tensor)."""
        worker = self._worker
        if worker is None:
            return True
        worker.join(max(0.0, timeout))
        if worker.is_alive():
            return False
        _release_collector(worker)  # now, not when the result's queued signal comes: the window may be gone by then
        return True

    def _close_dialog(self) -> None:
        if self.dialog is not None:
            self.dialog.canceled.disconnect(self.cancel)
            self.dialog.close()
            self.dialog.deleteLater()
            self.dialog = None
            if self._parent is not None:  # the step keys (and a presenter remote) go to the window again
                self._parent.activateWindow()

    def _on_done(self) -> None:
        (result, error), self._outcome = self._outcome, (None, None)
        self.running = False
        _release_collector(self._worker)
        self._close_dialog()
        if self.was_cancelled:
            return
        if error is not None:
            self.failed.emit(error)
        else:
            self.finished.emit(result)

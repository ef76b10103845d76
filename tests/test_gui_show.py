"""`propscope.show`: the app's window from a script or a notebook, on a session or a model held in Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import shiboken6
from PySide6.QtCore import QEvent, QSettings, Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

import propscope
import propscope.gui.app as app_module
from propscope.gui.main_window import MainWindow


@pytest.fixture(autouse=True)
def own_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window remembers its layout: in a file of this test's, not the user's."""
    monkeypatch.setattr(app_module, "QSettings",
                        lambda: QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat))


def _windows() -> list[MainWindow]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]


def test_blocking_show_returns_the_session_where_the_window_left_it(qtbot: Any) -> None:
    session = propscope.open_session("xor", seed=0)
    seen: list[MainWindow] = []

    def drive() -> None:  # runs inside show()'s event loop: a user stepping twice, then closing the window
        window = next(w for w in _windows() if w.bridge.session is session)
        seen.append(window)
        assert window.width() == 1000
        window.activateWindow()  # keys go to the active window, as to the one a user just saw open
        QApplication.processEvents()
        QTest.keyClick(window, Qt.Key.Key_F10)
        QTest.keyClick(window, Qt.Key.Key_F10)
        window.close()

    # Timers of this test's own, stopped when show() returns. The safety net used to be a bare static single-shot
    # of 30 s closing every window: it outlived the test and, 30 s on, closed whatever window a
    # later test had open (test_gui_window's, test_gui_training's...). A closed window lets go of its session, so
    # that test's session went on moving while its views, keys and jobs had stopped: one flaky failure in a few runs,
    # in whichever test was running then.
    timers = {delay: QTimer() for delay in (50, 30_000)}
    timers[50].timeout.connect(drive)
    timers[30_000].timeout.connect(lambda: [w.close() for w in _windows() if w.bridge.session is session])  # no hang
    for delay, timer in timers.items():
        timer.setSingleShot(True)
        timer.start(delay)
    try:
        returned = propscope.show(session, block=True, size=(1000, 700))
    finally:
        for timer in timers.values():
            timer.stop()
    assert returned is session and session.cursor == 2
    assert seen and not shiboken6.isValid(seen[0])  # deleted, not kept with its views until the process ends
    assert not _windows()


def test_show_without_blocking_keeps_the_window_until_it_closes(qtbot: Any) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    session = propscope.show(module, inputs=np.ones((5, 3), dtype=np.float32), loss="cross_entropy", block=False)
    assert session.name == "Sequential" and session.loss_name == "cross_entropy"
    window = next(w for w in _windows() if w.bridge.session is session)
    assert window in app_module._SHOWN  # held: a notebook cell keeps no reference to it
    qtbot.waitExposed(window)
    window.close()
    assert window not in app_module._SHOWN
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not shiboken6.isValid(window)


def test_show_takes_options_only_for_a_target_to_open(qtbot: Any) -> None:
    session = propscope.open_session("xor")
    with pytest.raises(TypeError, match="loss"):
        propscope.show(session, loss="mse", block=False)
    assert not app_module.qt_loop_in_ipython()  # pytest is not IPython: show() blocks by default here

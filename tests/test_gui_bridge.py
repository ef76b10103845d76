"""The bridge: session events from a worker thread reach the widgets on the GUI thread, queued."""

from __future__ import annotations

import threading

import pytest

import propscope
from propscope.gui.bridge import SessionBridge
from propscope.gui.main_window import MainWindow

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def test_events_from_a_worker_thread_are_delivered_on_the_gui_thread(qtbot):
    s = propscope.open_session("xor")
    bridge = SessionBridge(s)
    seen: list[tuple[int, str]] = []
    bridge.cursorMoved.connect(lambda c: seen.append((c, threading.current_thread().name)))
    worker = threading.Thread(target=lambda: [s.step() for _ in range(3)], name="worker")
    worker.start()
    worker.join()
    assert seen == []  # queued: nothing ran on the worker
    qtbot.waitUntil(lambda: len(seen) == 3)
    assert seen == [(1, "MainThread"), (2, "MainThread"), (3, "MainThread")]


def test_the_window_catches_up_with_steps_taken_on_a_worker(qtbot):
    w = MainWindow(propscope.open_session("xor"))
    qtbot.addWidget(w)
    w.show()
    s = w.bridge.session
    worker = threading.Thread(target=s.run_to_end)
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: w.position.text() == s.position_text())
    assert w.canvas.current_node() == s.steps[-1].node.name
    w.close()


def test_a_replaced_session_is_let_go(qtbot):
    old, new = propscope.open_session("xor"), propscope.open_session("neuron")
    bridge = SessionBridge(old)
    moves: list[int] = []
    bridge.cursorMoved.connect(moves.append)
    with qtbot.waitSignal(bridge.sessionChanged):
        bridge.set_session(new)
    old.step()
    new.step()
    new.step()
    assert moves == [1, 2]
    assert bridge.toggle_breakpoint("z") and new.node_breakpoints() == {"z"}
    assert not bridge.toggle_breakpoint("z") and not new.node_breakpoints()

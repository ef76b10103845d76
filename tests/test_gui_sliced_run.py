"""Run to end, Continue and far moves in the real window go a slice at a time between events (gui/actions.SlicedRun):
the window answers while a real-size pass computes (DeepLabV3-ResNet50's took 7 s with the window frozen), shows how far
it got, and Esc or any other move stops it there. The slices are made one step long here, so every model is "long"."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt, QTimer
from test_gui_open import unsupported_model  # a model whose stepping stops at an op it cannot run
from test_gui_window import make_window  # the real window, shown and active (the step keys are its shortcuts)

import propscope
from propscope.graph.examples import load_example
from propscope.graph.model import Model
from propscope.graph.readers import set_max_memory
from propscope.gui import actions
from propscope.gui.main_window import MainWindow

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = [pytest.mark.qt_log_ignore(OFFSCREEN_NOISE), pytest.mark.qt_log_level_fail("WARNING")]


@pytest.fixture(autouse=True)
def one_step_slices(monkeypatch):
    monkeypatch.setattr(actions, "FIRST_SLICE_S", 0.0)
    monkeypatch.setattr(actions, "SLICE_S", 0.0)


def open_window(qtbot, tmp_path, target: str | Model = "cnn") -> MainWindow:
    return make_window(qtbot, QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat), target)


def slow_slices(monkeypatch) -> None:
    """A slice every 50 ms, so that a test can act in the middle of the run."""
    monkeypatch.setattr(actions, "SLICE_GAP_MS", 50)


def wait_over(qtbot, w: MainWindow) -> None:
    qtbot.waitUntil(lambda: not w.debug.sliced.running, timeout=20_000)


def test_end_runs_a_step_per_slice_the_window_answering_between_and_ends_as_run_to_end(qtbot, tmp_path):
    w = open_window(qtbot, tmp_path)
    s = w.bridge.session
    answered: list[int] = []  # the event loop's own timer, fired between slices while the run goes
    ticker = QTimer(w)
    ticker.timeout.connect(lambda: answered.append(w.debug.sliced.run.done if w.debug.sliced.running else -1))
    ticker.start(0)
    qtbot.keyClick(w, Qt.Key.Key_End)
    assert w.debug.sliced.running and s.cursor == 0 and s.trace.computed == 1  # the key came back after one step
    assert w.run_progress.isVisible() and w.run_progress.maximum() == len(s.steps)
    assert w.status_message.text() == f"Running to the end: 1/{len(s.steps)} steps (Esc stops)"
    assert w.debug.stop_run.isEnabled()
    wait_over(qtbot, w)
    ticker.stop()
    assert len({done for done in answered if done > 0}) >= len(s.steps) // 2  # events ran between the steps
    assert s.at_end and not w.run_progress.isVisible() and w.status_message.text() == ""
    assert not w.debug.stop_run.isEnabled() and w.debug.step.isEnabled() is False
    assert w.position.text() == s.position_text() and w.selection.node == s.current.node.name
    whole = propscope.open_session("cnn")
    whole.run_to_end()
    for name in s.params:
        np.testing.assert_array_equal(s.grad(name), whole.grad(name))


def test_esc_stops_where_the_run_got_and_the_views_follow(qtbot, tmp_path, monkeypatch):
    slow_slices(monkeypatch)
    w = open_window(qtbot, tmp_path)
    s = w.bridge.session
    qtbot.keyClick(w, Qt.Key.Key_End)
    qtbot.waitUntil(lambda: w.debug.sliced.run is not None and w.debug.sliced.run.done >= 4)
    got = w.debug.sliced.run.done
    qtbot.keyClick(w, Qt.Key.Key_Escape)
    assert not w.debug.sliced.running and s.cursor == got and not w.run_progress.isVisible()
    assert w.selection.node == s.current.node.name and w.position.text() == s.position_text()
    qtbot.keyClick(w, Qt.Key.Key_End)  # End again goes on from there
    wait_over(qtbot, w)
    assert s.at_end


def test_a_step_key_during_a_run_stops_it_then_steps(qtbot, tmp_path, monkeypatch):
    slow_slices(monkeypatch)
    w = open_window(qtbot, tmp_path)
    s = w.bridge.session
    qtbot.keyClick(w, Qt.Key.Key_End)
    qtbot.waitUntil(lambda: w.debug.sliced.run is not None and w.debug.sliced.run.done >= 3)
    qtbot.keyClick(w, Qt.Key.Key_F10)
    got = s.cursor
    assert not w.debug.sliced.running and got >= 4
    qtbot.keyClick(w, Qt.Key.Key_End)
    qtbot.keyClick(w, Qt.Key.Key_End)  # pressed again while it runs: the same run goes on, not a new one
    assert w.debug.sliced.running and s.cursor == got
    qtbot.keyClick(w, Qt.Key.Key_Home)
    assert not w.debug.sliced.running and s.cursor == 0


def test_continue_stops_at_the_breakpoint_a_slice_at_a_time(qtbot, tmp_path):
    w = open_window(qtbot, tmp_path)
    s = w.bridge.session
    node = s.steps[-3].node.name  # a backward step near the end
    w.bridge.toggle_breakpoint(node)
    qtbot.keyClick(w, Qt.Key.Key_F5)
    assert w.debug.sliced.running and w.status_message.text().startswith("Continuing to the next breakpoint: 1/")
    wait_over(qtbot, w)
    want = propscope.open_session("cnn")
    want.add_breakpoint(node)
    stop = want.continue_()
    assert s.cursor == want.cursor and s.current.node.name == stop.step.node.name
    assert w.status_message.text() == f"Stopped: {stop.reason}"


def test_a_step_clicked_far_ahead_in_the_steps_list_goes_there_in_slices(qtbot, tmp_path):
    w = open_window(qtbot, tmp_path)
    s = w.bridge.session
    w.steps_dock.raise_()
    qtbot.waitUntil(w.steps.view.isVisible)
    row = len(s.steps) - 2
    w.steps.view.scrollTo(w.steps.model.index(row))
    rect = w.steps.view.visualRect(w.steps.model.index(row))
    qtbot.mouseClick(w.steps.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert w.debug.sliced.running and w.status_message.text().startswith(f"Going to step {row + 1}")
    wait_over(qtbot, w)
    assert s.cursor == row + 1


def test_another_model_opened_during_a_run_leaves_the_run_behind(qtbot, tmp_path):
    w = open_window(qtbot, tmp_path)
    old = w.bridge.session
    qtbot.keyClick(w, Qt.Key.Key_End)
    assert w.debug.sliced.running
    new = propscope.open_session("xor")
    w.bridge.set_session(new)
    assert not w.debug.sliced.running and not w.run_progress.isVisible()
    qtbot.wait(50)  # no slice left to run on either session
    assert old.cursor == 0 and old.trace.computed == 1 and new.cursor == 0 and new.trace.computed == 0


def test_an_op_that_cannot_run_stops_the_run_just_before_it_saying_why(qtbot, tmp_path):
    w = open_window(qtbot, tmp_path, unsupported_model())
    s = w.bridge.session
    qtbot.keyClick(w, Qt.Key.Key_End)
    wait_over(qtbot, w)
    assert s.cursor == s.node_phase_index("cumsum_1", "forward")
    assert "aten.cumsum" in w.status_message.text() and not w.run_progress.isVisible()


def test_a_run_past_the_memory_budget_is_refused_in_one_line_with_nothing_computed(qtbot, tmp_path):
    w = open_window(qtbot, tmp_path, load_example("cnn"))
    s = w.bridge.session
    set_max_memory(1024)
    try:
        qtbot.keyClick(w, Qt.Key.Key_End)
    finally:
        set_max_memory(None)
    assert not w.debug.sliced.running and s.trace.computed == 0 and s.cursor == 0
    assert "memory" in w.status_message.text() and "\n" not in w.status_message.text()


def test_explain_before_the_pass_computes_it_in_slices_without_moving_the_cursor(qtbot, tmp_path):
    w = open_window(qtbot, tmp_path, "xor")
    s = w.bridge.session
    s.seek(2)
    name = s.graph.parameters[0].name
    assert w.explain(name, (0, 0)) is None  # the pass first, a step a slice; the job when it is done
    assert w.debug.sliced.running and w.status_message.text().startswith(f"Computing the pass to explain ∂L/∂{name}")
    qtbot.waitUntil(lambda: getattr(w, "explain_dialog", None) is not None, timeout=10_000)
    assert s.cursor == 2 and s.trace.computed == len(s.steps)
    w.explain_dialog.close()


def test_esc_while_the_pass_is_computed_for_explain_explains_nothing_and_leaves_the_cursor(qtbot, tmp_path,
                                                                                          monkeypatch):
    slow_slices(monkeypatch)
    w = open_window(qtbot, tmp_path, "xor")
    s = w.bridge.session
    name = s.graph.parameters[0].name
    w.explain(name, (0, 0))
    qtbot.waitUntil(lambda: s.trace.computed >= 3)
    qtbot.keyClick(w, Qt.Key.Key_Escape)
    qtbot.wait(100)
    assert not w.debug.sliced.running and s.cursor == 0 and not w.jobs
    assert getattr(w, "explain_dialog", None) is None


def test_gradient_flow_runs_the_pass_in_slices_then_measures_it(qtbot, tmp_path):
    w = open_window(qtbot, tmp_path)
    s = w.bridge.session
    assert w.grad_flow.run() is None and w.debug.sliced.running  # the measures start once the pass is done
    qtbot.waitUntil(lambda: w.grad_flow.session is s, timeout=20_000)
    assert s.at_end and w.grad_flow_dock.isVisible()


def test_gradient_flow_asked_for_while_end_runs_is_measured_when_it_gets_there(qtbot, tmp_path, monkeypatch):
    slow_slices(monkeypatch)
    w = open_window(qtbot, tmp_path)
    s = w.bridge.session
    qtbot.keyClick(w, Qt.Key.Key_End)
    run = w.debug.sliced.run
    w.grad_flow_action.trigger()
    assert w.debug.sliced.run is run  # the same run goes on, not a second one from the start
    qtbot.waitUntil(lambda: w.grad_flow.session is s, timeout=20_000)
    assert s.at_end


def test_end_while_the_pass_is_computed_for_explain_moves_the_cursor_there(qtbot, tmp_path, monkeypatch):
    slow_slices(monkeypatch)
    w = open_window(qtbot, tmp_path, "xor")
    s = w.bridge.session
    w.explain(s.graph.parameters[0].name, (0, 0))
    qtbot.keyClick(w, Qt.Key.Key_End)  # a move of its own, not the explain's computing that leaves the cursor
    wait_over(qtbot, w)
    assert s.at_end

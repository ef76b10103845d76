"""Debug > Gradient check: finite differences off the GUI thread, nodes coloured by error, both gradients shown."""

from __future__ import annotations

import numpy as np
import pytest

import propscope
from propscope.debugger import gradcheck as gradcheck_module
from propscope.debugger.gradcheck import gradcheck, gradcheck_detailed
from propscope.gui.inspect.gradcheck_view import AMBER, GREEN, RED, gradcheck_color, node_errors
from propscope.gui.main_window import MainWindow

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = [pytest.mark.qt_log_ignore(OFFSCREEN_NOISE), pytest.mark.qt_log_level_fail("WARNING")]


def test_the_detailed_check_keeps_both_gradients_and_reports_progress() -> None:
    s = propscope.open_session("xor", dtype="float64")
    seen: list[tuple[int, int, str]] = []
    results = gradcheck_detailed(s, progress=lambda done, total, name: seen.append((done, total, name)))
    assert [r.row for r in results] == gradcheck(s)
    assert [name for _, _, name in seen] == [r.row.name for r in results] and seen[0][:2] == (0, len(results))
    for r in results:
        assert r.analytic.shape == r.numeric.shape == s.graph[r.row.name].shape
        np.testing.assert_allclose(r.analytic, r.numeric, rtol=1e-6, atol=1e-9)
    s.run_to_end()
    w1 = next(r for r in results if r.row.name == "W1")
    np.testing.assert_allclose(w1.analytic, s.grad("W1"), rtol=1e-12)
    stopped = gradcheck_detailed(s, progress=lambda done, total, name: done < 2)
    assert len(stopped) == 2  # cancelled between leaves


def test_colours_and_each_op_marked_by_the_leaves_it_reads() -> None:
    assert gradcheck_color(1e-10).name() == GREEN and gradcheck_color(1e-6).name() == AMBER
    assert gradcheck_color(0.3).name() == RED
    s = propscope.open_session("xor", dtype="float64")
    results = gradcheck_detailed(s)
    bad = [r if r.row.name != "W2" else type(r)(type(r.row)(**{**r.row.__dict__, "relative_error": 0.5,
                                                                "within_noise": False}),
                                                r.analytic, r.numeric) for r in results]
    errors = node_errors(s.graph, bad)
    assert errors["W2"] == errors["final_input"] == 0.5  # the op that reads W2
    assert errors["hidden_input"] < 1e-7 and "final_output" not in errors  # reads no leaf


def test_gradient_check_in_the_window_colours_the_graph_and_fills_the_inspector(qtbot, monkeypatch) -> None:
    w = MainWindow(propscope.open_session("xor"), settings=None)
    qtbot.addWidget(w)
    w.show()
    real = gradcheck_module._analytic

    def wrong_w2(session, leaves, wrt):  # a derivative with a bug in it: W2's gradient 1% off
        loss, grads = real(session, leaves, wrt)
        return loss, {**grads, "W2": grads["W2"] * 1.01}

    monkeypatch.setattr(gradcheck_module, "_analytic", wrong_w2)
    w.gradcheck_action.trigger()
    job = w.gradcheck.job
    qtbot.waitUntil(lambda: w.gradcheck.results is not None, timeout=60_000)
    assert job is not None and not job.running
    scene = w.canvas.graph_scene
    assert scene.diffs["W2"].name() == RED and scene.diffs["final_input"].name() == RED
    assert scene.diffs["W1"].name() == GREEN and scene.diffs["hidden_input"].name() == GREEN
    assert "worst W2" in w.status_message.text()
    w.selection.select("W2", (1, 0))
    assert w.inspector.check_row.isVisible()
    result = w.inspector.gradcheck["W2"]
    np.testing.assert_allclose(result.analytic, 1.01 * result.numeric, rtol=1e-6)
    assert "relative error 9.9" in w.inspector.numeric_panel.title.text()  # ‖1.01a − a‖ / ‖1.01a‖ ≈ 0.0099
    w.selection.select("hidden_output")
    assert not w.inspector.check_row.isVisible()  # an op: its leaves are checked, not it
    w.open_example("neuron")
    qtbot.waitUntil(lambda: w.bridge.session.name == "neuron", timeout=20_000)
    assert w.gradcheck.results is None and not w.canvas.graph_scene.diffs  # another model: the marks go
    w.close()

"""The Diff dock: two epochs, a file, the two backends; the canvas coloured by change; A, B and A - B shown."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QDockWidget, QWidget

import propscope
from propscope.graph.examples import load_example
from propscope.graph.readers.native import save
from propscope.gui.canvas.folding import BOX_PREFIX
from propscope.gui.diff.legend import diff_color
from propscope.gui.diff.view import change_color
from propscope.gui.main_window import MainWindow

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = [pytest.mark.qt_log_ignore(OFFSCREEN_NOISE), pytest.mark.qt_log_level_fail("WARNING")]


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat)


def make_window(qtbot, settings, session):  # type: ignore[no-untyped-def]
    w = MainWindow(session, settings=settings)
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    qtbot.waitExposed(w)
    return w


def rgb(color) -> int:  # type: ignore[no-untyped-def]
    return color.rgb() & 0xFFFFFF


def table_rows(view) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    t = view.table
    return [(t.item(i, 0).text(), t.item(i, 2).text(), t.item(i, 3).text()) for i in range(t.rowCount())]


def test_two_epochs_colour_the_graph_and_list_nodes_by_change(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    s = propscope.open_session("xor", dtype="float64")
    s.train(100, snapshots=10)
    w = make_window(qtbot, settings, s)
    w.diff_action.trigger()
    assert w.diff_dock.isVisible()
    view = w.diff_view
    result = view.compare_epochs(0, 100)
    assert result is not None
    rows = table_rows(view)
    assert {r[0] for r in rows} == {"W1", "b1", "W2", "b2"}  # parameters, largest change first
    changes = [float(r[1]) for r in rows]
    assert changes == sorted(changes, reverse=True) and all(c > 0 for c in changes)
    scene = w.canvas.graph_scene
    assert rgb(scene.diffs["W1"]) == rgb(change_color(result.row("W1").param_change))
    view.what.setCurrentIndex(view.what.findData("values"))
    assert "hidden_output" in {r[0] for r in table_rows(view)}
    # the selected node: A, B and A - B as numbers and heatmaps
    view.what.setCurrentIndex(view.what.findData("params"))
    w.selection.select("W2")
    assert view.detail.text().startswith("W2 (parameter)")
    assert [t.title for t in view.heat.tiles] == ["A", "B", "A − B"]
    a, b = result.pair("W2", "params")
    assert np.array_equal(view.heat.tiles[2].matrix, (a - b).reshape(a.shape[0], -1))
    view.clear_button.click()
    assert scene.diffs == {}


def test_a_file_with_one_weight_changed_shows_only_that_parameter(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = load_example("xor")
    arrays = {k: np.array(v) for k, v in model.arrays.items()}
    arrays["b2"][0] += 0.5
    path = save(dataclasses.replace(model, arrays=arrays), tmp_path / "changed.propscope")
    s = propscope.open_session("xor", dtype="float64")
    w = make_window(qtbot, settings, s)
    view = w.diff_view
    view.a.set_now()
    view.b.set_file(str(path))
    result = view.run()
    assert result is not None
    assert [r.name for r in result.changed("params")] == ["b2"]
    assert table_rows(view)[0][0] == "b2" and all(r[1] == "0" for r in table_rows(view)[1:])
    assert "1 of 4 nodes' parameters changed" in view.summary.text()


@pytest.mark.torch
def test_compare_backends_is_the_diff_dock_in_backend_mode_with_its_tolerance(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    from propscope.backends import get_backend
    from propscope.debugger.compare import compare_backends

    s = propscope.open_session("cnn")
    w = make_window(qtbot, settings, s)
    assert w.compare_action.shortcut().toString() == "Ctrl+B"
    assert w.findChild(QDockWidget, "compareDock") is None  # one view for every comparison
    s.seek(len(s.steps) - 3)
    job = w.compare_backends()
    with qtbot.waitSignal(job.finished, timeout=60000):
        pass
    view = w.diff_view
    assert w.diff_dock.isVisible() and view.kind == "values"
    c = view.comparison
    expected = compare_backends(s, get_backend("torch", "float32"))  # what `propscope compare` checks
    assert c is not None and c.by_node() == pytest.approx(expected.by_node(), nan_ok=True, abs=0)
    assert c.passed == expected.passed and "nodes agree" in view.summary.text()
    assert "tolerance" in view.summary.text() and view.legend.middle == c.tolerance
    worst = max((d for d in c.nodes if not np.isnan(d.value_diff)), key=lambda d: d.scaled("values"))
    assert view.table.item(0, 0).text() == worst.name and view.table.item(0, 3).text() == "agrees"
    assert view.table.horizontalHeaderItem(2).text() == "max |A−B|"
    scene = w.canvas.graph_scene
    name = next(n for n in scene.nodes if n in c.by_node() and not np.isnan(c.by_node()[n]))
    members = [d.scaled("values") for d in c.nodes if scene.key_of(d.name) == name and not np.isnan(d.value_diff)]
    assert rgb(scene.diffs[name]) == rgb(diff_color(max(members), c.tolerance))
    w.canvas.fold_all(True)  # colours survive folding: a box takes its worst member's
    assert w.canvas.graph_scene.nodes[BOX_PREFIX + "conv1"].diff_color is not None
    # the button in the dock runs the same comparison again
    jobs_before = len(w.jobs)
    view.backends.click()
    assert len(w.jobs) == jobs_before + 1
    with qtbot.waitSignal(w.jobs[-1].finished, timeout=60000):
        pass
    w.clear_comparison()
    assert view.comparison is None
    assert all(item.diff_color is None for item in w.canvas.graph_scene.nodes.values())


def test_the_two_backends_diff_carries_the_tolerance_check() -> None:
    pytest.importorskip("torch")
    from propscope.backends import get_backend
    from propscope.debugger.diff import diff_backends

    s = propscope.open_session("classifier", dtype="float64")
    s.run_to_end()
    result = diff_backends(s, get_backend("torch", "float64"))
    assert result.label_b.startswith("torch/float64") and result.comparison is not None
    assert result.comparison.passed and result.comparison.tolerance == 1e-10
    assert max(r.change("values") for r in result.rows) < 1e-10


def test_diff_colours_run_from_green_through_yellow_to_red() -> None:
    tol = 1e-5
    green, at, red = diff_color(0.0, tol), diff_color(tol, tol), diff_color(1.0, tol)
    assert green.green() > green.red() and red.red() > red.green() and at.red() > 200 and at.green() > 180
    assert diff_color(float("nan"), tol).saturation() < 40


def test_a_missing_file_is_said_not_raised(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    w = make_window(qtbot, settings, propscope.open_session("xor"))
    view = w.diff_view
    view.b.set_file("/nonexistent/model.propscope")
    messages: list[str] = []
    view.message.connect(messages.append)
    assert view.run() is None
    assert messages and messages[0].startswith("Cannot compare:") and "\n" not in messages[0]


def test_the_inspector_shows_a_b_and_their_difference_for_the_selected_node(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    s = propscope.open_session("xor", dtype="float64")
    s.train(60, snapshots=10)
    w = make_window(qtbot, settings, s)
    assert w.inspector.findChild(QWidget, "inspectorDiffRow") is None  # made with the Diff dock's view
    view = w.diff_view
    row = w.inspector.findChild(QWidget, "inspectorDiffRow")
    w.selection.select("W1")
    assert row is not None and not row.isVisible()  # no diff yet
    result = view.compare_epochs(0, 60)
    assert result is not None and row.isVisible()
    a, b = result.pair("W1", "params")
    assert np.array_equal(row.a.array, a) and np.array_equal(row.b.array, b)
    assert np.array_equal(row.delta.array, a - b)
    assert row.a.title.text().startswith("A: xor@0") and row.b.title.text().startswith("B: xor@60")
    row.delta.tabs.setCurrentIndex(row.delta.HEATMAP)  # the inspector's own heatmap of A − B
    image = row.delta.image.image
    assert np.allclose(image, a - b)
    w.selection.select("hidden_output")  # a value: the kind shown switches to the node's values
    va, vb = result.pair("hidden_output", "values")
    assert np.array_equal(row.a.array, va) and np.array_equal(row.b.array, vb)
    view.what.setCurrentIndex(view.what.findData("grads"))
    assert np.array_equal(row.a.array, result.pair("hidden_output", "grads")[0])
    view.clear()
    assert not row.isVisible()


def test_backend_summary_says_why_when_a_torch_kernel_is_the_origin() -> None:
    from propscope.debugger.compare import Comparison, NodeDiff
    from propscope.gui.diff.view import backend_summary

    nodes = (NodeDiff("hardswish_3", "hardswish", 3e-8, 0.0, 1.0, 1.0), NodeDiff("conv", "conv2d", 1e-8, 0.0, 1.0, 1.0))
    on_cuda, on_cpu = (backend_summary(Comparison("numpy/float64 on cpu", f"torch/float64 on {device}", "float64", 2,
                                                  4, 1e-10, nodes)) for device in ("cuda:0", "cpu"))
    assert "hardswish_3" in on_cuda and "1/6 rounded to float32" in on_cuda
    assert "1/6" not in on_cpu and "beyond the tolerance" in on_cpu


def test_table_rows_keep_their_text_whole_in_projector_mode(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    """Projector type is larger than the style's default row: the Diff and Gradient flow tables' rows grow with it
    (a row cut to the font's height hid the underscores of names: cross_entropy read "cross entropy")."""
    from PySide6.QtGui import QFontMetrics
    from PySide6.QtWidgets import QApplication

    from propscope.gui.diff.wiring import diff_view

    window = MainWindow(propscope.open_session("cnn"), settings=settings)
    qtbot.addWidget(window)
    table = diff_view(window).table
    window.set_projector(True, full_screen=False)
    line = QFontMetrics(QApplication.font()).height()
    assert line > 20 and table.verticalHeader().defaultSectionSize() > line
    window.set_projector(False)
    assert table.verticalHeader().defaultSectionSize() > QFontMetrics(QApplication.font()).height()

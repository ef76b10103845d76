"""The Diff dock: two epochs, a file, the two backends; the canvas coloured by change; A, B and A - B shown."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings

import propscope
from propscope.graph.examples import load_example
from propscope.graph.readers.native import save
from propscope.gui.diff import change_color
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


def test_the_two_backends_are_one_more_diff(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    s = propscope.open_session("classifier", dtype="float64")
    s.run_to_end()
    w = make_window(qtbot, settings, s)
    result = w.diff_view.run_backends()
    assert result is not None and result.label_b.startswith("torch/float64")
    assert max(r.change("values") for r in result.rows) < 1e-10


def test_a_missing_file_is_said_not_raised(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    w = make_window(qtbot, settings, propscope.open_session("xor"))
    view = w.diff_view
    view.b.set_file("/nonexistent/model.propscope")
    messages: list[str] = []
    view.message.connect(messages.append)
    assert view.run() is None
    assert messages and messages[0].startswith("Cannot compare:") and "\n" not in messages[0]

"""Debug ▸ Gradient flow in the real window: Ctrl+Shift+G runs the whole backward pass (the cursor at the end, as Run
to end leaves it), lists every parameter in forward order in the Gradient flow dock, bars and table, colours the
flagged ones on the graph, and a click on a row or a bar shows that parameter; the switch shows ∂L/∂h at every module
output the same way; a new session or new weights clear it; a session without a loss says how to get one."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QToolButton

import propscope
from propscope.gui.inspect.grad_flow_view import (
    ACTIVATION_COLUMNS,
    ACTIVATIONS,
    COLORS,
    PARAMETERS,
    UNIT_COLUMNS,
    UNITS,
    VERDICTS,
)
from propscope.gui.main_window import MainWindow

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                     "This plugin does not support raise")]
CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier


@pytest.fixture(scope="module")
def deep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten sigmoid layers with small weights: the first layers' gradients vanish."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layers: list[Any] = []
    for _ in range(10):
        fc = torch.nn.Linear(8, 8)
        with torch.no_grad():
            fc.weight.mul_(0.3)
        layers += [fc, torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(8, 3)).double().eval()
    path = tmp_path_factory.mktemp("flow") / "deep.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (torch.randn(4, 8, dtype=torch.float64),)), str(path))
    return path


def press_ctrl_shift_g(qtbot: Any, window: MainWindow) -> None:
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_G, CTRL_SHIFT)


def run_flow(qtbot: Any, window: MainWindow) -> None:
    press_ctrl_shift_g(qtbot, window)
    qtbot.waitUntil(lambda: window.grad_flow.session is not None, timeout=60_000)


@pytest.mark.torch
def test_ctrl_shift_g_lists_and_colours_every_parameter(qtbot: Any, deep: Path) -> None:
    s = propscope.open_session(deep, dtype="float64", loss="cross_entropy")
    window = MainWindow(s)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    run_flow(qtbot, window)
    assert s.at_end  # the pass was run as Run to end runs it: the inspector shows gradients
    view = window.grad_flow.view
    flow = view.flow
    assert window.grad_flow_dock.isVisible() and flow is not None
    assert view.table.rowCount() == len(s.graph.parameters) == len(flow.rows)
    names = [view.table.item(r, 1).text() for r in range(view.table.rowCount())]
    assert names[:2] == ["0.bias", "0.weight"]  # forward order
    # the weights are judged (a bias repeats its layer's error), with the reason in the flag
    assert view.table.item(1, 2).text().startswith("vanishing") and "8 vanishing" in view.summary.text()
    assert view.table.item(0, 2).text() == "ok"
    assert len(view.bars.opts["height"]) == len(flow.rows)
    diffs, color_of = window.canvas._diffs
    assert color_of(diffs["0.weight"]).name() == COLORS["vanishing"]
    assert color_of(diffs["20.weight"]).name() == COLORS[""]
    for name in ("0.weight", "18.bias"):
        row = names.index(name)
        view.table.cellClicked.emit(row, 1)
        assert window.selection.node == name
    np.testing.assert_allclose(s.grad("0.weight"), s.trace.grad("0.weight", len(s.steps)))
    window.bridge.paramsChanged.emit()  # new weights (a training step): these gradients are gone
    assert window.canvas._diffs is None and view.flow is None


def test_without_a_loss_it_shows_the_units_and_says_how_to_attach_one(qtbot: Any) -> None:
    """Units need the forward pass only: a session without a loss gets them, and the gradient views say how to get
    a backward pass."""
    window = MainWindow(propscope.open_session("xor", loss="none"))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    run_flow(qtbot, window)
    view = window.grad_flow.view
    assert view.mode == UNITS and view.flow is None and view.units is not None
    assert [view.table.item(r, 3).text() for r in range(view.table.rowCount())] == [
        r.name for r in view.units.rows] and view.table.rowCount() == 2  # xor's two sigmoids
    view.set_mode(PARAMETERS)
    assert "Debug ▸ Loss attaches one" in view.summary.text() and view.table.rowCount() == 0


def test_the_verdict_colours_are_distinct() -> None:
    assert len(set(COLORS.values())) == len(VERDICTS)


def test_the_switch_shows_the_gradient_at_every_module_output(qtbot: Any) -> None:
    """Activations: one bar and one row per module output, in forward order, flagged and coloured on the graph as
    the parameters are; a click shows that value's node; Parameters brings the parameters back, graph colours too."""
    from test_activation_flow import LAYERS, deep_mlp, session

    s = session(deep_mlp(residual=False))
    window = MainWindow(s)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    run_flow(qtbot, window)
    view = window.grad_flow.view
    assert view.mode == PARAMETERS and view.table.horizontalHeaderItem(1).text() == "parameter"
    button = view.findChild(QToolButton, "gradFlowActivations")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert view.mode == ACTIVATIONS and view.activations is not None
    rows = view.activations.rows
    headers = [view.table.horizontalHeaderItem(c).text() for c in range(view.table.columnCount())]
    assert headers == list(ACTIVATION_COLUMNS) and headers[5] == "‖∂L/∂h‖"
    assert view.table.rowCount() == len(rows) == 2 * LAYERS + 1 and len(view.bars.opts["height"]) == len(rows)
    outputs = [view.table.item(r, 3).text() for r in range(view.table.rowCount())]
    assert outputs[:3] == ["layer0.linear", "layer0.sigmoid", "layer1.linear"]  # forward order
    assert [view.table.item(r, 1).text() for r in range(3)] == ["layer0", "layer0", "layer1"]
    assert view.table.item(0, 2).text() == "vanishing" and view.table.item(len(rows) - 1, 2).text() == "ok"
    assert view.summary.text() == view.activations.summary() and "activations" in window.status_message.text()
    assert view.plot.getPlotItem().getAxis("left").labelText == "log₁₀ RMS(∂L/∂h)"
    diffs, color_of = window.canvas._diffs
    assert set(diffs) == {r.name for r in rows}  # the module outputs, not the parameters
    assert color_of(diffs["layer0.sigmoid"]).name() == COLORS["vanishing"]
    assert color_of(diffs["head.linear"]).name() == COLORS[""]
    view.table.cellClicked.emit(outputs.index("layer3.sigmoid"), 1)
    assert window.selection.node == "layer3.sigmoid"
    view.nodeClicked.emit("layer1.linear")  # what a click on a bar emits (`_plot_clicked`)
    assert window.selection.node == "layer1.linear"
    qtbot.mouseClick(view.findChild(QToolButton, "gradFlowParameters"), Qt.MouseButton.LeftButton)
    assert view.mode == PARAMETERS and view.table.rowCount() == len(s.graph.parameters)
    diffs, _ = window.canvas._diffs
    assert set(diffs) == {n.name for n in s.graph.parameters}
    window.bridge.paramsChanged.emit()
    assert window.canvas._diffs is None and view.activations is None and view.table.rowCount() == 0


def test_the_switch_is_kept_for_the_next_run(qtbot: Any) -> None:
    """Turned to Activations, the dock lists the activations again when Ctrl+Shift+G runs on new weights."""
    window = MainWindow(propscope.open_session("classifier", dtype="float64"))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    run_flow(qtbot, window)
    view = window.grad_flow.view
    view.set_mode(ACTIVATIONS)
    window.bridge.paramsChanged.emit()
    assert "Ctrl+Shift+G" in view.summary.text()
    run_flow(qtbot, window)
    assert view.mode == ACTIVATIONS
    assert [view.table.item(r, 3).text() for r in range(view.table.rowCount())] == ["hidden_input", "hidden", "logits"]
    assert set(window.canvas._diffs[0]) == {"hidden_input", "hidden", "logits"}


def test_units_shows_why_dead_relus_and_saturated_sigmoids(qtbot: Any) -> None:
    """Units: one bar and one row per activation function, the dead or saturated share as the bar, flagged rows
    coloured on the graph; a click goes to that node."""
    from test_unit_health import mlp
    from test_unit_health import session as unit_session

    # layer 1 pushed below 0 (dead); layer 2 then sees only its bias, 8: σ(8) > 0.99, saturated
    s = unit_session(mlp([("relu", {}), ("relu", {}), ("sigmoid", {})], bias=[0.0, -4.0, 8.0]))
    window = MainWindow(s)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    run_flow(qtbot, window)
    view = window.grad_flow.view
    qtbot.mouseClick(view.findChild(QToolButton, "gradFlowUnits"), Qt.MouseButton.LeftButton)
    assert view.mode == UNITS and view.units is not None
    headers = [view.table.horizontalHeaderItem(c).text() for c in range(view.table.columnCount())]
    assert headers == list(UNIT_COLUMNS)
    assert [view.table.item(r, 3).text() for r in range(3)] == ["layer0.act", "layer1.act", "layer2.act"]
    flags = [view.table.item(r, 2).text() for r in range(3)]
    assert flags == ["ok", "dead", "saturated"]
    assert view.table.item(1, 6).text() == "100%"  # every position 0 on every sample
    heights = list(view.bars.opts["height"])
    assert heights[1] == heights[2] == 100.0 and 0.0 <= heights[0] < 50.0
    assert view.plot.getPlotItem().getAxis("left").labelText == "% of units"
    assert view.summary.text() == view.units.summary() and "dead" in window.status_message.text()
    diffs, color_of = window.canvas._diffs
    assert set(diffs) == {"layer0.act", "layer1.act", "layer2.act"}
    assert color_of(diffs["layer1.act"]).name() == COLORS["dead"]
    assert color_of(diffs["layer2.act"]).name() == COLORS["saturated"]
    view.table.cellClicked.emit(1, 1)
    assert window.selection.node == "layer1.act"


def test_nan_gradients_and_undefined_ratios_read_as_they_do_in_the_terminal(qtbot: Any) -> None:
    """A NaN weight: every gradient NaN, so the norms read "—" (not 0 beside "not finite"), the flag says how many
    entries and that the weight holds the NaN itself, and the summary names it first, as `propscope grads` prints;
    the ‖g‖/‖w‖ of a zero bias reads "—" too, not "nan"."""
    from test_grad_flow import two_layers

    for nan in (True, False):
        window = MainWindow(two_layers(nan_at=(3, 5) if nan else None))
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        run_flow(qtbot, window)
        view = window.grad_flow.view
        assert view.flow is not None and view.summary.text() == view.flow.summary()
        rows = {view.table.item(r, 1).text(): r for r in range(view.table.rowCount())}
        cells = {name: [view.table.item(r, c).text() for c in range(view.table.columnCount())]
                 for name, r in rows.items()}
        assert all("nan" not in text for row in cells.values() for text in row)
        if nan:
            assert cells["fc.weight"][2] == "not finite (holds 1 NaN itself; ∂L/∂w: all 128 NaN)"
            assert cells["fc.weight"][4:] == ["—"] * 4
            assert view.summary.text().startswith("4 parameters, loss nan: fc.weight holds 1 NaN itself")
        else:
            assert cells["fc.bias"][2] == "ok" and cells["fc.bias"][7] == "—" and cells["fc.bias"][4] != "—"

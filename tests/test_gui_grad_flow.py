"""Debug ▸ Gradient flow in the real window: Ctrl+Shift+G runs the whole backward pass (the cursor at the end, as Run
to end leaves it), lists every parameter in forward order in the Gradient flow dock, bars and table, colours the
flagged ones on the graph, and a click on a row or a bar shows that parameter; a new session or new weights clear it;
a session without a loss says how to get one."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

import propscope
from propscope.gui.inspect.grad_flow_view import COLORS, VERDICTS
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
    assert view.table.item(0, 2).text() == "vanishing" and "16 vanishing" in view.summary.text()
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


def test_without_a_loss_it_says_how_to_attach_one(qtbot: Any) -> None:
    window = MainWindow(propscope.open_session("xor", loss="none"))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    press_ctrl_shift_g(qtbot, window)
    assert "Debug ▸ Loss" in (window.last_error or "") and window.grad_flow.session is None


def test_the_verdict_colours_are_distinct() -> None:
    assert len(set(COLORS.values())) == len(VERDICTS)

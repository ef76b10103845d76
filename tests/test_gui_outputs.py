"""Debug ▸ Loss on output in the real window: a model with two heads opens with the loss on the first and says so;
the menu moves it to the other, and is not there for a model with one output."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QSettings

import propscope
from propscope.graph import Graph, Model
from propscope.graph.readers import save_model
from propscope.gui.main_window import MainWindow

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
              pytest.mark.qt_log_level_fail("WARNING")]


def two_heads() -> Model:
    rng = np.random.default_rng(1)
    g = Graph("two_heads")
    x = g.input("x", (6, 4))
    heads = []
    for head, width in (("start", 3), ("end", 5)):
        w, b = g.parameter(f"{head}.weight", (4, width)), g.parameter(f"{head}.bias", (width,))
        heads.append(g.add("linear", x, w, b, name=f"{head}_logits"))
    g.set_outputs(*heads)
    arrays = {n.name: rng.normal(size=n.shape) for n in g.parameters}
    return Model(g, arrays, batch={"x": rng.normal(size=(6, 4))}, loss="cross_entropy")


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(propscope.open_session("xor"), settings=QSettings(str(tmp_path / "p.ini"),
                                                                      QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def test_the_loss_moves_to_the_output_chosen_in_the_debug_menu(qtbot, window, tmp_path):
    assert not window.output_menu.menuAction().isVisible()  # xor: one output, no menu
    path = tmp_path / "heads.propscope"
    save_model(two_heads(), path)
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=60000):
        window.open_path(path)
    s = window.bridge.session
    assert s.prediction_node.name == "start_logits"
    assert "2 outputs: start_logits (6, 3), end_logits (6, 5); the loss goes on the first, 'start_logits' " \
           "(Debug ▸ Loss on output picks another)" in window.status_message.text()
    actions = {a.data(): a for a in window.output_actions.actions()}
    assert window.output_menu.menuAction().isVisible() and window.output_menu.isEnabled()
    assert list(actions) == ["start_logits", "end_logits"] and actions["start_logits"].isChecked()
    assert actions["end_logits"].text() == "end_logits  (6, 5)"
    window.debug.to_end.trigger()
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=30000):
        actions["end_logits"].trigger()
    s = window.bridge.session
    assert s.prediction_node.name == "end_logits" and s.loss_name == "cross_entropy"
    assert s.batch["y"].shape == (6,) and set(np.unique(s.batch["y"])) <= set(range(5))
    assert "The cross_entropy loss is now on end_logits; its target y is drawn" in window.status_message.text()
    actions = {a.data(): a for a in window.output_actions.actions()}
    assert list(actions) == ["start_logits", "end_logits"] and actions["end_logits"].isChecked()
    s.run_to_end()
    assert s.grad("end.weight") is not None and s.grad("start.weight") is None
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=30000):
        window.open_example("xor")
    assert not window.output_menu.menuAction().isVisible()

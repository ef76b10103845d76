"""Where the find box (Ctrl+F) opens in the real main window: in the band along the top of the canvas, at its right
end, with the breadcrumbs at its left end kept clear of it; never half in the band and half over the graph (it was
placed a fixed margin below the canvas's top: 8 of its 28 pixels over the graph at 1024×768, covering the title of
the node or frame drawn there), at any size and in projector mode.

The graph is the residual chain of modules of test_gui_big_graphs, whose crumbs ("blocks.0 … 119 › blocks.12 ›
blocks.12.tanh") fill the band of a narrow canvas.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QRect, QSettings, Qt
from test_gui_big_graphs import open_window as open_shown
from test_gui_big_graphs import settle

import propscope
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.gui.main_window import MainWindow

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                     "This plugin does not support raise"),
              pytest.mark.qt_log_level_fail("WARNING")]

CTRL = Qt.KeyboardModifier.ControlModifier


def find(qtbot, window: MainWindow, text: str) -> None:
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_F, CTRL)
    settle()
    search = window.navigation.search
    assert search.isVisible() and search.edit.hasFocus()
    qtbot.keyClicks(search.edit, text)
    settle()


def band_of(window: MainWindow) -> QRect:
    """The band along the top of the canvas, in the canvas's coordinates (where its children are placed)."""
    canvas = window.canvas
    return QRect(0, 0, canvas.width(), canvas.viewportMargins().top())


@pytest.mark.parametrize(("size", "projector"), [((1024, 768), False), ((1920, 1080), False),
                                                 ((1024, 768), True), ((1920, 1080), True)])
def test_the_find_box_opens_in_the_band_at_its_right_end_clear_of_the_crumbs(qtbot, size, projector):
    window = open_shown(qtbot, 600, folded=True)
    window.resize(*size)
    if projector:
        window.set_projector(True, full_screen=False)
    settle()
    find(qtbot, window, "blocks.12.tanh")
    canvas, search, crumbs = window.canvas, window.navigation.search, window.navigation.breadcrumbs
    assert window.selection.node == "blocks.12.tanh" and crumbs.isVisible()  # the hit, with its module path
    band, box, graph = band_of(window), search.geometry(), canvas.viewport().geometry()
    assert band.height() > 0
    assert band.contains(box), (band, box)  # wholly in the band: nothing of the graph under it
    assert not box.intersects(graph), (box, graph)
    assert abs(box.center().y() - crumbs.geometry().center().y()) <= 2  # on one line with the crumbs
    assert box.right() <= graph.right() and graph.right() - box.right() <= canvas.themes.theme.px(8) + 1
    assert not crumbs.geometry().intersects(box), (crumbs.geometry(), box)
    # Escape: the box goes and the crumbs have the whole band again
    qtbot.keyClick(search.edit, Qt.Key.Key_Escape)
    settle()
    assert not search.isVisible() and crumbs.reserved_right == 0
    assert [b.text() for b in crumbs.crumbs][-2:] == ["blocks.12", "blocks.12.tanh"]


def test_a_graph_without_modules_has_no_band_and_the_box_sits_in_the_corner(qtbot, tmp_path):
    g = Graph("flat")  # no node in a module: no breadcrumbs, no band
    x, w = g.input("x", (2, 3)), g.parameter("w", (3, 3))
    g.set_outputs(g.add("tanh", g.add("matmul", x, w, name="z"), name="a"))
    session = propscope.open_session(Model(g, {"x": np.ones((2, 3)), "w": np.eye(3)}))
    window = MainWindow(session, settings=QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.resize(1024, 768)
    window.show()
    qtbot.waitExposed(window)
    find(qtbot, window, "tanh")
    canvas, box = window.canvas, window.navigation.search.geometry()
    assert window.selection.node == "a"
    assert canvas.viewportMargins().top() == 0
    margin = canvas.themes.theme.px(8)
    assert box.top() == margin and abs(canvas.viewport().geometry().right() - box.right() - margin) <= 1

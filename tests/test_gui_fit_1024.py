"""A 1024×768 screen, ResNet-18's window and every dock a teacher or an engineer opens on it.

- Projector mode, Compare backends' Diff tab under the canvas, the Layer view beside it at a convolution: the layer
  view's header, controls and three grids asked for 343 px, and the window for 883 lines of the screen's 768 at
  conv2d_1 (771 at the step first seen). Its rows now scroll in the dock, as the inspector's do; every other dock and
  dialog raised in turn leaves the window within the screen (the Lesson dock's rows, 841 lines, scroll too).
- Projector mode, a second wide dock (Training, Gradient flow) shown while the Diff tab was up: Qt crashed in the
  window's layout. Each went over the chain rule as it was shown, from inside Qt's show, and its old group went with
  it; the wide docks now wait as hidden tabs of the chain rule's group.
- Normal mode: a "Chain rule | Trainin…" tab bar painted behind the Diff dock's controls. Qt 6.11 gave every tab group
  formed after the first a second tab bar (`QMainWindowLayout::getTabBar` lays the window out again, and that layout
  made the new group one; `tabifyDockWidget` then made another); the first stayed where it was put until an event
  loop deleted it, so a grab or a window shown from a script painted it. `propscope.gui.docks.tabify` forms groups in
  a settled layout.
"""

from __future__ import annotations

import pytest
import zoo
from PySide6.QtCore import QRect, Qt
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QTabBar
from test_gui_projector_docks import settle, window

import propscope
from propscope.backends import get_backend
from propscope.debugger.diff import diff_backends
from propscope.gui.docks import tabify
from propscope.gui.main_window import MainWindow
from propscope.gui.projector import WIDE_DOCK_SHARE

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)
ROOM = (1024, 768)
needs_torchvision = pytest.mark.skipif(not zoo.has_torchvision(), reason="torchvision is not installed")


def room_window(qtbot, target: str, projector: bool) -> MainWindow:
    return window(qtbot, target, ROOM, projector)


def compare_backends(qtbot, w: MainWindow) -> None:
    s = w.bridge.session
    w.show_comparison(diff_backends(s, get_backend("numpy", "float32"), s.cursor))  # as Ctrl+B shows it
    settle(qtbot, w)


def in_the_room(w: MainWindow, where: str) -> None:
    hint = w.minimumSizeHint()
    assert hint.width() <= ROOM[0] and hint.height() <= ROOM[1], f"{where}: the window needs {hint.toTuple()}"
    assert w.size().toTuple() == ROOM, f"{where}: the window is {w.size().toTuple()}"
    assert w.canvas.height() >= ROOM[1] // 4, f"{where}: the canvas is {w.canvas.height()} px tall"


def shown_tab_bars(w: QMainWindow) -> list[tuple[tuple[str, ...], QRect]]:
    """The window's dock tab bars on screen: their tabs and where they are in the window."""
    bars = w.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly)
    found = [(tuple(b.tabText(i) for i in range(b.count())), b.geometry()) for b in bars if b.isVisible()]
    return [(tabs, rect) for tabs, rect in found if rect.intersects(w.rect())]


def check_tab_bars(w: QMainWindow, where: str) -> None:
    """One bar per tab group, none over a dock: each bar's tabs name visible docks, no two bars name the same dock,
    and no bar lies over a shown dock's area."""
    docks = {d.windowTitle(): d for d in w.findChildren(QDockWidget) if d.isVisible() and not d.isFloating()}
    named: list[str] = []
    for tabs, rect in shown_tab_bars(w):
        assert tabs, f"{where}: an empty tab bar at {rect.getRect()}"
        assert set(tabs) <= set(docks), f"{where}: a tab bar names hidden docks {tabs} at {rect.getRect()}"
        named += tabs
        for title, dock in docks.items():
            assert not rect.intersects(dock.geometry()), \
                f"{where}: the tab bar {tabs} at {rect.getRect()} lies over {title} {dock.geometry().getRect()}"
    assert len(named) == len(set(named)), f"{where}: two tab bars name the same docks: {shown_tab_bars(w)}"


# -- 1. every dock at 1024×768 in projector mode -------------------------------------------------------------------
@pytest.fixture(scope="module")
def torchvision_models():
    return zoo.torchvision_models()


@pytest.mark.torch
@pytest.mark.slow
@needs_torchvision
def test_resnet18_in_projector_mode_keeps_every_dock_in_the_room(qtbot, torchvision_models) -> None:
    w = room_window(qtbot, "torchvision:resnet18@32", projector=True)
    s = w.bridge.session
    conv = s.graph["conv2d_1"]  # layer1.0.conv1: 64 input maps, 32 of its filters, 64 output maps
    assert conv.op.name == "conv2d"
    s.seek(s.node_phase_index(conv.name, "forward") + 1)
    compare_backends(qtbot, w)
    in_the_room(w, "compared")
    w.layer_dock.show()
    w.layer_dock.raise_()
    w.selection.select(conv.name)
    settle(qtbot, w)
    view = w.layer_view
    assert view.isVisible() and view.page is not None and len(view.grids()) == 3
    in_the_room(w, "the Diff tab up, the Layer view raised at a convolution")
    # the rows scroll where the dock is short: the headline first, the grids below it, all there
    assert view.scroll.verticalScrollBar().maximum() > 0
    assert view.scroll.verticalScrollBar().value() == 0
    top = view.header.mapTo(view.scroll.viewport(), view.header.rect().topLeft())
    assert view.scroll.viewport().rect().contains(top), f"the headline scrolled out of sight ({top})"
    last = view.grids()[-1]
    view.scroll.ensureWidgetVisible(last)
    settle(qtbot, w)
    assert last.visibleRegion().boundingRect().height() > 0 and last.placed
    check_tab_bars(w, "the Diff tab up, the Layer view raised")
    # every other dock, raised in turn and closed again
    for dock in (w.inspector_dock, w.steps_dock, w.neurons_dock, w.training_dock, w.grad_flow_dock, w.diff_dock):
        dock.show()
        dock.raise_()
        settle(qtbot, w)
        in_the_room(w, f"{dock.windowTitle()} raised")
        check_tab_bars(w, f"{dock.windowTitle()} raised")
        if dock is not w.diff_dock:
            dock.hide()
            settle(qtbot, w)
    # Debug ▸ Gradient flow computes the pass and fills its tab
    w.grad_flow.run()
    qtbot.waitUntil(lambda: w.grad_flow_dock.isVisible() and not any(j.running for j in w.jobs), timeout=30_000)
    settle(qtbot, w)
    in_the_room(w, "the gradient flow shown")
    # Explain and Export are windows of their own: within the screen, the main window as it was
    w.explain("fc.weight", (0, 0))
    qtbot.waitUntil(lambda: getattr(w, "explain_dialog", None) is not None, timeout=30_000)
    settle(qtbot, w)
    screen = QRect(0, 0, *ROOM)
    assert screen.contains(w.explain_dialog.frameGeometry()), w.explain_dialog.frameGeometry()
    in_the_room(w, "Explain shown")
    w.explain_dialog.close()
    dialog = w.exports.open_dialog("gif")
    settle(qtbot, w)
    assert dialog.minimumSizeHint().height() <= ROOM[1] and screen.contains(QRect(0, 0, *dialog.size().toTuple()))
    in_the_room(w, "Export for slides open")
    dialog.reject()
    w.close()


def test_the_lesson_dock_beside_the_diff_tab_keeps_the_room(qtbot) -> None:
    """View ▸ Lesson in projector mode with the Diff tab under the canvas: the window needed 841 lines of 768 (the
    panel's rows added up, its hidden editor page's minimum among them); now they scroll in the dock."""
    w = room_window(qtbot, "cnn", projector=True)
    compare_backends(qtbot, w)
    w.lesson_dock.show()
    w.lesson_dock.raise_()
    settle(qtbot, w)
    try:
        in_the_room(w, "the Lesson dock beside the Diff tab")
    finally:
        w.close()


# -- 2. a second wide dock in projector mode ------------------------------------------------------------------------
def test_wide_docks_shown_one_after_another_go_over_the_chain_rule(qtbot) -> None:
    """Compare backends, then Training, then Gradient flow, then Diff again: each a tab over the chain rule with its
    share of the window (it crashed at the second)."""
    w = room_window(qtbot, "cnn", projector=True)
    compare_backends(qtbot, w)
    for dock in (w.training_dock, w.grad_flow_dock, w.diff_dock):
        dock.show()
        dock.raise_()
        settle(qtbot, w)
        where = f"{dock.windowTitle()} after the Diff tab"
        assert dock in w.tabifiedDockWidgets(w.chain_dock), where
        assert dock.isVisible() and not dock.visibleRegion().isEmpty(), where
        assert dock.height() >= round(ROOM[1] * WIDE_DOCK_SHARE) - 40, f"{where}: {dock.height()} px"
        in_the_room(w, where)
        check_tab_bars(w, where)
    w.close()


# -- 3. tab groups with one tab bar --------------------------------------------------------------------------------
def group_bars(w: QMainWindow) -> list[tuple[str, ...]]:
    """The tabs of each of the window's dock tab bars that is not hidden (shown with the window, or now)."""
    bars = w.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly)
    return sorted(tuple(b.tabText(i) for i in range(b.count())) for b in bars if not b.isHidden())


def test_each_tab_group_gets_one_tab_bar(qapp) -> None:
    """Two tab groups on a bare main window: one tab bar each. Qt's tabifyDockWidget gave the second two: the first,
    shown with the group's tabs wherever it was put, stays on screen until an event loop deletes it."""
    w = QMainWindow()
    w.setCentralWidget(QLabel("canvas"))

    def dock(title: str, area: Qt.DockWidgetArea) -> QDockWidget:
        d = QDockWidget(title, w)
        d.setObjectName(title)
        d.setWidget(QLabel(title))
        w.addDockWidget(area, d)
        return d

    right, bottom = Qt.DockWidgetArea.RightDockWidgetArea, Qt.DockWidgetArea.BottomDockWidgetArea
    inspector, steps = dock("Inspector", right), dock("Steps", right)
    chain, training = dock("Chain rule", bottom), dock("Training", bottom)
    tabify(w, inspector, steps)
    tabify(w, chain, training)
    diff = QDockWidget("Diff", w)  # never added: tabified straight into the group
    diff.setObjectName("Diff")
    diff.setWidget(QLabel("Diff"))
    tabify(w, chain, diff)
    assert group_bars(w) == [("Chain rule", "Training", "Diff"), ("Inspector", "Steps")]
    w.resize(*ROOM)
    w.show()
    qapp.processEvents()  # no event loop: what is on screen now stays there until one runs
    assert group_bars(w) == [("Chain rule", "Training", "Diff"), ("Inspector", "Steps")]
    check_tab_bars(w, "a bare window")
    assert not steps.isHidden() and not training.isHidden()  # moved, not closed
    w.close()
    w.deleteLater()


@pytest.mark.parametrize("projector", [False, True], ids=["normal", "projector"])
def test_the_window_paints_no_spare_tab_bar(qtbot, qapp, projector: bool) -> None:
    """At 1024×768, opened and then showing a comparison in the Diff dock: one tab bar per group from the start, so
    what is painted before an event loop runs (a grab, a screenshot, a window shown from a script) has no "Chain rule
    | Training" bar left over the chain rule's title or the Diff dock's controls."""
    w = MainWindow(propscope.open_session("cnn"), settings=None)
    qtbot.addWidget(w)
    bars = group_bars(w)
    assert len(bars) == len(set(bars)) and ("Chain rule", "Training") in bars, bars
    w.resize(*ROOM)
    w.show()
    qapp.processEvents()
    mode = "projector" if projector else "normal"
    if projector:
        w.set_projector(True, full_screen=False)
        qapp.processEvents()
    check_tab_bars(w, f"{mode}, opened")
    s = w.bridge.session
    w.show_comparison(diff_backends(s, get_backend("numpy", "float32"), s.cursor))
    qapp.processEvents()
    assert w.diff_dock.isVisible()
    bars = group_bars(w)
    assert len(bars) == len(set(bars)), f"{mode}, compared: {bars}"
    settle(qtbot, w)
    check_tab_bars(w, f"{mode}, compared, settled")
    w.close()

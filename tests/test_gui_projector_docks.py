"""The docks a teacher opens in front of a class read whole at 1024×768 and at 1920×1080, in normal and projector mode:
the Diff dock after Compare backends, and the Training dock after training on a data set. Each check is on the real
MainWindow's geometry: nothing in the dock drawn over anything else, the window no larger than the size asked for,
the canvas keeping room, and in projector mode the dock a tab over the chain rule with the window's width.

Faults these caught: the Diff dock beside the chain rule (406 px wide at 1024×768) wrapped its controls onto four
lines and drew its verdict over the last one (its minimum height was held at a resize, before the verdict's three
lines arrived); applying a data set in the Training dock hid the dock in projector mode; the Training dock sat
403×166 px beside the chain rule, and trained from the command line it took all but 70 px of the canvas; its status
line kept the height of three small lines in projector type, cut at top and bottom."""

from __future__ import annotations

import pytest
import zoo
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QApplication, QDockWidget, QWidget

import propscope
from propscope.backends import get_backend
from propscope.debugger.diff import diff_backends
from propscope.gui.diff.in_inspector import READABLE_PANEL_PX
from propscope.gui.diff.view import READABLE_HEAT_PX, WHERE_THE_MAPS_ARE
from propscope.gui.diff.wiring import diff_view
from propscope.gui.main_window import MainWindow
from propscope.gui.training.dock import READABLE_PLOT_PX, train_in_window

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)
ROOMS = [(1024, 768), (1920, 1080)]
CASES = [(size, projector) for size in ROOMS for projector in (False, True)]
IDS = [f"{w}x{h}-{'projector' if p else 'normal'}" for (w, h), p in CASES]


def window(qtbot, example: str, size: tuple[int, int], projector: bool) -> MainWindow:
    w = MainWindow(propscope.open_session(example), settings=None)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    if projector:
        w.set_projector(True, full_screen=False)
    settle(qtbot, w)
    return w


def settle(qtbot, w: MainWindow) -> None:
    """The projector's rescale after a resize, then the layouts a new minimum height asks for (the view's, the
    dock's, the window's)."""
    qtbot.waitUntil(lambda: not w.projector._rescale.isActive(), timeout=3000)
    for _ in range(4):
        qtbot.wait(25)


def overlapping(parent: QWidget) -> list[tuple[str, str]]:
    """Pairs of `parent`'s visible children drawn over each other."""
    shown = [c for c in parent.findChildren(QWidget) if c.parentWidget() is parent and c.isVisible()
             and c.width() > 0 and c.height() > 0 and not c.isWindow()]
    return [(a.objectName() or type(a).__name__, b.objectName() or type(b).__name__)
            for i, a in enumerate(shown) for b in shown[i + 1:] if a.geometry().intersects(b.geometry())]


def outside(parent: QWidget) -> list[str]:
    """`parent`'s visible children that reach past its edges (cut off)."""
    return [c.objectName() or type(c).__name__ for c in parent.findChildren(QWidget)
            if c.parentWidget() is parent and c.isVisible() and not c.isWindow() and c.height() > 0
            and not parent.rect().contains(c.geometry())]


def check_room(w: MainWindow, dock: QDockWidget, size: tuple[int, int], projector: bool) -> None:
    where = f"{dock.objectName()} at {size[0]}x{size[1]}{' projector' if projector else ''}"
    assert (w.width(), w.height()) == size, f"{where}: the window is {w.width()}x{w.height()}"
    hint = w.minimumSizeHint()
    assert hint.width() <= size[0] and hint.height() <= size[1], f"{where}: the window needs {hint}"
    assert dock.isVisible() and not dock.visibleRegion().isEmpty(), f"{where}: the dock is not in sight"
    assert w.canvas.height() >= size[1] // 4, f"{where}: the canvas is {w.canvas.height()} px tall"
    assert w.rect().contains(dock.geometry()), f"{where}: the dock reaches past the window {dock.geometry()}"
    if projector:  # a tab over the chain rule, with the window's width
        assert dock in w.tabifiedDockWidgets(w.chain_dock), where
        assert dock.width() >= size[0] - 10, f"{where}: {dock.width()} px wide"


# -- the Diff dock -------------------------------------------------------------------------------------------------
def pick_a_row(qtbot, w: MainWindow) -> None:
    """Click the table's first row (the node farthest apart), as a user does: its line and norms show beside it."""
    table = diff_view(w).table
    rect = table.visualRect(table.model().index(0, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    settle(qtbot, w)


def check_detail(w: MainWindow, size: tuple[int, int], projector: bool) -> None:
    """The selected node's line and norms whole: the label as tall as its wrapped text, its last line inside the
    dock's visible part, and at least two of the table's rows under its header."""
    where = f"at {size[0]}x{size[1]}{' projector' if projector else ''}"
    view, dock = diff_view(w), w.diff_dock
    detail = view.detail
    assert detail.text().count("\n") == 1, detail.text()  # a node is selected: its line and its norms
    need = detail.heightForWidth(detail.width())
    assert detail.height() >= need, f"{where}: the node's detail is {detail.height()} px of the {need} it needs"
    last = detail.mapTo(dock, QPoint(0, need - 1))
    assert dock.visibleRegion().boundingRect().contains(last), f"{where}: its last line at {last}, dock {dock.rect()}"
    table = view.table
    rows = table.viewport().height() // table.verticalHeader().defaultSectionSize()
    assert rows >= 2, f"{where}: the table shows {rows} rows"


def coloured_pixels(widget: QWidget) -> int:
    """How many of `widget`'s pixels are drawn in colour (a heatmap's cells; text and frames are grey)."""
    image = widget.grab().toImage()
    return sum(image.pixelColor(x, y).hsvSaturation() > 90
               for x in range(0, image.width(), 2) for y in range(0, image.height(), 2))


def check_heatmaps(w: MainWindow, size: tuple[int, int], projector: bool) -> None:
    """The Diff dock's A, B and A − B heatmaps are drawn only at a readable height, whole; else one line in their place
    says where they are (1 px tall at 1024×768 and 49 px at 1920×1080 in projector type, they were drawn anyway)."""
    where = f"at {size[0]}x{size[1]}{' projector' if projector else ''}"
    heat = diff_view(w).heat
    least = w.themes.theme.px(READABLE_HEAT_PX)
    assert heat.tiles, f"{where}: no heatmaps for the selected node"
    if heat.height() < least:
        assert not heat.readable, where
        assert coloured_pixels(heat) == 0, f"{where}: heatmaps drawn {heat.height()} px tall"
        note = heat.note()
        assert note in WHERE_THE_MAPS_ARE and "Inspector" in note, f"{where}: {note!r}"
        assert heat.note_fm.horizontalAdvance(note) <= heat.width() and heat.note_fm.height() <= heat.height(), where
    else:
        assert heat.readable and heat.note() == "", f"{where}: {heat.height()} px, {[p.cells for p in heat.placed]}"
        assert all(QRectF(heat.rect()).adjusted(-0.5, -0.5, 0.5, 0.5).contains(p.cells) for p in heat.placed), where
        assert coloured_pixels(heat) > 0, f"{where}: the heatmaps are not drawn"


@pytest.mark.parametrize(("size", "projector"), CASES, ids=IDS)
def test_the_diff_dock_after_compare_backends_reads_whole(qtbot, size: tuple[int, int], projector: bool) -> None:
    w = window(qtbot, "cnn", size, projector)
    w.diff_action.trigger()  # Debug ▸ Diff first: one line of text under the controls
    settle(qtbot, w)
    s = w.bridge.session
    s.run_to_end()
    settle(qtbot, w)
    # as Ctrl+B shows it (the other backend is NumPy in float32 here, PyTorch in the app: the same three lines)
    w.show_comparison(diff_backends(s, get_backend("numpy", "float32"), s.cursor))
    settle(qtbot, w)
    view = diff_view(w)
    assert view.comparison is not None
    pick_a_row(qtbot, w)
    assert overlapping(view) == [], overlapping(view)
    assert outside(view) == [], outside(view)
    controls = [view.a, view.b, view.what.parentWidget(), view.compare, view.backends, view.clear_button]
    assert view.summary.geometry().top() >= max(c.geometry().bottom() for c in controls)
    # the verdict whole, and at least two of the table's rows
    assert view.summary.height() >= view.summary.heightForWidth(view.summary.width())
    assert view.table.viewport().height() >= 2 * view.table.verticalHeader().defaultSectionSize()
    # the selected node's line and norms whole (before the heatmaps, which take what is left)
    check_detail(w, size, projector)
    check_heatmaps(w, size, projector)
    check_room(w, w.diff_dock, size, projector)
    w.close()


@pytest.mark.parametrize("projector", [False, True], ids=["normal", "projector"])
def test_the_diff_dock_dragged_to_its_least_height_keeps_two_rows_and_the_detail(qtbot, projector: bool) -> None:
    """The dock's separator dragged down as far as it goes: the table still shows its header and two rows in the
    type it shows (Qt's 70 px for any scroll area was one row in projector type, and 10 px more than two in normal
    type), and the selected node's lines stay whole. (In projector mode the dock, a tab over the chain rule, keeps the
    height the chain rule's whole text needs.)"""
    size = (1024, 768)
    w = window(qtbot, "cnn", size, projector)
    s = w.bridge.session
    s.run_to_end()
    w.show_comparison(diff_backends(s, get_backend("numpy", "float32"), s.cursor))
    settle(qtbot, w)
    pick_a_row(qtbot, w)
    w.resizeDocks([w.diff_dock], [1], Qt.Orientation.Vertical)
    settle(qtbot, w)
    view = diff_view(w)
    check_detail(w, size, projector)
    table = view.table  # the least it is laid out at: its header and two rows (and no more)
    two_rows = table.horizontalHeader().height() + 2 * table.verticalHeader().defaultSectionSize()
    assert two_rows <= table.minimumSizeHint().height() <= two_rows + 2 * table.frameWidth() + 4
    assert overlapping(view) == [], overlapping(view)
    check_room(w, w.diff_dock, size, projector)
    w.close()


@pytest.mark.torch
@pytest.mark.skipif(not zoo.has_torchvision(), reason="needs torchvision")
@pytest.mark.parametrize("projector", [False, True], ids=["normal", "projector"])
def test_compare_backends_on_a_resnet_at_1024x768(qtbot, projector: bool) -> None:
    """The case seen in a room: ResNet-18 on 32×32, Compare backends (NumPy against PyTorch) at the last step, the
    worst node's row clicked. Its verdict took five lines in the dock beside the chain rule and was drawn over the
    NumPy vs PyTorch button; the node's line and norms (four lines in the dock's right third) were cut at the dock's
    bottom, in both modes."""
    zoo.torchvision_models()
    size = (1024, 768)
    w = window(qtbot, "torchvision:resnet18@32", size, projector)
    s = w.bridge.session
    s.run_to_end()
    w.show_comparison(diff_backends(s, get_backend("torch", "float32", "cpu"), s.cursor))
    settle(qtbot, w)
    view = diff_view(w)
    pick_a_row(qtbot, w)
    assert overlapping(view) == [], overlapping(view)
    assert outside(view) == [], outside(view)
    assert view.summary.height() >= view.summary.heightForWidth(view.summary.width())
    check_detail(w, size, projector)
    check_heatmaps(w, size, projector)
    check_room(w, w.diff_dock, size, projector)
    w.close()


def test_the_diff_heatmaps_come_back_when_the_dock_is_dragged_taller(qtbot) -> None:
    """At 1024×768 the heatmaps have no room under the node's lines (the line says where they are); the dock's
    separator dragged up gives them their room, and they are drawn."""
    size = (1024, 768)
    w = window(qtbot, "cnn", size, projector=False)
    s = w.bridge.session
    s.run_to_end()
    w.show_comparison(diff_backends(s, get_backend("numpy", "float32"), s.cursor))
    settle(qtbot, w)
    pick_a_row(qtbot, w)
    heat = diff_view(w).heat
    assert not heat.readable and coloured_pixels(heat) == 0
    w.resizeDocks([w.diff_dock], [440], Qt.Orientation.Vertical)
    settle(qtbot, w)
    assert heat.height() >= w.themes.theme.px(READABLE_HEAT_PX), heat.height()
    check_heatmaps(w, size, projector=False)
    assert heat.readable
    w.close()


# -- the inspector's A, B and A − B ---------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ROOMS, ids=[f"{w}x{h}" for w, h in ROOMS])
def test_a_comparison_keeps_the_inspector_and_the_canvas_as_wide_as_before(qtbot, size: tuple[int, int]) -> None:
    """Compare backends, a row clicked, the Inspector's tab raised: the right-hand dock keeps its width and the canvas
    its width. (A, B and A − B side by side had a minimum of three panels, 494 px: the dock took 506 px and the
    canvas lost 86 px at 1024×768.) In the inspector's width the three take turns under a tab bar, and the panels
    all show the tab (numbers, heatmap, histogram) last chosen in one."""
    w = window(qtbot, "cnn", size, projector=False)
    s = w.bridge.session
    s.run_to_end()  # (the layer view comes forward with the last conv's maps, and the dock takes its width)
    settle(qtbot, w)
    w.inspector_dock.raise_()
    settle(qtbot, w)
    dock_before, canvas_before = w.inspector_dock.width(), w.canvas.width()
    w.show_comparison(diff_backends(s, get_backend("numpy", "float32"), s.cursor))
    settle(qtbot, w)
    pick_a_row(qtbot, w)
    w.inspector_dock.raise_()
    settle(qtbot, w)
    row = w.inspector.findChild(QWidget, "inspectorDiffRow")
    assert row is not None and row.isVisible() and row.delta.array is not None  # the row is there, A − B in it
    assert abs(w.inspector_dock.width() - dock_before) <= 4, (w.inspector_dock.width(), dock_before)
    assert w.canvas.width() == canvas_before, (w.canvas.width(), canvas_before)
    assert w.inspector.width() >= row.width() and w.inspector.rect().contains(row.geometry())
    # one panel at a time, the width of the row, chosen by the tab bar
    assert not row.side_by_side and row.choice.isVisible()
    assert row.shown_panels() == [row.delta] and row.delta.width() >= row.width() - 4
    bar = row.choice
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(1).center())
    settle(qtbot, w)
    assert row.shown_panels() == [row.b] and row.b.isVisible()
    row.b.tabs.setCurrentIndex(row.b.HEATMAP)
    assert all(p.tabs.currentIndex() == p.HEATMAP for p in row.panels)
    # the inspector floated and made wide: the three side by side, each at a readable width
    w.inspector_dock.setFloating(True)
    w.inspector_dock.resize(900, 700)
    settle(qtbot, w)
    assert row.width() >= row.needed_side_by_side(), (row.width(), row.needed_side_by_side())
    assert row.side_by_side and not row.choice.isVisible()
    assert row.shown_panels() == list(row.panels)
    least = w.themes.theme.px(READABLE_PANEL_PX)
    assert all(p.isVisible() and p.width() >= least - 4 for p in row.panels), [p.width() for p in row.panels]
    w.inspector_dock.setFloating(False)  # and back in its place: one at a time again
    w.inspector_dock.raise_()
    settle(qtbot, w)
    assert abs(w.inspector_dock.width() - dock_before) <= 4 and w.canvas.width() == canvas_before
    assert not row.side_by_side
    assert row.shown_panels() == [row.b]
    w.close()


# -- the Training dock -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "projector"), CASES, ids=IDS)
def test_the_training_dock_after_training_on_a_data_set_reads_whole(qtbot, size: tuple[int, int],
                                                                     projector: bool) -> None:
    w = window(qtbot, "xor", size, projector)
    w.training_dock.show()  # View ▸ Training
    settle(qtbot, w)
    assert train_in_window(w, 5, "spiral")  # the data set applied, then trained, as `propscope open --train`
    settle(qtbot, w)
    panel = w.training
    check_room(w, w.training_dock, size, projector)
    assert overlapping(panel.split) == [] or all("QSplitterHandle" in pair for pair in overlapping(panel.split))
    controls = panel.scroll.widget()
    assert overlapping(controls) == [], overlapping(controls)
    # the status line holds three lines of the type it shows (projector type is twice the size)
    three = 3 * QFontMetrics(QApplication.font()).lineSpacing()
    assert panel.status.height() >= three, (panel.status.height(), three)
    for plot in (panel.loss_plot, panel.output_view, panel.health_plot):
        if plot.isVisible():  # a column too narrow to read is folded away (READABLE_PLOT_PX)
            assert plot.width() >= READABLE_PLOT_PX and plot.height() >= 120, f"{type(plot).__name__}: {plot.size()}"
        assert overlapping(plot) == [], overlapping(plot)
    w.close()


def test_a_data_set_applied_in_projector_mode_keeps_the_training_dock_open(qtbot) -> None:
    """The same session with a new batch is not another model: projector mode arranges its docks again only for
    another model (which still gets the canvas and the chain rule alone)."""
    w = window(qtbot, "xor", (1024, 768), projector=True)
    w.training_dock.show()
    settle(qtbot, w)
    assert w.training.use_dataset("moons")
    settle(qtbot, w)
    assert w.training_dock.isVisible()
    w.bridge.set_session(propscope.open_session("classifier"))
    settle(qtbot, w)
    assert not w.training_dock.isVisible() and w.chain_dock.isVisible()
    w.close()

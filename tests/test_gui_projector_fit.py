"""Projector mode never needs more lines than the room has: at every backward step of the XOR networks the main
window's minimum size fits 1024×768 (and the other rooms), the chain rule's text stays whole and readable, and the
canvas keeps room for the current node. Where the whole text would not fit in half the window, it writes out
fewer tensors, never fewer formulas or numbers of the selected element."""

from __future__ import annotations

import re

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontInfo
from PySide6.QtWidgets import QApplication, QWidget

from propscope import open_session
from propscope.backends import get_backend
from propscope.debugger.diff import diff_backends
from propscope.gui.diff.wiring import diff_view
from propscope.gui.format import fmt_index, fmt_num
from propscope.gui.inspect.chain_text import BRIEF, FULL, MAIN, chain_rule_html
from propscope.gui.main_window import MainWindow
from propscope.gui.projector import CHAIN_TEXT_SHARE, min_text_px
from propscope.gui.theme import LIGHT

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)
ROOMS = [(1024, 768), (1280, 720), (1920, 1080)]


def projector_window(qtbot, size: tuple[int, int], example: str) -> MainWindow:
    w = MainWindow(open_session(example), settings=None)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    w.set_projector(True, full_screen=False)
    settle(qtbot, w)
    return w


def settle(qtbot, w: MainWindow) -> None:
    """The rescale after a resize, the deferred fit of the chain-rule text, and the layouts that follow it (the
    dock's, then the window's: the canvas's height is right only after both)."""
    qtbot.waitUntil(lambda: not w.projector._rescale.isActive(), timeout=2000)
    qtbot.wait(50)


def plain(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub("<[^>]+>", " ", html).replace("&nbsp;", " "))


@pytest.mark.parametrize("example", ["xor-torch", "xor"])
@pytest.mark.parametrize("size", ROOMS, ids=[f"{w}x{h}" for w, h in ROOMS])
def test_every_backward_step_fits_the_room(qtbot, example: str, size: tuple[int, int]) -> None:
    w = projector_window(qtbot, size, example)
    s = w.bridge.session
    chain, canvas = w.chain, w.canvas
    for cursor in range(s.n_forward + 1, len(s.steps) + 1):
        s.seek(cursor)
        settle(qtbot, w)
        where = f"{example} at {size}: {s.position_text()}"
        hint = w.minimumSizeHint()
        assert hint.width() <= size[0] and hint.height() <= size[1], f"{where}: the window needs {hint}"
        assert (w.width(), w.height()) == size, where
        qtbot.waitUntil(lambda: chain.fully_shown(), timeout=2000)
        assert chain.text.height() <= round(size[1] * CHAIN_TEXT_SHARE) + 1, where
        assert QFontInfo(chain.text.font()).pixelSize() >= min_text_px(size[1]), where
        assert canvas.height() >= size[1] // 4, f"{where}: the canvas keeps room ({canvas.height()} px)"
        node = canvas.graph_scene.node_rect(canvas.current_node())
        assert canvas.visible_scene_rect().contains(node.center()), where
        # whatever the detail, the formula of every gradient with its selected element's number is there
        text = plain(chain.text.toHtml())
        record = s.current
        for term in record.terms:
            assert f"{term.input.name} ←" in text, where
        assert re.search(r"= −?\d", text), where
    w.close()


def test_a_tall_step_gives_up_tensors_before_formulas(qtbot) -> None:
    """xor-torch's last step at 1024×768: three gradients, two of them 4×2 matrices. The text writes out the
    parameter's (the one training uses, and Explain explains), not the input's."""
    w = projector_window(qtbot, (1024, 768), "xor-torch")
    s = w.bridge.session
    s.run_to_end()
    settle(qtbot, w)
    assert w.chain.detail == MAIN
    text = plain(w.chain.text.toHtml())
    assert "0.001933" in text  # ∂L/∂layer1.weight[3, 1] ... written out: its matrix
    assert "0.002022" in text
    assert "−0.004324" not in text  # ∂L/∂x[1, 0]: not written out
    assert "x ← ∂L/∂x = ∂L/∂z · Wᵀ" in text  # its formula and its selected element stay
    # out of projector mode, the whole text again
    w.set_projector(False)
    assert w.chain.detail == FULL and "−0.004324" in plain(w.chain.text.toHtml())
    w.close()


def test_the_details_drop_tensors_only() -> None:
    s = open_session("xor-torch")
    s.run_to_end()
    full, main, brief = (plain(chain_rule_html(s, "layer1", None, LIGHT.colors, d)) for d in (FULL, MAIN, BRIEF))
    assert len(brief) < len(main) < len(full)
    for text in (full, main, brief):
        for name in ("x", "layer1.weight", "layer1.bias"):
            assert f"{name} ←" in text and f"{name} feeds one op" in text
    # an input the user selected is the tensor written out
    selected = plain(chain_rule_html(s, "x", (1, 0), LIGHT.colors, MAIN))
    assert "−0.004324" in selected and "0.002022" not in selected


# -- the right-hand dock's tabs (Inspector | Steps | Layer view | Neurons) ------------------------------------------
FIT_CASES = [("cnn", (1024, 768), False), ("cnn", (1024, 768), True), ("cnn", (1920, 1080), False),
             ("cnn", (1920, 1080), True), ("attention", (1024, 768), True)]


def room_window(qtbot, size: tuple[int, int], example: str, projector: bool) -> MainWindow:
    if projector:
        return projector_window(qtbot, size, example)
    w = MainWindow(open_session(example), settings=None)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    return w


def settle_layouts(qtbot, w: MainWindow) -> None:
    """`settle`, then the turns a new minimum takes to reach the window (the dock's layout, the window's, the chain
    rule's text fitted to what is left, and the window back at the room's height)."""
    settle(qtbot, w)
    for _ in range(4):
        qtbot.wait(25)


def check_room(w: MainWindow, size: tuple[int, int], where: str) -> None:
    hint = w.minimumSizeHint()
    assert hint.width() <= size[0] and hint.height() <= size[1], f"{where}: the window needs {hint.toTuple()}"
    assert (w.width(), w.height()) == size, f"{where}: the window is {w.width()}x{w.height()}"
    assert w.canvas.height() >= size[1] // 4, f"{where}: the canvas is {w.canvas.height()} px tall"


@pytest.mark.parametrize(("example", "size", "projector"), FIT_CASES,
                         ids=[f"{e}-{w}x{h}-{'projector' if p else 'normal'}" for e, (w, h), p in FIT_CASES])
def test_raising_the_inspector_keeps_the_window_in_the_room(qtbot, example: str, size: tuple[int, int],
                                                            projector: bool) -> None:
    """Run to end, the Inspector raised, Compare backends, a row of the comparison clicked, an element clicked, then
    each of the other tabs beside the canvas: after every step the window needs no more than the room and keeps its
    size, and the canvas keeps a quarter. (The inspector's rows asked for their sum, 466 px in projector type at
    1024×768 beside a 222 px canvas: the window grew to 1057 px, then with the bigger type to 3573.) The node's name
    and formula stay at the inspector's top, and the value panel's first line says the clicked element's value."""
    w = room_window(qtbot, size, example, projector)
    s = w.bridge.session
    where = f"{example} at {size[0]}x{size[1]}{' projector' if projector else ''}"
    s.run_to_end()
    settle_layouts(qtbot, w)
    check_room(w, size, f"{where}, at the end")
    w.inspector_dock.show()  # View ▸ Inspector (projector mode hid it)
    w.inspector_dock.raise_()
    settle_layouts(qtbot, w)
    check_room(w, size, f"{where}, the Inspector raised")
    inspector = w.inspector
    node = s.graph[w.selection.node]
    assert inspector.header.text().startswith(f"<b>{node.name}</b>")
    assert node.op.formula and plain(node.op.formula) in plain(inspector.header.text())
    top = inspector.header.mapTo(inspector.scroll.viewport(), inspector.header.rect().topLeft())
    assert inspector.scroll.viewport().rect().contains(top), f"{where}: the header scrolled out of sight ({top})"
    w.show_comparison(diff_backends(s, get_backend("numpy", "float32"), s.cursor))  # as Ctrl+B shows it
    settle_layouts(qtbot, w)
    check_room(w, size, f"{where}, compared")
    table = diff_view(w).table
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                     pos=table.visualRect(table.model().index(0, 0)).center())
    w.inspector_dock.raise_()
    settle_layouts(qtbot, w)
    check_room(w, size, f"{where}, a row of the comparison clicked")
    row = inspector.findChild(QWidget, "inspectorDiffRow")
    assert row is not None and row.isVisible()
    panel = inspector.value_panel
    assert panel.array is not None and panel.array.ndim >= 1
    cell = panel.table.visualRect(panel.model.index(0, min(1, panel.model.columnCount() - 1)))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=cell.center())
    settle_layouts(qtbot, w)
    check_room(w, size, f"{where}, an element clicked")
    index = w.selection.index
    assert index is not None
    assert panel.stats.text().startswith(f"{fmt_index(index)} = {fmt_num(panel.array[tuple(index)])} · min ")
    pin = inspector.pin  # the rows never wider than the dock shows them (the scroll bar is beside them, not over)
    assert pin.visibleRegion().boundingRect() == pin.rect(), f"{where}: Pin shows {pin.visibleRegion().boundingRect()}"
    for dock in (w.steps_dock, w.layer_dock, w.neurons_dock, w.inspector_dock):
        dock.show()
        dock.raise_()
        settle_layouts(qtbot, w)
        check_room(w, size, f"{where}, {dock.windowTitle()} raised")
    w.close()


def test_a_window_its_own_minimum_makes_taller_keeps_the_rooms_type(qtbot) -> None:
    """A dock beside the canvas that needs more than the room: the window grows to its minimum once, and the type stays
    the room's size (it followed the taller window, and every row with it: the window grew again at each rescale).
    When the dock needs less again, the window goes back to the room's height."""
    size = (1024, 768)
    w = projector_window(qtbot, size, "cnn")
    text_px = QFontInfo(QApplication.font()).pixelSize()
    w.steps_dock.show()
    w.steps_dock.raise_()
    w.steps.setMinimumHeight(size[1])  # taller than the room, whatever the type
    for _ in range(3):  # every rescale a taller window asked for
        settle_layouts(qtbot, w)
        qtbot.wait(200)
    assert QFontInfo(QApplication.font()).pixelSize() == text_px, "the type followed the window past the room"
    assert w.projector.room_height() == size[1]
    assert w.height() == w.minimumSizeHint().height(), "the window grew past its own minimum"
    w.steps.setMinimumHeight(0)
    settle_layouts(qtbot, w)
    check_room(w, size, "the dock's minimum given back")
    w.close()

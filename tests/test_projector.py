"""Projector mode in a room: at 1024×768, 1280×720 and 1920×1080 the chain rule of the current step is shown
whole, and the current node's name and the chain-rule text are at least the room's minimum size."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QFontInfo
from PySide6.QtWidgets import QDockWidget

from propscope import open_session
from propscope.gui.main_window import MainWindow
from propscope.gui.projector import min_text_px

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)
ROOMS = [(1024, 768), (1280, 720), (1920, 1080)]


def projector_window(qtbot, size: tuple[int, int], example: str = "xor") -> MainWindow:
    w = MainWindow(open_session(example, dtype="float64"), settings=None)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    w.set_projector(True, full_screen=False)
    qtbot.wait(1)
    return w


def settle(qtbot, w: MainWindow) -> None:
    qtbot.waitUntil(lambda: not w.projector._rescale.isActive(), timeout=2000)
    qtbot.wait(1)  # the deferred fit of the chain-rule text


def whole_text_on_screen(chain) -> bool:
    viewport = chain.text.viewport()
    return chain.fully_shown() and viewport.visibleRegion().boundingRect() == viewport.rect()


def test_min_text_size_scales_with_the_resolution() -> None:
    assert min_text_px(1080) == 28 and min_text_px(768) == 20 and min_text_px(720) == 19


@pytest.mark.parametrize("size", ROOMS, ids=[f"{w}x{h}" for w, h in ROOMS])
def test_every_step_is_readable_from_the_back_row(qtbot, size: tuple[int, int]) -> None:
    w = projector_window(qtbot, size)
    settle(qtbot, w)
    assert w.size().width() == size[0] and w.size().height() == size[1]
    want = min_text_px(size[1])
    s = w.bridge.session
    # the room gets the canvas and the chain rule: every other dock is out of the way
    shown = [d.objectName() for d in w.findChildren(QDockWidget) if d.isVisible()]
    assert shown == ["chainRuleDock"]
    chain, dock, canvas = w.chain, w.chain_dock, w.canvas
    assert dock.width() >= size[0] - 2, "the chain rule spans the window's width"
    assert QFontInfo(chain.text.font()).pixelSize() >= want
    for _ in range(len(s.steps)):
        s.step()
        settle(qtbot, w)
        where = s.position_text()
        # the whole formula: no scrolling either way, and nothing of the text's viewport covered or cut off
        # (once the layout has taken the text's new height: a step changes the text, the dock follows)
        qtbot.waitUntil(lambda: whole_text_on_screen(chain), timeout=2000)
        assert w.rect().contains(dock.geometry()), where
        # the current node's name at least the room's size, and the node in view
        assert w.projector.label_px() >= want - 0.5, where
        node = canvas.graph_scene.node_rect(canvas.current_node())
        assert canvas.visible_scene_rect().contains(node.center()), where
    w.close()


def test_leaving_projector_mode_gives_the_window_back(qtbot) -> None:
    w = projector_window(qtbot, (1280, 800))
    w.set_projector(False)
    assert not w.themes.projector
    assert w.inspector_dock.isVisible() and w.chain_dock.isVisible()
    assert not w.chain.text.minimumHeight()
    w.close()


def test_the_room_size_follows_the_window(qtbot) -> None:
    w = projector_window(qtbot, (1024, 768))
    settle(qtbot, w)
    small = w.themes.theme.scale
    w.resize(1920, 1080)
    settle(qtbot, w)
    assert w.themes.theme.scale > small * 1.3
    assert QFontInfo(w.chain.text.font()).pixelSize() >= min_text_px(1080)
    w.close()


@pytest.mark.slow
@pytest.mark.parametrize("example", ["cnn", "attention", "lstm"])
@pytest.mark.parametrize("size", ROOMS, ids=[f"{w}x{h}" for w, h in ROOMS])
def test_bigger_examples_are_readable_from_the_back_row(qtbot, example: str, size: tuple[int, int]) -> None:
    """A sample of each example's steps (the first forward, the middle, the last backward): the same promises
    as for xor, on graphs too big to show whole."""
    w = projector_window(qtbot, size, example)
    settle(qtbot, w)
    want = min_text_px(size[1])
    s = w.bridge.session
    n = len(s.steps)
    for cursor in sorted({1, n // 4, n // 2, n // 2 + 1, 3 * n // 4, n}):
        s.seek(cursor)
        settle(qtbot, w)
        where = f"{example} {s.position_text()}"
        qtbot.waitUntil(lambda: whole_text_on_screen(w.chain), timeout=2000)
        assert w.rect().contains(w.chain_dock.geometry()), where
        assert w.projector.label_px() >= want - 0.5, where
        canvas = w.canvas
        node = canvas.graph_scene.node_rect(canvas.current_node())
        assert canvas.visible_scene_rect().contains(node.center()), where
        assert canvas.height() >= size[1] // 4, f"{where}: the canvas keeps room ({canvas.height()} px)"
    w.close()

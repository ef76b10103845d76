"""Projector mode never needs more lines than the room has: at every backward step of the XOR networks the main
window's minimum size fits 1024×768 (and the other rooms), the chain rule's text stays whole and readable, and the
canvas keeps room for the current node. Where the whole text would not fit in half the window, it writes out
fewer tensors, never fewer formulas or numbers of the selected element."""

from __future__ import annotations

import re

import pytest
from PySide6.QtGui import QFontInfo

from propscope import open_session
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

"""File ▸ Open architecture by name (Ctrl+Shift+O) in the real window: a library, a name and an image side, Open, and
the network is there with random weights, named after it, in Open recent; a name the library lacks says so and keeps
the session."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import zoo
from PySide6.QtCore import Qt

import propscope
from propscope.gui.main_window import MainWindow

pytestmark = [pytest.mark.torch, pytest.mark.skipif(not zoo.has_torchvision(), reason="needs torchvision"),
              pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                        "This plugin does not support raise")]


def _dialog(qtbot: Any, window: MainWindow) -> Any:
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: getattr(window, "architecture_dialog", None) is not None)
    return window.architecture_dialog


def test_ctrl_shift_o_opens_a_torchvision_network(qtbot: Any) -> None:
    window = MainWindow(propscope.open_session("xor"))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    dialog = _dialog(qtbot, window)
    dialog.name.setCurrentText("mobilenet_v3_small")
    dialog.size.setValue(32)
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=120_000):
        dialog.accept()
    s = window.bridge.session
    assert s.name == "mobilenet_v3_small" and s.graph.inputs[0].shape == (1, 3, 32, 32)
    assert s.loss_name == "cross_entropy" and "mobilenet_v3_small" in window.windowTitle()
    assert window.recent.paths()[0] == "torchvision:mobilenet_v3_small@32"


def test_a_name_torchvision_lacks_is_one_line_and_the_session_stays(qtbot: Any) -> None:
    window = MainWindow(propscope.open_session("xor"))
    qtbot.addWidget(window)
    before = window.bridge.session
    job = window.open_path("torchvision:not_a_network@32")
    with qtbot.waitSignal(job.failed, timeout=60_000):
        pass
    assert window.bridge.session is before
    assert "no classification, segmentation or video model 'not_a_network'" in (window.last_error or "")


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="needs timm")
def test_ctrl_shift_o_opens_a_timm_network_and_open_recent_brings_it_back(qtbot: Any) -> None:
    window = MainWindow(propscope.open_session("xor"))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    dialog = _dialog(qtbot, window)
    dialog.library.setCurrentText("timm")
    assert dialog.name.itemText(0) == "resnet50"  # timm's names offered now
    dialog.name.setCurrentText("resnet18")
    dialog.size.setValue(32)
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=120_000):
        dialog.accept()
    s = window.bridge.session
    assert s.name == "resnet18" and s.graph.inputs[0].shape == (1, 3, 32, 32) and "timm" in s.model.description
    assert window.recent.paths()[0] == "timm:resnet18@32"  # a name, not made a path
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=120_000):
        window.open_path(window.recent.paths()[0])  # what Open recent does with it
    assert window.bridge.session is not s and window.bridge.session.name == "resnet18"

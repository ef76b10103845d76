"""Docks that start hidden (Diff, Lesson) are made when first shown: their menu entries, keys and places in the
layout are there from the start, and every way of showing one (its action, View ▸ its name, a restored layout,
a lesson opening) finds it made."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtGui import QKeySequence

import propscope
from propscope.gui.main_window import MainWindow

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = [pytest.mark.qt_log_ignore(OFFSCREEN_NOISE), pytest.mark.qt_log_level_fail("WARNING")]


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat)


def make_window(qtbot, settings=None) -> MainWindow:  # type: ignore[no-untyped-def]
    w = MainWindow(propscope.open_session("xor"), settings=settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def test_hidden_docks_start_empty_with_their_actions_and_are_made_when_shown(qtbot) -> None:  # type: ignore[no-untyped-def]
    w = make_window(qtbot)
    docks = (w.diff_dock, w.lesson_dock)
    assert not any(d.built or d.isVisible() or d.widget() is not None for d in docks)
    assert w.diff_action.shortcut() == QKeySequence("Ctrl+Shift+D")
    assert w.lesson_dock.toggleViewAction() in w.view_menu.actions()
    w.diff_action.trigger()
    assert w.diff_dock.built and w.diff_dock.isVisible() and w.diff_dock.widget() is w.diff_view
    w.lesson_dock.toggleViewAction().trigger()  # View ▸ Lesson
    assert w.lesson_dock.isVisible() and w.lesson_dock.widget() is w.lessons.panel
    assert w.lessons.player is None and w.lessons.dock is w.lesson_dock
    assert w.lesson_dock.titleBarWidget() is not None  # the title that follows the application font
    w.close()


def test_asking_for_the_view_makes_it_without_showing_the_dock(qtbot) -> None:  # type: ignore[no-untyped-def]
    w = make_window(qtbot)
    view = w.diff_view
    assert w.diff_dock.built and w.diff_dock.isHidden() and w.diff_dock.widget() is view
    assert w.diff_view is view  # made once
    controller = w.lessons
    assert w.lesson_dock.isHidden() and w.lessons is controller
    w.close()


def test_a_dock_left_open_is_made_when_its_layout_is_restored(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    w = make_window(qtbot, settings)
    w.diff_action.trigger()
    w.close()  # saves the layout
    again = make_window(qtbot, settings)
    assert again.diff_dock.isVisible() and again.diff_dock.built and again.diff_dock.widget() is not None
    assert not again.lesson_dock.built
    again.close()

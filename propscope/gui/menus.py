"""Finding the window's menus by title, without `QAction.menu()`.

PySide 6.11's binding of `QAction.menu()` (a template in Qt 6) hands back menus it does not own properly:
code that looked menus up that way corrupted reference counts, a segfault several windows later, and on
PySide 6.10 the menu it returns is already deleted. The menus are the window's children, so they are found
among them by title instead.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QMenu, QWidget


def menu_titled(window: QWidget, title: str) -> QMenu | None:
    """The menu of `window` titled `title` ("Debug" finds "&Debug"), or None.

    The menu bar's own menus are looked at first: walking all of a window's ~800 children to find them
    cost 1-2 ms a lookup at start."""
    wanted = title.replace("&", "")
    bar = window.menuBar() if isinstance(window, QMainWindow) else None
    near = bar.findChildren(QMenu, "", Qt.FindChildOption.FindDirectChildrenOnly) if bar is not None else []
    for menus in (lambda: near, lambda: window.findChildren(QMenu)):
        for menu in menus():
            if menu.title().replace("&", "") == wanted:
                return menu
    return None


def submenus(window: QWidget) -> dict[QAction, QMenu]:
    """Each menu of `window` by the action that opens it (for walking menus in order). The dict holds the
    actions' Python wrappers, so `menu.actions()` hands back the same objects while it lives."""
    return {menu.menuAction(): menu for menu in window.findChildren(QMenu)}


def menu_bar_menus(window: QMainWindow) -> list[QMenu]:
    """The menus of the window's menu bar, left to right."""
    by_action = {menu.menuAction(): menu for menu in window.findChildren(QMenu)}
    return [by_action[a] for a in window.menuBar().actions() if a in by_action]

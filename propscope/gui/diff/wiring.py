"""The Diff dock's place in the main window: tabbed with the chain rule, opened by Debug ▸ Diff (Ctrl+Shift+D)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

from ..docks import make_dock
from ..timeline.wiring import find_menu
from .view import DiffView, change_color


def install_diff(window: Any) -> DiffView:
    view = DiffView(window.bridge, window.selection, window.themes, window)
    dock = make_dock("Diff", "diffDock", view, window)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    window.tabifyDockWidget(window.chain_dock, dock)
    window.chain_dock.raise_()
    dock.hide()
    window.diff_dock = dock

    def colour(by_node: dict[str, float] | None) -> None:
        window.canvas.set_diffs(by_node, change_color if by_node is not None else None)

    def open_dock() -> None:
        view.refresh_sources()
        dock.show()
        dock.raise_()

    view.colour.connect(colour)
    view.nodeClicked.connect(lambda name: window.selection.select(name))
    view.message.connect(window.message)
    runner = window.training.runner
    runner.stateChanged.connect(lambda _state: None if runner.busy else view.refresh_sources())
    action = QAction("&Diff…", window)
    action.setObjectName("diff")
    action.setShortcut(QKeySequence("Ctrl+Shift+D"))
    action.setStatusTip("Compare two epochs, two files or the two backends; colour nodes by their change")
    action.triggered.connect(open_dock)
    window.addAction(action)
    menu = find_menu(window, "Debug")
    if menu is not None:
        menu.addAction(action)
    window.diff_action = action
    return view

"""Finding one's way in a big graph, as Netron and Model Explorer users expect, installed on the main window.

Ctrl+F finds a node by name, op or module (`search.SearchBar`); Space goes to the current step; the
minimap (View ▸ Minimap) shows the whole graph with the view outlined; breadcrumbs show the module
path of the selected node. The widgets float over the canvas: the search box top right, the
breadcrumbs top left, the minimap bottom right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

from ..menus import menu_titled
from .breadcrumbs import Breadcrumbs
from .minimap import Minimap
from .search import SearchBar
from .view import GraphView

FIND_KEYS = QKeySequence.StandardKey.Find  # Ctrl+F
CURRENT_KEY = "Space"


@dataclass
class Navigation:
    search: SearchBar
    minimap: Minimap
    breadcrumbs: Breadcrumbs
    find_action: QAction
    current_action: QAction
    minimap_action: QAction


class _Placer(QObject):
    """Keeps the search box in the canvas's top-right corner as the canvas resizes."""

    def __init__(self, canvas: GraphView, search: SearchBar) -> None:
        super().__init__(canvas)
        self.canvas, self.search = canvas, search
        canvas.viewChanged.connect(self.place)

    def place(self) -> None:
        margin = self.canvas.themes.theme.px(8)
        self.search.adjustSize()
        vp = self.canvas.viewport().rect()
        self.search.move(max(0, vp.right() - self.search.width() - margin), margin)


def install_navigation(window: Any) -> Navigation:
    """Make the widgets and actions on `window` (a MainWindow) and put the actions in its View menu."""
    canvas: GraphView = window.canvas
    search = SearchBar(lambda: canvas.bridge.session.graph, lambda: canvas.selection.node, canvas)
    search.goTo.connect(canvas.reveal)
    search.closed.connect(lambda: canvas.setFocus(Qt.FocusReason.OtherFocusReason))
    placer = _Placer(canvas, search)
    canvas.bridge.sessionChanged.connect(lambda _s: search.graph_changed())
    minimap = Minimap(canvas)
    crumbs = Breadcrumbs(canvas)

    def open_search() -> None:
        placer.place()
        search.open_bar()

    find = QAction("&Find node…", window)
    find.setShortcut(QKeySequence(FIND_KEYS))
    find.setObjectName("findNode")
    find.setToolTip("Find a node by name, op or module (Enter: next match)")
    find.triggered.connect(open_search)
    current = QAction("Go to the &current step", window)
    current.setShortcut(QKeySequence(CURRENT_KEY))
    current.setObjectName("goToCurrent")
    current.setToolTip("Centre the node of the current step")
    current.triggered.connect(canvas.go_to_current)
    show_map = QAction("&Minimap", window, checkable=True)
    show_map.setChecked(True)
    show_map.setObjectName("showMinimap")
    show_map.toggled.connect(minimap.set_wanted)
    for act in (find, current, show_map):
        window.addAction(act)  # the keys work wherever the focus is in the window
    menu = _view_menu(window)
    if menu is not None:
        menu.addSeparator()
        for act in (find, current, show_map):
            menu.addAction(act)
    minimap.follow()
    crumbs.refresh()
    return Navigation(search, minimap, crumbs, find, current, show_map)


def _view_menu(window: Any) -> QMenu | None:
    return menu_titled(window, "View")

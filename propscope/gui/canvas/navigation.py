"""Finding one's way in a big graph, as Netron and Model Explorer users expect, installed on the main window.

Ctrl+F finds a node by name, op or module (`search.SearchBar`); Space goes to the current step; the
minimap (View ▸ Minimap) shows the whole graph with the view outlined; breadcrumbs show the module
path of the selected node. The widgets float over the canvas: the breadcrumbs at the left end and the search
box at the right end of the band along its top (`GraphView.set_top_band`), the minimap bottom right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QWidget

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
    """Keeps the search box at the right end of the canvas's top band as the canvas and the band resize, and the
    crumbs clear of it while it is open."""

    def __init__(self, canvas: GraphView, search: SearchBar, crumbs: Breadcrumbs) -> None:
        super().__init__(canvas)
        self.canvas, self.search, self.crumbs = canvas, search, crumbs
        canvas.viewChanged.connect(self.place)
        search.closed.connect(self.place)

    def place(self) -> None:
        margin = self.canvas.themes.theme.px(8)
        right = self.canvas.viewport().geometry().right() + 1
        self.search.place(right, self.canvas.viewportMargins().top(), margin)
        self.crumbs.reserve_right(self.search.width() + margin if self.search.isVisible() else 0)
        # the one-line colour legend shares the band's right end: below the box while it is open, back after
        legend = self.canvas.findChild(QWidget, "colourLegend", Qt.FindChildOption.FindDirectChildrenOnly)
        if legend is not None and legend.isVisible():
            legend.place()  # type: ignore[attr-defined]


def install_navigation(window: Any) -> Navigation:
    """Make the widgets and actions on `window` (a MainWindow) and put the actions in its View menu."""
    canvas: GraphView = window.canvas
    search = SearchBar(lambda: canvas.bridge.session.graph, lambda: canvas.selection.node, canvas)
    search.goTo.connect(canvas.reveal)
    search.closed.connect(lambda: canvas.setFocus(Qt.FocusReason.OtherFocusReason))
    canvas.bridge.sessionChanged.connect(lambda _s: search.graph_changed())
    minimap = Minimap(canvas)
    crumbs = Breadcrumbs(canvas)
    placer = _Placer(canvas, search, crumbs)

    def open_search() -> None:
        search.open_bar()
        placer.place()

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

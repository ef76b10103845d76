"""The Diff dock's place in the main window: tabbed with the chain rule, opened by Debug ▸ Diff (Ctrl+Shift+D)
and by Debug ▸ Compare backends (Ctrl+B), which shows the two backends' runs in it; A, B and A − B of the
selected node in the inspector."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

from ..docks import make_dock
from ..timeline.wiring import find_menu
from .in_inspector import DiffPanels
from .view import DiffView


def install_diff(window: Any) -> DiffView:
    view = DiffView(window.bridge, window.selection, window.themes, window)
    dock = make_dock("Diff", "diffDock", view, window)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    window.tabifyDockWidget(window.chain_dock, dock)
    window.chain_dock.raise_()
    dock.hide()
    window.diff_dock = dock

    def open_dock() -> None:
        view.refresh_sources()
        dock.show()
        dock.raise_()

    panels = DiffPanels(view, window.inspector)
    panels.elementClicked.connect(window.selection.select_element)
    window.inspector.add_row(panels)
    view.shown.connect(window.inspector.refresh)
    view.colour.connect(window.canvas.set_diffs)
    view.nodeClicked.connect(lambda name: window.selection.select(name))
    view.message.connect(window.message)
    compare = getattr(window, "compare_action", None)
    if compare is not None:  # NumPy vs PyTorch runs Compare backends: the same job, the same place
        view.backendsRequested.connect(compare.trigger)
        view.backends.setEnabled(compare.isEnabled())
        view.backends.setToolTip(compare.toolTip())
    runner = window.training.runner
    runner.stateChanged.connect(lambda _state: None if runner.busy else view.sources_changed())
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


def show_backends(window: Any, result: Any) -> None:
    """Compare backends' result (a GraphDiff with its tolerance check) in the Diff dock, brought forward."""
    view: DiffView = window.diff_view
    view.refresh_sources()
    if view.kind == "params":  # the two backends share their parameters: their values are what differs
        view.what.setCurrentIndex(view.what.findData("values"))
    view.show_result(result)
    window.diff_dock.show()
    window.diff_dock.raise_()

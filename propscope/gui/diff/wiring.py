"""The Diff dock's place in the main window: tabbed with the chain rule, opened by Debug ▸ Diff (Ctrl+Shift+D)
and by Debug ▸ Compare backends (Ctrl+B), which shows the two backends' runs in it; A, B and A − B of the
selected node in the inspector.

The dock, its place and its action are there from the start; the view in it (and the inspector's row) are made
when the dock is first shown or `diff_view(window)` first asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget

from ..docks import LazyDock, tabify

if TYPE_CHECKING:
    from .view import DiffView


def install_diff(window: Any) -> LazyDock:
    """The Diff dock (hidden, tabbed with the chain rule) and Debug ▸ Diff for `window` (a MainWindow)."""
    dock = LazyDock("Diff", "diffDock", lambda dock: _make_view(window, dock), window)
    dock.hide()  # before it joins the chain rule's tabs: shown, it would be made now
    tabify(window, window.chain_dock, dock)
    window.chain_dock.raise_()

    def open_dock() -> None:
        diff_view(window).refresh_sources()
        dock.show()
        dock.raise_()

    action = QAction("&Diff…", window)
    action.setObjectName("diff")
    action.setShortcut(QKeySequence("Ctrl+Shift+D"))
    action.setStatusTip("Compare two epochs, two files or the two backends; colour nodes by their change")
    action.triggered.connect(open_dock)
    window.addAction(action)
    window.debug_menu.addAction(action)
    window.diff_action = action
    return dock


def diff_view(window: Any) -> DiffView:
    """The window's Diff view, made now if the dock was never opened."""
    view: DiffView = window.diff_dock.contents()
    return view


def _make_view(window: Any, dock: QDockWidget) -> None:
    from .in_inspector import DiffPanels
    from .view import DiffView

    view = DiffView(window.bridge, window.selection, window.themes, window)
    dock.setWidget(view)
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


def show_backends(window: Any, result: Any) -> None:
    """Compare backends' result (a GraphDiff with its tolerance check) in the Diff dock, brought forward."""
    view = diff_view(window)
    view.refresh_sources()
    if view.kind == "params":  # the two backends share their parameters: their values are what differs
        view.what.setCurrentIndex(view.what.findData("values"))
    view.show_result(result)
    window.diff_dock.show()
    window.diff_dock.raise_()

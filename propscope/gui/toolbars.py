"""Toolbars that wrap instead of hiding actions behind Qt's » button when the window is narrow.

Qt keeps the toolbars of one area on one row and moves what does not fit into an extension menu,
where a newcomer never finds the example or backend choice. Here, when the row is too narrow for the
toolbars' full width, the later ones go to a second row; when it is wide enough again, they come back.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QMainWindow, QToolBar

from .guard import guarded_answer

ROW_SLACK_PX = 16  # the toolbar area's handles and margins


def row_width(bars: list[QToolBar]) -> int:
    """The width the toolbars need side by side, every action shown."""
    return sum(bar.sizeHint().width() for bar in bars if bar.isVisible()) + ROW_SLACK_PX


class ToolbarWrap(QObject):
    """Keeps `bars` (in the window's top area, in this order) on as few rows as show all their actions,
    while `wrap()` says so (projector mode keeps one row: the room needs the height more than the choices)."""

    def __init__(self, window: QMainWindow, bars: list[QToolBar], wrap: Callable[[], bool] = lambda: True) -> None:
        super().__init__(window)
        self.window, self.bars, self.wrap = window, bars, wrap
        self._check = QTimer(self)
        self._check.setSingleShot(True)
        self._check.setInterval(0)
        self._check.timeout.connect(self.arrange)
        window.installEventFilter(self)
        for bar in bars:
            bar.installEventFilter(self)  # a bar's own size changes with projector mode's font and icons

    @guarded_answer(False)
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.Resize, QEvent.Type.Show, QEvent.Type.LayoutRequest):
            self._check.start()
        return False

    def arrange(self) -> None:
        """Break the row before the first bar that would not fit (at most one break per bar)."""
        w = self.window
        if any(w.toolBarArea(bar) != Qt.ToolBarArea.TopToolBarArea for bar in self.bars):
            return  # the user has moved a toolbar: their arrangement stands
        width, row, wanted = w.width(), [], set()
        for bar in self.bars:
            if row and self.wrap() and row_width([*row, bar]) > width:
                wanted.add(bar)
                row = []
            row.append(bar)
        breaks = {bar for bar in self.bars if w.toolBarBreak(bar)}  # a restored layout may bring its own
        for bar in breaks - wanted:
            w.removeToolBarBreak(bar)
        for bar in wanted - breaks:
            w.insertToolBarBreak(bar)

    def hidden_actions(self) -> list[str]:
        """The actions and widgets of the bars that are out of sight (behind the » button or cut off)."""
        out = []
        for bar in self.bars:
            for action in bar.actions():
                widget = bar.widgetForAction(action)
                if widget is None or action.isSeparator():
                    continue
                if not widget.isVisible() or not bar.rect().contains(widget.geometry()):
                    out.append(action.text() or widget.objectName())
        return out

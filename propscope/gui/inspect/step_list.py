"""The step list dock: every planned step, the current one marked; click a step to move the cursor there.

A list model reads the schedule lazily, so a 10,000-step pass costs nothing until rows are shown.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QListView, QVBoxLayout, QWidget

from ..bridge import SessionBridge
from ..guard import guarded_answer
from ..theme import ThemeManager

AnyIndex = QModelIndex | QPersistentModelIndex


class StepListModel(QAbstractListModel):
    def __init__(self, bridge: SessionBridge, themes: ThemeManager) -> None:
        super().__init__()
        self.bridge, self.themes = bridge, themes

    @guarded_answer(0)
    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.bridge.session.steps)

    @guarded_answer(None)
    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        s = self.bridge.session
        step = s.steps[index.row()]
        theme = self.themes.theme
        if role == Qt.ItemDataRole.DisplayRole:
            arrow = "→" if step.phase == "forward" else "←"
            mark = "● " if step.node.name in s.node_breakpoints() else "   "
            return f"{mark}{step.index + 1:>3} {arrow} {step.node.op.name} {step.node.name}"
        if role == Qt.ItemDataRole.ForegroundRole:
            if step.node.name in s.node_breakpoints() and index.row() != s.cursor - 1:
                return theme.color("breakpoint")
            return theme.color("forward" if step.phase == "forward" else "gradient")
        if role == Qt.ItemDataRole.BackgroundRole and index.row() == s.cursor - 1:
            c = QColor(theme.color("highlight"))
            c.setAlpha(120)
            return c
        if role == Qt.ItemDataRole.FontRole and index.row() == s.cursor - 1:
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{step.phase} step {step.index + 1}: {step.node.op.formula}"
        return None

    def reset(self) -> None:
        self.beginResetModel()
        self.endResetModel()

    def rows_changed(self, *rows: int) -> None:
        for r in rows:
            if 0 <= r < self.rowCount():
                i = self.index(r)
                self.dataChanged.emit(i, i)


class StepList(QWidget):
    runRequested = Signal(int, str)  # a step clicked: the cursor position to go to, what the move is called

    def __init__(self, bridge: SessionBridge, themes: ThemeManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("stepList")
        self.bridge = bridge
        self.model = StepListModel(bridge, themes)
        self.view = QListView()
        self.view.setModel(self.model)
        self.view.setUniformItemSizes(True)
        # Laid out in batches: a static layout walks every row on each scrollTo, 30 ms a step at 10,000 steps.
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.view.clicked.connect(self._clicked)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.view)
        self._row = bridge.session.cursor - 1
        bridge.cursorMoved.connect(self._cursor)
        bridge.sessionChanged.connect(lambda _s: self._reset())
        bridge.traceChanged.connect(self._reset)
        bridge.breakpointsChanged.connect(self._reset)
        themes.changed.connect(self._reset)

    def _clicked(self, index: QModelIndex) -> None:
        """Asks the window to go there (a slice at a time, gui/actions.SlicedRun: it may be a whole pass away)."""
        self.runRequested.emit(index.row() + 1, f"Going to step {index.row() + 1}")

    def _cursor(self, cursor: int) -> None:
        old, self._row = self._row, cursor - 1
        self.model.rows_changed(old, self._row)
        if self._row >= 0:
            self.view.scrollTo(self.model.index(self._row), QAbstractItemView.ScrollHint.EnsureVisible)

    def _reset(self) -> None:
        self.model.reset()
        self._row = self.bridge.session.cursor - 1

"""The inspector's share of a diff: the selected node's A, B and A − B, as numbers, heatmaps and histograms.

Shown under the node's own value and gradient while the Diff dock holds a result (two epochs, a file,
the two backends), for the kind the dock shows (parameters, values or gradients); hidden otherwise.
Each is the inspector's own tensor view, so clicking an element selects it everywhere.

The row fits the inspector's width: side by side where three panels each get a readable width (a wide or floating
inspector), else one at a time under a tab bar A | B | A − B. Three side by side always had a minimum of three
panels' (494 px in normal type), which made the right-hand dock 506 px wide after any comparison and took 86 px from
the canvas at 1024×768. The three panels show the same tab (numbers, heatmap or histogram), so flipping between A and
B compares like with like.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QResizeEvent, QShowEvent
from PySide6.QtWidgets import QSplitter, QTabBar, QVBoxLayout, QWidget

from ..guard import guarded, guarded_answer
from ..inspect.tensor_view import TensorPanel
from ..theme import Theme
from .view import KIND_TEXT, DiffView

TAB_TEXT = ("A", "B", "A − B")
READABLE_PANEL_PX = 200  # (scaled by the theme) the least width a panel gets side by side; narrower: one at a time


class DiffPanels(QWidget):
    elementClicked = Signal(object)

    def __init__(self, view: DiffView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inspectorDiffRow")
        self.view = view
        self.scale = 1.0
        self.a = TensorPanel("A", "")
        self.b = TensorPanel("B", "")
        self.delta = TensorPanel("A − B", "")
        self.choice = QTabBar(self)  # one panel at a time, where three do not fit side by side
        self.choice.setObjectName("inspectorDiffTabs")
        self.choice.setDocumentMode(True)
        self.choice.setExpanding(False)
        self.choice.setUsesScrollButtons(False)
        for text in TAB_TEXT:
            self.choice.addTab(text)
        self.choice.setCurrentIndex(2)  # where they differ, first
        self.choice.currentChanged.connect(lambda _i: self._arrange())
        self.side = QSplitter(Qt.Orientation.Horizontal, self)
        self.side.setChildrenCollapsible(False)
        for panel in self.panels:
            # "A: numpy/float32 on cpu · values" wraps: three such titles in one line made the inspector (and so the
            # window) too wide for 1024 px
            panel.title.setWordWrap(True)
            panel.elementClicked.connect(self.elementClicked)
            panel.tabs.currentChanged.connect(self._same_tab)
            self.side.addWidget(panel)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.choice)
        lay.addWidget(self.side, 1)
        self.hide()

    @property
    def panels(self) -> tuple[TensorPanel, TensorPanel, TensorPanel]:
        return self.a, self.b, self.delta

    @property
    def side_by_side(self) -> bool:
        """Whether the three panels are shown together (else the tab bar's one)."""
        return self.choice.isHidden()

    def shown_panels(self) -> list[TensorPanel]:
        return [panel for panel in self.panels if not panel.isHidden()]

    def show_node(self, name: str | None, index: Any) -> None:
        """The diff's arrays of node `name` (the inspector's selection), or hidden where there are none."""
        picked = self.view.selected_pair(name)
        if picked is None or (picked[2] is None and picked[3] is None):
            self.hide()
            for panel in self.panels:
                panel.set_array(None, None)
            return
        row, kind, a, b = picked
        result = self.view.result
        assert result is not None
        what = KIND_TEXT[kind]
        delta = a - b if a is not None and b is not None and a.shape == b.shape else None
        missing = f"{row.status}: no {what} here"
        self.a.set_title(f"A: {result.label_a} · {what}", missing)
        self.b.set_title(f"B: {result.label_b} · {what}", missing)
        self.delta.set_title("A − B", "The shapes differ." if a is not None and b is not None else missing)
        for panel, x in zip(self.panels, (a, b, delta), strict=True):
            panel.set_array(None if x is None else np.asarray(x), index)
        self.choice.setTabToolTip(0, self.a.title.text())
        self.choice.setTabToolTip(1, self.b.title.text())
        self.show()

    def apply_theme(self, theme: Theme, font: Any) -> None:
        self.scale = theme.scale
        self.choice.setFont(font)
        for panel in self.panels:
            panel.apply_theme(theme, font)
        self._arrange()

    # -- fitting the width -------------------------------------------------------------------------------------------
    def needed_side_by_side(self) -> int:
        """The width three panels need side by side: each its minimum, and at least a readable width."""
        each = max(max(p.minimumSizeHint().width() for p in self.panels), round(READABLE_PANEL_PX * self.scale))
        return 3 * each + 2 * self.side.handleWidth()

    def _arrange(self) -> None:
        """Side by side where the width allows, else the chosen panel alone under the tab bar."""
        together = self.width() >= self.needed_side_by_side()
        self.choice.setVisible(not together)
        for i, panel in enumerate(self.panels):
            panel.setVisible(together or i == self.choice.currentIndex())

    def _same_tab(self, tab: int) -> None:
        for panel in self.panels:
            if panel.tabs.currentIndex() != tab:
                panel.tabs.setCurrentIndex(tab)

    @guarded_answer(QSize())
    def minimumSizeHint(self) -> QSize:
        """One panel under the tab bar: what the row needs at any width (it never widens the inspector)."""
        width = max(p.minimumSizeHint().width() for p in self.panels)
        height = self.choice.sizeHint().height() + max(p.minimumSizeHint().height() for p in self.panels)
        return QSize(width, height)

    @guarded
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._arrange()

    @guarded
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._arrange()

"""The inspector's share of a diff: the selected node's A, B and A − B, as numbers, heatmaps and histograms.

Shown under the node's own value and gradient while the Diff dock holds a result (two epochs, a file,
the two backends), for the kind the dock shows (parameters, values or gradients); hidden otherwise.
Each is the inspector's own tensor view, so clicking an element selects it everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QSplitter, QWidget

from ..inspect.tensor_view import TensorPanel
from ..theme import Theme
from .view import KIND_TEXT, DiffView


class DiffPanels(QSplitter):
    elementClicked = Signal(object)

    def __init__(self, view: DiffView, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setObjectName("inspectorDiffRow")
        self.view = view
        self.a = TensorPanel("A", "")
        self.b = TensorPanel("B", "")
        self.delta = TensorPanel("A − B", "")
        for panel in self.panels:
            # "A: numpy/float32 on cpu · values" wraps: three such titles in one line made the inspector (and so the
            # window) too wide for 1024 px
            panel.title.setWordWrap(True)
            panel.elementClicked.connect(self.elementClicked)
            self.addWidget(panel)
        self.hide()

    @property
    def panels(self) -> tuple[TensorPanel, TensorPanel, TensorPanel]:
        return self.a, self.b, self.delta

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
        self.show()

    def apply_theme(self, theme: Theme, font: Any) -> None:
        for panel in self.panels:
            panel.apply_theme(theme, font)

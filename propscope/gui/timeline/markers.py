"""A vertical line at the shown epoch on the training plots (loss, gradient health)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QPen

from ..theme import ThemeManager


class EpochMarkers:
    """One dashed line per plot, moved (never recreated) when the timeline moves; hidden without an epoch."""

    def __init__(self, plots: Sequence[Any], themes: ThemeManager) -> None:
        self.themes = themes
        self.lines: list[pg.InfiniteLine] = []
        for plot in plots:
            line = pg.InfiniteLine(angle=90, movable=False)
            line.setZValue(20)
            line.hide()
            plot.addItem(line, ignoreBounds=True)
            self.lines.append(line)
        themes.changed.connect(self._theme)
        self._theme()

    def show_epoch(self, epoch: int | None) -> None:
        for line in self.lines:
            if epoch is None:
                line.hide()
            else:
                line.setValue(epoch)
                line.show()

    def _theme(self) -> None:
        t = self.themes.theme
        pen = QPen(t.color("highlight"))
        pen.setWidthF(t.pen_width(1.5))
        pen.setStyle(Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        for line in self.lines:
            line.setPen(pen)

"""A vertical line at the shown epoch on the training plots (loss, gradient health).

The plots are made when first shown (`plot_style.BuiltOnFirstUse`), so a line is added to each
when its plot exists; pyqtgraph is imported then, not when the window starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPen

from ..theme import ThemeManager


class EpochMarkers:
    """One dashed line per plot, moved (never recreated) when the timeline moves; hidden without an epoch.

    `plots` are plot widgets, or widgets whose `.plot` is made later (`when_built`)."""

    def __init__(self, plots: Sequence[Any], themes: ThemeManager) -> None:
        self.themes = themes
        self.epoch: int | None = None
        self._hosts = list(plots)
        self._lines: list[Any] = []
        for plot in self._hosts:
            when_built = getattr(plot, "when_built", None)
            if when_built is None:
                self._add(plot)
            else:
                when_built(lambda host=plot: self._add(host.plot))
        themes.changed.connect(self._theme)

    @property
    def lines(self) -> list[Any]:
        """The lines, one per plot: asking for them makes the plots they are drawn on."""
        for host in self._hosts:
            getattr(host, "ensure_built", lambda: None)()
        return self._lines

    def _add(self, plot: Any) -> None:
        import pyqtgraph as pg

        line = pg.InfiniteLine(angle=90, movable=False)
        line.setZValue(20)
        plot.addItem(line, ignoreBounds=True)
        self._lines.append(line)
        self._theme()
        self._place(line)

    def show_epoch(self, epoch: int | None) -> None:
        self.epoch = epoch
        for line in self._lines:
            self._place(line)

    def _place(self, line: Any) -> None:
        if self.epoch is None:
            line.hide()
        else:
            line.setValue(self.epoch)
            line.show()

    def _theme(self) -> None:
        t = self.themes.theme
        pen = QPen(t.color("highlight"))
        pen.setWidthF(t.pen_width(1.5))
        pen.setStyle(Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        for line in self._lines:
            line.setPen(pen)

"""The whole graph drawn by one item, for zooms where labels cannot be read.

Thousands of separate items would cost one Python paint call each per frame; here a frame is a
handful of batched calls (one path for all edges, one `drawRects` per look), so a 5,000-node
graph pans smoothly when fitted to the view.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from ..theme import Theme
from .guard import guarded
from .items import lod_of


class OverviewItem(QGraphicsItem):
    def __init__(self, rects: dict[str, QRectF], kinds: dict[str, str], edges: list[list[QPointF]],
                 theme: Theme, frames: list[QRectF] | None = None) -> None:
        super().__init__()
        self.theme = theme
        self.frames = list(frames or [])  # open module frames, outlined
        self.rects = rects
        self.kinds = kinds
        self.pending: set[str] = set()
        self.current: str | None = None
        self.breakpoints: set[str] = set()
        path = QPainterPath()
        for pts in edges:
            path.moveTo(pts[0])
            for p in pts[1:]:
                path.lineTo(p)
        self.edges = path
        bounds = QRectF()
        for r in rects.values():
            bounds = bounds.united(r)
        for r in self.frames:
            bounds = bounds.united(r)
        self._bounds = bounds.united(path.boundingRect()).adjusted(-50, -50, 50, 50)
        self._groups: dict[tuple[str, bool], list[QRectF]] | None = None
        self.setZValue(0)

    def boundingRect(self) -> QRectF:
        return self._bounds

    def set_pending(self, pending: set[str]) -> None:
        if pending != self.pending:
            self.pending = set(pending)
            self._groups = None
            self.update()

    def set_marks(self, current: str | None, breakpoints: set[str]) -> None:
        if (current, breakpoints) != (self.current, self.breakpoints):
            self.current, self.breakpoints = current, set(breakpoints)
            self.update()

    def _grouped(self) -> dict[tuple[str, bool], list[QRectF]]:
        if self._groups is None:
            groups: dict[tuple[str, bool], list[QRectF]] = {}
            for name, r in self.rects.items():
                groups.setdefault((self.kinds[name], name in self.pending), []).append(r)
            self._groups = groups
        return self._groups

    @guarded
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        t = self.theme
        lod = lod_of(painter)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        if self.frames:
            painter.setPen(QPen(t.color("module.accent"), 0))
            painter.setBrush(t.color("module.fill"))
            painter.drawRects(self.frames)
        edge_pen = QPen(t.color("edge"), 0)  # cosmetic: one pixel at any zoom
        painter.setPen(edge_pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self.edges)
        painter.setPen(Qt.PenStyle.NoPen)
        for (kind, pending), rects in self._grouped().items():
            color = t.color(f"{kind}.accent")
            if pending:
                color.setAlphaF(0.35)
            painter.setBrush(color)
            painter.drawRects(rects)
        px = 1.0 / max(lod, 1e-6)  # one screen pixel in scene units
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(t.color("breakpoint"))
        for name in self.breakpoints & self.rects.keys():
            painter.drawEllipse(self.rects[name].center(), 4 * px, 4 * px)
        if self.current in self.rects:
            c = self.rects[self.current].center()
            painter.setBrush(Qt.BrushStyle.NoBrush)
            pen = QPen(t.color("highlight"), 4 * t.scale)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            pen.setCosmetic(True)  # as thick at any zoom
            painter.setPen(pen)
            painter.drawEllipse(c, 14 * px * t.scale, 14 * px * t.scale)

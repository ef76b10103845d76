"""The whole graph drawn by one item, for zooms where labels cannot be read.

Thousands of separate items would cost one Python paint call each per frame; here a frame is a
handful of batched calls (one path for all edges, one `drawRects` per look), so a 5,000-node
graph pans smoothly when fitted to the view.

Nodes whose forward step has not run yet are drawn pale. Each kind's rectangles are kept sorted
by that step, so the pale ones are a tail of the list found by bisection: a step costs no
regrouping of the whole graph, only the paint.
"""

from __future__ import annotations

import bisect

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from ..guard import guarded
from ..theme import Theme
from .items import lod_of


class OverviewItem(QGraphicsItem):
    """`order[key]` is the forward step at which `key` gets its value (-1: it has one from the start)."""

    def __init__(self, rects: dict[str, QRectF], kinds: dict[str, str], edges: list[list[QPointF]],
                 theme: Theme, frames: list[QRectF] | None = None, order: dict[str, int] | None = None) -> None:
        super().__init__()
        self.theme = theme
        self.frames = list(frames or [])  # open module frames, outlined
        self.rects = rects
        self.kinds = kinds
        self.steps_run = 0  # keys whose step is at or after this one are pending (drawn pale)
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
        self._by_kind = self._sorted_by_step(order or {})
        self.setZValue(0)

    def _sorted_by_step(self, order: dict[str, int]) -> dict[str, tuple[list[int], list[QRectF]]]:
        """Per kind: the steps, ascending, and the rectangles in that order."""
        keyed: dict[str, list[tuple[int, int, QRectF]]] = {}
        for i, (name, r) in enumerate(self.rects.items()):
            keyed.setdefault(self.kinds[name], []).append((order.get(name, -1), i, r))
        out = {}
        for kind, rows in keyed.items():
            rows.sort()  # by step, then by position (unique: the rectangles themselves are never compared)
            out[kind] = ([row[0] for row in rows], [row[2] for row in rows])
        return out

    def boundingRect(self) -> QRectF:
        return self._bounds

    def set_steps_run(self, cursor: int) -> None:
        if cursor != self.steps_run:
            self.steps_run = cursor
            self.update()

    def set_marks(self, current: str | None, breakpoints: set[str]) -> None:
        if (current, breakpoints) != (self.current, self.breakpoints):
            self.current, self.breakpoints = current, set(breakpoints)
            self.update()

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
        for kind, (steps, rects) in self._by_kind.items():
            split = bisect.bisect_left(steps, self.steps_run)  # from here on: not computed yet
            color = t.color(f"{kind}.accent")
            if split:
                painter.setBrush(color)
                painter.drawRects(rects[:split])
            if split < len(rects):
                color.setAlphaF(0.35)
                painter.setBrush(color)
                painter.drawRects(rects[split:])
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

"""The minimap: the whole graph in a corner of the canvas, the part in view outlined; click or drag to go there.

The graph is drawn once into a pixmap by the scene's own overview item (one path for the edges, one
`drawRects` per kind), so a 20,000-node graph costs its drawing only when the scene changes, the
minimap is resized, or the steps have settled (a short timer after the last one); a pan or zoom
repaints only the pixmap and two rectangles. It hides while the whole graph is in view.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QStyleOptionGraphicsItem, QWidget

from ..guard import guarded
from .view import GraphView

SETTLE_MS = 250  # after the last step, the pixmap is drawn again with what has run


class Minimap(QWidget):
    def __init__(self, canvas: GraphView) -> None:
        super().__init__(canvas)
        self.setObjectName("minimap")
        self.canvas = canvas
        self.wanted = True  # the user's choice (View ▸ Minimap); shown only when the graph overflows the view
        self._pixmap: QPixmap | None = None
        self._drawn_for: object = None  # the scene the pixmap shows
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(SETTLE_MS)
        self._redraw.timeout.connect(self.invalidate)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("The whole graph: click or drag to go there")
        canvas.viewChanged.connect(self.follow)
        canvas.bridge.cursorMoved.connect(lambda _c: self._redraw.start())
        self.hide()

    # -- where it sits, when it shows ------------------------------------------------------------
    def follow(self) -> None:
        """Place it in the canvas's bottom-right corner; show it only when part of the graph is out of view."""
        scene = self.canvas._scene
        if scene is None:
            return
        if scene is not self._drawn_for:
            self._pixmap = None
        view = self.canvas.visible_scene_rect()
        overflow = not view.contains(scene.graph_rect)
        if not (self.wanted and overflow):
            self.hide()
            return
        self._place(scene.graph_rect)
        self.show()
        self.raise_()
        self.update()

    def set_wanted(self, on: bool) -> None:
        self.wanted = on
        self.follow()

    def _place(self, graph: QRectF) -> None:
        px = self.canvas.themes.theme.px
        longest, margin = px(220), px(10)
        vp = self.canvas.viewport().rect()
        longest = min(longest, max(60, vp.width() // 3), max(60, vp.height() // 2))
        aspect = graph.width() / max(graph.height(), 1.0)
        if aspect >= 1:
            w, h = longest, max(24, round(longest / aspect))
        else:
            w, h = max(24, round(longest * aspect)), longest
        h = min(h, max(24, vp.height() // 2))
        if self.size().width() != w or self.size().height() != h:
            self.resize(w, h)
            self._pixmap = None
        self.move(vp.right() - w - margin, vp.bottom() - h - margin)

    # -- drawing ---------------------------------------------------------------------------------
    def invalidate(self) -> None:
        self._pixmap = None
        if self.isVisible():
            self.update()

    def _to_map(self) -> QTransform:
        """Scene coordinates to the minimap's, the graph fitted inside with a small margin, centred."""
        r = self.canvas.graph_scene.graph_rect
        inner = QRectF(self.rect()).adjusted(3, 3, -3, -3)
        k = min(inner.width() / max(r.width(), 1e-9), inner.height() / max(r.height(), 1e-9))
        dx = inner.left() + (inner.width() - r.width() * k) / 2 - r.left() * k
        dy = inner.top() + (inner.height() - r.height() * k) / 2 - r.top() * k
        return QTransform(k, 0, 0, k, dx, dy)

    def _picture(self) -> QPixmap:
        scene = self.canvas.graph_scene
        if self._pixmap is None or self._drawn_for is not scene:
            ratio = self.devicePixelRatioF()
            pixmap = QPixmap(round(self.width() * ratio), round(self.height() * ratio))
            pixmap.setDevicePixelRatio(ratio)
            pixmap.fill(scene.theme.color("background"))
            painter = QPainter(pixmap)
            painter.setTransform(self._to_map())
            scene.overview.paint(painter, QStyleOptionGraphicsItem(), None)
            painter.end()
            self._pixmap, self._drawn_for = pixmap, scene
        return self._pixmap

    @guarded
    def paintEvent(self, event: QPaintEvent) -> None:
        scene = self.canvas._scene
        if scene is None:
            return
        theme = scene.theme
        painter = QPainter(self)
        painter.drawPixmap(0, 0, self._picture())
        to_map = self._to_map()
        seen = to_map.mapRect(self.canvas.visible_scene_rect()).intersected(QRectF(self.rect()))
        fill = theme.color("highlight")
        fill.setAlphaF(0.15)
        pen = QPen(theme.color("highlight"), 1.5)
        painter.setPen(pen)
        painter.setBrush(fill)
        painter.drawRect(seen.adjusted(0.5, 0.5, -0.5, -0.5))
        painter.setPen(QPen(theme.color("muted"), 1))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5))
        painter.end()

    # -- going somewhere -------------------------------------------------------------------------
    def scene_point(self, pos: QPointF) -> QPointF:
        inverse, _ok = self._to_map().inverted()
        return inverse.map(pos)

    @guarded
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._go(event.position())
        event.accept()

    @guarded
    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._go(event.position())
        event.accept()

    def _go(self, pos: QPointF) -> None:
        self.canvas.centerOn(self.scene_point(pos))
        self.canvas._auto = False  # the user's view now: a resize keeps it

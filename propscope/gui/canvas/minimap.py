"""The minimap: the whole graph in a corner of the canvas, the part in view outlined; click or drag to go there.

The graph is drawn once into a pixmap by the scene's own overview item (one path for the edges, one
`drawRects` per kind), so a 20,000-node graph costs its drawing only when the scene changes, the
minimap is resized, or the steps have settled (a short timer after the last one); a pan or zoom
repaints only the pixmap and two rectangles. It hides while the whole graph is in view.

It stays small beside what the user looks at: its size follows the canvas (at most a fifth of its width
and of its height, so a 1024x768 window keeps most of its canvas), it hides when the canvas is too small
for a readable map, and it takes the other bottom corner when that one hides far fewer nodes, never the
step's node or the selected one when the other corner leaves them free.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPointF, QRect, QRectF, Qt, QTimer
from PySide6.QtGui import QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QApplication, QStyleOptionGraphicsItem, QWidget

from ..guard import guarded
from .view import GraphView

SETTLE_MS = 250  # after the last step, the pixmap is drawn again with what has run
SHARE = 0.2  # of the canvas's width and of its height, the most the map takes
LONGEST, TALLEST = 200, 140  # its largest size in pixels (scaled by the theme)
SMALLEST = 72, 36  # the least room worth a map (scaled by the theme): a smaller canvas shows none
THINNEST = 20  # its shortest side, for a long thin graph


class Minimap(QWidget):
    def __init__(self, canvas: GraphView) -> None:
        # A child of the viewport, not of the canvas: placed and mapped in the viewport's coordinates, which start
        # below the breadcrumbs' band (`GraphView.set_top_band`). A scroll moves the viewport's children with its
        # pixels; `follow` puts it back in its corner on the same scroll (`viewChanged`), before any paint.
        super().__init__(canvas.viewport())
        self.setObjectName("minimap")
        self.canvas = canvas
        self.wanted = True  # the user's choice (View ▸ Minimap); shown only when the graph overflows the view
        self._pixmap: QPixmap | None = None
        self._drawn_for: object = None  # the scene the pixmap shows
        self._corner = "right"  # or "left": the bottom corner it sits in
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(SETTLE_MS)
        self._redraw.timeout.connect(self.invalidate)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("The whole graph: click or drag to go there")
        canvas.viewChanged.connect(self.follow)
        canvas.bridge.cursorMoved.connect(self._stepped)
        canvas.selection.changed.connect(self.follow)  # the selected node may now lie under it
        self.hide()

    # -- where it sits, when it shows ------------------------------------------------------------
    def _stepped(self, _cursor: int) -> None:
        self._redraw.start()
        self.follow()  # the step's node may now lie under it (the view moves only when the node leaves it)

    def follow(self) -> None:
        """Place it in a bottom corner of the canvas; show it only when part of the graph is out of view and the
        canvas has room for it."""
        scene = self.canvas._scene
        if scene is None:
            return
        if scene is not self._drawn_for:
            self._pixmap = None
        view = self.canvas.visible_scene_rect()
        overflow = not view.contains(scene.graph_rect)
        if not (self.wanted and overflow and self._place(scene.graph_rect)):
            self.hide()
            return
        self.show()
        self.raise_()
        self.update()

    def set_wanted(self, on: bool) -> None:
        self.wanted = on
        self.follow()

    def _place(self, graph: QRectF) -> bool:
        """Size it for the canvas and put it in a bottom corner; False when the canvas is too small for a map.

        It moves to the other corner when that one leaves free the step's node or the selected one, which this one
        hides, or hides less than half as much of the other nodes; not while a drag pans the view (nodes passing
        under it would make it hop) and not for a little gain either way.
        """
        vp = self.canvas.viewport().rect()
        size = map_size(vp.width(), vp.height(), graph.width() / max(graph.height(), 1.0),
                        self.canvas.themes.theme.px)
        if size is None:
            return False
        w, h = size
        if self.width() != w or self.height() != h:
            self.resize(w, h)
            self._pixmap = None
        margin = self.canvas.themes.theme.px(10)
        top = vp.bottom() - h - margin
        spots = {"right": QRect(vp.right() - w - margin, top, w, h), "left": QRect(vp.left() + margin, top, w, h)}
        if not QApplication.mouseButtons() & Qt.MouseButton.LeftButton:  # a drag keeps it where it is
            there = "left" if self._corner == "right" else "right"
            if _hides_less(self._hidden(spots[there]), self._hidden(spots[self._corner])):
                self._corner = there
        self.move(spots[self._corner].topLeft())
        return True

    def _hidden(self, spot: QRect) -> tuple[float, float]:
        """How much of the step's and the selected node, then of all nodes, the map would hide at `spot`."""
        scene = self.canvas.graph_scene
        area = self.canvas.mapToScene(spot).boundingRect()
        looked_at = sum(_area(scene.node_rect(k).intersected(area)) for k in (scene.current_key, scene.selected)
                        if k is not None and k in scene.centers)
        return looked_at, scene.node_area_in(area)

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


def map_size(width: int, height: int, aspect: float, px: Callable[[float], int]) -> tuple[int, int] | None:
    """The map's size on a `width` x `height` canvas for a graph `aspect` times wider than tall: the graph's
    shape within a fifth of the canvas each way (and `LONGEST` x `TALLEST`); None when that leaves less
    than `SMALLEST`, too small to read or to aim a click at."""
    most_w = min(px(LONGEST), int(width * SHARE))
    most_h = min(px(TALLEST), int(height * SHARE))
    if most_w < px(SMALLEST[0]) or most_h < px(SMALLEST[1]):
        return None
    w, h = float(most_w), most_w / max(aspect, 1e-9)
    if h > most_h:
        w, h = most_h * aspect, float(most_h)
    thin = px(THINNEST)
    return max(thin, min(most_w, round(w))), max(thin, min(most_h, round(h)))


def _hides_less(there: tuple[float, float], here: tuple[float, float]) -> bool:
    """Whether a corner hiding `there` (of the nodes looked at, of all nodes) beats one hiding `here`."""
    if there[0] != here[0]:
        return there[0] < here[0]
    return there[1] < 0.5 * here[1]


def _area(r: QRectF) -> float:
    return max(0.0, r.width()) * max(0.0, r.height())

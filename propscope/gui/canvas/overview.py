"""The whole graph drawn by one item, for zooms where labels cannot be read.

Thousands of separate items would cost one Python paint call each per frame; here a frame is a
handful of batched calls (one path for all edges, one `drawRects` per look), so a 5,000-node
graph pans smoothly when fitted to the view. Rectangles live in NumPy arrays laid out as Qt's own
`QRectF` arrays, handed to Qt by address, and the edges' path is read from an array in one go
(`polylines`): no Python object per node or edge, neither when the scene is planned nor at each paint.

Nodes whose forward step has not run yet are drawn pale. Each kind's rectangles are kept sorted
by that step, so the pale ones are a tail of the list found by bisection: a step costs no
regrouping of the whole graph, only the paint.

Coloured by a number (`colour_by`), the rectangles are grouped by colour instead (one `drawRects` per colour of
the ramp, regrouped at the first paint after the colours changed, not at each step); a node without a number is
drawn pale in its kind's colour, and a NaN or inf is marked at least a few pixels wide at any zoom.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping

import numpy as np
import shiboken6
from PySide6.QtCore import QByteArray, QDataStream, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from ...debugger.node_numbers import NEVER, NO_NUMBER
from ..guard import guarded
from ..theme import Theme
from .items import lod_of


def draw_rects(painter: QPainter, rects: np.ndarray) -> None:
    """Fill (n, 4) C-contiguous float64 rows (x, y, width, height): one Qt call, no QRectF made."""
    if len(rects):
        painter.drawRects(shiboken6.wrapInstance(rects.ctypes.data, QRectF), len(rects))


_ELEMENT = np.dtype([("type", ">i4"), ("x", ">f8"), ("y", ">f8")])  # QPainterPath's serialised element


def polylines(points: np.ndarray, first: np.ndarray) -> QPainterPath:
    """One path of polylines, the k-th through `points[first[k]:first[k + 1]]`: the path that `moveTo`
    and `lineTo` calls would make (element for element), read from Qt's serialised form in one call
    instead of 40,000 calls for 20,000 edges."""
    n = len(points)
    if not n:
        return QPainterPath()
    data = np.empty(1, dtype=[("count", ">i4"), ("elements", _ELEMENT, (n,)), ("start", ">i4"), ("fill", ">i4")])
    data["count"] = n
    elements = data["elements"][0]
    elements["type"] = QPainterPath.ElementType.LineToElement.value
    elements["type"][first] = QPainterPath.ElementType.MoveToElement.value
    elements["x"], elements["y"] = points[:, 0], points[:, 1]
    data["start"] = first[-1]  # where the last subpath starts
    data["fill"] = Qt.FillRule.OddEvenFill.value
    path = QPainterPath()
    QDataStream(QByteArray(data.tobytes())) >> path
    return path


def rect_array(rows: np.ndarray) -> np.ndarray:
    """Rows as the contiguous float64 array `draw_rects` reads."""
    return np.ascontiguousarray(rows, dtype=np.float64).reshape(-1, 4)


class OverviewItem(QGraphicsItem):
    """The whole graph in one item.

    `by_kind[kind] = (steps, rects)`: the forward step at which each node of that kind gets its value
    (-1: it has one from the start), ascending, and the nodes' rectangles in that order, (n, 4) rows.
    `edges` the edges' points, (m, 2) rows, edge k starting at row `first[k]`; `frames` the open module
    frames, (k, 4) rows;
    `centers` the node centres (breakpoints and the step's node are marked there).
    """

    def __init__(self, by_kind: dict[str, tuple[list[int], np.ndarray]], edges: np.ndarray, first: np.ndarray,
                 centers: Mapping[str, QPointF], theme: Theme, frames: np.ndarray | None = None) -> None:
        super().__init__()
        self.theme = theme
        self.frames = rect_array(np.zeros((0, 4)) if frames is None else frames)  # open module frames, outlined
        self.edges = polylines(edges, first)
        self.centers = centers
        self.steps_run = 0  # keys whose step is at or after this one are pending (drawn pale)
        self.current: str | None = None
        self.breakpoints: set[str] = set()
        self._by_kind = {kind: (steps, rect_array(rects)) for kind, (steps, rects) in by_kind.items()}
        self._bounds = _bounds([r for _, r in self._by_kind.values()], self.frames, edges)
        self.setZValue(0)
        # colouring by a number: every row's rectangle and kind (`set_rows`), its colour code and the colours
        self._rows = np.zeros((0, 4))
        self._row_kinds: tuple[np.ndarray, list[str]] = (np.zeros(0, dtype=np.int64), [])
        self._codes: np.ndarray | None = None
        self._palette: list[QColor] = []
        self._bad = -1  # the code of NaN/inf, marked larger
        self._groups: list[tuple[QColor, np.ndarray]] | None = None  # made at the first paint after a change
        self._bad_centers = np.zeros((0, 2))

    def set_rows(self, rects: np.ndarray, kind_codes: np.ndarray, kinds: list[str]) -> None:
        """Each drawn row's rectangle and kind (`kinds[kind_codes[row]]`), in the scene's row order."""
        self._rows = rect_array(rects)
        self._row_kinds = (kind_codes, kinds)

    def set_colours(self, codes: np.ndarray | None, palette: list[QColor], bad: int = -1) -> None:
        """Colour row k by `palette[codes[k]]` (a code below 0: no number, drawn pale by kind; `bad`: NaN/inf);
        None: by kind, as without colouring."""
        if codes is None and self._codes is None:
            return
        if codes is not None and self._codes is not None and np.array_equal(codes, self._codes) and \
                palette == self._palette:
            return
        self._codes, self._palette, self._bad = (None if codes is None else codes.copy()), list(palette), bad
        self._groups = None
        self.update()

    def _colour_groups(self) -> list[tuple[QColor, np.ndarray]]:
        """(colour, rectangles) per colour present: the rows without a number pale by kind, then the ramp's."""
        if self._groups is None:
            codes = self._codes
            assert codes is not None
            kind_codes, kinds = self._row_kinds
            groups: list[tuple[QColor, np.ndarray]] = []
            for wanting, alpha in ((codes == NO_NUMBER, 0.35), (codes == NEVER, 1.0)):  # pale: a number to come
                none = np.flatnonzero(wanting)
                for k, kind in enumerate(kinds):
                    rows = none[kind_codes[none] == k]
                    if len(rows):
                        color = self.theme.color(f"{kind}.accent")
                        color.setAlphaF(alpha)
                        groups.append((color, rect_array(self._rows[rows])))
            coded = np.flatnonzero(codes >= 0)
            order = coded[np.argsort(codes[coded], kind="stable")]
            sorted_codes = codes[order]
            starts = np.flatnonzero(np.diff(sorted_codes, prepend=-2)).tolist()  # where each code's run begins
            for a, b in zip(starts, [*starts[1:], len(order)][:len(starts)], strict=True):
                groups.append((self._palette[int(sorted_codes[a])], rect_array(self._rows[order[a:b]])))
            bad = self._rows[codes == self._bad]
            self._bad_centers = bad[:, :2] + bad[:, 2:] / 2
            self._groups = groups
        return self._groups

    def _paint_colours(self, painter: QPainter, lod: float) -> None:
        for color, rects in self._colour_groups():
            painter.setBrush(color)
            draw_rects(painter, rects)
        if len(self._bad_centers):  # NaN/inf: never smaller than 7 pixels, however far out the zoom
            half = 3.5 * self.theme.scale / max(lod, 1e-6)
            row_w, row_h = (self._rows[0, 2], self._rows[0, 3]) if len(self._rows) else (0.0, 0.0)
            w, h = max(row_w / 2, half), max(row_h / 2, half)
            marks = np.empty((len(self._bad_centers), 4))
            marks[:, 0], marks[:, 1] = self._bad_centers[:, 0] - w, self._bad_centers[:, 1] - h
            marks[:, 2], marks[:, 3] = 2 * w, 2 * h
            painter.setBrush(self._palette[self._bad])
            draw_rects(painter, marks)

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
        if len(self.frames):
            painter.setPen(QPen(t.color("module.accent"), 0))
            painter.setBrush(t.color("module.fill"))
            draw_rects(painter, self.frames)
        edge_pen = QPen(t.color("edge"), 0)  # cosmetic: one pixel at any zoom
        painter.setPen(edge_pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self.edges)
        painter.setPen(Qt.PenStyle.NoPen)
        for kind, (steps, rects) in self._by_kind.items() if self._codes is None else ():
            split = bisect_left(steps, self.steps_run)  # from here on: not computed yet
            color = t.color(f"{kind}.accent")
            if split:
                painter.setBrush(color)
                draw_rects(painter, rects[:split])
            if split < len(rects):
                color.setAlphaF(0.35)
                painter.setBrush(color)
                draw_rects(painter, rects[split:])
        if self._codes is not None:
            self._paint_colours(painter, lod)
        px = 1.0 / max(lod, 1e-6)  # one screen pixel in scene units
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(t.color("breakpoint"))
        for name in self.breakpoints:
            if name in self.centers:
                painter.drawEllipse(self.centers[name], 4 * px, 4 * px)
        if self.current is not None and self.current in self.centers:
            c = self.centers[self.current]
            painter.setBrush(Qt.BrushStyle.NoBrush)
            pen = QPen(t.color("highlight"), 4 * t.scale)
            pen.setCapStyle(Qt.PenCapStyle.RoundCap)
            pen.setCosmetic(True)  # as thick at any zoom
            painter.setPen(pen)
            painter.drawEllipse(c, 14 * px * t.scale, 14 * px * t.scale)


def _bounds(rect_sets: list[np.ndarray], frames: np.ndarray, points: np.ndarray) -> QRectF:
    """What every rectangle and point covers, 50 units more on each side."""
    lows, highs = [], []
    for rects in [*rect_sets, frames]:
        if len(rects):
            lows.append(rects[:, :2].min(axis=0))
            highs.append((rects[:, :2] + rects[:, 2:]).max(axis=0))
    if len(points):
        lows.append(points.min(axis=0))
        highs.append(points.max(axis=0))
    if not lows:
        return QRectF(-50, -50, 100, 100)
    (left, top), (right, bottom) = np.min(lows, axis=0).tolist(), np.max(highs, axis=0).tolist()
    return QRectF(left, top, right - left, bottom - top).adjusted(-50, -50, 50, 50)

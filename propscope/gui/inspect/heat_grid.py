"""A grid of titled heatmaps painted by hand: feature maps, filters, gates over time, attention.

pyqtgraph would give each map a plot with axes it does not need; here one widget paints every tile
with the theme's fonts, so projector mode only changes the sizes. Cells are square, as large as
the widget allows, drawn without smoothing; when a cell is big enough its number is written in it,
and row and column labels (tokens, time steps) are written when they fit.

A tile's title is written whole or not at all: at the title size, else its short form, else smaller, down
to `SMALLEST_TITLE` pixels; when one does not fit even then, the grid writes none (elided, a grid of 3×3
filters at 1024×768 read "0…" in every tile; a title here and there reads as a pattern that is not there).
The tooltip over any tile says its title and the number under the mouse.

Tiles may come in groups (`HeatGrid.group`: the depth taps of one 3-D filter, or the input slices one window reads):
a row then holds whole groups, and the tiles of a group sit closer to each other than to the next group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QHelpEvent, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from ..colormap import diverging_rgba
from ..format import fmt_num, symmetric_range
from ..guard import guarded, guarded_answer
from ..theme import LIGHT, Theme

Mark = tuple[int, int, int, int]  # (row0, col0, row1, col1), ends exclusive, in cells
TITLE_SIZE, SMALLEST_TITLE = 11, 8  # pixels (scaled by the theme): 8 px bold still reads "12←31"
MIN_CELL = 0.25  # pixels per value at the least: a 640×640 map in 160 pixels


@dataclass
class Tile:
    matrix: np.ndarray  # 2-D; NaN cells are "not known yet" and drawn hatched
    title: str = ""
    vmax: float | None = None  # colour range ±vmax; None: the tile's own symmetric range
    row_labels: list[str] | None = None
    col_labels: list[str] | None = None
    marks: list[Mark] = field(default_factory=list)  # outlined in the highlight colour
    outlined: bool = False  # the whole tile outlined (the filter of the selected output channel)
    numbers: bool = False  # write each cell's number when it fits
    short: str = ""  # the title when the full one does not fit the tile

    @property
    def range(self) -> float:
        return self.vmax if self.vmax is not None else symmetric_range(_finite(self.matrix))


def _cell_text(v: float) -> str:
    """Two decimals for the usual small numbers (weights, probabilities), else two significant digits."""
    if not np.isfinite(v):
        return ""
    if v == 0:
        return "0"
    return f"{v:.2f}".replace("-", "−") if 0.005 <= abs(v) < 10 else fmt_num(v, 2)


def _finite(m: np.ndarray) -> np.ndarray:
    return m[np.isfinite(m)] if m.size else m


@dataclass
class _Placed:
    tile: Tile
    title: QRectF
    cells: QRectF  # the matrix area
    cell: float
    gap_after: float = 0.0  # the space to the next tile in the row (narrower within a group)
    shown_title: str = ""  # the title as written (whole, or its short form), "" when they do not all fit


class HeatGrid(QWidget):
    cellClicked = Signal(int, int, int)  # tile, row, column

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tiles: list[Tile] = []
        self.group = 1  # tiles per group: a row holds whole groups (`set_tiles`)
        self.theme: Theme = LIGHT
        # the smallest cell, in pixels: below it tiles would be cut off at the widget's edge. A small dock at
        # 1024×768 shares its height between three grids (a 32×32 input, 32 filters, 16 maps), and with 3 pixels
        # the input's lower rows and the third row of filters were cut off, data hidden without a sign; and with
        # 1 pixel a detector's 160×160 maps (YOLO at 640) showed two and a half of sixteen in the dock's width.
        # Below a pixel a map is drawn scaled down, every map whole
        self.min_cell = MIN_CELL
        self.max_cell = 64.0
        self.placed: list[_Placed] = []
        self._images: list[QImage] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(False)
        self._fonts()

    # -- content ---------------------------------------------------------------------------
    def set_tiles(self, tiles: list[Tile], group: int = 1) -> None:
        self.tiles = tiles
        self.group = max(1, group)
        self._images = [self._image(t) for t in tiles]
        self._place()
        self.updateGeometry()
        self.update()

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._fonts()
        self._place()
        self.update()

    def _fonts(self) -> None:
        t = self.theme
        self.title_font: QFont = t.font(TITLE_SIZE, bold=True)
        self.label_font: QFont = t.font(10)
        self.number_font: QFont = t.font(9.5)
        self.title_fm = QFontMetricsF(self.title_font)
        self.label_fm = QFontMetricsF(self.label_font)
        self.number_fm = QFontMetricsF(self.number_font)
        self.fitted_title_font: QFont = self.title_font  # the font the titles fit in (`_fit_titles`)
        self.max_cell = 64.0 * t.scale
        self.gap = 10.0 * t.scale

    @staticmethod
    def _image(tile: Tile) -> QImage:
        m = np.asarray(tile.matrix, dtype=np.float64)
        if m.size == 0:
            return QImage()
        rgba = diverging_rgba(np.where(np.isnan(m), 0.0, m), tile.range)
        rgba[np.isnan(m)] = (225, 225, 225, 255)
        rgba = np.ascontiguousarray(rgba)
        h, w = rgba.shape[:2]
        return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()

    # -- geometry ------------------------------------------------------------------------
    def _label_room(self) -> tuple[float, float]:
        """Width of the row labels, height of the column labels (the widest any tile needs)."""
        lw = max((max(self.label_fm.horizontalAdvance(s) for s in t.row_labels) + 6
                  for t in self.tiles if t.row_labels), default=0.0)
        lh = self.label_fm.height() + 2 if any(t.col_labels for t in self.tiles) else 0.0
        return lw, lh

    @property
    def inner_gap(self) -> float:
        """The space between the tiles of one group."""
        return self.gap if self.group <= 1 else self.gap * 0.3

    def _row_counts(self) -> list[int]:
        """How many tiles a row may hold: any number, or whole groups where there is more than one group."""
        n, g = len(self.tiles), self.group
        if g <= 1 or n <= g:
            return list(range(1, n + 1))
        return list(range(g, n + 1, g)) + ([n] if n % g else [])

    def _spacing(self, k: int) -> float:
        """The gaps in a row of `k` tiles."""
        between_groups = (k - 1) // self.group if self.group > 1 else k - 1
        return between_groups * self.gap + (k - 1 - between_groups) * self.inner_gap

    def _place(self) -> None:
        """Choose how many tiles per row so that the cells come out as large as possible."""
        self.placed = []
        n = len(self.tiles)
        if not n:
            return
        rows = max(t.matrix.shape[0] for t in self.tiles)
        cols = max(t.matrix.shape[1] for t in self.tiles)
        lw, lh = self._label_room()
        th = self.title_fm.height() + 4 if any(t.title for t in self.tiles) else 0.0
        width, height = max(self.width() - 2, 50), max(self.height() - 2, 50)  # room for the outline
        best, best_k = -1.0, 1
        for k in self._row_counts():
            m = math.ceil(n / k)
            cw = (width - self._spacing(k) - k * lw) / (k * cols)
            ch = (height - (m - 1) * self.gap - m * (th + lh)) / (m * rows)
            cell = min(cw, ch, self.max_cell)
            if cell > best + 1e-9:
                best, best_k = cell, k
        cell = max(best, self.min_cell)
        tile_w, tile_h = lw + cols * cell, th + lh + rows * cell
        for i, tile in enumerate(self.tiles):
            r, c = divmod(i, best_k)
            x, y = c * tile_w + self._spacing(c + 1), r * (tile_h + self.gap)
            tr, tc = tile.matrix.shape
            self.placed.append(_Placed(tile, QRectF(x, y, tile_w, th),
                                       QRectF(x + lw, y + th + lh, tc * cell, tr * cell), cell,
                                       self._spacing(c + 2) - self._spacing(c + 1)))
        self._fit_titles(width)

    def title_room(self, placed: _Placed, width: float) -> float:
        """The width a tile's title may take: its tile's and part of the gap after it (a space left before the
        next title), not beyond the widget."""
        return min(placed.title.width() + placed.gap_after * 0.6, width - placed.title.left())

    def _fit_titles(self, width: float) -> None:
        """One title font for the grid, the largest that writes every title whole (or its short form), down to
        `SMALLEST_TITLE`; when one does not fit even then, no title is written (the tooltips have them)."""
        self.fitted_title_font, fm = self.title_font, self.title_fm
        titled = [(placed, self.title_room(placed, width)) for placed in self.placed if placed.tile.title]
        if not titled:
            return

        def fitting(fm: QFontMetricsF, tile: Tile, room: float) -> str:
            for option in (tile.title, tile.short):
                if option and fm.horizontalAdvance(option) <= room:
                    return option
            return ""

        size = TITLE_SIZE
        while not all(fitting(fm, placed.tile, room) for placed, room in titled) and size > SMALLEST_TITLE:
            size -= 1  # whole pixels: the theme's fonts are sized in pixels
            font = self.theme.font(size, bold=True)
            self.fitted_title_font, fm = font, QFontMetricsF(font)
        labels = [fitting(fm, placed.tile, room) for placed, room in titled]
        if all(labels):
            for (placed, _room), label in zip(titled, labels, strict=True):
                placed.shown_title = label

    def height_at(self, width: float, cell: float) -> float:
        """The height these tiles need for cells of `cell` pixels in `width` (the best arrangement)."""
        n = len(self.tiles)
        if not n:
            return 0.0
        rows = max(t.matrix.shape[0] for t in self.tiles)
        cols = max(t.matrix.shape[1] for t in self.tiles)
        lw, lh = self._label_room()
        th = self.title_fm.height() + 4 if any(t.title for t in self.tiles) else 0.0
        need = math.inf
        for k in self._row_counts():
            if k * (lw + cols * cell) + self._spacing(k) <= width or k == self._row_counts()[0]:
                m = math.ceil(n / k)
                need = min(need, m * (th + lh + rows * cell) + (m - 1) * self.gap)
        return need

    @guarded
    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._place()

    @guarded_answer(QSize())
    def minimumSizeHint(self) -> QSize:
        return QSize(80, 40)

    @guarded_answer(QSize())
    def sizeHint(self) -> QSize:
        return QSize(80, 40)  # small on purpose: the layer view shares the height by stretch factors

    # -- painting ------------------------------------------------------------------------
    @guarded
    def paintEvent(self, event: QPaintEvent) -> None:
        t = self.theme
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        text = t.color("text")
        for placed, image in zip(self.placed, self._images, strict=True):
            tile, area, cell = placed.tile, placed.cells, placed.cell
            if placed.shown_title:
                p.setFont(self.fitted_title_font)
                p.setPen(text)
                room = placed.title.adjusted(0, 0, self.gap, 0)  # fitted to `title_room`, which reaches into the gap
                p.drawText(room, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, placed.shown_title)
            if image.isNull():
                continue
            p.drawImage(area, image)
            rows, cols = tile.matrix.shape
            if cell >= 9:  # thin lines between cells, so a cell can be counted
                p.setPen(QPen(t.color("background"), 1))
                for r in range(1, rows):
                    y = area.top() + r * cell
                    p.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
                for c in range(1, cols):
                    x = area.left() + c * cell
                    p.drawLine(QPointF(x, area.top()), QPointF(x, area.bottom()))
            if tile.numbers:
                self._paint_numbers(p, tile, area, cell)
            self._paint_labels(p, tile, area, cell, text)
            p.setPen(QPen(t.color("muted"), 1))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(area)
            width = min(t.pen_width(2.2), max(1.5, cell * 0.25))
            hl = QPen(t.color("highlight"), width)
            hl.setJoinStyle(Qt.PenJoinStyle.MiterJoin)
            p.setPen(hl)
            for r0, c0, r1, c1 in tile.marks:
                r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, rows), min(c1, cols)
                if r1 > r0 and c1 > c0:
                    p.drawRect(QRectF(area.left() + c0 * cell, area.top() + r0 * cell, (c1 - c0) * cell,
                                      (r1 - r0) * cell))
            if tile.outlined:  # just outside the cells, clear of the title
                m = width / 2 + 1
                p.drawRect(area.adjusted(-m, -m, m, m))
        p.end()

    def _paint_numbers(self, p: QPainter, tile: Tile, area: QRectF, cell: float) -> None:
        m = tile.matrix
        texts = [[_cell_text(v) for v in row] for row in m]
        widest = max((self.number_fm.horizontalAdvance(s) for row in texts for s in row), default=0.0)
        if widest > cell - 3 or self.number_fm.height() > cell:
            return
        p.setFont(self.number_font)
        rgba = diverging_rgba(np.where(np.isfinite(m), m, 0.0), tile.range)
        for r, row in enumerate(texts):
            for c, s in enumerate(row):
                if not s:
                    continue
                red, green, blue = (int(v) for v in rgba[r, c, :3])
                dark = 0.299 * red + 0.587 * green + 0.114 * blue < 140
                p.setPen(QColor("white") if dark else QColor("black"))
                p.drawText(QRectF(area.left() + c * cell, area.top() + r * cell, cell, cell),
                           Qt.AlignmentFlag.AlignCenter, s)

    def _paint_labels(self, p: QPainter, tile: Tile, area: QRectF, cell: float, color: QColor) -> None:
        p.setFont(self.label_font)
        p.setPen(color)
        h = self.label_fm.height()
        if tile.row_labels:
            step = max(1, math.ceil(h / cell))
            for r in range(0, len(tile.row_labels), step):
                p.drawText(QRectF(area.left() - 400, area.top() + r * cell, 400 - 4, cell),
                           Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, tile.row_labels[r])
        if tile.col_labels:
            widest = max(self.label_fm.horizontalAdvance(s) for s in tile.col_labels) + 4
            step = max(1, math.ceil(widest / cell))
            for c in range(0, len(tile.col_labels), step):
                box = QRectF(area.left() + c * cell + cell / 2 - widest / 2, area.top() - h - 1, widest, h)
                p.drawText(box, Qt.AlignmentFlag.AlignCenter, tile.col_labels[c])

    # -- clicks and tooltips ------------------------------------------------------------------
    def tile_at(self, pos: QPointF) -> int | None:
        """The tile whose title or cells lie under `pos`."""
        for i, placed in enumerate(self.placed):
            if placed.cells.contains(pos) or placed.title.contains(pos):
                return i
        return None

    def tooltip_at(self, pos: QPointF) -> str:
        """The tile's whole title, and the number under the mouse with its row and column."""
        i = self.tile_at(pos)
        if i is None:
            return ""
        tile = self.placed[i].tile
        hit = self.cell_at(pos)
        if hit is None:
            return tile.title
        _, r, c = hit
        row = tile.row_labels[r] if tile.row_labels else str(r)
        col = tile.col_labels[c] if tile.col_labels else str(c)
        v = float(tile.matrix[r, c])
        return f"{tile.title}\n[{row}, {col}] = {fmt_num(v) if np.isfinite(v) else 'not known yet'}"

    @guarded_answer(False)
    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            text = self.tooltip_at(QPointF(event.pos()))
            if text:
                QToolTip.showText(event.globalPos(), text, self)
            else:
                QToolTip.hideText()
            return True
        return super().event(event)

    def cell_at(self, pos: QPointF) -> tuple[int, int, int] | None:
        for i, placed in enumerate(self.placed):
            a = placed.cells
            if a.contains(pos):
                r = int((pos.y() - a.top()) // placed.cell)
                c = int((pos.x() - a.left()) // placed.cell)
                rows, cols = placed.tile.matrix.shape
                if 0 <= r < rows and 0 <= c < cols:
                    return i, r, c
        return None

    def cell_center(self, tile: int, row: int, col: int) -> QPointF:
        """Where a cell is on screen (tests click there)."""
        placed = self.placed[tile]
        return QPointF(placed.cells.left() + (col + 0.5) * placed.cell, placed.cells.top() + (row + 0.5) * placed.cell)

    @guarded
    def mousePressEvent(self, event: QMouseEvent) -> None:
        hit = self.cell_at(event.position())
        if hit is not None and event.button() == Qt.MouseButton.LeftButton:
            self.cellClicked.emit(*hit)
            event.accept()
            return
        super().mousePressEvent(event)

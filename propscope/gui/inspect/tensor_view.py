"""One tensor shown three ways: numbers, a heatmap centred at zero, a histogram; plus its summary line.

Only the visible tab is drawn; the others are marked stale and drawn when shown. The heatmap and
histogram plots (pyqtgraph, slow to import) are made the first time one of them is needed. Clicking a
number or a heatmap cell emits the element's index, which the window turns into the shared selection.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHeaderView,
    QLabel,
    QStackedWidget,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..colormap import diverging_rgba, lut
from ..format import (
    Index,
    as_matrix,
    cell_index,
    fmt_index,
    fmt_num,
    histogram,
    matrix_cell,
    stats,
    symmetric_range,
)
from ..guard import guarded, guarded_answer
from ..plot_style import BuiltOnFirstUse
from ..theme import Theme

TAB_LABELS = ("Numbers", "Heatmap", "Histogram")
SHORT_TAB_LABELS = ("Numbers", "Map", "Hist.")  # where big type leaves no room for the long ones
MAX_ROWS, MAX_COLS = 256, 64  # the table shows at most this much; the heatmap shows everything
AnyIndex = QModelIndex | QPersistentModelIndex
RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


class TensorTableModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.matrix = np.zeros((0, 0))
        self.shape: tuple[int, ...] = ()
        self.tint = np.zeros((0, 0, 4), dtype=np.uint8)
        self.text = QColor("black")
        self.alpha = 110
        self.labels: list[str] | None = None  # the columns' own names (a sampled gradient check's entries)

    def set_theme(self, text: QColor, dark: bool) -> None:
        """Cells are tinted by value over the base colour; text keeps the theme's contrast."""
        self.beginResetModel()
        self.text, self.alpha = text, 80 if dark else 110
        self.endResetModel()

    def set_array(self, value: Any, labels: list[str] | None = None) -> None:
        self.beginResetModel()
        self.labels = labels
        a = np.asarray(value)
        self.shape = a.shape
        m = as_matrix(a)
        self.matrix = m[:MAX_ROWS, :MAX_COLS]
        self.tint = diverging_rgba(self.matrix, symmetric_range(m))
        self.endResetModel()

    @guarded_answer(0)
    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self.matrix.shape[0]

    @guarded_answer(0)
    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self.matrix.shape[1]

    @guarded_answer(None)
    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r, c = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return fmt_num(self.matrix[r, c])
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{fmt_index(cell_index(r, c, self.shape)) or 'value'} = {float(self.matrix[r, c])!r}"
        if role == Qt.ItemDataRole.BackgroundRole:
            rgb = self.tint[r, c]
            return QColor(int(rgb[0]), int(rgb[1]), int(rgb[2]), self.alpha)
        if role == Qt.ItemDataRole.ForegroundRole:
            return self.text
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return RIGHT
        return None

    @guarded_answer(None)
    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal and self.labels is not None and section < len(self.labels):
            return self.labels[section]
        if orientation == Qt.Orientation.Horizontal or len(self.shape) <= 2:
            return str(section)
        return ",".join(str(i) for i in np.unravel_index(section, self.shape[:-1]))


def _clickable_image(**kwargs: Any) -> Any:
    """A heatmap image that says which cell was clicked (its class made with pyqtgraph's import)."""
    import pyqtgraph as pg

    global _ClickableImage
    if _ClickableImage is None:

        class ClickableImage(pg.ImageItem):
            clicked = Signal(int, int)  # row, column

            @guarded  # called by pyqtgraph's scene from its override of Qt's mouseReleaseEvent
            def mouseClickEvent(self, ev: Any) -> None:
                pos = ev.pos()
                self.clicked.emit(int(pos.y()), int(pos.x()))
                ev.accept()

        _ClickableImage = ClickableImage
    return _ClickableImage(**kwargs)


_ClickableImage: Any = None


class TensorPanel(BuiltOnFirstUse, QWidget):
    """A titled tensor view; `array` is what it shows (None: not known yet at the cursor)."""

    lazy_parts = frozenset({"heat", "image", "marker", "hist", "bars", "hist_line"})
    build_on_show = False  # the numbers tab shows first; the plots wait for their tabs

    elementClicked = Signal(object)

    NUMBERS, HEATMAP, HISTOGRAM = range(3)

    def __init__(self, title: str, empty_text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.array: np.ndarray | None = None
        self.index: Index | None = None
        self.labels: list[str] | None = None  # a vector's columns by name (`set_array`)
        self._summary = ""  # the array's min, max, mean and std, worked out once per array
        self.empty_text = empty_text
        self._stale = [True, True, True]
        self.title = QLabel(title)
        self.title.setObjectName("tensorTitle")
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.empty = QLabel(empty_text)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.setUsesScrollButtons(False)
        self.tabs.setElideMode(Qt.TextElideMode.ElideRight)
        self.model = TensorTableModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.clicked.connect(self._cell_clicked)
        self._theme: tuple[Theme, QFont] | None = None
        self.plot_pages = [QWidget(), QWidget()]  # the heatmap's and the histogram's tabs, filled when built
        for page in self.plot_pages:
            QVBoxLayout(page).setContentsMargins(0, 0, 0, 0)
        for widget, label in zip((self.table, *self.plot_pages), TAB_LABELS, strict=True):
            self.tabs.addTab(widget, label)
        self.tabs.currentChanged.connect(lambda _i: self._draw_current())
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.tabs)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(2)
        lay.addWidget(self.title)
        lay.addWidget(self.stats)
        lay.addWidget(self.stack, 1)

    def build_plots(self) -> None:
        import pyqtgraph as pg

        self.heat = pg.PlotWidget()
        self.heat.setMenuEnabled(False)
        self.heat.invertY(True)
        self.heat.setAspectLocked(False)
        self.image = _clickable_image(axisOrder="row-major")
        self.image.setLookupTable(lut())
        self.image.clicked.connect(self._image_clicked)
        self.heat.addItem(self.image)
        self.marker = pg.QtWidgets.QGraphicsRectItem(0, 0, 1, 1)
        self.marker.setZValue(10)
        self.heat.addItem(self.marker)
        self.hist = pg.PlotWidget()
        self.hist.setMenuEnabled(False)
        self.bars = pg.BarGraphItem(x0=[0], x1=[1], height=[0])
        self.hist.addItem(self.bars)
        self.hist_line = pg.InfiniteLine(angle=90, movable=False)
        self.hist.addItem(self.hist_line)
        for page, plot in zip(self.plot_pages, (self.heat, self.hist), strict=True):
            lay = page.layout()
            assert lay is not None  # made with the page
            lay.addWidget(plot)
        if self._theme is not None:
            self.apply_theme(*self._theme)

    # -- content ---------------------------------------------------------------------------
    def set_array(self, value: Any, index: Index | None, labels: list[str] | None = None) -> None:
        """Show `value` with element `index` marked; `labels` name a vector's entries (where they are not 0, 1, ...:
        the entries a gradient check sampled)."""
        if value is self.array and index == self.index and labels == self.labels:
            return
        if value is not self.array or labels != self.labels:
            self.array = None if value is None else np.asarray(value)
            self.labels = labels
            self._stale = [True, True, True]
            self._summary = "" if self.array is None else stats(self.array).text()
        self.index = index
        if self.array is None:
            self.stats.setText("")
            self.stack.setCurrentWidget(self.empty)
            return
        self.stack.setCurrentWidget(self.tabs)
        self.stats.setText(self._element_text() + self._summary)
        self._draw_current()

    def _element_text(self) -> str:
        """"[2, 0] = 0.5 · " for the selected element, first: read without the table (in a short inspector, whose
        rows scroll, or for an element past the table's 256×64); "" where none is selected or it is not in this
        tensor."""
        a, index = self.array, self.index
        if a is None or not index or self.labels is not None or len(index) != a.ndim:
            return ""
        if not all(0 <= i < d for i, d in zip(index, a.shape, strict=True)):
            return ""
        return f"{fmt_index(index)} = {fmt_num(a[tuple(index)])} · "

    def set_title(self, title: str, empty_text: str) -> None:
        self.title.setText(title)
        self.empty.setText(empty_text)

    def _draw_current(self) -> None:
        if self.array is None:
            return
        tab = self.tabs.currentIndex()
        if self._stale[tab]:
            (self._draw_table, self._draw_heatmap, self._draw_histogram)[tab]()
            self._stale[tab] = False
        self._draw_mark(tab)

    def _draw_table(self) -> None:
        assert self.array is not None
        self.model.set_array(self.array, self.labels)

    def _draw_heatmap(self) -> None:
        assert self.array is not None
        m = as_matrix(self.array).astype(np.float64)
        vmax = symmetric_range(m)
        self.image.setImage(np.where(np.isfinite(m), m, 0.0), levels=(-vmax, vmax), autoLevels=False)
        self.heat.setRange(xRange=(0, m.shape[1]), yRange=(0, m.shape[0]), padding=0.02)

    def _draw_histogram(self) -> None:
        assert self.array is not None
        counts, edges = histogram(self.array)
        if counts.size:
            self.bars.setOpts(x0=edges[:-1], x1=edges[1:], height=counts)
        else:
            self.bars.setOpts(x0=[0], x1=[1], height=[0])
        self.hist.autoRange()

    def _draw_mark(self, tab: int) -> None:
        assert self.array is not None
        shape = self.array.shape
        valid = self.index is not None and len(self.index) == len(shape) and all(
            0 <= i < d for i, d in zip(self.index, shape, strict=True))
        r, c = matrix_cell(self.index, shape) if valid and self.index is not None else (-1, -1)
        if tab == self.NUMBERS:
            sel = self.table.selectionModel()
            if r < 0 or r >= self.model.rowCount() or c >= self.model.columnCount():
                sel.clearSelection()
            else:
                idx = self.model.index(r, c)
                if self.table.currentIndex() != idx:
                    self.table.setCurrentIndex(idx)
                self.table.scrollTo(idx)
        elif tab == self.HEATMAP:
            self.marker.setVisible(r >= 0)
            self.marker.setRect(c, r, 1, 1)
        else:
            if r >= 0 and self.index is not None:
                self.hist_line.setValue(float(self.array[self.index]) if shape else float(self.array))
            self.hist_line.setVisible(r >= 0)

    @guarded
    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._fit_tab_labels()

    def _fit_tab_labels(self) -> None:
        fm = QFontMetrics(QApplication.font())
        room = self.width() - 16
        need = sum(fm.horizontalAdvance(t) + fm.averageCharWidth() * 4 for t in TAB_LABELS)
        labels = TAB_LABELS if need <= room else SHORT_TAB_LABELS
        for i, label in enumerate(labels):
            self.tabs.setTabText(i, label)

    # -- clicks ----------------------------------------------------------------------------
    def _cell_clicked(self, idx: QModelIndex) -> None:
        if self.array is not None:
            self.elementClicked.emit(cell_index(idx.row(), idx.column(), self.array.shape))

    def _image_clicked(self, row: int, col: int) -> None:
        if self.array is None:
            return
        m = as_matrix(self.array)
        if 0 <= row < m.shape[0] and 0 <= col < m.shape[1]:
            self.elementClicked.emit(cell_index(row, col, self.array.shape))

    # -- theme -----------------------------------------------------------------------------
    def apply_theme(self, theme: Theme, base: QFont) -> None:
        bg = theme.color("background")
        fg = theme.color("text")
        font = QFont(base)
        font.setPixelSize(theme.px(11))
        bold = QFont(font)
        bold.setBold(True)
        bold.setPixelSize(theme.px(12.5))
        self.title.setFont(bold)
        self.model.set_theme(fg, theme.dark)
        self._fit_tab_labels()
        # Every number is at most 4 significant digits: one fixed column width, never measured per cell.
        fm = QFontMetrics(base)
        self.table.horizontalHeader().setDefaultSectionSize(fm.horizontalAdvance("−0.0009999") + 10)
        self.table.verticalHeader().setDefaultSectionSize(fm.height() + 6)
        self._theme = (theme, base)
        if not self.built:  # the plots take the theme when they are made
            return
        import pyqtgraph as pg

        for plot in (self.heat, self.hist):
            plot.setBackground(bg)
            for name in ("left", "bottom"):
                axis = plot.getAxis(name)
                axis.setTickFont(font)
                axis.setPen(pg.mkPen(fg, width=theme.pen_width(0.8)))
                axis.setTextPen(pg.mkPen(fg))
        accent = theme.color("forward")
        self.bars.setOpts(brush=pg.mkBrush(accent), pen=pg.mkPen(theme.color("background"), width=1))
        self.hist_line.setPen(pg.mkPen(theme.color("highlight"), width=theme.pen_width(2.5)))
        self.marker.setPen(pg.mkPen(theme.color("highlight"), width=theme.pen_width(1.6)))
        self.marker.setBrush(pg.mkBrush(None))

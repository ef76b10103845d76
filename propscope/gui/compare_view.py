"""Compare backends: the current step run on NumPy and on PyTorch, node by node.

The numbers come from `debugger.compare.compare_backends` (run in a job); this dock shows its
summary, a legend of the colours the canvas gives each node, and the worst nodes in a table.
Colours go from green (the two agree to far below the tolerance) through yellow (at the
tolerance) to red (far above it) on a log scale; grey where neither backend has a number yet.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QLinearGradient, QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from ..debugger.compare import Comparison, NodeDiff
from .format import fmt_num
from .theme import ThemeManager

DECADES = 3  # the scale runs from tolerance / 10^3 (green) to tolerance · 10^3 (red)
GREEN, YELLOW, RED = QColor("#2f9e44"), QColor("#f5c400"), QColor("#e03131")
NO_DATA = QColor("#adb5bd")
AnyIndex = QModelIndex | QPersistentModelIndex


def diff_position(d: float, tolerance: float) -> float:
    """Where a difference sits on the legend, 0 (exact) … 0.5 (at the tolerance) … 1 (far off)."""
    if math.isnan(d):
        return math.nan
    if d <= 0:
        return 0.0
    if math.isinf(d):
        return 1.0
    t = (math.log10(d) - math.log10(tolerance) + DECADES) / (2 * DECADES)
    return min(max(t, 0.0), 1.0)


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    return QColor(round(a.red() + (b.red() - a.red()) * t), round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t))


def diff_color(d: float, tolerance: float) -> QColor:
    t = diff_position(d, tolerance)
    if math.isnan(t):
        return QColor(NO_DATA)
    return _mix(GREEN, YELLOW, t * 2) if t <= 0.5 else _mix(YELLOW, RED, (t - 0.5) * 2)


class Legend(QWidget):
    """The colour bar with its decades marked and the tolerance in the middle."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tolerance = 1e-5
        self.text = QColor("black")
        self.setMinimumHeight(36)

    def set_tolerance(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(360, self.fontMetrics().height() * 2 + 18)

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        fm = self.fontMetrics()
        margin = fm.horizontalAdvance("1e-10") / 2 + 2
        bar = QRectF(margin, 2, self.width() - 2 * margin, max(10.0, self.height() - fm.height() - 8))
        grad = QLinearGradient(bar.topLeft(), bar.topRight())
        grad.setColorAt(0.0, GREEN)
        grad.setColorAt(0.5, YELLOW)
        grad.setColorAt(1.0, RED)
        p.fillRect(bar, grad)
        p.setPen(self.text)
        exp = round(math.log10(self.tolerance))
        for k in range(-DECADES, DECADES + 1):
            x = bar.left() + bar.width() * (k + DECADES) / (2 * DECADES)
            p.drawLine(round(x), round(bar.bottom()), round(x), round(bar.bottom() + 3))
            if k % (1 if self.width() > 420 else 2) == 0 or k == 0:
                label = "tolerance" if k == 0 else f"1e{exp + k}"
                w = fm.horizontalAdvance(label)
                p.drawText(QRectF(x - w / 2 - 2, bar.bottom() + 3, w + 4, fm.height()), Qt.AlignmentFlag.AlignCenter,
                           label)
        p.end()


class DiffTableModel(QAbstractTableModel):
    HEADERS = ("node", "op", "Δ value", "Δ gradient")  # the largest |a − b| over the elements

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[NodeDiff] = []
        self.tolerance = 1e-5

    def set_rows(self, rows: list[NodeDiff], tolerance: float) -> None:
        self.beginResetModel()
        self.rows, self.tolerance = rows, tolerance
        self.endResetModel()

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.HEADERS[section]
        return None

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        d = self.rows[index.row()]
        col = index.column()
        value = (d.name, d.op, d.value_diff, d.grad_diff)[col]
        if role == Qt.ItemDataRole.DisplayRole:
            if col < 2:
                return value
            return "—" if np.isnan(value) else fmt_num(value, 3)
        if role == Qt.ItemDataRole.DecorationRole and col == 0:
            return diff_color(d.worst if not (np.isnan(d.value_diff) and np.isnan(d.grad_diff)) else math.nan,
                              self.tolerance)
        if role == Qt.ItemDataRole.TextAlignmentRole and col >= 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole and col >= 2 and not np.isnan(value):
            return repr(float(value))
        return None


class CompareView(QWidget):
    """Summary, legend and the worst nodes of the last comparison; a click selects the node."""

    nodeClicked = Signal(str)
    rerun = Signal()
    cleared = Signal()

    def __init__(self, themes: ThemeManager, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("compareView")
        self.themes = themes
        self.comparison: Comparison | None = None
        self.summary = QLabel("Debug ▸ Compare backends runs the current step on NumPy and on PyTorch.")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.legend = Legend()
        self.again = QPushButton("Compare again")
        self.again.setToolTip("Run the comparison at the current step")
        self.again.clicked.connect(self.rerun)
        self.clear_button = QPushButton("Clear colours")
        self.clear_button.clicked.connect(self.cleared)
        self.model = DiffTableModel()
        self.table = QTableView()
        self.table.setObjectName("compareTable")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setToolTip("Largest absolute difference between the backends over each tensor's elements; "
                              "click a row to select the node")
        self.table.clicked.connect(lambda idx: self.nodeClicked.emit(self.model.rows[idx.row()].name))
        buttons = QHBoxLayout()
        buttons.addWidget(self.legend, 1)
        buttons.addWidget(self.again)
        buttons.addWidget(self.clear_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.summary)
        lay.addLayout(buttons)
        lay.addWidget(self.table, 1)
        themes.changed.connect(self._theme)
        self._theme()

    def show_comparison(self, c: Comparison, now: int | None = None) -> None:
        self.comparison = c
        worst = c.worst()
        self.model.set_rows([d for d in worst if not (np.isnan(d.value_diff) and np.isnan(d.grad_diff))],
                            c.tolerance)
        self.legend.set_tolerance(c.tolerance)
        verdict = (f"<b style='color:{GREEN.name()}'>all {len(c.nodes)} nodes agree</b>" if c.passed else
                   f"<b style='color:{RED.name()}'>{len(c.failures)} node(s) beyond the tolerance</b>")
        top = worst[0] if worst else None
        where = f"; worst: <b>{top.name}</b> ({fmt_num(top.worst, 3)})" if top is not None and top.worst > 0 else ""
        self.summary.setText(
            f"<b>{c.reference}</b> vs <b>{c.other}</b> at step {c.cursor}/{c.steps}: largest difference "
            f"{fmt_num(c.max_diff, 3)}, tolerance {fmt_num(c.tolerance, 2)} — {verdict}{where}")

    def clear(self) -> None:
        self.comparison = None
        self.model.set_rows([], self.model.tolerance)
        self.summary.setText("Debug ▸ Compare backends runs the current step on NumPy and on PyTorch.")

    def _theme(self) -> None:
        theme = self.themes.theme
        self.legend.text = theme.color("text")
        self.legend.setMinimumHeight(theme.px(36))
        self.legend.update()

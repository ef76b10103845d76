"""The Diff dock's colours: green (no change, or far below the tolerance), yellow at the middle, red far above.

One log scale serves both kinds of comparison: a relative change (the middle at 0.1 %) and the two
backends' check (the middle at the tolerance). Grey where a side has no number.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QLinearGradient, QPainter, QPaintEvent
from PySide6.QtWidgets import QWidget

from ..guard import guarded, guarded_answer

DECADES = 3  # the scale runs from middle / 10^3 (green) to middle · 10^3 (red)
GREEN, YELLOW, RED = QColor("#2f9e44"), QColor("#f5c400"), QColor("#e03131")
NO_DATA = QColor("#adb5bd")


def diff_position(d: float, middle: float) -> float:
    """Where a difference sits on the legend, 0 (exact) … 0.5 (at the middle) … 1 (far off); NaN for none."""
    if math.isnan(d):
        return math.nan
    if d <= 0:
        return 0.0
    if math.isinf(d):
        return 1.0
    t = (math.log10(d) - math.log10(middle) + DECADES) / (2 * DECADES)
    return min(max(t, 0.0), 1.0)


def _mix(a: QColor, b: QColor, t: float) -> QColor:
    return QColor(round(a.red() + (b.red() - a.red()) * t), round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t))


def diff_color(d: float, middle: float) -> QColor:
    t = diff_position(d, middle)
    if math.isnan(t):
        return QColor(NO_DATA)
    return _mix(GREEN, YELLOW, t * 2) if t <= 0.5 else _mix(YELLOW, RED, (t - 0.5) * 2)


class Legend(QWidget):
    """The colour bar with its decades marked and the middle (a tolerance, or 0.1 %) named."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.middle = 1e-3
        self.middle_text = "0.1 %"
        self.text = QColor("black")
        self.setMinimumHeight(36)

    def set_scale(self, middle: float, middle_text: str) -> None:
        self.middle, self.middle_text = middle, middle_text
        self.update()

    @guarded_answer(QSize())
    def sizeHint(self) -> QSize:
        return QSize(360, self.fontMetrics().height() * 2 + 18)

    @guarded
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
        exp = round(math.log10(self.middle))
        for k in range(-DECADES, DECADES + 1):
            x = bar.left() + bar.width() * (k + DECADES) / (2 * DECADES)
            p.drawLine(round(x), round(bar.bottom()), round(x), round(bar.bottom() + 3))
            if k % (1 if self.width() > 420 else 2) == 0 or k == 0:
                label = self.middle_text if k == 0 else f"1e{exp + k}"
                w = fm.horizontalAdvance(label)
                p.drawText(QRectF(x - w / 2 - 2, bar.bottom() + 3, w + 4, fm.height()), Qt.AlignmentFlag.AlignCenter,
                           label)
        p.end()

"""A one-line label that ends in "…" where its text does not fit (the status bar's message).

Why: a QLabel cut by its layout stops mid-word or mid-number ("class 2" read as a class that was 207), with nothing to
say more is there. `text()` stays whole: the tooltip and the tests read it; only the painting is shortened.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QLabel

from .guard import guarded, guarded_answer


class ElidedLabel(QLabel):
    def __init__(self, text: str = "", parent: Any = None) -> None:
        super().__init__(text, parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)

    @guarded_answer(QSize())
    def minimumSizeHint(self) -> QSize:  # any width: what does not fit ends in "…" instead of widening the window
        return QSize(0, super().minimumSizeHint().height())

    def shown_text(self) -> str:
        """The text as painted: whole where it fits, else cut at a character and ended with "…"."""
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, self.contentsRect().width())

    @guarded
    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        self.style().drawItemText(painter, self.contentsRect(), int(self.alignment()), self.palette(), self.isEnabled(),
                                  self.shown_text(), self.foregroundRole())
        painter.end()

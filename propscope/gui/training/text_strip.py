"""A few lines of rich text that may change many times a second without relaying out the window.

`QLabel.setText` asks its parents for a new layout, and in a dock that reaches the main window,
which then repaints everything, the graph canvas included. A strip has a fixed height, no opinion
about its width, and a new text only repaints the strip itself, unless the text needs another
number of lines at the strip's width: then the strip grows (or shrinks back to its least number of
lines) so that its text is never cut, which relays out once per change of line count, not per text.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QEvent, QSize
from PySide6.QtGui import QAbstractTextDocumentLayout, QFontMetrics, QPainter, QPalette, QTextDocument
from PySide6.QtWidgets import QSizePolicy, QWidget

from ..guard import guarded, guarded_answer

PADDING_PX = 4  # the document's margins above and below the text


class TextStrip(QWidget):
    def __init__(self, lines: int = 1, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self._lines = lines
        self._doc = QTextDocument(self)
        self._doc.setDocumentMargin(1)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._fit()

    def least_height(self) -> int:
        """The height of the strip's least number of lines."""
        return QFontMetrics(self.font()).lineSpacing() * self._lines + PADDING_PX

    def text_height(self) -> int:
        """The height the text takes, wrapped at the strip's width."""
        self._doc.setDefaultFont(self.font())
        self._doc.setTextWidth(max(1, self.width()))
        return math.ceil(self._doc.size().height()) + PADDING_PX - 2 * int(self._doc.documentMargin())

    def fits(self) -> bool:
        """Whether the whole text is shown (nothing below the strip's edge)."""
        return self.text_height() <= self.height()

    def _fit(self) -> None:
        height = max(self.least_height(), self.text_height() if self._text else 0)
        if height != self.height() or self.minimumHeight() != height:
            self.setFixedHeight(height)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self._doc.setHtml(text)
            self._fit()
            self.update()

    @guarded_answer(QSize())
    def sizeHint(self) -> QSize:
        return QSize(0, self.height())

    @guarded
    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.FontChange:  # projector mode: more room for the bigger type
            self._fit()
        super().changeEvent(event)

    @guarded
    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():  # another width, maybe another number of lines
            self._fit()

    @guarded
    def paintEvent(self, event: Any) -> None:
        doc = self._doc
        doc.setDefaultFont(self.font())
        doc.setTextWidth(self.width())
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette.setColor(QPalette.ColorRole.Text, self.palette().color(QPalette.ColorRole.WindowText))
        painter = QPainter(self)
        doc.documentLayout().draw(painter, context)
        painter.end()

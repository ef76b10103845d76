"""A line or two of rich text that may change many times a second without relaying out the window.

`QLabel.setText` asks its parents for a new layout, and in a dock that reaches the main window,
which then repaints everything, the graph canvas included. A strip has a fixed height, no opinion
about its width, and a new text only repaints the strip itself.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QSize
from PySide6.QtGui import QAbstractTextDocumentLayout, QFontMetrics, QPainter, QPalette, QTextDocument
from PySide6.QtWidgets import QSizePolicy, QWidget


class TextStrip(QWidget):
    def __init__(self, lines: int = 1, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._text = ""
        self._lines = lines
        self._doc = QTextDocument(self)
        self._doc.setDocumentMargin(1)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self._fit()

    def _fit(self) -> None:
        self.setFixedHeight(QFontMetrics(self.font()).lineSpacing() * self._lines + 4)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:
        if text != self._text:
            self._text = text
            self.update()

    def sizeHint(self) -> QSize:
        return QSize(0, self.height())

    def changeEvent(self, event: QEvent) -> None:
        if event.type() == QEvent.Type.FontChange:  # projector mode: more room for the bigger type
            self._fit()
        super().changeEvent(event)

    def paintEvent(self, event: Any) -> None:
        doc = self._doc
        doc.setDefaultFont(self.font())
        doc.setHtml(self._text)
        doc.setTextWidth(self.width())
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette.setColor(QPalette.ColorRole.Text, self.palette().color(QPalette.ColorRole.WindowText))
        painter = QPainter(self)
        doc.documentLayout().draw(painter, context)
        painter.end()

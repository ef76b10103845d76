"""A tensor drawn small: its number when it fits, a mini heatmap for small tensors, else its range.

Chips are prepared once when a node's value changes (not on every paint), so repaints stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QPen

from ..colormap import diverging_rgba
from ..format import as_matrix, fmt_num, symmetric_range


@dataclass
class Chip:
    text: str = ""
    image: QImage | None = None

    @property
    def empty(self) -> bool:
        return not self.text and self.image is None


def make_chip(value: Any, font: QFont, width: float) -> Chip:
    """The richest form of `value` that fits `width` pixels in `font`."""
    if value is None:
        return Chip()
    a = np.asarray(value)
    metrics = QFontMetricsF(font)
    flat = a.reshape(-1)
    if a.size == 1:
        return Chip(text=fmt_num(flat[0]))
    if a.size and bool(np.all(flat == flat[0])):  # a zero tensor would be an invisible white heatmap
        return Chip(text=f"all {fmt_num(flat[0])}")
    if a.size <= 3:
        text = "  ".join(fmt_num(v, 3) for v in a.reshape(-1))
        if metrics.horizontalAdvance(text) <= width:
            return Chip(text=text)
    return Chip(image=heatmap_image(a))


def heatmap_image(value: Any, max_rows: int = 8, max_cols: int = 16) -> QImage:
    """One pixel per element (evenly spaced rows and columns of a big tensor), diverging colours centred
    at zero on the whole tensor's range; drawn scaled without smoothing."""
    m = as_matrix(value)
    if m.shape[1] == 1:  # a column vector reads better as a row in a wide chip
        m = m.T
    vmax = symmetric_range(m)
    if m.shape[0] > max_rows:
        m = m[np.linspace(0, m.shape[0] - 1, max_rows).round().astype(int)]
    if m.shape[1] > max_cols:
        m = m[:, np.linspace(0, m.shape[1] - 1, max_cols).round().astype(int)]
    rgba = np.ascontiguousarray(diverging_rgba(m, vmax))
    h, w = rgba.shape[:2]
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


def image_rect(box: QRectF, image: QImage, max_aspect: float = 3.0) -> QRectF:
    """Where a heatmap goes in `box`: as large as fits, cells no wider than `max_aspect` times their height."""
    cols, rows = image.width(), image.height()
    cell_h = box.height() / rows
    cell_w = min(box.width() / cols, cell_h * max_aspect)
    w = cell_w * cols
    return QRectF(box.center().x() - w / 2, box.top(), w, box.height())


def draw_chip(painter: QPainter, rect: QRectF, chip: Chip, font: QFont, text: QColor, border: QColor,
              fill: QColor, pen_width: float, label: str = "") -> None:
    """A rounded box with an optional label glyph (∇) and the chip's number or heatmap."""
    painter.setPen(QPen(border, pen_width))
    painter.setBrush(fill)
    r = rect.height() * 0.22
    painter.drawRoundedRect(rect, r, r)
    inner = rect.adjusted(pen_width + 2, pen_width + 1.5, -pen_width - 2, -pen_width - 1.5)
    painter.setFont(font)
    if label:
        painter.setPen(border)
        lw = QFontMetricsF(font).horizontalAdvance(label) + 3
        painter.drawText(QRectF(inner.left(), inner.top(), lw, inner.height()),
                         Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, label)
        inner.setLeft(inner.left() + lw)
    if chip.image is not None:
        painter.drawImage(image_rect(inner, chip.image), chip.image)
    elif chip.text:
        painter.setPen(text)
        shown = QFontMetricsF(font).elidedText(chip.text, Qt.TextElideMode.ElideRight, inner.width())
        painter.drawText(inner, Qt.AlignmentFlag.AlignCenter, shown)

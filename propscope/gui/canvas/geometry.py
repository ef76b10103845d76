"""Pixel sizes of the canvas for a theme, and where ports and edges go.

The layout (`propscope.graph.layout`) is in abstract rows and columns; this is the one place that
turns it into pixels, so projector mode only rebuilds with a larger scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QPainterPath

from ..theme import Theme

MIN_PORT_GAP = 16.0  # the least spacing of a node's in ports within its body (scaled): x, W and b's


@dataclass(frozen=True)
class Geometry:
    node_w: float
    node_h: float
    col_w: float
    row_h: float
    header_h: float
    pad: float
    scale: float = 1.0

    @classmethod
    def for_theme(cls, theme: Theme) -> Geometry:
        s = theme.scale
        return cls(node_w=152 * s, node_h=70 * s, col_w=(152 + 100) * s, row_h=(70 + 30) * s, header_h=22 * s,
                   pad=6 * s, scale=s)

    def center(self, layer: float, row: float) -> QPointF:
        return QPointF(layer * self.col_w, row * self.row_h)

    def node_rect(self) -> QRectF:
        """A node's box around its own origin (items are positioned at their centre)."""
        return QRectF(-self.node_w / 2, -self.node_h / 2, self.node_w, self.node_h)

    def out_port(self, c: QPointF) -> QPointF:
        return QPointF(c.x() + self.node_w / 2, c.y())

    def in_port(self, c: QPointF, position: int, count: int) -> QPointF:
        """Inputs enter the left side top to bottom in input order (x, W, b for x · W + b)."""
        dy = float(self.port_dy(np.array([position], np.float64), np.array([count], np.float64))[0])
        return QPointF(c.x() - self.node_w / 2, c.y() + dy)

    def port_spacing(self, count: int) -> float:
        """How far apart the in ports of a node with `count` inputs are (`port_dy`)."""
        body = self.node_h - self.header_h
        return body / count if count * MIN_PORT_GAP * self.scale <= body else self.node_h / count

    def port_dy(self, position: np.ndarray, count: np.ndarray) -> np.ndarray:
        """Each in port's height from its node's centre, for input `position` of `count` (arrays).

        Up to three inputs share the body below the header (16 scaled pixels apart, room for a role label each
        above its edge); more, as batch norm's five (x, γ, β, μ_run, σ²_run: 9.6 pixels apart, their labels on
        top of each other) or an LSTM cell's six, spread over the node's whole height."""
        count = np.maximum(count, 1)
        body = self.node_h - self.header_h
        crowded = count * MIN_PORT_GAP * self.scale > body
        top = np.where(crowded, -self.node_h / 2, self.header_h - self.node_h / 2)
        return top + np.where(crowded, self.node_h, body) * (position + 0.5) / count


def edge_path(points: list[QPointF], geo: Geometry, run: float = 0.0) -> QPainterPath:
    """Smooth S-curves between consecutive points; passing through a column stays horizontal.

    `run`: the last stretch into the target's port is straight, that long (at most half the way), so the
    input's role label (x, W, b) above it has its own edge under it and no other edge's curve through it."""
    path = QPainterPath(points[0])
    half = geo.node_w / 2
    for k in range(1, len(points)):
        a, b = points[k - 1], points[k]
        if k - 1 > 0:  # leaving a bend point: run straight across the column first
            a = QPointF(a.x() + half, a.y())
            path.lineTo(a)
        last = k == len(points) - 1
        straight = min(run, max(b.x() - a.x(), 0.0) / 2) if last else half
        end = QPointF(b.x() - straight, b.y())
        dx = max((end.x() - a.x()) * 0.5, 1.0)
        path.cubicTo(QPointF(a.x() + dx, a.y()), QPointF(end.x() - dx, end.y()), end)
        if end != b:
            path.lineTo(b)
    return path

"""The canvas's detailed items: one per node, one per edge, and the gradient labels of a backward step.

Paint is cheap by design: no shadows; fonts, metrics, shapes and elided labels prepared once per
theme (`Style`); chips prepared when a value changes; text only when the zoom makes it readable;
node pictures cached by Qt, so panning blits them instead of painting again.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from ...graph.ir import Node
from ..format import fmt_shape
from ..guard import guarded
from ..theme import Theme, node_kind
from .chips import Chip, draw_chip, image_rect, make_chip
from .geometry import Geometry

TEXT_LOD = 0.45  # below this zoom, text would be under ~5 px: boxes only
LEAF_SYMBOLS = {"input": "in", "parameter": "θ", "constant": "c"}
RADIUS = {"input": 14.0, "parameter": 3.0, "loss": 8.0}
LEFT = Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft
ROLE_Z = 1.8  # role labels: above every edge (1, lit 1.5), under the nodes (2)
ROLE_GAP = 3.0  # between a role label and the arrowhead, in pixels (scaled)
RING_REACH = 9.0  # how far the current step's ring reaches out of its node at most, in pixels (scaled)


def ring_width(theme: Theme) -> float:
    """The pen of the current step's ring, drawn half its width out from the node (so it reaches 1.5 widths).

    Capped: projector mode's thicker lines made it reach 14 (scaled) pixels out, over the title of the frame
    around the node (`GraphScene` keeps a frame's margin wider than the ring's reach)."""
    return min(theme.pen_width(4), RING_REACH * theme.scale / 1.5)


def lod_of(painter: QPainter) -> float:
    return QStyleOptionGraphicsItem.levelOfDetailFromTransform(painter.worldTransform())


class Style:
    """Everything the items of one theme share: fonts and their metrics, colours, node shapes."""

    def __init__(self, theme: Theme, geo: Geometry) -> None:
        self.theme, self.geo = theme, geo
        self.symbol_font = theme.font(12.5, bold=True)
        self.name_font = theme.font(12, bold=True)
        self.small_font = theme.font(10.5)
        self.tag_font = theme.font(9.5, bold=True)
        self.role_font = theme.font(9.5)
        self.role_font_lit = theme.font(9.5, bold=True)
        self.role_fm_lit = QFontMetricsF(self.role_font_lit)
        self.role_layouts: dict[tuple[tuple[str, ...], float], tuple[tuple[bool, float], ...]] = {}
        self._role_inks: dict[str, float] = {}
        self.symbol_fm = QFontMetricsF(self.symbol_font)
        self.name_fm = QFontMetricsF(self.name_font)
        self.small_fm = QFontMetricsF(self.small_font)
        self.colors = {k: QColor(v) for k, v in theme.colors.items()}
        self.rect = geo.node_rect()
        self.bodies: dict[str, QPainterPath] = {}
        self.headers: dict[str, QPainterPath] = {}
        for kind in ("input", "parameter", "math", "activation", "shape", "loss", "module", "unsupported"):
            radius = RADIUS.get(kind, 8.0) * theme.scale
            body = QPainterPath()
            body.addRoundedRect(self.rect, radius, radius)
            band = QPainterPath()
            band.addRect(QRectF(self.rect.left(), self.rect.top(), self.rect.width(), geo.header_h))
            self.bodies[kind] = body
            self.headers[kind] = body.intersected(band)
        w = (self.rect.width() - 3 * geo.pad) / 2
        h = geo.node_h - geo.header_h - geo.pad * 1.5 - 16 * theme.scale
        top = self.rect.bottom() - geo.pad - h
        self.chip_rects = [QRectF(self.rect.left() + geo.pad + k * (w + geo.pad), top, w, h) for k in range(2)]
        self.chip_width = w - 6
        self.grad_chip_width = w - 6 - self.small_fm.horizontalAdvance("∇ ")

    def role_ink_height(self, role: str) -> float:
        """How tall the letters of role label `role` are, lit (bold), in pixels."""
        height = self._role_inks.get(role)
        if height is None:
            path = QPainterPath()
            path.addText(QPointF(0, 0), self.role_font_lit, role)
            height = self._role_inks[role] = path.boundingRect().height()
        return height

    def color(self, key: str) -> QColor:
        return QColor(self.colors[key])


class NodeItem(QGraphicsItem):
    """A node: header (symbol and name) coloured by kind, op and shape, then value and gradient chips."""

    def __init__(self, node: Node, style: Style) -> None:
        super().__init__()
        kind = node_kind(node.op.name, node.op.category)
        what = "target" if node.meta.get("role") == "target" else node.op.name
        symbol = LEAF_SYMBOLS.get(node.op.name, node.op.symbol or node.op.name)
        if kind == "unsupported":  # say which op of the file it stands for
            what, symbol = f"{node.attrs.get('original_op', '?')} (unsupported)", "⚠"
        self._setup(node.name, style, kind, symbol, node.name, f"{what} · {fmt_shape(node.shape)}", node.is_leaf)

    def _setup(self, name: str, style: Style, kind: str, symbol: str, label: str, subtitle: str,
               has_value: bool, extra: float = 0.0) -> None:
        """Texts elided once, state cleared; `extra` widens the bounds (a box's stacked cards)."""
        self.name = name
        self.style = style
        self.kind = kind
        g, r = style.geo, style.rect
        head = QRectF(r.left() + g.pad, r.top(), r.width() - 2 * g.pad, g.header_h)
        sym_w = min(style.symbol_fm.horizontalAdvance(symbol), head.width() * 0.55) + 1
        gap = 6 * style.theme.scale
        self.symbol = style.symbol_fm.elidedText(symbol, Qt.TextElideMode.ElideRight, sym_w)
        self.symbol_rect = QRectF(head.left(), head.top(), sym_w, head.height())
        self.name_rect = QRectF(head.left() + sym_w + gap, head.top(), head.width() - sym_w - gap, head.height())
        self.label = style.name_fm.elidedText(label, Qt.TextElideMode.ElideMiddle, self.name_rect.width())
        self.sub_rect = QRectF(r.left() + g.pad, r.top() + g.header_h + 1, r.width() - 2 * g.pad,
                               16 * style.theme.scale)
        self.subtitle = style.small_fm.elidedText(subtitle, Qt.TextElideMode.ElideRight, self.sub_rect.width())
        self.diff_color: QColor | None = None  # set while a backend comparison colours the graph
        # View ▸ Colour nodes by (`colour_by`): the body in its number's colour, with ink that reads on it; washed
        # out (as before its step) while the mode has no number for it yet
        self.tint: QColor | None = None
        self.tint_ink: QColor | None = None
        self.tint_washed = False
        self.has_value = has_value
        self._value: Any = None
        self._grad: Any = None
        self._chips_dirty = False
        self.value_chip = Chip()
        self.grad_chip = Chip()
        self.arrivals: tuple[int, int] | None = None
        self.current: str | None = None  # "forward" or "backward" when this is the step's node
        self.selected_node = False
        self.breakpoint = False
        m = g.pad * 2 + style.theme.pen_width(4)
        self._bounds = r.adjusted(-m, -m, m + extra, m + extra)
        self.setZValue(2)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)

    def boundingRect(self) -> QRectF:
        return self._bounds

    # -- state (set by the scene when a step touches this node) ------------------------------
    def set_state(self, value: Any, grad: Any, arrivals: tuple[int, int] | None) -> None:
        """New value/gradient; chips are made at the next readable paint, not for every node at once."""
        if value is self._value and grad is self._grad and arrivals == self.arrivals:
            return
        self._value, self._grad, self.arrivals = value, grad, arrivals
        self.has_value = value is not None
        self._chips_dirty = True
        self.update()

    def _ensure_chips(self) -> None:
        if self._chips_dirty:
            st = self.style
            self.value_chip = make_chip(self._value, st.small_font, st.chip_width)
            self.grad_chip = make_chip(self._grad, st.small_font, st.grad_chip_width)
            self._chips_dirty = False

    def set_current(self, phase: str | None) -> None:
        if phase != self.current:
            self.current = phase
            self.update()

    def set_selected(self, on: bool) -> None:
        if on != self.selected_node:
            self.selected_node = on
            self.update()

    def set_breakpoint(self, on: bool) -> None:
        if on != self.breakpoint:
            self.breakpoint = on
            self.update()

    def set_diff(self, color: QColor | None) -> None:
        if color != self.diff_color:
            self.diff_color = color
            self.update()

    def set_tint(self, color: QColor | None, washed: bool = False) -> None:
        """Colour the body by a number (`colour_by`); None: by kind, washed out when `washed` (no number yet)."""
        if color != self.tint or washed != self.tint_washed:
            self.tint, self.tint_washed = color, washed
            self.tint_ink = None if color is None else _ink_on(color)
            self.update()

    # -- painting --------------------------------------------------------------------------
    @guarded
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        st = self.style
        t, g, r = st.theme, st.geo, st.rect
        lod = lod_of(painter)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, lod > 0.3)
        accent = st.color(f"{self.kind}.accent")
        fill = st.color(f"{self.kind}.fill")
        header = accent
        washed = not self.has_value or self.tint_washed
        if self.tint is not None:  # coloured by a number: the whole body, the header a shade darker
            fill, header = QColor(self.tint), self.tint.darker(118)
        elif washed:  # not computed yet: washed out
            fill.setAlphaF(0.55)
            accent.setAlphaF(0.45)
        radius = RADIUS.get(self.kind, 8.0) * t.scale
        if self.current:
            w = ring_width(t)
            painter.setPen(QPen(st.colors["highlight"], w))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(r.adjusted(-w, -w, w, w), radius + w, radius + w)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawPath(st.bodies[self.kind])
        painter.setBrush(header)
        painter.drawPath(st.headers[self.kind])
        border = QPen(accent, t.pen_width(1.2 if self.kind != "loss" else 2.2))
        if washed:
            border.setStyle(Qt.PenStyle.DashLine)
        if self.kind == "unsupported":  # hatched: nothing can run here
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QBrush(accent, Qt.BrushStyle.BDiagPattern))
            painter.drawPath(st.bodies[self.kind])
            border = QPen(accent, t.pen_width(2.2), Qt.PenStyle.DashLine)
        painter.setPen(border)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(st.bodies[self.kind])
        if self.diff_color is not None:  # a backend comparison: a bar under the node in its difference's colour
            bar = QRectF(r.left() + radius, r.bottom() + g.pad * 0.4, r.width() - 2 * radius, g.pad * 1.1)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(self.diff_color)
            painter.drawRoundedRect(bar, bar.height() / 2, bar.height() / 2)
        if self.breakpoint:
            d = 13 * t.scale
            painter.setPen(QPen(QColor("white"), t.pen_width(1)))
            painter.setBrush(st.colors["breakpoint"])
            painter.drawEllipse(QRectF(r.left() - d * 0.45, r.top() - d * 0.45, d, d))
        if self.selected_node and not self.current:  # the step's ring already marks it
            painter.setPen(QPen(st.colors["selection"], t.pen_width(1.5), Qt.PenStyle.DashLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            m = g.pad * 0.9
            painter.drawRoundedRect(r.adjusted(-m, -m, m, m), radius + m, radius + m)
        if lod >= TEXT_LOD:
            self._paint_text(painter)

    def _paint_text(self, painter: QPainter) -> None:
        st = self.style
        t = st.theme
        ink = self.tint_ink
        painter.setPen(ink or (st.colors["header_text"] if self.has_value and not self.tint_washed else
                               st.colors["text"]))
        painter.setFont(st.symbol_font)
        painter.drawText(self.symbol_rect, LEFT, self.symbol)
        painter.setFont(st.name_font)
        painter.drawText(self.name_rect, LEFT, self.label)
        painter.setFont(st.small_font)
        painter.setPen(ink or st.colors["muted"])
        painter.drawText(self.sub_rect, LEFT, self.subtitle)
        self._ensure_chips()
        text, chip_fill = st.colors["text"], st.colors["chip"]
        if not self.value_chip.empty:
            draw_chip(painter, st.chip_rects[0], self.value_chip, st.small_font, text, st.colors["edge"], chip_fill,
                      t.pen_width(0.8))
        if not self.grad_chip.empty:
            grad_rect = st.chip_rects[1]
            draw_chip(painter, grad_rect, self.grad_chip, st.small_font, text, st.colors["gradient"], chip_fill,
                      t.pen_width(1.3), "∇")
            if self.arrivals and self.arrivals[1] > 1:
                k, n = self.arrivals
                painter.setFont(st.tag_font)
                painter.setPen(st.colors["gradient"])
                tag = QRectF(grad_rect.left(), grad_rect.top() - 15 * t.scale, grad_rect.width(), 14 * t.scale)
                painter.drawText(tag, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom,
                                 f"Σ {k} of {n}" if k < n else f"Σ all {n}")


class EdgeItem(QGraphicsItem):
    """An edge from a value to the op using it; lit in the forward colour or the gradient colour."""

    def __init__(self, src: str, dst: str, points: list[QPointF], path: QPainterPath, role: str,
                 style: Style, label: tuple[bool, float] = (True, 0.0)) -> None:
        super().__init__()
        self.src, self.dst, self.role = src, dst, role
        self.style = style
        self.points = points
        self.path = path
        self.flow: str | None = None  # "forward" or "backward" while the current step uses this edge
        s = style.theme.scale
        m = 10 * s + style.theme.pen_width(3)
        self._bounds = path.boundingRect().adjusted(-m, -m, m, m)
        # the role (x, W, b) is an item of its own, above every edge (`RoleLabel`), shown and placed as `label`
        # says (`role_layout`); the scene adds it
        shown, offset = label
        self.label = RoleLabel(role, points[-1], style, offset) if role and shown else None
        self.setZValue(1)

    def boundingRect(self) -> QRectF:
        return self._bounds

    def set_flow(self, flow: str | None) -> None:
        if flow != self.flow:
            self.flow = flow
            self.setZValue(1.5 if flow else 1)
            self.update()
            if self.label is not None:
                self.label.set_flow(flow)

    @guarded
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        st = self.style
        t = st.theme
        lod = lod_of(painter)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, lod > 0.3)
        color = st.colors["edge" if self.flow is None else "forward" if self.flow == "forward" else "gradient"]
        width = t.pen_width(1.0 if self.flow is None else 2.6)
        painter.setPen(QPen(color, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self.path)
        if lod < TEXT_LOD:
            return
        size = (6 if self.flow is None else 9) * t.scale
        if self.flow == "backward":  # the gradient flows from the consumer back to this input
            _arrow(painter, self.points[0], -1.0, size, color)
        else:
            _arrow(painter, self.points[-1], 1.0, size, color)


def role_run(role: str, style: Style, label: tuple[bool, float] = (True, 0.0)) -> float:
    """How long an edge runs straight into its port to hold its role label (`RoleLabel`): the label, the
    arrowhead and a gap each side, and the label's column further left (`role_layout`); none without a label."""
    shown, offset = label
    if not role or not shown:
        return 0.0
    return style.role_fm_lit.horizontalAdvance(role) + ROLE_GAP * 3 * style.theme.scale + _arrow_length(style) + \
        offset


def role_layout(roles: tuple[str, ...], spacing: float, style: Style) -> tuple[tuple[bool, float], ...]:
    """For each input's role label of a node whose in ports are `spacing` apart: whether it is shown, and how much
    further left than the usual place (just left of the arrowhead) it ends.

    Each label sits just above its own edge. Where the ports are closer than the tallest label (with its halo),
    the labels take two columns in turn, the second left of the first's widest, so that each is a port's double
    spacing from the next in its column; where even that is too close (an op with eight inputs), only every
    so many labels of each column show (the first input's always). The tooltip and the chain rule name them all."""
    key = (roles, round(spacing, 3))
    found = style.role_layouts.get(key)
    if found is not None:
        return found
    s = style.theme.scale
    need = max(map(style.role_ink_height, roles)) + 2.4 * s + 1.0 * s  # ink, the halo's two halves, a pixel
    if spacing >= need:
        layout = tuple((True, 0.0) for _ in roles)
    else:
        stride = math.ceil(need / (2 * spacing))  # within a column
        shown = [(k // 2) % stride == 0 for k in range(len(roles))]
        widest = max((style.role_fm_lit.horizontalAdvance(r) for k, r in enumerate(roles) if k % 2 == 0 and shown[k]),
                     default=0.0)
        second = widest + ROLE_GAP * 2 * s
        layout = tuple((shown[k], second if k % 2 else 0.0) for k in range(len(roles)))
    style.role_layouts[key] = layout
    return layout


def _arrow_length(style: Style) -> float:
    return 9 * style.theme.scale * 1.4  # a lit edge's arrowhead (`EdgeItem.paint`)


class RoleLabel(QGraphicsItem):
    """The role of an input (x, W, b) where its edge enters the node: above every edge, each letter ringed in the
    canvas's colour, over the straight end of its own edge (`role_run`).

    Painted by its edge, under the edges drawn after it, a label was crossed by its neighbours' curves: in
    projector mode the lit edges into a Linear or a Conv, 8 pixels thick, covered its x and W."""

    def __init__(self, role: str, port: QPointF, style: Style, offset: float = 0.0) -> None:
        super().__init__()
        self.role, self.style = role, style
        self.flow: str | None = None
        t = style.theme
        s = t.scale
        lit_pen = t.pen_width(2.6)  # `EdgeItem.paint`'s lit width: the label clears it
        self.halo = 2.4 * s
        self.paths: dict[bool, QPainterPath] = {}
        for lit, font in ((False, style.role_font), (True, style.role_font_lit)):
            path = QPainterPath()
            path.addText(QPointF(0, 0), font, role)
            # the letters' ink (not the font's line) just above the lit edge's stroke, halo and all: the edge of
            # the input above is a port's spacing higher (16 scaled pixels for x, W, b), room for the letters
            ink = path.boundingRect()
            right = port.x() - _arrow_length(style) - ROLE_GAP * s - offset
            bottom = port.y() - lit_pen / 2 - self.halo / 2
            self.paths[lit] = path.translated(right - ink.right(), bottom - ink.bottom())
        self._bounds = self.paths[True].boundingRect().united(self.paths[False].boundingRect()).adjusted(
            -self.halo, -self.halo, self.halo, self.halo)
        self.setZValue(ROLE_Z)

    def boundingRect(self) -> QRectF:
        return self._bounds

    def text_rect(self) -> QRectF:
        """Where the letters are drawn now (without their halo), in scene coordinates."""
        return self.paths[self.flow is not None].boundingRect()

    def set_flow(self, flow: str | None) -> None:
        if flow != self.flow:
            self.flow = flow
            self.update()

    @guarded
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        if lod_of(painter) < TEXT_LOD:
            return
        st = self.style
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        color = st.colors["muted" if self.flow is None else "forward" if self.flow == "forward" else "gradient"]
        path = self.paths[self.flow is not None]
        painter.setPen(QPen(st.colors["background"], self.halo, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                            Qt.PenJoinStyle.RoundJoin))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(path)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawPath(path)


def _ink_on(color: QColor) -> QColor:
    """Black or white, whichever reads better on `color` (by its relative luminance, as WCAG weighs it)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
               for c in (color.redF(), color.greenF(), color.blueF()))
    return QColor("#000000") if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.18 else QColor("#ffffff")


def _arrow(painter: QPainter, tip: QPointF, direction: float, size: float, color: QColor) -> None:
    back = tip.x() - direction * size * 1.4
    poly = QPolygonF([tip, QPointF(back, tip.y() - size * 0.6), QPointF(back, tip.y() + size * 0.6)])
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(color))
    painter.drawPolygon(poly)


class GradLabel(QGraphicsItem):
    """On a backward step: the gradient an edge carries back (`∂L/∂z`), and `+ k of n` where sums build."""

    def __init__(self, role: str, contribution: Any, arrival: int, consumers: int, style: Style) -> None:
        super().__init__()
        theme = style.theme
        self.style = style
        self.title = f"∂L/∂{role}" if role else "∂L"
        self.count = f"+ {arrival} of {consumers}" if consumers > 1 else ""
        self.font: QFont = theme.font(10.5, bold=True)
        fm = QFontMetricsF(self.font)
        self.chip = make_chip(contribution, style.small_font, 80 * theme.scale)
        chip_w = (28 * theme.scale if self.chip.image is not None
                  else fm.horizontalAdvance(self.chip.text) + 6 * theme.scale)
        pad = 5 * theme.scale
        widths = [fm.horizontalAdvance(self.title), chip_w]
        if self.count:
            widths.append(fm.horizontalAdvance(self.count))
        self.h = 22 * theme.scale
        self.parts = widths
        w = sum(widths) + pad * (len(widths) + 1)
        self.rect = QRectF(-w / 2, -self.h / 2, w, self.h)
        self.pad = pad
        self.setZValue(3)

    def boundingRect(self) -> QRectF:
        m = self.style.theme.pen_width(2)
        return self.rect.adjusted(-m, -m, m, m)

    @guarded
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        st = self.style
        t = st.theme
        if lod_of(painter) < TEXT_LOD:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        grad = st.colors["gradient"]
        painter.setPen(QPen(grad, t.pen_width(1.5)))
        painter.setBrush(st.colors["chip"])
        painter.drawRoundedRect(self.rect, self.h / 2, self.h / 2)
        painter.setFont(self.font)
        x = self.rect.left() + self.pad
        inner_h = self.h - 8 * t.scale
        align = Qt.AlignmentFlag.AlignCenter
        painter.setPen(grad)
        painter.drawText(QRectF(x, self.rect.top(), self.parts[0], self.h), align, self.title)
        x += self.parts[0] + self.pad
        box = QRectF(x, -inner_h / 2, self.parts[1], inner_h)
        if self.chip.image is not None:
            painter.drawImage(image_rect(box, self.chip.image), self.chip.image)
        else:
            painter.setPen(st.colors["text"])
            painter.drawText(QRectF(x, self.rect.top(), self.parts[1], self.h), align, self.chip.text)
        if self.count:
            x += self.parts[1] + self.pad
            painter.setPen(grad)
            painter.drawText(QRectF(x, self.rect.top(), self.parts[2], self.h), align, self.count)

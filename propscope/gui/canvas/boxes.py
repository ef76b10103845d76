"""A folded module drawn as one box, and an open one as a frame around its nodes.

The box looks like a node (same size, so the layout treats it as one) drawn on a stack of cards,
and shows the value leaving the module. While the step is inside it the box is lit and names the
step's node, so stepping never has to open it.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem, QWidget

from ..guard import guarded
from .folding import REPEAT, Unit
from .items import TEXT_LOD, NodeItem, Style, lod_of

CARDS = 2  # cards drawn behind a box


def fit_title(title: str, width: float, fm: QFontMetricsF, caption: str = "") -> str:
    """What of a module's title fits `width` in `fm`'s font, the most meaningful first.

    The title with its caption ("layer2.0.downsample · module · 2 ops") when it fits, else the title
    alone; else the tail of its module path, whole components after "…", as long as fits and starting at
    a name ("…downsample.0", never "…0.downsample.0" nor the "layer2….ample.0" of an elided middle); a
    repeat's title keeps its range ("…layers.0 … 11"). The shortest such tail, elided, when none fits.
    The full title is in the tooltip.
    """
    candidates = [f"{title} · {caption}"] if caption else []
    candidates.append(title)
    path, space, rest = title.partition(" ")
    parts = path.split(".")
    starts = [k for k in range(1, len(parts)) if not parts[k].isdigit()]
    candidates += [f"…{'.'.join(parts[k:])}{space}{rest}" for k in starts]
    for text in candidates:
        if fm.horizontalAdvance(text) <= width:
            return text
    return fm.elidedText(candidates[-1], Qt.TextElideMode.ElideMiddle, width)


class BoxItem(NodeItem):
    def __init__(self, unit: Unit, style: Style) -> None:
        QGraphicsItem.__init__(self)
        self.unit = unit
        self.offset = 5 * style.theme.scale
        symbol = "×" if unit.kind == REPEAT else "⊞"
        self._setup(unit.key, style, "module", symbol, unit.title, unit.caption, False, extra=self.offset * CARDS)
        self.label = fit_title(unit.title, self.name_rect.width(), style.name_fm)
        self.caption = self.subtitle
        self.inner: str | None = None  # the member node of the step now shown, when the step is inside

    def set_inner(self, name: str | None, phase: str | None) -> None:
        """The step is at member `name` (None: elsewhere): the box lights up and names it."""
        if name != self.inner or phase != self.current:
            self.inner = name
            text = self.caption if name is None else f"{'▶' if phase == 'forward' else '◀'} {name}"
            self.subtitle = self.style.small_fm.elidedText(text, Qt.TextElideMode.ElideMiddle,
                                                           self.sub_rect.width())
            self.set_current(phase)
            self.update()

    @guarded
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        st = self.style
        t = st.theme
        r = st.rect
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, lod_of(painter) > 0.3)
        accent = st.color("module.accent")
        fill = st.color("module.fill")
        radius = 8.0 * t.scale
        for k in range(CARDS, 0, -1):
            d = self.offset * k
            painter.setPen(QPen(accent, t.pen_width(1.0)))
            painter.setBrush(fill)
            painter.drawRoundedRect(r.translated(d, d), radius, radius)
        super().paint(painter, option, widget)


class FrameItem(QGraphicsItem):
    """An open unit: a tinted frame with its title; double-clicking the frame folds it again."""

    def __init__(self, unit: Unit, rect: QRectF, header: float, style: Style) -> None:
        super().__init__()
        self.unit = unit
        self.rect = rect
        self.header = header
        self.style = style
        self.members = set(unit.members)
        self.lit = False  # the step is inside
        self.setZValue(0.5 + min(unit.depth, 49) * 0.01)  # under FRAME_CEILING (1), where edges and nodes start
        m = style.theme.pen_width(3)
        self._bounds = rect.adjusted(-m, -m, m, m)  # asked for by Qt for each frame on every repaint: kept
        # the title as shown, and its lit tab's width: fitted once, not on every paint
        self.radius = 10 * style.theme.scale
        self.text_rect = self.header_rect().adjusted(self.radius * 0.8, 0, -self.radius, 0)
        self.title = fit_title(unit.title, self.text_rect.width(), style.small_fm, unit.caption)
        self.tab_width = style.small_fm.horizontalAdvance(self.title) + self.radius

    def boundingRect(self) -> QRectF:
        return self._bounds

    def header_rect(self) -> QRectF:
        return QRectF(self.rect.left(), self.rect.top(), self.rect.width(), self.header)

    def title_rect(self) -> QRectF:
        """Where the title is drawn (its lit tab included), in scene coordinates: what a view keeps in sight."""
        left = self.text_rect.left() - self.radius * 0.4
        return QRectF(left, self.rect.top(), min(self.tab_width, self.rect.right() - left), self.header)

    def set_lit(self, on: bool) -> None:
        if on != self.lit:
            self.lit = on
            self.update()

    @guarded
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        st = self.style
        t = st.theme
        lod = lod_of(painter)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, lod > 0.3)
        accent = st.color("module.accent")
        fill = QColor(st.color("module.fill"))
        fill.setAlphaF(0.55)
        pen = QPen(accent, t.pen_width(1.0))
        if self.unit.kind == REPEAT:
            pen.setStyle(Qt.PenStyle.DashLine)
        radius = self.radius
        painter.setPen(pen)
        painter.setBrush(fill)
        painter.drawRoundedRect(self.rect, radius, radius)
        if lod < TEXT_LOD:
            return
        text_rect = self.text_rect
        if self.lit:  # the step is inside: its title on a highlight tab, not a ring as long as the frame
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(st.colors["highlight"])
            painter.drawRoundedRect(QRectF(text_rect.left() - radius * 0.4, text_rect.top() + 2 * t.scale,
                                           self.tab_width, text_rect.height() - 4 * t.scale),
                                    radius * 0.4, radius * 0.4)
        painter.setFont(st.small_font)
        painter.setPen(st.colors["text"] if self.lit else accent)
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, self.title)

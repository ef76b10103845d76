"""Pictures of a session for slides: one frame per step of the pass, the graph, the chain-rule formula.

Frames are drawn from a `GraphScene` of their own (never the window's canvas), on the calling thread,
with the light or the projector theme: the app keeps its view, its theme and its cursor while a pass
is rendered. Each frame is the whole graph fitted to the chosen size, the step's node lit as on the
canvas, and a caption saying where the pass is ("backward 7/10 · sigmoid hidden_output").
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QTextDocument
from PySide6.QtSvg import QSvgGenerator

from ...debugger import Session
from ..canvas.folding import Folding
from ..canvas.scene import GraphScene
from ..inspect.chain_text import chain_rule_html
from ..projector import min_text_px
from ..theme import LIGHT, PROJECTOR, Theme

CAPTION_LINES = 1.9  # the caption strip's height, in lines of its font
MARGIN = 0.03  # of the frame's shorter side, around the graph


MIN_READABLE_SCALE = 0.5  # below this the node labels of a whole graph in an exported frame cannot be read
FOLLOW_SCALE = 0.85  # a graph too big to read whole is shown around the step at this scale


def export_theme(projector: bool, height: int) -> Theme:
    """Light for documents; projector colours and pens, with type sized for a room, for slides."""
    if not projector:
        return LIGHT
    return replace(PROJECTOR, scale=round(min_text_px(height) / 14, 2))


class PassRenderer:
    """Draws `session` at any cursor position; the session's cursor is moved (use a copy in the app)."""

    def __init__(self, session: Session, size: tuple[int, int] = (1280, 720), projector: bool = False,
                 caption: bool = True, whole: bool = False) -> None:
        self.session = session
        self.whole = whole  # the whole graph however small; else a graph too big to read follows the step
        self.width, self.height = size
        self.theme = export_theme(projector, self.height)
        folding = Folding.of(session.graph)
        self.scene = GraphScene(session, folding.layout(), self.theme, folding)
        self.scene.ensure_items(None)  # every item now: a frame shows the whole graph
        self.scene.show_detail(True)
        self.caption = caption
        self.caption_font = self.theme.font(14, bold=True)  # the theme's scale sizes it for the room
        self._caption_h = round(self.caption_font.pixelSize() * CAPTION_LINES) if caption else 0

    @property
    def frame_count(self) -> int:
        return len(self.session.steps) + 1

    def move(self, cursor: int) -> None:
        self.session.seek(cursor)
        self.scene.cursor_moved(self.session.cursor)

    def frame(self, cursor: int) -> QImage:
        """The pass after `cursor` steps (0: before the first), as a picture of the chosen size."""
        self.move(cursor)
        image = QImage(self.width, self.height, QImage.Format.Format_RGB32)
        image.fill(self.theme.color("background"))
        painter = QPainter(image)
        painter.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self._paint(painter, QRectF(0, 0, self.width, self.height))
        painter.end()
        return image

    def _paint(self, painter: QPainter, frame: QRectF) -> None:
        pad = MARGIN * min(frame.width(), frame.height())
        area = frame.adjusted(pad, pad, -pad, -pad - self._caption_h)
        source = self.scene.itemsBoundingRect()
        if not self.whole and not source.isEmpty() and not area.isEmpty():
            source = self._around_step(source, area)
        if not source.isEmpty() and not area.isEmpty():
            scale = min(area.width() / source.width(), area.height() / source.height())
            target = QRectF(0, 0, source.width() * scale, source.height() * scale)
            target.moveCenter(area.center())
            self.scene.render(painter, target, source, Qt.AspectRatioMode.KeepAspectRatio)
        if self.caption:
            painter.setFont(self.caption_font)
            painter.setPen(self.theme.color("text"))
            strip = QRectF(frame.left() + pad, frame.bottom() - pad - self._caption_h, frame.width() - 2 * pad,
                           self._caption_h)
            painter.drawText(strip, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, self.caption_text())

    def _around_step(self, whole: QRectF, area: QRectF) -> QRectF:
        """`whole`, where it fits `area` at a readable scale; else the part of it around the current step (the first
        op before any) at that scale: a ResNet's whole graph in 1280×720 is a strip with no label left to read."""
        scale = min(area.width() / whole.width(), area.height() / whole.height())
        if scale >= MIN_READABLE_SCALE:
            return whole
        s = self.session
        node = s.steps[s.cursor - 1].node if s.cursor else (s.graph.ops or s.graph.nodes)[0]
        view = QRectF(0, 0, area.width() / FOLLOW_SCALE, area.height() / FOLLOW_SCALE)
        view.moveCenter(self.scene.node_rect(node.name).center())
        # kept inside the graph where the graph is larger than the view: no empty margin beside its first node
        if whole.width() > view.width():
            view.moveLeft(min(max(view.left(), whole.left()), whole.right() - view.width()))
        if whole.height() > view.height():
            view.moveTop(min(max(view.top(), whole.top()), whole.bottom() - view.height()))
        return view

    def caption_text(self) -> str:
        s = self.session
        if s.cursor == 0:
            return f"{s.name} · before the first step · 0/{len(s.steps)}"
        step = s.steps[s.cursor - 1]
        return f"{s.name} · {step.phase} {s.cursor}/{len(s.steps)} · {step.node.op.name} {step.node.name}"

    def write_svg(self, path: str, cursor: int | None = None, title: str = "") -> None:
        """The graph (at `cursor`, default where the session is) as SVG, drawn at the scene's own scale so every
        label is text a browser shows and a search finds (a fitted, shrunken graph would drop its labels)."""
        if cursor is not None:
            self.move(cursor)
        for item in self.scene.items():  # cached items would be pasted in as pictures, their text lost
            item.setCacheMode(item.CacheMode.NoCache)
        source = self.scene.itemsBoundingRect()
        pad = MARGIN * min(self.width, self.height)
        width = max(self.width, round(source.width() + 2 * pad))
        height = max(self.height, round(source.height() + 2 * pad + self._caption_h))
        generator = QSvgGenerator()
        generator.setFileName(path)
        generator.setResolution(96)  # CSS pixels: the SVG opens at the size it was drawn
        generator.setSize(QSize(width, height))
        generator.setViewBox(QRectF(0, 0, width, height))
        generator.setTitle(title or f"propscope: {self.session.name}")
        generator.setDescription(self.caption_text())
        painter = QPainter(generator)
        painter.fillRect(QRectF(0, 0, width, height), self.theme.color("background"))
        self._paint(painter, QRectF(0, 0, width, height))
        painter.end()


def formula_image(session: Session, selected: str | None, index: tuple[int, ...] | None, width: int = 1280,
                  projector: bool = False) -> QImage:
    """The chain-rule text of the current step (what the chain-rule dock shows), as a picture."""
    theme = export_theme(projector, round(width * 9 / 16))
    doc = QTextDocument()
    doc.setDefaultFont(theme.font(15))
    doc.setHtml(chain_rule_html(session, selected, index, theme.colors))
    pad = theme.px(16)
    doc.setTextWidth(width - 2 * pad)
    height = int(doc.size().height()) + 2 * pad
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor(theme.colors["background"]))
    painter = QPainter(image)
    painter.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
    painter.translate(QPointF(pad, pad))
    doc.drawContents(painter)
    painter.end()
    return image

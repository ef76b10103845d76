"""Sticky frame titles: the name of every module frame around what the view shows stays in sight.

A frame's title is drawn at its top-left corner (`FrameItem`). A module much wider than the view (each block of
torchvision's resnet18 from `torch.export`: 1,700 pixels at 1:1) or taller than it (projector mode at 1024×768)
had its title scrolled off while the step's node was deep inside it: only the breadcrumbs' band, above the
canvas, said which module the view was in. As code editors keep the headers of the scopes around the top line
on screen ("sticky scroll"), and as spreadsheets keep their header row, a frame whose title has left the view
while the frame itself is still in it gets a copy of its title pinned to the view's edge:

- at the view's left edge, in the frame's own header row, while the frame's left end is off to the left;
- at the view's top edge while the header row is above it, nested frames stacked outer first, as in an editor;
- pushed out with the frame's right (or bottom) end as that leaves the view, so a pinned title never leaves its
  frame, nor lies over the frame beside it;
- never over a node (grown by the step's ring) nor over a gradient label: where it would cover one it is
  not drawn (a frame's header row holds no node, so a title pinned only sideways always shows);
- lit like the frame's own title while the step is inside, with a mark (`MARK`) saying the frame goes on.

The titles are painted by the view (`GraphView.drawForeground`), in scene coordinates so that they are exactly as
large as the frames' own, over the items and never in the minimap. Where they go is worked out once per view
position (`StickyTitles.pins`), from one array of the frames' rectangles: a few dozen microseconds on 4,000
frames. A scroll moves the viewport's pixels, titles and all (Qt blits them): the view repaints where the
titles were moved to and where they are now (`GraphView.scrollContentsBy`), nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen

from .boxes import FrameItem
from .folding import REPEAT
from .items import RING_REACH, TEXT_LOD

MARK = "◂ "  # before a title pinned to the left edge: its frame goes on to the left
INSET = 4.0  # pixels between the view's edge and a pinned title (scaled by the theme, not by the zoom)


@dataclass(frozen=True)
class Pin:
    frame: FrameItem
    rect: QRectF  # the tab, in scene coordinates
    text: str
    side: bool  # pinned to the left edge (the title then starts with `MARK`)


class StickyTitles:
    """Where the titles of the frames around the view are pinned, and how they are painted, for one scene."""

    def __init__(self, scene: object) -> None:
        from .scene import GraphScene  # the scene imports nothing of this module; the view imports both

        assert isinstance(scene, GraphScene)
        self.scene = scene
        self.frames: list[FrameItem] = list(scene.frames.values())
        boxes = np.array([[f.rect.left(), f.rect.top(), f.rect.right(), f.rect.bottom()] for f in self.frames])
        self.boxes = boxes.reshape(-1, 4)
        self._key: tuple[float, ...] | None = None
        self._pins: list[Pin] = []

    def pins(self, view: QRectF, zoom: float) -> list[Pin]:
        """The titles pinned for a view showing scene rectangle `view` at `zoom` (cached for that view)."""
        key = (view.left(), view.top(), view.right(), view.bottom(), zoom, float(self.scene.cursor))
        if key != self._key:
            self._key = key
            self._pins = self._place(view, zoom) if self.frames else []
        return self._pins

    def _place(self, view: QRectF, zoom: float) -> list[Pin]:
        scene = self.scene
        if zoom < TEXT_LOD or not scene.detail_shown:
            return []
        s = scene.theme.scale
        inset = INSET * s / zoom
        left, top = view.left() + inset, view.top() + inset
        b = self.boxes
        # the frames in view whose own title is not wholly in it: their left end (where the title starts) is left
        # of the view, or their header row above it
        near = (b[:, 2] > view.left()) & (b[:, 0] < view.right()) & (b[:, 3] > view.top()) & \
            (b[:, 1] < view.bottom()) & ((b[:, 0] < left) | (b[:, 1] < top))
        found = [self.frames[i] for i in np.flatnonzero(near).tolist()]
        # the frames around the step first (their titles say where the step is), then the others; outer first
        # in each, so that an inner title stacks under the outer one
        around = set(map(id, scene.enclosing_frames(scene.current))) if scene.current is not None else set()
        found.sort(key=lambda f: (id(f) not in around, f.unit.depth, f.rect.top()))
        fm = scene.style.small_fm
        reach = (RING_REACH + 2) * s
        labels = [label.sceneBoundingRect() for label in scene.labels]
        pins: list[Pin] = []
        for frame in found:
            natural = frame.title_rect()
            r = frame.rect
            side = natural.left() < left
            text = MARK + frame.title if side else frame.title
            width = fm.horizontalAdvance(text) + frame.radius
            x = max(natural.left(), left)
            x = min(x, r.right() - width - frame.radius * 0.4)  # pushed out with the frame's right end
            # under the titles pinned down from above the view for the frames around it
            floor = max([top, *(p.rect.bottom() for p in pins if p.rect.top() > p.frame.rect.top() and
                                p.frame.rect.contains(r))])
            y = r.top()
            if y < floor:
                y = min(floor, r.bottom() - frame.header - frame.radius)  # pushed out with the frame's bottom
                if y < floor and floor > top:  # it would slide under the titles stacked above it: none
                    continue
            rect = QRectF(x, y, width, frame.header)
            if rect.right() <= view.left() or rect.bottom() <= view.top():
                continue
            if y > r.top() and self._covers(rect, r, view, reach, inset):
                continue
            if any(rect.intersects(label) for label in labels):
                continue
            pins.append(Pin(frame, rect, text, side))
        return pins

    def _covers(self, rect: QRectF, own: QRectF, view: QRectF, reach: float, gap: float) -> bool:
        """Whether a title moved down from its frame's header row to `rect` would cover a node (the step's with its
        ring), or the top of a frame inside its own (`own`) or beside it, where that frame's title is: the side of
        one whose top is above the view it may cross."""
        scene = self.scene
        if scene.node_area_in(rect.adjusted(-gap, -gap, gap, gap)) > 0:
            return True
        if scene.current is not None and scene.node_rect(scene.current).adjusted(-reach, -reach, reach, reach) \
                .intersects(rect):  # the step's ring reaches further out
            return True
        b = self.boxes
        g = rect.adjusted(-gap, -gap, gap, gap)
        around = (b[:, 0] <= own.left()) & (b[:, 1] <= own.top()) & (b[:, 2] >= own.right()) & \
            (b[:, 3] >= own.bottom())
        hit = (b[:, 2] > g.left()) & (b[:, 0] < g.right()) & (b[:, 3] > g.top()) & (b[:, 1] < g.bottom()) & \
            (b[:, 1] >= view.top())
        return bool(np.any(hit & ~around))

    def paint(self, painter: QPainter, exposed: QRectF, view: QRectF, zoom: float) -> None:
        pins = [p for p in self.pins(view, zoom) if p.rect.intersects(exposed)]
        if not pins:
            return
        st = self.scene.style
        t = st.theme
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setFont(st.small_font)
        background = st.colors["background"]
        fill = st.color("module.fill")
        accent = st.color("module.accent")
        for pin in pins:
            frame = pin.frame
            radius = frame.radius * 0.4
            tab = pin.rect.adjusted(0, 2 * t.scale, 0, -2 * t.scale)
            # opaque, in the colour the frames around it give the canvas there: the edges under it never show
            # through the letters
            under = QColor(background)
            for _ in range(self._level(frame)):
                under = _over(fill, 0.55, under)
            pen = QPen(accent, t.pen_width(1.0))
            if frame.unit.kind == REPEAT:
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.setBrush(st.colors["highlight"] if frame.lit else under)
            painter.drawRoundedRect(tab, radius, radius)
            painter.setPen(st.colors["text"] if frame.lit else accent)
            text_rect = pin.rect.adjusted(frame.radius * 0.4, 0, 0, 0)
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, pin.text)
        painter.restore()

    def _level(self, frame: FrameItem) -> int:
        """How many frames are drawn under `frame`'s title, itself included (their tints add up)."""
        level, units, frames = 1, self.scene.folding.units, self.scene.frames
        parent = frame.unit.parent
        while parent is not None:
            level += parent in frames
            parent = units[parent].parent if parent in units else None
        return level


def _over(color: QColor, alpha: float, under: QColor) -> QColor:
    """`color` at opacity `alpha` painted over the opaque `under`."""
    return QColor.fromRgbF(*(alpha * a + (1 - alpha) * b for a, b in (
        (color.redF(), under.redF()), (color.greenF(), under.greenF()), (color.blueF(), under.blueF()))))

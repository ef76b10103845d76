"""The neuron view: a dense network drawn as the classic diagram, beside the op graph.

Layers are columns of circles joined by one line per weight, red for positive and blue for
negative (the inspector's heatmap colours), thicker and stronger for larger magnitudes; a toggle
draws the weights' gradients at the cursor instead. Each neuron shows its activation (and, where
there is room, its pre-activation z) for the selected sample, and the layer whose op the debugger
cursor is on lights up, forward and backward.

Deep and wide networks stay legible, never drawing one thing over another: titles that do not fit across their
columns stand upright (every k-th when even that is too tight, the names on hover); value labels show only where
they fit; a gap between two columns with more lines than its area can show apart keeps each neuron's strongest
inputs (by |w|, or by |∂L/∂w| with the toggle); a layer taller than the view (784 inputs) draws its first and last
neurons around a "⋮ n" mark. A caption under the diagram says what is left out.

A narrow view (a dock dragged thin, a small window) gets the diagram laid out for its real size, never a bigger one
that the view would cut at both sides: the margins beside the first and last columns shrink with it, numbers and
marks that would run past the edge stay in their tooltips, and where even a few pixels a column do not fit, a
note asks for a wider view instead of a diagram drawn over itself.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPen, QTextOption
from PySide6.QtWidgets import (
    QCheckBox,
    QGraphicsEllipseItem,
    QGraphicsLineItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsTextItem,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ...debugger import BACKWARD
from ..bridge import SessionBridge
from ..colormap import COLORS, diverging_rgba
from ..format import MINUS, fmt_num
from ..guard import guarded
from ..selection import Selection
from ..theme import ThemeManager
from .neuron_layers import (
    DenseLayer,
    NotDense,
    dense_layers,
    per_neuron,
    sample_count,
    shown_neurons,
    strongest_inputs,
    thinned_titles,
)


def _ordinal(n: int) -> str:
    return f"{n}{'nd' if n == 2 else 'rd' if n == 3 else 'th'}"


class _FitView(QGraphicsView):
    """Says when its viewport has its new size, the moment to fit the diagram in again."""

    resized = Signal()

    @guarded
    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self.resized.emit()


POSITIVE = QColor(*[int(c) for c in COLORS[-1]])
NEGATIVE = QColor(*[int(c) for c in COLORS[0]])
LIVE_RATE_HZ = 5.0  # weights redrawn from a running trainer at most this often
TITLE_GAP = 6  # px kept between two titles
MAX_TITLE_SHARE = 0.3  # of the view's height: an upright title longer than this is shortened in the middle
MIN_SPACING = 6  # px between two neurons' centres; a layer with more than fit shows its ends
LINE_AREA = 16  # px: a gap between columns shows about one line per LINE_AREA² of its area apart, not more
MAX_FAN_IN = 4  # lines into a neuron of a thinned gap: more converge into one blot at the neuron
MIN_FAN_IN = 2
MARGIN = 40  # px beside the first and the last column (titles, numbers, the lit band) in a view 200 px wide or more
MIN_MARGIN = 14  # px: in a narrower view the margin is a fifth of its width, down to this
MIN_COLUMN = 8  # px between two columns' centres, and MIN_ROOM of height for the neurons: with less, a note instead
MIN_ROOM = 24
TOO_NARROW = "Too small for the diagram: widen the Neurons view"


@dataclass
class _Plan:
    """The diagram's layout for one viewport size, and what it leaves out."""

    column: float  # px between two columns' centres
    edge: float  # px beside the first and the last column's centre, within the view
    spacing: float  # px between two neurons' centres
    r: float  # a neuron's radius
    titles: list[str]  # every layer's whole title
    upright: bool  # titles read upwards (they do not fit across)
    title_step: int  # every k-th title is drawn
    title_length: float  # px an upright title may take
    gap: float  # px kept between neighbours' texts
    note_height: float  # px a line of the caption takes
    mark: int  # places a "⋮ n" mark takes in a column
    labels: list[str]
    sizes: list[int]
    shown: list[list[int | None]] = field(default_factory=list)  # the neurons each column draws; None: the ⋮ mark
    room: float = 0.0  # px of height the neurons have
    keep: list[int] = field(default_factory=list)  # the lines into each neuron of a column (0 for the input)

    @property
    def title_layers(self) -> list[int]:
        return thinned_titles(len(self.titles), self.title_step)

    def drawn(self, li: int) -> int:
        return sum(i is not None for i in self.shown[li])

    def places(self, li: int) -> int:
        """The height of column `li` in neuron spacings, its mark's included."""
        return len(self.shown[li]) + (self.mark - 1 if None in self.shown[li] else 0)

    def notes(self) -> list[str]:
        """What the diagram leaves out, a line each: neurons of a wide layer, lines, titles."""
        elided: dict[tuple[int, int], list[str]] = {}  # layers of one width drawn alike share a line
        for li, (label, size) in enumerate(zip(self.labels, self.sizes, strict=True)):
            if self.drawn(li) < size:
                elided.setdefault((self.drawn(li), size), []).append(label)
        notes = []
        for (drawn, size), labels in elided.items():
            named = ", ".join(labels) if len(labels) <= 3 else f"{labels[0]} … {labels[-1]} ({len(labels)} layers)"
            notes.append(f"{named}: {drawn} of {size} neurons drawn{' each' if len(labels) > 1 else ''}, "
                         "the first and the last")
        thinned = {(keep, self.drawn(li - 1)) for li, keep in enumerate(self.keep) if li and keep < self.drawn(li - 1)}
        keeps = sorted({keep for keep, _ in thinned})
        if len(thinned) == 1:
            ((keep, inputs),) = thinned
            notes.append(f"lines: each neuron's {keep} strongest of {inputs} inputs")
        elif thinned:
            most = f"{keeps[0]}–{keeps[-1]}" if len(keeps) > 1 else f"{keeps[0]}"
            notes.append(f"lines: each neuron's {most} strongest inputs")
        if self.title_step > 1:
            notes.append(f"titles: every {_ordinal(self.title_step)} layer's (hover a column for its name)")
        return notes


class NeuronView(QWidget):
    applicable = Signal(bool)  # whether the session's graph is a dense network this view can draw

    def __init__(self, bridge: SessionBridge, selection: Selection, themes: ThemeManager,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("neuronView")
        self.bridge, self.selection, self.themes = bridge, selection, themes
        self.by_gradient = QCheckBox("Lines by gradient")
        self.by_gradient.setObjectName("neuronByGradient")
        self.by_gradient.setToolTip("Colour and size the lines by ∂L/∂w at the cursor instead of by the weights")
        self.by_gradient.toggled.connect(lambda _on: self._color_edges())
        self.sample = QSpinBox()
        self.sample.setObjectName("neuronSample")
        self.sample.setPrefix("sample ")
        self.sample.setToolTip("Which sample of the batch the neurons show")
        self.sample.valueChanged.connect(lambda _v: self._show_values())
        self.legend = QLabel()
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(self.by_gradient)
        bar.addWidget(self.sample)
        bar.addWidget(self.legend, 1)
        self.scene = QGraphicsScene(self)
        self.view = _FitView(self.scene)
        self._relayout = QTimer(self)  # a drag of the dock's edge resizes many times: lay out once it rests
        self._relayout.setSingleShot(True)
        self._relayout.setInterval(40)
        self._relayout.timeout.connect(self._lay_out)
        self.view.resized.connect(self._resized)
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.view.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.view.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.view.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.message = QLabel()
        self.message.setObjectName("neuronMessage")
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.message)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addLayout(bar)
        lay.addWidget(self.stack, 1)
        self.layers: list[DenseLayer] = []
        self.neurons: list[list[QGraphicsEllipseItem]] = []
        self.texts: list[list[tuple[QGraphicsSimpleTextItem, QGraphicsSimpleTextItem]]] = []
        # edges[layer][i][j]: the line from the i-th drawn input to the j-th drawn neuron, None until first drawn
        self.edges: list[list[list[QGraphicsLineItem | None]]] = []
        self.rows: list[list[int]] = []  # the neurons each column draws (all but a wide layer's middle)
        self.marks: list[QGraphicsSimpleTextItem | None] = []  # "⋮ n" where a column leaves neurons out
        self.titles: list[QGraphicsSimpleTextItem | None] = []  # None: thinned out
        self.caption: QGraphicsSimpleTextItem | None = None  # what is left out, under the diagram
        self.plan: _Plan | None = None
        self._drawn: list[set[tuple[int, int]]] = []  # the (i, j) lines shown into each column
        self._z_fits: list[bool] = []
        self._values_fit = False
        self._centres: list[list[tuple[float, float]]] = []
        self.bands: list[QGraphicsRectItem] = []  # behind each column, lit when its op is the step
        self.edge_bands: list[QGraphicsRectItem | None] = []  # behind the lines into each layer
        self._weights: Mapping[str, Any] | None = None  # live parameters from a trainer, else the session's
        self._graph: Any = None  # the graph the layers were read from
        self._last_live = 0.0
        bridge.sessionChanged.connect(lambda _s: self.rebuild())
        bridge.traceChanged.connect(self._trace_changed)
        bridge.cursorMoved.connect(lambda _c: self._cursor_moved())
        selection.changed.connect(self._selection_changed)
        themes.changed.connect(self.rebuild)
        self.rebuild()

    @property
    def drawable(self) -> bool:
        """Drawn, and drawn for the session's graph (another view may hear of a new session first)."""
        return self.stack.currentWidget() is self.view and self._graph is self.bridge.session.graph

    # -- building ----------------------------------------------------------------------------------
    def rebuild(self) -> None:
        """Read the layers from the session's graph (or say why there are none) and draw them."""
        self._clear()
        self._weights = None
        s = self.bridge.session
        self._graph = s.graph
        try:
            self.layers = dense_layers(s.graph)
        except NotDense as exc:
            self.layers = []
            self._say(f"The neuron view draws dense networks. {exc}")
            self.applicable.emit(False)
            return
        self.applicable.emit(True)
        self.stack.setCurrentWidget(self.view)
        self.by_gradient.setEnabled(True)
        self.sample.setEnabled(True)
        self.sample.setRange(0, max(0, sample_count(s.graph, self.layers) - 1))
        self._lay_out()

    def _clear(self) -> None:
        self.scene.clear()
        self.neurons, self.texts, self.edges, self.bands, self.edge_bands = [], [], [], [], []
        self.rows, self.marks, self.titles, self._drawn, self.caption = [], [], [], [], None
        self.plan = None

    def _resized(self) -> None:
        """Small diagrams follow the size at once; big ones (thousands of lines) once the resizing rests."""
        if sum(len(drawn) for drawn in self._drawn) < 1000:
            self._lay_out()
        else:
            self._relayout.start()

    def _lay_out(self) -> None:
        """Place the diagram to fill the view at its real size (type stays readable; no zooming out)."""
        if not self.drawable or not self.layers:
            return
        self._clear()
        if self._build_items():
            self._color_edges()
            self._show_values()
            self._light_up()
        self.scene.setSceneRect(self.scene.itemsBoundingRect().adjusted(-4, -4, 4, 4))
        self.view.setBackgroundBrush(self.themes.theme.color("background"))

    def _too_small(self) -> None:
        """In place of a diagram that cannot be drawn apart in the view: a note, wrapped to the view's width."""
        theme = self.themes.theme
        note = QGraphicsTextItem()
        note.setFont(theme.font(9))
        note.setDefaultTextColor(theme.color("muted"))
        option = note.document().defaultTextOption()
        option.setWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        option.setAlignment(Qt.AlignmentFlag.AlignCenter)
        note.document().setDefaultTextOption(option)
        note.document().setDocumentMargin(0)
        note.setPlainText(TOO_NARROW)
        note.setTextWidth(max(1, self.view.viewport().width() - 10))
        note.setToolTip(TOO_NARROW)
        self.scene.addItem(note)
        self.caption = None

    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)
        self.by_gradient.setEnabled(False)
        self.sample.setEnabled(False)
        self.legend.setText("")

    def _plan(self) -> _Plan:
        """Where everything goes to fill the view's viewport, and what is left out so that nothing overlaps."""
        theme = self.themes.theme
        viewport = self.view.viewport().size()
        width, height = viewport.width(), viewport.height()
        margin = min(theme.px(MARGIN), max(theme.px(MIN_MARGIN), 0.2 * width))
        metrics = QFontMetrics(theme.font(11, bold=True))
        titles = [f"{layer.label} ({layer.size})" for layer in self.layers]
        widths = [metrics.horizontalAdvance(t) for t in titles]
        gap, spans = theme.px(TITLE_GAP), max(1, len(self.layers) - 1)
        # titles across their columns as long as neighbours keep apart (every tutorial network); else upright
        # where they fit whole (every k-th when even upright ones would touch); else every k-th across, whole; else
        # upright, shortened in the middle
        edge = max(margin, widths[0] / 2 + theme.px(6), widths[-1] / 2 + theme.px(6))
        column = (width - 2 * edge) / spans
        top = theme.px(44)  # a title across, and the margins
        upright, step = False, 1
        longest = min(max(widths), MAX_TITLE_SHARE * height)
        if any((a + b) / 2 + gap > column for a, b in itertools.pairwise(widths)):
            up_edge = max(margin, metrics.height() / 2 + theme.px(6))
            up_column = (width - 2 * up_edge) / spans
            across_step = math.ceil((max(widths) + gap) / column)
            across = column > 0 and len(thinned_titles(len(titles), across_step)) >= min(3, len(titles))
            if max(widths) > longest and across:
                step = across_step
            else:
                upright, column, edge = True, up_column, up_edge
                step = max(1, math.ceil((metrics.height() + gap) / column))
                top += longest - metrics.height()
        small = QFontMetrics(theme.font(9))
        mark = math.ceil((small.height() + theme.px(2)) / theme.px(MIN_SPACING))
        plan = _Plan(column, edge, 0.0, 0.0, titles, upright, step, longest, gap,
                     small.height(), mark, [la.label for la in self.layers], [la.size for la in self.layers])
        # room for the caption that says what is left out: less room may leave more out, so until it holds
        notes = 0
        for _ in range(4):
            self._fill(plan, height - top - (notes * plan.note_height + theme.px(6) if notes else 0))
            if len(plan.notes()) <= notes:
                break
            notes = len(plan.notes())
        return plan

    def _fill(self, plan: _Plan, room: float) -> None:
        """Neurons, their size and the lines each gap keeps, for `room` pixels of height."""
        theme = self.themes.theme
        plan.room = room
        places = max(1, int(room // theme.px(MIN_SPACING)))
        plan.shown = [shown_neurons(layer.size, places, plan.mark) for layer in self.layers]
        widest = max(plan.places(li) for li in range(len(self.layers)))
        plan.spacing = min(theme.px(64), room / widest)
        plan.r = max(theme.px(2.5), min(theme.px(18), 0.36 * plan.spacing, 0.2 * plan.column))
        # lines a gap between two columns can show apart: about one per LINE_AREA² of its area; a gap with more
        # keeps each neuron's strongest inputs, at most MAX_FAN_IN and at least two (one alone reads as a chain)
        area = max(0.0, plan.column - 2 * plan.r) * widest * plan.spacing
        plan.keep = [0]
        for before, after in itertools.pairwise(plan.shown):
            inputs, neurons = sum(i is not None for i in before), sum(j is not None for j in after)
            budget = area / theme.px(LINE_AREA) ** 2
            plan.keep.append(inputs if inputs * neurons <= budget
                             else min(inputs, max(MIN_FAN_IN, min(MAX_FAN_IN, int(budget // neurons)))))

    def _build_items(self) -> bool:
        """The diagram's items for the view's size; False where it is too small for one (a note says so)."""
        theme = self.themes.theme
        plan = self._plan()
        if plan.column < theme.px(MIN_COLUMN) or plan.room < theme.px(MIN_ROOM):
            self._too_small()
            return False
        self.plan = plan
        column, spacing, r = plan.column, plan.spacing, plan.r
        tall = max(plan.places(li) for li in range(len(self.layers))) * spacing
        text_font, small_font = theme.font(10.5), theme.font(9)
        title_font = theme.font(11, bold=True)
        metrics, small = QFontMetrics(title_font), QFontMetrics(small_font)
        z_template = small.horizontalAdvance(f"z {MINUS}0.00")  # a typical z; `_show_values` checks each one
        self.rows, self.marks, self.titles = [], [], []
        self._z_fits = []
        centres: list[list[tuple[float, float]]] = []
        for li in range(len(self.layers)):
            x = li * column
            slots = plan.shown[li]
            steps = [plan.mark if index is None else 1 for index in slots]  # the mark takes more than a neuron
            places = [sum(steps[:k]) + (steps[k] - 1) / 2 for k in range(len(slots))]
            ys = [(p - (plan.places(li) - 1) / 2) * spacing for p in places]
            pad = max(0.0, min(theme.px(8), plan.edge - r - 1))  # the lit band stays within the view's edge
            band = self.scene.addRect(QRectF(x - r - pad, -tall / 2 - pad, 2 * (r + pad), tall + 2 * pad),
                                      QPen(Qt.PenStyle.NoPen), QBrush(Qt.BrushStyle.NoBrush))
            band.setZValue(-2)
            band.setToolTip(plan.titles[li])  # the name of a column whose title is thinned out
            self.bands.append(band)
            self.titles.append(self._title(li, x, -tall / 2 - theme.px(12), title_font, metrics))
            row, labels, indices, centre = [], [], [], []
            mark = None
            for y, index in zip(ys, slots, strict=True):
                if index is None:
                    mark = self._mark(li, x, y, small_font)
                    continue
                item = self.scene.addEllipse(QRectF(x - r, y - r, 2 * r, 2 * r))
                item.setZValue(1)
                row.append(item)
                value = self.scene.addSimpleText("", text_font)
                value.setZValue(2)
                value.setData(0, (x, y))
                z = self.scene.addSimpleText("", small_font)
                z.setZValue(2)
                z.setData(0, (x, y + r + theme.px(1)))
                labels.append((value, z))
                indices.append(index)
                centre.append((x, y))
            # the last column's z also keeps within the margin, or it would run past the view's edge
            self._z_fits.append(li > 0 and spacing - 2 * r >= small_font.pixelSize() + theme.px(2)
                                and z_template + plan.gap <= column
                                and (li < len(self.layers) - 1 or z_template / 2 + theme.px(2) <= plan.edge))
            self.neurons.append(row)
            self.texts.append(labels)
            self.rows.append(indices)
            self.marks.append(mark)
            centres.append(centre)
        self._values_fit = r >= theme.px(10)
        self.edges.append([])
        self.edge_bands.append(None)
        self._centres = centres
        for li in range(1, len(self.layers)):
            (x0, _), (x1, _) = centres[li - 1][0], centres[li][0]
            band = self.scene.addRect(QRectF(x0 + r, -tall / 2, x1 - x0 - 2 * r, tall), QPen(Qt.PenStyle.NoPen),
                                      QBrush(Qt.BrushStyle.NoBrush))
            band.setZValue(-2)
            self.edge_bands.append(band)
            # made when first drawn: a thinned gap draws a few of its (up to 64 × 64) lines
            self.edges.append([[None] * len(centres[li]) for _ in centres[li - 1]])
        self._drawn = [set() for _ in self.layers]
        self.caption = None
        notes = plan.notes()
        if notes:
            self.caption = self._caption(notes, (len(self.layers) - 1) * column / 2, tall / 2 + theme.px(12),
                                         small_font)
        self.legend.setText(
            f"<span style='color:{POSITIVE.name()}'>━ positive</span>  "
            f"<span style='color:{NEGATIVE.name()}'>━ negative</span>")
        return True

    def _title(self, li: int, x: float, bottom: float, font: QFont,
               metrics: QFontMetrics) -> QGraphicsSimpleTextItem | None:
        """Layer `li`'s title, its lower edge at `bottom`: across its column, or upright reading upwards (shortened
        in the middle when long), or none when thinned out."""
        plan, theme = self.plan, self.themes.theme
        if li not in plan.title_layers:
            return None
        text = plan.titles[li]
        if plan.upright and metrics.horizontalAdvance(text) > plan.title_length:
            text = metrics.elidedText(text, Qt.TextElideMode.ElideMiddle, int(plan.title_length))
        title = self.scene.addSimpleText(text, font)
        title.setBrush(theme.color("text"))
        title.setToolTip(plan.titles[li])
        rect = title.boundingRect()
        if plan.upright:
            title.setRotation(-90)  # (0, 0) stays put; the text runs up from it, its height to the right
            title.setPos(x - rect.height() / 2, bottom)
        else:
            title.setPos(x - rect.width() / 2, bottom - rect.height())
        return title

    def _mark(self, li: int, x: float, y: float, font: QFont) -> QGraphicsSimpleTextItem:
        """The mark "⋮ n" in place of the neurons a wide layer leaves out (n where the column has room for it)."""
        theme, plan = self.themes.theme, self.plan
        slots = plan.shown[li]
        at = slots.index(None)
        first, last = slots[at - 1] + 1, slots[at + 1] - 1  # type: ignore[operator]
        hidden = last - first + 1
        mark = self.scene.addSimpleText(f"⋮ {hidden}", font)
        outer = li in (0, len(self.layers) - 1)  # the first and last columns' marks also keep within the margin
        wide = mark.boundingRect().width()
        if wide + plan.gap > plan.column or (outer and wide / 2 > plan.edge):
            mark.setText("⋮")
        mark.setBrush(theme.color("muted"))
        mark.setToolTip(f"{self.layers[li].label}: neurons {first}–{last} ({hidden} of {self.layers[li].size}) "
                        "are not drawn")
        mark.setZValue(3)
        rect = mark.boundingRect()
        mark.setPos(x - rect.width() / 2, y - rect.height() / 2)
        # on the background's colour: the lines of the neighbouring neurons would cross it
        chip = self.scene.addRect(mark.sceneBoundingRect().adjusted(-1, 0, 1, 0), QPen(Qt.PenStyle.NoPen),
                                  QBrush(theme.color("background")))
        chip.setZValue(2.5)
        return mark

    def _caption(self, notes: list[str], x: float, y: float, font: QFont) -> QGraphicsSimpleTextItem:
        """What the diagram leaves out, under it: a line each, shortened to the view's width (whole in the tooltip)."""
        theme = self.themes.theme
        metrics = QFontMetrics(font)
        room = max(1, self.view.viewport().width() - theme.px(12))
        text = "\n".join(metrics.elidedText(note, Qt.TextElideMode.ElideRight, room) for note in notes)
        caption = self.scene.addSimpleText(text, font)
        caption.setBrush(theme.color("muted"))
        caption.setToolTip("\n".join(notes))
        rect = caption.boundingRect()
        caption.setPos(x - rect.width() / 2, y)
        return caption

    # -- what the lines show -----------------------------------------------------------------------
    def edge_values(self, li: int, by_gradient: bool | None = None) -> np.ndarray | None:
        """The (inputs, neurons) matrix the lines into layer `li` show: weights, or their gradient at the cursor."""
        layer = self.layers[li]
        s = self.bridge.session
        if layer.weight is None or layer.weight not in s.params:
            return None
        if self.by_gradient.isChecked() if by_gradient is None else by_gradient:
            g = s.grad(layer.weight)
            return None if g is None else layer.weight_matrix(g)
        if self._weights is not None and layer.weight in self._weights:
            return layer.weight_matrix(s.backend.to_numpy(self._weights[layer.weight]))
        return layer.weight_matrix(s.backend.to_numpy(s.params[layer.weight]))

    def _color_edges(self) -> None:
        theme = self.themes.theme
        gradient = self.by_gradient.isChecked()
        for li in range(1, len(self.edges)):
            values = self.edge_values(li)
            rows, cols = self.rows[li - 1], self.rows[li]
            if values is None:  # gradients not reached yet at this cursor: the weights choose the lines, dotted
                weights = self.edge_values(li, by_gradient=False)
                shown = None if weights is None else weights[np.ix_(rows, cols)]
                pen = QPen(theme.color("edge"), theme.pen_width(0.4), Qt.PenStyle.DotLine)
                for i, j in self._select_lines(li, shown):
                    self._line(li, i, j).setPen(pen)
                continue
            top = float(np.max(np.abs(values))) if values.size else 0.0
            top = top if np.isfinite(top) and top > 0 else 1.0
            shown = values[np.ix_(rows, cols)]
            name, what = self.layers[li].weight, "∂L/∂w" if gradient else "w"
            # lines into neurons packed closer than a thick line's room get thinner (they would meet in a blot), a
            # thinned gap's sooner: its lines are the strongest, all of them thick
            room = theme.px(20 if self.plan.keep[li] < len(rows) else 12)
            thick = min(1.0, self.plan.spacing / room)
            for i, j in self._select_lines(li, shown):
                v = float(shown[i, j])
                t = min(1.0, abs(v) / top) if np.isfinite(v) else 1.0
                color = QColor(POSITIVE if v > 0 else NEGATIVE)
                color.setAlphaF(0.25 + 0.75 * t)
                line = self._line(li, i, j)
                line.setPen(QPen(color, theme.pen_width((0.3 + 2.7 * t) * thick)))
                line.setToolTip(f"{name}: input {rows[i]} → neuron {cols[j]}\n{what} = {fmt_num(v)}")

    def _select_lines(self, li: int, values: np.ndarray | None) -> list[tuple[int, int]]:
        """Show the lines into column `li` its plan keeps (each neuron's strongest by |values|), hide the others."""
        assert self.plan is not None
        keep, inputs = self.plan.keep[li], len(self.rows[li - 1])
        if keep >= inputs:
            wanted = {(i, j) for i in range(inputs) for j in range(len(self.rows[li]))}
        elif values is not None:
            wanted = {(int(i), int(j)) for i, j in np.argwhere(strongest_inputs(values, keep))}
        else:
            wanted = self._drawn[li]  # nothing to rank by: the lines shown stay
        for i, j in self._drawn[li] - wanted:
            line = self.edges[li][i][j]
            if line is not None:
                line.setVisible(False)
        self._drawn[li] = wanted
        return sorted(wanted)

    def _line(self, li: int, i: int, j: int) -> QGraphicsLineItem:
        """The line from the i-th drawn input to the j-th drawn neuron of column `li`, made the first time."""
        line = self.edges[li][i][j]
        if line is None:
            (xa, ya), (xb, yb), r = self._centres[li - 1][i], self._centres[li][j], self.plan.r
            line = self.scene.addLine(xa + r, ya, xb - r, yb)
            self.edges[li][i][j] = line
        line.setVisible(True)
        return line

    def show_weights(self, params: Mapping[str, Any] | None) -> bool:
        """Draw the lines from `params` (a running trainer's), at most LIVE_RATE_HZ times a second."""
        if not self.drawable or not self.isVisible() or self.by_gradient.isChecked():
            return False
        now = time.perf_counter()
        if params is not None and now - self._last_live < 1.0 / LIVE_RATE_HZ:
            return False
        self._last_live = now
        self._weights = params
        self._color_edges()
        return True

    # -- the neurons -------------------------------------------------------------------------------
    def _show_values(self) -> None:
        if not self.drawable or self.plan is None:  # a new network's sample range is set before it is drawn
            return
        theme = self.themes.theme
        s = self.bridge.session
        sample = self.sample.value()
        column, room = self.plan.column, self.plan.gap
        for li, layer in enumerate(self.layers):
            act = per_neuron(s.value(layer.act), sample, layer.size) if layer.act else None
            pre = per_neuron(s.value(layer.pre), sample, layer.size) if layer.pre else None
            shown = act if act is not None else pre if layer.act is None else None
            fills = None
            if shown is not None:
                vmax = float(np.max(np.abs(shown))) if np.all(np.isfinite(shown)) else 1.0
                fills = diverging_rgba(shown, vmax if vmax > 0 else 1.0)
            for slot, (item, (value, z)) in enumerate(zip(self.neurons[li], self.texts[li], strict=True)):
                k = self.rows[li][slot]
                fill = theme.color("chip") if fills is None else QColor(*[int(c) for c in fills[k]])
                item.setBrush(fill)
                value.setBrush(QColor("#ffffff") if fill.lightnessF() < 0.45 else theme.color("text"))
                value.setText("" if shown is None else fmt_num(shown[k], 2))
                z.setText("" if pre is None or layer.act is None else f"z {fmt_num(pre[k], 2)}")
                self._centre(value)
                self._centre(z, below=True)
                tip = [f"{layer.label}[{k}], sample {sample}"]
                if pre is not None:
                    tip.append(f"pre-activation z = {fmt_num(pre[k])}")
                if act is not None:
                    tip.append(f"activation a = {fmt_num(act[k])}")
                if pre is None and act is None:
                    tip.append("not computed yet at this step")
                item.setToolTip("\n".join(tip))
            # a column's numbers all or none (a neuron without one looks unfinished): one wider than the column
            # would run into the next column's, so they are left to the tooltips
            labels = self.texts[li]
            values_fit = self._values_fit and all(v.boundingRect().width() + room <= column for v, _ in labels)
            z_fit = self._z_fits[li] and all(z.boundingRect().width() + room <= column for _, z in labels)
            if li == len(self.layers) - 1:  # nothing of the last column's past the view's edge
                z_fit = z_fit and all(z.boundingRect().width() / 2 <= self.plan.edge for _, z in labels)
            for value, z in labels:
                value.setVisible(values_fit)
                z.setVisible(z_fit)
                # a hidden label keeps no text: the scene's bounds (what the view centres) count hidden items
                if not values_fit:
                    value.setText("")
                if not z_fit:
                    z.setText("")
        for row in self.texts:
            for _value, z in row:
                z.setBrush(theme.color("muted"))

    @staticmethod
    def _centre(item: QGraphicsSimpleTextItem, below: bool = False) -> None:
        x, y = item.data(0)
        rect = item.boundingRect()
        item.setPos(x - rect.width() / 2, y if below else y - rect.height() / 2)

    def values_of(self, li: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(pre-activations, activations) of layer `li` for the shown sample, as the neurons display them."""
        s, layer, sample = self.bridge.session, self.layers[li], self.sample.value()
        pre = per_neuron(s.value(layer.pre), sample, layer.size) if layer.pre else None
        act = per_neuron(s.value(layer.act), sample, layer.size) if layer.act else None
        return pre, act

    def lit_layer(self) -> tuple[int, str] | None:
        """(layer index, phase) the debugger cursor lights up, or None."""
        s = self.bridge.session
        record = s.current
        if record is None or not self.layers:
            return None
        name = record.node.name
        for li, layer in enumerate(self.layers):
            if name in layer.nodes:
                return li, record.phase
        if s.loss_node is not None and name == s.loss_node.name:
            return len(self.layers) - 1, record.phase
        return None

    def _light_up(self) -> None:
        theme = self.themes.theme
        lit = self.lit_layer() if self.drawable else None
        for li, band in enumerate(self.bands):
            on = lit is not None and lit[0] == li
            color = QColor(theme.color("gradient" if lit and lit[1] == BACKWARD else "highlight"))
            color.setAlphaF(0.28)
            band.setBrush(QBrush(color) if on else QBrush(Qt.BrushStyle.NoBrush))
            edge_band = self.edge_bands[li]
            if edge_band is not None:
                on_edges = on and lit is not None and self.layers[li].pre == self.bridge.session.current.node.name
                color.setAlphaF(0.16)
                edge_band.setBrush(QBrush(color) if on_edges else QBrush(Qt.BrushStyle.NoBrush))
            # at most 0.6 of the radius: projector pens round a small neuron (a dense layer's) would fill it black
            width = theme.pen_width(2.2 if on else 0.9)
            pen = QPen(theme.color("text"), min(width, 0.6 * self.plan.r) if self.plan else width)
            for item in self.neurons[li]:
                item.setPen(pen)

    # -- session events ----------------------------------------------------------------------------
    def _trace_changed(self) -> None:
        self._weights = None  # the session has the parameters now
        if not self.drawable:
            return
        self.sample.setRange(0, max(0, sample_count(self.bridge.session.graph, self.layers) - 1))
        self._color_edges()
        self._show_values()
        self._light_up()

    def _cursor_moved(self) -> None:
        if not self.drawable:
            return
        if self.by_gradient.isChecked():
            self._color_edges()
        self._show_values()
        self._light_up()

    def _selection_changed(self) -> None:
        """An element picked in the inspector picks its sample (row) here."""
        index = self.selection.index
        if index and self.drawable and self.selection.node in {n for layer in self.layers for n in layer.nodes}:
            shape = self.bridge.session.graph[self.selection.node].shape
            if len(shape) >= 2:
                self.sample.setValue(int(index[0]))

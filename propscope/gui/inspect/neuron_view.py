"""The neuron view: a dense network drawn as the classic diagram, beside the op graph.

Layers are columns of circles joined by one line per weight, red for positive and blue for
negative (the inspector's heatmap colours), thicker and stronger for larger magnitudes; a toggle
draws the weights' gradients at the cursor instead. Each neuron shows its activation (and, where
there is room, its pre-activation z) for the selected sample, and the layer whose op the debugger
cursor is on lights up, forward and backward. Above `MAX_NEURONS` a layer it says so instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QGraphicsEllipseItem,
    QGraphicsLineItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
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
from ..format import fmt_num
from ..guard import guarded
from ..selection import Selection
from ..theme import ThemeManager
from .neuron_layers import DenseLayer, NotDense, dense_layers, per_neuron, sample_count, too_wide


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
        self.edges: list[list[list[QGraphicsLineItem]]] = []  # edges[layer][i][j]: input i -> neuron j
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
        wide = too_wide(self.layers)
        if wide:
            self._say(wide)
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

    def _resized(self) -> None:
        """Small diagrams follow the size at once; big ones (thousands of lines) once the resizing rests."""
        if sum(len(row) for grid in self.edges for row in grid) < 1000:
            self._lay_out()
        else:
            self._relayout.start()

    def _lay_out(self) -> None:
        """Place the diagram to fill the view at its real size (type stays readable; no zooming out)."""
        if not self.drawable or not self.layers:
            return
        self._clear()
        self._build_items()
        self._color_edges()
        self._show_values()
        self._light_up()
        self.scene.setSceneRect(self.scene.itemsBoundingRect().adjusted(-4, -4, 4, 4))
        self.view.setBackgroundBrush(self.themes.theme.color("background"))

    def _say(self, text: str) -> None:
        self.message.setText(text)
        self.stack.setCurrentWidget(self.message)
        self.by_gradient.setEnabled(False)
        self.sample.setEnabled(False)
        self.legend.setText("")

    def _geometry(self) -> tuple[float, float, float]:
        """(column spacing, neuron spacing, radius) in pixels, to fill the view's viewport."""
        theme = self.themes.theme
        viewport = self.view.viewport().size()
        width, height = max(viewport.width(), theme.px(200)), max(viewport.height(), theme.px(150))
        widest = max(layer.size for layer in self.layers)
        titles = QFontMetrics(theme.font(11, bold=True))
        edge = max(theme.px(40), *(titles.horizontalAdvance(f"{la.label} ({la.size})") / 2 + theme.px(6)
                                   for la in (self.layers[0], self.layers[-1])))
        column = (width - 2 * edge) / max(1, len(self.layers) - 1)
        spacing = min(theme.px(64), (height - theme.px(44)) / widest)
        return column, spacing, max(theme.px(2.5), min(theme.px(18), 0.36 * spacing, 0.2 * column))

    def _build_items(self) -> None:
        theme = self.themes.theme
        column, spacing, r = self._geometry()
        tall = max(layer.size for layer in self.layers) * spacing
        text_font, small_font = theme.font(10.5), theme.font(9)
        centres: list[list[tuple[float, float]]] = []
        for li, layer in enumerate(self.layers):
            x = li * column
            ys = [(k - (layer.size - 1) / 2) * spacing for k in range(layer.size)]
            centres.append([(x, y) for y in ys])
            pad = theme.px(8)
            band = self.scene.addRect(QRectF(x - r - pad, -tall / 2 - pad, 2 * (r + pad), tall + 2 * pad),
                                      QPen(Qt.PenStyle.NoPen), QBrush(Qt.BrushStyle.NoBrush))
            band.setZValue(-2)
            self.bands.append(band)
            title = self.scene.addSimpleText(f"{layer.label} ({layer.size})", theme.font(11, bold=True))
            title.setBrush(theme.color("text"))
            title.setPos(x - title.boundingRect().width() / 2, -tall / 2 - theme.px(12) - title.boundingRect().height())
            row, labels = [], []
            for y in ys:
                item = self.scene.addEllipse(QRectF(x - r, y - r, 2 * r, 2 * r))
                item.setZValue(1)
                row.append(item)
                value = self.scene.addSimpleText("", text_font)
                value.setZValue(2)
                value.setData(0, (x, y))
                z = self.scene.addSimpleText("", small_font)
                z.setZValue(2)
                z.setData(0, (x, y + r + theme.px(1)))
                z.setVisible(spacing - 2 * r >= small_font.pixelSize() + theme.px(2) and li > 0)
                value.setVisible(r >= theme.px(10))
                labels.append((value, z))
            self.neurons.append(row)
            self.texts.append(labels)
        self.edges.append([])
        self.edge_bands.append(None)
        for li in range(1, len(self.layers)):
            (x0, _), (x1, _) = centres[li - 1][0], centres[li][0]
            band = self.scene.addRect(QRectF(x0 + r, -tall / 2, x1 - x0 - 2 * r, tall), QPen(Qt.PenStyle.NoPen),
                                      QBrush(Qt.BrushStyle.NoBrush))
            band.setZValue(-2)
            self.edge_bands.append(band)
            grid = []
            for (xa, ya) in centres[li - 1]:
                grid.append([self.scene.addLine(xa + r, ya, xb - r, yb) for (xb, yb) in centres[li]])
            self.edges.append(grid)
        self.legend.setText(
            f"<span style='color:{POSITIVE.name()}'>━ positive</span>  "
            f"<span style='color:{NEGATIVE.name()}'>━ negative</span>")

    # -- what the lines show -----------------------------------------------------------------------
    def edge_values(self, li: int) -> np.ndarray | None:
        """The (inputs, neurons) matrix the lines into layer `li` show: weights, or their gradient at the cursor."""
        layer = self.layers[li]
        s = self.bridge.session
        if layer.weight is None or layer.weight not in s.params:
            return None
        if self.by_gradient.isChecked():
            g = s.grad(layer.weight)
            return None if g is None else layer.weight_matrix(g)
        if self._weights is not None and layer.weight in self._weights:
            return layer.weight_matrix(s.backend.to_numpy(self._weights[layer.weight]))
        return layer.weight_matrix(s.backend.to_numpy(s.params[layer.weight]))

    def _color_edges(self) -> None:
        theme = self.themes.theme
        for li in range(1, len(self.edges)):
            values = self.edge_values(li)
            grid = self.edges[li]
            if values is None:  # gradients not reached yet at this cursor
                pen = QPen(theme.color("edge"), theme.pen_width(0.4), Qt.PenStyle.DotLine)
                for row in grid:
                    for line in row:
                        line.setPen(pen)
                continue
            top = float(np.max(np.abs(values))) if values.size else 0.0
            top = top if np.isfinite(top) and top > 0 else 1.0
            for i, row in enumerate(grid):
                for j, line in enumerate(row):
                    v = float(values[i, j])
                    t = min(1.0, abs(v) / top) if np.isfinite(v) else 1.0
                    color = QColor(POSITIVE if v > 0 else NEGATIVE)
                    color.setAlphaF(0.25 + 0.75 * t)
                    line.setPen(QPen(color, theme.pen_width(0.3 + 2.7 * t)))
                    line.setToolTip(f"{self.layers[li].weight}: input {i} → neuron {j}\n"
                                    f"{'∂L/∂w' if self.by_gradient.isChecked() else 'w'} = {fmt_num(v)}")

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
        if not self.drawable:
            return
        theme = self.themes.theme
        s = self.bridge.session
        sample = self.sample.value()
        for li, layer in enumerate(self.layers):
            act = per_neuron(s.value(layer.act), sample, layer.size) if layer.act else None
            pre = per_neuron(s.value(layer.pre), sample, layer.size) if layer.pre else None
            shown = act if act is not None else pre if layer.act is None else None
            fills = None
            if shown is not None:
                vmax = float(np.max(np.abs(shown))) if np.all(np.isfinite(shown)) else 1.0
                fills = diverging_rgba(shown, vmax if vmax > 0 else 1.0)
            for k, (item, (value, z)) in enumerate(zip(self.neurons[li], self.texts[li], strict=True)):
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
            pen = QPen(theme.color("text"), theme.pen_width(2.2 if on else 0.9))
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

"""The Diff dock: compare two states of the network shown and colour the graph by their relative change.

A and B are each one of: the session as it stands, a recorded epoch of its training run, a model
file of the same architecture (.propscope, .pt2, .onnx, a state dict), or, for both at once, the
two backends (Debug ▸ Compare backends, Ctrl+B: the pass up to the cursor on NumPy and on
PyTorch, with its tolerance verdict). What is compared, parameters, values or gradients, is chosen
here; the numbers come from `debugger.diff` (and `debugger.compare` for the tolerance). The table
lists the nodes by change (nodes only in A or only in B say so); the selected node shows A, B and
A - B as numbers and heatmaps in the inspector, and as heatmaps here where there is room to read
them. Colours: green where nothing changed, through yellow (a relative change of 0.1 %, or the
backends' tolerance), to red far above; grey where a side has no number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QFontMetricsF, QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...debugger.compare import Comparison, NodeDiff
from ...debugger.diff import KINDS, ONLY_A, ONLY_B, GraphDiff, NodeChange, State, as_state, diff
from ...graph.errors import PropscopeError
from ..bridge import SessionBridge
from ..flow_layout import FlowLayout, hold_wrapped_height
from ..format import fmt_num
from ..guard import guarded, guarded_answer
from ..inspect.heat_grid import HeatGrid, Tile
from ..selection import Selection
from ..theme import Theme, ThemeManager
from .legend import GREEN, RED, Legend, diff_color

RELATIVE_MIDDLE = 1e-3  # the legend's yellow: a relative change of 0.1 %; green far below, red at 1 and above
KIND_TEXT = {"params": "parameters", "values": "values", "grads": "gradients"}
NOW, EPOCH, FILE = "now", "epoch", "file"
HEADERS = ["node", "op", "change", "status"]
BACKEND_HEADERS = ["node", "op", "max |A−B|", "tolerance"]
AGREES, BEYOND, NOT_YET = "agrees", "beyond tolerance", "not computed yet"
NOTHING_COMPUTED = "nothing computed yet: step or Run to end first"
FILE_LABEL_CHARS = 24  # about as many characters of a chosen file's name as its button shows


def change_color(change: float) -> QColor:
    return diff_color(change, RELATIVE_MIDDLE)


def as_matrix(x: np.ndarray | None) -> np.ndarray:
    """A 2-D view for a heatmap: a vector as one row, higher ranks folded onto their first axis."""
    if x is None:
        return np.full((1, 1), np.nan)
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        return a.reshape(1, 1)
    if a.ndim == 1:
        return a.reshape(1, -1)
    return a.reshape(a.shape[0], -1)


class SourcePicker(QWidget):
    """One side of the diff: the session now, a recorded epoch, or a file."""

    changed = Signal()

    def __init__(self, title: str, bridge: SessionBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.path: str | None = None
        self.kind = QComboBox(self)
        self.kind.setObjectName(f"diffSource{title}")
        self.epoch = QComboBox(self)
        self.epoch.setObjectName(f"diffEpoch{title}")
        self.file_button = QPushButton("Choose…", self)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel(f"{title}:", self))
        lay.addWidget(self.kind)
        lay.addWidget(self.epoch)
        lay.addWidget(self.file_button)
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.epoch.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self.file_button.clicked.connect(self._choose_file)
        self.refresh()

    def refresh(self) -> None:
        """Offer the session's recorded epochs (after training or opening a run)."""
        snaps = self.bridge.session.snapshots
        epochs = snaps.epochs if snaps else []
        current = self.kind.currentData()
        self.kind.blockSignals(True)
        self.kind.clear()
        self.kind.addItem("the network now", NOW)
        if epochs:
            self.kind.addItem("a recorded epoch", EPOCH)
        self.kind.addItem("a model file", FILE)
        index = self.kind.findData(current)
        self.kind.setCurrentIndex(max(0, index))
        self.kind.blockSignals(False)
        self.epoch.blockSignals(True)
        kept = self.epoch.currentData()
        self.epoch.clear()
        for e in epochs:
            self.epoch.addItem(str(e), e)
        found = self.epoch.findData(kept)
        self.epoch.setCurrentIndex(found if found >= 0 else 0)
        self.epoch.blockSignals(False)
        self._kind_changed()

    def _kind_changed(self) -> None:
        kind = self.kind.currentData()
        self.epoch.setVisible(kind == EPOCH)
        self.file_button.setVisible(kind == FILE)
        self.file_button.setText(self._file_label())
        self.file_button.setToolTip(self.path or "Choose a model file of the same architecture")
        self.changed.emit()

    def _file_label(self) -> str:
        """The chosen file's name, shortened in its middle: a long name on the button widened the Diff dock (and
        so the window) past a 1024 px screen."""
        if not self.path:
            return "Choose…"
        metrics = self.file_button.fontMetrics()
        return metrics.elidedText(Path(self.path).name, Qt.TextElideMode.ElideMiddle,
                                  metrics.averageCharWidth() * FILE_LABEL_CHARS)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Compare with a model file", "",
            "Models (*.propscope *.pt2 *.onnx *.pt *.pth *.ckpt *.tar *.bin *.safetensors);;All (*)")
        if path:
            self.set_file(path)

    def set_file(self, path: str) -> None:
        self.path = path
        self.kind.setCurrentIndex(self.kind.findData(FILE))
        self._kind_changed()

    def set_epoch(self, epoch: int) -> None:
        self.kind.setCurrentIndex(self.kind.findData(EPOCH))
        self.epoch.setCurrentIndex(self.epoch.findData(epoch))

    def set_now(self) -> None:
        self.kind.setCurrentIndex(self.kind.findData(NOW))

    def state(self) -> State:
        s = self.bridge.session
        kind = self.kind.currentData()
        if kind == EPOCH:
            return as_state((s, int(self.epoch.currentData())))
        if kind == FILE:
            if not self.path:
                raise PropscopeError("choose a model file to compare with")
            loaded = as_state(self.path, arch=None)
            return State(loaded.label, loaded.model, loaded.params, dict(s.batch))
        return as_state(s)


TABLE_MIN_ROWS = 2  # rows of the table a short dock still shows under its header


class DiffTable(QTableWidget):
    """The nodes by difference; at least its header and `TABLE_MIN_ROWS` rows tall, in the type it shows.

    (Qt's minimum for a scroll area is 70 px whatever the type: two rows under the header in normal type, one in
    projector type.)"""

    @guarded_answer(QSize())
    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        rows = self.horizontalHeader().sizeHint().height() + TABLE_MIN_ROWS * self.verticalHeader().defaultSectionSize()
        bar = self.horizontalScrollBar()
        if bar.isVisible():
            rows += bar.sizeHint().height()
        return QSize(hint.width(), rows + 2 * self.frameWidth())


class DetailLabel(QLabel):
    """The selected node's line and norms: never shorter than its wrapped text at its width.

    Why: it sits in a splitter, and a splitter sizes its children by their minimum size, never asking a word-wrapped
    label its height for a width; the label's own minimum counts a line or two, so in a short dock (1024×768, the
    pane a third of the dock's width) its last lines were cut at the dock's bottom. Its minimum height follows its
    width, so the view's held minimum (`hold_wrapped_height`) makes the dock room for it."""

    @guarded_answer(QSize())
    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        if not self.text() or self.width() <= 0:
            return hint
        return QSize(hint.width(), max(hint.height(), self.heightForWidth(self.width())))

    @guarded
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self.updateGeometry()  # another width, another number of lines: the layouts ask again


READABLE_HEAT_PX = 64  # (scaled by the theme) the least height the heatmaps are drawn in; below it, a line says where
WHERE_THE_MAPS_ARE = (  # the longest that fits is written in their place
    "No room to draw A, B and A − B here: the Inspector shows them (View ▸ Inspector)",
    "A, B and A − B: in the Inspector (View ▸ Inspector)",
    "A, B and A − B: in the Inspector",
    "Maps: in the Inspector",
)


class DiffHeat(HeatGrid):
    """The selected node's A, B and A − B heatmaps, drawn only where they can be read: at least `READABLE_HEAT_PX`
    tall and no tile cut at an edge. Elsewhere one line says where they are (the inspector's A, B and A − B panels).

    Why: they take the height the node's line and norms leave, which was 1 px at 1024×768 and 49 px at 1920×1080 in
    projector type: three tiles of a few pixels each, drawn as if they could be read."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.readable_px = READABLE_HEAT_PX

    def apply_theme(self, theme: Theme) -> None:
        self.readable_px = theme.px(READABLE_HEAT_PX)
        super().apply_theme(theme)
        # room for the line that says where the maps are, whatever the node's lines leave
        self.setMinimumHeight(math.ceil(self.note_fm.height()) + 2)

    def _fonts(self) -> None:
        super()._fonts()
        self.note_font: QFont = self.theme.font(10)
        self.note_font.setItalic(True)
        self.note_fm = QFontMetricsF(self.note_font)

    @property
    def readable(self) -> bool:
        """Whether the tiles are drawn (else the note is)."""
        if not self.placed or self.height() < self.readable_px:
            return False
        room = QRectF(self.rect()).adjusted(-0.5, -0.5, 0.5, 0.5)
        return all(room.contains(placed.cells) for placed in self.placed)

    def note(self) -> str:
        """The line written in the tiles' place: the longest form that fits the width ('' with nothing to show)."""
        if not self.tiles or self.readable:
            return ""
        room = self.width() - 4
        return next((text for text in WHERE_THE_MAPS_ARE if self.note_fm.horizontalAdvance(text) <= room),
                    self.note_fm.elidedText(WHERE_THE_MAPS_ARE[-1], Qt.TextElideMode.ElideRight, room))

    @guarded
    def paintEvent(self, event: QPaintEvent) -> None:
        if self.readable:
            super().paintEvent(event)
            return
        text = self.note()
        if not text:
            return
        p = QPainter(self)
        p.setFont(self.note_font)
        p.setPen(self.theme.color("muted"))
        p.drawText(QRectF(self.rect()).adjusted(2, 0, -2, 0),
                   Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, text)
        p.end()

    def tooltip_at(self, pos: QPointF) -> str:
        if self.tiles and not self.readable:
            return WHERE_THE_MAPS_ARE[0]
        return super().tooltip_at(pos)

    def cell_at(self, pos: QPointF) -> tuple[int, int, int] | None:
        return super().cell_at(pos) if self.readable else None


class DiffView(QWidget):
    colour = Signal(object, object)  # ({node: difference}, its colour function) for the canvas; (None, None) clears
    shown = Signal()  # another result, kind or clear: the inspector's A, B and A − B follow
    backendsRequested = Signal()  # NumPy vs PyTorch: the window runs Compare backends (in a job) and shows it here
    nodeClicked = Signal(str)
    message = Signal(str)

    def __init__(self, bridge: SessionBridge, selection: Selection, themes: ThemeManager,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("diffView")
        self.bridge, self.selection, self.themes = bridge, selection, themes
        self.result: GraphDiff | None = None
        self._sources_stale = False
        self.a = SourcePicker("A", bridge, self)
        self.b = SourcePicker("B", bridge, self)
        self.what = QComboBox(self)
        self.what.setObjectName("diffKind")
        for kind in KINDS:
            self.what.addItem(KIND_TEXT[kind], kind)
        self.compare = QPushButton("Compare", self)
        self.compare.setObjectName("diffCompare")
        self.backends = QPushButton("NumPy vs PyTorch", self)
        self.backends.setObjectName("diffBackends")
        self.backends.setToolTip("The pass up to the current step on both backends, checked against the "
                                 "tolerance (Debug ▸ Compare backends, Ctrl+B)")
        self.clear_button = QPushButton("Clear", self)
        self.summary = QLabel(self)
        self.summary.setObjectName("diffSummary")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.legend = Legend(self)
        self.table = DiffTable(0, 4, self)
        self.table.setObjectName("diffTable")
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.detail = DetailLabel(self)
        self.detail.setObjectName("diffDetail")
        self.detail.setTextFormat(Qt.TextFormat.PlainText)
        self.detail.setWordWrap(True)  # its norms line would make the dock as wide as itself
        # its lines from the top, the heatmaps under them (centred, a taller pane left a gap above the name)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        # in a short dock the node's line and its norms come first, then the heatmaps in what is left, or where that
        # is too little to read them, the line that says where they are (its minimum height, set with the theme;
        # the grid's own minimum size hint squeezed both to half and cut the norms through their middle)
        self.heat = DiffHeat(self)
        kind_row = QWidget(self)  # "compare [values]" stays on one line
        kl = QHBoxLayout(kind_row)
        kl.setContentsMargins(0, 0, 0, 0)
        kl.addWidget(QLabel("compare", kind_row))
        kl.addWidget(self.what)
        # the controls wrap onto a second line in a narrow dock: in one row they made the window at least 1419 px
        top = FlowLayout()
        for w in (self.a, self.b, kind_row, self.compare, self.backends, self.clear_button):
            top.addWidget(w)
        right = QWidget(self)
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.detail)
        rl.addWidget(self.heat, 1)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.table)
        split.addWidget(right)
        # the table gets most of a wide dock's room (projector mode: the window's width); beside a heatmap as wide as
        # the table, at 1024 px its node column was cut to "b…"
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 1)
        split.setSizes([2000, 1000])  # weights: the same two thirds from the first layout on
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(self.summary)
        lay.addWidget(self.legend)
        lay.addWidget(split, 1)
        hold_wrapped_height(self)  # the controls' second line and the summary's lines, drawn over each other otherwise
        self.compare.clicked.connect(self.run)
        self.backends.clicked.connect(self.backendsRequested)
        self.clear_button.clicked.connect(self.clear)
        self.what.currentIndexChanged.connect(lambda _i: self.show_result(self.result))
        self.table.itemSelectionChanged.connect(self._row_chosen)
        self.selection.changed.connect(self._show_detail)
        bridge.sessionChanged.connect(self._session_changed)
        themes.changed.connect(self._theme)
        self._theme()
        self.clear()

    def _theme(self) -> None:
        theme = self.themes.theme
        # rows as tall as the type (projector mode's is larger than the style's default row, which cut the
        # underscores off names: cross_entropy read "cross entropy"); a fixed height, not ResizeToContents, which
        # would measure every row of a 20,000-node table
        # (the application's font: the table gets it only after this signal)
        self.table.verticalHeader().setDefaultSectionSize(QFontMetrics(QApplication.font()).height() + theme.px(6))
        self.heat.apply_theme(theme)
        self.legend.text = theme.color("text")
        self.legend.setMinimumHeight(theme.px(36))
        self.legend.update()

    def _session_changed(self, _session: object) -> None:
        self.clear()
        self.refresh_sources()

    @property
    def kind(self) -> str:
        return str(self.what.currentData())

    def refresh_sources(self) -> None:
        self._sources_stale = False
        self.a.refresh()
        self.b.refresh()

    def sources_changed(self) -> None:
        """New recorded epochs (a run ended): offered now if the dock is shown, else when it is."""
        if self.isVisible():
            self.refresh_sources()
        else:
            self._sources_stale = True  # a thousand epochs in two lists are not worth building unseen

    @guarded
    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._sources_stale:
            self.refresh_sources()

    # -- running ---------------------------------------------------------------------------------
    def run(self) -> GraphDiff | None:
        """Compare A with B now (values and gradients on the session's batch)."""
        try:
            result = diff(self.a.state(), self.b.state(), trace=True, data=dict(self.bridge.session.batch))
        except PropscopeError as exc:
            self.message.emit(f"Cannot compare: {exc}")
            self.summary.setText(str(exc))
            return None
        self.show_result(result)
        return result

    def compare_epochs(self, epoch_a: int, epoch_b: int) -> GraphDiff | None:
        self.refresh_sources()
        self.a.set_epoch(epoch_a)
        self.b.set_epoch(epoch_b)
        return self.run()

    def clear(self) -> None:
        self.result = None
        self.table.setRowCount(0)
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.summary.setText("Choose A and B, then Compare; or NumPy vs PyTorch for the two backends.")
        self.legend.hide()
        self.detail.setText("")
        self.heat.set_tiles([])
        self.colour.emit(None, None)
        self.shown.emit()

    @property
    def comparison(self) -> Comparison | None:
        """The tolerance check, where the result shown is the two backends'."""
        return None if self.result is None else self.result.comparison

    # -- showing ---------------------------------------------------------------------------------
    def show_result(self, result: GraphDiff | None) -> None:
        self.result = result
        if result is None:
            return
        if result.comparison is not None:
            self._show_backends(result, result.comparison)
        else:
            self._show_changes(result)
        self.legend.show()
        self._show_detail()
        self.shown.emit()

    def _show_changes(self, result: GraphDiff) -> None:
        kind = self.kind
        rows = result.ranked(kind)
        rows += [r for r in result.rows if r.status in (ONLY_A, ONLY_B) and r not in rows]
        self._fill(HEADERS, [(r, _change_text(r, r.change(kind)), r.status, change_color(r.moved(kind)))
                             for r in rows])
        moved = result.changed(kind)
        only = sum(r.status in (ONLY_A, ONLY_B) for r in result.rows)
        self.summary.setText(escape(
            f"{result.label_a} vs {result.label_b}: {len(moved)} of "
            f"{len(result.parameters if kind == 'params' else result.rows)} nodes' {KIND_TEXT[kind]} changed"
            + (f"; {only} only in one of them" if only else ""), quote=False))
        self.legend.set_scale(RELATIVE_MIDDLE, "0.1 %")
        self.colour.emit(result.by_node(kind), change_color)

    def _show_backends(self, result: GraphDiff, check: Comparison) -> None:
        """The two backends: each node's largest |A − B| of the kind shown, against the tolerance."""
        kind = "grads" if self.kind == "grads" else "values"
        tol = check.tolerance
        diffs = {d.name: d for d in check.nodes}
        ranked = sorted(result.rows, key=lambda r: _rank(diffs[r.name].scaled(kind)), reverse=True)

        def cells(r: NodeChange) -> tuple[NodeChange, str, str, QColor]:
            d = diffs[r.name]
            raw = d.grad_diff if kind == "grads" else d.value_diff
            verdict = NOT_YET if math.isnan(raw) else AGREES if check.node_ok(d) else BEYOND
            return r, "–" if math.isnan(raw) else fmt_num(raw, 3), verdict, diff_color(d.scaled(kind), tol)

        self._fill(BACKEND_HEADERS, [cells(r) for r in ranked])
        self.summary.setText(backend_summary(check))
        self.legend.set_scale(tol, "tolerance")
        self.colour.emit({name: d.scaled(kind) for name, d in diffs.items()}, _tolerance_colors(tol))

    def _fill(self, headers: list[str], rows: list[tuple[NodeChange, str, str, QColor]]) -> None:
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(rows))
        for i, (r, change, status, color) in enumerate(rows):
            cells = [r.name + (f" → {r.name_b}" if r.name_b else ""), r.op, change, status]
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, r.name)
                if j == 2:
                    item.setBackground(color)
                    item.setForeground(QColor("black"))
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()

    def selected_pair(self, name: str | None) -> tuple[NodeChange, str, np.ndarray | None, np.ndarray | None] | None:
        """The row of node `name`, the kind shown for it, and its A and B arrays; None without a diff or node."""
        if self.result is None or not name:
            return None
        try:
            row = self.result.row(name)
        except KeyError:
            return None
        kind = "params" if row.is_parameter and self.kind == "params" else self.kind
        if kind == "params" and not row.is_parameter:
            kind = "values"
        a, b = self.result.pair(row.name, kind)
        return row, kind, a, b

    def _row_chosen(self) -> None:
        items = self.table.selectedItems()
        if items:
            name = items[0].data(Qt.ItemDataRole.UserRole)
            self.nodeClicked.emit(name)
            self._show_detail(name)

    def _show_detail(self, name: str | None = None) -> None:
        """A, B and A - B of the selected node: norms and largest difference, and three heatmaps."""
        picked = self.selected_pair(name or self.selection.node)
        if picked is None:
            return
        row, kind, a, b = picked
        if a is None and b is None:
            self.detail.setText(f"{row.name}: {row.status}; no {KIND_TEXT[kind]} to compare")
            self.heat.set_tiles([])
            return
        delta = a - b if a is not None and b is not None and a.shape == b.shape else None
        lines = [f"{row.name} ({row.op}) · {KIND_TEXT[kind]} · {row.status}",
                 f"|A| {_norm(a)}   |B| {_norm(b)}   |A−B| {_norm(delta)}   "
                 f"relative change {_change_text(row, row.change(kind))}"]
        self.detail.setText("\n".join(lines))
        scale = max((float(np.nanmax(np.abs(x))) for x in (a, b) if x is not None and x.size), default=1.0)
        small = all(x is None or x.size <= 64 for x in (a, b))
        tiles = [Tile(as_matrix(a), "A", vmax=scale, numbers=small), Tile(as_matrix(b), "B", vmax=scale, numbers=small)]
        if delta is not None:
            tiles.append(Tile(as_matrix(delta), "A − B", numbers=small))
        self.heat.set_tiles(tiles)


def nothing_computed(c: Comparison) -> bool:
    """Compared before the first step: no op has run on either backend, so there is no difference to speak of
    (the parameters and inputs they share agree trivially)."""
    return c.cursor == 0


def backend_status(c: Comparison) -> str:
    """The status bar's line for the two backends' runs."""
    if nothing_computed(c):
        return f"Compare backends at step 0: {NOTHING_COMPUTED}"
    return f"Compared at step {c.cursor}: largest difference {c.max_diff:.3g}"


def backend_summary(c: Comparison) -> str:
    """The tolerance verdict of the two backends' runs, as rich text (what `propscope compare` says)."""
    if nothing_computed(c):
        return (f"<b>{escape(c.reference)}</b> vs <b>{escape(c.other)}</b> at step 0/{c.steps}: "
                f"{escape(NOTHING_COMPUTED)}")
    verdict = (f"<b style='color:{GREEN.name()}'>all {len(c.nodes)} nodes agree</b>" if c.passed else
               f"<b style='color:{RED.name()}'>{len(c.failures)} node(s) beyond the tolerance</b>")
    worst = c.worst(1)
    top: NodeDiff | None = worst[0] if worst else None
    where = f"; worst: <b>{escape(top.name)}</b> ({fmt_num(top.worst, 3)})" if top is not None and top.worst > 0 else ""
    note = f"<br>{escape(c.explanation)}" if c.explanation is not None else ""
    return (f"<b>{escape(c.reference)}</b> vs <b>{escape(c.other)}</b> at step {c.cursor}/{c.steps}: largest "
            f"difference {fmt_num(c.max_diff, 3)}, tolerance {fmt_num(c.tolerance, 2)} — {verdict}{where}{note}")


def _tolerance_colors(tolerance: float) -> Callable[[float], QColor]:
    return lambda d: diff_color(d, tolerance)


def _rank(x: float) -> float:
    return -1.0 if math.isnan(x) else x


def _norm(x: Any) -> str:
    return "–" if x is None else fmt_num(float(np.linalg.norm(np.asarray(x, dtype=np.float64))), 4)


def _change_text(row: NodeChange, change: float) -> str:
    if row.status in (ONLY_A, ONLY_B):
        return "–"
    if math.isnan(change):
        return "–"
    return "0" if change == 0 else f"{change:.2e}"

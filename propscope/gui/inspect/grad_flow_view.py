"""Debug ▸ Gradient flow (Ctrl+Shift+G): every parameter's gradient after the whole backward pass, in the order the
forward pass first uses it (debugger/grad_flow.py), as a bar per parameter on a log scale and as a table. Flagged
parameters (vanishing, exploding, not finite, no gradient) are coloured on the graph too; a click on a bar or a row
shows that parameter there. The dock is made the first time it is used (`LazyDock`), pyqtgraph with it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..docks import LazyDock
from ..guard import guarded
from ..jobs import Job

if TYPE_CHECKING:
    from ...debugger.grad_flow import GradientFlow

# one colour per verdict ("" is a healthy gradient); the canvas gets the verdict's index in this table
COLORS = {"": "#2e9e44", "vanishing": "#1f77b4", "exploding": "#f08c00", "not finite": "#d62828",
          "no gradient": "#9e9e9e"}
VERDICTS = tuple(COLORS)
COLUMNS = ("step", "parameter", "flag", "shape", "‖∂L/∂w‖", "RMS", "max |g|", "‖g‖ / ‖w‖")  # the flag in sight


def verdict_color(code: float) -> QColor:
    """The canvas colour of a parameter by its verdict's index in VERDICTS."""
    index = int(code) if math.isfinite(code) and 0 <= code < len(VERDICTS) else len(VERDICTS) - 1
    return QColor(COLORS[VERDICTS[index]])


class _Number(QTableWidgetItem):
    """A table cell shown as text and sorted by its number (NaN last)."""

    def __init__(self, value: float, text: str) -> None:
        super().__init__(text)
        self.value = value
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, _Number):
            a, b = self.value, other.value
            return (not math.isnan(a) and math.isnan(b)) or (not math.isnan(b) and a < b)
        return super().__lt__(other)


class GradFlowView(QWidget):
    """The bars and the table; `parameterClicked` when the user picks one."""

    parameterClicked = Signal(str)

    def __init__(self, themes: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("gradFlow")
        self.themes = themes
        self.flow: GradientFlow | None = None
        self.summary = QLabel("Debug ▸ Gradient flow runs the whole backward pass and lists every parameter's "
                              "gradient.")
        self.summary.setObjectName("gradFlowSummary")
        self.summary.setWordWrap(True)
        import pyqtgraph as pg  # with the dock, not at the window's start

        self.plot = pg.PlotWidget()
        self.plot.setObjectName("gradFlowPlot")
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("left", "log₁₀ RMS(∂L/∂w)")
        self.plot.setLabel("bottom", "parameters, in forward order")
        self.plot.showGrid(y=True, alpha=0.25)
        self.plot.scene().sigMouseClicked.connect(self._plot_clicked)
        self.bars: Any = None
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("gradFlowTable")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)  # the flag, never cut off
        self.table.setSortingEnabled(True)
        self.table.cellClicked.connect(lambda row, _col: self._row_clicked(row))
        self.table.cellActivated.connect(lambda row, _col: self._row_clicked(row))
        split = QSplitter(Qt.Orientation.Horizontal)  # the dock sits under the graph: wide and low
        split.addWidget(self.plot)
        split.addWidget(self.table)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        self._theme()
        themes.changed.connect(self._theme)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(self.summary)
        lay.addWidget(split, 1)

    def _theme(self, *_: Any) -> None:
        from ..plot_style import style_plot

        style_plot(self.plot, self.themes.theme, widest_tick="-15")

    def set_flow(self, flow: GradientFlow | None) -> None:
        self.flow = flow
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)
        if self.bars is not None:
            self.plot.removeItem(self.bars)
            self.bars = None
        if flow is None:
            self.summary.setText("The gradients changed: Debug ▸ Gradient flow (Ctrl+Shift+G) lists them again.")
            return
        self.summary.setText(flow.summary())
        self.table.setRowCount(len(flow.rows))
        for i, r in enumerate(flow.rows):
            shape = "×".join(map(str, r.shape)) or "scalar"
            cells = [_Number(r.order + 1 if r.order >= 0 else math.nan, str(r.order + 1) if r.order >= 0 else "-"),
                     QTableWidgetItem(r.name), QTableWidgetItem(r.verdict or "ok"), QTableWidgetItem(shape),
                     _Number(r.norm, f"{r.norm:.3e}"), _Number(r.rms, f"{r.rms:.3e}"),
                     _Number(r.largest, f"{r.largest:.3e}"), _Number(r.ratio, f"{r.ratio:.3e}")]
            cells[1].setData(Qt.ItemDataRole.UserRole, r.name)
            cells[2].setForeground(QColor(COLORS[r.verdict]))
            if r.nonfinite:
                cells[2].setText(f"not finite ({r.nonfinite} entries)")
            for col, cell in enumerate(cells):
                cell.setToolTip(f"{r.name} · module {r.module or '(top)'}")
                self.table.setItem(i, col, cell)
        self.table.setSortingEnabled(True)
        self.table.sortItems(0, Qt.SortOrder.AscendingOrder)  # forward order, as the bars
        self._draw_bars(flow)

    def _draw_bars(self, flow: GradientFlow) -> None:
        import pyqtgraph as pg

        heights = [math.log10(r.rms) if r.rms > 0 else math.nan for r in flow.rows]
        finite = [h for h in heights if math.isfinite(h)]
        floor = math.floor(min(finite)) - 1 if finite else -1.0
        tops = [h if math.isfinite(h) else floor + 0.5 for h in heights]  # none or not finite: a stub at the floor
        brushes = [pg.mkBrush(COLORS[r.verdict]) for r in flow.rows]
        self.bars = pg.BarGraphItem(x=list(range(len(tops))), y0=floor, height=[t - floor for t in tops], width=0.8,
                                    brushes=brushes, pens=[pg.mkPen(None)] * len(tops))
        self.plot.addItem(self.bars)
        self.plot.setXRange(-1, len(tops), padding=0)
        self.plot.setYRange(floor, max(tops, default=0.0) + 0.5, padding=0)

    @guarded
    def _plot_clicked(self, event: Any) -> None:
        if self.flow is None or not self.flow.rows:
            return
        x = self.plot.getViewBox().mapSceneToView(event.scenePos()).x()
        i = round(x)
        if 0 <= i < len(self.flow.rows) and abs(x - i) <= 0.45:
            name = self.flow.rows[i].name
            self._select_row(name)
            self.parameterClicked.emit(name)

    def _row_clicked(self, row: int) -> None:
        item = self.table.item(row, 1)
        if item is not None:
            self.parameterClicked.emit(str(item.data(Qt.ItemDataRole.UserRole)))

    def _select_row(self, name: str) -> None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 1)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == name:
                self.table.selectRow(row)
                self.table.scrollToItem(item)
                return


class GradFlowRunner(QObject):
    """Runs the report for the window's session and shows it: in the dock, on the canvas, in the status bar."""

    def __init__(self, window: Any, dock: LazyDock) -> None:
        super().__init__(window)
        self.window, self.dock = window, dock
        self.session: Any = None
        window.bridge.sessionChanged.connect(lambda _s: self.clear())
        window.bridge.paramsChanged.connect(self.clear)  # trained: those gradients are of weights that are gone

    @property
    def view(self) -> GradFlowView:
        view = self.dock.contents()
        assert isinstance(view, GradFlowView)
        return view

    def run(self) -> Job | None:
        from ...debugger.grad_flow import gradient_flow  # when asked for, not at the window's start

        w = self.window
        s = w.bridge.session
        if s.loss_node is None:
            w.show_error("No gradient flow without a loss", "this session runs forward only: Debug ▸ Loss attaches "
                         "one (cross-entropy, MSE...), then Gradient flow runs the backward pass")
            return None
        w.debug.to_end.trigger()  # the whole pass, here as Run to end runs it: the inspector then shows the gradients
        if not s.at_end:  # an op that cannot run stopped it (the status bar says which)
            w.show_error("No gradient flow", "the backward pass stops before the end: "
                         f"{s.position_text()}; an op ahead cannot run")
            return None
        job = Job("Gradient flow…", lambda: gradient_flow(s), w)

        def done(flow: GradientFlow) -> None:
            if w.bridge.session is s:
                self.show(s, flow)

        return w._start(job, done, "No gradient flow")

    def show(self, session: Any, flow: GradientFlow) -> None:
        w = self.window
        self.session = session
        self.view.set_flow(flow)
        self.dock.show()
        self.dock.raise_()
        w.canvas.set_diffs({r.name: float(VERDICTS.index(r.verdict)) for r in flow.rows}, verdict_color)
        w.message(f"Gradient flow: {flow.summary()}")

    def clear(self) -> None:
        if self.session is None:
            return
        self.session = None
        self.window.canvas.set_diffs(None)
        if self.dock.built:
            self.view.set_flow(None)


def attach_grad_flow(window: Any) -> GradFlowRunner:
    """The Gradient flow dock (hidden, tabbed with the chain rule) and Debug ▸ Gradient flow (Ctrl+Shift+G)."""

    def make(dock: QDockWidget) -> None:
        view = GradFlowView(window.themes)
        view.parameterClicked.connect(window.canvas.reveal)
        dock.setWidget(view)

    dock = LazyDock("Gradient flow", "gradFlowDock", make, window)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    window.tabifyDockWidget(window.chain_dock, dock)
    window.chain_dock.raise_()
    dock.hide()
    runner = GradFlowRunner(window, dock)
    action = QAction("Gradient &flow", window)
    action.setObjectName("gradFlow")
    action.setShortcut(QKeySequence("Ctrl+Shift+G"))
    action.setStatusTip("Every parameter's gradient after the backward pass, in forward order; vanishing, exploding "
                        "and NaN gradients flagged and coloured on the graph")
    action.triggered.connect(runner.run)
    window.addAction(action)
    window.debug_menu.addAction(action)
    window.grad_flow_action = action
    window.grad_flow_dock = dock
    return runner

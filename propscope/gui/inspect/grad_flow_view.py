"""Debug ▸ Gradient flow (Ctrl+Shift+G): every parameter's gradient after the whole backward pass, in the order the
forward pass first uses it (debugger/grad_flow.py), as a bar per parameter on a log scale and as a table; a switch
above them shows ∂L/∂h at every module output instead (the gradient through depth), the same way, or why it
vanishes: every activation function's dead and saturated units (debugger/unit_health.py). Flagged rows (vanishing,
exploding, not finite, no gradient, dead, saturated) are coloured on the graph too; a click on a bar or a row shows
that parameter or value there. The dock is made the first time it is used (`LazyDock`), pyqtgraph with it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QBoxLayout,
    QButtonGroup,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..docks import LazyDock
from ..guard import guarded
from ..jobs import Job

if TYPE_CHECKING:
    from ...debugger.grad_flow import ActivationFlow, ActivationGradientFlow, GradientFlow, ParamFlow
    from ...debugger.unit_health import UnitHealth, UnitStats

# one colour per verdict ("" is a healthy gradient); the canvas gets the verdict's index in this table
COLORS = {"": "#2e9e44", "vanishing": "#1f77b4", "exploding": "#f08c00", "not finite": "#d62828",
          "no gradient": "#9e9e9e", "dead": "#7b3fa0", "saturated": "#00897b"}
VERDICTS = tuple(COLORS)
PARAMETERS, ACTIVATIONS, UNITS = "parameters", "activations", "units"  # what the dock shows
COLUMNS = ("step", "parameter", "flag", "shape", "‖∂L/∂w‖", "RMS", "max |g|", "‖g‖ / ‖w‖")  # the flag in sight
ACTIVATION_COLUMNS = ("step", "module", "flag", "output", "shape", "‖∂L/∂h‖", "RMS", "max |g|")
UNIT_COLUMNS = ("step", "module", "flag", "output", "op", "shape", "dead", "saturated", "zeros", "mean", "std")
FLAG_COLUMN = 2  # in all: the flag's column (projector mode shows it second, `_order_columns`)


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


def _stat(value: float | None) -> _Number:
    """A gradient statistic: `—` where it has none (no finite entry; ‖g‖/‖w‖ of zero weights), sorted last."""
    from ...debugger.grad_flow import number_text  # with the dock's rows, not at the window's start

    return _Number(math.nan if value is None else value, number_text(value))


def _param_cells(r: ParamFlow) -> list[QTableWidgetItem]:
    """A parameter's row, in COLUMNS' order; the flag in words, as `propscope grads` prints it."""
    shape = "×".join(map(str, r.shape)) or "scalar"
    return [_Number(r.order + 1 if r.order >= 0 else math.nan, str(r.order + 1) if r.order >= 0 else "-"),
            QTableWidgetItem(r.name), QTableWidgetItem(r.short_flag or "ok"), QTableWidgetItem(shape),
            _stat(r.stat(r.norm)), _stat(r.stat(r.rms)), _stat(r.stat(r.largest)), _stat(r.ratio)]


def _activation_cells(r: ActivationFlow) -> list[QTableWidgetItem]:
    """A module output's row, in ACTIVATION_COLUMNS' order."""
    shape = "×".join(map(str, r.shape)) or "scalar"
    return [_Number(r.order + 1, str(r.order + 1)), QTableWidgetItem(r.module or "(top)"),
            QTableWidgetItem(r.flag or "ok"),
            QTableWidgetItem(r.name), QTableWidgetItem(shape), _stat(r.stat(r.norm)), _stat(r.stat(r.rms)),
            _stat(r.stat(r.largest))]


def _share(value: float) -> _Number:
    return _Number(value, "-" if math.isnan(value) else f"{100 * value:.0f}%")


def _unit_cells(r: UnitStats) -> list[QTableWidgetItem]:
    """An activation function's output, in UNIT_COLUMNS' order."""
    shape = "×".join(map(str, r.shape)) or "scalar"
    return [_Number(r.order + 1, str(r.order + 1)), QTableWidgetItem(r.module or "(top)"),
            QTableWidgetItem(r.verdict or "ok"), QTableWidgetItem(r.name), QTableWidgetItem(r.op),
            QTableWidgetItem(shape), _share(r.dead), _share(r.saturated), _share(r.zeros),
            _Number(r.mean, f"{r.mean:.3g}"), _Number(r.std, f"{r.std:.3g}")]


def _unit_height(r: UnitStats) -> float:
    """A unit row's bar: the larger of its dead and saturated shares, in percent (0 where it has neither)."""
    shares = [v for v in (r.dead, r.saturated) if not math.isnan(v)]
    return 100.0 * max(shares, default=0.0)


class GradFlowView(QWidget):
    """The switch, the bars and the table; `nodeClicked` when the user picks a row (a parameter, or the node whose
    value a module output or an activation function's output is); `modeChanged` when the switch turns to
    PARAMETERS, ACTIVATIONS or UNITS."""

    nodeClicked = Signal(str)
    modeChanged = Signal(str)

    def __init__(self, themes: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("gradFlow")
        self.themes = themes
        self.flow: GradientFlow | None = None
        self.activations: ActivationGradientFlow | None = None
        self.units: UnitHealth | None = None
        self.mode = PARAMETERS
        self.summary = QLabel("Debug ▸ Gradient flow runs the whole backward pass and lists every parameter's "
                              "gradient, ∂L/∂h at every module output, or the dead and saturated units.")
        self.summary.setObjectName("gradFlowSummary")
        self.summary.setWordWrap(True)
        self.switch = QButtonGroup(self)
        self.switch.setExclusive(True)
        switch_row = QHBoxLayout()
        switch_row.setSpacing(0)
        for mode, text, tip in ((PARAMETERS, "Parameters", "every parameter's gradient ∂L/∂w, in forward order"),
                                (ACTIVATIONS, "Activations", "∂L/∂h at every module's output, in forward order: "
                                 "the gradient through depth, free of the inputs' scale"),
                                (UNITS, "Units", "every activation function's output: the share of dead units (a "
                                 "ReLU's 0 on every sample) and of saturated ones (a sigmoid or tanh at its flat "
                                 "ends), where the gradient stops")):
            button = QToolButton()
            button.setObjectName(f"gradFlow{text}")
            button.setText(text)
            button.setToolTip(tip)
            button.setCheckable(True)
            button.setChecked(mode == self.mode)
            button.setProperty("mode", mode)
            self.switch.addButton(button)
            switch_row.addWidget(button)
        switch_row.addStretch(1)
        self.switch.buttonToggled.connect(self._switched)
        self.top = QBoxLayout(QBoxLayout.Direction.LeftToRight)  # the switch, then the summary (see `_theme`)
        self.top.addLayout(switch_row)
        self.top.addWidget(self.summary, 1)
        import pyqtgraph as pg  # with the dock, not at the window's start

        self.plot = pg.PlotWidget()
        self.plot.setObjectName("gradFlowPlot")
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(y=True, alpha=0.25)
        self.plot.scene().sigMouseClicked.connect(self._plot_clicked)
        self.bars: Any = None
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("gradFlowTable")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        # rows as tall as their text: projector type is larger than the style's default row, which cut the
        # underscores off names (relu_1 read "relu 1")
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
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
        self._label_axes()
        self._theme()
        themes.changed.connect(self._theme)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addLayout(self.top)
        lay.addWidget(split, 1)

    def _theme(self, *_: Any) -> None:
        from ..plot_style import style_plot

        style_plot(self.plot, self.themes.theme, widest_tick="-15")
        # projector type is large and the dock narrower (it shares the width with the chain rule): the summary
        # beside the switch would wrap into a tall column, so it goes under it
        projector = self.themes.theme.projector
        self.top.setDirection(QBoxLayout.Direction.TopToBottom if projector else QBoxLayout.Direction.LeftToRight)
        self._order_columns()

    def _order_columns(self) -> None:
        """In projector mode the flag comes right after the step: at the room's type size a name column (a ResNet's
        `layer4.1.conv2.weight`) is as wide as the table, and the flag is what the room looks for."""
        header = self.table.horizontalHeader()
        want = FLAG_COLUMN - 1 if self.themes.theme.projector else FLAG_COLUMN
        header.moveSection(header.visualIndex(FLAG_COLUMN), want)

    @property
    def shown(self) -> GradientFlow | ActivationGradientFlow | UnitHealth | None:
        """What the switch shows."""
        return {PARAMETERS: self.flow, ACTIVATIONS: self.activations, UNITS: self.units}[self.mode]

    @property
    def rows(self) -> tuple[ParamFlow, ...] | tuple[ActivationFlow, ...] | tuple[UnitStats, ...]:
        """The rows shown: the parameters', the module outputs' or the activation functions', by the switch."""
        shown = self.shown
        return shown.rows if shown is not None else ()

    def set_flows(self, flow: GradientFlow | None, activations: ActivationGradientFlow | None = None,
                  units: UnitHealth | None = None) -> None:
        """Show these (the switch decides which); None: the gradients changed, nothing to show."""
        self.flow, self.activations, self.units = flow, activations, units
        self._show()

    def set_mode(self, mode: str) -> None:
        for button in self.switch.buttons():
            if button.property("mode") == mode:
                button.setChecked(True)  # `_switched` does the rest

    def _switched(self, button: Any, checked: bool) -> None:
        if not checked or button.property("mode") == self.mode:
            return
        self.mode = str(button.property("mode"))
        self._label_axes()
        self._show()
        self.modeChanged.emit(self.mode)

    def _label_axes(self) -> None:
        if self.mode == PARAMETERS:
            self.plot.setLabel("left", "log₁₀ RMS(∂L/∂w)")
            self.plot.setLabel("bottom", "parameters, in forward order")
        elif self.mode == ACTIVATIONS:
            self.plot.setLabel("left", "log₁₀ RMS(∂L/∂h)")
            self.plot.setLabel("bottom", "module outputs, in forward order")
        else:
            self.plot.setLabel("left", "% of units")
            self.plot.setLabel("bottom", "dead or saturated, per activation function")

    def _show(self) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)
        columns = {PARAMETERS: COLUMNS, ACTIVATIONS: ACTIVATION_COLUMNS, UNITS: UNIT_COLUMNS}[self.mode]
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels(columns)
        if self.bars is not None:
            self.plot.removeItem(self.bars)
            self.bars = None
        shown = self.shown
        cell_rows: list[list[QTableWidgetItem]] = []
        if self.mode == PARAMETERS and self.flow is not None:
            cell_rows = [_param_cells(r) for r in self.flow.rows]
        elif self.mode == ACTIVATIONS and self.activations is not None:
            cell_rows = [_activation_cells(r) for r in self.activations.rows]
        elif self.mode == UNITS and self.units is not None:
            cell_rows = [_unit_cells(r) for r in self.units.rows]
        if shown is None:
            self.summary.setText(
                "No backward pass without a loss: Debug ▸ Loss attaches one. Units needs the forward pass only."
                if self.units is not None else
                "The gradients changed: Debug ▸ Gradient flow (Ctrl+Shift+G) lists them again.")
            return
        self.summary.setText(shown.summary())
        rows = shown.rows
        self.table.setRowCount(len(rows))
        for i, (r, cells) in enumerate(zip(rows, cell_rows, strict=True)):
            cells[1].setData(Qt.ItemDataRole.UserRole, r.name)
            cells[2].setForeground(QColor(COLORS[r.verdict]))
            if self.mode == UNITS and r.nonfinite:  # the gradient rows say it in their own words (`flag`)
                cells[2].setText(f"not finite ({r.nonfinite} entries)")
            for col, cell in enumerate(cells):
                where = f"{r.name} · module {r.module or '(top)'}"
                # the cell has the verdict; why it was given is too long for the column: all of it on hover
                whole = getattr(r, "flag", None) or cell.text()  # the units' rows say theirs in the cell already
                cell.setToolTip(f"{whole}\n{where}" if col == FLAG_COLUMN else where)
                self.table.setItem(i, col, cell)
        self.table.setSortingEnabled(True)
        self.table.sortItems(0, Qt.SortOrder.AscendingOrder)  # forward order, as the bars
        self._order_columns()
        self._draw_bars(rows)

    def _draw_bars(self, rows: tuple[ParamFlow, ...] | tuple[ActivationFlow, ...] | tuple[UnitStats, ...]) -> None:
        import pyqtgraph as pg

        shares = self.mode == UNITS  # from 0 up to 100 %, where the gradient views have log₁₀ RMS
        heights = [_unit_height(r) if shares else math.log10(r.rms) if r.rms > 0 else math.nan
                   for r in rows]  # type: ignore[union-attr, arg-type]
        finite = [h for h in heights if math.isfinite(h)]
        floor = 0.0 if shares else math.floor(min(finite)) - 1 if finite else -1.0
        tops = [h if math.isfinite(h) else floor + 0.5 for h in heights]  # none or not finite: a stub at the floor
        brushes = [pg.mkBrush(COLORS[r.verdict]) for r in rows]
        self.bars = pg.BarGraphItem(x=list(range(len(tops))), y0=floor, height=[t - floor for t in tops], width=0.8,
                                    brushes=brushes, pens=[pg.mkPen(None)] * len(tops))
        self.plot.addItem(self.bars)
        self.plot.setXRange(-1, len(tops), padding=0)
        self.plot.setYRange(floor, 100.0 if shares else max(tops, default=0.0) + 0.5, padding=0)

    @guarded
    def _plot_clicked(self, event: Any) -> None:
        rows = self.rows
        if not rows:
            return
        x = self.plot.getViewBox().mapSceneToView(event.scenePos()).x()
        i = round(x)
        if 0 <= i < len(rows) and abs(x - i) <= 0.45:
            name = rows[i].name
            self._select_row(name)
            self.nodeClicked.emit(name)

    def _row_clicked(self, row: int) -> None:
        item = self.table.item(row, 1)
        if item is not None:
            self.nodeClicked.emit(str(item.data(Qt.ItemDataRole.UserRole)))

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
        """Debug ▸ Gradient flow: the pass to the end, then its measures in a job (returned where the pass was
        already there or got there within the first slice, else None: the job starts when the pass is done)."""
        w = self.window
        s = w.bridge.session
        w.last_error = None
        started: list[Job | None] = []

        def cannot(why: str) -> None:  # an op that cannot run, or the memory budget, stopped it
            w.show_error("No gradient flow", f"the pass stops before the end: {s.position_text()}; {why}")

        # the whole pass, as Run to end runs it (a slice at a time on a big model): the inspector then shows the
        # gradients; the measures when it is there
        w.debug.run_sliced(None, "Running to the end for the gradient flow", then=lambda: started.append(
            self._measure(s)), otherwise=cannot)
        return started[0] if started else None

    def _measure(self, s: Any) -> Job | None:
        from ...debugger.grad_flow import activation_flow, gradient_flow  # when asked for, not at the window's start
        from ...debugger.unit_health import unit_health

        w = self.window
        if w.bridge.session is not s:
            return None
        # every view at once: each only reads the values and gradients the trace now holds, so the switch is instant;
        # a session without a loss has no gradients, only the forward pass's units
        backward = s.loss_node is not None
        job = Job("Gradient flow…", lambda: (gradient_flow(s) if backward else None,
                                             activation_flow(s) if backward else None, unit_health(s)), w)

        def done(flows: tuple[GradientFlow | None, ActivationGradientFlow | None, UnitHealth]) -> None:
            if w.bridge.session is s:
                if not backward:
                    self.view.set_mode(UNITS)
                self.show(s, *flows)

        return w._start(job, done, "No gradient flow")

    def show(self, session: Any, flow: GradientFlow | None, activations: ActivationGradientFlow | None,
             units: UnitHealth | None = None) -> None:
        self.session = session
        self.view.set_flows(flow, activations, units)
        self.dock.show()
        self.dock.raise_()
        self.colour()

    def colour(self) -> None:
        """The canvas and the status bar for what the switch shows: parameters, or the nodes of module outputs or of
        activation functions."""
        if self.session is None:
            return
        view = self.view
        self.window.canvas.set_diffs({r.name: float(VERDICTS.index(r.verdict)) for r in view.rows}, verdict_color)
        self.window.message(f"Gradient flow: {view.summary.text()}")

    def clear(self) -> None:
        if self.session is None:
            return
        self.session = None
        self.window.canvas.set_diffs(None)
        if self.dock.built:
            self.view.set_flows(None)


def attach_grad_flow(window: Any) -> GradFlowRunner:
    """The Gradient flow dock (hidden, tabbed with the chain rule) and Debug ▸ Gradient flow (Ctrl+Shift+G)."""

    def make(dock: QDockWidget) -> None:
        view = GradFlowView(window.themes)
        view.nodeClicked.connect(window.canvas.reveal)
        view.modeChanged.connect(lambda _mode: runner.colour())  # the runner is made below, before the dock is
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
    action.setStatusTip("Every parameter's gradient after the backward pass, in forward order, ∂L/∂h at every "
                        "module output, or the dead and saturated units; vanishing, exploding and NaN gradients "
                        "flagged and coloured on the graph")
    action.triggered.connect(runner.run)
    window.addAction(action)
    window.debug_menu.addAction(action)
    window.grad_flow_action = action
    window.grad_flow_dock = dock
    return runner

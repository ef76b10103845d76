"""The inspector dock: the selected node's value and gradient at the cursor, and its formula.

Its rows (the node's header and formula, Value, Gradient, a gradient check's pair, a comparison's A | B | A − B)
sit in one scroll area, so the dock asks the window for a few lines of height, not for the sum of its rows: in
projector type at 1024×768 that sum was 466 px beside a canvas with 222, and the window grew past the screen; every
taller window then made the type bigger again, and bigger rows (the window reached 1486×3573). Where the dock has the
room, the rows fill it as before; where not, the header with the formula stays at the top and the rest scrolls, and
each panel's first line says the selected element's value (`TensorPanel`), so the numbers a teacher points at are read
without the table.
"""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..bridge import SessionBridge
from ..docks import DockScroll, ScrollBody
from ..format import fmt_index, fmt_shape
from ..guard import guarded_answer
from ..selection import Selection
from ..theme import ThemeManager
from .tensor_view import TensorPanel


class RowsScroll(DockScroll):
    """The inspector's rows (a `ScrollBody`), scrolled up and down where the dock is shorter than their sum, as any
    scrolling dock's; it asks for the rows' whole size where the dock's neighbours let it, and never for less than its
    least (the node's name and some formula)."""

    def __init__(self, rows: QWidget) -> None:
        super().__init__(rows)
        self.setObjectName("inspectorScroll")

    @guarded_answer(QSize())
    def sizeHint(self) -> QSize:
        rows = self.widget()
        hint = QSize() if rows is None else rows.sizeHint()
        least = self.minimumSizeHint()
        return QSize(max(hint.width(), least.width()), max(hint.height(), least.height()))


class Inspector(QWidget):
    def __init__(self, bridge: SessionBridge, selection: Selection, themes: ThemeManager,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inspector")
        self.bridge, self.selection, self.themes = bridge, selection, themes
        self.header = QLabel()
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.pin = QToolButton()
        self.pin.setText("Pin")
        self.pin.setCheckable(True)
        self.pin.setToolTip("Keep this node in the inspector while stepping (otherwise it follows the step)")
        self.pin.toggled.connect(self._pin)
        self.value_panel = TensorPanel("Value", "")
        self.grad_panel = TensorPanel("Gradient", "")
        for panel in (self.value_panel, self.grad_panel):
            panel.elementClicked.connect(self.selection.select_element)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.value_panel)
        split.addWidget(self.grad_panel)
        # Debug > Gradient check: the check's float64 analytic gradient beside the finite-difference one
        self.gradcheck: dict[str, Any] = {}
        self.analytic_panel = TensorPanel("Analytic gradient (float64)", "")
        self.numeric_panel = TensorPanel("Numeric gradient (central differences)", "")
        self.check_row = QSplitter(Qt.Orientation.Horizontal)
        self.check_row.setObjectName("gradcheckRow")
        for panel in (self.analytic_panel, self.numeric_panel):
            panel.elementClicked.connect(self.selection.select_element)
            self.check_row.addWidget(panel)
        self.check_row.hide()
        split.addWidget(self.check_row)
        self.split = split
        self._shown: str | None = None  # the node the rows show
        self.rows: list[Any] = []  # views other features add (gui/diff: A, B and A − B), see add_row
        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.pin, 0, Qt.AlignmentFlag.AlignTop)
        self.body = ScrollBody()
        self.body.setObjectName("inspectorRows")
        rows = QVBoxLayout(self.body)
        rows.setContentsMargins(6, 6, 6, 6)
        rows.addLayout(top)
        rows.addWidget(split, 1)
        self.scroll = RowsScroll(self.body)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.scroll)
        bridge.cursorMoved.connect(self.refresh)
        bridge.traceChanged.connect(self.refresh)
        bridge.sessionChanged.connect(lambda _s: self.refresh())
        selection.changed.connect(self.refresh)
        themes.changed.connect(self._theme)
        self._theme()

    def _pin(self, on: bool) -> None:
        self.selection.pinned = on

    def refresh(self) -> None:
        s = self.bridge.session
        name = self.selection.node
        if name is None or name not in s.graph:
            self.header.setText("<b>Nothing selected</b><br>Click a node in the graph.")
            self.value_panel.set_array(None, None)
            self.grad_panel.set_array(None, None)
            for row in self.rows:
                row.show_node(None, None)
            return
        node = s.graph[name]
        if name != self._shown:  # another node: its name and formula in sight first
            self.scroll.verticalScrollBar().setValue(0)
        self._shown = name
        index = self.selection.index
        where = f" · element {escape(fmt_index(index))}" if index else ""
        formula = "" if node.is_leaf else f"<br>{escape(node.op.formula)}"
        self.header.setText(f"<b>{escape(name)}</b> · {escape(node.op.name)} · {fmt_shape(node.shape)}{where}"
                            f"{formula}")
        value, grad = s.value(name), s.grad(name)
        step = s.node_phase_index(name, "forward")
        self.value_panel.set_title(
            f"Value of {name}",
            "Not computed yet: its forward step is "
            f"{'' if step is None else step + 1}." if step is not None else "No value.")
        back = s.node_phase_index(name, "backward")
        if node is s.loss_node:
            grad_wait = "∂L/∂L = 1 once the forward pass reaches the loss."
        elif s.loss_node is None:
            grad_wait = "No gradient: there is no loss, so no backward pass (Debug ▸ Loss attaches one)."
        elif back is None and not any(u.name for u in s.graph.users(name)):
            grad_wait = "No gradient: nothing uses this value."
        elif s.loss_node is not None and not s.gradient_flows(name):
            grad_wait = "No gradient flows here: this value only feeds indices, masks or the loss's target."
        else:
            grad_wait = "No gradient yet: it arrives during the backward pass."
        self.grad_panel.set_title(f"Gradient ∂L/∂{name}", grad_wait)
        self.value_panel.set_array(value, index)
        self.grad_panel.set_array(grad, index)
        self._show_gradcheck(name, index)
        for row in self.rows:
            row.show_node(name, index)

    def add_row(self, row: Any) -> None:
        """A row of views of the selected node under its value and gradient (a QWidget with show_node and
        apply_theme)."""
        self.split.addWidget(row)
        self.rows.append(row)
        row.apply_theme(self.themes.theme, QApplication.font())
        self.refresh()

    def set_gradcheck(self, results: dict[str, Any] | None) -> None:
        """Gradient-check results by leaf name (`GradCheckResult`s); None hides the comparison."""
        self.gradcheck = dict(results or {})
        self.refresh()

    def _show_gradcheck(self, name: str, index: Any) -> None:
        result = self.gradcheck.get(name)
        self.check_row.setVisible(result is not None)
        if result is None:
            return
        error = result.row.relative_error
        # a sampled check holds its checked entries only, in a row: the selected entry is not among their indices
        entries = result.entries
        where = "" if entries is None else f" at {len(entries)} sampled entries of {result.size:,}"
        self.analytic_panel.set_title(f"Analytic ∂L/∂{name}{where} (float64)", "")
        self.numeric_panel.set_title(f"Numeric ∂L/∂{name}{where} · relative error {error:.2e}", "")
        labels = None if entries is None else [fmt_index(e) for e in entries]  # which entries were checked
        self.analytic_panel.set_array(result.analytic, index if entries is None else None, labels)
        self.numeric_panel.set_array(result.numeric, index if entries is None else None, labels)

    def _theme(self) -> None:
        theme = self.themes.theme
        for panel in (self.value_panel, self.grad_panel, self.analytic_panel, self.numeric_panel):
            panel.apply_theme(theme, QApplication.font())  # our own font() updates only later
        for row in self.rows:
            row.apply_theme(theme, QApplication.font())
        self.refresh()

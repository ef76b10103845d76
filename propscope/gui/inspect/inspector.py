"""The inspector dock: the selected node's value and gradient at the cursor, and its formula."""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel, QSplitter, QToolButton, QVBoxLayout, QWidget

from ..bridge import SessionBridge
from ..format import fmt_index, fmt_shape
from ..selection import Selection
from ..theme import ThemeManager
from .tensor_view import TensorPanel


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
        self.rows: list[Any] = []  # views other features add (gui/diff: A, B and A − B), see add_row
        top = QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.pin, 0, Qt.AlignmentFlag.AlignTop)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(top)
        lay.addWidget(split, 1)
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

"""Breadcrumbs: the module path of the selected node over the canvas ("blocks × 12 › blocks.3 › blocks.3.tanh").

Each module is a button: a click folds that module into a box around the node, or opens it when it
is a closed box, and keeps the view on it (`GraphView.toggle_fold`); the node's own crumb centres it.
Nothing shows for a node outside every module.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from ..guard import guarded_answer
from .view import GraphView

SEPARATOR = "›"


class Breadcrumbs(QFrame):
    def __init__(self, canvas: GraphView) -> None:
        super().__init__(canvas)
        self.setObjectName("breadcrumbs")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.canvas = canvas
        self.crumbs: list[QToolButton] = []
        self.parts: list[QWidget] = []  # every widget in the layout: the crumbs and the separators
        self.node: str | None = None
        self._lay = QHBoxLayout(self)
        self._lay.setContentsMargins(4, 1, 4, 1)
        self._lay.setSpacing(0)
        canvas.selection.changed.connect(self.refresh)
        canvas.foldsChanged.connect(self.refresh)
        canvas.viewChanged.connect(self._place)
        self.hide()

    def path(self, name: str) -> list[tuple[str, str]]:
        """(unit key, title) of the modules around node `name`, outermost first."""
        folding = self.canvas.folding_for_session()
        return [(key, folding.units[key].title) for key in folding.chains.get(name, ())]

    def refresh(self, *_args: object) -> None:
        name = self.canvas.selection.node
        session = self.canvas.bridge.session
        if name is not None and name not in session.graph:
            name = None
        self.node = name
        path = self.path(name) if name is not None else []
        closed = self.canvas.folding_for_session().closed
        for widget in self.parts:
            self._lay.removeWidget(widget)
            widget.deleteLater()
        self.parts = []
        self.crumbs = []
        if not path or name is None:
            self.hide()
            return
        for key, title in path:
            button = self._crumb(title, f"{'Open' if key in closed else 'Fold'} {title}")
            button.setProperty("unitKey", key)
            # a bound method, no lambda: PySide 6.11 lost references to lambdas (with default arguments) connected
            # to the clicked signal of buttons deleted later, a segfault some windows after
            button.clicked.connect(self._crumb_clicked)
            self._add(button)
            self._add(QLabel(f" {SEPARATOR} ", self))
        own = self._crumb(name, "Centre this node")
        own.clicked.connect(self._centre)
        self._add(own)
        for widget in self.parts:  # shown now, not by a queued call: adjustSize skips hidden widgets
            widget.show()
        self.adjustSize()
        self._place()
        self.show()
        self.raise_()

    @guarded_answer(False)
    def event(self, event: QEvent) -> bool:
        handled = super().event(event)
        if event.type() == QEvent.Type.LayoutRequest and self.parts:
            # A free child of the canvas: no layout above resizes it when its buttons' size hints change, as
            # when the application's font grows for projector mode after the crumbs were made ("bl…11").
            self.adjustSize()
        return handled

    def _add(self, widget: QWidget) -> None:
        self._lay.addWidget(widget)
        self.parts.append(widget)

    def _crumb(self, text: str, tip: str) -> QToolButton:
        b = QToolButton(self)
        b.setText(text)
        b.setToolTip(tip)
        b.setAutoRaise(True)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with stepping
        self.crumbs.append(b)
        return b

    def _crumb_clicked(self) -> None:
        button = self.sender()
        key = button.property("unitKey") if button is not None else None
        if isinstance(key, str):
            self.canvas.toggle_fold(key)

    def _centre(self) -> None:
        self.canvas.center_readably(self.node or "")

    def _place(self) -> None:
        margin = self.canvas.themes.theme.px(8)
        room = max(120, self.canvas.viewport().width() - 2 * margin)
        self.setMaximumWidth(room)
        self.move(margin, margin)

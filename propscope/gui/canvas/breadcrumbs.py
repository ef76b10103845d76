"""Breadcrumbs: the module path of the selected node over the canvas ("blocks × 12 › blocks.3 › blocks.3.tanh").

Each module is a button: a click folds that module into a box around the node, or opens it when it
is a closed box, and keeps the view on it (`GraphView.toggle_fold`); the node's own crumb centres it.
Nothing shows for a node outside every module.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton

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
        self.node: str | None = None
        self._shown: tuple[object, ...] = ()  # the modules and folds the crumbs were made for
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
        shown = (tuple(path), frozenset(k for k, _ in path if k in closed))
        if self.crumbs and path and name is not None and shown == self._shown:  # same modules: only the node
            self.crumbs[-1].setText(name)
            self.adjustSize()
            return
        self._shown = shown
        while self._lay.count():
            item = self._lay.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.crumbs = []
        if not path or name is None:
            self.hide()
            return
        for key, title in path:
            button = self._crumb(title, f"{'Open' if key in closed else 'Fold'} {title}")
            button.setProperty("unitKey", key)
            button.clicked.connect(lambda _c=False, k=key: self._toggle(k))
            self._lay.addWidget(button)
            self._lay.addWidget(QLabel(f" {SEPARATOR} "))
        own = self._crumb(name, "Centre this node")
        own.clicked.connect(lambda: self.canvas.center_readably(self.node or ""))
        self._lay.addWidget(own)
        for i in range(self._lay.count()):  # shown now, not by a queued call: adjustSize skips hidden widgets
            widget = self._lay.itemAt(i).widget()  # type: ignore[union-attr]
            if widget is not None:
                widget.show()
        self.adjustSize()
        self._place()
        self.show()
        self.raise_()

    def _crumb(self, text: str, tip: str) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.setAutoRaise(True)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with stepping
        self.crumbs.append(b)
        return b

    def _toggle(self, key: str) -> None:
        self.canvas.toggle_fold(key)

    def _place(self) -> None:
        margin = self.canvas.themes.theme.px(8)
        room = max(120, self.canvas.viewport().width() - 2 * margin)
        self.setMaximumWidth(room)
        self.move(margin, margin)

"""Finding a node in a big graph (Ctrl+F): by name, op or module path, as you type.

`NodeSearch` is the index: one lower-cased line per node ("name op module"), scanned on each
keystroke (20,000 nodes take a few milliseconds). `SearchBar` is the box over the canvas: typing
goes to the first hit at or after the selected node, Enter to the next, Shift+Enter back, Escape
closes it. Going to a hit opens the boxes hiding it, selects it and centres it (`GraphView.reveal`).

The box sits at the right end of the band along the top of the canvas where the breadcrumbs sit at the left end
(`SearchBar.place`), not over the graph: placed at a fixed margin from the canvas's top it lay half in the band and
half over the graph, covering the top of whatever was drawn there (the 3-D U-Net's max_pool3d title at 1920×1080 in
projector mode).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QLineEdit, QToolButton, QWidget

from ...graph.ir import Graph
from ..guard import guarded_answer


class NodeSearch:
    """The nodes of one graph whose name, op or module path contains the query (any case), in graph order."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.names = [n.name for n in graph]
        self._lines = [f"{n.name}\n{n.op.name}\n{n.module}".lower() for n in graph]

    def find(self, query: str) -> list[str]:
        words = query.lower().split()
        if not words:
            return []
        return [name for name, line in zip(self.names, self._lines, strict=True) if all(w in line for w in words)]


class SearchBar(QFrame):
    """The find box: a line edit, "3 of 17", previous/next, close. `goTo` asks the canvas to show a hit.

    `graph_of` gives the graph to search; `start_of` the node a new search starts from (the selection).
    """

    goTo = Signal(str)
    closed = Signal()

    def __init__(self, graph_of: Callable[[], Graph], start_of: Callable[[], str | None],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._graph_of, self._start_of = graph_of, start_of
        self.setObjectName("searchBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.index: NodeSearch | None = None
        self.hits: list[str] = []
        self.at = -1
        self.edit = QLineEdit()
        self.edit.setObjectName("searchEdit")
        self.edit.setPlaceholderText("Find a node: name, op or module")
        self.edit.setClearButtonEnabled(True)
        self.edit.setMinimumWidth(220)
        self.edit.textEdited.connect(self._typed)
        self.edit.installEventFilter(self)
        self.count = QLabel()
        self.count.setObjectName("searchCount")
        self.prev_button = self._button("▲", "Previous match (Shift+Enter)", lambda: self.step(-1))
        self.next_button = self._button("▼", "Next match (Enter)", lambda: self.step(1))
        close = self._button("✕", "Close (Esc)", self.close_bar)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(2)
        for w in (self.edit, self.count, self.prev_button, self.next_button, close):
            lay.addWidget(w)
        self.hide()

    def _button(self, text: str, tip: str, slot: object) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        b.setToolTip(tip)
        b.setAutoRaise(True)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.clicked.connect(slot)
        return b

    def graph_changed(self) -> None:
        """A new graph: its index is made when next searched (not on every open)."""
        if self.index is not None and self.index.graph is not self._graph_of():
            self.index = None
            self.hits, self.at = [], -1
            self._show_count(self.edit.text())

    def open_bar(self) -> None:
        self.show()
        self.raise_()
        self.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.edit.selectAll()

    def close_bar(self) -> None:
        self.hide()
        self.closed.emit()

    def place(self, right: int, band: int, margin: int) -> None:
        """Put the box `margin` pixels in from `right` (the canvas's right edge, in the canvas's coordinates): in
        the top band (`band` pixels high), centred in its height as the crumbs are; where there is no band (a graph
        without modules has no crumbs) or the box is taller than it, just below it. Never across its edge."""
        self.adjustSize()
        in_band = band > 0 and self.height() <= band
        self.move(max(0, right - self.width() - margin), (band - self.height()) // 2 if in_band else band + margin)

    # -- searching -----------------------------------------------------------------------------
    def search(self, graph: Graph, query: str, start: str | None = None) -> list[str]:
        """Find `query`; go to the first hit at or after `start` (graph order), or the first."""
        if self.index is None or self.index.graph is not graph:
            self.index = NodeSearch(graph)
        self.hits = self.index.find(query)
        self.at = -1
        if self.hits:
            order = {name: i for i, name in enumerate(self.index.names)} if start is not None else {}
            here = order.get(start or "", -1)
            self.at = next((k for k, name in enumerate(self.hits) if order.get(name, -1) >= here), 0)
            self.goTo.emit(self.hits[self.at])
        self._show_count(query)
        return self.hits

    def step(self, by: int) -> None:
        if not self.hits:
            return
        self.at = (self.at + by) % len(self.hits)
        self.goTo.emit(self.hits[self.at])
        self._show_count(self.edit.text())

    def _typed(self, text: str) -> None:
        self.search(self._graph_of(), text, self._start_of())

    def _show_count(self, query: str) -> None:
        if not query.strip():
            self.count.setText("")
        elif not self.hits:
            self.count.setText("no match")
        else:
            self.count.setText(f"{self.at + 1} of {len(self.hits)}")
        self.prev_button.setEnabled(len(self.hits) > 1)
        self.next_button.setEnabled(len(self.hits) > 1)

    @guarded_answer(False)
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.edit and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            key = event.key()
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                back = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
                if self.at < 0:
                    self._typed(self.edit.text())
                else:
                    self.step(-1 if back else 1)
                return True
            if key == Qt.Key.Key_Escape:
                self.close_bar()
                return True
        return super().eventFilter(watched, event)

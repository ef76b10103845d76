"""The chain-rule dock: the text from `chain_text`, and "Explain this gradient" for the selected element."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from ...debugger import BackwardStep
from ...debugger.steps import GradTerm
from ..bridge import SessionBridge
from ..format import fit_index, fmt_index
from ..guard import guarded
from ..selection import Selection
from ..theme import ThemeManager
from .chain_text import chain_rule_html, input_index, output_index


class ChainRuleView(QWidget):
    explainRequested = Signal(str, object)  # node name, element index

    def __init__(self, bridge: SessionBridge, selection: Selection, themes: ThemeManager,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chainRule")
        self.bridge, self.selection, self.themes = bridge, selection, themes
        self._shown: tuple[object, ...] | None = None
        self._fit_to_text = False
        self.text = QTextBrowser()
        self.text.setOpenLinks(False)
        self.explain = QPushButton("Explain this gradient…")
        self.explain.setToolTip("List every path from the loss to the selected element, and check that the "
                                "products along them add up to its gradient")
        self.explain.clicked.connect(self._explain)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.explain)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(self.text, 1)
        lay.addLayout(row)
        bridge.cursorMoved.connect(self.refresh)
        bridge.traceChanged.connect(self.refresh)
        bridge.sessionChanged.connect(lambda _s: self.refresh())
        selection.changed.connect(self.refresh)
        themes.changed.connect(self.refresh)
        self.refresh()

    def html(self) -> str:
        s = self.bridge.session
        return chain_rule_html(s, self.selection.node, self.selection.index, self.themes.theme.colors)

    def refresh(self) -> None:
        """Rewrite the text only when what it depends on changed (a step fires several events)."""
        s = self.bridge.session
        theme = self.themes.theme
        key = (id(s), id(s.trace), s.cursor, self.selection.node, self.selection.index, theme.name, theme.scale)
        if key != self._shown:
            self._shown = key
            self.text.setHtml(self.html())
            self._fit()
        self._update_explain()

    # -- projector mode: the whole text, never a scroll bar ------------------------------------------
    def set_fit_to_text(self, on: bool) -> None:
        """Grow to show the whole text (projector mode: a room cannot scroll), or scroll as usual."""
        self._fit_to_text = on
        policy = Qt.ScrollBarPolicy.ScrollBarAlwaysOff if on else Qt.ScrollBarPolicy.ScrollBarAsNeeded
        self.text.setVerticalScrollBarPolicy(policy)
        self.text.setHorizontalScrollBarPolicy(policy)
        if not on:
            self.text.setMinimumHeight(0)
        self._fit()

    def text_height(self, width: int) -> int:
        """The height the text needs at this width, frame included."""
        doc = self.text.document().clone()
        doc.setTextWidth(max(1, width - 2 * self.text.frameWidth()))
        return math.ceil(doc.size().height()) + 2 * self.text.frameWidth() + 2

    def _fit(self) -> None:
        if self._fit_to_text:
            self.text.setMinimumHeight(self.text_height(self.text.width()))
            # a new application font reaches the text's document only with its FontChange event: fit again then
            QTimer.singleShot(0, self._fit_again)

    def _fit_again(self) -> None:
        if self._fit_to_text:
            self.text.setMinimumHeight(self.text_height(self.text.width()))

    def fully_shown(self) -> bool:
        """Whether the whole text is on screen: no scrolling needed in either direction."""
        doc_size = self.text.document().size()
        viewport = self.text.viewport()
        return (doc_size.height() <= viewport.height() + 1 and doc_size.width() <= viewport.width() + 1
                and self.text.verticalScrollBar().maximum() == 0 and self.text.horizontalScrollBar().maximum() == 0)

    @guarded
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fit_to_text and event.size().width() != event.oldSize().width():
            self._fit()

    def explain_target(self) -> tuple[str, tuple[int, ...]] | None:
        """What "Explain" explains: at a backward step that the selection follows, the gradient the step just
        computed (of its input, the element the text shows); otherwise the selected element's gradient."""
        s = self.bridge.session
        name = self.selection.node
        record = s.current
        if isinstance(record, BackwardStep) and record.terms and name == record.node.name:
            term = just_computed(record)
            at = output_index(s, record.node, name, self.selection.index)
            return term.input.name, input_index(record.node, term.input, at, name, self.selection.index)
        if name is None or name not in s.graph or s.loss_node is None or s.graph[name] is s.loss_node:
            return None
        return name, fit_index(self.selection.index, s.graph[name].shape)

    def _update_explain(self) -> None:
        target = self.explain_target()
        self.explain.setEnabled(target is not None)
        if target is not None:
            name, index = target
            self.explain.setText(f"Explain ∂L/∂{name}{fmt_index(index)}…")
        else:
            self.explain.setText("Explain this gradient…")

    def _explain(self) -> None:
        target = self.explain_target()
        if target is not None:
            self.explainRequested.emit(*target)


def just_computed(record: BackwardStep) -> GradTerm:
    """The gradient a backward step is about: a parameter's where it reaches one (∂L/∂W is what training
    uses), else its first input's."""
    return next((t for t in record.terms if t.input.op.name == "parameter"), record.terms[0])

"""The chain-rule dock: the text from `chain_text`, and "Explain this gradient" for the selected element."""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QTextBrowser, QVBoxLayout, QWidget

from ...debugger import BackwardStep
from ..bridge import SessionBridge
from ..format import fit_index, fmt_index
from ..guard import guarded
from ..selection import Selection
from ..theme import ThemeManager
from .chain_text import DETAILS, FULL, chain_rule_html, input_index, main_term, output_index


class ChainRuleView(QWidget):
    explainRequested = Signal(str, object)  # node name, element index
    fitted = Signal()  # projector mode: the text's height was set for what it shows now

    def __init__(self, bridge: SessionBridge, selection: Selection, themes: ThemeManager,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chainRule")
        self.bridge, self.selection, self.themes = bridge, selection, themes
        self._shown: tuple[object, ...] | None = None
        self._fit_to_text = False
        self._limit: Callable[[], int | None] | None = None  # the most height the text may take (projector mode)
        self._html: dict[str, str] = {}  # the text at each detail, for what `_shown` says
        self.detail = FULL  # how much of the tensors the text writes out (chain_text.DETAILS)
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

    def html(self, detail: str = FULL) -> str:
        s = self.bridge.session
        return chain_rule_html(s, self.selection.node, self.selection.index, self.themes.theme.colors, detail)

    def refresh(self) -> None:
        """Rewrite the text only when what it depends on changed (a step fires several events)."""
        s = self.bridge.session
        theme = self.themes.theme
        key = (id(s), id(s.trace), s.cursor, self.selection.node, self.selection.index, theme.name, theme.scale)
        if key != self._shown:
            self._shown = key
            self._html = {}
            self.detail = FULL
            self.text.setHtml(self._html_at(FULL))
            self._fit()
        self._update_explain()

    def _html_at(self, detail: str) -> str:
        if detail not in self._html:
            self._html[detail] = self.html(detail)
        return self._html[detail]

    # -- projector mode: the whole text, never a scroll bar ------------------------------------------
    def set_fit_to_text(self, on: bool, limit: Callable[[], int | None] | None = None) -> None:
        """Grow to show the whole text (projector mode: a room cannot scroll), or scroll as usual.

        `limit` says how tall the text may grow (None: as tall as it needs). Past it, the text writes out fewer
        tensors (`chain_text.DETAILS`: the formulas and the selected element's numbers always stay); only a text
        too tall even then scrolls."""
        self._fit_to_text = on
        self._limit = limit if on else None
        policy = Qt.ScrollBarPolicy.ScrollBarAlwaysOff if on else Qt.ScrollBarPolicy.ScrollBarAsNeeded
        self.text.setVerticalScrollBarPolicy(policy)
        self.text.setHorizontalScrollBarPolicy(policy)
        if not on:
            self.text.setMinimumHeight(0)
            self._show_detail(FULL)
        self._fit()

    def text_height(self, width: int, html: str | None = None) -> int:
        """The height the text (or `html` in its place) needs at this width, frame included."""
        doc = self.text.document().clone()
        if html is not None:
            doc.setHtml(html)
        doc.setTextWidth(max(1, width - 2 * self.text.frameWidth()))
        return math.ceil(doc.size().height()) + 2 * self.text.frameWidth() + 2

    def _show_detail(self, detail: str) -> None:
        if detail != self.detail:
            self.detail = detail
            self.text.setHtml(self._html_at(detail))

    def fit(self) -> None:
        """Projector mode: the most detailed text that fits within the limit, and the height it needs."""
        if not self._fit_to_text:
            return
        width = self.text.width()
        limit = self._limit() if self._limit is not None else None
        chosen, height = DETAILS[-1], 0
        for detail in DETAILS:
            height = self.text_height(width, None if detail == self.detail else self._html_at(detail))
            if limit is None or height <= limit:
                chosen = detail
                break
        self._show_detail(chosen)
        if limit is not None and height > limit:  # too tall even with no tensor written out: it scrolls
            height = limit
            self.text.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        else:
            self.text.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.text.setMinimumHeight(height)
        self.fitted.emit()

    def _fit(self) -> None:
        if self._fit_to_text:
            self.fit()
            # a new application font reaches the text's document only with its FontChange event: fit again then
            QTimer.singleShot(0, self.fit)

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
            term = main_term(record)
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


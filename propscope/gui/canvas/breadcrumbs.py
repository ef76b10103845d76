"""Breadcrumbs: the module path of the selected node over the canvas ("blocks × 12 › blocks.3 › blocks.3.tanh").

Each module is a button: a click folds that module into a box around the node, or opens it when it
is a closed box, and keeps the view on it (`GraphView.toggle_fold`); the node's own crumb centres it.
Nothing shows for a node outside every module.

The crumbs sit in a band of their own along the top of the canvas (`GraphView.set_top_band`), as Model
Explorer's sit above its graph: floating over the graph they covered the title of the frame at the top
(Swin-T's `features` at 1024×768, and in projector mode), and a title is where a frame is folded. The band is
kept for every graph with modules, crumbs shown or not, so that selecting a node never resizes the view.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QToolTip, QWidget

from ..guard import guarded_answer
from .view import GraphView, cannot_fold, folds_now

SEPARATOR = "›"


class Breadcrumbs(QFrame):
    def __init__(self, canvas: GraphView) -> None:
        super().__init__(canvas)
        self.setObjectName("breadcrumbs")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.canvas = canvas
        self.crumbs: list[QToolButton] = []
        self.parts: list[QWidget] = []  # the widgets shown: the crumbs and the separators between them
        self._pool: list[tuple[QToolButton, QLabel]] = []  # every crumb made, each with the separator after it
        self.node: str | None = None
        self.reserved_right = 0  # pixels at the band's right end kept free: the most any holder asks for
        self._reservations: dict[str, int] = {}  # by holder: the find box while open, the one-line colour legend
        self._lay = QHBoxLayout(self)
        self._lay.setContentsMargins(4, 1, 4, 1)
        self._lay.setSpacing(0)
        canvas.selection.changed.connect(self.refresh)
        canvas.foldsChanged.connect(self.refresh)
        canvas.viewChanged.connect(self._place)
        self._grow(1)  # one crumb from the start, with a text (an empty one is shorter): it sizes the band
        self._pool[0][0].setText(SEPARATOR)
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
        if not path or name is None:
            self.parts, self.crumbs = [], []
            self.hide()
            return
        folding = self.canvas.folding_for_session()
        texts = [(title, f"{'Open' if key in folding.closed else 'Fold'} {title}", key) for key, title in path]
        texts.append((name, "Centre this node", ""))
        self._grow(len(texts))
        self._show_texts(texts)
        if self.sizeHint().width() > self._room():
            # too long for the canvas (BERT's "model.bert.encoder.layer.1.attention.self" six deep at 1024×768
            # squeezed every crumb to "mode…tion"): each module named within the one before, as in a file path
            # ("model › bert › encoder › layer.1 › …"), the whole of it in the tooltip
            paths = [""] + [folding.units[key].path for key, _title in path]
            short = [(_within(title, paths[k]), tip, key) for k, (title, tip, key) in enumerate(texts[:-1])]
            self._show_texts([*short, texts[-1]])
        self.adjustSize()
        self._place()
        self.show()
        self.raise_()

    def _show_texts(self, texts: list[tuple[str, str, str]]) -> None:
        """Show the crumbs `texts` (text, tooltip, unit key) with the separators between them."""
        # The same widgets every time, their texts changed: each step selects its node, and new widgets per step
        # (five at a time, the old ones deleted later) cost a layout each and, until the event loop ran, painted
        # under the new ones: a step's frame at 1:1 grew from 9 to 27 ms over 300 steps without a pause.
        self.crumbs, self.parts = [], []
        for k, (button, separator) in enumerate(self._pool):
            used = k < len(texts)
            if used:
                text, tip, key = texts[k]
                if button.text() != text:
                    button.setText(text)
                button.setToolTip(tip)
                button.setProperty("unitKey", key)
                self.crumbs.append(button)
                self.parts.append(button)
            last = k == len(texts) - 1
            button.setVisible(used)  # shown now, not by a queued call: adjustSize skips hidden widgets
            separator.setVisible(used and not last)
            if used and not last:
                self.parts.append(separator)

    def tooltip_of(self, button: QToolButton) -> str:
        """What a click on a crumb does, or why its module cannot fold: asked when the tooltip shows, not on
        every step (whether a module can fold is a look through its members: all of them, for a repeat)."""
        key = button.property("unitKey")
        folding = self.canvas.folding_for_session()
        if not isinstance(key, str) or key not in folding.units or key in folding.closed:
            return button.toolTip()
        return button.toolTip() if folds_now(folding, key) else cannot_fold(folding, key)

    @guarded_answer(False)
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(watched, QToolButton) and \
                isinstance(event, QHelpEvent):
            QToolTip.showText(event.globalPos(), self.tooltip_of(watched), watched)
            return True
        return super().eventFilter(watched, event)

    def _grow(self, count: int) -> None:
        """At least `count` crumbs, each with the separator after it, in the layout in that order."""
        while len(self._pool) < count:
            button = QToolButton(self)
            button.setAutoRaise(True)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with stepping
            # a bound method, no lambda: PySide 6.11 lost references to lambdas (with default arguments) connected
            # to the clicked signal of buttons deleted later, a segfault some windows after
            button.clicked.connect(self._crumb_clicked)
            button.installEventFilter(self)  # its tooltip, worked out when shown (`tooltip_of`)
            separator = QLabel(f" {SEPARATOR} ", self)
            self._lay.addWidget(button)
            self._lay.addWidget(separator)
            self._pool.append((button, separator))

    @guarded_answer(False)
    def event(self, event: QEvent) -> bool:
        handled = super().event(event)
        if event.type() in (QEvent.Type.LayoutRequest, QEvent.Type.FontChange):
            # A free child of the canvas: no layout above resizes it when its buttons' size hints change, as
            # when the application's font grows for projector mode after the crumbs were made ("bl…11");
            # the band grows with it, shown or not.
            if self.parts:
                self.adjustSize()
            self._place()
        return handled

    def _crumb_clicked(self) -> None:
        """A module's crumb folds or opens it; the node's own (no unit key) centres the node."""
        button = self.sender()
        key = button.property("unitKey") if button is not None else None
        if isinstance(key, str) and key:
            self.canvas.toggle_fold(key)
        elif key == "":
            self._centre()

    def _centre(self) -> None:
        self.canvas.center_readably(self.node or "")

    def band_height(self) -> int:
        """The height of the band the crumbs sit in: a crumb's, with the bar's frame and a gap above and below;
        0 for a graph without modules, where no crumb ever shows."""
        if not self.canvas.folding_for_session().units:
            return 0
        button = self._pool[0][0]
        bar = button.sizeHint().height() + self._lay.contentsMargins().top() + \
            self._lay.contentsMargins().bottom() + 2 * self.frameWidth()
        return bar + 2 * self._gap()

    def _gap(self) -> int:
        return self.canvas.themes.theme.px(3)

    def reserve_right(self, width: int, holder: str = "find") -> None:
        """Keep `width` pixels at the right end of the band free for `holder` (the find box while open, the
        one-line colour legend): the crumbs are named shorter, module within module, where they would reach it."""
        self._reservations[holder] = max(0, width)
        widest = max(self._reservations.values())
        if widest != self.reserved_right:
            self.reserved_right = widest
            self.refresh()

    def _room(self) -> int:
        """The widest the crumbs may be: the canvas, less a margin each side and the room kept at the right."""
        return max(120, self.canvas.width() - 2 * self.canvas.themes.theme.px(8) - self.reserved_right)

    def _place(self) -> None:
        if self.canvas._scene is None:  # the canvas is still being built
            return
        self.canvas.set_top_band(self.band_height())
        self.setMaximumWidth(self._room())
        self.move(self.canvas.themes.theme.px(8), self._gap())


def _within(title: str, outer: str) -> str:
    """A unit's title without the module path `outer` of the unit before it ("layer1.0.conv1" within "layer1.0":
    "conv1"; the repeat "layer1.0 … 1" within "layer1": "0 … 1"; a repeat's path is its parent module's)."""
    prefix = outer + "."
    return title[len(prefix):] if outer and title.startswith(prefix) else title

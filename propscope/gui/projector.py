"""Projector mode laid out for a room: 1024×768, 1280×720 or 1920×1080 on a wall, read from the back row.

Three rules, applied whenever the mode, the window's size or the step changes:
- type is at least `min_text_px(height)` on screen (28 px at 1080 lines, in proportion below that): the
  theme's scale factor makes the application's text that big, and the canvas zooms so that the current
  node's name is too;
- the canvas and the chain rule get the room: every other dock is hidden (the View menu brings one back),
  and the chain-rule dock spans the window's width and grows to show its whole text, never scrolling, up to
  half the window's height (`CHAIN_TEXT_SHARE`). Past that the text writes out fewer tensors in full (the
  formulas and the selected element's numbers always stay): the canvas keeps a quarter of the window and
  more, so the current node stays in sight, and the window never needs more lines than the room has (at a
  1024×768 backward step of xor, the text wanted 774 lines of 768);
- a wide dock brought back (Gradient flow, Neurons, Diff, Training) becomes a tab over the chain rule: its table,
  diagram or plots get the window's width and the chain rule's height, where beside the chain rule it would get half
  of one or the other (the Diff dock's controls wrapped onto four lines there and its table was 90 px tall; the
  Training dock's plots 400×160 px at 1024×768). Stacked above the chain rule instead, the two would leave the
  canvas a few lines;
- a new batch, loss or data set in the same session (the Training dock's Data) changes no dock: only another model
  hides the docks again, so the dock the teacher works in stays open;
- the window keeps the room's height: type is sized by the height asked for, not by a height the window's own
  minimum forced (bigger type, bigger minimum, a taller window: it ran away to 3573 px), and where a dock shown beside
  the canvas needs more lines, the chain rule's text gives them up and the window goes back to the room's height;
- F11 really goes full screen (not when a screenshot of a given size is asked for).

Leaving the mode restores the window's docks, corners and full-screen state as they were.
"""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import QByteArray, QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QDockWidget, QMainWindow, QTabBar, QToolBar

from .docks import tabify
from .guard import guarded_answer

MIN_TEXT_PX_AT_1080 = 28
REFERENCE_HEIGHT = 1080
PROJECTOR_DOCKS = ("chain_dock",)  # the docks projector mode keeps; the others hide
# brought back in projector mode: a tab over the chain rule
WIDE_DOCKS = ("grad_flow_dock", "neurons_dock", "diff_dock", "training_dock")
WIDE_DOCK_SHARE = 0.45  # of the window's height such a dock gets at least (the chain rule's "Ready" is one line)
# Of the window's height, the most the chain rule's text takes. Everything else (menu, toolbar, the dock's title and
# Explain button, the status bar) is type, which scales with the window's height too: about a quarter of it, which
# leaves the canvas at least a quarter.
CHAIN_TEXT_SHARE = 0.5


def min_text_px(height: int) -> int:
    """The smallest text a room can read on a wall showing `height` lines: 28 px at 1080, in proportion."""
    return max(14, round(MIN_TEXT_PX_AT_1080 * height / REFERENCE_HEIGHT))


class ProjectorLayout(QObject):
    """Applies projector mode to a `MainWindow` (its docks, canvas, chain-rule view and theme)."""

    def __init__(self, window: QMainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.on = False
        self._saved_state: QByteArray | None = None
        self._saved_corners: dict[Qt.Corner, Qt.DockWidgetArea] = {}
        self._was_full_screen = False
        self._watched: list[QDockWidget] = []
        self._closed: set[QDockWidget] = set()  # wide docks hidden since they were last sized (`_over_chain`)
        self._session: object = None  # the session the docks were last arranged for
        self._room = 0  # the window's height as last asked for (`room_height`); 0: not known yet
        self._rescale = QTimer(self)  # a resize settles before the theme (and every view) is rebuilt
        self._rescale.setSingleShot(True)
        self._rescale.setInterval(150)
        self._rescale.timeout.connect(self._apply_scale)
        w = window
        w.bridge.cursorMoved.connect(lambda _c: self.fit_canvas())  # type: ignore[attr-defined]
        w.bridge.sessionChanged.connect(self._session_changed)  # type: ignore[attr-defined]
        w.themes.changed.connect(self.fit_canvas)  # type: ignore[attr-defined]
        self._snug = QTimer(self)  # after the layouts have taken the text's new height
        self._snug.setSingleShot(True)
        self._snug.setInterval(0)
        self._snug.timeout.connect(self._snug_chain)
        w.chain.fitted.connect(self._snug.start)  # type: ignore[attr-defined]
        self._fit_room = QTimer(self)  # once per burst of layout requests (`eventFilter`)
        self._fit_room.setSingleShot(True)
        self._fit_room.setInterval(0)
        self._fit_room.timeout.connect(self._back_to_room)
        window.installEventFilter(self)

    # -- switching -------------------------------------------------------------------------------
    def set(self, on: bool, full_screen: bool = True) -> None:
        w = self.window
        if on == self.on:
            return
        self.on = on
        if on:
            self._room = w.height()
            self._saved_state = w.saveState()
            self._saved_corners = {c: w.corner(c) for c in Qt.Corner}
            self._was_full_screen = w.isFullScreen()
            w.themes.set_projector(True, self.scale())  # type: ignore[attr-defined]
            self._session = w.bridge.session  # type: ignore[attr-defined]
            self._arrange()  # after the theme: its change re-arranges the neuron dock
            self._watch_wide_docks()
            if full_screen and not w.isFullScreen():
                w.showFullScreen()
        else:
            w.chain.set_fit_to_text(False)  # type: ignore[attr-defined]
            w.themes.set_projector(False)  # type: ignore[attr-defined]
            if w.isFullScreen() and not self._was_full_screen:
                w.showNormal()
            for corner, area in self._saved_corners.items():
                w.setCorner(corner, area)
            if self._saved_state is not None:
                w.restoreState(self._saved_state)
            w.canvas.show_start()  # type: ignore[attr-defined]  # the app chooses the view again
        timeline = getattr(w, "timeline", None)
        if timeline is not None:
            timeline.compact = on
            timeline.refresh()
        navigation = getattr(w, "navigation", None)
        if navigation is not None:  # no minimap over the nodes in front of a class; the View menu's choice returns
            navigation.minimap.set_wanted(not on and navigation.minimap_action.isChecked())
        self._toolbars()
        self.fit_canvas()

    def _arrange(self) -> None:
        """Hide every dock but the chain rule's, which spans the bottom of the window."""
        w = self.window
        keep = [getattr(w, name) for name in PROJECTOR_DOCKS]
        for dock in w.findChildren(QDockWidget):
            if dock not in keep and not dock.isFloating():
                dock.hide()
        w.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.BottomDockWidgetArea)
        w.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.BottomDockWidgetArea)
        chain: QDockWidget = w.chain_dock  # type: ignore[attr-defined]
        if chain.isFloating():
            chain.setFloating(False)
        if w.dockWidgetArea(chain) != Qt.DockWidgetArea.BottomDockWidgetArea:
            w.removeDockWidget(chain)
            w.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, chain)
        # The wide docks wait, hidden, as tabs of the chain rule's group: shown later, a dock is in its place already.
        # Moved there as it is shown (from `visibilityChanged`), a dock whose group went with it left Qt laying the
        # window out with that group's item gone: showing Training with the Diff tab up crashed.
        for dock in self._wide_docks():
            if dock.isHidden() and not dock.isFloating():
                tabify(w, chain, dock)
                self._closed.add(dock)
        chain.show()
        chain.raise_()
        w.chain.set_fit_to_text(True, self.text_limit)  # type: ignore[attr-defined]

    def _wide_docks(self) -> list[QDockWidget]:
        docks = (getattr(self.window, name, None) for name in WIDE_DOCKS)
        return [dock for dock in docks if isinstance(dock, QDockWidget)]

    def _snug_chain(self) -> None:
        """A step with a shorter text gives the canvas back the lines the last one took: the chain-rule dock
        only grows by itself (its text's minimum height), so it is sized down to that minimum here."""
        w = self.window
        dock: QDockWidget = w.chain_dock  # type: ignore[attr-defined]
        text = w.chain.text  # type: ignore[attr-defined]
        if not self.on or not dock.isVisible() or dock.isFloating() or w.tabifiedDockWidgets(dock):
            return
        spare = text.height() - text.minimumHeight()
        if spare > 2:
            w.resizeDocks([dock], [dock.height() - spare], Qt.Orientation.Vertical)
            self.fit_canvas()

    def _watch_wide_docks(self) -> None:
        for dock in self._wide_docks():
            if dock not in self._watched:
                self._watched.append(dock)
                dock.visibilityChanged.connect(lambda visible, d=dock: self._wide_dock_shown(d, visible))

    def _wide_dock_shown(self, dock: QDockWidget, visible: bool) -> None:
        """A wide dock shown in projector mode is a tab over the chain rule (the chain rule one click away), sized to
        its share of the window when it opens (not when its tab is chosen again)."""
        if not self.on:
            return
        if not visible:  # closed: the chain rule's text may take the tab bar's lines again
            if dock.isHidden():
                self._closed.add(dock)
            QTimer.singleShot(0, self, self._refit_chain)
        elif not dock.isFloating():
            # after the show: the window's layout is not changed while Qt shows a dock in it (see `_arrange`)
            QTimer.singleShot(0, self, lambda: self._over_chain(dock))

    def _over_chain(self, dock: QDockWidget) -> None:
        w = self.window
        if not self.on or not shiboken6.isValid(dock) or not dock.isVisible() or dock.isFloating():
            return
        chain: QDockWidget = w.chain_dock  # type: ignore[attr-defined]
        if dock in w.tabifiedDockWidgets(chain):
            if dock not in self._closed:
                return  # its tab chosen again: it keeps the height it has
        else:
            tabify(w, chain, dock)
        self._closed.discard(dock)
        dock.raise_()
        self.size_wide_dock(dock)
        QTimer.singleShot(0, self, lambda: self._fit_under_tabs(dock))  # once the tab bar is laid out

    def _refit_chain(self) -> None:
        """The chain rule's text fitted again, unless the window is going (closing hides every dock, and the text's
        widget may be deleted before this runs: its fit raised "already deleted")."""
        chain = getattr(self.window, "chain", None)
        if self.on and chain is not None and shiboken6.isValid(chain) and shiboken6.isValid(chain.text):
            chain.fit()

    def _fit_under_tabs(self, dock: QDockWidget) -> None:
        """The chain rule's text fitted again with the tab bar counted (`text_limit`), and the tab sized again."""
        if not self.on or not dock.isVisible():
            return
        self.window.chain.fit()  # type: ignore[attr-defined]
        QTimer.singleShot(0, self, lambda: self._resize_tab(dock))  # once the dock's minimum counts the new text

    def _resize_tab(self, dock: QDockWidget) -> None:
        if self.on and dock.isVisible():
            self.size_wide_dock(dock)
            self.fit_canvas()

    def size_wide_dock(self, dock: QDockWidget) -> None:
        """The tab over the chain rule gets its share of the window's height: not the height it had beside the canvas
        (the Training dock sized for plots in normal mode left the canvas 70 px at 1024×768)."""
        w = self.window
        w.resizeDocks([dock], [round(w.height() * WIDE_DOCK_SHARE)], Qt.Orientation.Vertical)

    def _toolbars(self) -> None:
        """Icons only in projector mode: both toolbars fit one row, and the canvas keeps that row's height."""
        style = Qt.ToolButtonStyle.ToolButtonIconOnly if self.on else Qt.ToolButtonStyle.ToolButtonTextBesideIcon
        for bar in self.window.findChildren(QToolBar):
            if bar.objectName() == "debugToolbar":
                bar.setToolButtonStyle(style)

    def _session_changed(self, session: object) -> None:
        """Another model: the window may have offered its layer view again; the room still gets the canvas. The same
        session with a new batch (the Training dock's data set, Debug ▸ Loss) keeps the docks as they are: arranging
        them again hid the Training dock the moment its data set was applied."""
        if not self.on:
            return
        if session is not self._session:
            self._session = session
            self._arrange()
        self.fit_canvas()

    # -- sizing ------------------------------------------------------------------------------------
    def room_height(self) -> int:
        """The window's height as asked for (by the user, `--size` or the screen): the height type is sized by. A
        window the layout made taller than that, to reach its own minimum, does not count: bigger type there made every
        row's minimum bigger and the window taller again (the inspector's rows at 1024×768 took it to 3573 px)."""
        return self._room or self.window.height()

    def text_px(self) -> int:
        return min_text_px(self.room_height())

    def text_limit(self) -> int:
        """The most height the chain rule's text may take: its share of the room's lines, less the tab bar while a
        wide dock is a tab over it (at cnn's last step at 1024×768 the bar's 36 px left the canvas 186 px, under its
        quarter), and never more than the lines the rest of the window leaves it: with the Layer view raised beside the
        canvas at cnn's last step at 1024×768 the window needed 769 lines of 768."""
        share = round(self.room_height() * CHAIN_TEXT_SHARE) - self._tab_bar_px()
        return max(0, min(share, self.room_height() - self._needed_besides_text()))

    def _needed_besides_text(self) -> int:
        """The window's least height without the chain rule's text: every other row's minimum, the text's own taken
        out."""
        w = self.window
        text = w.chain.text  # type: ignore[attr-defined]
        return w.minimumSizeHint().height() - text.minimumHeight()

    def _tab_bar_px(self) -> int:
        """The height of the tab bar under the chain rule's dock; 0 while it is alone."""
        w = self.window
        chain: QDockWidget = w.chain_dock  # type: ignore[attr-defined]
        if not any(not d.isHidden() for d in w.tabifiedDockWidgets(chain)):
            return 0
        title = chain.windowTitle()
        # its hint: the bar is laid out (and shown) after the dock that makes it
        bars = [bar for bar in w.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly)
                if any(bar.tabText(i) == title for i in range(bar.count()))]
        return max((bar.sizeHint().height() for bar in bars), default=0)

    def scale(self) -> float:
        """The theme's scale that makes the application's text `text_px` tall."""
        base = max(1, self.window.themes.base_text_px)  # type: ignore[attr-defined]
        return round(self.text_px() / base, 2)

    def window_closed(self) -> None:
        """Nothing deferred outlives the window: a resize's rescale, 150 ms later, put the projector's type back on
        the application (every window) after the window had closed and given the type back."""
        for timer in (self._rescale, self._snug, self._fit_room):
            timer.stop()

    def window_resized(self) -> None:
        if not self.on:
            return
        w = self.window
        if self._room and self._room < w.height() <= w.minimumHeight():
            return  # made taller by its own minimum, not asked: the type keeps the room's size (`room_height`)
        self._room = w.height()
        self._rescale.start()

    @guarded_answer(False)
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """The window's layout asked again (a dock raised or shown beside the canvas, new text): where its least
        height is now more than the room's, the chain rule's text gives up the lines (`_back_to_room`)."""
        w = self.window
        if event.type() != QEvent.Type.LayoutRequest or watched is not w or not self.on or not self._room:
            return False
        if w.minimumSizeHint().height() > self._room:
            self._fit_room.start()
        elif w.height() > self._room and not w.isFullScreen() and not w.isMaximized():
            # the text has given its lines back: the window returns to the room's height (on a screen, its bottom
            # edge with the status bar and the chain rule was past the screen's)
            QTimer.singleShot(0, self, self._resize_to_room)
        return False

    def _back_to_room(self) -> None:
        """The chain rule's text fitted to the lines the other rows leave (`text_limit`)."""
        chain = getattr(self.window, "chain", None)
        if self.on and chain is not None and shiboken6.isValid(chain) and shiboken6.isValid(chain.text):
            chain.fit()

    def _resize_to_room(self) -> None:
        w = self.window
        if self.on and self._room and w.height() > self._room >= w.minimumSizeHint().height():
            w.resize(w.width(), self._room)

    def _apply_scale(self) -> None:
        if self.on:
            self.window.themes.set_projector(True, self.scale())  # type: ignore[attr-defined]
            self.window.chain.fit()  # type: ignore[attr-defined]  # a new height, maybe at the same scale
            self.fit_canvas()

    def label_px(self) -> float:
        """On-screen size of the canvas's node names (the current node's included) at the present zoom."""
        canvas = self.window.canvas  # type: ignore[attr-defined]
        return float(canvas.graph_scene.style.name_font.pixelSize()) * canvas.zoom()

    def fit_canvas(self) -> None:
        """Zoom the canvas until the current node's name is `text_px` tall, and centre that node."""
        if not self.on:
            return
        canvas = self.window.canvas  # type: ignore[attr-defined]
        name_px = canvas.graph_scene.style.name_font.pixelSize()
        want = self.text_px() / max(1, name_px)
        if canvas.zoom() < want - 1e-6:
            canvas.set_zoom(want)
        current = canvas.current_node()
        if current is not None:
            canvas.center_on_node(current)

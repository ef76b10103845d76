"""The graph canvas: pan by drag, zoom by wheel (5%–2000%), F to fit, right-click a node for breakpoints.

Modules fold into boxes (`folding.Folding`): double-click a box to open it, double-click an open
module's frame to fold it again; the right-click menu and the View menu do the same.
"""

from __future__ import annotations

from collections.abc import Callable

import shiboken6
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QColor, QContextMenuEvent, QHelpEvent, QMouseEvent, QPainter, QTransform, QWheelEvent
from PySide6.QtWidgets import QFrame, QGraphicsView, QMenu, QToolTip, QWidget

from ...debugger import BACKWARD, FORWARD
from ...debugger.node_numbers import NodeNumbers
from ...graph.gc_pause import paused_gc
from ...graph.layout import Layout
from ..bridge import SessionBridge
from ..format import fmt_shape
from ..guard import guarded, guarded_answer
from ..selection import Selection
from ..theme import ThemeManager
from .colour_by import palette_for
from .folding import Folding
from .items import RING_REACH
from .scene import GraphScene
from .sticky import StickyTitles

MIN_ZOOM, MAX_ZOOM = 0.05, 20.0
DETAIL_ZOOM = 0.22  # below this the whole graph is drawn by one overview item
MAX_FIT_ZOOM = 1.25
START_ZOOM = 0.9  # the least zoom a graph opens at: node captions (10.5 px) show at 9.5 px, names at 11 px


class GraphView(QGraphicsView):
    explainRequested = Signal(str)
    foldsChanged = Signal()
    message = Signal(str)  # something to tell the user in the status bar
    runRequested = Signal(int, str)  # "Run to its … step": the cursor position to go to, what the run is called
    viewChanged = Signal()  # what the view shows moved (pan, zoom, a new scene): the minimap follows

    def __init__(self, bridge: SessionBridge, selection: Selection, themes: ThemeManager,
                 parent: QWidget | None = None, layout: Layout | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("graphCanvas")
        self.bridge, self.selection, self.themes = bridge, selection, themes
        self.setRenderHints(QPainter.RenderHint.Antialiasing | QPainter.RenderHint.TextAntialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setOptimizationFlags(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing)
        self.setCacheMode(QGraphicsView.CacheModeFlag.CacheBackground)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # (graph, closed units, layout): a layout given here is of the whole graph, nothing folded
        self._layout: tuple[object, frozenset[str], Layout] | None = (
            None if layout is None else (bridge.session.graph, frozenset(), layout))
        self.folding: Folding | None = None
        self._folded_session: object = None
        self._diffs: tuple[dict[str, float], Callable[[float], QColor]] | None = None
        self._colouring: NodeNumbers | None = None  # View ▸ Colour nodes by (`colour_by`), kept across rebuilds
        self._scene: GraphScene | None = None
        self._sticky: StickyTitles | None = None  # the frames' titles pinned to the view's edges
        self._auto = True
        # (node, centred, where): the view was put at `where` to show the node (centred on it, or only moved
        # into sight of it) with its frames' titles; a resize keeps that promise while nobody moved the view
        self._kept: tuple[str, bool, QPointF] | None = None
        bridge.cursorMoved.connect(self._cursor_moved)
        bridge.traceChanged.connect(self._trace_changed)
        bridge.sessionChanged.connect(lambda _s: self.rebuild())
        bridge.breakpointsChanged.connect(self._breakpoints_changed)
        selection.changed.connect(self._selection_changed)
        themes.changed.connect(self._theme_changed)
        self.rebuild()

    # -- scene lifetime --------------------------------------------------------------------
    @property
    def graph_scene(self) -> GraphScene:
        assert self._scene is not None
        return self._scene

    def set_layout(self, graph: object, layout: Layout, folding: Folding | None = None) -> None:
        """A layout computed elsewhere (a worker thread, for big graphs) for `graph` folded as `folding`."""
        self._layout = (graph, frozenset() if folding is None else folding.state(), layout)
        if folding is not None:
            self.folding = folding
            self._folded_session = None  # adopted by the next session built on this graph

    def folding_for_session(self) -> Folding:
        """The folds of the session's graph: kept while the session stays (a new batch rebuilds its graph)."""
        s = self.bridge.session
        f = self.folding
        if f is None or (self._folded_session is not None and self._folded_session is not s):
            f = Folding.of(s.graph)
        elif f.graph is not s.graph:
            f = f.with_graph(s.graph)
        self.folding, self._folded_session = f, s
        return f

    def layout_for_session(self) -> Layout:
        graph = self.bridge.session.graph
        folding = self.folding_for_session()
        state = folding.state()
        if self._layout is None or self._layout[0] is not graph or self._layout[1] != state:
            self._layout = (graph, state, folding.layout())
        return self._layout[2]

    def rebuild(self, keep_view: bool = False) -> None:
        old = self._scene
        theme = self.themes.theme
        with paused_gc():  # tens of thousands of small objects that all live on (see `paused_gc`)
            layout = self.layout_for_session()
            self._scene = GraphScene(self.bridge.session, layout, theme, self.folding)
            self._sticky = StickyTitles(self._scene)
        self._scene.select(self.selection.node)
        if self._diffs is not None:
            self._scene.set_diffs(*self._diffs)
        if self._colouring is not None:
            self._scene.set_colouring(self._colouring, palette_for(theme).colors)
        self.setScene(self._scene)
        self.setBackgroundBrush(theme.color("background"))
        self.resetCachedContent()
        if old is not None:
            old.deleteLater()
        if keep_view:
            self._update_detail()
        else:
            self.show_start()
        self.viewChanged.emit()

    def set_diffs(self, diffs: dict[str, float] | None, color_of: Callable[[float], QColor] | None = None) -> None:
        """Colour nodes by a backend comparison (kept across folds and themes); None clears."""
        self._diffs = None if diffs is None or color_of is None else (dict(diffs), color_of)
        if self._scene is not None:
            self._scene.set_diffs(*(self._diffs or (None, QColor)))

    def set_colouring(self, numbers: NodeNumbers | None) -> None:
        """Colour nodes by `numbers` in its mode (kept across folds and themes); None: by kind."""
        self._colouring = numbers
        if self._scene is not None:
            self._scene.set_colouring(numbers, palette_for(self.themes.theme).colors if numbers is not None else None)

    def recolour(self) -> None:
        """The numbers moved (a step): the colours follow."""
        if self._scene is not None:
            if self._scene.colouring is None and self._colouring is not None:  # made before the numbers' session
                self.set_colouring(self._colouring)
            else:
                self._scene.recolour()

    # -- folding ---------------------------------------------------------------------------
    def toggle_fold(self, key: str) -> bool:
        """Open a closed box or fold an open unit, keeping the view on it; False if it cannot fold."""
        f = self.folding_for_session()
        if key not in f.units:
            return False
        if not f.toggle(key):
            self.message.emit(cannot_fold(f, key))
            return False
        self._refolded(key)
        return True

    def _frame_view_center(self, rect: QRectF) -> QPointF:
        """Where to centre an opened unit's frame: its centre when it fits the view; along an axis it does not fit,
        its top (or left) edge a little inside the view, so that its title, where a double-click folds it again,
        stays in sight."""
        view = self.visible_scene_rect()
        margin = 24 / max(self.zoom(), 1e-9)
        x = rect.center().x() if rect.width() <= view.width() else rect.left() - margin + view.width() / 2
        y = rect.center().y() if rect.height() <= view.height() else rect.top() - margin + view.height() / 2
        return QPointF(x, y)

    def fold_all(self, fold: bool) -> None:
        f = self.folding_for_session()
        if fold:
            f.close_all()
        else:
            f.open_all()
        self._refolded(None)

    def _refolded(self, key: str | None) -> None:
        self.rebuild(keep_view=key is not None)
        scene = self.graph_scene
        if key is not None:
            frame = scene.frames.get(key)
            if frame is not None:
                self.centerOn(self._frame_view_center(frame.rect))
            else:  # a box, or a unit still hidden inside a closed one: what is drawn for its first member
                unit = scene.folding.units[key]
                shown = key if key in scene.centers else scene.key_of(unit.members[0])
                self.centerOn(scene.centers[shown])
            self._update_detail()
        self.foldsChanged.emit()

    @guarded
    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self._scene is not None:
            key = self.node_at(event.position())
            if key is not None and key in self._scene.folding.units:
                self.toggle_fold(key)
                return
            if key is None:
                frame = self._scene.frame_at_point(self.mapToScene(event.position().toPoint()))
                if frame is not None:
                    self.toggle_fold(frame.unit.key)
                    return
        super().mouseDoubleClickEvent(event)

    def _theme_changed(self) -> None:
        self.rebuild()

    # -- zoom and pan ----------------------------------------------------------------------
    # `_auto` is True while the view is chosen by the app (on open, after F): a resize chooses again.
    # `_kept`: the view shows a node and its frames' titles (`spot_for`); a resize shows them again.
    # Zooming or dragging by hand makes it the user's view, which is then left alone.
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, zoom: float) -> None:
        """Zoom as the user asked, between 5% (or less, if the whole graph needs it) and 2000%."""
        self._set_zoom(zoom)
        self._auto = False

    def _set_zoom(self, zoom: float) -> None:
        low = min(MIN_ZOOM, self._fit_zoom())
        zoom = max(low, min(MAX_ZOOM, zoom))
        factor = zoom / self.zoom()
        if factor != 1.0:
            self.scale(factor, factor)
        self._update_detail()

    def _fit_zoom(self) -> float:
        r = self.graph_scene.graph_rect
        view = self.viewport().rect()
        if r.isEmpty() or view.isEmpty():
            return 1.0
        return min(view.width() / r.width(), view.height() / r.height())

    def fit(self) -> None:
        """Show the whole graph (never blown up beyond 125%): the F key."""
        r = self.graph_scene.graph_rect
        zoom = min(self._fit_zoom() * 0.97, MAX_FIT_ZOOM)
        self.setTransform(QTransform.fromScale(zoom, zoom))
        self.centerOn(r.center())
        self._auto = True
        self._update_detail()

    def show_start(self) -> None:
        """The whole graph when it can be read at that size (`START_ZOOM` or more); else a readable zoom
        on the step's node, or on the inputs before the first step."""
        self.fit()
        if self.zoom() >= START_ZOOM:
            return
        self._set_zoom(START_ZOOM)
        name = self.graph_scene.current
        if name is not None:
            self.center_on_node(name)
        else:  # the left edge of the graph, at the height of the first op to run
            # the scene's own session: while a new model is being installed, the bridge already holds the new
            # session and the scene still shows the old graph (a resize then asked for a node it does not have)
            scene = self.graph_scene
            steps = scene.session.steps
            r, view = scene.graph_rect, self.visible_scene_rect()
            y = scene.node_rect(steps[0].node.name).center().y() if steps else r.center().y()
            self.centerOn(r.left() + view.width() / 2 - self.graph_scene.geo.pad * 4, y)
        self._auto = True

    @guarded
    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.set_zoom(self.zoom() * 1.15 ** steps)
        event.accept()

    @guarded
    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._auto = False  # dragging: the user is panning
        super().mouseMoveEvent(event)

    @guarded  # an exception escaping here went through PySide 6.11's override error path, which corrupted memory
    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)  # type: ignore[arg-type]
        if self._auto and self._scene is not None:
            self.show_start()
        elif self._kept is not None and self._scene is not None:
            # The chain-rule dock grows with a step's text after the step has centred its node, and the
            # breadcrumbs' band comes and goes: the view keeps its centre, so a title shown above the node
            # went out of sight again. Shown again, unless the view was moved since (a drag, the minimap).
            name, centred, where = self._kept
            here = self.visible_scene_rect().center()
            if abs(here.x() - where.x()) <= 2 / self.zoom() and abs(here.y() - where.y()) <= 2 / self.zoom() \
                    and (name in self._scene.folding.chains or name in self._scene.centers):
                self._show(name, None if centred else here, centred)
            else:
                self._kept = None

    def _update_detail(self) -> None:
        detail = self.zoom() >= DETAIL_ZOOM
        self.graph_scene.show_detail(detail)
        if detail:
            self.graph_scene.ensure_items(self.visible_scene_rect())
        self.viewChanged.emit()

    @guarded
    def scrollContentsBy(self, dx: int, dy: int) -> None:
        pinned = self._pinned_rects()
        super().scrollContentsBy(dx, dy)
        # Qt scrolls a view while its scene is being destroyed (at exit too): nothing to make or announce then
        if self._scene is None or not shiboken6.isValid(self._scene):
            return
        if self.zoom() >= DETAIL_ZOOM:
            self._scene.ensure_items(self.visible_scene_rect())
        # Qt moved the viewport's pixels, the pinned titles with them: paint again where they went, and where
        # they belong now (a few small rectangles; the rest of the scroll stays a blit)
        viewport = self.viewport()
        for rect in pinned:
            viewport.update(rect.translated(dx, dy))
        for rect in self._pinned_rects():
            viewport.update(rect)
        self.viewChanged.emit()

    def _pinned_rects(self) -> list[QRect]:
        """Where the frames' pinned titles are in the viewport now (`StickyTitles`)."""
        if self._sticky is None or self._scene is None or not shiboken6.isValid(self._scene):
            return []
        pins = self._sticky.pins(self.visible_scene_rect(), self.zoom())
        return [self.mapFromScene(p.rect).boundingRect().adjusted(-2, -2, 2, 2) for p in pins]

    @guarded
    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        # as in `scrollContentsBy`: nothing to pin over a scene Qt is destroying (at exit, or a rebuild's old one)
        if self._sticky is not None and self._sticky.scene is self._scene and shiboken6.isValid(self._scene):
            self._sticky.paint(painter, rect, self.visible_scene_rect(), self.zoom())

    # -- finding things ------------------------------------------------------------------------
    def reveal(self, name: str) -> None:
        """Show node `name` (a search hit): open the closed boxes hiding it, select it, centre it readably."""
        f = self.folding_for_session()
        hiding = [k for k in f.chains.get(name, ()) if k in f.closed]
        if hiding:
            for key in hiding:
                f.open(key)
            self.rebuild(keep_view=True)
            self.foldsChanged.emit()
        if self.selection.node != name:
            self.selection.select(name)
        self.center_readably(name)

    def go_to_current(self) -> bool:
        """Centre the step's node (its box, when folded) at a readable zoom: the Space key."""
        name = self.graph_scene.current
        if name is None:
            steps = self.bridge.session.steps
            if not steps:
                return False
            name = steps[0].node.name  # before the first step: where it will start
        self.center_readably(name)
        return True

    def center_readably(self, name: str) -> None:
        if self.zoom() < START_ZOOM:
            self._set_zoom(START_ZOOM)
        self.center_on_node(name)
        self._auto = False
        self._update_detail()

    @guarded_answer(False)
    def viewportEvent(self, event: QEvent) -> bool:
        if isinstance(event, QHelpEvent) and event.type() == QEvent.Type.ToolTip and self._scene is not None:
            name = self.node_at(QPointF(event.pos()))
            unit = self._scene.folding.units.get(name or "")
            frame = self._scene.frame_at_point(self.mapToScene(event.pos())) if name is None else None
            if frame is not None:  # its title may show only the tail of the module path: here the whole of it
                folding, key = self._scene.folding, frame.unit.key
                how = cannot_fold(folding, key) if not folds_now(folding, key) else \
                    "Double-click the frame to fold it into one box"
                QToolTip.showText(event.globalPos(), f"{frame.unit.title}: {frame.unit.caption}\n{how}", self)
            elif name is None:
                QToolTip.hideText()
            elif unit is not None:
                note = self._scene.colour_note(unit.key)
                QToolTip.showText(event.globalPos(), f"{unit.title}: {unit.caption}\n"
                                  f"{note + chr(10) if note else ''}Double-click to open", self)
            else:
                node = self.bridge.session.graph[name]
                text = f"{name}: {node.op.name} {fmt_shape(node.shape)}\n{node.op.formula}"
                why = node.meta.get("reason")
                note = self._scene.colour_note(name)  # colouring by a number: that number
                text = f"{text}\n{note}" if note else text
                QToolTip.showText(event.globalPos(), f"{text}\n{why}" if why else text, self)
            return True
        return super().viewportEvent(event)

    # -- session events --------------------------------------------------------------------
    def _cursor_moved(self, cursor: int) -> None:
        self.graph_scene.cursor_moved(cursor)
        self._follow()

    def _trace_changed(self) -> None:
        self.graph_scene.refresh_all()

    def _breakpoints_changed(self) -> None:
        self.graph_scene.breakpoints_changed()

    def _selection_changed(self) -> None:
        self.graph_scene.select(self.selection.node)

    def current_node(self) -> str | None:
        return self.graph_scene.current

    def _follow(self) -> None:
        """Keep the step's node in view; in projector mode, keep it centred."""
        name = self.graph_scene.current
        if name is None:
            return
        rect = self.graph_scene.node_rect(name)
        if self.themes.projector:
            self.center_on_node(name)
        elif not self.visible_scene_rect().contains(rect):
            # leave room for what comes next: a quarter of the view beyond the node
            view = self.viewport().rect()
            self.ensureVisible(rect, view.width() // 4, view.height() // 6)
            # scrolled anyway: as little further as shows the title of the frame around it
            self._show(name, self.visible_scene_rect().center(), centred=False)

    def center_on_node(self, name: str) -> None:
        """Centre node `name`; moved off centre as little as shows the titles of the frames around it."""
        self._show(name, None, centred=True)

    def _show(self, name: str, around: QPointF | None, centred: bool) -> None:
        spot = self.spot_for(name, around)
        if around is None or spot != around:
            self.centerOn(spot)
        self._kept = (name, centred, self.visible_scene_rect().center())

    def spot_for(self, name: str, around: QPointF | None = None) -> QPointF:
        """Where to centre the view to show node `name`: `around` (the node's centre when None), moved as little
        as brings the title of the innermost frame around the node into sight, then the next frame's title, and
        so on while the node stays in sight with its ring.

        Centred on a node deep in a tall module (a block of resnet18 or Swin-T), the frame's title lay above the
        view: the breadcrumbs named the module, the canvas did not show where it began. A title that cannot be
        seen whole with the node is shown from its start, where the module's name begins; one too far to the left
        for that has at least its frame's header row in view, where the view pins a copy of it (`StickyTitles`)."""
        scene = self.graph_scene
        node = scene.node_rect(name)
        spot = node.center() if around is None else QPointF(around)
        view = self.visible_scene_rect()
        half_w, half_h = view.width() / 2, view.height() / 2
        reach = (RING_REACH + 2) * scene.theme.scale
        near = node.adjusted(-reach, -reach, reach, reach)
        # the centres that show `near` whole: a box (collapsed onto the node's centre where the node is larger)
        low_x, high_x = near.right() - half_w, near.left() + half_w
        low_y, high_y = near.bottom() - half_h, near.top() + half_h
        if low_x > high_x:
            low_x = high_x = node.center().x()
        if low_y > high_y:
            low_y = high_y = node.center().y()
        margin = 4 * scene.theme.scale
        for frame in scene.enclosing_frames(name):
            title = frame.title_rect()
            start = QRectF(title.left(), title.top(), min(title.width(), title.height() * 6), title.height())
            for k, shown in enumerate((title, start, title)):
                t = shown.adjusted(-margin, -margin, margin, margin)
                box = (max(low_x, t.right() - half_w), min(high_x, t.left() + half_w),
                       max(low_y, t.bottom() - half_h), min(high_y, t.top() + half_h))
                if k == 2:  # its header row, at least: the title is pinned to the view's left edge there
                    box = (low_x, high_x, *box[2:])
                if box[0] <= box[1] and box[2] <= box[3]:
                    low_x, high_x, low_y, high_y = box
                    break
            else:
                break  # not even its start: the frames further out are further still
        return QPointF(min(max(spot.x(), low_x), high_x), min(max(spot.y(), low_y), high_y))

    # -- mouse -----------------------------------------------------------------------------
    def node_at(self, pos: QPointF) -> str | None:
        return self.graph_scene.node_at_point(self.mapToScene(pos.toPoint()))

    @guarded
    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            name = self._node_name(self.node_at(event.position()))
            if name is not None and name != self.selection.node:
                self.selection.select(name)
        super().mousePressEvent(event)

    @guarded
    def contextMenuEvent(self, event: QContextMenuEvent) -> None:
        key = self.node_at(QPointF(event.pos()))
        if key is None:
            frame = self.graph_scene.frame_at_point(self.mapToScene(event.pos()))
            if frame is None:
                return
            key = frame.unit.key
        name = self._node_name(key)
        assert name is not None
        self.selection.select(name)
        menu = self.node_menu(key)
        menu.exec(event.globalPos())
        menu.deleteLater()

    def _node_name(self, key: str | None) -> str | None:
        """The graph node a drawn key stands for: itself, or the node whose value leaves a box."""
        unit = self.graph_scene.folding.units.get(key or "")
        return unit.output if unit is not None else key

    def node_menu(self, name: str) -> QMenu:
        """The right-click menu of a node or box (also what tests trigger)."""
        s = self.bridge.session
        menu = QMenu(self)
        folding = self.graph_scene.folding
        unit = folding.units.get(name)
        menu.setToolTipsVisible(True)  # a fold that cannot be says why
        if unit is not None:  # a box or a frame
            if unit.key in folding.closed:
                act = QAction(f"Open {unit.title}", menu)
            else:
                act = self._fold_action(folding, unit.key, menu)
            act.setObjectName("toggleFold")
            act.triggered.connect(lambda: self.toggle_fold(unit.key))
            menu.addAction(act)
            menu.addSeparator()
            name = unit.output
        outer = folding.unit_of(name) if unit is None else None
        while outer is not None:
            fold = self._fold_action(folding, outer.key, menu)
            fold.triggered.connect(lambda _c=False, k=outer.key: self.toggle_fold(k))
            menu.addAction(fold)
            outer = folding.units.get(outer.parent or "")
        if unit is None and folding.unit_of(name) is not None:
            menu.addSeparator()
        bp = QAction("Breakpoint on this node", menu, checkable=True)
        bp.setChecked(name in s.node_breakpoints())
        bp.setObjectName("toggleBreakpoint")
        bp.triggered.connect(lambda: self.bridge.toggle_breakpoint(name))
        menu.addAction(bp)
        menu.addSeparator()
        for phase in (FORWARD, BACKWARD):
            act = QAction(f"Run to its {phase} step", menu)
            act.setEnabled(s.node_phase_index(name, phase) is not None)
            act.triggered.connect(lambda _c=False, p=phase: self._run_to(name, p))
            menu.addAction(act)
        explain = QAction("Explain its gradient…", menu)
        explain.setEnabled(s.loss_node is not None and s.graph[name] is not s.loss_node)
        explain.triggered.connect(lambda: self.explainRequested.emit(name))
        menu.addAction(explain)
        menu.addSeparator()
        fit = QAction("Fit graph to view", menu)
        fit.triggered.connect(self.fit)
        menu.addAction(fit)
        return menu

    @staticmethod
    def _fold_action(folding: Folding, key: str, menu: QMenu) -> QAction:
        """"Fold … into a box", disabled with the reason where the unit cannot fold."""
        act = QAction(f"Fold {folding.units[key].title} into a box", menu)
        if not folds_now(folding, key):
            act.setEnabled(False)
            act.setToolTip(cannot_fold(folding, key))
        return act

    def _run_to(self, name: str, phase: str) -> None:
        """Asks the window to run there (a slice at a time, gui/actions.SlicedRun: it may be a whole pass away)."""
        index = self.bridge.session.node_phase_index(name, phase)
        if index is not None:
            self.runRequested.emit(index + 1, f"Running to the {phase} step of {name}")

    def visible_scene_rect(self) -> QRectF:
        return self.mapToScene(self.viewport().rect()).boundingRect()

    def set_top_band(self, height: int) -> None:
        """Keep `height` pixels along the top of the canvas out of the graph's view, for a bar over it (the
        breadcrumbs): what the view fits, centres and follows then lies below the bar, never under it."""
        height = max(0, height)
        if self.viewportMargins().top() != height:
            self.setViewportMargins(0, height, 0, 0)


def folds_now(folding: Folding, key: str) -> bool:
    """Whether open unit `key` folds if asked now (its frame's tooltip, the right-click menu). A unit that can
    fold on its own is tried against the boxes closed now only if it was refused before (`blocked`): a try walks
    the whole folded graph, and the menu asks for every module around the node. The double-click always tries,
    and says why when it cannot (`cannot_fold`)."""
    if folding.loop_out(key) is not None:
        return False
    return key not in folding.blocked or not folding.fold_conflicts(key)


def cannot_fold(folding: Folding, key: str) -> str:
    """Why unit `key` does not fold: the op its values leave through and come back from, when it has one; else
    the closed boxes it would make a loop with."""
    title = folding.units[key].title
    loop = folding.loop_out(key)
    if loop is not None:
        return f"{title} cannot fold: values leave it through {loop} and come back in"
    conflicts = [folding.units[k].title for k in folding.fold_conflicts(key)]
    if conflicts:
        return f"{title} cannot fold while {', '.join(conflicts[:3])} {'is' if len(conflicts) == 1 else 'are'} " \
               "folded: values would go from one box to the other and back"
    return f"{title} folds into one box"

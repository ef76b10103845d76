"""The graph scene: positions from the layout; a step updates only the nodes and edges it touched.

Detailed items are made lazily, for the part of the graph the view shows at a readable zoom
(`ensure_items`), so a 5,000-node graph opens with one overview item and grows items only where
the user looks. Node state (value, gradient, step highlight) is read from the session when an
item is made, so an item made late looks exactly like one made early.

With folding (`Folding`), what is drawn are "keys": a node's name, or the key of the closed
module box holding it. Every method taking a node name accepts a hidden node too and answers
for its box; `current` stays the step's node name, `current_key` is what is lit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import numpy as np
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QColor, QPainterPath
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene

from ...debugger import BACKWARD, FORWARD, Session
from ...graph.layout import Layout, nearest_free
from ..guard import guarded
from ..theme import Theme, node_kind
from .boxes import BoxItem, FrameItem
from .folding import Folding
from .geometry import Geometry, edge_path
from .items import EdgeItem, GradLabel, NodeItem, Style
from .overview import OverviewItem

FULL_REFRESH = 48  # a jump over more steps than this refreshes every node instead of the touched ones
EAGER = 400  # graphs up to this many nodes get all their items at once
FRAME_CEILING = 1.0  # module frames stack at 0.5 + depth / 100 below this; nodes and edges live above it


class _Layer(QGraphicsItem):
    """An invisible parent, so the detailed items are shown or hidden in one call."""

    def boundingRect(self) -> QRectF:
        return QRectF()

    @guarded
    def paint(self, *args: object) -> None:
        pass


class GraphScene(QGraphicsScene):
    def __init__(self, session: Session, layout: Layout, theme: Theme, folding: Folding | None = None) -> None:
        super().__init__()
        self.session = session
        self.layout = layout
        self.theme = theme
        self.folding = folding if folding is not None else Folding.of(session.graph, ())
        self.current_key: str | None = None
        self.frames: dict[str, FrameItem] = {}
        self._lit_frames: set[str] = set()  # frames holding the step's node
        self.diffs: dict[str, QColor] = {}  # key -> colour of its backend difference, while a comparison shows
        self.geo = Geometry.for_theme(theme)
        if self.folding.frames():  # room between rows for the frames' titles
            self.geo = dataclasses.replace(self.geo, row_h=self.geo.row_h + 24 * theme.scale)
        self.style = Style(theme, self.geo)
        self.nodes: dict[str, NodeItem] = {}  # made so far
        self.edge_items: dict[int, EdgeItem] = {}  # made so far, by edge number
        self.labels: list[GradLabel] = []
        self.lit: dict[int, str] = {}  # edge number -> "forward" / "backward" at the cursor
        self.current: str | None = None
        self.selected: str | None = None
        self.cursor = -1
        self._backward_index = {s.node.name: s.index for s in session.steps if s.phase == BACKWARD}
        self._forward_index = {s.node.name: s.index for s in session.steps if s.phase == FORWARD}
        self.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.BspTreeIndex)
        self.detail = _Layer()
        self.detail.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents)
        # above every module frame: a child's z counts only among its siblings, so with the layer at 0 the
        # frames' translucent fills (z 0.5 and up) were painted over every node, nested ones washing them out
        self.detail.setZValue(FRAME_CEILING)
        self.addItem(self.detail)
        # the frames shown with the detail only: zoomed out, the overview draws them in one call (4,000 frame
        # items painting one by one made a fitted frame of a 20,000-node graph take 120 ms)
        self.frame_layer = _Layer()
        self.frame_layer.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents)
        self.frame_layer.setZValue(FRAME_CEILING / 2)
        self.addItem(self.frame_layer)
        self._plan()
        self.show_detail(False)
        if len(self.names) <= EAGER:
            self.ensure_items(None)
        self.refresh_all()

    # -- positions (cheap, for every node) ---------------------------------------------------
    def _plan(self) -> None:
        geo, lay, g, f = self.geo, self.layout, self.session.graph, self.folding
        if not f.units:  # nothing to fold (the lessons without modules, big synthetic graphs): the fast path
            self.names = [n.name for n in g]
            edges = self._plain_edges()
        else:
            self.names = f.visible()
            edges = [(e.src, e.dst, e.position, e.count, e.role) for e in f.edges()]
        self.centers = {n: geo.center(*lay.positions[n]) for n in self.names}
        box = geo.node_rect()
        rects = {n: box.translated(c) for n, c in self.centers.items()}
        self.edges: list[tuple[str, str, int, int, str]] = edges  # src, dst, input position, inputs, role
        self.in_edges: dict[str, list[int]] = {}
        for e, (_src, dst, _pos, _count, _role) in enumerate(edges):
            self.in_edges.setdefault(dst, []).append(e)
        self.points: list[list[QPointF]] = self._edge_points(edges)
        kinds = {k: "module" if k in f.units else node_kind(g[k].op.name, g[k].op.category) for k in self.names}
        self._plan_frames(rects)
        fwd, units = self._forward_index, f.units
        order = {k: fwd.get(units[k].output if k in units else k, -1) for k in self.names}
        self.overview = OverviewItem(rects, kinds, self.points, self.theme,
                                     [fr.rect for fr in self.frames.values()], order)
        self.addItem(self.overview)
        xy = np.array([(c.x(), c.y()) for c in self.centers.values()]).reshape(-1, 2)
        self._node_xy = xy
        self._edge_box = _bounding_boxes(self.points)
        self._made_edges = np.zeros(len(self.edges), dtype=bool)
        self._made_nodes = np.zeros(len(self.names), dtype=bool)
        bounds = self.overview.boundingRect()
        margin = max(bounds.width(), bounds.height(), 2000.0)
        self.setSceneRect(bounds.adjusted(-margin, -margin, margin, margin))
        self.graph_rect = bounds

    def _edge_points(self, edges: list[tuple[str, str, int, int, str]]) -> list[list[QPointF]]:
        """Each edge's points: the source's out port (`Geometry.out_port`), its bends, the target's in port
        (`Geometry.in_port`), written out here: 20,000 edges are planned on every open."""
        geo, routes, centers = self.geo, self.layout.routes, self.centers
        half_w, top, body = geo.node_w / 2, geo.header_h - geo.node_h / 2, geo.node_h - geo.header_h
        out = []
        for src, dst, pos, count, _role in edges:
            a, b = centers[src], centers[dst]
            pts = [QPointF(a.x() + half_w, a.y())]
            route = routes.get((src, dst))
            if route:
                pts += [geo.center(lay, row) for lay, row in route]
            pts.append(QPointF(b.x() - half_w, b.y() + top + body * (pos + 0.5) / max(count, 1)))
            out.append(pts)
        return out

    def _plain_edges(self) -> list[tuple[str, str, int, int, str]]:
        edges = []
        for node in self.session.graph:
            seen: set[str] = set()
            for pos, a in enumerate(node.inputs):
                if a.name in seen:  # the same value twice (x · x): one drawn edge is enough
                    continue
                seen.add(a.name)
                count = len(node.inputs)
                edges.append((a.name, node.name, pos, count, node.op.role(pos) if count > 1 else ""))
        return edges

    def _plan_frames(self, rects: Mapping[str, QRectF]) -> None:
        """A frame around each open unit's shown members, nested frames inside their parent's margin."""
        s = self.theme.scale
        margin, header = 7 * s, 18 * s
        areas: dict[str, QRectF] = {}
        units = self.folding.frames()
        boxes = self.layout.boxes
        children: dict[str | None, list[str]] = {}
        for unit in units:
            children.setdefault(unit.parent, []).append(unit.key)
        for unit in sorted(units, key=lambda u: -u.depth):
            if boxes and unit.key not in boxes:  # the layout could not keep it apart: no frame over others
                continue
            area = QRectF()
            for name in unit.members:
                key = self.folding.rep(name)
                if key in rects:
                    area = area.united(rects[key])
            for child in children.get(unit.key, ()):
                if child in areas:
                    area = area.united(areas[child])
            if area.isEmpty():
                continue
            area = area.adjusted(-margin, -margin - header, margin, margin)
            areas[unit.key] = area
            frame = FrameItem(unit, area, header, self.style)
            self.frames[unit.key] = frame
            frame.setParentItem(self.frame_layer)

    # -- making items where they are seen ------------------------------------------------------
    def ensure_items(self, rect: QRectF | None) -> int:
        """Make the items that `rect` (None: the whole graph) shows; returns how many were made."""
        geo = self.geo
        if rect is None:
            nodes = np.flatnonzero(~self._made_nodes)
            edges = np.flatnonzero(~self._made_edges)
        else:
            r = rect.adjusted(-geo.col_w, -geo.row_h, geo.col_w, geo.row_h)
            xy = self._node_xy
            inside = ((xy[:, 0] >= r.left()) & (xy[:, 0] <= r.right()) & (xy[:, 1] >= r.top())
                      & (xy[:, 1] <= r.bottom()))
            nodes = np.flatnonzero(inside & ~self._made_nodes)
            b = self._edge_box
            hit = (b[:, 2] >= r.left()) & (b[:, 0] <= r.right()) & (b[:, 3] >= r.top()) & (b[:, 1] <= r.bottom())
            edges = np.flatnonzero(hit & ~self._made_edges)
        graph = self.session.graph
        marks = self._marked_keys()
        for i in nodes:
            name = self.names[i]
            unit = self.folding.units.get(name)
            item = NodeItem(graph[name], self.style) if unit is None else BoxItem(unit, self.style)
            item.setPos(self.centers[name])
            item.setParentItem(self.detail)
            self.nodes[name] = item
            self._refresh_node(name)
            item.set_breakpoint(name in marks)
            item.set_selected(name == self.selected)
            item.set_diff(self.diffs.get(name))
            if name == self.current_key:
                self._light(item)
        self._made_nodes[nodes] = True
        for e in edges:
            src, dst, _pos, _count, role = self.edges[e]
            pts = self.points[e]
            item = EdgeItem(src, dst, pts, edge_path(pts, geo), role, self.style)
            item.setParentItem(self.detail)
            item.set_flow(self.lit.get(int(e)))
            self.edge_items[int(e)] = item
        self._made_edges[edges] = True
        return len(nodes) + len(edges)

    def show_detail(self, on: bool) -> None:
        self.detail.setVisible(on)
        self.frame_layer.setVisible(on)
        self.overview.setVisible(not on)
        if not on:
            self._update_overview()

    # -- following the session ---------------------------------------------------------------
    def refresh_all(self) -> None:
        for name in self.nodes:
            self._refresh_node(name)
        self._mark_breakpoints()
        self._show_cursor(self.session.cursor)
        self._update_overview()

    def cursor_moved(self, cursor: int) -> None:
        old = self.cursor
        if old < 0 or abs(cursor - old) > FULL_REFRESH:
            for name in self.nodes:
                self._refresh_node(name)
        else:
            touched: set[str] = set()
            for i in range(min(old, cursor), max(old, cursor)):
                planned = self.session.steps[i]
                touched.add(planned.node.name)
                if planned.phase == BACKWARD:
                    touched.update(a.name for a in planned.node.inputs)
            keys = {self.folding.rep(n) for n in touched} if self.folding.closed else touched
            for name in keys & self.nodes.keys():
                self._refresh_node(name)
        self._show_cursor(cursor)
        self._update_overview()

    def _refresh_node(self, name: str) -> None:
        s = self.session
        unit = self.folding.units.get(name)
        if unit is not None:  # a box shows the value that leaves it
            self.nodes[name].set_state(s.value(unit.output), s.grad(unit.output), None)
            return
        self.nodes[name].set_state(s.value(name), s.grad(name), self._arrivals(name))

    def _arrivals(self, name: str) -> tuple[int, int] | None:
        """How many of the node's gradient contributions have arrived at the cursor, out of how many."""
        s = self.session
        arrived, total = 0, 0
        for user in s.graph.users(name):
            index = self._backward_index.get(user.name)
            if index is None or index >= s.cursor:
                continue
            record = s.trace.records[index]
            for term in record.terms:  # type: ignore[union-attr]
                if term.input.name == name:
                    arrived += 1
                    total = term.consumers
        return (arrived, total) if total else None

    def _phase_at_cursor(self) -> str | None:
        record = self.session.current
        return None if record is None else record.phase

    def _light(self, item: NodeItem) -> None:
        """Mark `item` as the step's: a node by its phase; a box also names the node inside."""
        phase = self._phase_at_cursor()
        if isinstance(item, BoxItem):
            item.set_inner(self.current, phase)
        else:
            item.set_current(phase)

    def _unlight(self, key: str | None) -> None:
        item = self.nodes.get(key) if key is not None else None
        if isinstance(item, BoxItem):
            item.set_inner(None, None)
        elif item is not None:
            item.set_current(None)

    def _show_cursor(self, cursor: int) -> None:
        self.cursor = cursor
        for e in self.lit:
            if e in self.edge_items:
                self.edge_items[e].set_flow(None)
        self.lit = {}
        for label in self.labels:
            self.removeItem(label)
        self.labels = []
        self._unlight(self.current_key)
        record = self.session.current
        self.current = None if record is None else record.node.name
        self.current_key = None if record is None else self.folding.rep(record.node.name)
        inside = set(self.folding.chains.get(self.current or "", ()))  # the units holding the step's node
        for key in self._lit_frames - inside:
            self.frames[key].set_lit(False)
        self._lit_frames = inside & self.frames.keys()
        for key in self._lit_frames:
            self.frames[key].set_lit(True)
        if record is None:
            return
        if self.current_key in self.nodes:
            self._light(self.nodes[self.current_key])
        rep = self.folding.rep
        mine = {rep(a.name) for a in record.node.inputs} - {self.current_key}
        by_source = {self.edges[e][0]: e for e in self.in_edges.get(self.current_key or "", [])
                     if self.edges[e][0] in mine}
        if record.phase == BACKWARD:
            for term in record.terms:  # type: ignore[union-attr]
                e = by_source.pop(rep(term.input.name), None)
                if e is None:
                    continue
                self.lit[e] = BACKWARD
                label = GradLabel(term.role, self.session.backend.to_numpy(term.contribution), term.arrival,
                                  term.consumers, self.style)
                label.setPos(self._label_spot(e, label.boundingRect()))
                label.setParentItem(self.detail)
                self.labels.append(label)
        else:
            self.lit = dict.fromkeys(by_source.values(), FORWARD)
        for e, flow in self.lit.items():
            if e in self.edge_items:
                self.edge_items[e].set_flow(flow)

    def _label_spot(self, e: int, bounds: QRectF) -> QPointF:
        """Where a gradient label goes: on its edge in the gap before the target's column, moved up or
        down (never onto a node) when it is wider than the gap."""
        geo = self.geo
        pts = self.points[e]
        end = pts[-1]
        x = end.x() - (geo.col_w - geo.node_w) / 2  # the middle of the gap left of the target
        item = self.edge_items.get(e)
        path = item.path if item is not None else edge_path(pts, geo)
        y = _path_y_at(path, x)
        half_w, half_h = bounds.width() / 2, bounds.height() / 2
        xy = self._node_xy
        near = np.abs(xy[:, 0] - x) < half_w + geo.node_w / 2
        busy = sorted((cy - geo.node_h / 2 - 2, cy + geo.node_h / 2 + 2) for cy in xy[near, 1])
        return QPointF(x, nearest_free(busy, y, 2 * half_h))

    def _update_overview(self) -> None:
        if self.overview.isVisible():  # pale: what has not run yet (a box: until the value it hands on is computed)
            self.overview.set_steps_run(self.cursor)
            self.overview.set_marks(self.current_key, self._marked_keys())

    def _marked_keys(self) -> set[str]:
        marks = self.session.node_breakpoints()
        return {self.folding.rep(n) for n in marks} if self.folding.closed else marks

    def _mark_breakpoints(self) -> None:
        marks = self._marked_keys()
        for name, item in self.nodes.items():
            item.set_breakpoint(name in marks)
        self.overview.set_marks(self.current_key, marks)

    def set_diffs(self, diffs: Mapping[str, float] | None, color_of: Callable[[float], QColor]) -> None:
        """Colour every node by its backend difference (a box by its worst member); None clears."""
        worst: dict[str, float] = {}
        for name, d in (diffs or {}).items():
            key = self.key_of(name)
            if key not in worst or d > worst[key] or worst[key] != worst[key]:  # a NaN (nothing yet) gives way
                worst[key] = d
        self.diffs = {key: color_of(d) for key, d in worst.items()}
        for key, item in self.nodes.items():
            item.set_diff(self.diffs.get(key))

    def breakpoints_changed(self) -> None:
        self._mark_breakpoints()

    def select(self, name: str | None) -> None:
        if self.selected in self.nodes:
            self.nodes[self.selected].set_selected(False)
        key = self.key_of(name) if name is not None else None
        self.selected = key if key in self.centers else None
        if self.selected in self.nodes:
            self.nodes[self.selected].set_selected(True)

    def key_of(self, name: str) -> str:
        """What is drawn for `name`: itself, or its closed box."""
        return self.folding.rep(name) if name in self.folding.chains else name

    def frame_at_point(self, p: QPointF) -> FrameItem | None:
        """The innermost open frame under a scene point."""
        hits = [f for f in self.frames.values() if f.rect.contains(p)]
        return max(hits, key=lambda f: f.unit.depth) if hits else None

    def node_at_item(self, item: QGraphicsItem | None) -> str | None:
        while item is not None:
            if isinstance(item, NodeItem):
                return item.name
            item = item.parentItem()
        return None

    def node_at_point(self, p: QPointF) -> str | None:
        """The node under a scene point, made or not (the overview has no items to hit)."""
        half_w, half_h = self.geo.node_w / 2, self.geo.node_h / 2
        xy = self._node_xy
        hit = np.flatnonzero((np.abs(xy[:, 0] - p.x()) <= half_w) & (np.abs(xy[:, 1] - p.y()) <= half_h))
        return self.names[int(hit[0])] if hit.size else None

    def node_rect(self, name: str) -> QRectF:
        return self.geo.node_rect().translated(self.centers[self.key_of(name)])


def _bounding_boxes(points: list[list[QPointF]]) -> np.ndarray:
    """(edges, 4) left, top, right, bottom of each edge's points."""
    if not points:
        return np.zeros((0, 4))
    xy = np.array([(p.x(), p.y()) for pts in points for p in pts])
    starts = np.cumsum([0] + [len(pts) for pts in points[:-1]])
    low, high = np.minimum.reduceat(xy, starts, axis=0), np.maximum.reduceat(xy, starts, axis=0)
    return np.hstack([low, high])


def _path_y_at(path: QPainterPath, x: float) -> float:
    """The height of a left-to-right edge where it passes `x` (bisection on the path's length)."""
    lo, hi = 0.0, 1.0
    for _ in range(20):
        mid = (lo + hi) / 2
        if path.pointAtPercent(mid).x() < x:
            lo = mid
        else:
            hi = mid
    return path.pointAtPercent(hi).y()

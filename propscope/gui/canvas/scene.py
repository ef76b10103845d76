"""The graph scene: positions from the layout; a step updates only the nodes and edges it touched.

Detailed items are made lazily, for the part of the graph the view shows at a readable zoom
(`ensure_items`), so a 5,000-node graph opens with one overview item and grows items only where
the user looks. Node state (value, gradient, step highlight) is read from the session when an
item is made, so an item made late looks exactly like one made early.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene

from ...debugger import BACKWARD, FORWARD, Session
from ...graph.layout import Layout
from ..theme import Theme, node_kind
from .geometry import Geometry, edge_path, edge_points
from .items import EdgeItem, GradLabel, NodeItem, Style
from .overview import OverviewItem

FULL_REFRESH = 48  # a jump over more steps than this refreshes every node instead of the touched ones
EAGER = 400  # graphs up to this many nodes get all their items at once


class _Layer(QGraphicsItem):
    """An invisible parent, so the detailed items are shown or hidden in one call."""

    def boundingRect(self) -> QRectF:
        return QRectF()

    def paint(self, *args: object) -> None:
        pass


class GraphScene(QGraphicsScene):
    def __init__(self, session: Session, layout: Layout, theme: Theme) -> None:
        super().__init__()
        self.session = session
        self.layout = layout
        self.theme = theme
        self.geo = Geometry.for_theme(theme)
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
        self.addItem(self.detail)
        self._plan()
        self.show_detail(False)
        if len(self.names) <= EAGER:
            self.ensure_items(None)
        self.refresh_all()

    # -- positions (cheap, for every node) ---------------------------------------------------
    def _plan(self) -> None:
        geo, lay, g = self.geo, self.layout, self.session.graph
        self.names = [n.name for n in g]
        self.centers = {n: geo.center(*lay.positions[n]) for n in self.names}
        box = geo.node_rect()
        rects = {n: box.translated(c) for n, c in self.centers.items()}
        self.edges: list[tuple[str, str, int, int, str]] = []  # src, dst, input position, inputs, role
        self.points: list[list[QPointF]] = []
        self.in_edges: dict[str, list[int]] = {}
        for node in g:
            seen: set[str] = set()
            for pos, a in enumerate(node.inputs):
                if a.name in seen:  # the same value twice (x · x): one drawn edge is enough
                    continue
                seen.add(a.name)
                count = len(node.inputs)
                self.in_edges.setdefault(node.name, []).append(len(self.edges))
                self.edges.append((a.name, node.name, pos, count, node.op.role(pos) if count > 1 else ""))
                self.points.append(edge_points(lay, geo, a.name, node.name, pos, count))
        kinds = {n.name: node_kind(n.op.name, n.op.category) for n in g}
        self.overview = OverviewItem(rects, kinds, self.points, self.theme)
        self.addItem(self.overview)
        xy = np.array([(c.x(), c.y()) for c in self.centers.values()]).reshape(-1, 2)
        self._node_xy = xy
        boxes = [(min(p.x() for p in pts), min(p.y() for p in pts), max(p.x() for p in pts),
                  max(p.y() for p in pts)) for pts in self.points]
        self._edge_box = np.array(boxes).reshape(-1, 4)
        self._made_edges = np.zeros(len(self.edges), dtype=bool)
        self._made_nodes = np.zeros(len(self.names), dtype=bool)
        bounds = self.overview.boundingRect()
        margin = max(bounds.width(), bounds.height(), 2000.0)
        self.setSceneRect(bounds.adjusted(-margin, -margin, margin, margin))
        self.graph_rect = bounds

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
        marks = self.session.node_breakpoints()
        for i in nodes:
            name = self.names[i]
            item = NodeItem(graph[name], self.style)
            item.setPos(self.centers[name])
            item.setParentItem(self.detail)
            self.nodes[name] = item
            self._refresh_node(name)
            item.set_breakpoint(name in marks)
            item.set_selected(name == self.selected)
            item.set_current(self._phase_at_cursor() if name == self.current else None)
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
            for name in touched & self.nodes.keys():
                self._refresh_node(name)
        self._show_cursor(cursor)
        self._update_overview()

    def _refresh_node(self, name: str) -> None:
        s = self.session
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

    def _show_cursor(self, cursor: int) -> None:
        self.cursor = cursor
        for e in self.lit:
            if e in self.edge_items:
                self.edge_items[e].set_flow(None)
        self.lit = {}
        for label in self.labels:
            self.removeItem(label)
        self.labels = []
        if self.current in self.nodes:
            self.nodes[self.current].set_current(None)
        record = self.session.current
        self.current = None if record is None else record.node.name
        if record is None:
            return
        if self.current in self.nodes:
            self.nodes[self.current].set_current(record.phase)
        by_source = {self.edges[e][0]: e for e in self.in_edges.get(record.node.name, [])}
        if record.phase == BACKWARD:
            for term in record.terms:  # type: ignore[union-attr]
                e = by_source.get(term.input.name)
                if e is None:
                    continue
                self.lit[e] = BACKWARD
                label = GradLabel(term.role, self.session.backend.to_numpy(term.contribution), term.arrival,
                                  term.consumers, self.style)
                label.setPos(self._edge_midpoint(e))
                label.setParentItem(self.detail)
                self.labels.append(label)
        else:
            self.lit = dict.fromkeys(by_source.values(), FORWARD)
        for e, flow in self.lit.items():
            if e in self.edge_items:
                self.edge_items[e].set_flow(flow)

    def _edge_midpoint(self, e: int) -> QPointF:
        item = self.edge_items.get(e)
        path = item.path if item is not None else edge_path(self.points[e], self.geo)
        return path.pointAtPercent(0.5)

    def _update_overview(self) -> None:
        if self.overview.isVisible():
            pending = {s.node.name for s in self.session.steps[self.cursor:self.session.n_forward]}
            self.overview.set_pending(pending)
            self.overview.set_marks(self.current, self.session.node_breakpoints())

    def _mark_breakpoints(self) -> None:
        marks = self.session.node_breakpoints()
        for name, item in self.nodes.items():
            item.set_breakpoint(name in marks)
        self.overview.set_marks(self.current, marks)

    def breakpoints_changed(self) -> None:
        self._mark_breakpoints()

    def select(self, name: str | None) -> None:
        if self.selected in self.nodes:
            self.nodes[self.selected].set_selected(False)
        self.selected = name if name in self.centers else None
        if self.selected in self.nodes:
            self.nodes[self.selected].set_selected(True)

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
        return self.geo.node_rect().translated(self.centers[name])

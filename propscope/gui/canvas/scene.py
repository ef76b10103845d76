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
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import attrgetter, itemgetter
from typing import Any, overload

import numpy as np
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtGui import QColor, QPainterPath
from PySide6.QtWidgets import QGraphicsItem, QGraphicsScene

from ...debugger import BACKWARD, FORWARD, Session
from ...debugger.node_numbers import BAD, NEVER, NO_NUMBER, NONFINITE, ORIGIN, NodeNumbers
from ...graph.ir import Node
from ...graph.layout import Layout, nearest_free
from ..theme import Theme, node_kind
from .boxes import BoxItem, FrameItem
from .folding import Folding
from .geometry import Geometry, edge_path
from .items import RING_REACH, EdgeItem, GradLabel, NodeItem, RoleLabel, Style, role_layout, role_run
from .overview import OverviewItem

FULL_REFRESH = 48  # a jump over more steps than this refreshes every node instead of the touched ones
EAGER = 400  # graphs up to this many nodes get all their items at once
FRAME_CEILING = 1.0  # module frames stack at 0.5 + depth / 100 below this; nodes and edges live above it


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
        # View ▸ Colour nodes by: the numbers and the colour of each code (`colour_by.Palette.colors`); per drawn row,
        # its code and the graph row whose number gave it (a box: its most alarming member), made by `recolour`
        self.colouring: tuple[NodeNumbers, list[QColor]] | None = None
        self.key_codes: np.ndarray | None = None
        self.key_source: np.ndarray | None = None
        self._graph_keys: np.ndarray | None = None  # graph row -> the drawn row showing it
        self.geo = Geometry.for_theme(theme)
        if self.folding.frames():  # room between rows for the frames' titles
            self.geo = dataclasses.replace(self.geo, row_h=self.geo.row_h + 24 * theme.scale)
        self.style = Style(theme, self.geo)
        self.nodes: dict[str, NodeItem] = {}  # made so far
        self.edge_items: dict[int, EdgeItem] = {}  # made so far, by edge number
        self.labels: list[GradLabel] = []
        self.role_labels: list[RoleLabel] = []  # the inputs' roles (x, W, b) of the edges made so far
        self.lit: dict[int, str] = {}  # edge number -> "forward" / "backward" at the cursor
        self.current: str | None = None
        self.selected: str | None = None
        self.cursor = -1
        self._backward: dict[str, int] | None = None  # node -> its backward step (made when first asked)
        self._forward_index = _forward_steps(session)
        # Every node, edge, label and frame is a top-level item, so the index finds the few a repaint exposes.
        # Under a parent "layer" item (one call to show or hide them all) each repaint visited every child
        # the layer had: 4,000 module frames, and once a 20,000-node graph had been explored, 44,000 items:
        # 72 ms a frame. Frames stack at 0.5 + depth / 100, below FRAME_CEILING; nodes and edges above it.
        # Zoomed out, none of them is shown: the overview draws the graph and the frames in a few calls.
        self.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.BspTreeIndex)
        self._detail_shown = False  # what `show_detail` last chose: items are made shown or hidden to match
        self._plan()
        self.show_detail(False)
        if len(self.names) <= EAGER:
            self.ensure_items(None)
        self.refresh_all()

    # -- positions (cheap, for every node) ---------------------------------------------------
    # Planned in NumPy arrays, with no Qt object per node or edge: a 20,000-op chain is planned on every
    # open. Qt objects (`centers[key]`, `edge_points(e)`) are made when asked, for what is seen.
    def _plan(self) -> None:
        geo, lay, g, f = self.geo, self.layout, self.session.graph, self.folding
        edges: Edges
        if not f.units:  # nothing to fold (the lessons without modules, big synthetic graphs): the fast path
            nodes = g.nodes
            self.names = list(map(attrgetter("name"), nodes))
            edges = self._plain_edges(nodes)
            outputs = self.names
            kinds = _kinds(list(map(attrgetter("op"), nodes)))
        else:
            self.names = f.visible()
            view_edges = f.edges()
            edges = Edges([e.src for e in view_edges], [e.dst for e in view_edges], [e.position for e in view_edges],
                          [e.count for e in view_edges], [e.role for e in view_edges])
            units = f.units
            outputs = [units[k].output if k in units else k for k in self.names]
            kinds = _kinds([None if k in units else g[k].op for k in self.names])
        names = self.names
        n = len(names)
        self._index = index = dict(zip(names, range(n), strict=True))
        flat = np.fromiter(itertools.chain.from_iterable(map(lay.positions.__getitem__, names)), np.float64, 2 * n)
        xy = flat.reshape(n, 2) * np.array([geo.col_w, geo.row_h])
        self._node_xy = xy
        self.centers: Mapping[str, QPointF] = _Centers(index, xy)
        self.edges = edges  # edges[e] = (src, dst, input position, inputs, role)
        self._plan_edges(edges)
        self._plan_frames()
        w, h = geo.node_w, geo.node_h
        rects = np.empty((n, 4))
        rects[:, 0] = xy[:, 0] + -w / 2
        rects[:, 1] = xy[:, 1] + -h / 2
        rects[:, 2], rects[:, 3] = w, h
        fwd = self._forward_index
        order = np.fromiter(map(fwd.get, outputs, itertools.repeat(-1)), np.int64, n)
        by_kind: dict[str, tuple[list[int], np.ndarray]] = {}
        codes = {kind: c for c, kind in enumerate(dict.fromkeys(kinds))}
        code = np.fromiter(map(codes.__getitem__, kinds), np.int64, n)
        for kind, c in codes.items():
            mine = np.flatnonzero(code == c)
            mine = mine[np.lexsort((mine, order[mine]))]  # by step, then by position
            by_kind[kind] = (order[mine].tolist(), rects[mine])
        frames = np.array([[r.x(), r.y(), r.width(), r.height()] for r in (fr.rect for fr in self.frames.values())])
        self.overview = OverviewItem(by_kind, self._points, self._point_start, self.centers, self.theme,
                                     frames.reshape(-1, 4))
        self.overview.set_rows(rects, code, list(codes))  # for colouring by a number (`recolour`)
        self.addItem(self.overview)
        self._made_edges = np.zeros(len(self.edges), dtype=bool)
        self._made_nodes = np.zeros(n, dtype=bool)
        # Qt sizes the BSP tree once, for the items it holds when first asked (the overview and the frames: 5
        # levels for a plain chain), and keeps that depth however many items are made later: a 20,000-node
        # chain explored at 1:1 then drew each frame from a leaf holding most of its 40,000 items (20 ms).
        self.setBspTreeDepth(bsp_depth(n + len(self.edges) + len(self.frames)))
        bounds = self.overview.boundingRect()
        margin = max(bounds.width(), bounds.height(), 2000.0)
        self.setSceneRect(bounds.adjusted(-margin, -margin, margin, margin))
        self.graph_rect = bounds

    def _plan_edges(self, edges: Edges) -> None:
        """Each edge's points: the source's out port (`Geometry.out_port`), its bends, the target's in port
        (`Geometry.in_port`), as rows of one array (`_points[_point_start[e]:…]`), and its bounding box."""
        geo, routes, index, xy = self.geo, self.layout.routes, self._index, self._node_xy
        half_w = geo.node_w / 2
        m = len(edges)
        src = np.fromiter(map(index.__getitem__, edges.src), np.intp, m)
        dst = np.fromiter(map(index.__getitem__, edges.dst), np.intp, m)
        port = np.array(edges.position, dtype=np.float64).reshape(m)
        ports = np.array(edges.count, dtype=np.float64).reshape(m)
        self._edge_dst = dst  # each edge's target, as its row in `names` (`edges_into`)
        start, end = xy[src], xy[dst]
        start[:, 0] += half_w
        end[:, 0] -= half_w
        end[:, 1] = end[:, 1] + geo.port_dy(port, ports)
        bent = []  # (edge, its bends) for the edges that have some
        if routes:
            pairs = zip(edges.src, edges.dst, strict=True)
            bent = [(e, r) for e, r in enumerate(map(routes.get, pairs)) if r]
        count = np.full(m, 2, dtype=np.intp)
        for e, r in bent:
            count[e] += len(r)
        first = np.zeros(m, dtype=np.intp)
        if m:
            np.cumsum(count[:-1], out=first[1:])
        last = first + count - 1
        points = np.empty((int(count.sum()), 2))
        points[first], points[last] = start, end
        if bent:
            bends = np.array([p for _, r in bent for p in r], dtype=np.float64) * np.array([geo.col_w, geo.row_h])
            lengths = np.array([len(r) for _, r in bent], dtype=np.intp)
            offsets = np.cumsum(lengths) - lengths
            where = np.repeat(first[[e for e, _ in bent]] + 1 - offsets, lengths) + np.arange(int(lengths.sum()))
            points[where] = bends
        self._points, self._point_start, self._point_count = points, first, count
        if m:
            self._edge_box = np.hstack([np.minimum.reduceat(points, first), np.maximum.reduceat(points, first)])
        else:
            self._edge_box = np.zeros((0, 4))

    def edge_points(self, e: int) -> list[QPointF]:
        """Edge `e`'s points, from its source's out port through its bends to its target's in port."""
        i = int(self._point_start[e])
        return [QPointF(x, y) for x, y in self._points[i:i + int(self._point_count[e])].tolist()]

    def edges_into(self, key: str | None) -> list[int]:
        """The numbers of the edges ending at `key` (none for None or a key not drawn).

        One comparison over an array per step; a table of every target's edges, made on the first step,
        cost that step 5-16 ms at 20,000 nodes (a tuple per edge), over a third of its frame.
        """
        row = self._index.get(key) if key is not None else None
        return [] if row is None else np.flatnonzero(self._edge_dst == row).tolist()

    def _plain_edges(self, nodes: list[Node]) -> Edges:
        inputs = list(map(attrgetter("inputs"), nodes))
        counts = list(map(len, inputs))
        if counts.count(0) + counts.count(1) == len(nodes):  # one input at most (a chain): no repeat, no role
            src = list(map(attrgetter("name"), map(itemgetter(0), itertools.compress(inputs, counts))))
            m = len(src)
            return Edges(src, list(map(attrgetter("name"), itertools.compress(nodes, counts))), [0] * m, [1] * m,
                         [""] * m)
        edges = Edges([], [], [], [], [])
        for node, args, count in zip(nodes, inputs, counts, strict=True):
            seen: set[str] = set()
            for pos, a in enumerate(args):
                if a.name in seen:  # the same value twice (x · x): one drawn edge is enough
                    continue
                seen.add(a.name)
                edges.append(a.name, node.name, pos, count, node.op.role(pos) if count > 1 else "")
        return edges

    def _plan_frames(self) -> None:
        """A frame around each open unit's shown members, nested frames inside their parent's margin."""
        units = self.folding.frames()
        if not units:
            return
        s = self.theme.scale
        margin, header = (RING_REACH + 1) * s, 18 * s  # the step's ring stays clear of the title above it
        areas: dict[str, QRectF] = {}
        boxes = self.layout.boxes
        framed = {u.key for u in units if not boxes or u.key in boxes}
        children: dict[str | None, list[str]] = {}
        for unit in units:
            # under the nearest enclosing unit that gets a frame: a unit between them that the layout could not
            # keep apart (a repeat that values leave and come back into) gets none, and its children, merged
            # into nothing, had their frames drawn over their grandparent's, titles on top of each other
            # (Swin-T's `features.3.0.mlp` and `features.3.0.mlp.0`)
            parent = unit.parent
            while parent is not None and parent not in framed:
                parent = self.folding.units[parent].parent
            children.setdefault(parent, []).append(unit.key)
        index, rep = self._index, self.folding.rep
        xs, ys = self._node_xy[:, 0].tolist(), self._node_xy[:, 1].tolist()
        w, h = self.geo.node_w, self.geo.node_h
        for unit in sorted(units, key=lambda u: -u.depth):
            if boxes and unit.key not in boxes:  # the layout could not keep it apart: no frame over others
                continue
            shown = [index[k] for k in {rep(name) for name in unit.members} if k in index]
            area = QRectF()
            if shown:  # the union of their node rectangles, to the last bit as `QRectF.united` makes it
                lefts, tops = [-w / 2 + xs[i] for i in shown], [-h / 2 + ys[i] for i in shown]
                left, right = min(lefts), max(x + w for x in lefts)
                top, bottom = min(tops), max(y + h for y in tops)
                area = QRectF(left, top, right - left, bottom - top)
            for child in children.get(unit.key, ()):
                if child in areas:
                    area = area.united(areas[child])
            if area.isEmpty():
                continue
            area = area.adjusted(-margin, -margin - header, margin, margin)
            areas[unit.key] = area
            frame = FrameItem(unit, area, header, self.style)
            self.frames[unit.key] = frame
            frame.setVisible(self._detail_shown)
            self.addItem(frame)

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
            item.setVisible(self._detail_shown)
            self.addItem(item)
            self.nodes[name] = item
            self._refresh_node(name)
            item.set_breakpoint(name in marks)
            item.set_selected(name == self.selected)
            item.set_diff(self.diffs.get(name))
            if self.key_codes is not None:
                item.set_tint(*self._tint(int(self.key_codes[i])))
            if name == self.current_key:
                self._light(item)
        self._made_nodes[nodes] = True
        for e in edges:
            src, dst, _pos, _count, role = self.edges[e]
            pts = self.edge_points(int(e))
            label = self._role_label(int(e))
            edge = EdgeItem(src, dst, pts, edge_path(pts, geo, role_run(role, self.style, label)), role, self.style,
                            label)
            edge.setVisible(self._detail_shown)
            self.addItem(edge)
            if edge.label is not None:
                edge.label.setVisible(self._detail_shown)
                self.addItem(edge.label)
                self.role_labels.append(edge.label)
            edge.set_flow(self.lit.get(int(e)))
            self.edge_items[int(e)] = edge
        self._made_edges[edges] = True
        return len(nodes) + len(edges)

    def _role_label(self, e: int) -> tuple[bool, float]:
        """Whether edge `e`'s role label shows, and its column (`role_layout`): every one of a node whose ports
        leave room for its labels; in turns, for a node with more inputs (batch norm, an LSTM cell)."""
        count, dst = self.edges.count[e], self.edges.dst[e]
        if count <= 3 or not self.edges.role[e] or dst in self.folding.units:
            return (True, 0.0)
        op = self.session.graph[dst].op
        roles = tuple(op.role(i) for i in range(count))
        return role_layout(roles, self.geo.port_spacing(count), self.style)[self.edges.position[e]]

    @property
    def detail_shown(self) -> bool:
        """Whether the items are shown (zoomed in enough to read), not the overview."""
        return self._detail_shown

    def show_detail(self, on: bool) -> None:
        """The items (zoomed in) or the overview (zoomed out): one pass over what was made, at the switch only."""
        if on != self._detail_shown:
            self._detail_shown = on
            for items in (self.frames.values(), self.nodes.values(), self.edge_items.values(), self.labels,
                          self.role_labels):
                for item in items:
                    item.setVisible(on)
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

    @property
    def _backward_index(self) -> dict[str, int]:
        if self._backward is None:
            self._backward = {s.node.name: s.index for s in self.session.steps if s.phase == BACKWARD}
        return self._backward

    def _arrivals(self, name: str) -> tuple[int, int] | None:
        """How many of the node's gradient contributions have arrived at the cursor, out of how many."""
        s = self.session
        if s.cursor <= s.n_forward:  # no backward step has run (nor is the backward index needed yet)
            return None
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
        src = self.edges.src
        by_source = {src[e]: e for e in self.edges_into(self.current_key) if src[e] in mine}
        if record.phase == BACKWARD:
            for term in record.terms:  # type: ignore[union-attr]
                e = by_source.pop(rep(term.input.name), None)
                if e is None:
                    continue
                self.lit[e] = BACKWARD
                label = GradLabel(term.role, self.session.backend.to_numpy(term.contribution), term.arrival,
                                  term.consumers, self.style)
                label.setPos(self._label_spot(e, label.boundingRect()))
                label.setVisible(self._detail_shown)
                self.addItem(label)
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
        pts = self.edge_points(e)
        end = pts[-1]
        x = end.x() - (geo.col_w - geo.node_w) / 2  # the middle of the gap left of the target
        item = self.edge_items.get(e)
        path = item.path if item is not None else edge_path(pts, geo, role_run(self.edges.role[e], self.style,
                                                                                 self._role_label(e)))
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

    # -- colouring by a number (View ▸ Colour nodes by) --------------------------------------------
    def set_colouring(self, numbers: NodeNumbers | None, palette: list[QColor] | None = None) -> None:
        """Colour by `numbers` (a `NodeNumbers` of this scene's session) in `palette`, one colour per code; None
        (or another session's numbers, while a new model is being installed) colours by kind."""
        ok = numbers is not None and palette is not None and numbers.mode is not None and \
            numbers.session is self.session and len(numbers.names) == len(self.session.graph.nodes)
        self.colouring = (numbers, palette) if ok and numbers is not None and palette is not None else None
        self.recolour()

    def recolour(self) -> None:
        """Each drawn row's colour from the numbers now: a node its own, a closed box its most alarming member's
        (`NodeNumbers.alarm`: NaN/inf first, then the farthest from the typical); only the items whose colour
        changed are touched."""
        if self.colouring is None:
            if self.key_codes is not None:
                self.key_codes = self.key_source = None
                for item in self.nodes.values():
                    item.set_tint(None)
                self.overview.set_colours(None, [])
            return
        numbers, palette = self.colouring
        codes, alarm = numbers.codes(), numbers.alarm()
        keys = self._keys_of_graph_rows()
        n = len(self.names)
        rows = np.flatnonzero((keys >= 0) & ~np.isnan(alarm))
        source = np.full(n, -1, dtype=np.int64)
        if len(rows):
            # by drawn row, then alarm, then onset backwards: the last of each is the worst, and of equals (the nodes
            # a NaN spread to) the one where it began
            order = np.lexsort((-numbers.onset()[rows], alarm[rows], keys[rows]))
            by_key = keys[rows][order]
            last = np.flatnonzero(np.diff(by_key, append=n))
            source[by_key[last]] = rows[order][last]
        key_codes = np.where(source >= 0, codes[np.maximum(source, 0)], NO_NUMBER)
        # a drawn row none of whose nodes will ever have a number (the loss's ∂L/∂L) is drawn by kind, not washed
        waiting = np.bincount(keys[(keys >= 0) & (codes != NEVER)], minlength=n) > 0
        key_codes[(source < 0) & ~waiting] = NEVER
        old = self.key_codes
        self.key_codes, self.key_source = key_codes, source
        changed = self._made_nodes if old is None else self._made_nodes & (key_codes != old)
        for r in np.flatnonzero(changed).tolist():
            self.nodes[self.names[r]].set_tint(*self._tint(int(key_codes[r])))
        # the larger marks on the overview: where a NaN starts, in the non-finite mode, else every NaN
        marked = ORIGIN if numbers.mode == NONFINITE and bool(np.any(key_codes == ORIGIN)) else BAD
        self.overview.set_colours(key_codes, palette, marked)

    def _tint(self, code: int) -> tuple[QColor | None, bool]:
        """An item's tint for colour `code`: the colour; none and washed out (no number yet); none (never one)."""
        assert self.colouring is not None
        return (self.colouring[1][code], False) if code >= 0 else (None, code != NEVER)

    def _keys_of_graph_rows(self) -> np.ndarray:
        """For each node of the graph (graph order), the drawn row showing it: itself or its closed box."""
        if self._graph_keys is None:
            index = self._index
            names = [n.name for n in self.session.graph.nodes]
            if not self.folding.closed:
                self._graph_keys = np.fromiter((index.get(k, -1) for k in names), np.int64, len(names))
            else:
                self._graph_keys = np.fromiter((index.get(self.key_of(k), -1) for k in names), np.int64, len(names))
        return self._graph_keys

    def colour_note(self, key: str) -> str:
        """What the colour of drawn `key` says, for its tooltip; a box names the member that gave it."""
        if self.colouring is None or self.key_source is None or key not in self._index:
            return ""
        numbers = self.colouring[0]
        source = int(self.key_source[self._index[key]])
        if key not in self.folding.units:
            return numbers.describe(key)
        if source < 0:
            return "Coloured by: no member has a number yet"
        name = numbers.names[source]
        return f"Coloured by {name} (the most alarming inside): {numbers.describe(name)}"

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

    def node_area_in(self, rect: QRectF) -> float:
        """How much of `rect` (scene coordinates) the drawn nodes and boxes cover, in square scene units."""
        half_w, half_h = self.geo.node_w / 2, self.geo.node_h / 2
        x, y = self._node_xy[:, 0], self._node_xy[:, 1]
        w = np.minimum(x + half_w, rect.right()) - np.maximum(x - half_w, rect.left())
        h = np.minimum(y + half_h, rect.bottom()) - np.maximum(y - half_h, rect.top())
        return float(np.sum(np.clip(w, 0, None) * np.clip(h, 0, None)))

    def node_rect(self, name: str) -> QRectF:
        return self.geo.node_rect().translated(self.centers[self.key_of(name)])

    def enclosing_frames(self, name: str) -> list[FrameItem]:
        """The frames drawn around node `name` (or around the box drawn for it), innermost first."""
        key = self.key_of(name)
        unit = self.folding.units.get(key)
        chain = self.folding.chains.get(name, ())
        if unit is not None:  # a closed box: the frames of the units around it
            chain = self.folding.chains[unit.members[0]]
            chain = chain[: chain.index(key)]
        return [self.frames[k] for k in reversed(chain) if k in self.frames]


def bsp_depth(items: int) -> int:
    """The BSP tree's depth for a scene that may come to hold `items` items: Qt's own rule (a leaf per item)
    for the count they may reach, not the count first indexed, within 10 to 16 levels (256 x 256 leaves)."""
    return min(16, max(10, math.ceil(math.log2(max(items, 2)))))


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


class _Centers(Mapping[str, QPointF]):
    """Node (and box) centres in scene coordinates by key, each a QPointF made when asked."""

    def __init__(self, index: dict[str, int], xy: np.ndarray) -> None:
        self._index, self._xy = index, xy

    def __getitem__(self, key: str) -> QPointF:
        x, y = self._xy[self._index[key]].tolist()
        return QPointF(x, y)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def _kinds(ops: list[Any]) -> list[str]:
    """Each op's look (`node_kind`), worked out once per op (None: a box, "module")."""
    ids = list(map(id, ops))
    distinct = dict(zip(ids, ops, strict=True))
    kind_of = {i: "module" if op is None else node_kind(op.name, op.category) for i, op in distinct.items()}
    return list(map(kind_of.__getitem__, ids))


def _forward_steps(session: Session) -> dict[str, int]:
    """Node -> its forward step (the plan's first `n_forward` steps)."""
    return {s.node.name: s.index for s in session.steps[:session.n_forward] if s.phase == FORWARD}


class Edges(Sequence[tuple[str, str, int, int, str]]):
    """The drawn edges as columns (no tuple per edge until one is asked for): `edges[e]` is
    `(src, dst, input position, inputs, role)`."""

    def __init__(self, src: list[str], dst: list[str], position: list[int], count: list[int],
                 role: list[str]) -> None:
        self.src, self.dst, self.position, self.count, self.role = src, dst, position, count, role

    def append(self, src: str, dst: str, position: int, count: int, role: str) -> None:
        self.src.append(src)
        self.dst.append(dst)
        self.position.append(position)
        self.count.append(count)
        self.role.append(role)

    @overload
    def __getitem__(self, e: int) -> tuple[str, str, int, int, str]: ...

    @overload
    def __getitem__(self, e: slice) -> list[tuple[str, str, int, int, str]]: ...

    def __getitem__(self, e: int | slice) -> tuple[str, str, int, int, str] | list[tuple[str, str, int, int, str]]:
        if isinstance(e, slice):
            return list(self)[e]
        return self.src[e], self.dst[e], self.position[e], self.count[e], self.role[e]

    def __len__(self) -> int:
        return len(self.src)

    def __iter__(self) -> Iterator[tuple[str, str, int, int, str]]:
        return zip(self.src, self.dst, self.position, self.count, self.role, strict=True)


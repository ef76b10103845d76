"""Layered left-to-right layout (Sugiyama style) in abstract units: column per layer, rows within it.

No Qt and no networkx here (it loads in a third of a second; the app's first paint should not wait
for it), so the layout is tested and reused headless; the GUI only multiplies by pixel sizes.
Steps: longest-path layering (leaves pulled next to their first consumer), dummy points on long
edges, barycenter sweeps keeping the ordering with the fewest crossings, then rows placed by
isotonic regression so each node sits near its neighbours without overlapping.

Clusters (open modules, drawn as frames) are laid out bottom-up: each cluster's members are laid
out on their own, then the cluster is one rigid block (several layers wide, several rows high) in
its parent's layout, packed so no other node or block enters its rectangle. So module frames never
overlap each other nor cover a node from outside. Edges leaving or entering a cluster run to its
border inside it (through virtual ports), then on outside it.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

from .errors import GraphError
from .gc_pause import paused_gc
from .ir import Graph

Edge = tuple[Any, Any]
Box = tuple[int, float, int, float]  # first layer, top row, last layer, bottom row
FRAME_TOP, FRAME_BOTTOM = 0.32, 0.12  # rows a cluster adds above (its title) and below its members
_IN, _OUT = ("\0in",), ("\0out",)  # a cluster's virtual ports (tuples: never a node's name)


@dataclass(frozen=True)
class Layout:
    """`positions[name] = (layer, row)`; `routes[(u, v)]` are the bend points of edges spanning layers.

    `boxes[cluster]` is the rectangle a cluster's frame may fill (layers and rows, its margins
    included); a cluster missing there could not be kept apart (values leave it and come back in)
    and gets no frame.
    """

    positions: dict[Any, tuple[int, float]]
    routes: dict[Edge, list[tuple[int, float]]]
    layers: int
    rows: float
    crossings: int
    boxes: dict[Any, Box] = field(default_factory=dict)


@dataclass
class Flow:
    """A plain directed graph for the layout: nodes in their preferred order, and
    `(source, target, port, ports)` edges (the input position at the target, out of how many)."""

    nodes: list[Any] = field(default_factory=list)
    edges: list[tuple[Any, Any, int, int]] = field(default_factory=list)


class CycleError(GraphError):
    """The graph to lay out has a cycle."""


def as_flow(graph: Graph | Flow | Any) -> Flow:
    """A propscope Graph, a Flow, or a networkx DiGraph (edge attributes `port`, `ports`) as a Flow."""
    if isinstance(graph, Flow):
        return graph
    if isinstance(graph, Graph):
        flow = Flow([n.name for n in graph])
        edges = flow.edges
        for node in graph:
            inputs = node.inputs
            if len(inputs) == 1:  # most ops: no repeated input to look for
                edges.append((inputs[0].name, node.name, 0, 1))
                continue
            seen: set[str] = set()
            for i, a in enumerate(inputs):
                if a.name not in seen:
                    seen.add(a.name)
                    edges.append((a.name, node.name, i, len(inputs)))
        return flow
    return Flow(list(graph.nodes), [(u, v, int(d.get("port", 0)), int(d.get("ports", 1)))
                                    for u, v, d in graph.edges(data=True)])


def topological_order(flow: Flow) -> list[Any]:
    """Nodes in dependency order, ties broken by their order in `flow.nodes`; CycleError on a cycle."""
    rank = {n: i for i, n in enumerate(flow.nodes)}
    indeg = dict.fromkeys(flow.nodes, 0)
    succ: dict[Any, list[Any]] = {n: [] for n in flow.nodes}
    for u, v, *_ in flow.edges:
        succ[u].append(v)
        indeg[v] += 1
    heap = [rank[n] for n, d in indeg.items() if d == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        n = flow.nodes[heapq.heappop(heap)]
        order.append(n)
        for v in succ[n]:
            indeg[v] -= 1
            if indeg[v] == 0:
                heapq.heappush(heap, rank[v])
    if len(order) != len(flow.nodes):
        raise CycleError("the graph has a cycle: values leave a node and come back to it")
    return order


def find_cycle(flow: Flow) -> list[Edge]:
    """The edges of one directed cycle, or [] for a DAG."""
    succ: dict[Any, list[Any]] = {n: [] for n in flow.nodes}
    for u, v, *_ in flow.edges:
        succ[u].append(v)
    state: dict[Any, int] = {}  # 1 on the path, 2 done
    for root in flow.nodes:
        if root in state:
            continue
        path, stack = [root], [iter(succ[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                cyc = [*path[path.index(nxt):], nxt]
                return list(itertools.pairwise(cyc))
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(succ[nxt]))
    return []


def layered_layout(
    graph: Graph | Flow | Any, sweeps: int = 4, dummy_size: float = 0.3, port_span: float = 0.5,
    clusters: Mapping[Any, Sequence[Hashable]] | None = None,
) -> Layout:
    """Lay out a DAG left to right.

    `dummy_size` is the room a passing edge takes, in rows. Inputs enter a node at ports spread
    over `port_span` rows in input order, so the ordering keeps `x`, `W`, `b` from crossing as
    they reach `x · W + b`. `clusters[node]` are the clusters holding a node, outermost first.
    """
    with paused_gc():
        if not clusters or not any(clusters.values()):
            chain = _graph_chain(graph) if isinstance(graph, Graph) else None
            if chain is not None:
                return chain
        flow = as_flow(graph)
        if not clusters or not any(clusters.values()):
            chain = _in_order_chain(flow)
            if chain is not None:
                return chain
        try:
            order = topological_order(flow)
        except CycleError:
            if not isinstance(graph, (Graph, Flow)):  # a networkx graph: its own error, as networkx would
                import networkx as nx

                raise nx.NetworkXUnfeasible("the graph has a cycle") from None
            raise
        if not order:
            return Layout({}, {}, 0, 0.0, 0)
        if not clusters or not any(clusters.get(n) for n in order):
            return _flat(flow, order, sweeps, dummy_size, port_span)
        return _Clustered(flow, order, clusters, sweeps, dummy_size, port_span).run()


def _graph_chain(graph: Graph) -> Layout | None:
    """`_in_order_chain` read straight from a Graph (no Flow made): node k's one input is node k - 1."""
    nodes = graph.nodes
    n = len(nodes)
    if n < 2:
        return None
    inputs = list(map(attrgetter("inputs"), nodes))
    if inputs[0] or list(map(len, inputs)).count(1) != n - 1:
        return None
    if list(map(itemgetter(0), inputs[1:])) != nodes[:-1]:  # nodes compare by identity
        return None
    names = list(map(attrgetter("name"), nodes))
    return Layout(dict(zip(names, zip(range(n), itertools.repeat(0.0)), strict=True)), {}, n, 0.0, 0)


def _in_order_chain(flow: Flow) -> Layout | None:
    """A chain given in order (edge k from node k to node k + 1, one input each: what an ONNX chain's graph
    gives) laid out on one row without sorting it or making an item per node: what `_as_chain` finds, in a
    few C-speed passes (20,000 ops in about a millisecond)."""
    nodes, edges = flow.nodes, flow.edges
    n = len(nodes)
    if n < 2 or len(edges) != n - 1:
        return None
    if (list(map(itemgetter(3), edges)).count(1) != n - 1 or list(map(itemgetter(0), edges)) != nodes[:-1]
            or list(map(itemgetter(1), edges)) != nodes[1:]):
        return None
    if len(set(nodes)) != n:  # names repeated: not a DAG to lay out (the general path says why)
        return None
    positions = dict(zip(nodes, zip(range(n), itertools.repeat(0.0)), strict=True))
    return Layout(positions, {}, n, 0.0, 0)


def _flat(flow: Flow, order: list[Any], sweeps: int, dummy_size: float, port_span: float) -> Layout:
    items = [_Item(n) for n in order]
    edges = [(u, v, p, c) for u, v, p, c in flow.edges]
    layer = _layers(items, edges, None)
    chain = _as_chain(items, edges, layer)
    if chain is not None:
        return chain
    level = _Level(items, edges, sweeps, dummy_size, port_span, layer=layer)
    rows = level.rows
    names = level.b.names
    positions = {names[i]: (level.b.layer[i], rows[i]) for i in range(len(order))}
    routes = {edge: [(level.b.layer[d], rows[d]) for d in chain] for edge, chain in level.b.chains.items() if chain}
    return Layout(positions, routes, max(level.b.layer) + 1, max(rows) if rows else 0.0, level.crossings)


def _as_chain(items: list[_Item], edges: list[tuple[Any, Any, int, int]],
              layer: dict[Any, int] | None = None) -> Layout | None:
    """A chain (one node per layer, each edge to the next layer, one input each) lies on one row: the
    layout the sweeps would reach, without them (an ONNX chain of 20,000 ops in a tenth of the time).
    `layer` is `_layers(items, edges, None)`, when the caller has it already."""
    if layer is None:
        layer = _layers(items, edges, None)
    if len(set(layer.values())) != len(items) or any(c != 1 or layer[v] - layer[u] != 1 for u, v, _p, c in edges):
        return None
    positions = {it.key: (layer[it.key], 0.0) for it in items}
    return Layout(positions, {}, max(layer.values()) + 1, 0.0, 0)


@dataclass
class _Item:
    """One thing placed at a level: a node (width 1, height 1) or a laid-out cluster (a rigid block)."""

    key: Any
    width: int = 1
    height: float = 1.0
    virtual: bool = False  # a cluster's port: placed, never drawn


class _Level:
    """The layered layout of one level's items: layers, ordering, rows (centres); wide items as chains
    of segments, then packed so no two items' rectangles overlap."""

    def __init__(self, items: list[_Item], edges: list[tuple[Any, Any, int, int]], sweeps: int, dummy_size: float,
                 port_span: float, pinned_first: Any = None, layer: dict[Any, int] | None = None) -> None:
        self.items = items
        if layer is None:
            layer = _layers(items, edges, pinned_first)
        self.item_layer = layer
        wide = any(it.width > 1 for it in items)
        self.b = b = _Builder(items, edges, layer, port_span)
        self.crossings = b.reduce_crossings(sweeps)
        size = [items[b.owner.get(i, i)].height if i < b.real or i in b.owner else dummy_size
                for i in range(len(b.layer))]
        rows = b.place_rows(size, rounds=sweeps)
        if wide or any(it.height != 1.0 for it in items):
            rows = b.pack(rows, size)
        self.rows = rows


def _layers(items: list[_Item], edges: list[tuple[Any, Any, int, int]], pinned_first: Any) -> dict[Any, int]:
    """Longest-path layering with item widths; a source leaf sits just before its first consumer;
    `pinned_first` (a cluster's entry port) one layer before everything else."""
    width = {it.key: it.width for it in items}
    preds: dict[Any, list[Any]] = {it.key: [] for it in items}
    succs: dict[Any, list[Any]] = {it.key: [] for it in items}
    for u, v, *_ in edges:
        preds[v].append(u)
        succs[u].append(v)
    layer: dict[Any, int] = {}
    for it in items:
        layer[it.key] = max((layer[p] + width[p] for p in preds[it.key]), default=0)
    for it in items:  # a parameter belongs beside the op that uses it, not in the first column
        n = it.key
        if not preds[n] and succs[n] and width[n] == 1 and n != pinned_first:
            layer[n] = min(layer[s] for s in succs[n]) - 1
    low = min((v for k, v in layer.items() if k != pinned_first), default=0)
    layer = {k: v - low for k, v in layer.items()}
    if pinned_first in layer:
        layer[pinned_first] = -1
        low = -1
        layer = {k: v + 1 for k, v in layer.items()}
    return layer


class _Clustered:
    """The bottom-up layout of nested clusters (see the module's docstring)."""

    def __init__(self, flow: Flow, order: list[Any], clusters: Mapping[Any, Sequence[Hashable]], sweeps: int,
                 dummy_size: float, port_span: float) -> None:
        self.order = order
        self.edges = flow.edges
        self.opts = (sweeps, dummy_size, port_span)
        self.chain = {n: tuple(clusters.get(n, ())) for n in order}
        self.kids: dict[Any, list[Any]] = {None: []}  # cluster (None: the whole graph) -> clusters inside it
        self.touching: dict[Any, list[int]] = {}  # cluster -> edges with an end inside it
        self.inside: dict[Any, list[Any]] = {None: list(order)}  # cluster -> its nodes, nested ones too
        for n in order:
            parent = None
            for c in self.chain[n]:
                self.inside.setdefault(c, []).append(n)
                if c not in self.kids:
                    self.kids[c] = []
                    self.kids[parent].append(c)
                parent = c
        for e, (u, v, *_rest) in enumerate(flow.edges):
            for c in set(self.chain[u]) | set(self.chain[v]):
                self.touching.setdefault(c, []).append(e)
        self.dissolved: set[Any] = set()
        self._chains: dict[Any, tuple[Any, ...]] = {}  # node -> its clusters not dissolved (`_chain`)
        self.same_shape: dict[tuple[Any, ...], tuple[_Level, list[Any]]] = {}  # shape -> first level, its keys
        self.local: dict[Any, dict[Any, tuple[int, float]]] = {}  # node: centre; cluster: top-left corner
        self.routes: dict[Any, dict[Edge, list[tuple[int, float]]]] = {}
        self.size: dict[Any, tuple[int, float]] = {}
        self.crossings = 0

    def _chain(self, n: Any) -> tuple[Any, ...]:
        """`n`'s clusters, outermost first, without the dissolved ones (kept until one more dissolves)."""
        chain = self._chains.get(n)
        if chain is None:
            chain = self._chains[n] = tuple(c for c in self.chain[n] if c not in self.dissolved)
        return chain

    def _item_of(self, c: Any, n: Any) -> Any:
        """What stands for node `n` among cluster `c`'s items: itself, a cluster inside `c`, or None (outside)."""
        chain = self._chain(n)
        if c is None:
            return chain[0] if chain else n
        if c not in chain:
            return None
        i = chain.index(c)
        return chain[i + 1] if i + 1 < len(chain) else n

    def run(self) -> Layout:
        self._lay(None)
        positions: dict[Any, tuple[int, float]] = {}
        routes: dict[Edge, list[tuple[int, float]]] = {}
        boxes: dict[Any, Box] = {}
        origin: dict[Any, tuple[int, float]] = {None: (0, 0.0)}
        todo = [None]
        while todo:
            c = todo.pop()
            ol, orow = origin[c]
            for key, (lay, row) in self.local[c].items():
                if key in self.size:
                    origin[key] = (ol + lay, orow + row)
                    w, h = self.size[key]
                    boxes[key] = (ol + lay, orow + row, ol + lay + w - 1, orow + row + h)
                    todo.append(key)
                else:
                    positions[key] = (ol + lay, orow + row)
        for u, v, *_rest in self.edges:
            bends = self._route(u, v, origin)
            if bends:
                routes[(u, v)] = bends
        layers = 1 + max(p[0] for p in positions.values())
        rows = max([p[1] for p in positions.values()] + [b[3] for b in boxes.values()])
        return Layout(positions, routes, layers, rows, self.crossings, boxes)

    def _route(self, u: Any, v: Any, origin: dict[Any, tuple[int, float]]) -> list[tuple[int, float]]:
        """u's way out of its clusters, the way across their common parent, then v's way in."""
        cu, cv = self._chain(u), self._chain(v)
        k = 0
        while k < min(len(cu), len(cv)) and cu[k] == cv[k]:
            k += 1
        common = cu[k - 1] if k else None
        parts = []
        for c in reversed(cu[k:]):
            parts.append((c, (self._item_of(c, u), _OUT)))
        parts.append((common, (self._item_of(common, u), self._item_of(common, v))))
        for c in cv[k:]:
            parts.append((c, (_IN, self._item_of(c, v))))
        bends = []
        for c, key in parts:
            ol, orow = origin[c]
            bends += [(ol + lay, orow + row) for lay, row in self.routes[c].get(key, [])]
        return bends

    def _lay(self, c: Any) -> None:
        """Lay out cluster `c`'s items (its inner clusters first); a cluster that makes a cycle here dissolves."""
        for k in self.kids[c]:
            self._lay(k)
        while True:
            items, edges = self._level_graph(c)
            try:
                keys = topological_order(Flow([it.key for it in items], [(a, b, 0, 1) for a, b, *_ in edges]))
                break
            except CycleError:
                on_cycle = {x for e in find_cycle(Flow([it.key for it in items], edges)) for x in e}
                worst = min((x for x in on_cycle if x in self.size), key=lambda x: self.size[x][0] * self.size[x][1])
                self.dissolved.add(worst)
                self._chains.clear()
                self.kids[c] += self.kids[worst]
        by_key = {it.key: it for it in items}
        sweeps, dummy_size, port_span = self.opts
        ordered = [by_key[k] for k in keys]
        shape = _shape_of(ordered, edges)
        seen = self.same_shape.get(shape)
        level: _Level | _Renamed
        if seen is None:  # the first cluster of this shape: laid out
            first = _Level(ordered, edges, sweeps, dummy_size, port_span, pinned_first=_IN if _IN in by_key else None)
            self.same_shape[shape] = (first, keys)
            level = first
        else:  # a repeat (the 12 blocks of a transformer, 4,000 of a chain): the first one's layout, renamed
            first, first_keys = seen
            level = _Renamed(first, dict(zip(first_keys, keys, strict=True)))
        self.crossings += level.crossings
        self._keep(c, level, by_key, dummy_size)

    def _level_graph(self, c: Any) -> tuple[list[_Item], list[tuple[Any, Any, int, int]]]:
        keys = list(dict.fromkeys(self._item_of(c, n) for n in self.inside[c]))
        items = [_Item(k, *self.size[k]) if k in self.size else _Item(k) for k in keys]
        edges: dict[Edge, tuple[Any, Any, int, int]] = {}
        for e in self.touching.get(c, []) if c is not None else range(len(self.edges)):
            u, v, port, ports = self.edges[e]
            a, b = self._item_of(c, u), self._item_of(c, v)
            a, b = _IN if a is None else a, _OUT if b is None else b
            if a != b and (a, b) not in edges:
                edges[(a, b)] = (a, b, port, ports) if b == v else (a, b, 0, 1)
        if any(a == _IN for a, _ in edges):
            items.insert(0, _Item(_IN, height=self.opts[1], virtual=True))
        if any(b == _OUT for _, b in edges):
            items.append(_Item(_OUT, height=self.opts[1], virtual=True))
        return items, list(edges.values())

    def _keep(self, c: Any, level: _Level | _Renamed, by_key: dict[Any, _Item], dummy_size: float) -> None:
        """Store the level in `c`'s own coordinates: its first layer 0, its top (margin included) row 0."""
        b, rows = level.b, level.rows
        ports = {i for i in range(b.real) if by_key[b.names[i]].virtual}
        owner = {**b.owner, **{i: i for i in range(b.real)}}

        def height(i: int) -> float:
            return by_key[b.names[owner[i]]].height if i in owner else dummy_size

        inside = [i for i in range(len(b.layer)) if owner.get(i) not in ports]
        first = min(b.layer[i] for i in inside)
        top = min(rows[i] - height(i) / 2 for i in inside)
        bottom = max(rows[i] + height(i) / 2 for i in inside)
        pad_top, pad_bottom = (FRAME_TOP, FRAME_BOTTOM) if c is not None else (0.0, 0.0)
        shift = pad_top - top
        local: dict[Any, tuple[int, float]] = {}
        for i in range(b.real):
            it = by_key[b.names[i]]
            if it.virtual:
                continue
            row = rows[i] + shift
            local[it.key] = (b.layer[i] - first, row - it.height / 2 if it.key in self.size else row)
        self.local[c] = local
        self.routes[c] = {edge: [(b.layer[d] - first, rows[d] + shift) for d in chain]
                          for edge, chain in b.chains.items() if chain}
        if c is not None:
            last = max(b.layer[i] for i in inside)
            self.size[c] = (last - first + 1, bottom - top + pad_top + pad_bottom)


def _shape_of(items: list[_Item], edges: list[tuple[Any, Any, int, int]]) -> tuple[Any, ...]:
    """What a level's layout depends on, without the names: item sizes and ports in order, edges by position.

    Two clusters of one shape get the same layout, so it is computed once (the layout is deterministic)."""
    index = {it.key: i for i, it in enumerate(items)}
    kinds = tuple((it.width, it.height, it.virtual, it.key is _IN, it.key is _OUT) for it in items)
    return kinds, tuple((index[u], index[v], port, ports) for u, v, port, ports in edges)


class _Renamed:
    """Another cluster's `_Level` read under this cluster's names (same shape, so same rows and layers)."""

    def __init__(self, level: _Level, rename: dict[Any, Any]) -> None:
        self.rows = level.rows
        self.crossings = level.crossings
        self.b = _RenamedBuilder(level.b, rename)


class _RenamedBuilder:
    def __init__(self, b: _Builder, rename: dict[Any, Any]) -> None:
        self.names = [rename[n] for n in b.names]
        self.layer, self.owner, self.real = b.layer, b.owner, b.real
        self.chains = {(rename[u], rename[v]): chain for (u, v), chain in b.chains.items()}


class _Builder:
    """Integer ids for items, the segments of wide items, and dummies; per-layer orderings;
    adjacency between adjacent layers. Ids below `real` are the items, in their given order."""

    def __init__(self, items: list[_Item], edges: list[tuple[Any, Any, int, int]], layer: dict[Any, int],
                 port_span: float) -> None:
        self.names: list[Any] = [it.key for it in items]
        ids = {n: i for i, n in enumerate(self.names)}
        self.layer: list[int] = [layer[n] for n in self.names]
        self.real = len(items)
        self.up: list[list[int]] = [[] for _ in items]
        self.down: list[list[int]] = [[] for _ in items]
        self.owner: dict[int, int] = {}  # segment id -> its item (a wide item is present in every layer it spans)
        self.last = list(range(len(items)))  # the id of each item's last segment
        self.chains: dict[Edge, list[int]] = {}
        self.frac: dict[tuple[int, int], float] = {}  # where an edge enters its target, in rows from the centre
        for i, it in enumerate(items):
            for _ in range(it.width - 1):
                seg = self._slot(self.layer[self.last[i]] + 1, self.last[i])
                self.owner[seg] = i
                self.last[i] = seg
        for u, v, port, ports in edges:
            a, z = ids[u], ids[v]
            chain = []
            prev = self.last[a]
            for lay in range(self.layer[prev] + 1, self.layer[z]):
                d = self._slot(lay, prev)
                chain.append(d)
                prev = d
            self.down[prev].append(z)
            self.up[z].append(prev)
            if ports > 1:
                self.frac[(prev, z)] = port_span * ((port + 0.5) / ports - 0.5)
            self.chains[(u, v)] = chain
        n_layers = max(self.layer) + 1
        self.levels: list[list[int]] = [[] for _ in range(n_layers)]
        for i, lay in enumerate(self.layer):
            self.levels[lay].append(i)
        self.pos = [0] * len(self.layer)
        self._index_positions()

    def _slot(self, lay: int, prev: int) -> int:
        d = len(self.layer)
        self.layer.append(lay)
        self.up.append([prev])
        self.down.append([])
        self.down[prev].append(d)
        return d

    def _index_positions(self) -> None:
        for level in self.levels:
            for p, i in enumerate(level):
                self.pos[i] = p

    # -- ordering ------------------------------------------------------------------------
    def _sweep(self, downward: bool) -> None:
        pos = self.pos
        span = range(1, len(self.levels)) if downward else range(len(self.levels) - 2, -1, -1)
        for lay in span:
            level = self.levels[lay]
            nbrs = self.up if downward else self.down

            def key(i: int, nbrs: list[list[int]] = nbrs) -> tuple[float, int]:
                adj = nbrs[i]
                if not adj:
                    return (float(pos[i]), pos[i])
                if downward:
                    return (sum(pos[j] for j in adj) / len(adj), pos[i])
                return (sum(pos[j] + self.frac.get((i, j), 0.0) for j in adj) / len(adj), pos[i])

            level.sort(key=key)
            for p, i in enumerate(level):
                pos[i] = p

    def crossings(self) -> int:
        total = 0
        for level in self.levels[:-1]:
            if len(level) == 1 and len(self.down[level[0]]) < 2:  # one edge (a chain's layer) crosses nothing
                continue
            ends = sorted((self.pos[i], self.pos[j] + self.frac.get((i, j), 0.0)) for i in level for j in self.down[i])
            total += _inversions([e for _, e in ends])
        return total

    def reduce_crossings(self, sweeps: int) -> int:
        best = self.crossings()
        if best == 0:  # nothing to improve (the sweeps would stop at once and put the same order back)
            return 0
        best_levels = [list(level) for level in self.levels]
        for _ in range(sweeps):
            if best == 0:
                break
            self._sweep(downward=True)
            self._sweep(downward=False)
            now = self.crossings()
            if now < best:
                best, best_levels = now, [list(level) for level in self.levels]
        self.levels = best_levels
        self._index_positions()
        return best

    # -- rows ----------------------------------------------------------------------------
    def place_rows(self, size: list[float], rounds: int) -> list[float]:
        y = [0.0] * len(self.layer)
        for level in self.levels:
            acc = 0.0
            for k, i in enumerate(level):
                if k:
                    acc += (size[level[k - 1]] + size[i]) / 2
                y[i] = acc
        still = 0  # passes in a row that moved nothing: once a down and an up pass agree, only the last is left
        for r in range(rounds * 2 + 1):
            last = r == rounds * 2
            if still >= 2 and not last:
                continue
            downward = r % 2 == 0
            span = range(len(self.levels)) if downward else range(len(self.levels) - 1, -1, -1)
            moved = False
            ups, downs = downward or last, not downward or last
            for lay in span:
                level = self.levels[lay]
                if len(level) == 1:  # a lone item (every layer of a chain) goes where it wants
                    i = level[0]
                    v = self._wanted_row(i, y, ups, downs)
                    if abs(y[i] - v) > 1e-9:
                        moved = True
                    y[i] = v
                    continue
                want = [self._wanted_row(i, y, ups, downs) for i in level]
                gaps = [0.0] + [(size[level[k - 1]] + size[level[k]]) / 2 for k in range(1, len(level))]
                for i, v in zip(level, _spaced_fit(want, gaps), strict=True):
                    if abs(y[i] - v) > 1e-9:
                        moved = True
                    y[i] = v
            still = 0 if moved else still + 1
        low = min(y)
        return [v - low for v in y]

    def _wanted_row(self, i: int, y: list[float], ups: bool, downs: bool) -> float:
        """The mean row of `i`'s neighbours (above, below or both) at the ports their edges use."""
        total, count = 0.0, 0
        frac = self.frac
        if ups:
            for j in self.up[i]:
                total += y[j] - frac.get((j, i), 0.0) if frac else y[j]
                count += 1
        if downs:
            for j in self.down[i]:
                total += y[j] + frac.get((i, j), 0.0) if frac else y[j]
                count += 1
        return total / count if count else y[i]

    def pack(self, rows: list[float], size: list[float]) -> list[float]:
        """Rows where no two things overlap in any layer: a wide item keeps one row in all its layers.

        Layer by layer, in each layer's order, each item (and dummy) goes to the free place nearest
        to where the sweeps wanted it (a wide item: the mean over its segments)."""
        segs: dict[int, list[int]] = {}
        for seg, i in self.owner.items():
            segs.setdefault(i, []).append(seg)
        taken: list[list[tuple[float, float]]] = [[] for _ in self.levels]
        out = list(rows)
        for lay, level in enumerate(self.levels):
            for i in level:
                if i in self.owner:
                    continue
                mine = [i, *segs.get(i, [])]
                want = sum(rows[j] for j in mine) / len(mine)
                span = range(lay, lay + len(mine))
                busy = sorted(iv for k in span for iv in taken[k]) if len(mine) > 1 else taken[lay]
                c = nearest_free(busy, want, size[i])
                for k in span:
                    bisect.insort(taken[k], (c - size[i] / 2, c + size[i] / 2))
                for j in mine:
                    out[j] = c
        low = min(out)
        return [v - low for v in out]


def nearest_free(busy: list[tuple[float, float]], want: float, h: float) -> float:
    """The centre nearest to `want` of an interval of height `h` overlapping none of `busy` (sorted by top)."""
    merged: list[list[float]] = []
    for top, bottom in busy:
        if merged and top < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], bottom)
        else:
            merged.append([top, bottom])
    half, best = h / 2, None
    gaps = zip([-float("inf")] + [m[1] for m in merged], [m[0] for m in merged] + [float("inf")], strict=True)
    for lo, hi in gaps:  # free space between two busy runs: the centre may go anywhere in [lo + half, hi - half]
        if hi - lo < h - 1e-9:
            continue
        c = min(max(want, lo + half), hi - half)
        if best is None or abs(c - want) < abs(best - want):
            best = c
    assert best is not None  # the last gap is unbounded
    return best


def _spaced_fit(want: list[float], gaps: list[float]) -> list[float]:
    """Least-squares rows closest to `want`, in order, each at least `gaps[k]` below the previous."""
    offset, acc = [], 0.0
    for g in gaps:
        acc += g
        offset.append(acc)
    target = [w - o for w, o in zip(want, offset, strict=True)]
    blocks: list[list[float]] = []  # [mean, count] pools of the pool-adjacent-violators algorithm
    for t in target:
        blocks.append([t, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, c2 = blocks.pop()
            m1, c1 = blocks.pop()
            blocks.append([(m1 * c1 + m2 * c2) / (c1 + c2), c1 + c2])
    fit = [m for m, c in blocks for _ in range(int(c))]
    return [f + o for f, o in zip(fit, offset, strict=True)]


def _inversions(values: list[float]) -> int:
    """How many pairs are out of order: the edge crossings between two layers."""
    if not values:
        return 0
    ranks = {v: r for r, v in enumerate(sorted(set(values)))}
    seq = [ranks[v] for v in values]
    size = len(ranks) + 1
    tree = [0] * (size + 1)
    count = 0
    for seen, v in enumerate(seq):
        i = v + 1
        le = 0
        while i > 0:
            le += tree[i]
            i -= i & -i
        count += seen - le
        i = v + 1
        while i <= size:
            tree[i] += 1
            i += i & -i
    return count

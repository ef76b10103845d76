"""Layered left-to-right layout (Sugiyama style) in abstract units: column per layer, rows within it.

No Qt here, so the layout is tested and reused headless; the GUI only multiplies by pixel sizes.
Steps: longest-path layering (leaves pulled next to their first consumer), dummy points on long
edges, barycenter sweeps keeping the ordering with the fewest crossings, then rows placed by
isotonic regression so each node sits near its neighbours without overlapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import networkx as nx

from .ir import Graph

Edge = tuple[str, str]


@dataclass(frozen=True)
class Layout:
    """`positions[name] = (layer, row)`; `routes[(u, v)]` are the bend points of edges spanning layers."""

    positions: dict[str, tuple[int, float]]
    routes: dict[Edge, list[tuple[int, float]]]
    layers: int
    rows: float
    crossings: int


def layered_layout(
    graph: Graph | nx.DiGraph, sweeps: int = 4, dummy_size: float = 0.3, port_span: float = 0.5
) -> Layout:
    """Lay out a DAG left to right.

    `dummy_size` is the room a passing edge takes, in rows. Inputs enter a node at ports spread
    over `port_span` rows in input order (edge attributes `port` and `ports` for a plain DiGraph),
    so the ordering keeps `x`, `W`, `b` from crossing as they reach `x · W + b`.
    """
    g = _with_ports(graph) if isinstance(graph, Graph) else graph
    if g.number_of_nodes() == 0:
        return Layout({}, {}, 0, 0.0, 0)
    rank = {n: i for i, n in enumerate(g.nodes)}
    order = list(nx.lexicographical_topological_sort(g, key=rank.__getitem__))
    layer = _layers(g, order)
    b = _Builder(g, order, layer, port_span)
    crossings = b.reduce_crossings(sweeps)
    rows = b.place_rows(dummy_size, rounds=sweeps)
    names = b.names
    positions = {names[i]: (b.layer[i], rows[i]) for i in range(len(names))}
    routes = {edge: [(b.layer[d], rows[d]) for d in chain] for edge, chain in b.chains.items() if chain}
    return Layout(positions, routes, max(b.layer) + 1, max(rows) if rows else 0.0, crossings)


def _with_ports(graph: Graph) -> nx.DiGraph:
    g = nx.DiGraph()
    for node in graph:
        g.add_node(node.name)
        for i, a in enumerate(node.inputs):
            if not g.has_edge(a.name, node.name):
                g.add_edge(a.name, node.name, port=i, ports=len(node.inputs))
    return g


def _layers(g: nx.DiGraph, order: list[Any]) -> dict[Any, int]:
    layer: dict[Any, int] = {}
    for n in order:
        layer[n] = max((layer[p] + 1 for p in g.predecessors(n)), default=0)
    for n in order:  # a parameter belongs beside the op that uses it, not in the first column
        if g.in_degree(n) == 0 and g.out_degree(n) > 0:
            layer[n] = min(layer[s] for s in g.successors(n)) - 1
    low = min(layer.values())
    return {n: v - low for n, v in layer.items()}


class _Builder:
    """Integer ids for nodes and dummies, per-layer orderings, adjacency between adjacent layers."""

    def __init__(self, g: nx.DiGraph, order: list[Any], layer: dict[Any, int], port_span: float) -> None:
        self.names: list[Any] = list(order)
        ids = {n: i for i, n in enumerate(order)}
        self.layer: list[int] = [layer[n] for n in order]
        self.real = len(order)
        self.up: list[list[int]] = [[] for _ in order]
        self.down: list[list[int]] = [[] for _ in order]
        self.chains: dict[Edge, list[int]] = {}
        self.frac: dict[tuple[int, int], float] = {}  # where an edge enters its target, in rows from the centre
        for u, v, data in g.edges(data=True):
            a, z = ids[u], ids[v]
            chain = []
            prev = a
            for lay in range(self.layer[a] + 1, self.layer[z]):
                d = len(self.layer)
                self.layer.append(lay)
                self.up.append([prev])
                self.down.append([])
                self.down[prev].append(d)
                chain.append(d)
                prev = d
            self.down[prev].append(z)
            self.up[z].append(prev)
            ports = int(data.get("ports", 1))
            if ports > 1:
                self.frac[(prev, z)] = port_span * ((int(data.get("port", 0)) + 0.5) / ports - 0.5)
            self.chains[(u, v)] = chain
        n_layers = max(self.layer) + 1
        self.levels: list[list[int]] = [[] for _ in range(n_layers)]
        for i, lay in enumerate(self.layer):
            self.levels[lay].append(i)
        self.pos = [0] * len(self.layer)
        self._index_positions()

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
            ends = sorted((self.pos[i], self.pos[j] + self.frac.get((i, j), 0.0)) for i in level for j in self.down[i])
            total += _inversions([e for _, e in ends])
        return total

    def reduce_crossings(self, sweeps: int) -> int:
        best = self.crossings()
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
    def place_rows(self, dummy_size: float, rounds: int) -> list[float]:
        size = [1.0 if i < self.real else dummy_size for i in range(len(self.layer))]
        y = [0.0] * len(self.layer)
        for level in self.levels:
            acc = 0.0
            for k, i in enumerate(level):
                if k:
                    acc += (size[level[k - 1]] + size[i]) / 2
                y[i] = acc
        for r in range(rounds * 2 + 1):
            last = r == rounds * 2
            downward = r % 2 == 0
            span = range(len(self.levels)) if downward else range(len(self.levels) - 1, -1, -1)
            for lay in span:
                level = self.levels[lay]
                want = []
                for i in level:
                    ups = [y[j] - self.frac.get((j, i), 0.0) for j in self.up[i]] if downward or last else []
                    downs = [y[j] + self.frac.get((i, j), 0.0) for j in self.down[i]] if not downward or last else []
                    adj = ups + downs
                    want.append(sum(adj) / len(adj) if adj else y[i])
                gaps = [0.0] + [(size[level[k - 1]] + size[level[k]]) / 2 for k in range(1, len(level))]
                for i, v in zip(level, _spaced_fit(want, gaps), strict=True):
                    y[i] = v
        low = min(y)
        return [v - low for v in y]


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

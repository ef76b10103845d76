"""The layered layout (no Qt): columns follow the data flow, nodes never overlap, crossings are reduced."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest

import propscope
from propscope.graph.ir import Graph
from propscope.graph.layout import _inversions, _spaced_fit, layered_layout


def test_xor_columns_follow_the_data_flow():
    s = propscope.open_session("xor")
    lay = layered_layout(s.graph)
    col = {n: p[0] for n, p in lay.positions.items()}
    for node in s.graph:
        for a in node.inputs:
            assert col[a.name] < col[node.name]
    # parameters sit beside the op that uses them, not in the first column
    assert col["W2"] == col["final_input"] - 1
    assert col["y"] == col["loss"] - 1
    assert lay.layers == 6
    assert lay.crossings == 0


def test_inputs_keep_their_order_into_a_node():
    """x, W, b enter `x · W + b` top to bottom, so their edges do not cross at the node."""
    s = propscope.open_session("xor")
    rows = {n: p[1] for n, p in layered_layout(s.graph).positions.items()}
    assert rows["hidden_output"] < rows["W2"] < rows["b2"]
    assert rows["X"] < rows["W1"] < rows["b1"]


def test_no_two_nodes_of_a_column_overlap():
    g = nx.gnp_random_graph(120, 0.04, seed=1, directed=True)
    dag = nx.DiGraph((u, v) for u, v in g.edges if u < v)
    lay = layered_layout(dag)
    by_col: dict[int, list[float]] = {}
    for layer, row in lay.positions.values():
        by_col.setdefault(layer, []).append(row)
    for rows in by_col.values():
        rows.sort()
        assert all(b - a >= 1 - 1e-9 for a, b in itertools.pairwise(rows))
    for (u, v), bends in lay.routes.items():
        assert [b[0] for b in bends] == list(range(lay.positions[u][0] + 1, lay.positions[v][0]))


def test_barycenter_removes_avoidable_crossings():
    # two chains whose second column starts in the crossed order
    dag = nx.DiGraph()
    dag.add_nodes_from(["a", "b", "d", "c"])
    dag.add_edges_from([("a", "c"), ("b", "d")])
    assert layered_layout(dag).crossings == 0


def test_empty_and_cyclic_graphs():
    assert layered_layout(nx.DiGraph()).positions == {}
    with pytest.raises(nx.NetworkXUnfeasible):
        layered_layout(nx.DiGraph([(1, 2), (2, 1)]))


def test_long_edges_get_bend_points():
    g = Graph("skip")
    x = g.input("x", (2,))
    a = g.add("tanh", x, name="a")
    b = g.add("tanh", a, name="b")
    g.set_outputs(g.add("add", b, x, name="out"))
    lay = layered_layout(g)
    assert len(lay.routes[("x", "out")]) == 2


def test_helpers():
    assert _inversions([0, 1, 2]) == 0
    assert _inversions([2, 1, 0]) == 3
    assert _inversions([0.5, 0.25]) == 1
    assert _spaced_fit([0.0, 0.0, 0.0], [0.0, 1.0, 1.0]) == pytest.approx([-1.0, 0.0, 1.0])
    assert _spaced_fit([0.0, 5.0], [0.0, 1.0]) == pytest.approx([0.0, 5.0])


def _chain(n: int) -> Graph:
    g = Graph("chain")
    h = g.input("x", (2,))
    for i in range(n):
        h = g.add(("relu", "tanh")[i % 2], h, name=f"op{i}")
    g.set_outputs(h)
    return g


@pytest.mark.parametrize("n", [1, 2, 50])
def test_a_chain_takes_the_short_way_to_the_same_layout(n):
    """A chain (read from a Graph, or a Flow in order) is laid out without the sweeps, as the sweeps would."""
    from propscope.graph.layout import Flow, _flat, _graph_chain, _in_order_chain, as_flow, topological_order

    g = _chain(n)
    flow = as_flow(g)
    full = _flat(flow, topological_order(flow), 4, 0.3, 0.5)
    for short in (_graph_chain(g), _in_order_chain(flow), layered_layout(g), layered_layout(g.to_networkx())):
        assert short is not None and short == full
    shuffled = Flow(list(reversed(flow.nodes)), flow.edges)  # not in order: the general path, same answer
    assert _in_order_chain(shuffled) is None and layered_layout(shuffled).positions == full.positions


def test_what_is_not_a_chain_takes_the_general_path():
    from propscope.graph.layout import Flow, _graph_chain, _in_order_chain

    g = Graph("fork")
    x = g.input("x", (2,))
    a = g.add("tanh", x, name="a")
    g.add("relu", x, name="b")  # two users of x
    g.set_outputs(a)
    assert _graph_chain(g) is None
    sq = Graph("square")
    y = sq.input("y", (2,))
    sq.set_outputs(sq.add("mul", y, y, name="yy"))  # one input twice: two ports
    assert _graph_chain(sq) is None
    assert _in_order_chain(Flow(["a", "b", "c"], [("a", "b", 0, 1), ("a", "b", 0, 1)])) is None  # c left out
    assert layered_layout(Flow(["a", "b", "c"], [("a", "b", 0, 1), ("a", "b", 0, 1)])).positions["c"][0] == 0

"""The graph canvas alone: gradients adding up on edges, level of detail, lazy items on big graphs."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF

import propscope
from propscope.backends import get_backend
from propscope.debugger import Session
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.gui.bridge import SessionBridge
from propscope.gui.canvas import GraphView
from propscope.gui.canvas.view import DETAIL_ZOOM
from propscope.gui.selection import Selection
from propscope.gui.theme import ThemeManager

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
              pytest.mark.qt_log_level_fail("WARNING")]


def fanout_model() -> Model:
    """h feeds two ops, so its gradient is the sum of two contributions."""
    g = Graph("fanout")
    x = g.input("x", (2, 3))
    w, b = g.parameter("W", (3, 3)), g.parameter("b", (3,))
    h = g.add("tanh", g.add("linear", x, w, b, name="z"), name="h")
    g.set_outputs(g.add("add", g.add("sigmoid", h, name="u"), g.add("relu", h, name="v"), name="out"))
    rng = np.random.default_rng(3)
    return Model(g, {"W": rng.standard_normal((3, 3)), "b": np.full(3, 0.1)},
                 batch={"x": rng.standard_normal((2, 3)), "y": np.zeros((2, 3))}, loss="mse")


def wide_model(stages: int, branches: int) -> Model:
    g = Graph("wide")
    h = [g.input(f"x{j}", (2, 4)) for j in range(branches)]
    arrays = {}
    for s in range(stages):
        new = []
        for j in range(branches):
            w, b = g.parameter(f"W{s}_{j}", (4, 4)), g.parameter(f"b{s}_{j}", (4,))
            arrays[w.name], arrays[b.name] = np.eye(4) * 0.5, np.zeros(4)
            a = g.add("tanh", g.add("linear", h[j], w, b, name=f"z{s}_{j}"), name=f"a{s}_{j}")
            new.append(g.add("add", a, h[(j + 1) % branches], name=f"r{s}_{j}"))
        h = new
    g.set_outputs(h[0])
    return Model(g, arrays, batch={f"x{j}": np.ones((2, 4)) for j in range(branches)})


def make_view(qtbot, session):
    bridge, selection, themes = SessionBridge(session), Selection(), ThemeManager()
    view = GraphView(bridge, selection, themes)
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_forward_and_backward_edges_light_up(qtbot):
    s = propscope.open_session("xor")
    view = make_view(qtbot, s)
    scene = view.graph_scene
    s.run_to("final_input")
    flows = {(scene.edges[e][0], scene.edges[e][1]): item.flow for e, item in scene.edge_items.items() if item.flow}
    assert flows == {("hidden_output", "final_input"): "forward", ("W2", "final_input"): "forward",
                     ("b2", "final_input"): "forward"}
    assert scene.labels == []
    s.run_to("final_input", "backward")
    flows = {(scene.edges[e][0], scene.edges[e][1]): item.flow for e, item in scene.edge_items.items() if item.flow}
    assert set(flows.values()) == {"backward"} and len(flows) == 3
    assert sorted(label.title for label in scene.labels) == ["∂L/∂W", "∂L/∂b", "∂L/∂x"]
    b2 = next(label for label in scene.labels if label.title == "∂L/∂b")
    assert b2.chip.text  # a 1×1 gradient is written as its number
    s.reset()
    assert not any(item.flow for item in scene.edge_items.values()) and scene.labels == []


def test_gradients_flowing_into_one_value_visibly_add_up(qtbot):
    s = propscope.open_session(fanout_model())
    view = make_view(qtbot, s)
    scene = view.graph_scene
    counts = []
    for _ in s.steps:
        s.step()
        counts += [label.count for label in scene.labels if label.count]
        if any(t.input.name == "h" for t in getattr(s.current, "terms", ())):
            k = next(t.arrival for t in s.current.terms if t.input.name == "h")
            assert scene.nodes["h"].arrivals == (k, 2)
    assert counts == ["+ 1 of 2", "+ 2 of 2"]
    s.reset()
    assert scene.nodes["h"].arrivals is None


def test_labels_hide_when_too_small_and_big_graphs_use_the_overview(qtbot):
    s = Session(wide_model(stages=30, branches=12), get_backend())
    view = make_view(qtbot, s)
    scene = view.graph_scene
    assert len(s.graph) > 1500
    # it opens readable, at the inputs, with items made only for what is in view
    assert view.zoom() >= 0.45 and scene.detail_shown and all(n.isVisible() for n in scene.nodes.values())
    assert 0 < len(scene.nodes) < len(s.graph) / 10
    assert s.steps[0].node.name in scene.nodes
    view.fit()
    assert view.zoom() < DETAIL_ZOOM  # the whole graph: far too small to read
    assert scene.overview.isVisible() and not scene.detail_shown
    assert not any(item.isVisible() for item in [*scene.nodes.values(), *scene.edge_items.values()])
    view.set_zoom(0.8)
    view.center_on_node("a15_6")
    assert scene.detail_shown and not scene.overview.isVisible()
    assert all(item.isVisible() for item in [*scene.nodes.values(), *scene.edge_items.values()])  # made late too
    assert len(scene.nodes) < len(s.graph) / 5
    assert "a15_6" in scene.nodes
    # a node made late shows the same state as the session
    s.run_to("a15_6")
    assert scene.nodes["a15_6"].current == "forward"
    view.center_on_node("a29_0")
    item = scene.nodes["a29_0"]
    assert not item.has_value and item.current is None
    s.run_to_end()
    assert item.has_value


def test_nodes_are_found_under_the_mouse_even_in_the_overview(qtbot):
    s = Session(wide_model(stages=30, branches=12), get_backend())
    view = make_view(qtbot, s)
    centre = view.graph_scene.node_rect("r10_3").center()
    assert view.graph_scene.node_at_point(centre) == "r10_3"
    assert view.graph_scene.node_at_point(centre + QPointF(0, view.graph_scene.geo.row_h / 2)) is None
    pos = view.mapFromScene(centre)
    assert view.node_at(QPointF(pos)) == "r10_3"
    menu = view.node_menu("r10_3")
    next(a for a in menu.actions() if a.objectName() == "toggleBreakpoint").trigger()
    assert "r10_3" in view.graph_scene.overview.breakpoints


def test_zoom_keeps_detail_in_step_with_the_threshold(qtbot):
    view = make_view(qtbot, propscope.open_session("xor"))
    view.set_zoom(DETAIL_ZOOM * 0.9)
    assert not view.graph_scene.detail_shown
    view.set_zoom(DETAIL_ZOOM * 1.1)
    assert view.graph_scene.detail_shown

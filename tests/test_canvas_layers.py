"""The canvas paints nodes and edges above module frames: a frame's translucent fill must never wash out the nodes
inside it, however deeply frames nest (a ResNet's layer1 > layer1.0 > ... stacks several)."""

from __future__ import annotations

import pytest
from test_gui_canvas import make_view

import propscope
from propscope.graph.examples import EXAMPLES

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
              pytest.mark.qt_log_level_fail("WARNING")]


@pytest.mark.parametrize("example", [name for name in EXAMPLES if name in ("classifier", "attention", "cnn")])
def test_every_node_is_painted_above_every_frame(qtbot, example: str) -> None:
    view = make_view(qtbot, propscope.open_session(example))
    scene = view.graph_scene
    scene.ensure_items(None)
    assert scene.frames, f"{example} has no module frames to check"
    top_frame = max(frame.zValue() for frame in scene.frames.values())
    for item in list(scene.nodes.values()) + list(scene.edge_items.values()):
        layer = item.parentItem() if item.parentItem() is not None else item
        assert layer.zValue() > top_frame, f"{example}: an item is painted under a module frame"


def test_items_are_top_level_so_a_repaint_visits_only_those_in_view(qtbot) -> None:
    """Under a parent item, every child was visited on every repaint: once a 20,000-node graph had been explored
    (44,000 items made), each frame took 72 ms. Top-level, the scene's BSP index hands a repaint what it exposes."""
    view = make_view(qtbot, propscope.open_session("attention"))
    scene = view.graph_scene
    scene.ensure_items(None)
    session = view.bridge.session
    while session.cursor < len(session.steps) and not scene.labels:  # into the backward pass: labels on edges
        session.step()
    items = [*scene.frames.values(), *scene.nodes.values(), *scene.edge_items.values(), *scene.labels]
    assert scene.frames and scene.labels
    assert all(item.parentItem() is None for item in items)
    assert scene.itemIndexMethod() == scene.ItemIndexMethod.BspTreeIndex

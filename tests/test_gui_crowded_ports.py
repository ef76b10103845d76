"""Ops with many inputs keep their role labels legible.

A node's in ports shared the body under its header: batch norm's five inputs (x, γ, β, μ_run, σ²_run) came 9.6
pixels apart, and the labels over their edges, each about 10 pixels tall, lay on top of each other. Up to three
inputs keep the body (16 pixels apart); more spread over the node's whole height (14 pixels for five), and where
even that is closer than the tallest label (an LSTM cell's six), the labels take two columns in turn.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QApplication

from propscope import open_session
from propscope.backends import get_backend
from propscope.debugger import Session
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.gui.canvas.items import RoleLabel
from propscope.gui.main_window import MainWindow

NOISE = ("This plugin does not support propagateSizeHints", "This plugin does not support raise")
pytestmark = pytest.mark.qt_log_ignore(*NOISE)


def batch_norm_net() -> Model:
    """Conv-free: x (2, 3, 4, 4) into a batch norm with its four parameters, then a sigmoid."""
    g = Graph("bn")
    x = g.input("x", (2, 3, 4, 4))
    names = ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var")
    params = [g.parameter(n, (3,), module="bn") for n in names]
    y = g.add("batch_norm", x, *params, name="bn.batch_norm", module="bn")
    g.set_outputs(g.add("sigmoid", y, name="out"))
    arrays = dict(zip(names, (np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)), strict=True))
    rng = np.random.default_rng(0)
    return Model(g, arrays, batch={"x": rng.standard_normal((2, 3, 4, 4)), "y": np.zeros((2, 3, 4, 4))}, loss="mse")


def open_window(qtbot, session: Session, projector: bool) -> MainWindow:
    window = MainWindow(session, settings=None)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    if projector:
        window.set_projector(True, full_screen=False)
    for _ in range(3):
        QApplication.processEvents()
    return window


def labels_into(window: MainWindow, node: str) -> list[tuple[RoleLabel, int]]:
    """The role labels of the edges into `node`, each with its input's position."""
    scene = window.canvas.graph_scene
    scene.ensure_items(None)
    return [(e.label, scene.edges.position[k]) for k, e in scene.edge_items.items()
            if e.dst == node and e.label is not None]


def check_legible(window: MainWindow, node: str, inputs: int) -> None:
    """Every label of `node`'s inputs, plain and lit: clear of every other label (halos included) and of every
    node, above the end of its own edge, in input order; `inputs` of them shown."""
    scene = window.canvas.graph_scene
    found = labels_into(window, node)
    assert len(found) == inputs
    nodes = [scene.node_rect(n) for n in scene.centers]
    for flow in (None, "forward"):
        for label, _pos in found:
            label.set_flow(flow)
        rects = [(label.text_rect().adjusted(-label.halo / 2, -label.halo / 2, label.halo / 2, label.halo / 2), pos,
                  label) for label, pos in found]
        for k, (a, pos_a, label_a) in enumerate(rects):
            for b, pos_b, _label_b in rects[k + 1:]:
                assert not a.intersects(b), (label_a.role, pos_a, pos_b, flow)
            for rect in nodes:
                assert not rect.intersects(label_a.text_rect()), (label_a.role, flow)
        for edge in (e for e in scene.edge_items.values() if e.dst == node and e.label is not None):
            end = edge.points[-1]
            letters = edge.label.text_rect()
            assert letters.bottom() < end.y() and letters.right() < end.x(), (edge.role, flow)
            clear = scene.theme.pen_width(2.6) / 2 + edge.label.halo / 2  # the lit edge's stroke and the halo
            assert end.y() - letters.bottom() < clear + 1  # just above it: its own edge's label


@pytest.mark.parametrize("projector", [False, True])
def test_batch_norm_labels_do_not_overlap(qtbot, projector):
    window = open_window(qtbot, Session(batch_norm_net(), get_backend("numpy")), projector)
    window.bridge.session.step()  # the batch norm's step: its five edges lit, the labels bold
    check_legible(window, "bn.batch_norm", 5)
    # all five on the node's side, top to bottom in input order, each a good label height apart
    scene = window.canvas.graph_scene
    ends = sorted((e.points[-1].y(), e.role) for e in scene.edge_items.values() if e.dst == "bn.batch_norm")
    assert [role for _y, role in ends] == ["x", "γ", "β", "μ_run", "σ²_run"]
    node = scene.node_rect("bn.batch_norm")
    gaps = np.diff([y for y, _role in ends])
    assert gaps.min() >= 13.5 * scene.theme.scale and node.top() < ends[0][0] and ends[-1][0] < node.bottom()


@pytest.mark.parametrize("projector", [False, True])
def test_lstm_cell_labels_take_two_columns(qtbot, projector):
    window = open_window(qtbot, open_session("lstm"), projector)
    check_legible(window, "lstm.t1", 6)
    found = labels_into(window, "lstm.t1")
    rights = {pos % 2: set() for _label, pos in found}
    for label, pos in found:
        rights[pos % 2].add(round(label.text_rect().right()))
    assert max(rights[1]) < min(rights[0])  # the second column left of the first


@pytest.mark.parametrize("example", ["classifier", "xor", "cnn"])
def test_up_to_three_inputs_keep_their_ports_in_the_body(qtbot, example):
    """x, W, b: 16 pixels apart under the header, as before."""
    window = open_window(qtbot, open_session(example), False)
    scene = window.canvas.graph_scene
    scene.ensure_items(None)
    geo = scene.geo
    for edge in scene.edge_items.values():
        count = scene.edges.count[next(k for k, e in scene.edge_items.items() if e is edge)]
        if count <= 3:
            top = scene.node_rect(edge.dst).top()
            assert edge.points[-1].y() > top + geo.header_h

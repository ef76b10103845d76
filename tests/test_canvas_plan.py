"""The scene's plan is kept in arrays (no Qt object per node or edge): what it hands Qt must be what the
per-object code made: the edges' path element for element, each edge's ports and bends, node centres."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QByteArray, QDataStream, QIODevice, QPointF
from PySide6.QtGui import QPainterPath

import propscope
from propscope.gui.canvas.folding import Folding
from propscope.gui.canvas.overview import polylines
from propscope.gui.canvas.scene import GraphScene
from propscope.gui.theme import ThemeManager

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
              pytest.mark.qt_log_level_fail("WARNING")]


def _bytes(path: QPainterPath) -> bytes:
    data = QByteArray()
    QDataStream(data, QIODevice.OpenModeFlag.WriteOnly) << path
    return bytes(data.data())


def test_polylines_is_the_path_moveto_and_lineto_make():
    rng = np.random.default_rng(0)
    points = rng.random((11, 2)) * 300
    first = np.array([0, 2, 5, 9])
    want = QPainterPath()
    for a, b in zip(first, [*first[1:], len(points)], strict=True):
        want.moveTo(QPointF(*points[a]))
        for p in points[a + 1:b]:
            want.lineTo(QPointF(*p))
    got = polylines(points, first)
    assert _bytes(got) == _bytes(want) and got.boundingRect() == want.boundingRect()
    assert polylines(np.zeros((0, 2)), np.zeros(0, dtype=int)).isEmpty()


@pytest.mark.parametrize("example", ["classifier", "cnn", "attention"])
def test_planned_edges_run_port_to_port_through_their_bends(qapp, example):
    s = propscope.open_session(example)
    folding = Folding.of(s.graph, ())
    layout = folding.layout()
    scene = GraphScene(s, layout, ThemeManager().theme, folding)
    geo = scene.geo
    assert len(scene.centers) == len(scene.names) and set(scene.centers) == set(scene.names)
    for name in scene.names:
        assert scene.centers[name] == geo.center(*layout.positions[name])
    assert len(scene.edges) == len(list(scene.edges)) > 0
    for e, (src, dst, pos, count, _role) in enumerate(scene.edges):
        pts = scene.edge_points(e)
        bends = [geo.center(*p) for p in layout.routes.get((src, dst), [])]
        assert pts == [geo.out_port(scene.centers[src]), *bends, geo.in_port(scene.centers[dst], pos, count)]
    scene.deleteLater()

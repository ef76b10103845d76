"""Module frames never overlap: no two frames of a built-in example cross, and no frame covers a node
from outside it, folded or not; gradient labels never cover a node."""

from __future__ import annotations

import itertools

import pytest
from PySide6.QtCore import Qt

import propscope
from propscope.graph.examples import EXAMPLES
from propscope.graph.ir import Graph
from propscope.graph.layout import Flow, find_cycle, layered_layout, nearest_free
from propscope.gui.canvas.folding import BOX_PREFIX, Folding
from propscope.gui.canvas.scene import GraphScene
from propscope.gui.theme import ThemeManager


def scene_of(name: str, closed: tuple[str, ...] | None) -> GraphScene:
    s = propscope.open_session(name)
    folding = Folding.of(s.graph, closed)
    return GraphScene(s, folding.layout(), ThemeManager().theme, folding)


def overlaps(scene: GraphScene) -> list[tuple[str, str]]:
    bad = []
    frames = list(scene.frames.values())
    for a, b in itertools.combinations(frames, 2):
        if a.rect.intersects(b.rect) and not (a.rect.contains(b.rect) or b.rect.contains(a.rect)):
            bad.append((a.unit.key, b.unit.key))
    units = scene.folding.units
    for frame in frames:
        for key in scene.names:
            members = set(units[key].members) if key in units else {key}
            if not members <= frame.members and frame.rect.intersects(scene.node_rect(key)):
                bad.append((frame.unit.key, key))
    return bad


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_no_frame_overlaps_another_or_a_foreign_node(qapp, name):
    scene = scene_of(name, ())  # every module open: the most frames
    assert overlaps(scene) == []
    folded = scene_of(name, None)  # as the app opens it
    assert overlaps(folded) == []


def test_the_examples_with_modules_keep_their_frames():
    for name in ("classifier", "cnn", "lstm", "attention"):
        scene = scene_of(name, ())
        assert len(scene.frames) >= 2, name


def test_a_module_that_values_leave_and_reenter_gets_no_frame(qapp):
    g = Graph("loop")
    x = g.input("x", (3,))
    a = g.add("tanh", x, name="m.a", module="m")
    out = g.add("relu", a, name="outside")
    g.set_outputs(g.add("add", out, a, name="m.b", module="m"))
    clusters = {"m.a": ("m",), "m.b": ("m",)}
    lay = layered_layout(g, clusters=clusters)
    assert "m" not in lay.boxes  # it cannot be one rectangle without covering `outside`
    assert set(lay.positions) == {"x", "m.a", "outside", "m.b"}


def test_clusters_are_rectangles_that_hold_their_members_only():
    g = Graph("two")
    h = g.input("x", (2,))
    for m in ("p", "q", "r"):
        h = g.add("tanh", g.add("relu", h, name=f"{m}.relu", module=m), name=f"{m}.tanh", module=m)
    lay = layered_layout(g, clusters={n.name: (n.module,) for n in g if n.module})
    assert set(lay.boxes) == {"p", "q", "r"}
    for key, (l0, top, l1, bottom) in lay.boxes.items():
        for name, (layer, row) in lay.positions.items():
            inside = l0 <= layer <= l1 and top < row < bottom
            assert inside == name.startswith(f"{key}."), (key, name)


def test_plain_helpers():
    assert find_cycle(Flow([1, 2, 3], [(1, 2, 0, 1), (2, 3, 0, 1)])) == []
    assert find_cycle(Flow([1, 2], [(1, 2, 0, 1), (2, 1, 0, 1)])) == [(1, 2), (2, 1)]
    assert nearest_free([(0.0, 1.0), (1.5, 3.0)], 0.9, 0.5) == pytest.approx(1.25)
    assert nearest_free([(0.0, 1.0), (1.2, 3.0)], 0.5, 0.5) == pytest.approx(-0.25)


def test_gradient_labels_do_not_cover_nodes(qapp):
    s = propscope.open_session("classifier")
    folding = Folding.of(s.graph, ())
    scene = GraphScene(s, folding.layout(), ThemeManager().theme, folding)
    seen = 0
    for cursor in range(s.n_forward + 1, len(s.steps) + 1):
        s.seek(cursor)
        scene.cursor_moved(cursor)
        for label in scene.labels:
            rect = label.mapRectToScene(label.boundingRect())
            assert not any(rect.intersects(scene.node_rect(k)) for k in scene.names), label.title
            seen += 1
    assert seen > 0


@pytest.mark.parametrize("name", ["attention", "lstm", "cnn"])
def test_clusters_of_one_shape_share_a_layout_that_is_exactly_their_own(name, monkeypatch):
    """A repeated block is laid out once and renamed; laying out every block afresh gives the same layout."""
    import propscope.graph.layout as layout
    from propscope.debugger import open_session

    graph = open_session(name).graph
    folding = Folding.of(graph, ())
    shared = folding.layout()
    fresh = itertools.count()
    monkeypatch.setattr(layout, "_shape_of", lambda items, edges: (next(fresh),))  # every cluster its own shape
    own = folding.layout()
    assert (shared.positions, shared.routes, shared.boxes) == (own.positions, own.routes, own.boxes)


def test_a_chain_of_4000_modules_lays_out_fast():
    """The 20,000-node chain of residual blocks: one block's layout, reused (5x faster than one each)."""
    import time

    g = Graph("blocks")
    h = g.input("x", (2, 4))
    for k in range(4000):
        m = f"blocks.{k}"
        w, b = g.parameter(f"{m}.weight", (4, 4), module=m), g.parameter(f"{m}.bias", (4,), module=m)
        z = g.add("linear", h, w, b, name=f"{m}.linear", module=m)
        h = g.add("add", g.add("tanh", z, name=f"{m}.tanh", module=m), h, name=f"{m}.add", module=m)
    g.set_outputs(h)
    start = time.perf_counter()
    lay = Folding.of(g, ()).layout()
    assert time.perf_counter() - start < 10  # about 1 s on a quiet machine; 5 s laid out block by block
    assert len(lay.boxes) >= 4000 and len(lay.positions) == len(g)  # each block, and the modules around them


@pytest.mark.parametrize("length", [1, 2, 500])
def test_a_chain_is_laid_out_on_one_row_as_the_sweeps_would(length, monkeypatch):
    import propscope.graph.layout as layout

    g = Graph("chain")
    h = g.input("x", (2, 3))
    for i in range(length - 1):
        h = g.add(("relu", "tanh")[i % 2], h, name=f"op{i}")
    g.set_outputs(h)
    fast = layered_layout(g)
    for short_way in ("_graph_chain", "_in_order_chain", "_as_chain"):  # each way of seeing a chain, and none
        monkeypatch.setattr(layout, short_way, lambda *_args: None)
        assert fast == layered_layout(g) and fast.rows == 0.0 and fast.layers == length


def test_a_residual_is_no_chain():
    """A skip connection spans two layers: the general layout places it (a bend above or below)."""
    from propscope.graph.layout import _as_chain, _Item

    items = [_Item(n) for n in ("x", "a", "b")]
    assert _as_chain(items, [("x", "a", 0, 1), ("a", "b", 0, 2), ("x", "b", 1, 2)]) is None
    assert _as_chain(items, [("x", "a", 0, 1), ("a", "b", 0, 1)]) is not None


def test_an_op_that_lost_its_scope_inside_a_module_joins_it():
    """ONNX's Split becomes slices without a scope: inside `blk` (made from `blk.qkv`, used by `blk`), they
    join `blk`, which then folds; an op between two top-level modules stays outside both."""
    g = Graph("scopes")
    x = g.input("x", (2, 6))
    w = g.parameter("blk.qkv.weight", (6, 6), module="blk.qkv")
    qkv = g.add("matmul", x, w, name="blk.qkv.mm", module="blk.qkv")
    part = g.add("tanh", qkv, name="lost_scope")  # no module, as an exporter leaves it
    inner = g.add("relu", part, name="blk.act", module="blk")
    between = g.add("sigmoid", inner, name="top_level")  # between blk and out: stays outside
    out = g.add("tanh", between, name="out.act", module="out")
    g.add("relu", out, name="out.act2", module="out")
    folding = Folding.of(g, ())
    assert "lost_scope" in folding.units["⊞ blk"].members
    assert "top_level" not in folding.chains or not folding.chains["top_level"]
    assert folding.close("⊞ blk") and folding.rep("lost_scope") == "⊞ blk"


def test_a_long_module_path_shows_its_tail_not_an_elided_middle(qapp):
    """ResNet's "layer2.0.downsample.0" showed as "layer2….ample.0": the tail of whole components is shown
    ("…downsample.0"), the whole path when there is room, never a tail starting at a number."""
    from PySide6.QtGui import QFontMetricsF

    from propscope.gui.canvas.boxes import fit_title

    fm = QFontMetricsF(ThemeManager().theme.font(12, bold=True))

    def width(text: str) -> float:
        return fm.horizontalAdvance(text) + 0.5

    path = "layer2.0.downsample.0"
    assert fit_title(path, width(path), fm) == path
    assert fit_title(path, width(path) - 1, fm) == "…downsample.0"
    assert fit_title(path, width("…0.downsample.0"), fm) == "…downsample.0"  # no tail starts at "0."
    assert fit_title(path, width("…downsample.0") - 1, fm) == fm.elidedText(
        "…downsample.0", Qt.TextElideMode.ElideMiddle, width("…downsample.0") - 1)
    frame = fit_title(path, width(f"{path} · module · 2 ops"), fm, "module · 2 ops")
    assert frame == f"{path} · module · 2 ops"
    assert fit_title(path, width(path), fm, "module · 2 ops") == path  # the name before its caption
    repeat = "encoder.layers.0 … 11"  # a repeat keeps its range
    assert fit_title(repeat, width("…layers.0 … 11"), fm) == "…layers.0 … 11"


def test_boxes_and_frames_show_the_tail_and_the_tooltip_the_whole_path(qtbot):
    from PySide6.QtCore import QEvent, QPointF
    from PySide6.QtGui import QHelpEvent
    from PySide6.QtWidgets import QApplication, QToolTip

    from propscope.backends import get_backend
    from propscope.debugger import Session
    from propscope.graph.model import Model
    from propscope.gui.bridge import SessionBridge
    from propscope.gui.canvas import GraphView
    from propscope.gui.canvas.boxes import BoxItem
    from propscope.gui.selection import Selection

    g = Graph("deep")
    h = g.input("x", (2, 3))
    for k in range(2):
        block = f"encoder.layer2.{k}"
        h = g.add("tanh", h, name=f"{block}.conv", module=block)
        h = g.add("relu", h, name=f"{block}.downsample.a", module=f"{block}.downsample")
        h = g.add("sigmoid", h, name=f"{block}.downsample.b", module=f"{block}.downsample")
    g.set_outputs(h)
    session = Session(Model(g, {}), get_backend("numpy"))
    view = GraphView(SessionBridge(session), Selection(), ThemeManager())
    qtbot.addWidget(view)
    view.resize(900, 500)
    view.show()
    path = "encoder.layer2.0.downsample"
    key = BOX_PREFIX + path
    view.fold_all(False)
    assert view.toggle_fold(key)  # only this one folded: its box in view
    box = view.graph_scene.nodes[key]
    assert isinstance(box, BoxItem) and box.label == "…downsample"  # the whole path is too long for a box
    pos = view.mapFromScene(view.graph_scene.centers[box.name])
    QApplication.sendEvent(view.viewport(), QHelpEvent(QEvent.Type.ToolTip, pos, view.viewport().mapToGlobal(pos)))
    assert path in QToolTip.text() and "to open" in QToolTip.text()
    QToolTip.hideText()
    view.fold_all(False)
    frame = view.graph_scene.frames[key]
    assert frame.title.startswith(("…downsample", path)) and "…." not in frame.title
    spot = frame.header_rect().center()
    view.centerOn(spot)
    pos = view.mapFromScene(spot)
    assert view.node_at(QPointF(pos)) is None
    QApplication.sendEvent(view.viewport(), QHelpEvent(QEvent.Type.ToolTip, pos, view.viewport().mapToGlobal(pos)))
    assert path in QToolTip.text() and "fold it" in QToolTip.text()  # the frame's, not the box's


def test_opening_a_box_opens_a_repeat_inside_it_that_values_leave_and_reenter():
    """MobileNetV3's classifier: Linear (`head.0`), Hardswish (`head.1`, one node: no box of its own), Linear
    (`head.3`). The two Linears are a repeat with the Hardswish between them outside it; folded inside the closed
    classifier that cycle was hidden, and opening the classifier (a double-click) raised CycleError laying out."""
    g = Graph("classifier")
    h = g.input("x", (2, 4))
    for k in (0, 3):
        m = f"head.{k}"
        w, b = g.parameter(f"{m}.weight", (4, 4), module=m), g.parameter(f"{m}.bias", (4,), module=m)
        h = g.add("linear", h, w, b, name=f"{m}.linear", module=m)
        if k == 0:
            h = g.add("tanh", h, name="head.1.tanh", module="head.1")
    g.set_outputs(h)
    folding = Folding.of(g, ())
    head, repeat = BOX_PREFIX + "head", BOX_PREFIX + "head#block0"
    assert folding.units[repeat].count == 2 and "head.1.tanh" not in folding.units[repeat].members
    folding.close_all()
    assert head in folding.closed and repeat in folding.closed  # the repeat's loop is hidden in `head`'s box
    folding.open(head)
    assert repeat not in folding.closed and repeat in folding.blocked
    assert not find_cycle(folding.view_graph())
    assert {BOX_PREFIX + "head.0", BOX_PREFIX + "head.3"} <= folding.closed  # the Linears stay folded
    assert set(folding.layout().positions) == {"x", BOX_PREFIX + "head.0", "head.1.tanh", BOX_PREFIX + "head.3"}
    assert not folding.close(repeat)

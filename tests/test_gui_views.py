"""Module folding on the canvas, the layer views (convolution, recurrence, attention) and Compare backends.

Each view is built on a real session and checked against the session's own numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QSettings, Qt

import propscope
from propscope.backends.numpy.recurrent import lstm_gates
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.gui.bridge import SessionBridge
from propscope.gui.canvas import GraphView
from propscope.gui.canvas.boxes import BoxItem
from propscope.gui.canvas.folding import BOX_PREFIX, REPEAT, Folding
from propscope.gui.inspect.layer_view import ATTENTION, CONV, RECURRENT, LayerView, receptive_field, view_kind
from propscope.gui.main_window import MainWindow
from propscope.gui.selection import Selection
from propscope.gui.theme import ThemeManager

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
              pytest.mark.qt_log_level_fail("WARNING")]


def make_view(qtbot, session):
    bridge, selection, themes = SessionBridge(session), Selection(), ThemeManager()
    view = GraphView(bridge, selection, themes)
    qtbot.addWidget(view)
    view.resize(1000, 650)
    view.show()
    qtbot.waitExposed(view)
    return view


def double_click(qtbot, view, scene_point):
    pos = view.mapFromScene(scene_point)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=pos)


# -- folding ---------------------------------------------------------------------------------------
def test_recurrent_layer_folds_under_its_box_and_opens_again_on_double_click(qtbot):
    s = propscope.open_session("rnn")
    view = make_view(qtbot, s)
    scene = view.graph_scene
    key = BOX_PREFIX + "rnn"
    assert key in scene.frames and "rnn.t3" in scene.nodes  # small lessons open unfolded, in a frame
    double_click(qtbot, view, scene.frames[key].header_rect().center())
    scene = view.graph_scene
    assert key in scene.nodes and isinstance(scene.nodes[key], BoxItem)
    assert "rnn.t3" not in scene.nodes and "rnn.t3" not in scene.names
    assert scene.node_rect("rnn.t3") == scene.node_rect(key)  # a hidden node answers for its box
    edges = {(e[0], e[1]) for e in scene.edges}
    assert ("x", key) in edges and (key, "logits") in edges and ("rnn.weight_hh", key) not in edges
    # stepping into the folded layer lights the box and names the step, without opening it
    s.run_to("rnn.t3")
    assert scene.current == "rnn.t3" and scene.current_key == key
    box = scene.nodes[key]
    assert box.current == "forward" and "rnn.t3" in box.subtitle
    assert view.folding.is_box(key)
    double_click(qtbot, view, view.graph_scene.node_rect(key).center())
    scene = view.graph_scene
    assert key not in scene.nodes and "rnn.t3" in scene.nodes
    assert scene.nodes["rnn.t3"].current == "forward"


def test_unrolled_time_steps_fold_into_block_times_n(qtbot):
    s = propscope.open_session("lstm")
    f = Folding.of(s.graph, ())
    (repeat,) = [u for u in f.units.values() if u.kind == REPEAT]
    assert repeat.count == 10 and repeat.what == "time step" and repeat.parent == BOX_PREFIX + "lstm"
    assert {f"lstm.t{t}" for t in range(10)} | {f"lstm.x{t}" for t in range(10)} == set(repeat.members)
    view = make_view(qtbot, s)
    view.toggle_fold(repeat.key)
    scene = view.graph_scene
    box = scene.nodes[repeat.key]
    assert "× 10" in box.subtitle
    assert "lstm.weight_hh" in scene.nodes  # the weights stay outside the repeated steps
    assert view.graph_scene.frames[BOX_PREFIX + "lstm"].rect.contains(scene.node_rect(repeat.key))


def test_repeated_sibling_modules_fold_into_one_block_and_big_graphs_start_folded():
    g = Graph("stack")
    h = g.input("x", (2, 4))
    arrays = {}
    for k in range(40):
        w = g.parameter(f"layers.{k}.weight", (4, 4), module=f"layers.{k}")
        b = g.parameter(f"layers.{k}.bias", (4,), module=f"layers.{k}")
        arrays[w.name], arrays[b.name] = np.eye(4), np.zeros(4)
        z = g.add("linear", h, w, b, name=f"layers.{k}.linear", module=f"layers.{k}")
        h = g.add("tanh", z, name=f"layers.{k}.act", module=f"layers.{k}")
    g.set_outputs(h)
    model = Model(g, arrays, batch={"x": np.ones((2, 4))})
    f = Folding.of(model.graph)
    (repeat,) = [u for u in f.units.values() if u.kind == REPEAT]
    assert repeat.count == 40 and repeat.title == "layers.0 … 39"
    assert len(f.visible()) <= 60  # folded just enough for a first look
    f.open_all()
    assert len(f.visible()) == len(g)
    f.close(repeat.key)
    assert f.visible() == ["x", repeat.key]
    assert f.layout().positions[repeat.key][0] == 1


def test_a_fold_that_would_make_a_cycle_is_refused():
    g = Graph("loop")
    x = g.input("x", (3,))
    a = g.add("tanh", x, name="m.a", module="m")
    out = g.add("add", a, x, name="outside")  # takes x too: truly outside m (not an op that lost its scope)
    b = g.add("add", out, a, name="m.b", module="m")
    g.set_outputs(b)
    f = Folding.of(g, ())
    assert not f.close(BOX_PREFIX + "m")
    assert BOX_PREFIX + "m" not in f.closed


# -- layer views -------------------------------------------------------------------------------------
def make_layer_view(qtbot, session):
    bridge, selection, themes = SessionBridge(session), Selection(), ThemeManager()
    view = LayerView(bridge, selection, themes)
    qtbot.addWidget(view)
    view.resize(520, 760)
    view.show()
    qtbot.waitExposed(view)
    return view, selection


def test_view_kinds_fit_the_right_nodes():
    cnn = propscope.open_session("cnn").graph
    assert view_kind(cnn, cnn["conv1"]) == CONV and view_kind(cnn, cnn["conv1.weight"]) == CONV
    assert view_kind(cnn, cnn["logits"]) is None
    rnn = propscope.open_session("gru").graph
    assert view_kind(rnn, rnn["gru.t4"]) == RECURRENT and view_kind(rnn, rnn["gru.x4"]) == RECURRENT
    att = propscope.open_session("attention").graph
    assert view_kind(att, att["attn.weights"]) == ATTENTION and view_kind(att, att["tokens"]) is None


def test_convolution_view_shows_maps_and_filters_and_the_receptive_field(qtbot):
    s = propscope.open_session("cnn")
    s.run_to("conv1")
    view, selection = make_layer_view(qtbot, s)
    selection.select("conv1")
    inputs, filters, outputs = view.page.sections
    x, w, out = s.value("x"), s.value("conv1.weight"), s.value("conv1")
    assert len(inputs.tiles) == 1 and len(filters.tiles) == 4 and len(outputs.tiles) == 4
    np.testing.assert_array_equal(inputs.tiles[0].matrix, x[0, 0])
    np.testing.assert_array_equal(filters.tiles[2].matrix, w[2, 0])
    np.testing.assert_array_equal(outputs.tiles[3].matrix, out[0, 3])
    # a click on output pixel (row 0, col 5) of channel 1 selects it and lights rows -1..1, cols 4..6 (padding 1)
    grid = view.grids()[-1]
    qtbot.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.cell_center(1, 0, 5).toPoint())
    assert selection.node == "conv1" and selection.index == (0, 1, 0, 5)
    inputs, filters, outputs = view.page.sections
    assert inputs.tiles[0].marks == [(-1, 4, 2, 7)]
    assert outputs.tiles[1].marks == [(0, 5, 1, 6)]
    assert [t.outlined for t in filters.tiles] == [False, True, False, False]
    assert receptive_field(s.graph["pool1"], 2, 1, 3) == ([2], [2, 3], [6, 7])


def test_recurrent_view_shows_the_hidden_state_and_gates_over_time(qtbot):
    s = propscope.open_session("lstm")
    s.run_to("lstm.t6")
    view, selection = make_layer_view(qtbot, s)
    selection.select("lstm.t6")
    assert view.page.kind == RECURRENT
    tiles = view.page.sections[0].tiles
    assert view.page.keys == ["h", "c", "i", "f", "g", "o"]
    h, c, forget = tiles[0].matrix, tiles[1].matrix, tiles[3].matrix
    assert h.shape == (8, 10)  # hidden units × time
    np.testing.assert_allclose(h[:, 6], s.value("lstm.t6")[0, 0])
    np.testing.assert_allclose(c[:, 2], s.value("lstm.t2")[1, 0])
    assert np.isnan(h[:, 7]).all()  # not computed yet
    args = [np.asarray(s.value(a.name), dtype=np.float64) for a in s.graph["lstm.t6"].inputs]
    np.testing.assert_allclose(forget[:, 6], lstm_gates(*args)["f"][0], rtol=1e-6)
    assert tiles[0].marks == [(0, 6, 8, 7)]  # the step now taken
    view.sample.setValue(3)
    np.testing.assert_allclose(view.page.sections[0].tiles[0].matrix[:, 6], s.value("lstm.t6")[0, 3])
    s.run_to_end()
    view.mode.setCurrentIndex(1)
    view.refresh()
    grads = view.page.sections[0].tiles[0].matrix
    np.testing.assert_allclose(grads[:, 0], s.grad("lstm.t0")[0, 3])


def test_attention_heatmap_is_the_attention_weights_with_tokens_on_both_axes(qtbot):
    s = propscope.open_session("attention")
    s.run_to("attn.weights")
    view, selection = make_layer_view(qtbot, s)
    selection.select("attn.weights")
    tiles = view.page.sections[0].tiles
    weights = s.value("attn.weights")
    assert len(tiles) == weights.shape[0] == 2
    for h, tile in enumerate(tiles):
        np.testing.assert_array_equal(tile.matrix, weights[h])
        assert tile.row_labels == tile.col_labels == ["the", "cat", "sat", "on", "the"]
    grid = view.grids()[0]
    qtbot.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.cell_center(1, 3, 2).toPoint())
    assert selection.index == (1, 3, 2)
    assert view.page.sections[0].tiles[1].marks == [(3, 2, 4, 3)]


def test_attention_written_as_products_is_found_without_tokens(qtbot):
    g = Graph("sdpa")
    q, k, v = (g.parameter(n, (4, 3)) for n in "qkv")
    scores = g.add("matmul", q, g.add("transpose", k, name="kT", attrs={"axes": (1, 0)}), name="scores")
    weights = g.add("softmax", scores, name="attn.weights", attrs={"axis": -1})
    g.set_outputs(g.add("matmul", weights, v, name="context"))
    rng = np.random.default_rng(2)
    s = propscope.open_session(Model(g, {n: rng.standard_normal((4, 3)) for n in "qkv"}))
    assert view_kind(s.graph, s.graph["attn.weights"]) == ATTENTION
    assert view_kind(s.graph, s.graph["scores"]) is None
    s.run_to_end()
    view, selection = make_layer_view(qtbot, s)
    selection.select("attn.weights")
    (tile,) = view.page.sections[0].tiles
    np.testing.assert_array_equal(tile.matrix, s.value("attn.weights"))
    assert tile.row_labels == ["0", "1", "2", "3"]


def test_layer_view_lists_the_nodes_it_can_show_and_scales_in_projector_mode(qtbot):
    s = propscope.open_session("attention")
    view, selection = make_layer_view(qtbot, s)
    assert view.page is None and 'href="attn.weights"' in view.header.text()
    view.header.linkActivated.emit("attn.weights")
    assert selection.node == "attn.weights" and view.page.kind == ATTENTION
    assert "not computed yet" in view.message.text()
    small = view.sections[0].grid.title_font.pixelSize()
    view.themes.set_projector(True)
    try:
        assert view.sections[0].grid.title_font.pixelSize() > small * 1.4
    finally:
        view.themes.restore()


def test_boxes_fold_and_open_from_the_menus(qtbot):
    s = propscope.open_session("gru")
    view = make_view(qtbot, s)
    view.fold_all(True)
    key = BOX_PREFIX + "gru"
    centre = view.graph_scene.node_rect(key).center()
    assert view.graph_scene.node_at_point(centre) == key
    assert view.graph_scene.node_at_point(centre + QPointF(0, view.graph_scene.geo.row_h * 3)) != key
    menu = view.node_menu(key)
    (toggle,) = [a for a in menu.actions() if a.objectName() == "toggleFold"]
    assert toggle.text() == "Open gru"
    toggle.trigger()
    assert key in view.graph_scene.frames and "gru.t2" not in view.graph_scene.nodes  # its steps stay folded
    menu = view.node_menu("gru.weight_hh")
    assert [a.text() for a in menu.actions()][:1] == ["Fold gru into a box"]
    view.fold_all(False)
    assert "gru.t2" in view.graph_scene.nodes and not view.folding.closed


def test_the_layer_view_comes_forward_for_fitting_nodes_and_only_for_models_that_have_them(qtbot, tmp_path):
    settings = QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat)
    w = MainWindow(propscope.open_session("xor"), settings=settings)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    assert w.layer_dock.isHidden()  # xor has nothing for it
    job = w.open_example("cnn")
    with qtbot.waitSignal(job.finished, timeout=30000):
        pass
    assert not w.layer_dock.isHidden()
    s = w.bridge.session
    s.run_to("conv1")
    assert w.layer_view.fits and w.layer_view.isVisible()
    np.testing.assert_array_equal(w.layer_view.page.sections[-1].tiles[0].matrix, s.value("conv1")[0, 0])
    s.run_to("flatten")
    assert not w.layer_view.fits and w.inspector.isVisible()
    w.close()


def test_an_opened_frame_taller_than_the_view_keeps_its_title_in_sight(qtbot):
    """Double-clicking a box opens it and the view goes to its frame: centred where it fits, else its title
    (where a double-click folds it again) a little inside the view's top and left edges."""
    s = propscope.open_session("lstm")
    view = make_view(qtbot, s)
    view.resize(420, 260)
    qtbot.wait(10)
    key = BOX_PREFIX + "lstm"
    view.toggle_fold(key)  # open by default: fold, then open it at 1:1, where it is larger than the view
    view.set_zoom(1.0)
    view.toggle_fold(key)
    frame = view.graph_scene.frames[key].rect
    seen = view.visible_scene_rect()
    assert frame.height() > seen.height() or frame.width() > seen.width()
    assert seen.contains(frame.topLeft() + QPointF(2, 2)), (frame, seen)
    view.resize(4000, 3000)  # room for all of it: centred
    view.toggle_fold(key)
    view.toggle_fold(key)
    frame, seen = view.graph_scene.frames[key].rect, view.visible_scene_rect()
    assert seen.contains(frame), (frame, seen)
    assert abs(frame.center().x() - seen.center().x()) < 2 and abs(frame.center().y() - seen.center().y()) < 2


def test_big_feature_maps_are_drawn_scaled_down_every_one_whole(qtbot):
    """A detector's 160×160 maps (YOLO at 640) in a dock 390 pixels wide: at one pixel per value at least, two and
    a half of the sixteen showed, the rest cut off at the edge without a sign; below a pixel all sixteen fit."""
    from PySide6.QtCore import QRectF

    from propscope.gui.inspect.heat_grid import HeatGrid, Tile

    grid = HeatGrid()
    qtbot.addWidget(grid)
    grid.resize(390, 700)
    maps = np.random.default_rng(0).standard_normal((16, 160, 160))
    grid.set_tiles([Tile(m, f"channel {c}", 3.0) for c, m in enumerate(maps)])
    inside = QRectF(grid.rect()).adjusted(-0.5, -0.5, 0.5, 0.5)
    assert len(grid.placed) == 16
    for placed in grid.placed:
        assert inside.contains(placed.cells), (placed.tile.title, placed.cells)
    assert grid.placed[0].cell < 1.0

"""Rough edges seen on real models in the real main window, each pinned by the model that showed it.

- The breadcrumbs floated over the canvas and covered the title of the frame at the top (Swin-T at 1024×768, and
  in projector mode at 1920×1080): they now sit in a band of their own above the graph; too long for the canvas
  (BERT, six modules deep), each module is named within the one before. The current step's ring, thicker in
  projector mode, reached over the title of the frame around its node: it stays clear of it.
- The layer view took every 4-D value for NCHW: Swin's channels-last (N, H, W, C) values came out as "8 channels
  of 8×96"; they are now C maps of H×W, and resnet18's NCHW values stay as they were.
- The convolution filters' titles ("10←2") elided to "0…" at 1024×768, and a short dock cut tiles off.
- Frames offered to fold and refused (Swin-T's blocks of `features.3`, blocked once and for good); a repeat that
  can never fold (values leave it and come back in) offered to fold in the menu and the breadcrumbs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zoo
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QFontMetricsF, QHelpEvent, QPainter
from PySide6.QtWidgets import QApplication, QToolTip
from test_gui_real_models import Exported

from propscope import cli
from propscope.gui.format import fmt_num
from propscope.gui.main_window import MainWindow

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow,
              pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                        "This plugin does not support raise"),
              pytest.mark.qt_log_level_fail("WARNING")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """Each architecture exported once (`torch.export.save`) with its batch as a data file, as
    test_gui_real_models exports them; skipped where its library is not installed."""
    models = Exported(tmp_path_factory.mktemp("rough_edges"))
    library = {"swin_t": zoo.has_torchvision, "resnet18": zoo.has_torchvision, "bert": zoo.has_transformers}

    def files(name: str) -> tuple[Path, Path]:
        if not library[name]():
            pytest.skip(f"{name} needs a library that is not installed")
        return models.files(name)

    return files


def open_window(qtbot, files: tuple[Path, Path], size: tuple[int, int], projector: bool = False,
                loss: bool = True) -> MainWindow:
    """What `propscope open FILE --data D --loss cross_entropy --size WxH [--projector]` shows; without `loss`,
    what `propscope open FILE` shows: a batch made up for the inputs, forward only."""
    path, data = files
    more = ["--data", str(data), "--loss", "cross_entropy"] if loss else []
    args = cli.build_parser().parse_args(["open", str(path), *more])
    session = cli._open(args)
    window = MainWindow(session, settings=None)  # as for --screenshot: no saved layout read or written
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    if projector:
        window.set_projector(True, full_screen=False)
    settle()
    return window


def settle() -> None:
    for _ in range(3):
        QApplication.processEvents()


# -- 1. the breadcrumbs never cover a frame's title ---------------------------------------------------
def covered_titles(window: MainWindow) -> list[str]:
    """The frames whose title, where it shows in the canvas, lies under the breadcrumbs."""
    canvas, crumbs = window.canvas, window.navigation.breadcrumbs
    if not crumbs.isVisible():
        return []
    shown = canvas.viewport().geometry()  # in the canvas's coordinates, as the crumbs' geometry
    covered = []
    for frame in canvas.graph_scene.frames.values():
        if not frame.isVisible():
            continue
        text = QRectF(frame.text_rect.left(), frame.text_rect.top(), frame.tab_width, frame.text_rect.height())
        title = canvas.mapFromScene(text).boundingRect().translated(canvas.viewport().pos())
        if title.intersected(shown).intersects(crumbs.geometry()):
            covered.append(frame.unit.title)
    return covered


@pytest.mark.parametrize(("size", "projector", "loss"), [((1024, 768), False, False), ((1024, 768), False, True),
                                                       ((1920, 1080), True, False)])
def test_breadcrumbs_never_cover_the_title_of_a_frame(qtbot, exported, size, projector, loss):
    window = open_window(qtbot, exported("swin_t"), size, projector, loss)
    canvas, crumbs = window.canvas, window.navigation.breadcrumbs
    session = window.bridge.session
    band = canvas.viewport().geometry().top()
    for _ in range(12):  # into features.0, then features.1.0's norm and attention: the crumbs grow and change
        session.step()
        settle()
        assert crumbs.isVisible()
        assert covered_titles(window) == []
    assert crumbs.geometry().bottom() < canvas.viewport().geometry().top()  # a band of their own
    assert canvas.viewport().geometry().top() == band  # there from the start: no view resized by a step
    canvas.fit()  # the whole graph, below the band
    settle()
    graph = canvas.mapFromScene(canvas.graph_scene.graph_rect).boundingRect().translated(canvas.viewport().pos())
    assert crumbs.isVisible() and QRect(graph).intersected(crumbs.geometry()).isEmpty()
    window.selection.select(session.graph.inputs[0].name)  # outside every module: no crumbs, the band stays
    settle()
    assert not crumbs.isVisible() and canvas.viewport().geometry().top() == band
    if projector:
        return  # (projector mode's canvas, in big type, has no room for a minimap)
    minimap = window.navigation.minimap  # in the viewport's bottom corner, not a band's height above it
    canvas.center_readably(session.current.node.name)
    settle()
    assert minimap.isVisible() and minimap.parentWidget() is canvas.viewport()
    assert canvas.viewport().rect().contains(minimap.geometry())
    assert canvas.viewport().rect().bottom() - minimap.geometry().bottom() < 20 * canvas.themes.theme.scale
    spot = minimap.geometry()
    canvas.horizontalScrollBar().setValue(canvas.horizontalScrollBar().value() + 150)  # a pan scrolls the
    canvas.verticalScrollBar().setValue(canvas.verticalScrollBar().value() + 20)  # viewport's children too
    settle()
    assert minimap.geometry() == spot


def test_breadcrumbs_too_long_for_the_canvas_name_each_module_within_the_one_before(qtbot, exported):
    """BERT's attention is six modules deep ("model.bert.encoder.layer.1.attention.self"): at 1024×768 every crumb
    was squeezed to "mode…tion". Too long for the canvas, each module is named within the one before, as in a file
    path, and the whole path is in its tooltip; where the whole fits, the whole shows."""
    window = open_window(qtbot, exported("bert"), (1024, 768))
    session = window.bridge.session
    crumbs = window.navigation.breadcrumbs
    deepest = max((n for n in session.graph if not n.is_leaf), key=lambda n: n.module.count("."))
    assert deepest.module.count(".") >= 5
    window.selection.select(deepest.name)
    settle()
    texts = [b.text() for b in crumbs.crumbs]
    assert texts[:3] == ["model", "bert", "encoder"] and texts[-1] == deepest.name, texts
    assert all(b.width() >= b.sizeHint().width() for b in crumbs.crumbs)  # readable: none squeezed
    assert crumbs.width() <= window.canvas.width()
    folding = window.canvas.folding_for_session()
    for button in crumbs.crumbs[:-1]:
        title = folding.units[button.property("unitKey")].title
        assert title.endswith(button.text()) and title in button.toolTip()
    window.resize(1920, 1080)  # room for the whole paths
    settle()
    window.selection.select(session.graph.inputs[0].name)
    window.selection.select(deepest.name)
    settle()
    assert [b.text() for b in crumbs.crumbs][:3] == ["model", "model.bert", "model.bert.encoder"]
    # a (batch, heads, tokens, features) value, 4-D: drawn as maps, and said to be read as NCHW
    heads = next(n for n in session.graph if len(n.shape) == 4 and n.op.name == "transpose")
    window.layer_dock.raise_()
    window.selection.select(heads.name)
    settle()
    assert window.layer_view.page is not None and "(read as batch, channels, h, w)" in window.layer_view.page.headline


@pytest.mark.parametrize(("size", "projector"), [((1024, 768), False), ((1920, 1080), True)])
def test_the_step_ring_never_covers_the_title_of_the_frame_around_it(qtbot, exported, size, projector):
    """In projector mode the current step's ring, thicker with the theme's lines, reached over the title of the
    frame around its node (ResNet-18's `layer1.0` at 1920×1080)."""
    from propscope.gui.canvas.items import ring_width

    window = open_window(qtbot, exported("resnet18"), size, projector)
    canvas, session = window.canvas, window.bridge.session
    scene = canvas.graph_scene
    checked = 0
    for _ in range(12):  # into layer1.0's convolutions and norms, each a box inside three frames
        session.step()
        settle()
        scene = canvas.graph_scene
        key = scene.current_key
        reach = 1.5 * ring_width(canvas.themes.theme)
        ring = scene.node_rect(key).adjusted(-reach, -reach, reach, reach)
        units = scene.folding.units
        inside = units[key].members[0] if key in units else key  # a node of the box, or the node itself
        for frame in scene.frames.values():
            if inside in frame.members:  # a frame around it
                title = QRectF(frame.text_rect.left(), frame.text_rect.top(), frame.tab_width, frame.text_rect.height())
                assert not ring.intersects(title), (key, frame.unit.title)
                checked += 1
    assert checked


# -- 2. the layer view reads channels-last values as channels --------------------------------------------
def layer_page(qtbot, window: MainWindow, name: str):
    window.selection.select(name)
    window.layer_dock.raise_()
    settle()
    view = window.layer_view
    assert view.fits and view.isVisible() and view.node == name
    assert view.page is not None and not view.page.message
    return view, view.page


def click_cell(qtbot, view, tile: int, row: int, col: int) -> None:
    grid = view.grids()[-1]
    qtbot.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.cell_center(tile, row, col).toPoint())
    settle()


def test_the_layer_view_draws_swins_channels_last_values_as_one_map_per_channel(qtbot, exported):
    window = open_window(qtbot, exported("swin_t"), (1280, 800))
    session = window.bridge.session
    graph = session.graph
    session.run_to_end()
    settle()
    # the patch embedding's layer norm, (N, H, W, C) after the permute from the convolution's NCHW, and the
    # first block's output, a residual add of windows reassembled by a reshape from 6-D
    norm = next(n for n in graph if n.op.name == "layer_norm")
    block = next(n for n in graph if n.op.name == "add" and n.module.endswith("features.1.0"))
    for node in (norm, block):
        assert node.shape[3] == 96 and node.shape[1] == node.shape[2]
        view, page = layer_page(qtbot, window, node.name)
        value = np.asarray(session.value(node.name))
        tiles = page.sections[-1].tiles
        assert len(tiles) == 16 and "16 of 96 channels" in page.sections[-1].note  # C maps, not H
        for k in (0, 5, 15):
            np.testing.assert_array_equal(tiles[k].matrix, value[0, :, :, k])  # each of H × W
        assert "channels last" in page.headline
        click_cell(qtbot, view, 5, 2, 3)  # a pixel of channel 5 selects that element of the (N, H, W, C) value
        assert window.selection.node == node.name and window.selection.index == (0, 2, 3, 5)
        assert view.page is not None and view.page.sections[-1].tiles[5].marks == [(2, 3, 3, 4)]  # outlined there


def test_the_layer_view_keeps_resnets_nchw_values_as_they_were(qtbot, exported):
    window = open_window(qtbot, exported("resnet18"), (1280, 800))
    session = window.bridge.session
    session.run_to_end()
    settle()
    for node in (next(n for n in session.graph if n.op.name == op) for op in ("batch_norm", "relu", "add")):
        view, page = layer_page(qtbot, window, node.name)
        value = np.asarray(session.value(node.name))
        tiles = page.sections[-1].tiles
        assert "channels last" not in page.headline and f"of {node.shape[1]} channels" in page.sections[-1].note
        np.testing.assert_array_equal(tiles[3].matrix, value[0, 3])
        click_cell(qtbot, view, 3, 1, 2)
        assert window.selection.index == (0, 3, 1, 2)


def test_channels_last_is_read_there_and_back_as_convnext_permutes():
    """ConvNeXt's block: a depthwise convolution (NCHW), a permute to (N, H, W, C), a layer norm and a linear over
    the channels, a permute back, and the residual add with the block's input. A 4-D input nothing decides stays
    NCHW, and a matmul over 4-D values (attention scores) is not read as channels."""
    from propscope.graph.ir import Graph
    from propscope.gui.inspect.channels import CHANNELS_LAST, NCHW, channel_axis

    g = Graph("convnext block")
    x = g.input("x", (2, 8, 5, 5))
    w = g.parameter("dw.weight", (8, 1, 3, 3))
    y = g.add("conv2d", x, w, name="dw", attrs={"padding": 1, "groups": 8})
    y = g.add("transpose", y, name="to_last", attrs={"axes": (0, 2, 3, 1)})
    gamma, beta = g.parameter("norm.weight", (8,)), g.parameter("norm.bias", (8,))
    y = g.add("layer_norm", y, gamma, beta, name="norm", attrs={"normalized_shape": (8,)})
    y = g.add("linear", y, g.parameter("pw.weight", (8, 8)), g.parameter("pw.bias", (8,)), name="pw",
              attrs={"transpose_weight": True})
    y = g.add("gelu", y, name="act")
    y = g.add("transpose", y, name="to_first", attrs={"axes": (0, 3, 1, 2)})
    out = g.add("add", x, y, name="residual")
    scores = g.add("matmul", y, g.add("transpose", y, name="yt", attrs={"axes": (0, 1, 3, 2)}), name="scores")
    g.set_outputs(out, scores)
    axes = {n.name: channel_axis(g, n) for n in g if len(n.shape) == 4 and not n.is_leaf}
    assert axes == {"dw": NCHW, "to_last": CHANNELS_LAST, "norm": CHANNELS_LAST, "pw": CHANNELS_LAST,
                    "act": CHANNELS_LAST, "to_first": NCHW, "residual": NCHW, "yt": NCHW, "scores": NCHW}
    lone = Graph("a norm over the last axis of a 4-D value nothing else decides")
    v = lone.input("v", (2, 4, 4, 6))
    lone.set_outputs(lone.add("layer_norm", v, lone.parameter("w", (6,)), lone.parameter("b", (6,)), name="ln",
                              attrs={"normalized_shape": (6,)}))
    assert channel_axis(lone, lone["ln"]) == CHANNELS_LAST and channel_axis(lone, v) == CHANNELS_LAST


# -- 3. the filters' titles are legible at 1024×768 -----------------------------------------------------------
def drawn_texts(monkeypatch, grid) -> list[str]:
    """The texts the grid paints (titles, labels, numbers), recorded as it paints itself once."""
    texts: list[str] = []
    draw = QPainter.drawText

    def record(painter, *args):
        texts.append(next(a for a in args if isinstance(a, str)))
        return draw(painter, *args)

    with monkeypatch.context() as patch:
        patch.setattr(QPainter, "drawText", record)
        grid.grab()
    return texts


def check_titles(monkeypatch, grid) -> list[str]:
    """The titles the grid writes: each whole (its title or its short form), never elided, in its room in one
    font of at least `SMALLEST_TITLE` pixels; all of them or none (a title here and there reads as a pattern)."""
    drawn = drawn_texts(monkeypatch, grid)
    assert not [t for t in drawn if "…" in t]
    from propscope.gui.inspect.heat_grid import SMALLEST_TITLE

    fm = QFontMetricsF(grid.fitted_title_font)
    assert grid.fitted_title_font.pixelSize() >= SMALLEST_TITLE * grid.theme.scale
    width = max(grid.width() - 2, 50)
    labels = [p.shown_title for p in grid.placed]
    for placed in grid.placed:
        if placed.shown_title:
            assert placed.shown_title in (placed.tile.title, placed.tile.short) and placed.shown_title in drawn
            assert fm.horizontalAdvance(placed.shown_title) <= grid.title_room(placed, width)
            assert placed.title.left() + fm.horizontalAdvance(placed.shown_title) <= grid.width()  # not cut by the edge
    assert all(labels) or not any(labels)
    return labels


def test_filter_titles_are_written_whole_at_1024x768(qtbot, monkeypatch, exported):
    window = open_window(qtbot, exported("resnet18"), (1024, 768))
    session = window.bridge.session
    session.run_to_end()
    settle()
    convs = [n for n in session.graph if n.op.name == "conv2d"]
    # conv1: 7×7 kernels of 3 inputs ("10←2"); layer1.0.conv1: 3×3 kernels of 64 inputs, 16 pixels wide here
    for conv, kernel in ((convs[0], 7), (convs[1], 3)):
        view, page = layer_page(qtbot, window, conv.name)
        filters = view.grids()[1]
        assert [t.matrix.shape for t in filters.tiles] == [(kernel, kernel)] * 32
        labels = check_titles(monkeypatch, filters)
        assert all(labels), labels  # legible: not "0…", and not left out
        for grid in (view.grids()[0], view.grids()[2]):
            check_titles(monkeypatch, grid)
        if kernel == 3:  # every one of out 0: the section says so once, each tile its input channel
            assert labels == [str(i) for i in range(32)] and "out 0 ← in 0…31" in page.sections[1].title
        tip = filters.tooltip_at(filters.cell_center(10, 1, 1))  # the whole title, and the number under the mouse
        out, inp = (0, 10) if kernel == 3 else (3, 1)
        number = fmt_num(float(np.asarray(session.value(conv.inputs[1].name))[out, inp, 1, 1]))
        assert tip == f"{out}←{inp}\n[1, 1] = {number}"
        output = view.grids()[-1]
        qtbot.mouseClick(output, Qt.MouseButton.LeftButton, pos=output.cell_center(3, 0, 0).toPoint())
        settle()
        assert view.page is not None  # output channel 3's filters outlined, where they are shown
        outlined = [k for k, t in enumerate(view.page.sections[1].tiles) if t.outlined]
        assert outlined == ([] if kernel == 3 else [9, 10, 11])


# -- 4. a frame that looks foldable folds; one that cannot says why ------------------------------------------
def title_spot(frame) -> QPointF:
    """A point on the frame's title row, clear of the frames inside it."""
    return QPointF(frame.text_rect.left() + 4, frame.header_rect().center().y())


def frame_tooltip(canvas, frame) -> str:
    spot = title_spot(frame)
    canvas.centerOn(spot)
    settle()
    pos = canvas.mapFromScene(spot)
    hit = canvas.graph_scene.frame_at_point(spot)
    assert canvas.node_at(QPointF(pos)) is None and hit is frame, (frame.unit.title, hit and hit.unit.title)
    QApplication.sendEvent(canvas.viewport(), QHelpEvent(QEvent.Type.ToolTip, pos, canvas.viewport().mapToGlobal(pos)))
    text = QToolTip.text()
    QToolTip.hideText()
    return text


def test_every_frame_that_offers_to_fold_folds_and_one_that_cannot_says_why(qtbot, exported):
    """Swin-T opens with the blocks of `features.3` blocked (folded inside the repeat around them, they made a
    loop through it): their frames offered a double-click to fold, which was refused with "values leave it and
    come back in" long after that repeat was open. And a repeat that can never fold (the MLP's two Linears, with
    the GELU between them outside) offered to fold in the menu and the breadcrumbs."""
    window = open_window(qtbot, exported("swin_t"), (1280, 800), loss=False)  # `propscope open swin_t.pt2`
    canvas = window.canvas
    folding = canvas.folding_for_session()
    frames = canvas.graph_scene.frames
    for key, frame in frames.items():  # each frame's title row is its own: a frame inside starts below it
        outer = folding.units[key].parent
        while outer is not None and outer not in frames:
            outer = folding.units[outer].parent
        if outer is not None:
            assert frame.rect.top() >= frames[outer].header_rect().bottom(), (frame.unit.title, outer)
    by_title = sorted(frames, key=lambda k: folding.units[k].title)
    stale = [k for k in by_title if k in folding.blocked]
    assert stale  # the case this test is about
    messages: list[str] = []
    canvas.message.connect(messages.append)
    for key in stale[:4] + [k for k in by_title if k not in stale][:2]:  # (each fold lays Swin-T out again)
        frame = canvas.graph_scene.frames[key]
        offered = "Double-click the frame to fold it" in frame_tooltip(canvas, frame)
        menu = canvas.node_menu(key)
        action = next(a for a in menu.actions() if a.objectName() == "toggleFold")
        assert action.isEnabled() == offered, (folding.units[key].title, action.toolTip())
        menu.deleteLater()
        spot = canvas.mapFromScene(title_spot(frame))
        qtbot.mouseDClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=spot)
        settle()
        assert (key in folding.closed) == offered, (folding.units[key].title, messages[-1:])
        if offered:  # open it again, as it was
            canvas.toggle_fold(key)
            settle()
        else:
            assert messages and messages[-1].startswith(folding.units[key].title) and "cannot fold" in messages[-1]
    repeat = next(k for k, u in folding.units.items() if u.title == "features.1.0.mlp.0 … 3")
    gelu = folding.loop_out(repeat)
    assert gelu is not None and session_node(window, gelu).op.name == "gelu"
    inside = folding.units[repeat].members[-1]
    canvas.reveal(inside)
    settle()
    menu = canvas.node_menu(inside)
    fold = next(a for a in menu.actions() if a.text() == f"Fold {folding.units[repeat].title} into a box")
    assert not fold.isEnabled() and fold.toolTip().endswith(f"cannot fold: values leave it through {gelu} "
                                                            "and come back in")
    menu.deleteLater()
    crumbs = window.navigation.breadcrumbs
    crumb = next(b for b in crumbs.crumbs if b.property("unitKey") == repeat)
    assert crumbs.tooltip_of(crumb) == fold.toolTip()
    open_crumb = next(b for b in crumbs.crumbs if b.property("unitKey") == folding.units[repeat].parent)
    assert crumbs.tooltip_of(open_crumb) == f"Fold {open_crumb.text()}"  # a module that folds: as before


def session_node(window: MainWindow, name: str):
    return window.bridge.session.graph[name]


def test_no_tile_is_cut_off_when_the_layer_view_is_short(qtbot, exported):
    """At 1024×768 the dock shares about 500 pixels between a 32×32 input, 32 filters and 16 maps: cells of
    3 pixels at least cut off the input's lower rows and the third row of filters. Smaller cells show them all."""
    window = open_window(qtbot, exported("resnet18"), (1024, 768))
    session = window.bridge.session
    session.run_to_end()
    settle()
    conv = next(n for n in session.graph if n.op.name == "conv2d")
    view, _page = layer_page(qtbot, window, conv.name)
    for grid in view.grids():
        assert grid.placed
        for placed in grid.placed:
            inside = QRectF(grid.rect()).adjusted(-0.5, -0.5, 0.5, 0.5)  # (half a pixel for rounding)
            assert inside.contains(placed.cells), (placed.tile.title, placed.cells, grid.rect())

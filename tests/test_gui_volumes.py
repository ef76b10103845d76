"""Volumes (N, C, D, H, W) in the layer view of the real main window: the 3-D U-Net of `zoo` (Conv3d, max_pool3d,
ConvTranspose3d, a permute to channels-last at the end), exported with `torch.export` and opened as
`propscope open unet3d.pt2 --data D --loss cross_entropy --dtype float64`.

Before, the layer view had nothing for a 5-D value (the dock did not even come up for this model). Now a volume is
drawn as one map per channel at one depth slice, chosen with the header's depth box (from the keyboard too) and kept
while stepping through values of the same depth; 3-D filters are drawn one tile per depth tap, and a click on a
cell selects that (n, c, d, h, w) element.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from test_gui_real_models import Exported, open_window, settle

from propscope.graph.ir import Graph
from propscope.gui.inspect.layer_view import CONV, depth_taps, view_kind
from propscope.gui.main_window import MainWindow

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow,
              pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                        "This plugin does not support raise"),
              pytest.mark.qt_log_level_fail("WARNING")]


@pytest.fixture(scope="module")
def unet3d(tmp_path_factory: pytest.TempPathFactory):
    return Exported(tmp_path_factory.mktemp("volumes")).files("unet3d")


@pytest.fixture
def window(qtbot, tmp_path, unet3d) -> MainWindow:
    w = open_window(qtbot, tmp_path, *unet3d)
    yield w
    w.close()


def first(window: MainWindow, op: str, nth: int = 0) -> str:
    return [n.name for n in window.bridge.session.graph if n.op.name == op][nth]


def shown(qtbot, window: MainWindow, name: str):
    """Select `name` as a click on the canvas does and bring the layer view forward."""
    window.selection.select(name)
    window.layer_dock.raise_()
    settle()
    view = window.layer_view
    assert view.fits and view.isVisible() and view.node == name
    assert view.page is not None and view.page.kind == CONV and not view.page.message, view.page
    return view


def click_cell(qtbot, grid, tile: int, row: int, col: int) -> None:
    qtbot.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.cell_center(tile, row, col).toPoint())
    settle()


def test_only_what_the_graph_shows_to_be_a_volume_gets_depth_slices():
    """Llama's grouped-query attention expands its keys to (batch, kv heads, repeats, tokens, features): 5-D, but
    nothing there is a depth, a height or a channel."""
    g = Graph("volumes and not")
    keys = g.input("keys", (2, 2, 8, 4))
    repeated = g.add("expand", g.add("reshape", keys, name="unsqueeze", attrs={"shape": (2, 2, 1, 8, 4)}),
                     name="expand", attrs={"shape": (2, 2, 2, 8, 4)})
    clip = g.input("clip", (2, 3, 4, 8, 8))
    weight = g.parameter("conv.weight", (5, 3, 3, 3, 3), module="conv")
    conv = g.add("conv3d", clip, weight, name="conv", attrs={"padding": 1}, module="conv")
    g.set_outputs(repeated, conv)
    assert view_kind(g, repeated) is None and view_kind(g, g["unsqueeze"]) is None
    assert view_kind(g, conv) == view_kind(g, clip) == view_kind(g, weight) == CONV


def test_a_volume_is_drawn_one_depth_slice_at_a_time_chosen_from_the_keyboard(qtbot, window):
    s = window.bridge.session
    assert not window.layer_dock.isHidden()  # offered: the model has 3-D convolutions
    s.run_to_end()
    relu = first(window, "relu")
    view = shown(qtbot, window, relu)
    value = np.asarray(s.value(relu))
    assert value.shape == (2, 4, 8, 8, 8)
    box = view.depth_box
    assert box.isVisible() and (box.minimum(), box.maximum()) == (0, 7)
    assert "(batch, channels, depth, h, w)" in view.page.headline
    tiles = view.page.sections[-1].tiles
    assert len(tiles) == 4
    for c, tile in enumerate(tiles):
        np.testing.assert_array_equal(tile.matrix, value[0, c, box.value()])
    box.setFocus()  # Tab or a click gives it the focus: then ↑ and PageUp move through the volume
    assert box.focusPolicy() == Qt.FocusPolicy.StrongFocus
    start = box.value()
    qtbot.keyClick(box, Qt.Key.Key_Up)
    settle()
    assert box.value() == start + 1 and view.page.depth == start + 1
    cursor = s.cursor
    for key, at in ((Qt.Key.Key_Left, cursor - 1), (Qt.Key.Key_PageUp, cursor - 2), (Qt.Key.Key_PageDown, cursor - 1),
                    (Qt.Key.Key_Right, cursor)):
        qtbot.keyClick(box, key)  # the step keys still step (a spin box would take them for itself)
        settle()
        assert s.cursor == at and box.hasFocus() and box.value() == start + 1, key
    window.selection.select(relu)  # stepping selected the step's node
    settle()
    np.testing.assert_array_equal(view.page.sections[-1].tiles[2].matrix, value[0, 2, start + 1])
    view.sample.setValue(1)
    settle()
    np.testing.assert_array_equal(view.page.sections[-1].tiles[2].matrix, value[1, 2, start + 1])
    # a click on a cell selects that element of the volume, at the slice shown, and outlines it
    click_cell(qtbot, view.grids()[-1], 2, 3, 5)
    assert window.selection.node == relu and window.selection.index == (1, 2, start + 1, 3, 5)
    assert view.page.sections[-1].tiles[2].marks == [(3, 5, 4, 6)]
    assert window.inspector.header.text().startswith(f"<b>{relu}</b>")
    # an element chosen elsewhere (the inspector, Explain) brings its own slice
    window.selection.select(relu, (1, 1, 6, 2, 2))
    settle()
    assert box.value() == 6 and view.page.sections[-1].tiles[1].marks == [(2, 2, 3, 3)]
    view.mode.setCurrentIndex(1)  # the gradients, slice by slice as the values
    view.mode.activated.emit(1)
    settle()
    assert view.page.sections[-1].title.startswith(f"∂L/∂{relu} · sample 1 · depth 6")
    np.testing.assert_array_equal(view.page.sections[-1].tiles[3].matrix, np.asarray(s.grad(relu))[1, 3, 6])


def test_the_slice_is_kept_while_stepping_through_values_of_the_same_depth(qtbot, window):
    s = window.bridge.session
    graph = s.graph
    norm = first(window, "batch_norm")
    s.run_to(norm)
    window.layer_dock.raise_()
    settle()
    view = window.layer_view
    assert view.node == norm and view.depth_box.isVisible()
    view.depth_box.setValue(5)
    settle()
    seen = []
    for _ in range(4):  # relu (depth 8), max_pool3d (4), the next conv3d (4), its batch norm (4)
        qtbot.keyClick(window, Qt.Key.Key_F10)
        settle()
        name = s.current.node.name
        assert window.selection.node == name and view.node == name
        seen.append((graph[name].op.name, view.page.depths, view.depth_box.value()))
        np.testing.assert_array_equal(view.page.sections[-1].tiles[0].matrix,
                                      np.asarray(s.value(name))[0, 0, view.depth_box.value()])
    # kept at 5 of 8; then the same place in a volume half as deep (slice 5 of 8 lies in slice 2 of 4), kept there
    assert seen == [("relu", 8, 5), ("max_pool3d", 4, 2), ("conv3d", 4, 2), ("batch_norm", 4, 2)]
    dec1 = [n.name for n in graph if n.op.name == "relu" and n.shape[2] == 8][-1]
    s.run_to(dec1)  # back up to a depth of 8 in the decoder: the slice found again
    settle()
    assert view.page.depths == 8 and view.depth_box.value() == 5


def test_a_3d_convolution_shows_its_filters_per_depth_tap_and_the_slices_its_windows_read(qtbot, window):
    s = window.bridge.session
    conv = first(window, "conv3d", 1)  # enc2: 4 → 8 channels, 3×3×3, padding 1, on a 4×4×4 volume
    s.run_to_end()
    node = s.graph[conv]
    view = shown(qtbot, window, conv)
    x, w, out = (np.asarray(s.value(n)) for n in (node.inputs[0].name, node.inputs[1].name, conv))
    view.depth_box.setValue(0)
    settle()
    inputs, filters, outputs = view.page.sections
    assert depth_taps(node, 0) == [-1, 0, 1]  # the first tap reads the padding in front of the volume
    assert inputs.group == filters.group == 3
    assert [t.title for t in inputs.tiles[:3]] == ["in 0 pad", "in 0 d0", "in 0 d1"]
    assert not inputs.tiles[0].matrix.any()  # zero padding
    np.testing.assert_array_equal(inputs.tiles[5].matrix, x[0, 1, 1])
    assert len(filters.tiles) == 30 and [t.title for t in filters.tiles[3:6]] == ["0←1 d0", "0←1 d1", "0←1 d2"]
    np.testing.assert_array_equal(filters.tiles[5].matrix, w[0, 1, 2])
    np.testing.assert_array_equal(outputs.tiles[7].matrix, out[0, 7, 0])
    filters_grid = view.grids()[1]  # a row holds whole kernels: each starts with its tap d0
    rows: dict[float, int] = {}
    for placed in filters_grid.placed:
        rows[placed.title.top()] = rows.get(placed.title.top(), 0) + 1
    assert len(rows) > 0 and all(k % 3 == 0 for k in list(rows.values())[:-1]), rows
    click_cell(qtbot, view.grids()[-1], 0, 2, 3)  # output channel 0, depth 0, row 2, column 3
    assert window.selection.index == (0, 0, 0, 2, 3)
    inputs, filters, outputs = view.page.sections
    assert all(t.marks == [(1, 2, 4, 5)] for t in inputs.tiles)  # rows 1…3, columns 2…4 of every input channel
    assert [t.outlined for t in filters.tiles] == [True] * 12 + [False] * 18  # out 0's kernels: 4 inputs × 3 taps
    assert outputs.tiles[0].marks == [(2, 3, 3, 4)]


def test_transposed_filters_and_a_channels_last_volume(qtbot, window):
    s = window.bridge.session
    s.run_to_end()
    up = s.graph[first(window, "conv_transpose3d")]  # up2: ConvTranspose3d(8, 8, 2, stride=2)
    weight = up.inputs[1].name
    view = shown(qtbot, window, weight)
    assert "(in, out, depth, height, width)" in view.page.headline and not view.depth_box.isVisible()
    (section,) = view.page.sections
    assert section.group == 2 and [t.title for t in section.tiles[:3]] == ["0→0 d0", "0→0 d1", "0→1 d0"]
    np.testing.assert_array_equal(section.tiles[3].matrix, np.asarray(s.value(weight))[0, 1, 1])
    # the head's logits permuted to (N, D, H, W, C) before the reshape to one row per voxel: C maps of H×W
    last = next(n for n in s.graph if n.op.name == "transpose" and len(n.shape) == 5)
    view = shown(qtbot, window, last.name)
    assert last.shape == (2, 8, 8, 8, 3) and "channels last" in view.page.headline
    value = np.asarray(s.value(last.name))
    depth = view.depth_box.value()
    tiles = view.page.sections[-1].tiles
    assert len(tiles) == 3
    np.testing.assert_array_equal(tiles[2].matrix, value[0, depth, :, :, 2])
    click_cell(qtbot, view.grids()[-1], 2, 4, 1)
    assert window.selection.index == (0, depth, 4, 1, 2)  # (n, d, h, w, c): the node's own axes
    assert view.page.sections[-1].tiles[2].marks == [(4, 1, 5, 2)]


def test_a_1024_wide_window_stays_1024_wide_through_every_page(qtbot, window):
    """The layer view's long section titles ("enc2.0.weight (filters: out ← in, each as its 3 depth taps…") wrap
    instead of widening the dock: at a projector's 1024×768 the window used to grow to 1,090 pixels on the 3-D
    U-Net's convolutions, past the screen's edge."""
    window.resize(1024, 768)
    settle()
    window.layer_dock.raise_()
    s = window.bridge.session
    for step in range(len(s.steps)):
        s.seek(step)
        settle()
        assert window.width() == 1024, (step, window.layer_view.node, window.layer_view.minimumSizeHint().width())

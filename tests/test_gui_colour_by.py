"""View ▸ Colour nodes by, in the real main window driven by keys: the colours follow the numbers (gradient RMS,
value RMS, NaN/inf) on nodes, folded boxes, the overview and the legend; and the model under it, without Qt."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import zoo
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QKeySequence
from PySide6.QtWidgets import QLineEdit, QWidget

import propscope
from propscope.backends import get_backend
from propscope.debugger import Session
from propscope.debugger.node_numbers import (
    BAD,
    CARRIED,
    DISAGREE,
    GRAD,
    LEVELS,
    NEUTRAL,
    NEVER,
    NO_NUMBER,
    NONFINITE,
    ORIGIN,
    VALUE,
    NodeNumbers,
    tensor_size,
)
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.gui.canvas.colour_by import COMPACT_ABOVE, CYCLE_KEY, palette_for
from propscope.gui.canvas.folding import Folding
from propscope.gui.help import shortcut_rows
from propscope.gui.main_window import MainWindow

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                     "This plugin does not support raise")]


def block_chain(blocks: int, nan_block: int | None = None) -> Model:
    """Blocks of W, b, linear, tanh, add (5 nodes each) after an input; block `nan_block`'s weight holds a NaN."""
    g = Graph(f"blocks{blocks}")
    h = g.input("x", (2, 4))
    arrays = {}
    for k in range(blocks):
        m = f"blocks.{k}"
        w, b = g.parameter(f"{m}.weight", (4, 4), module=m), g.parameter(f"{m}.bias", (4,), module=m)
        arrays[w.name], arrays[b.name] = np.eye(4) * 0.5, np.zeros(4)
        if k == nan_block:
            arrays[w.name][1, 2] = np.nan
        z = g.add("linear", h, w, b, name=f"{m}.linear", module=m)
        a = g.add("tanh", z, name=f"{m}.tanh", module=m)
        h = g.add("add", a, h, name=f"{m}.add", module=m)
    g.set_outputs(h)
    return Model(g, arrays, batch={"x": np.ones((2, 4)), "y": np.zeros((2, 4))}, loss="mse")


def show(qtbot: Any, session: Session, folded: bool | None = None, size: tuple[int, int] = (1200, 800)) -> MainWindow:
    window = MainWindow(session)
    if folded is not None:
        folding = Folding.of(session.graph, None if folded else ())
        window.canvas.set_layout(session.graph, folding.layout(), folding)
        window.canvas.rebuild()
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)  # window shortcuts need the active window
    return window


def press(qtbot: Any, window: MainWindow, key: Qt.Key) -> None:
    qtbot.keyClick(window, key)
    # End on a real network runs a slice at a time between events (gui/actions.SlicedRun): wait until it is there
    qtbot.waitUntil(lambda: not window.debug.sliced.running, timeout=60_000)


def cycle_to(qtbot: Any, window: MainWindow, mode: str | None) -> None:
    """Press C until the window colours by `mode`."""
    for _ in range(6):
        if window.colour_by.mode == mode:
            return
        press(qtbot, window, Qt.Key.Key_C)
    assert window.colour_by.mode == mode


def rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(np.asarray(a, dtype=np.float64)))))


# -- the model, without Qt --------------------------------------------------------------------------
def test_numbers_follow_the_cursor_step_by_step_as_when_read_whole() -> None:
    s = propscope.open_session("xor")
    stepped = NodeNumbers(s)
    stepped.set_mode(NONFINITE)  # keeps values and gradients both
    for _ in range(len(s.steps)):
        s.step()
        stepped.follow()
    whole = NodeNumbers(s)
    whole.set_mode(NONFINITE)
    assert np.array_equal(stepped.values, whole.values, equal_nan=True)
    assert np.array_equal(stepped.grads, whole.grads, equal_nan=True)
    for name, v, g in zip(whole.names, whole.values, whole.grads, strict=True):
        assert v == pytest.approx(rms(s.value(name)))
        assert math.isnan(g) if s.grad(name) is None else g == pytest.approx(rms(s.grad(name)))
    s.seek(s.n_forward)  # back to the end of the forward pass: only the loss's own gradient (ones) is complete
    stepped.follow()
    assert [n for n, g in zip(stepped.names, stepped.grads, strict=True) if not math.isnan(g)] == ["loss"]
    s.reset()
    stepped.follow()
    assert np.isnan(stepped.grads).all()
    assert all(math.isnan(v) == (not s.graph[n].is_leaf) for n, v in zip(stepped.names, stepped.values, strict=True))


def test_a_comparison_shows_only_what_it_compared_and_only_while_it_holds() -> None:
    s = propscope.open_session("xor")
    s.run_to_end()
    numbers = NodeNumbers(s)
    numbers.set_disagreement({name: 1e-16 for name in numbers.names if name != "loss"})
    numbers.set_mode(DISAGREE)
    assert (numbers.codes() >= 0).sum() == len(numbers.names) - 1 and numbers.never().sum() == 1
    s.reset()  # Home: the nodes not computed at the cursor show nothing of it
    numbers.follow()
    computed = np.array([s.graph[n].is_leaf for n in numbers.names])
    assert (numbers.codes()[computed & ~numbers.never()] >= 0).all()
    assert (numbers.codes()[~computed & ~numbers.never()] == NO_NUMBER).all()
    s.set_params({name: np.asarray(v) * 2 for name, v in s.params.items()})  # other weights: another trace
    numbers.follow()
    assert numbers.disagreement is None and (numbers.codes() == NEVER).all()  # not compared: drawn by kind


def test_tensor_size_counts_nonfinite_entries_and_survives_float32_overflow() -> None:
    size = tensor_size(np.array([3.0, np.nan, -np.inf, 4.0]))
    assert size is not None and size.nonfinite == 2 and size.rms == pytest.approx(math.sqrt(25 / 4))
    big = tensor_size(np.full(4, 3e30, dtype=np.float32))  # its square overflows float32
    assert big is not None and big.nonfinite == 0 and big.rms == pytest.approx(3e30, rel=1e-6)
    assert tensor_size(np.zeros(0)) is None


# -- the window ---------------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.skipif(not zoo.has_torchvision(), reason="needs torchvision")
def test_resnet_coloured_by_gradient_size_follows_the_rms_order_and_the_legend_its_extremes(qtbot: Any) -> None:
    window = show(qtbot, propscope.open_session("torchvision:resnet18@32"))
    s = window.bridge.session
    press(qtbot, window, Qt.Key.Key_End)
    assert s.at_end
    cycle_to(qtbot, window, GRAD)
    window.canvas.fold_all(False)
    scene = window.canvas.graph_scene
    scene.ensure_items(None)
    palette = palette_for(window.themes.theme).colors
    grads = {n.name: s.grad(n.name) for n in s.graph.nodes}
    # neither the labels (no gradient reaches them) nor the loss's own ∂L/∂L = 1, which would top every scale
    left_out = {"y", s.loss_node.name}
    measured = {name: rms(g) for name, g in grads.items() if g is not None and name in scene.nodes
                and name not in left_out}
    assert len(measured) > 100
    assert all(int(scene.key_codes[scene._index[name]]) == NEVER for name in left_out)  # drawn by kind
    assert all(scene.nodes[name].tint is None and not scene.nodes[name].tint_washed for name in left_out)
    order = sorted(measured, key=measured.__getitem__)
    codes = [int(scene.key_codes[scene._index[name]]) for name in order]
    assert codes == sorted(codes) and codes[0] == 0 and codes[-1] == LEVELS - 1  # the ramp, in RMS order
    for name in order:
        assert scene.nodes[name].tint == palette[int(scene.key_codes[scene._index[name]])]
    legend = window.colour_by.legend
    low, high = legend.ends
    assert high == pytest.approx(max(measured.values()))
    assert low == pytest.approx(max(min(v for v in measured.values() if v > 0), high * 1e-12))
    assert legend.isVisible() and legend.end_texts[1] == f"{high:.2g}".replace("e+0", "e").replace("e-0", "e-")
    name = order[0]
    assert scene.colour_note(name) == f"∇ RMS {measured[name]:.3g}"
    cycle_to(qtbot, window, None)
    assert not legend.isVisible() and all(item.tint is None for item in scene.nodes.values())


def test_a_5000_node_chain_switches_modes_folded_and_unfolded_at_fitted_and_1_to_1_zoom(qtbot: Any) -> None:
    window = show(qtbot, Session(block_chain(1000), get_backend("numpy")), folded=True)
    s, canvas = window.bridge.session, window.canvas
    assert len(s.graph.nodes) > 5000
    s.seek(s.n_forward + 40)
    for fold in (True, False):
        canvas.fold_all(fold)
        for zoom in ("fitted", "1:1"):
            if zoom == "fitted":
                canvas.fit()
            else:
                canvas.set_zoom(1.0)
                canvas.go_to_current()
            for _ in range(5):  # none, gradient, value, non-finite (backends: not compared), back to none
                press(qtbot, window, Qt.Key.Key_C)
                press(qtbot, window, Qt.Key.Key_Right)
                canvas.viewport().repaint()
                window.navigation.minimap.invalidate()
                window.navigation.minimap.repaint()
            if not fold:  # 5,000 nodes fitted: the overview draws them; folded, one box is readable when fitted
                assert canvas.graph_scene.overview.isVisible() == (zoom == "fitted")
    cycle_to(qtbot, window, VALUE)
    canvas.fit()
    scene = canvas.graph_scene
    coded = scene.key_codes
    labels = np.array([n == "y" for n in scene.names])  # the labels are no value of the network: drawn by kind
    assert coded is not None and (coded[~labels] >= 0).all() and (coded[labels] == NEVER).all()  # all the rest have
    press(qtbot, window, Qt.Key.Key_Home)  # back to the start: only the leaves have one
    leaves = np.array([s.graph[n].is_leaf for n in scene.names]) & ~labels
    assert (scene.key_codes[leaves] >= 0).all() and (scene.key_codes[~leaves & ~labels] == NO_NUMBER).all()


def test_a_nan_weight_paints_the_first_nonfinite_node_and_its_box_magenta(qtbot: Any) -> None:
    window = show(qtbot, Session(block_chain(12, nan_block=5), get_backend("numpy")), folded=True)
    s, canvas = window.bridge.session, window.canvas
    press(qtbot, window, Qt.Key.Key_End)
    cycle_to(qtbot, window, NONFINITE)
    magenta = QColor(255, 0, 255)
    first = s.trace.first_nonfinite
    assert first is not None and first[1].name == "blocks.5.linear"
    canvas.fold_all(True)
    scene = canvas.graph_scene
    box = scene.key_of("blocks.5.linear")
    assert box in scene.folding.units
    assert scene.key_codes[scene._index[box]] == ORIGIN  # it holds where the NaN starts: the full colour
    assert scene.nodes[box].tint == magenta
    carried = palette_for(window.themes.theme).carried
    assert carried != magenta
    # the box names where the NaN began: the weight (the first step to make one is blocks.5.linear's)
    assert scene.colour_note(box).startswith("Coloured by blocks.5.weight") and "NaN" in scene.colour_note(box)
    canvas.fold_all(False)
    scene = canvas.graph_scene
    scene.ensure_items(None)
    s.seek(s.n_forward)  # the forward pass only: the NaN begins at block 5

    def code(name: str) -> int:
        return int(scene.key_codes[scene._index[name]])

    # the weight holding the NaN is where it starts; the linear that reads it, and what follows, carry it on
    assert (code("blocks.4.linear"), code("blocks.5.weight"), code("blocks.5.linear"), code("blocks.11.add")) == \
        (NEUTRAL, ORIGIN, CARRIED, CARRIED)
    press(qtbot, window, Qt.Key.Key_End)  # and the backward pass carries it into every gradient before it
    assert code("blocks.4.linear") == CARRIED and code("blocks.5.weight") == ORIGIN
    assert scene.nodes["blocks.5.weight"].tint == magenta and scene.nodes["blocks.5.linear"].tint == carried
    assert "NaN" in scene.colour_note("blocks.5.linear")
    assert window.colour_by.numbers.describe("blocks.5.weight").endswith("the NaN/inf starts here")
    canvas.fit()  # the overview marks where the NaN starts larger than a node at this zoom: ≥ 7 px, every 2nd read
    image = canvas.viewport().grab().toImage()
    pixels = [image.pixelColor(x, y) for x in range(0, image.width(), 2) for y in range(0, image.height(), 2)]
    assert sum(p == magenta for p in pixels) >= 9
    cycle_to(qtbot, window, GRAD)  # the gradient mode shows NaN in magenta too
    assert scene.key_codes[scene._index["blocks.5.weight"]] == BAD


def test_legend_reads_in_projector_mode_at_1024x768(qtbot: Any) -> None:
    window = show(qtbot, propscope.open_session("xor"), size=(1024, 768))
    press(qtbot, window, Qt.Key.Key_End)
    cycle_to(qtbot, window, GRAD)
    legend = window.colour_by.legend
    normal = legend.width()
    window.set_projector(True, full_screen=False)
    legend = window.colour_by.legend
    view = window.canvas.viewport().geometry()
    # on one line over the short canvas, in the projector's fonts: the graph stays in sight
    assert legend.isVisible() and legend.compact() and legend.height() <= COMPACT_ABOVE * view.height()
    assert legend.height() >= window.themes.theme.px(11) and legend.width() > normal * 0.8
    # in the breadcrumbs' band above the graph, beside the crumbs: it covers no node
    assert not legend.geometry().intersects(view) and legend.geometry().top() >= 0
    assert legend.geometry().right() <= view.right() + 1 and legend.width() <= view.width()
    crumbs = window.canvas.findChild(QWidget, "breadcrumbs")
    assert not crumbs.isVisible() or crumbs.geometry().right() < legend.geometry().left()
    in_band = legend.geometry()
    window.navigation.find_action.trigger()  # the find box takes the band's right end: the legend goes below it
    search = window.navigation.search
    assert search.isVisible() and not legend.geometry().intersects(search.geometry())
    qtbot.keyClick(search.findChild(QLineEdit), Qt.Key.Key_Escape)
    assert not search.isVisible() and legend.geometry() == in_band
    ramp = palette_for(window.themes.theme).colors[:LEVELS]
    assert ramp[0] != ramp[-1] and len(set(c.name() for c in ramp)) > LEVELS // 2


def test_the_cycle_key_is_in_help_and_collides_with_nothing(qtbot: Any) -> None:
    window = show(qtbot, propscope.open_session("xor"))
    rows = dict(shortcut_rows(window))
    assert rows["Next node colouring"] == CYCLE_KEY
    key = QKeySequence(CYCLE_KEY)
    holders = {a.text() for a in window.findChildren(type(window.colour_by.cycle)) if key in a.shortcuts()}
    assert holders == {"Next node colouring"}
    menu = window.findChild(type(window.view_menu), "colourByMenu")
    assert menu is not None and [a.data() for a in menu.actions() if a.isCheckable()] == \
        [None, GRAD, VALUE, NONFINITE, "disagree"]


def test_a_nan_made_in_the_backward_pass_starts_at_the_op_whose_derivative_made_it() -> None:
    """sqrt at 0: every value finite, the gradient infinite from sqrt's backward step down; sqrt is where it starts
    (its own numbers are finite), what is before it carries it on."""
    g = Graph("root")
    x = g.input("x", (2, 3))
    w = g.parameter("w", (2, 3))
    scaled = g.add("mul", x, w, name="scaled")
    root = g.add("sqrt", scaled, name="root")
    g.set_outputs(root)
    model = Model(g, {"w": np.ones((2, 3))}, batch={"x": np.zeros((2, 3)), "y": np.ones((2, 3))}, loss="mse")
    s = Session(model, get_backend("numpy", "float64"))
    numbers = NodeNumbers(s)
    numbers.set_mode(NONFINITE)
    s.seek(s.n_forward)
    numbers.follow()
    assert not (numbers.codes() == ORIGIN).any()  # the forward pass is finite
    s.seek(len(s.steps))
    numbers.follow()
    codes = dict(zip(numbers.names, numbers.codes().tolist(), strict=True))
    assert codes["root"] == ORIGIN and codes["scaled"] == CARRIED and codes["w"] == CARRIED

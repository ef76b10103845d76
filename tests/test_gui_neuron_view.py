"""The Neurons view on networks deeper and wider than the tutorial's, in the real window: titles, numbers and marks
never drawn over one another, each neuron's strongest lines where a gap has more than it can show apart, the ends of
a layer taller than the view, a caption saying what is left out; the tutorial's networks drawn whole as before; and
in projector mode the Gradient flow and Neurons docks shown again over the chain rule, the flag in sight."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGraphicsLineItem, QGraphicsSimpleTextItem, QGraphicsTextItem, QWidget

import propscope
from propscope.backends import get_backend
from propscope.debugger import Session
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.gui.bridge import SessionBridge
from propscope.gui.inspect.grad_flow_view import FLAG_COLUMN
from propscope.gui.inspect.neuron_layers import shown_neurons, strongest_inputs, thinned_titles
from propscope.gui.inspect.neuron_view import TOO_NARROW, NeuronView
from propscope.gui.main_window import MainWindow
from propscope.gui.selection import Selection
from propscope.gui.theme import ThemeManager

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = [pytest.mark.qt_log_ignore(OFFSCREEN_NOISE, "This plugin does not support raise"),
              pytest.mark.qt_log_level_fail("WARNING")]
ROOMS = [(1024, 768), (1920, 1080)]


def mlp(widths: list[int], activation: str = "sigmoid", seed: int = 0) -> Session:
    """A dense network named as torch.export names one (`linear_3`, `sigmoid_3`), with an MSE loss."""
    rng = np.random.default_rng(seed)
    g = Graph("mlp")
    h = g.input("x", (4, widths[0]))
    arrays: dict[str, np.ndarray] = {}
    last = len(widths) - 2
    for k, (a, b) in enumerate(itertools.pairwise(widths)):
        w, bias = g.parameter(f"{2 * k}.weight", (a, b)), g.parameter(f"{2 * k}.bias", (b,))
        arrays[w.name], arrays[bias.name] = rng.normal(size=(a, b)) / np.sqrt(a), rng.normal(size=b) * 0.1
        h = g.add("linear", h, w, bias, name=f"linear_{k}")
        if k < last:
            h = g.add(activation, h, name=f"{activation}_{k}")
    g.set_outputs(h)
    batch = {"x": rng.normal(size=(4, widths[0])), "y": rng.normal(size=(4, widths[-1]))}
    return Session(Model(g, arrays, batch=batch, loss="mse"), get_backend("numpy", "float64"))


def open_window(qtbot: Any, session: Session, size: tuple[int, int] = (1400, 900)) -> MainWindow:
    w = MainWindow(session, settings=None)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    qtbot.wait(60)  # the view's relayout after a resize waits 40 ms for the size to rest
    return w


def texts_shown(view: Any) -> list[QGraphicsSimpleTextItem]:
    return [item for item in view.scene.items()
            if isinstance(item, QGraphicsSimpleTextItem) and item.isVisible() and item.text()]


def overlaps(items: list[Any]) -> list[tuple[str, str]]:
    """Pairs of items whose painted rectangles overlap (a line's worth of slack: anti-aliasing touches)."""
    rects = [(item.text() if hasattr(item, "text") else "", item.sceneBoundingRect().adjusted(0.5, 0.5, -0.5, -0.5))
             for item in items]
    return [(a, b) for (a, ra), (b, rb) in itertools.combinations(rects, 2) if ra.intersects(rb)]


def fits(view: Any) -> bool:
    drawn = view.view.mapFromScene(view.scene.itemsBoundingRect()).boundingRect()
    return view.view.viewport().rect().contains(drawn)


def lines_into(view: Any, li: int) -> dict[int, set[int]]:
    """Column `li`'s drawn neuron j -> the drawn inputs i whose line into it is shown."""
    into: dict[int, set[int]] = {j: set() for j in range(len(view.rows[li]))}
    for i, row in enumerate(view.edges[li]):
        for j, line in enumerate(row):
            if line is not None and line.isVisible():
                into[j].add(i)
    return into


def check_legible(view: Any) -> None:
    assert view.drawable and fits(view), "the diagram is larger than its view"
    titles = [t for t in view.titles if t is not None]
    assert titles and view.titles[0] is not None and view.titles[-1] is not None  # the input's and the output's
    assert overlaps(titles) == [], "titles drawn over each other"
    assert overlaps(texts_shown(view)) == [], "labels drawn over each other"
    for t, whole in zip(view.titles, view.plan.titles, strict=True):
        assert t is None or t.toolTip() == whole


def check_strongest_lines(view: Any, session: Session, gradient: bool) -> None:
    """Each neuron's shown lines are its `keep` strongest inputs among those drawn, by |w| or by |∂L/∂w|."""
    for li in range(1, len(view.layers)):
        layer = view.layers[li]
        matrix = layer.weight_matrix(session.grad(layer.weight) if gradient else session.params[layer.weight])
        shown = matrix[np.ix_(view.rows[li - 1], view.rows[li])]
        keep = view.plan.keep[li]
        for j, inputs in lines_into(view, li).items():
            if keep >= len(view.rows[li - 1]):
                assert len(inputs) == len(view.rows[li - 1])
                continue
            strongest = set(np.argsort(-np.abs(shown[:, j]), kind="stable")[:keep].tolist())
            assert inputs == strongest, (li, j)


# -- deep ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dock_width", [None, 720], ids=["docked", "widened"])
def test_a_deep_mlp_keeps_titles_and_numbers_apart_and_shows_each_neurons_strongest_lines(qtbot, dock_width) -> None:
    """Ten sigmoid layers of 8 (the brief's deep MLP): its 12 titles in a 340-pixel dock used to smear into one
    ("inputsigmoid..."), the z of neighbouring columns ran together, and 64 thick lines a gap made one mass."""
    s = mlp([8] * 11 + [3])
    w = open_window(qtbot, s)
    if dock_width:  # wider, and as tall as the column shared by size hints gave it (it is half the column now)
        w.resizeDocks([w.neurons_dock], [dock_width], Qt.Orientation.Horizontal)
        w.resizeDocks([w.neurons_dock], [480], Qt.Orientation.Vertical)
        qtbot.wait(60)
    view = w.neurons
    assert len(view.layers) == 12
    check_legible(view)
    check_strongest_lines(view, s, gradient=False)
    if dock_width is None:  # 340 pixels for 12 columns: titles stand upright, lines thinned, and the caption says so
        assert view.plan.upright and all(t.rotation() == -90 for t in view.titles if t is not None)
        assert any(keep < 8 for keep in view.plan.keep[1:])
        assert "strongest" in view.caption.text()
        assert not any(v.isVisible() for row in view.texts for v, _ in row)  # circles too small for a number
    else:  # wider: numbers where they fit inside their circles
        assert any(v.isVisible() for row in view.texts for v, _ in row)
    s.run_to_end()
    view.by_gradient.setChecked(True)
    check_strongest_lines(view, s, gradient=True)
    check_legible(view)
    w.close()


def test_a_784_wide_input_draws_its_ends_around_a_mark_and_stays_light(qtbot) -> None:
    """784-128-10 (MNIST's MLP): the input and hidden layers draw their first and last neurons, a '⋮ n' mark between
    them; at most a few lines a neuron, so a few hundred line items instead of 100,352."""
    s = mlp([784, 128, 10], activation="relu")
    w = open_window(qtbot, s)
    view = w.neurons
    check_legible(view)
    for li, size in ((0, 784), (1, 128)):
        rows = view.rows[li]
        assert rows[0] == 0 and rows[-1] == size - 1 and len(rows) < size
        hidden = size - len(rows)
        assert view.marks[li] is not None and f"({hidden} of {size})" in view.marks[li].toolTip()
        assert f"{len(rows)} of {size} neurons drawn" in view.caption.toolTip()
    assert view.rows[2] == list(range(10)) and view.marks[2] is None
    lines = [item for item in view.scene.items() if isinstance(item, QGraphicsLineItem)]
    assert len(lines) <= sum(view.plan.keep[li] * len(view.rows[li]) for li in (1, 2))
    check_strongest_lines(view, s, gradient=False)
    s.run_to("relu_0")
    tip = view.neurons[1][-1].toolTip()
    assert tip.startswith("relu_0[127], sample 0") and propscope.gui.format.fmt_num(s.value("relu_0")[0, 127]) in tip
    w.close()


# -- the tutorial's networks, as before --------------------------------------------------------------------------
@pytest.mark.parametrize("example", ["xor", "classifier", "dense-layer"])
def test_the_tutorials_networks_are_drawn_whole_as_before(qtbot, example) -> None:
    w = open_window(qtbot, propscope.open_session(example))
    view = w.neurons
    check_legible(view)
    assert not view.plan.upright and view.plan.title_step == 1 and view.caption is None
    assert all(t.rotation() == 0 for t in view.titles)
    assert all(mark is None for mark in view.marks)
    for li in range(1, len(view.layers)):  # every line
        assert all(len(inputs) == view.layers[li - 1].size for inputs in lines_into(view, li).values())
    if example == "xor":
        assert all(v.isVisible() for row in view.texts for v, _ in row)  # a number in every neuron
    w.close()


# -- narrow and short views --------------------------------------------------------------------------------------
def squeezed_view(qtbot: Any, session: Session, size: tuple[int, int]) -> tuple[NeuronView, QWidget]:
    """The view given `size` whatever its minimum (a parent laid out by hand, a window on a small screen), and that
    parent (qtbot holds it weakly: it must live as long as the view)."""
    holder = QWidget()
    qtbot.addWidget(holder)
    holder.resize(800, 600)
    view = NeuronView(SessionBridge(session, holder), Selection(holder), ThemeManager(holder), holder)
    holder.show()
    qtbot.waitExposed(holder)
    view.setGeometry(0, 0, *size)
    qtbot.wait(60)
    return view, holder


@pytest.mark.parametrize("width", [200, 150, 120, 90, 60])
@pytest.mark.parametrize("deep", [False, True], ids=["xor", "deep"])
def test_a_narrow_view_draws_within_its_area(qtbot, width, deep) -> None:
    """Below 200 pixels the diagram was laid out for 200 all the same, and the view cut its outer columns, titles and
    numbers off at both sides. Now it is laid out for the width it has; where not even a few pixels a column fit, a
    note says to widen the view."""
    s = mlp([8] * 11 + [3]) if deep else propscope.open_session("xor")
    s.seek(3)
    view, _holder = squeezed_view(qtbot, s, (width, 360))
    assert view.view.viewport().width() <= width
    if view.plan is None:  # too narrow for the deep network's twelve columns
        assert deep and fits(view)
        (note,) = [item for item in view.scene.items() if isinstance(item, QGraphicsTextItem)]
        assert note.toPlainText() == TOO_NARROW
        return
    check_legible(view)
    circles = [item for row in view.neurons for item in row]
    assert overlaps(circles) == [], "neurons drawn over each other"
    assert all(len(row) for row in view.neurons)


def test_a_short_view_draws_within_its_area(qtbot) -> None:
    """An 800×600 window leaves the Neurons dock 68 pixels of diagram: laid out for 150, its titles and the ends of
    its columns were cut off at the top and the bottom."""
    w = open_window(qtbot, propscope.open_session("xor"), (800, 600))
    # the inspector above it now scrolls its rows instead of taking their height: the dock is made short here (its
    # least height: a height asked for is shared out again with the docks above, by the sizes they were first given)
    w.resizeDocks([w.neurons_dock], [1], Qt.Orientation.Vertical)
    qtbot.wait(60)
    view = w.neurons
    assert view.view.viewport().height() < 100
    check_legible(view)
    w.close()


# -- projector mode ----------------------------------------------------------------------------------------------
def projector(qtbot: Any, w: MainWindow, size: tuple[int, int]) -> None:
    w.set_projector(True, full_screen=False)
    w.resize(*size)
    qtbot.waitUntil(lambda: not w.projector._rescale.isActive(), timeout=2000)
    qtbot.wait(60)


@pytest.mark.parametrize("size", ROOMS, ids=[f"{a}x{b}" for a, b in ROOMS])
def test_in_projector_mode_the_gradient_flow_goes_over_the_chain_rule_with_its_flag_in_sight(qtbot, size) -> None:
    """Beside the chain rule the dock had half the width at the room's type size, and its table showed the step and
    the name only: the flag, the one column the room looks for, was out of sight."""
    s = mlp([8] * 11 + [3])
    w = open_window(qtbot, s)
    projector(qtbot, w, size)
    w.grad_flow_action.trigger()
    qtbot.waitUntil(lambda: w.grad_flow.session is not None, timeout=30_000)
    qtbot.wait(60)
    dock, view = w.grad_flow_dock, w.grad_flow.view
    assert dock.isVisible() and dock in w.tabifiedDockWidgets(w.chain_dock)
    assert dock.width() >= size[0] - 4, "the dock spans the window"
    table, header = view.table, view.table.horizontalHeader()
    assert header.visualIndex(FLAG_COLUMN) == 1  # right after the step
    left = header.sectionViewportPosition(FLAG_COLUMN)
    assert left >= 0 and left + header.sectionSize(FLAG_COLUMN) <= table.viewport().width(), "the flag is cut off"
    flags = {table.item(r, 1).text(): table.item(r, FLAG_COLUMN) for r in range(table.rowCount())}  # by name
    assert flags["0.weight"].text() == "vanishing"  # the verdict in the cell, why on hover
    assert flags["0.weight"].toolTip().startswith("vanishing (")
    assert w.chain_dock.visibleRegion().isEmpty()  # behind its tab (Qt moves a tab out of sight, not hidden)
    w.chain_dock.raise_()  # the chain rule one tab away
    qtbot.wait(10)
    assert not w.chain_dock.visibleRegion().isEmpty() and dock.visibleRegion().isEmpty()
    w.set_projector(False)
    qtbot.wait(10)
    assert header.visualIndex(FLAG_COLUMN) == FLAG_COLUMN  # the normal table as it was
    w.close()


@pytest.mark.parametrize("size", ROOMS, ids=[f"{a}x{b}" for a, b in ROOMS])
@pytest.mark.parametrize("deep", [False, True], ids=["xor", "deep"])
def test_in_projector_mode_the_neurons_shown_again_get_the_chain_rules_room(qtbot, size, deep) -> None:
    """View ▸ Neurons in projector mode used to leave the diagram 68 pixels high beside the inspector, its titles
    at the room's size running into each other ("hidden_output (4)final_output (1)")."""
    w = open_window(qtbot, mlp([8] * 11 + [3]) if deep else propscope.open_session("xor"))
    projector(qtbot, w, size)
    assert not w.neurons_dock.isVisible()  # projector mode puts it aside
    w.neurons_dock.show()
    qtbot.wait(60)
    assert w.neurons_dock in w.tabifiedDockWidgets(w.chain_dock)
    view = w.neurons
    assert view.view.viewport().width() >= size[0] - 10 and view.view.viewport().height() >= size[1] // 5
    check_legible(view)
    w.close()


# -- the plans, without Qt ----------------------------------------------------------------------------------------
def test_the_plans_keep_the_ends_the_strongest_and_the_first_and_last_titles() -> None:
    assert shown_neurons(5, 10) == [0, 1, 2, 3, 4]
    assert shown_neurons(784, 12, mark=2) == [0, 1, 2, 3, 4, None, 779, 780, 781, 782, 783]
    assert len(shown_neurons(10_000, 1000)) == 64  # never more than MAX_NEURONS places
    values = np.array([[1.0, -5.0], [-3.0, 0.5], [2.0, np.nan]])
    assert strongest_inputs(values, 1).tolist() == [[False, False], [True, False], [False, True]]  # NaN first
    assert strongest_inputs(values, 2).tolist() == [[False, True], [True, False], [True, True]]
    assert thinned_titles(12, 1) == list(range(12))
    assert thinned_titles(12, 2) == [0, 2, 4, 6, 8, 11]
    assert thinned_titles(12, 3) == [0, 3, 6, 11]
    assert thinned_titles(3, 5) == [0]
    for count, step in itertools.product(range(1, 30), range(1, 8)):
        shown = thinned_titles(count, step)
        assert shown[0] == 0 and all(b - a >= step for a, b in itertools.pairwise(shown))

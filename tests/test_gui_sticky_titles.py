"""Sticky frame titles: the module a view is in is named on the canvas, however far its frame's title is.

A frame's title is drawn at the frame's left end. Deep in a frame wider than the view (each block of resnet18
exported with torch.export, 1,700 pixels at 1:1; the wide module built here), nothing but the breadcrumbs' band said
which module the view was in. The title is now pinned to the view's left edge (and to its top, when its header row is
above the view), lit while the step is inside, over no node and inside the canvas, under the breadcrumbs' band.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import zoo
from PySide6.QtCore import QEvent, QObject, QRect, QRectF
from PySide6.QtGui import QColor, QImage, QRegion
from PySide6.QtWidgets import QApplication

from propscope.backends import get_backend
from propscope.debugger import Session
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.gui.canvas.boxes import FrameItem
from propscope.gui.canvas.items import RING_REACH
from propscope.gui.main_window import MainWindow

NOISE = ("This plugin does not support propagateSizeHints", "This plugin does not support raise")
pytestmark = pytest.mark.qt_log_ignore(*NOISE)
OPS = 14  # the wide module's ops: a chain about 3,500 pixels wide at 1:1


def settle() -> None:
    for _ in range(3):
        QApplication.processEvents()


def wide_module() -> Model:
    """An input, then a module `wide` of `OPS` ops in a row (a linear with its W and b, then tanh and
    sigmoid in turn), then a linear head outside it."""
    g = Graph("wide")
    h = g.input("x", (2, 4))
    arrays = {}
    m = "wide"
    w, b = g.parameter(f"{m}.weight", (4, 4), module=m), g.parameter(f"{m}.bias", (4,), module=m)
    arrays[w.name], arrays[b.name] = np.eye(4) * 0.5, np.zeros(4)
    h = g.add("linear", h, w, b, name=f"{m}.linear", module=m)
    for k in range(OPS - 1):
        h = g.add(("tanh", "sigmoid")[k % 2], h, name=f"{m}.act{k}", module=m)
    w, b = g.parameter("head.weight", (4, 4), module="head"), g.parameter("head.bias", (4,), module="head")
    arrays[w.name], arrays[b.name] = np.eye(4), np.zeros(4)
    h = g.add("linear", h, w, b, name="head.linear", module="head")
    g.set_outputs(h)
    return Model(g, arrays, batch={"x": np.ones((2, 4)), "y": np.zeros((2, 4))}, loss="mse")


def open_window(qtbot, session: Session, size: tuple[int, int], projector: bool) -> MainWindow:
    window = MainWindow(session, settings=None)
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    if projector:
        window.set_projector(True, full_screen=False)
    settle()
    return window


def innermost_frame(window: MainWindow) -> FrameItem | None:
    """The innermost frame drawn around the step's node, found from the folding's chains."""
    scene = window.canvas.graph_scene
    name = window.canvas.current_node()
    assert name is not None
    chain = scene.folding.chains.get(name, ())
    frames = [scene.frames[k] for k in reversed(chain) if k in scene.frames]
    return frames[0] if frames else None


def highlight_in(image: QImage, rect: QRect, color: QColor) -> int:
    """How many pixels of `rect` in `image` are (nearly) `color`."""
    rect = rect.intersected(image.rect())
    count = 0
    for y in range(rect.top(), rect.bottom() + 1, 2):
        for x in range(rect.left(), rect.right() + 1, 2):
            c = image.pixelColor(x, y)
            if abs(c.red() - color.red()) + abs(c.green() - color.green()) + abs(c.blue() - color.blue()) < 30:
                count += 1
    return count


def check_pinned(window: MainWindow) -> tuple[bool, str]:
    """Whether the innermost frame around the step shows its title on the canvas: its own title in view, or a
    copy pinned inside the view, over neither the node (with its ring) nor the breadcrumbs' band, and painted
    (the lit tab's colour is on screen where the pinned title is). (False, why) when not."""
    canvas = window.canvas
    scene = canvas.graph_scene
    frame = innermost_frame(window)
    name = canvas.current_node()
    assert frame is not None and name is not None
    view = canvas.visible_scene_rect()
    if view.contains(frame.title_rect()):
        return True, "its own title"
    pins = [p for p in canvas._sticky.pins(view, canvas.zoom()) if p.frame is frame] if canvas._sticky else []
    if not pins:
        return False, f"no title for {frame.unit.title} around {name}"
    pin = pins[0]
    reach = (RING_REACH + 2) * scene.theme.scale
    node = scene.node_rect(name).adjusted(-reach, -reach, reach, reach)
    assert not pin.rect.intersects(node), (frame.unit.title, name)
    assert view.contains(pin.rect) or pin.rect.left() >= view.left(), (pin.rect, view)
    shown = canvas.mapFromScene(pin.rect).boundingRect()
    viewport = canvas.viewport()
    assert viewport.rect().contains(shown.adjusted(1, 1, -1, -1)), (shown, viewport.rect())
    crumbs = window.findChild(QObject, "breadcrumbs")
    if crumbs is not None and crumbs.isVisible():  # the band is above the viewport, the title in it
        band_bottom = crumbs.mapTo(canvas, crumbs.rect().bottomLeft()).y()
        assert viewport.mapTo(canvas, shown.topLeft()).y() > band_bottom
    image = viewport.grab().toImage()
    if highlight_in(image, shown, scene.style.colors["highlight"]) < 10:
        return False, f"the pinned title of {frame.unit.title} is not painted lit"
    return True, "pinned"


@pytest.mark.parametrize(("size", "projector"), [((1024, 768), False), ((1024, 768), True), ((1920, 1080), True)])
def test_deep_in_a_wide_frame_its_title_is_pinned_to_the_left_edge(qtbot, size, projector):
    window = open_window(qtbot, Session(wide_module(), get_backend("numpy")), size, projector)
    session, canvas = window.bridge.session, window.canvas
    pinned = 0
    for _ in range(OPS):
        session.step()
        settle()
        canvas.go_to_current()  # Space: the view centres the step's node (projector mode follows it anyway)
        settle()
        frame = innermost_frame(window)
        if frame is None or frame.unit.title != "wide":
            continue
        ok, why = check_pinned(window)
        assert ok, (session.position_text(), why)
        pinned += why == "pinned"
    assert pinned >= 4  # deep in the frame, its own title is far off to the left


def test_the_pinned_title_follows_a_pan_and_leaves_with_its_frame(qtbot):
    window = open_window(qtbot, Session(wide_module(), get_backend("numpy")), (1024, 768), False)
    session, canvas = window.bridge.session, window.canvas
    for _ in range(OPS - 2):
        session.step()
    settle()
    canvas.go_to_current()
    settle()
    frame = innermost_frame(window)
    assert frame is not None

    def pin_rect() -> QRectF | None:
        pins = [p for p in canvas._sticky.pins(canvas.visible_scene_rect(), canvas.zoom()) if p.frame is frame]
        return pins[0].rect if pins else None

    # a pan repaints the pinned title where it now is, and where Qt's scroll moved its old pixels
    painted = QRegion()

    class Paints(QObject):
        def eventFilter(self, watched, event):
            nonlocal painted
            if event.type() == QEvent.Type.Paint:
                painted = painted.united(event.region())
            return False

    spy = Paints()
    canvas.viewport().installEventFilter(spy)
    before = pin_rect()
    assert before is not None
    old = canvas.mapFromScene(before).boundingRect()
    bar = canvas.verticalScrollBar()
    bar.setValue(bar.value() + 30)  # down by 30 pixels: the title moves up with its frame's header row
    settle()
    canvas.viewport().removeEventFilter(spy)
    after = pin_rect()
    assert after is not None
    new = canvas.mapFromScene(after).boundingRect()
    assert new.top() < old.top() and new.left() == old.left()
    for rect in (new, old.translated(0, -30)):
        assert painted.contains(rect.adjusted(1, 1, -1, -1)), (rect, painted.boundingRect())
    # panned right until the frame's right end nears the view's left edge: the title slides out with it
    bar = canvas.horizontalScrollBar()
    while canvas.visible_scene_rect().left() < frame.rect.right() - 20:
        bar.setValue(bar.value() + 40)
        settle()
        rect = pin_rect()
        if rect is not None:
            assert rect.right() <= frame.rect.right() + 1e-6  # never out of its frame
    assert pin_rect() is None or pin_rect().right() <= frame.rect.right()


def test_zoomed_out_below_text_no_title_is_pinned(qtbot):
    window = open_window(qtbot, Session(wide_module(), get_backend("numpy")), (1024, 768), False)
    canvas = window.canvas
    for _ in range(OPS - 2):
        window.bridge.session.step()
    canvas.go_to_current()
    settle()
    assert canvas._sticky.pins(canvas.visible_scene_rect(), canvas.zoom())
    canvas.set_zoom(0.3)  # frames drawn, their titles not (too small to read): no pinned ones either
    settle()
    assert canvas._sticky.pins(canvas.visible_scene_rect(), canvas.zoom()) == []


# -- resnet18 from torch.export, as the issue saw it ----------------------------------------------------------
@pytest.fixture(scope="module")
def resnet18(tmp_path_factory: pytest.TempPathFactory):
    if importlib.util.find_spec("torch") is None or not zoo.has_torchvision():
        pytest.skip("resnet18 needs torch and torchvision")
    from test_gui_real_models import Exported

    return Exported(tmp_path_factory.mktemp("sticky")).files("resnet18")


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize(("size", "projector"), [((1024, 768), False), ((1024, 768), True)])
def test_resnet18_every_step_shows_the_module_it_is_in(qtbot, resnet18, size, projector):
    from propscope import cli

    path, data = resnet18
    args = cli.build_parser().parse_args(["open", str(path), "--data", str(data), "--loss", "cross_entropy"])
    window = open_window(qtbot, cli._open(args), size, projector)
    session = window.bridge.session
    pinned, missing = 0, []
    for _ in range(60):
        session.step()
        settle()
        if innermost_frame(window) is None:
            continue
        ok, why = check_pinned(window)
        pinned += why == "pinned"
        if not ok:
            missing.append((session.position_text(), why))
    assert missing == []
    assert pinned >= 10  # most steps lie deep in a block wider than the view

"""Models nobody here wrote, in the real main window, driven by keys as a user drives them.

Each architecture of `zoo` (torchvision and transformers constructors with random weights, and the standard torch.nn
patterns) is exported once with `torch.export.save`, with its batch saved as an `.npz`, and opened as
`propscope open FILE --data D --loss cross_entropy --dtype float64` opens it. The window is then driven with the keys in
a different order per model (step, run to the end, reset, fit, zoom, go to the current step, find a module, open and
fold a box, hover), each move checked against the session (the cursor, the node centred, what is selected); then the
Layer view, Inspector, Steps and Neurons tabs are raised on the model's convolution, recurrent cell, attention and
normalisation nodes; and finally the toolbar switches to the torch backend and Compare backends (Ctrl+B) must find
every node in agreement with NumPy in float64.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zoo
from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, QSettings, Qt
from PySide6.QtGui import QHelpEvent
from PySide6.QtWidgets import QApplication, QToolTip

from propscope import cli
from propscope.debugger import Session
from propscope.graph.readers import open_model
from propscope.gui.canvas.view import START_ZOOM, GraphView
from propscope.gui.inspect.layer_view import ATTENTION, CONV, RECURRENT, fitting_nodes, view_kind
from propscope.gui.main_window import MainWindow

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow,
              pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                        "This plugin does not support raise"),
              pytest.mark.qt_log_level_fail("WARNING")]

NONE, CTRL, SHIFT = Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ControlModifier, \
    Qt.KeyboardModifier.ShiftModifier
NORMS = ("batch_norm", "layer_norm", "group_norm")


@dataclass(frozen=True)
class Case:
    find: str  # a module path typed into Ctrl+F
    keys: str  # the order the keys are pressed in (words of `Driver.moves`)
    kind: str  # the layer view the model must offer (besides its norm's, if it has one)


# a different order per model; every one ends its run with the Layer view, Inspector, Steps and Neurons on its nodes
CASES = {
    "resnet18": Case("layer3.1.conv2", "step step step end fit home zoomin zoomout space find box hover back end",
                     CONV),
    "mobilenet_v3_small": Case("features.4", "zoomout fit step space box end home unfold hover fold step back", CONV),
    "unet": Case("dec2", "space end fit zoomin box hover home step step back find end", CONV),
    "lstm_lm": Case("lstm", "end home step box zoomin zoomin hover space fit find end back", RECURRENT),
    "bigru": Case("gru", "step step end box hover home find zoomin space fit", RECURRENT),
    "gpt2": Case("h.1.attn", "fit find unfold hover step end space fold zoomout zoomin home box step end", ATTENTION),
    "bert": Case("layer.0.attention", "end space find unfold zoomout zoomin fold box hover home step", ATTENTION),
    # the zoo's later arrivals: volumes (3-D convolutions, pooling and transposed convolutions), a segmentation
    # head, and the transformers of today (RMSNorm and rotary positions, encoder-decoders, audio)
    "r3d_18": Case("layer2.0.downsample", "end fit home step step zoomin box space find hover back", CONV),
    "unet3d": Case("dec2", "step step space end fit zoomin box hover home step find back end", CONV),
    "deeplabv3": Case("classifier.0.convs.1", "fit step end space box zoomout home find hover step back", CONV),
    "llama": Case("layers.1.self_attn", "space step end find unfold zoomin fold box hover home step", ATTENTION),
    "t5": Case("decoder.block.0.layer.1", "end fit find box home step space zoomin hover back", ATTENTION),
    "whisper": Case("encoder.conv2", "step fit end box find space home zoomout hover step", ATTENTION),
}


def params() -> list[object]:
    """The cases as pytest parameters, skipped where their library is not installed (as `zoo.params()` does)."""
    return [p for p in zoo.params() if p.values[0] in CASES]


class Exported:
    """Each architecture exported once (`torch.export.save`) with its batch as a data file, on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def files(self, name: str) -> tuple[Path, Path]:
        path, data = self.folder / f"{name}.pt2", self.folder / f"{name}.npz"
        if not path.exists():
            model, inputs, y = zoo.built(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.export(model, tuple(torch.from_numpy(a) for a in inputs))
                torch.export.save(program, str(path))
            names = [n.name for n in open_model(path).graph.inputs]
            np.savez(data, **dict(zip(names, inputs, strict=True)), y=y)
        return path, data


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    return Exported(tmp_path_factory.mktemp("real_models"))


def open_window(qtbot, tmp_path: Path, path: Path, data: Path) -> MainWindow:
    """What `propscope open FILE --data D --loss cross_entropy --dtype float64` shows (gui/app.py's `run`)."""
    args = cli.build_parser().parse_args(["open", str(path), "--data", str(data), "--loss", "cross_entropy",
                                          "--dtype", "float64"])
    session = cli._open(args)
    settings = QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat)
    window = MainWindow(session, settings=settings, seed=args.seed)
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)  # the step keys are window shortcuts
    return window


def settle() -> None:
    for _ in range(3):
        QApplication.processEvents()


def same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(np.asarray(a), np.asarray(b))


class Driver:
    """Presses the keys on one window; every move checks what it must have done."""

    def __init__(self, qtbot, window: MainWindow, case: Case) -> None:
        self.qtbot, self.w, self.case = qtbot, window, case
        self.moves: dict[str, Callable[[], None]] = {
            "step": self.step, "back": self.back, "end": self.end, "home": self.home, "fit": self.fit,
            "zoomin": lambda: self.zoom(Qt.Key.Key_Equal, 1.25), "zoomout": lambda: self.zoom(Qt.Key.Key_Minus, 0.8),
            "space": self.space, "find": self.find, "box": self.box, "unfold": lambda: self.fold_all(False),
            "fold": lambda: self.fold_all(True), "hover": self.hover,
        }

    @property
    def s(self) -> Session:
        return self.w.bridge.session

    @property
    def canvas(self) -> GraphView:
        return self.w.canvas

    def press(self, key: Qt.Key, mods: Qt.KeyboardModifier = NONE) -> None:
        self.qtbot.keyClick(self.w, key, mods)
        settle()

    def run(self) -> None:
        for word in self.case.keys.split():
            selected = self.w.selection.node
            self.moves[word]()
            self.canvas.viewport().repaint()  # a full paint of whatever the move left
            self.agree(word, selected)

    # -- what holds after every move ------------------------------------------------------------------
    def agree(self, word: str, selected: str | None) -> None:
        s, w = self.s, self.w
        assert w.position.text() == s.position_text(), word
        assert w.steps.view.model().rowCount() == len(s.steps)
        node = s.steps[s.cursor - 1].node.name if s.cursor else None
        assert self.canvas.current_node() == node, word
        if word in ("step", "back", "end") and node is not None:
            assert w.selection.node == node, word  # stepping selects the step's node
        elif word not in ("home", "find", "box"):  # views and folds leave the selection alone
            assert w.selection.node == selected, word
        assert w.inspector.header.text().startswith(f"<b>{w.selection.node}</b>"), word
        self.crumbs_agree(word)
        assert w.debug.step.isEnabled() == (not s.at_end) and w.debug.reset.isEnabled() == (s.cursor > 0), word

    def crumbs_agree(self, word: str) -> None:
        """The breadcrumbs name the modules around the selected node, outermost first, then the node, in the band
        above the graph."""
        crumbs, name = self.w.navigation.breadcrumbs, self.w.selection.node
        path = crumbs.path(name) if name is not None else []
        assert crumbs.isVisible() == bool(path), word
        if path:
            assert crumbs.node == name and len(crumbs.crumbs) == len(path) + 1, word
            assert crumbs.crumbs[-1].text() == name, word
            assert [b.property("unitKey") for b in crumbs.crumbs[:-1]] == [key for key, _title in path], word
            assert crumbs.geometry().bottom() < self.canvas.viewport().geometry().top(), word

    def centred(self, name: str, what: str) -> None:
        """`name` (or the box drawn for it) is in the middle of the canvas, at a readable zoom; or, where the title
        of the frame around it would lie outside the view, in view with that title."""
        canvas = self.canvas
        centre = canvas.mapToScene(canvas.viewport().rect().center())
        rect = canvas.graph_scene.node_rect(name)
        node = rect.center()
        tolerance = 2 / canvas.zoom()
        assert canvas.zoom() >= START_ZOOM - 1e-9, what
        if abs(centre.x() - node.x()) <= tolerance and abs(centre.y() - node.y()) <= tolerance:
            return
        seen = canvas.visible_scene_rect()
        frames = canvas.graph_scene.enclosing_frames(name)
        assert seen.contains(rect) and frames, \
            f"{what}: {name} at {node.toTuple()}, the view's centre at {centre.toTuple()}"
        title = frames[0].title_rect()
        start = QRectF(title.left(), title.top(), min(title.width(), 6 * title.height()), title.height())
        assert seen.contains(start), f"{what}: {name} off centre, the title of {frames[0].unit.title} out of view"

    def on_screen(self, name: str) -> QPoint:
        return self.canvas.mapFromScene(self.canvas.graph_scene.node_rect(name).center())

    # -- the moves ------------------------------------------------------------------------------------
    def step(self) -> None:
        before = self.s.cursor
        self.press(Qt.Key.Key_F10)
        assert self.s.cursor == min(before + 1, len(self.s.steps))

    def back(self) -> None:
        before = self.s.cursor
        self.press(Qt.Key.Key_F10, SHIFT)
        assert self.s.cursor == max(before - 1, 0)

    def end(self) -> None:
        self.press(Qt.Key.Key_End)
        # a real model's pass runs a slice at a time between events (gui/actions.SlicedRun): wait for it to be over
        self.qtbot.waitUntil(lambda: not self.w.debug.sliced.running, timeout=120_000)
        settle()
        s = self.s
        assert s.at_end and s.cursor == len(s.steps) and s.cursor > s.n_forward  # the backward pass ran too
        assert s.current.phase == "backward"
        assert self.canvas.visible_scene_rect().intersects(self.canvas.graph_scene.node_rect(s.current.node.name))
        assert s.grad(s.current.node.name) is not None

    def home(self) -> None:
        self.press(Qt.Key.Key_Home)
        assert self.s.cursor == 0 and self.canvas.current_node() is None

    def fit(self) -> None:
        self.press(Qt.Key.Key_F)
        canvas = self.canvas
        graph = canvas.graph_scene.graph_rect
        assert canvas.visible_scene_rect().adjusted(-1, -1, 1, 1).contains(graph)
        assert canvas.zoom() <= 1.25 + 1e-9

    def zoom(self, key: Qt.Key, factor: float) -> None:
        """Ctrl+= and Ctrl+- (the keys as pressed, without Shift, on a US keyboard)."""
        before = self.canvas.zoom()
        self.press(key, CTRL)
        after = self.canvas.zoom()
        low = min(0.05, self.canvas._fit_zoom())
        assert after == pytest.approx(min(20.0, max(low, before * factor))), (key, before, after)

    def space(self) -> None:
        self.press(Qt.Key.Key_Space)
        s = self.s
        name = s.steps[s.cursor - 1].node.name if s.cursor else s.steps[0].node.name
        self.centred(name, "Space")

    def find(self) -> None:
        """Ctrl+F, the module's path typed, Enter for the next hit: each hit revealed, selected and centred."""
        search = self.w.navigation.search
        self.press(Qt.Key.Key_F, CTRL)
        assert search.isVisible() and search.edit.hasFocus()
        self.qtbot.keyClicks(search.edit, self.case.find)
        settle()
        assert len(search.hits) >= 2, f"{self.case.find!r}: {search.hits}"
        first = search.hits[search.at]
        self.revealed(first)
        self.qtbot.keyClick(search.edit, Qt.Key.Key_Return)
        settle()
        hit = search.hits[search.at]
        assert hit != first and search.count.text() == f"{search.at + 1} of {len(search.hits)}"
        self.revealed(hit)
        self.qtbot.keyClick(search.edit, Qt.Key.Key_Escape)
        settle()
        assert not search.isVisible()

    def revealed(self, name: str) -> None:
        node = self.s.graph[name]
        assert self.case.find in f"{node.name} {node.op.name} {node.module}"
        assert self.w.selection.node == name and self.w.inspector.header.text().startswith(f"<b>{name}</b>")
        scene = self.canvas.graph_scene
        assert scene.key_of(name) == name, f"{name} still hidden in {scene.key_of(name)}"
        self.centred(name, f"found {name}")

    def box(self) -> None:
        """Double-click a closed box: it opens as a frame; double-click the frame's title: it folds again."""
        canvas = self.canvas
        scene = canvas.graph_scene
        folding = scene.folding
        closed = sorted(k for k in folding.closed if k in scene.names and len(folding.units[k].members) > 1)
        if not closed:  # everything open (a model of single-op modules): fold one up first
            self.fold_all(True)
            scene, folding = canvas.graph_scene, canvas.graph_scene.folding
            closed = sorted(k for k in folding.closed if k in scene.names and len(folding.units[k].members) > 1)
        key = closed[0]
        canvas.center_readably(key)
        settle()
        self.double_click(self.on_screen(key))
        assert self.w.selection.node == folding.units[key].output  # the first click selected the box's value
        scene = canvas.graph_scene
        assert key not in scene.folding.closed and key in scene.frames, key
        assert all(scene.key_of(m) != key for m in scene.folding.units[key].members)  # drawn in its frame
        frame = scene.frames[key].rect
        corner = QPointF(frame.left() + 6, frame.top() + 4)  # in the frame's title, on no node
        if not canvas.viewport().rect().contains(canvas.mapFromScene(corner)):  # a frame taller than the view
            canvas.centerOn(corner)
            settle()
        title = canvas.mapFromScene(corner)
        assert canvas.viewport().rect().contains(title) and canvas.node_at(QPointF(title)) is None
        self.double_click(title)
        assert key in canvas.graph_scene.folding.closed and key in canvas.graph_scene.names

    def double_click(self, pos: QPoint) -> None:
        """A double click as the mouse makes it: a click, then the second press (QTest's alone has no press)."""
        vp = self.canvas.viewport()
        self.qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, pos=pos)
        self.qtbot.mouseDClick(vp, Qt.MouseButton.LeftButton, pos=pos)
        settle()

    def fold_all(self, fold: bool) -> None:
        self.press(Qt.Key.Key_F if fold else Qt.Key.Key_U, CTRL | SHIFT)
        folding = self.canvas.graph_scene.folding
        if fold:
            assert folding.closed and not self.canvas.graph_scene.frames
        else:
            assert not folding.closed

    def hover(self) -> None:
        """Rest the mouse on the selected node: its tooltip names it (a box: its module)."""
        canvas = self.canvas
        name = self.w.selection.node
        assert name is not None
        canvas.center_readably(name)
        settle()
        pos = self.on_screen(name)
        vp = canvas.viewport()
        QToolTip.hideText()
        QApplication.sendEvent(vp, QHelpEvent(QEvent.Type.ToolTip, pos, vp.mapToGlobal(pos)))
        settle()
        key = canvas.graph_scene.key_of(name)
        unit = canvas.graph_scene.folding.units.get(key)
        node = self.s.graph[name]
        want = f"{unit.title}: " if unit is not None else f"{name}: {node.op.name} "
        assert QToolTip.isVisible() and QToolTip.text().startswith(want), (want, QToolTip.text())
        QToolTip.hideText()


# -- the views on the model's layers -----------------------------------------------------------------------
def layer_nodes(window: MainWindow) -> dict[str, str]:
    """One node per kind the layer view shows (a convolution, a recurrent cell, attention) and a normalisation."""
    g = window.bridge.session.graph
    out: dict[str, str] = {}
    for name in fitting_nodes(g):
        out.setdefault(view_kind(g, g[name]) or "", name)
    norm = next((n.name for n in g if n.op.name in NORMS), None)
    if norm is not None:
        out["norm"] = norm
    return out


def select_by_click(qtbot, driver: Driver, name: str) -> None:
    canvas = driver.canvas
    canvas.reveal(name)
    settle()
    driver.w.selection.select(None)
    qtbot.mouseClick(canvas.viewport(), Qt.MouseButton.LeftButton, pos=driver.on_screen(name))
    settle()
    assert driver.w.selection.node == name


def check_layer_view(window: MainWindow, name: str) -> None:
    s, view = window.bridge.session, window.layer_view
    kind = view_kind(s.graph, s.graph[name])
    if kind is None:  # a norm of a (batch, tokens, features) value: nothing of its own, the list of what has one
        assert not view.fits
        window.layer_dock.raise_()
        settle()
        assert view.page is None and "Select a convolution" in view.header.text()
        assert all(f'href="{n}"' in view.header.text() for n in fitting_nodes(s.graph)[:12])
        return
    assert view.fits and view.isVisible(), f"{name}: the layer view did not come forward"
    page = view.page
    assert page is not None and view.node == name and page.kind == kind and not page.message, page
    assert (s.graph[name].module if kind == RECURRENT else name) in re.sub("<[^>]+>", "", page.headline)
    tiles = [t for sec in page.sections for t in sec.tiles]
    assert page.sections and tiles and all(np.isfinite(t.matrix).all() for t in tiles)
    value = np.asarray(s.value(name))
    if kind == CONV and value.ndim == 5:  # a volume: the first map of sample 0 at the depth slice chosen
        assert view.depth_box.isVisible() == (page.depths > 1) and page.depth == view.depth_box.value()
        np.testing.assert_array_equal(page.sections[-1].tiles[0].matrix, value[0, 0, page.depth])
    elif kind == CONV:  # the node's own feature maps, the first of sample 0 first
        np.testing.assert_array_equal(page.sections[-1].tiles[0].matrix, value[0, 0])
    elif kind == ATTENTION:  # softmax weights: every row of every head sums to one
        for t in page.sections[0].tiles:
            np.testing.assert_allclose(t.matrix.sum(axis=-1), 1.0, atol=1e-9)
    else:  # the layer's hidden state over time: a column per time step
        assert page.keys and page.sections[0].tiles[0].matrix.shape[1] >= 8


def check_inspector(window: MainWindow, name: str) -> None:
    s = window.bridge.session
    window.inspector_dock.raise_()
    settle()
    assert window.inspector.isVisible()
    node = s.graph[name]
    assert window.inspector.header.text().startswith(f"<b>{name}</b> · {node.op.name}")
    assert same(window.inspector.value_panel.array, s.value(name))
    assert same(window.inspector.grad_panel.array, s.grad(name))
    assert window.inspector.grad_panel.array is not None  # the pass has run to the end: it has its gradient


def check_steps(qtbot, window: MainWindow, name: str) -> None:
    """The Steps tab: a click on the node's backward step goes there."""
    s = window.bridge.session
    window.steps_dock.raise_()
    settle()
    view = window.steps.view
    assert view.isVisible()
    row = s.node_phase_index(name, "backward")
    assert row is not None
    view.scrollTo(window.steps.model.index(row))
    settle()
    rect = view.visualRect(window.steps.model.index(row))
    assert name in window.steps.model.data(window.steps.model.index(row))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    settle()
    assert s.cursor == row + 1 and s.current.node.name == name and s.current.phase == "backward"
    assert window.selection.node == name and window.canvas.current_node() == name


def check_neurons(window: MainWindow) -> None:
    """A network of convolutions, cells or attention is no dense diagram: the tab says so instead of drawing."""
    window.neurons_dock.raise_()
    settle()
    neurons = window.neurons
    assert neurons.isVisible() and not neurons.drawable
    assert neurons.stack.currentWidget() is neurons.message
    assert neurons.message.text().startswith("The neuron view draws dense networks.")


def switch_to_torch_and_compare(qtbot, window: MainWindow) -> None:
    s = window.bridge.session
    cursor, values = s.cursor, {n.name: s.value(n.name) for n in s.graph.leaves}
    box = window.backend_box
    i = box.findData("torch")
    box.setCurrentIndex(i)
    box.activated.emit(i)  # what choosing it in the toolbar sends
    qtbot.waitUntil(lambda: s.backend.name == "torch" and not window.jobs, timeout=60000)
    settle()
    assert s.cursor == cursor and "(torch/float64)" in window.windowTitle()
    assert all(same(s.backend.to_numpy(s.value(k)), v) for k, v in values.items())
    for key, at in ((Qt.Key.Key_Home, 0), (Qt.Key.Key_F10, 1), (Qt.Key.Key_End, len(s.steps))):  # steps on torch
        qtbot.keyClick(window, key)
        assert s.cursor == at and window.position.text() == s.position_text()
    qtbot.keyClick(window, Qt.Key.Key_B, CTRL)
    qtbot.waitUntil(lambda: not window.jobs and window.diff_dock.isVisible(), timeout=60000)
    settle()
    view = window.diff_view
    summary = re.sub("<[^>]+>", "", view.summary.text())
    assert summary.startswith("torch/float64 on cpu vs numpy/float64 on cpu"), summary
    agree = re.search(r"all (\d+) nodes agree", summary)
    assert agree is not None, summary
    assert int(agree.group(1)) == len(s.graph) and f"step {len(s.steps)}/{len(s.steps)}" in summary
    verdicts = {view.table.item(r, 3).text() for r in range(view.table.rowCount())}
    assert view.table.rowCount() > 0 and verdicts == {"agrees"}
    assert window.canvas.graph_scene.diffs  # the graph is coloured by the difference


@pytest.mark.parametrize("name", params())
def test_a_real_model_driven_by_keys_and_its_views(qtbot, tmp_path, exported, name):
    case = CASES[name]
    window = open_window(qtbot, tmp_path, *exported.files(name))
    s = window.bridge.session
    assert s.loss_name == "cross_entropy" and str(s.backend.dtype) == "float64" and s.cursor == 0
    driver = Driver(qtbot, window, case)
    driver.run()

    driver.end()
    nodes = layer_nodes(window)
    assert case.kind in nodes, nodes
    for what, node in nodes.items():
        select_by_click(qtbot, driver, node)
        check_layer_view(window, node)
        check_inspector(window, node)
        check_neurons(window)
        check_steps(qtbot, window, node)
        assert s.current.node.name == node, what
        driver.end()

    switch_to_torch_and_compare(qtbot, window)
    window.close()


def test_file_open_and_load_data_in_a_running_window(qtbot, tmp_path, exported):
    """File ▸ Open reads the exported file on the window's worker and File ▸ Load data gives it the batch; the file
    has no loss, and the data's whole-number labels attach cross-entropy (as on the command line): the whole pass."""
    import propscope

    path, data = exported.files("unet")
    window = MainWindow(propscope.open_session("xor"),
                        settings=QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.resize(1280, 800)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=60000):
        window.open_path(path)
    s = window.bridge.session
    assert s.name == "unet" and s.loss_name is None and window.windowTitle() == "propscope — unet (numpy/float32)"
    assert window.example_box.currentText() == "(file)" and window.layer_dock.isVisible()
    assert window.load_data_path(data)
    qtbot.waitUntil(lambda: window.bridge.session.loss_name == "cross_entropy" and not window.jobs, timeout=60000)
    s = window.bridge.session
    with np.load(data) as batch:
        np.testing.assert_array_equal(s.batch["x"], batch["x"])
    driver = Driver(qtbot, window, Case("enc2", "step home step space find box fit", CONV))
    driver.run()
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert s.at_end and s.cursor == len(s.steps) > s.n_forward
    conv = layer_nodes(window)[CONV]
    select_by_click(qtbot, driver, conv)
    check_layer_view(window, conv)
    window.close()

"""Three more rough edges of the real main window, each pinned by the model that showed it.

- Projector mode centred the step's node, so the title of a tall frame around it lay above the canvas (Swin-T's
  `features.1.0` at 1024×768, resnet18's `layer1.0`): the view now moves off centre as little as shows the title of
  the innermost frame around the node (and of the frames around that, while they fit), the node still in view;
  Space does the same in the ordinary window.
- In projector mode the thick lit edges into a Linear or a Conv ran through the role labels of its inputs (x, W,
  b): the labels are drawn above every edge, and no edge's stroke crosses them.
- `torch.onnx.export(dynamo=True)` fuses the small CNN's BatchNorm into its Conv and scopes the Conv under `bn`:
  `conv1` kept only its parameters, and the canvas drew a frame "conv1 · 0 ops" around them. A module without an
  op has no frame; its parameters sit in the frame of the op that uses them.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import zoo
from PySide6.QtCore import QRectF
from PySide6.QtGui import QPainterPathStroker
from PySide6.QtWidgets import QApplication
from test_gui_real_models import Exported

from propscope import cli, open_session
from propscope.gui.canvas.items import EdgeItem, RoleLabel
from propscope.gui.main_window import MainWindow

NOISE = ("This plugin does not support propagateSizeHints", "This plugin does not support raise")


def settle() -> None:
    for _ in range(3):
        QApplication.processEvents()


def show(qtbot, window: MainWindow, size: tuple[int, int], projector: bool) -> MainWindow:
    qtbot.addWidget(window)
    window.resize(*size)
    window.show()
    qtbot.waitExposed(window)
    if projector:
        window.set_projector(True, full_screen=False)
    settle()
    return window


# -- 1. the title of the frame around the step is in view -------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    models = Exported(tmp_path_factory.mktemp("frame_titles"))

    def files(name: str) -> tuple[Path, Path]:
        if importlib.util.find_spec("torch") is None or not zoo.has_torchvision():
            pytest.skip(f"{name} needs torch and torchvision")
        return models.files(name)

    return files


def open_file(qtbot, files: tuple[Path, Path], size: tuple[int, int], projector: bool) -> MainWindow:
    """What `propscope open FILE --data D --loss cross_entropy --size WxH [--projector]` shows."""
    path, data = files
    args = cli.build_parser().parse_args(["open", str(path), "--data", str(data), "--loss", "cross_entropy"])
    return show(qtbot, MainWindow(cli._open(args), settings=None), size, projector)


def innermost_title(window: MainWindow, name: str) -> tuple[QRectF, QRectF] | None:
    """The start of the title of the innermost frame drawn around node `name` (or its box) and the node's
    rectangle grown by its ring, both in scene coordinates; None outside every frame. Found from the folding's
    chains, not from the view's own helper."""
    scene = window.canvas.graph_scene
    folding = scene.folding
    key = scene.key_of(name)
    if key in folding.units:
        chain = folding.chains[folding.units[key].members[0]]
        chain = chain[: chain.index(key)]
    else:
        chain = folding.chains.get(name, ())
    frames = [scene.frames[k] for k in reversed(chain) if k in scene.frames]
    if not frames:
        return None
    frame = frames[0]
    start = QRectF(frame.text_rect.left(), frame.rect.top(), min(frame.tab_width, 6 * frame.header), frame.header)
    reach = 12 * scene.theme.scale
    return start, scene.node_rect(name).adjusted(-reach, -reach, reach, reach)


def titles_hidden(window: MainWindow, steps: int, space: bool) -> tuple[int, list[str]]:
    """Steps `steps` times (pressing Space after each when `space`); the steps whose frame title could be shown
    with the node and was not; how many could."""
    canvas, session = window.canvas, window.bridge.session
    could, hidden = 0, []
    for _ in range(steps):
        session.step()
        settle()
        if space:
            canvas.go_to_current()
            settle()
        name = canvas.current_node()
        view = canvas.visible_scene_rect()
        assert name is not None and view.contains(canvas.graph_scene.node_rect(name)), session.position_text()
        found = innermost_title(window, name)
        if found is None:
            continue
        title, node = found
        both = title.united(node)
        if both.width() > view.width() or both.height() > view.height():
            continue  # too far apart to be seen together: the node comes first
        could += 1
        if not view.contains(title):
            hidden.append(session.position_text())
    return could, hidden


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.qt_log_ignore(*NOISE)
@pytest.mark.parametrize(("model", "size", "projector", "space"), [
    ("swin_t", (1024, 768), True, False), ("resnet18", (1024, 768), True, False),
    ("swin_t", (1920, 1080), True, False), ("resnet18", (1024, 768), False, True)])
def test_centring_the_step_shows_the_title_of_the_frame_around_it(qtbot, exported, model, size, projector, space):
    window = open_file(qtbot, exported(model), size, projector)
    could, hidden = titles_hidden(window, 24 if model == "swin_t" else 40, space)
    assert could >= 5  # the steps checked do lie in frames whose title can show
    assert hidden == []


# -- 2. the role labels of a node's inputs are legible over thick edges ---------------------------------------
def edge_stroke(edge: EdgeItem, width: float):
    stroker = QPainterPathStroker()
    stroker.setWidth(width)
    return stroker.createStroke(edge.path)


@pytest.mark.qt_log_ignore(*NOISE)
@pytest.mark.parametrize(("example", "steps", "size", "projector"), [
    ("classifier", 1, (1024, 768), True), ("cnn", 2, (1024, 768), True), ("cnn", 2, (1920, 1080), True),
    ("xor", 1, (1024, 768), False), ("classifier", 1, (1280, 800), False)])
def test_role_labels_are_not_crossed_by_edges(qtbot, example, steps, size, projector):
    window = show(qtbot, MainWindow(open_session(example), settings=None), size, projector)
    session = window.bridge.session
    for _ in range(steps):
        session.step()
    settle()
    scene = window.canvas.graph_scene
    theme = scene.theme
    into = [e for e in scene.edge_items.values() if e.dst == scene.current_key]
    assert len(into) >= 2 and all(e.flow == "forward" for e in into)  # x, W (and b) lit: the thick edges
    labels = [item for item in scene.items() if isinstance(item, RoleLabel)]
    assert {label.role for label in labels} >= {e.role for e in into}
    edges = list(scene.edge_items.values())
    for label in labels:
        letters = label.text_rect()
        for edge in edges:
            width = theme.pen_width(2.6 if edge.flow else 1.0)
            assert not edge_stroke(edge, width).intersects(letters), (label.role, edge.src, edge.dst)
            assert label.zValue() > edge.zValue()  # drawn above every edge, the lit ones too


# -- 3. no frame around parameters alone ------------------------------------------------------------------------
def small_cnn():
    """The CNN of benchmarks/bench_open_vs_netron.py: Conv, BatchNorm, ReLU, pool; Conv, ReLU, pool; Linear."""
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn = nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.conv2, self.fc = nn.Conv2d(8, 16, 3, padding=1), nn.Linear(16 * 7 * 7, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.max_pool2d(torch.relu(self.bn(self.conv1(x))), 2)
            x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
            return self.fc(torch.flatten(x, 1))

    return CNN().eval(), (torch.randn(8, 1, 28, 28),)


@pytest.fixture(scope="module")
def fused_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for library in ("torch", "onnx", "onnxscript"):
        if importlib.util.find_spec(library) is None:
            pytest.skip(f"torch.onnx.export(dynamo=True) needs {library}")
    import torch

    path = tmp_path_factory.mktemp("fused") / "cnn.onnx"
    model, args = small_cnn()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=True, verbose=False)
    return path


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.qt_log_ignore(*NOISE)
@pytest.mark.parametrize("projector", [False, True])
def test_a_module_left_with_parameters_only_gets_no_frame(qtbot, fused_onnx, projector):
    args = cli.build_parser().parse_args(["open", str(fused_onnx)])
    window = show(qtbot, MainWindow(cli._open(args), settings=None), (1024, 768), projector)
    scene = window.canvas.graph_scene
    graph = window.bridge.session.graph
    conv = next(n for n in graph.nodes if n.op.name == "conv2d" and "conv1.weight" in [a.name for a in n.inputs])
    assert scene.frames  # the other modules keep theirs
    for frame in scene.frames.values():
        assert frame.unit.ops > 0, frame.unit.caption
        assert "0 ops" not in frame.title
    # the weights sit with the op that uses them, inside its frame when it has one
    around = [f for f in scene.frames.values() if f.rect.contains(scene.node_rect(conv.name))]
    for frame in around:
        assert frame.rect.contains(scene.node_rect("conv1.weight")) and frame.rect.contains(
            scene.node_rect("conv1.bias"))
    assert not any(f.unit.path == "conv1" for f in scene.frames.values())

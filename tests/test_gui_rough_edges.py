"""Rough edges seen on real models in the real main window, each pinned by the model that showed it.

- The breadcrumbs floated over the canvas and covered the title of the frame at the top (Swin-T at 1024×768, and
  in projector mode at 1920×1080): they now sit in a band of their own above the graph.
- The layer view took every 4-D value for NCHW: Swin's channels-last (N, H, W, C) values came out as "8 channels
  of 8×96"; they are now C maps of H×W, and resnet18's NCHW values stay as they were.
- The convolution filters' titles ("12←3") elided to "0…" at 1024×768.
- A repeat group that can never fold (values leave it and come back in) was framed like one that can.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import zoo
from PySide6.QtCore import QRect, QRectF
from PySide6.QtWidgets import QApplication

from propscope import cli
from propscope.graph.readers import open_model
from propscope.gui.main_window import MainWindow

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow,
              pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints",
                                        "This plugin does not support raise"),
              pytest.mark.qt_log_level_fail("WARNING")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    """Each architecture exported once (`torch.export.save`), with its batch as a data file."""
    folder = tmp_path_factory.mktemp("rough_edges")

    def files(name: str) -> tuple[Path, Path]:
        path, data = folder / f"{name}.pt2", folder / f"{name}.npz"
        if not path.exists():
            if name in ("swin_t", "resnet18") and not zoo.has_torchvision():
                pytest.skip("torchvision is not installed")
            model, inputs, y = zoo.built(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.export.export(model, tuple(torch.from_numpy(a) for a in inputs))
                torch.export.save(program, str(path))
            names = [n.name for n in open_model(path).graph.inputs]
            np.savez(data, **dict(zip(names, inputs, strict=True)), y=y)
        return path, data

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

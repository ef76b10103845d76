"""Export for slides: the pass as GIF/MP4/PNG frames, the graph as SVG/PNG, the chain rule as LaTeX or a picture."""

from __future__ import annotations

import importlib.util
import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import propscope
from propscope.cli import main
from propscope.gui.export import ExportCancelled, ExportOptions, export, export_pass, parse_steps, session_copy
from propscope.gui.export.latex import formula_latex

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = [pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def app(qapp):  # every export draws with Qt, which needs the application object
    return qapp


def gif_frames(path: Path) -> list[np.ndarray]:
    im = Image.open(path)
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")))
    return frames


def test_cli_exports_xors_whole_pass_as_a_gif_with_one_frame_per_step_plus_the_start(app, tmp_path, capsys,
                                                                                     monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["export", "xor", "--out", "pass.gif"]) == 0
    assert "wrote pass.gif" in capsys.readouterr().out
    steps = len(propscope.open_session("xor").steps)
    im = Image.open(tmp_path / "pass.gif")
    assert im.format == "GIF" and im.is_animated and im.size == (1280, 720)
    assert im.n_frames == steps + 1 == 11
    assert im.info["duration"] == 800 and im.info["loop"] == 0
    frames = gif_frames(tmp_path / "pass.gif")
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(frames)), "every step changes it"


def test_a_step_range_and_a_folder_of_numbered_pngs_at_a_chosen_size(app, tmp_path) -> None:
    s = propscope.open_session("xor")
    folder = export_pass(s, tmp_path / "frames", ExportOptions(size=(640, 360), first=2, last=5))
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["frame-000.png", "frame-001.png", "frame-002.png", "frame-003.png"]
    assert Image.open(folder / "frame-000.png").size == (640, 360)
    assert parse_steps("3:") == (3, None) and parse_steps(":4") == (0, 4) and parse_steps("5") == (5, 5)


def test_projector_style_is_high_contrast(app, tmp_path) -> None:
    s = propscope.open_session("xor")
    plain = export(s, tmp_path / "plain.png", ExportOptions(size=(640, 360)), cursor=3)
    loud = export(s, tmp_path / "loud.png", ExportOptions(size=(640, 360), projector=True), cursor=3)
    corner = (2, 2)
    assert Image.open(loud).convert("RGB").getpixel(corner) == (255, 255, 255)  # the projector's white ground
    assert Image.open(plain).convert("RGB").getpixel(corner) != (255, 255, 255)


@pytest.mark.parametrize("target", ["xor", "perceptron", "classifier"])
def test_svg_export_is_valid_svg_with_every_node_label(app, tmp_path, target: str) -> None:
    s = propscope.open_session(target)
    s.seek(len(s.steps) // 2)
    out = export(s, tmp_path / "graph.svg")
    root = ET.parse(out).getroot()  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg" and root.get("viewBox")
    texts = {"".join(e.itertext()).strip() for e in root.iter(f"{SVG}text")}
    missing = [n.name for n in s.graph if n.name not in texts]
    assert not missing, missing


def test_the_formula_as_latex_carries_the_steps_own_numbers(app, tmp_path) -> None:
    s = propscope.open_session("xor", dtype="float64")
    s.seek(7)  # backward at final_output (a sigmoid)
    record = s.current
    tex = formula_latex(s)
    assert r"\begin{align*}" in tex and r"\frac{\partial L}{\partial \mathrm{final\_input}}" in tex
    term = record.terms[0]
    assert f"{float(np.asarray(term.contribution)[0, 0]):.6g}" in tex
    assert f"{float(np.asarray(record.upstream)[0, 0]):.6g}" in tex
    assert main(["export", "xor", "--out", str(tmp_path / "f.tex"), "--step", "7"]) == 0
    assert (tmp_path / "f.tex").read_text() == formula_latex(s)
    assert main(["export", "xor", "--out", str(tmp_path / "f.png"), "--step", "7", "--formula"]) == 0
    assert Image.open(tmp_path / "f.png").size[0] == 1280


@pytest.mark.skipif(importlib.util.find_spec("imageio_ffmpeg") is None, reason="needs propscope[video]")
def test_mp4_where_an_encoder_is_installed(app, tmp_path) -> None:
    out = export(propscope.open_session("xor"), tmp_path / "pass.mp4", ExportOptions(size=(320, 180)))
    head = out.read_bytes()[:12]
    assert head[4:8] == b"ftyp"
    assert not list(tmp_path.glob("*.part.mp4"))


def test_cancel_leaves_nothing_behind(app, tmp_path) -> None:
    s = propscope.open_session("xor")
    with pytest.raises(ExportCancelled):
        export_pass(s, tmp_path / "pass.gif", ExportOptions(size=(320, 180)), progress=lambda done, total: done < 3)
    assert not (tmp_path / "pass.gif").exists()
    with pytest.raises(ExportCancelled):
        export_pass(s, tmp_path / "frames", ExportOptions(size=(320, 180)), progress=lambda done, total: done < 3)
    assert not list((tmp_path / "frames").iterdir())


def test_export_mistakes_are_one_line(app, tmp_path, capsys) -> None:
    assert main(["export", "xor", "--out", str(tmp_path / "x.doc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".gif, .mp4 or a folder" in err
    assert main(["export", "xor", "--out", str(tmp_path / "x.gif"), "--steps", "4:99"]) == 2
    assert "outside the pass (0 to 10)" in capsys.readouterr().err


def test_the_copy_renders_without_moving_the_users_cursor(app, tmp_path) -> None:
    s = propscope.open_session("xor")
    s.seek(4)
    copy = session_copy(s)
    export_pass(copy, tmp_path / "p.gif", ExportOptions(size=(320, 180)))
    assert s.cursor == 4 and copy.cursor == len(s.steps)
    np.testing.assert_array_equal(copy.value("W1"), s.value("W1"))


def test_file_export_in_the_app_shows_progress_and_keeps_the_cursor(qtbot, tmp_path) -> None:
    from propscope.gui.main_window import MainWindow

    w = MainWindow(propscope.open_session("xor"), settings=None)
    qtbot.addWidget(w)
    w.bridge.session.seek(3)
    keys = {a.shortcut().toString() for a in (w.exports.svg_action, w.exports.png_action, w.exports.dialog_action)}
    assert keys == {"Ctrl+Shift+E", "Ctrl+Alt+E", "Ctrl+E"}
    run = w.exports.run("gif", tmp_path / "app.gif", ExportOptions(size=(320, 180)))
    done = []
    run.finished.connect(done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=20_000)
    assert done == [tmp_path / "app.gif"] and Image.open(done[0]).n_frames == 11
    assert w.bridge.session.cursor == 3
    assert w.exports.run("svg", tmp_path / "g.svg", ExportOptions()) == tmp_path / "g.svg"
    dialog = w.exports.open_dialog("frames")
    assert dialog.path.text().endswith("xor-frames") and dialog.last.value() == 10
    dialog.reject()
    cancelled = w.exports.run("frames", tmp_path / "never", ExportOptions(size=(320, 180)))
    qtbot.waitUntil(lambda: cancelled.dialog.value() >= 2, timeout=10_000)  # two frames written
    cancelled.cancel()
    assert cancelled.done and not list((tmp_path / "never").iterdir())
    w.close()


def _chain(n: int):  # type: ignore[no-untyped-def]
    from propscope.graph import Graph, Model

    g = Graph("chain")
    h = g.input("x", (2, 3))
    for i in range(n):
        h = g.add("tanh", h, name=f"t{i}", module=f"block{i // 10}")
    g.set_outputs(h)
    return Model(g, {}, batch={"x": np.ones((2, 3)), "y": np.zeros((2, 3))}, loss="mse")


def test_a_graph_too_big_to_read_whole_follows_the_step(app):
    """A ResNet's whole graph in 1280×720 is a strip with no label left to read: a frame shows the part around the
    step at a readable scale (the step's node in view), and `whole` keeps the whole strip."""
    from PySide6.QtCore import QRectF

    from propscope.gui.export.render import FOLLOW_SCALE, PassRenderer

    s = propscope.open_session(_chain(300))
    renderer = PassRenderer(s, (1280, 720))
    whole = renderer.scene.itemsBoundingRect()
    for cursor in (0, 150, len(s.steps)):
        renderer.move(cursor)
        view = renderer._around_step(whole, QRectF(0, 0, 1200, 600))
        assert 1200 / view.width() >= FOLLOW_SCALE - 1e-9
        node = s.steps[cursor - 1].node.name if cursor else s.graph.ops[0].name
        assert view.contains(renderer.scene.node_rect(node).center())
        assert whole.contains(view) or view.width() >= whole.width() or view.height() >= whole.height()
    small = PassRenderer(propscope.open_session("xor"), (1280, 720))
    xor_whole = small.scene.itemsBoundingRect()
    assert small._around_step(xor_whole, QRectF(0, 0, 1200, 600)) == xor_whole  # readable whole: whole


def test_the_command_exports_the_whole_graph_when_asked(app, tmp_path, capsys):
    path = tmp_path / "chain.propscope"
    from propscope.graph.readers import save_model

    save_model(_chain(300), path)
    assert main(["export", str(path), "--out", str(tmp_path / "near.png"), "--step", "100"]) == 0
    assert main(["export", str(path), "--out", str(tmp_path / "whole.png"), "--step", "100", "--whole"]) == 0
    near, whole = (np.asarray(Image.open(tmp_path / f).convert("L")) for f in ("near.png", "whole.png"))
    drawn = [float((img < 200).mean()) for img in (near, whole)]  # ink: labels and boxes read at scale, not a strip
    assert drawn[0] > 3 * drawn[1], drawn


def test_the_latex_is_plain_ascii_and_says_nan(app) -> None:
    """pdflatex stops at a raw "∂", "σ" or "−" inside \\text{}: every symbol of the catalog's formulas is a LaTeX
    command, and a NaN is \\text{NaN}, not "nan" (which reads as n·a·n)."""
    from propscope.graph.ops import CATALOG
    from propscope.gui.export.latex import SYMBOLS, _num, _text

    for op in CATALOG.values():
        for formula in (op.formula, *op.derivatives.values()):
            assert _text(formula).isascii(), formula
    assert not {c for op in CATALOG.values() for t in (op.formula, *op.derivatives.values()) for c in t
                if not c.isascii()} - set(SYMBOLS)
    assert _num(float("nan")) == r"\text{NaN}" and _num(float("-inf")) == r"-\infty"
    s = propscope.open_session("xor", dtype="float64")
    for step in range(1, len(s.steps) + 1):
        s.seek(step)
        assert formula_latex(s).isascii()

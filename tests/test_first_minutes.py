"""A new user's first ten minutes: the app starts (or says in one line what to install), mistakes get one
line, data that does not fit is refused, and the teaching details read right."""

from __future__ import annotations

import ast
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from propscope import open_session
from propscope.cli import main
from propscope.debugger.repl import DebuggerShell
from propscope.graph.datasets import DataError
from propscope.graph.errors import PropscopeError
from propscope.gui import system_libs

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own exits
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("propscope: error: "), err
    return lines[0]


# -- 1. a fresh machine launches ------------------------------------------------------------------------
@pytest.mark.slow
def test_screenshot_renders_offscreen_without_a_display(tmp_path: Path) -> None:
    """`propscope open xor --screenshot` with DISPLAY and QT_QPA_PLATFORM unset: Qt falls back to offscreen."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    shot = tmp_path / "a.png"
    done = subprocess.run([sys.executable, "-m", "propscope.cli", "open", "xor", "--screenshot", str(shot)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert done.stderr.strip() in ("", OFFSCREEN_NOISE) or OFFSCREEN_NOISE in done.stderr


def test_a_window_without_a_display_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    env: dict[str, str] = {}
    problem = system_libs.choose_platform(screenshot=False, environ=env)
    assert problem is not None and "--screenshot" in problem and "DISPLAY" in problem
    assert "QT_QPA_PLATFORM" not in env
    assert system_libs.choose_platform(screenshot=True, environ=env) is None
    assert env["QT_QPA_PLATFORM"] == "offscreen"


def test_missing_qt_libraries_are_named_with_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    absent = {"libxcb-cursor.so.0", "libxcb-icccm.so.4"}
    monkeypatch.setattr(system_libs, "loadable", lambda soname: soname not in absent)
    monkeypatch.setattr(sys, "platform", "linux")
    problem = system_libs.choose_platform(screenshot=False, environ={"DISPLAY": ":0"})
    assert problem is not None
    assert problem.endswith("install them with: sudo apt-get install -y libxcb-cursor0 libxcb-icccm4")
    # a screenshot on that machine needs none of them: it goes offscreen instead of failing
    env = {"DISPLAY": ":0"}
    assert system_libs.choose_platform(screenshot=True, environ=env) is None and env["QT_QPA_PLATFORM"] == "offscreen"
    # a platform the user chose is kept
    env = {"DISPLAY": ":0", "QT_QPA_PLATFORM": "vnc"}
    assert system_libs.choose_platform(screenshot=True, environ=env) is None and env["QT_QPA_PLATFORM"] == "vnc"


def test_the_package_list_covers_the_libraries_the_issue_met() -> None:
    packages = {*system_libs.GUI_LIBS.values(), *system_libs.XCB_LIBS.values()}
    assert {"libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1", "libxkbcommon-x11-0", "libegl1",
            "libgl1", "libfontconfig1", "libdbus-1-3"} <= packages
    assert system_libs.missing_packages(can_load=lambda _s: True) == []
    assert len(system_libs.missing_packages(can_load=lambda _s: False)) == len(packages)


def test_setup_checks_the_system_libraries_without_the_venv() -> None:
    """scripts/setup runs the check with the system's Python, before .venv exists: it must import nothing."""
    tree = ast.parse(Path(system_libs.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module or "." for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "ctypes", "os", "sys", "collections.abc"}, imported
    done = subprocess.run([sys.executable, "-I", system_libs.__file__], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) <= {*system_libs.GUI_LIBS.values(), *system_libs.XCB_LIBS.values()}
    setup = (Path(__file__).parents[1] / "scripts" / "setup").read_text()
    assert "propscope/gui/system_libs.py" in setup and "apt-get install" in setup


# -- 7. data that does not fit ------------------------------------------------------------------------
def test_three_classes_on_one_sigmoid_output_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "train", "xor", "--data", "spiral", "--epochs", "2")
    line = one_line(err)
    assert code == 2 and "epochs in" not in out
    assert "(200,)" in line and "(200, 1)" in line and "3 classes" in line and "cross_entropy" in line


def test_two_classes_on_one_sigmoid_output_still_train(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "train", "xor", "--data", "moons", "--epochs", "2")
    assert code == 0, err


def test_a_class_count_that_differs_from_the_logits_names_both(capsys: pytest.CaptureFixture[str]) -> None:
    logits = open_session("classifier").prediction_node.shape  # (N, 3)
    n = logits[0]
    with pytest.raises(DataError, match=r"0\.\.3 \(4 classes\).*logits \(\d+, 3\) have 3 classes"):
        open_session("classifier", data={"x": np.zeros((n, 2)), "y": np.arange(n) % 4})
    with pytest.raises(PropscopeError, match=r"one-hot with 4 classes, but the logits \(\d+, 3\) have 3"):
        open_session("classifier", data={"x": np.zeros((n, 2)), "y": np.eye(4)[np.arange(n) % 4]})


def test_summed_train_and_test_losses_are_compared_per_sample(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "train", "xor", "--data", "moons", "--test-fraction", "0.2", "--epochs", "3")
    assert code == 0, err
    assert "160 train, 40 test" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if "->" in line}
    loss_first = float(rows["loss"][1])
    per_sample_first = float(rows["loss/sample"][1])
    assert per_sample_first == pytest.approx(loss_first / 160, rel=1e-5)
    assert "test/sample" in rows and "test_loss" not in rows


# -- 8. teaching details -------------------------------------------------------------------------------
def test_history_to_a_missing_folder_fails_before_training(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "train", "xor", "--history", "/nonexistent/h.csv")
    assert code == 2 and out == ""  # nothing trained: no header, no progress
    assert "/nonexistent" in one_line(err)


def test_a_tolerance_that_is_not_a_number_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "gradcheck", "xor", "--tol", "abc")
    assert code == 2 and "usage" not in err
    line = one_line(err)
    assert "--tol" in line and "'abc'" in line and "propscope gradcheck --help" in line


def test_debug_print_without_a_name_gives_its_usage() -> None:
    out = io.StringIO()
    commands = io.StringIO("print\ngrad\ns\ns\np hidden_output\nquit\n")
    shell = DebuggerShell(open_session("xor"), stdin=commands, stdout=out)
    shell.cmdloop()
    text = out.getvalue()
    assert "*** usage: print NODE" in text and "*** usage: grad NODE" in text
    assert "no node named ''" not in text and "hidden_output = shape (4, 4)" in text


def test_explain_never_writes_minus_zero() -> None:
    s = open_session("xor", dtype="float64")
    s.run_to_end()
    explanation = s.explain("W1", (0, 1))
    # X[0] is 0: paths through it have a -0.0 factor product; none may print as "-0"
    for path in explanation.paths:
        assert "-0 " not in path.text() + " " and not path.text().endswith("-0")
    from propscope.debugger.explain import _num

    assert _num(-0.0) == "0" and _num(-1.5) == "-1.5"


def test_the_chain_rule_text_uses_no_product_dot_as_a_separator() -> None:
    from propscope.gui.inspect.chain_text import chain_rule_html
    from propscope.gui.theme import LIGHT

    s = open_session("xor", dtype="float64")
    s.run_to("final_output", "backward")
    text = chain_rule_html(s, "final_output", None, LIGHT.colors)
    assert "· ∂" not in text and "final_input ·" not in text
    assert "where z is final_input; ∂a/∂z = σ(z)(1 − σ(z))" in text
    s.seek(1)
    forward = chain_rule_html(s, "hidden_input", None, LIGHT.colors)
    assert "where x is X (4×2); W is W1 (2×4); b is b1 (1×4); z is hidden_input (4×4)" in forward


# -- the window: keys, help, explain, --dataset -------------------------------------------------------
@pytest.fixture
def window(qtbot):
    from propscope.gui.main_window import MainWindow

    w = MainWindow(open_session("xor", dtype="float64"), settings=None)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


@pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)
def test_no_two_actions_of_the_main_window_share_a_shortcut(window) -> None:
    from PySide6.QtGui import QAction, QKeySequence

    owners: dict[str, list[str]] = {}
    for action in {id(a): a for a in window.findChildren(QAction)}.values():
        for key in action.shortcuts():
            owners.setdefault(key.toString(QKeySequence.SequenceFormat.PortableText), []).append(action.text())
    assert len(owners) > 20, "the walk should see the window's actions"
    shared = {key: texts for key, texts in owners.items() if len(texts) > 1}
    assert not shared, f"shortcuts used twice: {shared}"
    assert any("Save as" in t for t in owners["Ctrl+Shift+S"])


@pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)
def test_help_has_the_keys_first_steps_and_about(window) -> None:
    import propscope
    from propscope.gui.help import shortcut_rows
    from propscope.gui.menus import menu_titled

    help_menu = menu_titled(window, "Help")
    texts = [a.text() for a in help_menu.actions()]
    assert texts == ["&Keys", "&First steps", "&About propscope"]
    pages = {}
    for action in help_menu.actions():
        action.trigger()
        pages[action.text()] = window.help_page.text.toPlainText()
        window.help_page.close()
    rows = dict(shortcut_rows(window))
    assert rows["Step"] == "F10, Right, PgDown" and rows["Projector mode"] == "F11"
    assert "Step" in pages["&Keys"] and "F10, Right, PgDown" in pages["&Keys"] and "right-click" in pages["&Keys"]
    assert "First steps" in pages["&First steps"] and "F10" in pages["&First steps"]
    assert propscope.__version__ in pages["&About propscope"]


@pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)
def test_explain_at_a_backward_step_explains_the_gradient_it_just_computed(qtbot, window) -> None:
    s = window.bridge.session
    s.run_to("final_output", "backward")  # a = σ(z): this step computes ∂L/∂z, z being final_input
    assert window.selection.node == "final_output"
    assert window.chain.explain_target() == ("final_input", (0, 0))
    assert window.chain.explain.text() == "Explain ∂L/∂final_input[0, 0]…"
    s.run_to("final_input", "backward")  # z = x·W + b: the parameter's gradient is the one training uses
    assert window.chain.explain_target() == ("W2", (0, 0))
    window.chain.explain.click()
    qtbot.waitUntil(lambda: getattr(window, "explain_dialog", None) is not None, timeout=10_000)
    assert "W2" in window.explain_dialog.text.toPlainText()
    window.explain_dialog.close()
    window.selection.select("W1", (1, 2))  # a node the user chose is still the one explained
    assert window.chain.explain_target() == ("W1", (1, 2))


@pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)
def test_open_with_a_dataset_and_no_training_steps_through_that_data(tmp_path: Path) -> None:
    from propscope.gui.app import run as run_app

    s = open_session("xor")
    assert run_app(s, screenshot=tmp_path / "moons.png", dataset="moons") == 0
    assert s.batch["X"].shape == (160, 2)  # moons, 200 points with 20% held out for testing


# -- 4. a default window that fits a laptop -------------------------------------------------------------
def test_the_first_window_fits_a_1366x768_laptop() -> None:
    from PySide6.QtCore import QRect

    from propscope.gui.docks import default_window_size

    w, h = default_window_size(QRect(0, 0, 1366, 738))  # 768 less a 30 px panel
    assert w <= 1366 and h <= 738 - 30
    assert default_window_size(QRect(0, 0, 2560, 1400)) == (1400, 900)
    assert default_window_size(None) == (1400, 900)


def test_epoch_ticks_are_thinned_until_their_labels_fit(qtbot) -> None:
    from PySide6.QtGui import QFontMetrics

    from propscope.gui.plot_style import NumberAxis

    axis = NumberAxis("bottom")
    width = 180.0  # a narrow plot: pyqtgraph alone writes "20004000600080000"
    levels = axis.tickSpacing(0, 20_000, width)
    metrics = QFontMetrics(axis.font())
    label = metrics.horizontalAdvance("20000")
    for spacing, _offset in levels:
        assert spacing * width / 20_000 > label, f"ticks every {spacing} leave their labels overlapping"
    assert NumberAxis("bottom").tickSpacing(0, 10, 800)[0][0] <= 5  # a wide plot keeps its ticks


@pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)
def test_the_training_plots_forget_the_last_models_ranges(qtbot, window) -> None:
    panel = window.training
    view = panel.loss_plot.plot.getPlotItem().getViewBox()
    view.setRange(xRange=(5_000, 9_000), yRange=(100, 200), padding=0)
    panel.loss_plot.follower.following = False
    window.install(open_session("classifier"))
    assert panel.loss_plot.follower.following and view.autoRangeEnabled()[1]
    assert view.viewRange()[0][1] < 5

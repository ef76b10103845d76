"""Five faults from a hunt through the app with real models, each driven through the real MainWindow: the Diff dock
no longer makes the window wider than a 1024 px screen; Explain refuses at once (naming what to pick instead) where
its paths fan out past the limit; nothing replaces the session while a job runs, and closing the window ends its
jobs' threads; the training dock's "Log scale" reads whole; Compare backends at step 0 says nothing is computed."""

from __future__ import annotations

import gc
import threading
import time

import pytest
from PySide6.QtWidgets import QMenu, QWidget

import propscope
from propscope.backends import get_backend
from propscope.debugger import explain as explain_module
from propscope.debugger.diff import diff_backends
from propscope.debugger.explain import explain_cost
from propscope.gui.diff.view import NOTHING_COMPUTED
from propscope.gui.diff.wiring import diff_view
from propscope.gui.jobs import Job
from propscope.gui.main_window import MainWindow

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = pytest.mark.qt_log_ignore(OFFSCREEN_NOISE)
ROOM = (1024, 768)


def window(qtbot, example: str = "cnn", size: tuple[int, int] = ROOM, projector: bool = False) -> MainWindow:
    w = MainWindow(propscope.open_session(example), settings=None)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    if projector:
        w.set_projector(True, full_screen=False)
        qtbot.waitUntil(lambda: not w.projector._rescale.isActive(), timeout=2000)
    return w


def settle(qtbot, w: MainWindow) -> None:
    qtbot.waitUntil(lambda: not w.projector._rescale.isActive(), timeout=2000)
    for _ in range(3):  # the layouts a new minimum height asks for, then the window's
        qtbot.wait(30)


def overlapping(widgets: list[QWidget]) -> list[tuple[str, str]]:
    """Pairs of visible widgets (of one parent) drawn over each other."""
    shown = [x for x in widgets if x.isVisible() and x.width() > 0 and x.height() > 0]
    return [(a.objectName() or type(a).__name__, b.objectName() or type(b).__name__)
            for i, a in enumerate(shown) for b in shown[i + 1:] if a.geometry().intersects(b.geometry())]


# -- 1. the Diff dock fits a 1024-wide window --------------------------------------------------------------
@pytest.mark.parametrize("projector", [False, True], ids=["normal", "projector"])
def test_the_window_stays_1024_wide_with_the_diff_dock_open(qtbot, projector: bool) -> None:
    """The A/B/compare/buttons row in one line made the Diff dock at least 780 px wide, and A, B and A − B's titles
    in the inspector 633: the window could not be narrower than 1419 px. Now the controls wrap, nothing of the
    dock is drawn over anything else, and the window keeps the room's size."""
    w = window(qtbot, projector=projector)
    s = w.bridge.session
    s.run_to_end()
    w.show_comparison(diff_backends(s, get_backend("numpy", "float32"), s.cursor))  # as Ctrl+B shows it
    view = diff_view(w)
    view.b.set_file("a_model_file_with_a_long_name_as_people_keep_them.propscope")  # the widest the row gets
    w.selection.select(s.graph.parameters[0].name)
    w.resize(*ROOM)
    settle(qtbot, w)
    assert w.diff_dock.isVisible() and view.comparison is not None
    assert w.minimumSizeHint().width() <= ROOM[0], w.minimumSizeHint()
    assert (w.width(), w.height()) == ROOM
    controls = [view.a, view.b, view.what.parentWidget(), view.compare, view.backends, view.clear_button]
    assert overlapping([*controls, view.summary, view.legend]) == []
    assert max(c.geometry().right() for c in controls if c.isVisible()) < view.width()
    assert view.summary.geometry().top() >= max(c.geometry().bottom() for c in controls if c.isVisible())
    w.close()


def test_compare_backends_before_the_first_step_says_nothing_is_computed_yet(qtbot) -> None:
    """At step 0 no op has run on either backend: "largest difference 0" read as a verdict; the dock and the status
    bar say there is nothing to compare yet."""
    w = window(qtbot)
    s = w.bridge.session
    assert s.cursor == 0
    w.show_comparison(diff_backends(s, get_backend("numpy", "float32"), 0))
    view = diff_view(w)
    assert NOTHING_COMPUTED in view.summary.text() and "largest difference" not in view.summary.text()
    qtbot.waitUntil(lambda: NOTHING_COMPUTED in w.status_message.text(), timeout=2000)
    assert "largest difference" not in w.status_message.text()
    s.run_to_end()  # once stepped, the verdict as before
    w.show_comparison(diff_backends(s, get_backend("numpy", "float32"), s.cursor))
    assert "largest difference" in view.summary.text() and NOTHING_COMPUTED not in view.summary.text()
    qtbot.wait(20)
    assert w.status_message.text().startswith(f"Compared at step {s.cursor}: largest difference")
    w.close()


# -- 2. Explain answers at once ------------------------------------------------------------------------------
def explained_calls(monkeypatch: pytest.MonkeyPatch, session, name: str, index: tuple[int, ...]) -> int:  # type: ignore[no-untyped-def]
    """How many VJPs and forward passes explaining the element really takes."""
    counted = [0]
    tick = explain_module._Jacobians._tick

    def counting(self) -> None:  # type: ignore[no-untyped-def]
        counted[0] += 1
        tick(self)

    monkeypatch.setattr(explain_module._Jacobians, "_tick", counting)
    explanation = session.explain(name, index)
    monkeypatch.setattr(explain_module._Jacobians, "_tick", tick)
    assert explanation.agrees()
    return counted[0]


def test_the_estimate_counts_no_more_work_than_explaining_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimate is a floor (it refuses only what cannot finish), and it sees the fan-out: the first
    convolution's weight reaches far more than the last layer's."""
    s = propscope.open_session("cnn")
    s.run_to_end()
    first, last = s.graph.parameters[0], s.graph.parameters[-1]
    costs = {}
    for p in (first, last):
        index = (0,) * len(p.shape)
        costs[p.name] = explain_cost(s, p.name, index)
        assert costs[p.name].complete
        assert 0 < costs[p.name].calls <= explained_calls(monkeypatch, s, p.name, index), p.name
    assert costs[first.name].elements > costs[last.name].elements
    assert costs[first.name].calls > costs[last.name].calls


def test_explain_past_the_limit_is_refused_at_once_in_one_line(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the limit below what any element costs, the button is answered by a dialog at once, without any of the
    work (no Jacobian is made), in one sentence that says why and what to do instead."""
    w = window(qtbot)
    s = w.bridge.session
    s.run_to_end()
    s.seek(len(s.steps) - 1)  # the last backward step: the first layer's gradient, whose paths fan out most
    monkeypatch.setattr(explain_module, "ESTIMATE_REFUSES_ABOVE", 0.0)

    def no_work(*_args: object) -> None:
        raise AssertionError("explain started the work it refused")

    monkeypatch.setattr(explain_module._Jacobians, "__init__", no_work)
    errors: list[tuple[str, str]] = []
    monkeypatch.setattr(w, "show_error", lambda title, text: errors.append((title, text)))
    target = w.chain.explain_target()
    assert target is not None
    began = time.monotonic()
    w.chain.explain.click()
    qtbot.waitUntil(lambda: bool(errors) and not w.jobs, timeout=10000)
    assert time.monotonic() - began < 5
    title, text = errors[0]
    assert title == "Cannot explain this gradient" and "\n" not in text
    assert text.startswith(f"explaining {target[0]}[") and "past the 0 s limit" in text
    assert "nearer the loss" in text and "smaller input" in text
    w.close()


def test_explain_on_a_small_net_still_explains(qtbot) -> None:
    w = window(qtbot, "xor")
    s = w.bridge.session
    s.run_to_end()
    name = s.graph.parameters[0].name
    assert explain_cost(s, name, (0, 0)).seconds < explain_module.ESTIMATE_REFUSES_ABOVE
    job = w.explain(name, (0, 0))
    assert job is not None
    qtbot.waitUntil(lambda: getattr(w, "explain_dialog", None) is not None, timeout=10000)
    w.explain_dialog.close()
    w.close()


@pytest.mark.slow
@pytest.mark.torch
def test_resnet18_refuses_an_early_weight_at_once_and_names_its_head() -> None:
    """The hunt's case: ResNet-18 at 64 px, an early convolution's weight. It waited 20 s for the refusal."""
    import zoo

    if zoo.torchvision_models() is None:
        pytest.skip("torchvision is not installed")
    s = propscope.open_session("torchvision:resnet18@64")
    s.run_to_end()
    began = time.monotonic()
    with pytest.raises(explain_module.ExplainError) as info:
        s.explain("layer1.0.conv1.weight", (0, 0, 0, 0))
    assert time.monotonic() - began < 5
    assert "explain fc.weight (nearer the loss)" in str(info.value) and "\n" not in str(info.value)
    assert s.explain("fc.weight", (0, 0)).agrees()


# -- 3. jobs and the session ---------------------------------------------------------------------------------
def session_ways(w: MainWindow) -> dict[str, bool]:
    """Whether each way to another session (or its data, backend, loss) is enabled."""
    menus = {a.menu().objectName(): a.menu().isEnabled() for a in w.file_menu.actions()
             if isinstance(a.menu(), QMenu)}
    return {"open": w.open_action.isEnabled(), "architecture": w.architecture_action.isEnabled(),
            "data": w.data_action.isEnabled(), "recent": menus["recentMenu"], "lessons": menus["lessonsMenu"],
            "example": w.example_box.isEnabled(), "backend": w.backend_box.isEnabled(),
            "loss": w.loss_menu.isEnabled()}


def test_while_a_job_runs_nothing_can_replace_the_session(qtbot) -> None:
    """Open architecture by name (Ctrl+Shift+O) stayed enabled while a model loaded: a second open replaced the
    model, and the last to finish won."""
    w = window(qtbot, "xor")
    assert all(session_ways(w).values())
    release = threading.Event()
    job = w._start(Job("Loading…", lambda: release.wait(10), w), lambda _r: None, "Cannot")
    assert not any(session_ways(w).values()), session_ways(w)
    w.architecture_action.trigger()  # its shortcut does nothing while disabled
    assert getattr(w, "architecture_dialog", None) is None
    release.set()
    qtbot.waitUntil(lambda: not job.running, timeout=5000)
    assert all(session_ways(w).values())
    w.close()


def test_closing_the_window_cancels_its_jobs_and_lets_their_threads_end(qtbot) -> None:
    """A gradient check running when the window closed went on in its thread (a notebook using
    `propscope.show(..., block=False)` then shares the session with it); the collector stayed off meanwhile."""
    w = window(qtbot, "xor")
    stop = threading.Event()
    started = threading.Event()

    def work() -> int:  # checks its stop event between pieces of work, as the gradient check does
        started.set()
        while not stop.is_set():
            time.sleep(0.01)
        return 0

    job = Job("Checking…", work, w)
    job.cancelled.connect(stop.set)
    w._start(job, lambda _r: None, "Cannot")
    assert started.wait(5)
    worker = job._worker
    assert worker is not None and worker.is_alive() and not gc.isenabled()
    w.close()
    assert not worker.is_alive() and job.was_cancelled
    assert gc.isenabled()


# -- 4. the Training dock's "Log scale" ----------------------------------------------------------------------
@pytest.mark.parametrize("size", [ROOM, (1920, 1080)], ids=["1024x768", "1920x1080"])
@pytest.mark.parametrize("projector", [False, True], ids=["normal", "projector"])
def test_log_scale_reads_whole_beside_its_buttons(qtbot, size: tuple[int, int], projector: bool) -> None:
    """The checkbox read "Log scal" in a column the CSV… and PNG… buttons shared; in projector mode the columns'
    captions, a word a line, grew the window, its type with it, and the dock again, past any screen."""
    w = window(qtbot, "xor", size, projector)
    if w.training_dock.isHidden():  # projector mode hides it: View ▸ Training brings it back
        w.training_dock.toggleViewAction().trigger()
    w.training_dock.raise_()
    settle(qtbot, w)
    plot = w.training.loss_plot
    box = plot.log_scale
    assert (w.width(), w.height()) == size and w.minimumSizeHint().height() <= size[1]
    assert box.isVisible() and box.width() >= box.sizeHint().width()
    assert overlapping([box, plot.csv_button, plot.png_button]) == []
    for button in (plot.csv_button, plot.png_button):
        assert button.isVisible() and button.width() >= button.sizeHint().width()
        assert button.geometry().right() < plot.width() and button.geometry().bottom() < plot.height()
    w.close()


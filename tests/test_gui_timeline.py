"""The timeline under the canvas: scrubbing shows a recorded epoch everywhere, keys, playback, the dock's budget."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt

import propscope
from propscope.cli import main
from propscope.gui.main_window import MainWindow

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = [pytest.mark.qt_log_ignore(OFFSCREEN_NOISE), pytest.mark.qt_log_level_fail("WARNING")]


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat)


def make_window(qtbot, settings, session):  # type: ignore[no-untyped-def]
    w = MainWindow(session, settings=settings)
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    return w


def fresh(name: str, epochs: int) -> dict[str, np.ndarray]:
    s = propscope.open_session(name, dtype="float64")
    if epochs:
        s.train(epochs)
    return s.parameters_numpy()


def test_scrubbing_a_run_file_shows_that_epoch_everywhere(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run.propscope"
    assert main(["train", "xor", "--epochs", "300", "--snapshots", "20", "--out", str(run)]) == 0
    s = propscope.open_session(run, dtype="float64")
    w = make_window(qtbot, settings, s)
    bar = w.timeline
    assert bar.isVisible() and bar.epochs == s.snapshots.epochs and bar.slider.maximum() == 19
    s.run_to_end()
    w.selection.select("W1")
    k = bar.epochs[7]
    bar.slider.setValue(7)
    assert s.epoch == k and f"epoch {k} / 300" in bar.label.text()
    want = fresh("xor", k)
    assert all(np.array_equal(s.parameters_numpy()[n], v) for n, v in want.items())
    # the views read the session: the inspector's numbers and the neuron view's weights are epoch k's
    assert s.cursor == len(s.steps)  # the cursor stayed: the gradient shown is epoch k's gradient
    assert bar.markers.lines[0].isVisible() and bar.markers.lines[0].value() == k
    # stepping backward and forward works on those parameters
    s.step_back()
    s.step()
    fresh_session = propscope.open_session("xor", dtype="float64")
    fresh_session.set_params(want)
    fresh_session.run_to_end()
    assert np.array_equal(s.grad("W1"), fresh_session.grad("W1"))


def test_keys_move_between_recorded_epochs_and_are_free(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    s = propscope.open_session("xor", dtype="float64")
    s.train(50, snapshots=10)
    w = make_window(qtbot, settings, s)
    bar = w.timeline
    taken = {}
    for act in w.findChildren(type(bar.next_action)):
        for seq in act.shortcuts():
            if seq.toString():
                key = seq.toString()
                assert key not in taken, f"{key} is both {taken.get(key)} and {act.text()}"
                taken[key] = act.text()
    bar.show_index(0)
    w.canvas.setFocus()
    qtbot.keyClick(w.canvas, Qt.Key.Key_BracketRight)
    assert s.epoch == bar.epochs[1]
    qtbot.keyClick(w.canvas, Qt.Key.Key_End, Qt.KeyboardModifier.AltModifier)
    assert s.epoch == 50
    qtbot.keyClick(w.canvas, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    assert s.epoch == bar.epochs[-2]


def test_playback_walks_to_the_end(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    s = propscope.open_session("xor", dtype="float64")
    s.train(30, snapshots=6)
    w = make_window(qtbot, settings, s)
    bar = w.timeline
    bar.speed.setValue(100)
    bar.show_index(0)
    bar.play_button.setChecked(True)
    seen = []
    bar.epochShown.connect(seen.append)
    qtbot.waitUntil(lambda: not bar.playing, timeout=5000)
    assert seen == bar.epochs[1:] and s.epoch == 30


def test_scrub_redraws_within_50_ms_of_gui_cpu(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    """The GUI thread's CPU per scrub (what the scrub itself costs; wall time is in bench_timeline.py)."""
    for name in ("xor", "classifier"):
        s = propscope.open_session(name)
        s.train(400, snapshots=12)
        w = make_window(qtbot, settings, s)
        s.seek(s.n_forward + 1)
        qtbot.wait(10)
        costs = []
        for i in range(len(w.timeline.epochs)):
            start = time.thread_time()
            w.timeline.show_index(i)
            qtbot.wait(0)
            w.repaint()
            costs.append(time.thread_time() - start)
        assert sorted(costs)[len(costs) // 2] < 0.050, (name, costs)
        w.close()


def test_training_in_the_app_records_within_the_dock_budget(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    s = propscope.open_session("xor", dtype="float64")
    w = make_window(qtbot, settings, s)
    controls = w.training.snapshot_controls
    assert "0 recorded" in controls.usage.text()
    controls.count.setValue(25)
    controls.budget.setValue(1)
    assert s.snapshot_settings.count == 25 and s.snapshot_settings.budget_bytes == 2**20
    assert w.training.start(200)
    runner = w.training.runner
    qtbot.waitUntil(lambda: not runner.busy and runner.state == "finished", timeout=30_000)
    qtbot.waitUntil(lambda: w.timeline.slider.isEnabled(), timeout=5000)
    assert len(s.snapshots) == 25 and s.snapshots.epochs[-1] == 200
    assert "25 recorded" in controls.usage.text() and "of 1 MiB" in controls.usage.text()
    w.timeline.show_epoch(s.snapshots.epochs[5])
    assert np.array_equal(s.parameters_numpy()["W1"], s.snapshots[s.snapshots.epochs[5]].params["W1"])
    w.training.reset.click()
    qtbot.waitUntil(lambda: s.snapshots is None, timeout=5000)
    assert not w.timeline.slider.isEnabled()
    controls.record.setChecked(False)
    assert s.snapshot_settings is None


def test_play_after_scrubbing_back_trains_on_from_that_epoch(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    s = propscope.open_session("xor", dtype="float64")
    w = make_window(qtbot, settings, s)
    runner = w.training.runner
    w.training.snapshot_controls.count.setValue(1000)  # every epoch

    def train(epochs: int) -> None:
        assert w.training.start(epochs)
        qtbot.waitUntil(lambda: not runner.busy and runner.state == "finished", timeout=30_000)

    train(30)
    assert runner.log.n == 30 and s.snapshots.epochs[-1] == 30
    assert w.timeline.show_epoch(12)
    said: list[str] = []
    w.timeline.message.connect(said.append)
    train(8)
    # one run of 20 epochs: the snapshots, the loss plot's log and the parameters (full-batch SGD: exact)
    assert s.snapshots.epochs == list(range(21)) and w.timeline.epochs == list(range(21))
    assert runner.epochs_done == 20 and list(runner.log.x) == list(range(20))
    fresh = propscope.open_session("xor", dtype="float64")
    losses = fresh.train(20).loss
    assert list(runner.log.loss) == losses and s.snapshots.loss == losses
    assert all(np.array_equal(s.parameters_numpy()[k], v) for k, v in fresh.parameters_numpy().items())
    assert said == ["Training on from epoch 12: the 18 recorded epochs after it are dropped"]


def test_play_after_scrubbing_back_says_that_adams_moments_start_again(qtbot, settings) -> None:  # type: ignore[no-untyped-def]
    """The snapshots hold parameters, not the optimizer's state: a branch with Adam is not the run it would have
    been, and the message says so (plain SGD, above, continues exactly and says nothing of it)."""
    s = propscope.open_session("xor", dtype="float64")
    w = make_window(qtbot, settings, s)
    runner = w.training.runner
    w.training.snapshot_controls.count.setValue(1000)
    w.training.form.load("adam", 0.05, 10, None)

    def train(epochs: int) -> None:
        assert w.training.start(epochs)
        qtbot.waitUntil(lambda: not runner.busy and runner.state == "finished", timeout=30_000)

    train(10)
    assert w.timeline.show_epoch(4)
    said: list[str] = []
    w.timeline.message.connect(said.append)
    train(3)
    assert said == ["Training on from epoch 4: the 6 recorded epochs after it are dropped; "
                    "Adam's running averages start again from zero"]
    assert runner.optimizer is not None and runner.optimizer.steps == 3  # a fresh Adam, three steps in


def test_play_after_scrubbing_a_run_file_back_draws_its_loss_up_to_there(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "run.propscope"
    assert main(["train", "xor", "--epochs", "40", "--snapshots", "41", "--out", str(run)]) == 0
    s = propscope.open_session(run, dtype="float64")
    w = make_window(qtbot, settings, s)
    runner = w.training.runner
    assert w.timeline.show_epoch(25)
    assert w.training.start(5)
    qtbot.waitUntil(lambda: not runner.busy and runner.state == "finished", timeout=30_000)
    assert list(runner.log.x) == list(range(30)) and s.snapshots.epochs[-1] == 30
    assert list(runner.log.loss) == propscope.open_session("xor", dtype="float64").train(30).loss


def test_the_timeline_takes_no_step_keys(qtbot) -> None:
    """A presenter remote's PageDown steps even with the timeline under the canvas: its controls take no focus."""
    from PySide6.QtCore import Qt

    import propscope
    from propscope.gui.main_window import MainWindow

    w = MainWindow(propscope.open_session("xor"), settings=None)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)  # window shortcuts (the step keys) need the active window
    bar = w.timeline
    for widget in (bar.slider, bar.speed, bar.play_button):
        assert widget.focusPolicy() == Qt.FocusPolicy.ClickFocus
    assert w.focusWidget() not in (bar.slider, bar.speed, bar.play_button)
    qtbot.keyClick(w, Qt.Key.Key_PageDown)
    assert w.bridge.session.cursor == 1
    w.close()


def test_projector_mode_gives_the_timeline_room_back_until_there_is_a_run(qtbot) -> None:
    import propscope
    from propscope.gui.main_window import MainWindow

    w = MainWindow(propscope.open_session("xor"), settings=None)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    assert w.timeline.isVisible()  # a trainable network: the bar waits for its first run
    w.set_projector(True, full_screen=False)
    assert not w.timeline.isVisible()  # nothing recorded: the room needs the height
    assert not w.navigation.minimap.wanted  # nor a minimap over the nodes
    w.set_projector(False)
    assert w.timeline.isVisible() and w.navigation.minimap.wanted
    w.close()

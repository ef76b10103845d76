"""Live training in the app: a worker trains, the plots show the trainer's history, the window stays live."""

from __future__ import annotations

import csv
import time

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QSettings, Qt, QTimer
from PySide6.QtGui import QImage

import propscope
from propscope import cli
from propscope.backends import get_backend
from propscope.debugger import Session
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.gui.inspect.neuron_view import NEGATIVE, POSITIVE
from propscope.gui.main_window import MainWindow
from propscope.gui.training.frame_budget import FrameBudget
from propscope.gui.training.output_grid import OutputGrid

OFFSCREEN_NOISE = "This plugin does not support propagateSizeHints"
pytestmark = [pytest.mark.qt_log_ignore(OFFSCREEN_NOISE), pytest.mark.qt_log_level_fail("WARNING")]
LONG = 10_000_000  # epochs for a run that only a pause or a stop ends


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat)


def make_window(qtbot, settings, target="xor", session=None):
    w = MainWindow(session or propscope.open_session(target), settings=settings)
    qtbot.addWidget(w)
    w.resize(1300, 850)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow)
    w.training_dock.raise_()
    return w


@pytest.fixture
def window(qtbot, settings):
    w = make_window(qtbot, settings)
    yield w
    w.close()


def wait_state(qtbot, runner, *states, timeout=30_000):
    qtbot.waitUntil(lambda: runner.state in states and (states == ("paused",) or not runner.busy), timeout=timeout)


def rgb(color):
    return color.rgb() & 0xFFFFFF


def test_training_xor_from_the_dock_lowers_the_loss_and_the_plot_shows_exactly_the_history(qtbot, window):
    panel = window.training
    panel.form.epochs.setValue(2000)
    qtbot.mouseClick(panel.play, Qt.MouseButton.LeftButton)
    wait_state(qtbot, panel.runner, "finished")
    history = panel.runner.trainer.history
    assert len(history) == 2000
    assert history.loss[-1] < 0.8 * history.loss[0]
    curve = panel.loss_plot.train_curve
    assert np.array_equal(curve.xData, history.column("epoch").astype(np.float64))
    assert np.array_equal(curve.yData, np.log10(history.column("loss")).astype(np.float32))  # log scale: log10
    panel.loss_plot.log_scale.setChecked(False)
    assert np.array_equal(curve.yData, history.column("loss"))
    for name, norms in history.grad_norms.items():  # the gradient-health plot too (always log scale)
        assert np.array_equal(panel.health_plot.curves[name].yData, np.log10(norms).astype(np.float32))
    assert set(panel.health_plot.curves) == {"W1", "b1", "W2", "b2"}
    s = window.bridge.session
    assert s.cursor == 0 and "Trained 2,000 epochs" in panel.status.text()
    s.run_to_end()  # the session holds the trained parameters: its loss is the last epoch's after one more update
    assert float(s.value("loss")) < history.loss[0]


def test_pause_and_resume_then_step_through_the_paused_network(qtbot, window):
    panel, runner, s = window.training, window.training.runner, window.bridge.session
    initial = {k: v.copy() for k, v in s.params.items()}
    panel.form.epochs.setValue(LONG)
    qtbot.mouseClick(panel.play, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: runner.log.n > 200)
    qtbot.mouseClick(panel.pause, Qt.MouseButton.LeftButton)
    wait_state(qtbot, runner, "paused")
    assert not panel.pause.isEnabled() and panel.play.isEnabled()
    # the trainer still holds the session: nothing may swap its backend, dtype, model or data meanwhile
    assert not window.backend_box.isEnabled() and not window.dtype_box.isEnabled()
    assert not window.open_action.isEnabled() and not window.data_action.isEnabled()
    qtbot.wait(100)
    runner.pull()
    paused_at = runner.log.n
    qtbot.wait(150)
    runner.pull()
    assert runner.log.n == paused_at  # nothing trains while paused
    assert not np.array_equal(s.params["W1"], initial["W1"])
    # the session shows the paused parameters, ready to step: the first op is X @ W1 + b1 with them
    assert s.cursor == 0
    qtbot.keyClick(window, Qt.Key.Key_F10)
    assert s.cursor == 1
    expected = s.batch["X"].astype(np.float32) @ s.params["W1"] + s.params["b1"]
    assert np.allclose(s.value("hidden_input"), expected, rtol=1e-6)
    # one more epoch lets exactly one through
    qtbot.mouseClick(panel.one_epoch, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: runner.state == "paused" and (runner.pull() or True) and runner.log.n == paused_at + 1)
    qtbot.mouseClick(panel.play, Qt.MouseButton.LeftButton)  # resume
    qtbot.waitUntil(lambda: runner.log.n > paused_at + 100)
    assert runner.state == "running"
    qtbot.mouseClick(panel.reset, Qt.MouseButton.LeftButton)  # stops, then restores the initial parameters
    wait_state(qtbot, runner, "idle")
    assert window.backend_box.isEnabled() and window.open_action.isEnabled()
    assert all(np.array_equal(s.params[k], v) for k, v in initial.items())
    shown = panel.loss_plot.train_curve.xData
    assert runner.log.n == 0 and (shown is None or len(shown) == 0)


def test_the_event_loop_stays_responsive_while_training(qtbot, window):
    panel, runner, s = window.training, window.training.runner, window.bridge.session
    panel.form.epochs.setValue(LONG)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    panel.start()
    qtbot.waitUntil(lambda: runner.log.n > 100)
    timer.start()
    for _ in range(3):  # stepping keeps working on the old trace while the worker trains
        qtbot.keyClick(window, Qt.Key.Key_F10)
    qtbot.wait(1500)
    timer.stop()
    trained = runner.log.n
    runner.stop()
    wait_state(qtbot, runner, "stopped")
    gaps = np.diff(ticks) - 0.010  # latency beyond the timer's own interval
    assert len(gaps) > 50
    # the window answers while the worker trains: most ticks on time, none frozen (a timed bound loose enough for a
    # busy 2-core CI machine; the frame-time targets themselves are measured in benchmarks/)
    assert np.percentile(gaps, 90) < 0.050, f"90% of timer latencies under {1000 * np.percentile(gaps, 90):.0f} ms"
    assert gaps.max() < 0.500, f"worst timer latency {1000 * gaps.max():.0f} ms"
    assert s.cursor == 0 and trained > 1000  # training went on meanwhile (and its end reset the cursor)


def test_one_batch_steps_a_mini_batch_and_keeps_the_optimizer(qtbot, settings):
    window = make_window(qtbot, settings, "classifier")
    panel, runner, s = window.training, window.training.runner, window.bridge.session
    panel.form.batch.setValue(16)
    before = {k: v.copy() for k, v in s.params.items()}
    qtbot.mouseClick(panel.one_batch, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not runner.busy and runner.state == "finished")
    assert "One mini-batch of 16" in panel.status.text()
    assert not np.array_equal(s.params["W1"], before["W1"])
    assert runner.optimizer.steps == 1 and runner.log.n == 0  # not a whole epoch: no point on the epoch plot
    qtbot.mouseClick(panel.one_epoch, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not runner.busy and runner.log.n == 1)
    assert runner.optimizer.steps == 1 + 6  # the same Adam, its moments carried over: 90 samples = 6 batches
    window.close()


def model_predictions(session, params, points):
    """The network's output at `points`, computed by stepping a fresh session (not the grid's compiled program)."""
    model = session.model
    arrays = {**model.arrays, **{k: session.backend.to_numpy(v) for k, v in params.items()}}
    probe = Session(Model(model.graph, arrays, loss=None), session.backend, {"x": points}, loss="none")
    probe.run_to_end()
    logits = probe.value(probe.graph.output.name).astype(np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_decision_boundary_for_the_classifier_on_moons_matches_the_model(qtbot, settings):
    window = make_window(qtbot, settings, "classifier")
    panel, runner, s = window.training, window.training.runner, window.bridge.session
    panel.data_form.load("moons", {"n": 200, "noise": 0.1, "test_fraction": 0.2, "classes": 3}, 0)
    assert panel.apply_data()
    assert len(s.batch["x"]) == 160 and len(panel.test_batch["x"]) == 40
    panel.form.epochs.setValue(150)
    panel.start()
    wait_state(qtbot, runner, "finished")
    assert runner.log.has_test and np.isfinite(panel.loss_plot.test_curve.yData).all()
    view = panel.output_view
    grid = view.grid
    assert grid.kind == "plane" and view.scores.shape == (len(grid.points), 3)
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, len(grid.ys), 25), rng.integers(0, len(grid.xs), 25)
    points = np.stack([grid.xs[cols], grid.ys[rows]], axis=1)
    expected = model_predictions(s, s.params, points)
    shown = grid.image(view.scores)[rows, cols]
    assert np.allclose(shown, expected, atol=1e-5)
    assert np.array_equal(shown.argmax(axis=1), expected.argmax(axis=1))
    # the pixel drawn at (row, col) sits at that point of the plane
    for r, c in zip(rows[:5], cols[:5], strict=True):
        at = view.image.mapToView(QPointF(c + 0.5, r + 0.5))
        assert at.x() == pytest.approx(grid.xs[c], abs=1e-9) and at.y() == pytest.approx(grid.ys[r], abs=1e-9)
    assert len(view.train_points.data) == 160 and len(view.test_points.data) == 40
    window.close()


def test_1d_regression_shows_the_fitted_curve_over_the_data(qtbot, settings):
    rng = np.random.default_rng(0)
    g = Graph("curve")
    x = g.input("x", (8, 1))
    w1, b1, w2 = g.parameter("W1", (1, 12)), g.parameter("b1", (12,)), g.parameter("W2", (12, 1))
    g.set_outputs(g.add("matmul", g.add("tanh", g.add("linear", x, w1, b1, name="z1"), name="h1"), w2, name="out"))
    arrays = {"W1": rng.normal(size=(1, 12)), "b1": rng.normal(size=12), "W2": rng.normal(size=(12, 1)) / 3}
    model = Model(g, arrays, batch={"x": np.zeros((8, 1)), "y": np.zeros((8, 1))}, loss="mse")
    window = make_window(qtbot, settings, session=Session(model, get_backend("numpy", "float64")))
    panel, s = window.training, window.bridge.session
    panel.data_form.load("sine", {"n": 60, "noise": 0.05, "test_fraction": 0.25}, 0)
    assert panel.apply_data()
    panel.form.load("adam", 0.05, 100, None)
    panel.start()
    wait_state(qtbot, panel.runner, "finished")
    view = panel.output_view
    assert view.grid.kind == "line"
    xs, ys = view.curve.getData()
    probe = Session(Model(g, {k: np.asarray(v) for k, v in s.params.items()}), s.backend, {"x": xs[:, None]},
                    loss="none")
    probe.run_to_end()
    assert np.allclose(ys, probe.value("out")[:, 0])
    assert xs.min() <= s.batch["x"].min() and xs.max() >= s.batch["x"].max()
    assert len(view.train_points.data) == 45 and len(view.test_points.data) == 15
    assert "Fitted curve" in view.caption.text()
    window.close()


def test_the_output_grid_draws_the_live_parameters_it_is_given(qtbot, window):
    s = window.bridge.session
    grid = OutputGrid(s, s.batch["X"])
    zeros = {k: np.zeros_like(v) for k, v in s.params.items()}
    assert np.allclose(grid.evaluate(zeros), 0.5)  # sigmoid(0) everywhere
    assert not np.allclose(grid.evaluate(), 0.5)


def test_neuron_view_line_colours_follow_the_weights_signs_and_light_up_with_the_cursor(qtbot, window):
    view, s = window.neurons, window.bridge.session
    assert view.drawable and [layer.size for layer in view.layers] == [2, 4, 1]
    for li, weight in ((1, "W1"), (2, "W2")):
        w = s.params[weight]
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                assert rgb(view.edges[li][i][j].pen().color()) == rgb(POSITIVE if w[i, j] > 0 else NEGATIVE)
    assert {rgb(line.pen().color()) for row in view.edges[1] for line in row} == {rgb(POSITIVE), rgb(NEGATIVE)}
    s.run_to("hidden_output")
    assert view.lit_layer() == (1, "forward")
    pre, act = view.values_of(1)
    assert np.array_equal(pre, s.value("hidden_input")[0]) and np.array_equal(act, s.value("hidden_output")[0])
    assert view.texts[1][2][0].text() == propscope.gui.format.fmt_num(act[2], 2)
    view.sample.setValue(3)
    assert np.array_equal(view.values_of(1)[1], s.value("hidden_output")[3])
    view.by_gradient.setChecked(True)  # no gradient yet at a forward step: dotted grey lines
    assert view.edges[1][0][0].pen().style() == Qt.PenStyle.DotLine
    s.run_to_end()
    assert view.lit_layer() == (1, "backward")
    g = s.grad("W1")
    for i in range(2):
        for j in range(4):
            assert rgb(view.edges[1][i][j].pen().color()) == rgb(POSITIVE if g[i, j] > 0 else NEGATIVE)


def test_neuron_view_draws_the_ends_of_a_layer_above_64_and_says_so_for_graphs_that_are_not_dense(qtbot, settings):
    rng = np.random.default_rng(0)
    g = Graph("wide")
    x = g.input("x", (4, 2))
    w1, b1, w2 = g.parameter("W1", (2, 65)), g.parameter("b1", (65,)), g.parameter("W2", (65, 1))
    h = g.add("tanh", g.add("linear", x, w1, b1, name="z1"), name="h1")
    g.set_outputs(g.add("matmul", h, w2, name="out"))
    arrays = {"W1": rng.normal(size=(2, 65)), "b1": np.zeros(65), "W2": rng.normal(size=(65, 1))}
    model = Model(g, arrays, batch={"x": rng.normal(size=(4, 2)), "y": rng.normal(size=(4, 1))}, loss="mse")
    window = make_window(qtbot, settings, session=Session(model, get_backend("numpy", "float32")))
    view = window.neurons
    assert view.drawable and [layer.size for layer in view.layers] == [2, 65, 1]
    rows = view.rows[1]
    assert len(rows) < 65 and rows[0] == 0 and rows[-1] == 64  # the first and the last neurons, not the middle
    hidden = 65 - len(rows)
    assert view.marks[1] is not None and f"({hidden} of 65)" in view.marks[1].toolTip()
    assert f"h1: {len(rows)} of 65 neurons drawn" in view.caption.toolTip()
    s = window.bridge.session
    s.run_to("h1")
    assert view.neurons[1][-1].toolTip().startswith("h1[64], sample 0")  # the last circle is neuron 64
    assert f"a = {propscope.gui.format.fmt_num(s.value('h1')[0, 64])}" in view.neurons[1][-1].toolTip()
    window.open_example("cnn")
    qtbot.waitUntil(lambda: window.bridge.session.name == "cnn")
    assert not window.neurons.drawable and "conv2d" in window.neurons.message.text()
    window.close()


def test_a_nan_stops_training_names_the_op_and_selects_it(qtbot, window):
    panel, runner, s = window.training, window.training.runner, window.bridge.session
    x = s.batch["X"].copy()
    x[2, 1] = np.nan  # a bad sample: the first op that meets it makes NaN
    window.bridge.set_batch({"X": x, "y": s.batch["y"]})
    panel.form.epochs.setValue(100)
    qtbot.mouseClick(panel.play, Qt.MouseButton.LeftButton)
    wait_state(qtbot, runner, "diverged")
    text = panel.status.text()
    assert "hidden_input" in text and "linear" in text and "epoch 0" in text
    assert window.selection.node == "hidden_input"
    assert window.canvas.current_node() == "hidden_input"
    assert "hidden_input" in window.status_message.text()


def test_data_set_choice_and_bad_settings_are_explained(qtbot, window):
    panel, s = window.training, window.bridge.session
    panel.data_form.load("sine", {"n": 50}, 0)  # 1-D data cannot feed xor's two inputs
    assert not panel.apply_data()
    assert "Cannot use this data" in panel.status.text() and s.batch["X"].shape == (4, 2)
    panel.data_form.load("circles", {"n": 60, "noise": 0.05, "test_fraction": 0.25}, 3)
    assert panel.apply_data()
    assert s.batch["X"].shape == (45, 2) and s.graph["X"].shape == (45, 2)
    assert window.neurons.sample.maximum() == 44
    panel.form.lr.setText("fast")
    assert not panel.start() and "learning rate" in panel.status.text()
    panel.form.lr.setText("-1")
    assert not panel.start() and "learning rate must be >= 0" in panel.status.text()


def test_exports_write_the_plotted_history(qtbot, window, tmp_path):
    panel = window.training
    panel.form.epochs.setValue(30)
    panel.start()
    wait_state(qtbot, panel.runner, "finished")
    path = panel.loss_plot.export_csv(tmp_path / "loss.csv")
    with path.open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["epoch", "loss", "grad_norm:W1", "grad_norm:b1", "grad_norm:W2", "grad_norm:b2"]
    history = panel.runner.trainer.history
    assert [float(r[1]) for r in rows[1:]] == history.loss
    assert [float(r[2]) for r in rows[1:]] == history.grad_norms["W1"]
    assert panel.loss_plot.export_png(tmp_path / "loss.png")
    assert not QImage(str(tmp_path / "loss.png")).isNull()


def test_projector_mode_restyles_the_plots(qtbot, window):
    panel = window.training
    normal = panel.loss_plot.plot.getPlotItem().getAxis("left").style["tickFont"].pixelSize()
    window.set_projector(True)
    big = panel.loss_plot.plot.getPlotItem().getAxis("left").style["tickFont"].pixelSize()
    assert big > normal
    assert panel.loss_plot.train_curve.opts["pen"].widthF() > 1
    window.set_projector(False)


def test_the_frame_budget_spaces_costly_frames():
    budget = FrameBudget(share=0.05, max_rate_hz=30, min_rate_hz=2)
    budget.spent(0.001, now=0.0)  # cheap frames: 30 a second
    assert not budget.due(0.03) and budget.due(0.034)
    budget.restart()
    budget.add_paint(0.009)  # the paint that followed counts with the next frame
    budget.spent(0.001, now=1.0)  # 10 ms a frame at a 5% share: one frame each 200 ms
    assert not budget.due(1.19) and budget.due(1.201)
    budget.restart()
    budget.spent(0.5, now=2.0)  # however costly, at least two frames a second
    assert budget.due(2.5) and budget.rate_hz == 2


def test_open_train_screenshot_from_the_command_line(qapp, tmp_path, capsys):
    out = tmp_path / "train.png"
    argv = ["open", "classifier", "--train", "40", "--dataset", "moons", "--size", "1200x800", "--screenshot", str(out)]
    assert cli.main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert QImage(str(out)).width() == 1200
    assert cli.main(["open", "xor", "--train", "0", "--screenshot", str(out)]) == 2
    assert "at least 1 epoch" in capsys.readouterr().err


def test_the_bridge_throttles_loss_events_and_can_mute_them(qtbot):
    import threading

    from propscope.debugger.trainer import EpochRecord
    from propscope.gui.bridge import SessionBridge

    s = propscope.open_session("xor")
    bridge = SessionBridge(s)
    seen: list = []
    bridge.lossAppended.connect(seen.append)
    worker = threading.Thread(target=lambda: [s.loss_appended.emit(EpochRecord(i, float(i))) for i in range(5000)])
    worker.start()
    worker.join()
    qtbot.waitUntil(lambda: bool(seen) and seen[-1].epoch == 4999)
    assert len(seen) < 10  # one delivery per ~33 ms, carrying the latest record
    bridge.mute_losses(True)
    s.loss_appended.emit(EpochRecord(5000, 0.0))
    qtbot.wait(80)
    assert seen[-1].epoch == 4999 and len(s.loss_appended) == 0
    bridge.mute_losses(False)
    s.loss_appended.emit(EpochRecord(5001, 0.0))
    qtbot.waitUntil(lambda: seen[-1].epoch == 5001)

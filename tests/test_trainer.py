"""The trainer: the tutorial's XOR run reproduced epoch by epoch, live control, NaN hunting, settings checks."""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import propscope.debugger
from propscope.cli import main
from propscope.debugger import open_session
from propscope.debugger.trainer import EpochRecord, History, Trainer, TrainingDiverged, TrainingError
from propscope.graph import Graph, Model
from propscope.graph.datasets import make_dataset
from propscope.graph.errors import PropscopeError
from propscope.graph.readers import open_model


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return {name: np.array([float(r[i]) for r in rows[1:]]) for i, name in enumerate(rows[0])}


def _forward_xor(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    def sigmoid(z: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-z))

    return sigmoid(sigmoid(x @ arrays["W1"] + arrays["b1"]) @ arrays["W2"] + arrays["b2"])


# -- the tutorial, reproduced ----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_cli_train_xor_reproduces_the_tutorial(
    seed: int, tutorial: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = tutorial.xor_from_scratch(seed, epochs=10_000)
    history, model = tmp_path / "h.csv", tmp_path / "xor.propscope"
    code = main(["train", "xor", "--seed", str(seed), "--epochs", "10000", "--history", str(history),
                 "--out", str(model)])
    out = capsys.readouterr().out
    assert code == 0, out
    columns = _read_csv(history)
    assert list(columns) == ["epoch", "loss", "mse"]
    np.testing.assert_array_equal(columns["epoch"], np.arange(10_000))
    np.testing.assert_allclose(columns["mse"], ref.losses, rtol=1e-9, atol=0)
    np.testing.assert_allclose(columns["loss"], 2 * ref.losses, rtol=1e-9)  # ½ Σ (ŷ − y)² over 4 rows
    trained = open_model(model)
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(trained.arrays[name], getattr(ref, name), rtol=1e-9, atol=1e-12)
    # The reference prints the output of its last forward pass, made before its last update: epoch 9999's
    # network, whose MSE is the last row. After training, both networks (its final weights, ours) agree.
    assert np.mean(np.square(ref.y - ref.final_output)) == pytest.approx(columns["mse"][-1], rel=1e-9)
    x = ref.X.astype(float)
    np.testing.assert_allclose(_forward_xor(trained.arrays, x), ref.predict(x), rtol=1e-9)
    assert "predictions:" in out and "mse" in out


def test_xor_trains_with_the_tutorial_settings_by_default() -> None:
    s = open_session("xor", dtype="float64")
    trainer = Trainer(s)
    assert (trainer.epochs, trainer.optimizer.name, trainer.optimizer.hparams["lr"]) == (10_000, "sgd", 0.1)
    assert trainer.batch_size is None and trainer.metrics == ("mse",)


def test_xor_torch_trains_with_part_10_settings_by_default() -> None:
    trainer = Trainer(open_session("xor-torch", dtype="float64"))
    assert (trainer.epochs, trainer.optimizer.name, trainer.optimizer.hparams["lr"]) == (1_000, "adam", 0.1)


@pytest.mark.torch
def test_xor_torch_follows_torch_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Part 10's loop (nn.Linear, sigmoid, MSELoss, Adam lr 0.1) in float64: same losses, same final weights."""
    import torch

    s = open_session("xor-torch", dtype="float64", seed=3)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Sigmoid(), torch.nn.Linear(4, 1), torch.nn.Sigmoid())
    model = model.double()
    with torch.no_grad():
        for mine, theirs in (("layer1", model[0]), ("layer2", model[2])):
            theirs.weight.copy_(torch.from_numpy(s.params[f"{mine}.weight"]))
            theirs.bias.copy_(torch.from_numpy(s.params[f"{mine}.bias"]))
    x = torch.tensor(s.batch["x"], dtype=torch.float64)
    y = torch.tensor(s.batch["y"], dtype=torch.float64)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    losses = []
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    history = s.train(300)
    np.testing.assert_allclose(history.loss, losses, rtol=1e-8)
    np.testing.assert_allclose(s.params["layer2.weight"], model[2].weight.detach().numpy(), rtol=1e-8)


def test_classifier_learns_two_moons() -> None:
    data = make_dataset("moons", n=200, noise=0.1, seed=0)
    s = open_session("classifier", dtype="float64", seed=0, data=data.batch())
    history = s.train()
    assert history.columns == ["epoch", "loss", "accuracy"]
    assert history.metric_values["accuracy"][-1] >= 0.97
    s.seek(s.n_forward)  # the trace after training holds the final parameters
    logits = s.value(s.prediction_node.name)
    assert np.mean(np.argmax(logits, axis=1) == data.y) >= 0.97


def test_test_loss_and_csv_columns(tmp_path: Path) -> None:
    data = make_dataset("moons", n=120, noise=0.1, seed=1, test_fraction=0.25)
    s = open_session("classifier", dtype="float64", data=data.batch())
    history = s.train(40, optimizer="adam", lr=0.02, test=data.test_batch())
    assert history.columns == ["epoch", "loss", "test_loss", "accuracy"]
    assert len(history.test_loss) == 40 and history.test_loss[-1] < history.test_loss[0]
    path = history.to_csv(tmp_path / "h.csv")
    columns = _read_csv(path)
    assert list(columns) == history.columns
    np.testing.assert_array_equal(columns["test_loss"], history.test_loss)  # repr round-trips exactly
    assert isinstance(history[-1], EpochRecord) and history[-1].test_loss == history.test_loss[-1]


def test_session_after_training_holds_the_final_parameters() -> None:
    s = open_session("xor", dtype="float64")
    s.run_to_end()
    changes: list[str] = []
    s.trace_changed.connect(lambda: changes.append("trace"))
    s.params_changed.connect(lambda: changes.append("params"))
    records: list[EpochRecord] = []
    s.loss_appended.connect(records.append)
    history = s.train(25)
    assert s.history is history and len(records) == 25 and [r.epoch for r in records] == list(range(25))
    assert records[-1].loss == history.loss[-1] and records[-1].metrics["mse"] == history.metric_values["mse"][-1]
    assert "trace" in changes and "params" in changes and s.cursor == 0
    s.run_to_end()
    expected = _forward_xor(s.parameters_numpy(), s.batch["X"])
    np.testing.assert_allclose(s.value("final_output"), expected, rtol=1e-12)
    assert float(s.value("loss")) < history.loss[0]


def test_training_continues_from_the_last_parameters() -> None:
    a, b = open_session("xor", dtype="float64"), open_session("xor", dtype="float64")
    a.train(30, optimizer="sgd", lr=0.5)
    a.train(20, optimizer="sgd", lr=0.5)
    b.train(50, optimizer="sgd", lr=0.5)
    for name in b.params:
        np.testing.assert_allclose(a.params[name], b.params[name], rtol=1e-12)


# -- mini-batches ----------------------------------------------------------------------------------
def _moons_session(seed: int = 0) -> object:
    data = make_dataset("moons", n=100, noise=0.1, seed=seed)
    return open_session("classifier", dtype="float64", data=data.batch())


def test_mini_batches_are_shuffled_from_the_seed() -> None:
    runs = [_moons_session().train(5, batch_size=16, seed=seed) for seed in (4, 4, 5)]
    assert runs[0].loss == runs[1].loss
    assert runs[0].loss != runs[2].loss
    full = _moons_session().train(5)
    assert full.loss != runs[0].loss


def test_mini_batches_follow_the_sessions_seed_by_default() -> None:
    """A session opened with a seed shuffles its mini-batches from that seed unless the run is given another."""
    data = make_dataset("moons", n=100, noise=0.1, seed=0).batch()

    def run(**seed: int) -> list[float]:
        return open_session("classifier", dtype="float64", data=data, seed=7).train(5, batch_size=16, **seed).loss

    assert run() == run(seed=7)
    assert run() != run(seed=0)


def test_mini_batch_epoch_visits_every_sample_once() -> None:
    """100 samples in batches of 32 (32, 32, 32, 4): the epoch's loss is the sample-weighted mean."""
    s = _moons_session()
    trainer = Trainer(s, epochs=1, optimizer="sgd", lr=0.0, batch_size=32)  # lr 0: the parameters stay put
    history = trainer.run()
    full = _moons_session().train(1, optimizer="sgd", lr=0.0)
    assert history.loss[0] == pytest.approx(full.loss[0], rel=1e-12)
    assert history.metric_values["accuracy"][0] == full.metric_values["accuracy"][0]
    # a summed loss (the tutorial's ½ Σ (ŷ − y)²) adds up over the batches instead
    summed = Trainer(open_session("xor", dtype="float64"), epochs=1, lr=0.0, batch_size=3).run()
    assert summed.loss[0] == pytest.approx(open_session("xor", dtype="float64").train(1, lr=0.0).loss[0], rel=1e-12)


def test_float32_sessions_train_in_float32() -> None:
    s = open_session("xor", dtype="float32")
    history = s.train(200, optimizer="adam", lr=0.05)
    assert all(v.dtype == np.float32 for v in s.params.values())
    assert history.loss[-1] < history.loss[0]


# -- control from another thread -------------------------------------------------------------------
def _wait_for(condition, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_pause_resume_and_stop_from_another_thread() -> None:
    s = open_session("xor", dtype="float64")
    start = s.parameters_numpy()
    trainer = Trainer(s, epochs=10**8)
    states: list[str] = []
    trainer.state_changed.connect(states.append)
    threads: set[int] = set()
    s.loss_appended.connect(lambda r: threads.add(threading.get_ident()))
    worker = threading.Thread(target=trainer.run, daemon=True)
    worker.start()
    _wait_for(lambda: len(trainer.history) > 50)
    trainer.pause()
    _wait_for(lambda: trainer.state == "paused")
    assert trainer.paused
    seen = len(trainer.history)
    time.sleep(0.1)
    assert len(trainer.history) == seen, "a paused trainer must not run epochs"
    paused_at = s.parameters_numpy()  # the session shows where training paused, ready to be stepped
    assert not np.array_equal(paused_at["W1"], start["W1"])
    s.run_to_end()
    trainer.resume()
    _wait_for(lambda: len(trainer.history) > seen + 50)
    trainer.stop()
    worker.join(timeout=20)
    assert not worker.is_alive()
    assert trainer.state == "stopped" and trainer.history.stopped
    assert states[:3] == ["running", "paused", "running"] and states[-1] == "stopped"
    assert threads == {worker.ident}
    assert not np.array_equal(s.parameters_numpy()["W1"], paused_at["W1"])
    assert s.cursor == 0


def test_a_trainer_runs_once() -> None:
    trainer = Trainer(open_session("xor", dtype="float64"), epochs=2)
    trainer.run()
    with pytest.raises(TrainingError, match="already run"):
        trainer.run()


# -- NaN and Inf stop training at the op that made them ------------------------------------------------
def _log_model() -> Model:
    """log(x·w + b) fitted to -5: the fit drives x·w + b below zero, where log is NaN."""
    g = Graph("logfit")
    x = g.input("x", (4, 1))
    w, b = g.parameter("w", (1, 1)), g.parameter("b", (1,))
    g.set_outputs(g.add("log", g.add("linear", x, w, b, name="z"), name="log_z"))
    batch = {"x": np.arange(4.0).reshape(4, 1), "y": np.full((4, 1), -5.0)}
    return Model(g, {"w": np.array([[1.0]]), "b": np.array([0.5])}, batch=batch, loss="mse")


def _sqrt_model() -> Model:
    """sqrt(x·w) at w = 0: the value is finite, its gradient 1/(2·sqrt(0)) is not."""
    g = Graph("sqrtfit")
    x = g.input("x", (4, 1))
    w = g.parameter("w", (1, 1))
    g.set_outputs(g.add("pow", g.add("matmul", x, w, name="z"), name="root", attrs={"exponent": 0.5}))
    batch = {"x": np.arange(4.0).reshape(4, 1), "y": np.ones((4, 1))}
    return Model(g, {"w": np.array([[0.0]])}, batch=batch, loss="mse")


def test_nan_in_the_forward_pass_names_the_op() -> None:
    s = open_session(_log_model(), dtype="float64")
    with pytest.raises(TrainingDiverged) as err:
        s.train(100, optimizer="sgd", lr=0.5)
    found = err.value.nonfinite
    assert (found.node, found.op, found.phase, found.epoch) == ("log_z", "log", "forward", 1)
    assert "log 'log_z'" in str(err.value) and "epoch 1" in str(err.value)
    assert len(err.value.history) == 1  # epoch 0 was finite
    s.break_on_nonfinite = True  # the session holds the parameters that make the NaN: step into it
    stop = s.continue_()
    assert stop is not None and stop.step.node.name == "log_z"


def test_infinite_gradient_is_traced_to_the_step_before() -> None:
    s = open_session(_sqrt_model(), dtype="float64")
    with pytest.raises(TrainingDiverged) as err:
        s.train(10, optimizer="sgd", lr=0.1)
    found = err.value.nonfinite
    assert (found.node, found.op, found.phase) == ("root", "pow", "backward")
    assert "update before it used a non-finite gradient" in str(err.value)
    assert all(np.isfinite(v).all() for v in s.parameters_numpy().values())


def test_nan_in_a_mini_batch_names_the_op() -> None:
    model = _log_model()
    s = open_session(model, dtype="float64")
    history = Trainer(s, epochs=50, optimizer="sgd", lr=0.5, batch_size=2, seed=0).run()
    assert history.nonfinite is not None and history.nonfinite.node == "log_z"
    assert "mini-batch" in history.nonfinite.message


def test_cli_reports_nan_and_still_writes_the_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from propscope.graph.readers import save_model

    path = save_model(_log_model(), tmp_path / "logfit.propscope")
    code = main(["train", str(path), "--optimizer", "sgd", "--lr", "0.5", "--epochs", "20",
                 "--history", str(tmp_path / "h.csv")])
    err = capsys.readouterr().err
    assert code == 1 and "log 'log_z'" in err
    assert len(_read_csv(tmp_path / "h.csv")["loss"]) == 1


# -- bad settings are refused before any work ----------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"lr": -0.1}, "learning rate must be >= 0"),
        ({"epochs": 0}, "epochs must be at least 1"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'; known optimizers: sgd, momentum, rmsprop, adam, adamw"),
        ({"optimizer": "adam", "betas": (0.9, 1.5)}, "betas[1] must be in [0, 1)"),
        ({"metrics": ("f1",)}, "unknown metric 'f1'"),
    ],
)
def test_bad_settings_fail_before_training(settings: dict[str, object], words: str) -> None:
    s = open_session("xor", dtype="float64")
    before = s.parameters_numpy()
    events: list[object] = []
    s.loss_appended.connect(events.append)
    s.trace_changed.connect(lambda: events.append("trace"))
    with pytest.raises(PropscopeError) as err:
        s.train(**settings)
    assert words in str(err.value)
    assert not events and s.history is None
    for name, value in before.items():
        np.testing.assert_array_equal(s.params[name], value)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--lr", "-1"], "learning rate must be >= 0"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--optimizer", "lbfgs"], "known optimizers: sgd, momentum, rmsprop, adam, adamw"),
        (["--optimizer", "sgd", "--betas", "0.9", "0.99"], "sgd has no hyperparameter 'betas'"),
    ],
)
def test_cli_refuses_bad_settings_before_loading(
    argv: list[str], words: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the session was opened before the settings were checked")

    monkeypatch.setattr(propscope.debugger, "open_session", no_work)
    assert main(["train", "xor", *argv]) == 2
    assert words in capsys.readouterr().err


def test_training_needs_a_loss() -> None:
    s = open_session("xor", dtype="float64", loss="none")
    with pytest.raises(TrainingError, match="no loss to train on"):
        s.train(5)


def test_cli_train_on_a_data_set_with_a_test_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "classifier", "--data", "moons", "--test-fraction", "0.25", "--epochs", "30",
                 "--batch-size", "32", "--history", str(tmp_path / "h.csv"), "--out", str(tmp_path / "m.propscope")])
    out = capsys.readouterr().out
    assert code == 0
    assert list(_read_csv(tmp_path / "h.csv")) == ["epoch", "loss", "test_loss", "accuracy"]
    assert "in batches of 32" in out and "test_loss" in out
    trained = open_model(tmp_path / "m.propscope")
    assert trained.training.optimizer == "adam" and trained.training.batch_size == 32
    assert len(trained.batch["y"]) == 150


def test_history_reads_like_a_table() -> None:
    h = History(("mse",), has_test=False)
    assert h.last is None and len(h) == 0 and h.columns == ["epoch", "loss", "mse"]
    with pytest.raises(KeyError, match="no column 'test_loss'"):
        h.column("test_loss")


def test_progress_rewrites_one_line_on_a_terminal() -> None:
    import io

    from propscope.cli import _Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, log = Terminal(), io.StringIO()
    live, sparse = _Progress(100, tty), _Progress(100, log)
    for epoch in range(100):
        record = EpochRecord(epoch, 1.0 / (epoch + 1), None, {"mse": 0.5})
        live.update(record)
        sparse.update(record)
    live.close()
    assert tty.getvalue().startswith("\r") and tty.getvalue().endswith("\n") and "epoch 100/100" in tty.getvalue()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("epoch 100/100") and "\r" not in log.getvalue()

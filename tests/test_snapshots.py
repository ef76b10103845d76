"""Training snapshots: the schedule, exact parameters at every recorded epoch, the file format, the budget."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import propscope
from propscope.cli import main
from propscope.debugger.snapshots import SnapshotError, SnapshotSettings, log_schedule
from propscope.graph.errors import ModelFormatError
from propscope.graph.ir import Graph
from propscope.graph.model import Model, TrainingDefaults
from propscope.graph.readers import open_model
from propscope.graph.readers.native import MANIFEST, save
from propscope.graph.readers.snapshots import attached


def fresh_params(epochs: int, name: str = "xor", **train: object) -> dict[str, np.ndarray]:
    s = propscope.open_session(name, dtype="float64")
    if epochs:
        s.train(epochs, **train)  # type: ignore[arg-type]
    return s.parameters_numpy()


# -- the schedule -----------------------------------------------------------------------------
@pytest.mark.parametrize(("epochs", "count"), [(2000, 50), (100, 10), (10, 50), (1_000_000, 1000), (5, 2)])
def test_log_schedule_keeps_every_early_epoch_and_thins_later_ones(epochs: int, count: int) -> None:
    got = log_schedule(epochs, count)
    assert len(got) == min(count, epochs + 1)
    assert got[0] == 0 and got[-1] == epochs and got == sorted(set(got))
    if count < epochs + 1 and count > 10:
        assert got[:8] == list(range(8))  # the start, densely
        gaps = np.diff(got)
        assert gaps[-1] > gaps[len(gaps) // 2] > gaps[0]  # later ones thinner


def test_a_schedule_needs_a_start_and_an_end() -> None:
    with pytest.raises(SnapshotError, match="at least 2"):
        log_schedule(100, 1)


# -- exact parameters -------------------------------------------------------------------------
def test_cli_run_file_scrubs_to_exactly_the_parameters_of_a_fresh_run(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.propscope"
    assert main(["train", "xor", "--epochs", "2000", "--snapshots", "50", "--out", str(out)]) == 0
    assert "50 snapshots" in capsys.readouterr().out
    s = propscope.open_session(out, dtype="float64")
    assert len(s.snapshots) == 50 and s.snapshots.epochs[0] == 0 and s.snapshots.epochs[-1] == 2000
    for k in (0, 1, 7, s.snapshots.epochs[30], 2000):
        s.at_epoch(k)
        want = fresh_params(k)
        got = s.parameters_numpy()
        assert set(want) <= set(got)
        for name, value in want.items():
            assert got[name].dtype == np.float64
            assert np.array_equal(got[name], value), (k, name)
    assert s.epoch == 2000


def test_mini_batch_adam_snapshots_are_exact_and_the_cursor_is_kept() -> None:
    s = propscope.open_session("classifier", dtype="float64")
    s.train(30, batch_size=16, snapshots=[0, 5, 12])
    assert s.snapshots.epochs == [0, 5, 12, 30]  # the end is always recorded
    s.seek(s.n_forward + 2)
    s.at_epoch(12)
    assert s.cursor == s.n_forward + 2
    want = fresh_params(12, "classifier", batch_size=16)
    assert all(np.array_equal(s.parameters_numpy()[k], v) for k, v in want.items())
    # stepping works on that epoch's parameters: the gradient equals a fresh session's at epoch 12
    fresh = propscope.open_session("classifier", dtype="float64")
    fresh.set_params(want)
    fresh.run_to_end()
    s.run_to_end()
    assert np.array_equal(s.grad("W1"), fresh.grad("W1"))


def test_an_epoch_that_was_not_recorded_names_the_nearest() -> None:
    s = propscope.open_session("xor", dtype="float64")
    s.train(100, snapshots=10)
    with pytest.raises(SnapshotError, match=r"epoch 99 was not recorded; the nearest recorded epochs are \d+ and 100"):
        s.at_epoch(99)
    with pytest.raises(SnapshotError, match="no snapshots were recorded"):
        propscope.open_session("xor").at_epoch(3)


def test_training_on_continues_the_recorded_run() -> None:
    s = propscope.open_session("xor", dtype="float64")
    s.train(10, snapshots=100)
    s.train(5, snapshots=100)
    assert s.snapshots.epochs == list(range(16))
    s.at_epoch(13)
    assert all(np.array_equal(s.parameters_numpy()[k], v) for k, v in fresh_params(13).items())
    assert len(s.snapshots.loss) == 15


def test_snapshot_trace_records_every_value_and_gradient(tmp_path: Path) -> None:
    s = propscope.open_session("xor", dtype="float64")
    s.train(20, snapshots=SnapshotSettings(count=5, trace=True))
    snap = s.snapshots[20]
    s.run_to_end()
    assert np.array_equal(snap.values["final_output"], s.value("final_output"))
    assert np.array_equal(snap.grads["W1"], s.grad("W1"))
    model = save(_with_snaps(s), tmp_path / "t.propscope")
    back = attached(open_model(model))
    assert back is not None and back.has_trace and np.array_equal(back[20].grads["W1"], snap.grads["W1"])


def _with_snaps(s: propscope.Session) -> Model:
    from propscope.graph.readers.snapshots import attach

    return attach(s.model, s.snapshots)


# -- the file -----------------------------------------------------------------------------------
def test_a_version_1_file_still_opens(tmp_path: Path) -> None:
    path = save(propscope.load_example("xor"), tmp_path / "v1.propscope")
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members[MANIFEST])
    manifest["version"] = 1
    members[MANIFEST] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    s = propscope.open_session(path)
    assert s.snapshots is None and s.grad("W1") is None


@pytest.mark.parametrize(("edit", "says"), [
    (lambda m: m["snapshots"].update(epochs=[0, 0]), "increasing whole numbers"),
    (lambda m: m["snapshots"].update(epochs="all"), "increasing whole numbers"),
    (lambda m: m["snapshots"]["params"].update(W9="snapshots/params/0.npy"), "'W9' is not in the graph"),
    (lambda m: m["snapshots"]["params"].update(W1="snapshots/params/1.npy"), "has shape"),
    (lambda m: m["snapshots"].update(epochs=[0, 1, 2]), "rows for 3 epochs"),
    (lambda m: m["snapshots"]["params"].update(W1="snapshots/nope.npy"), "no member"),
])
def test_bad_snapshots_in_a_file_are_one_sentence(tmp_path: Path, edit: object, says: str) -> None:
    s = propscope.open_session("xor", dtype="float64")
    s.train(3, snapshots=10)
    path = save(_with_snaps(s), tmp_path / "bad.propscope")
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members[MANIFEST])
    edit(manifest)  # type: ignore[operator]
    members[MANIFEST] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(ModelFormatError, match=says):
        open_model(path)


# -- the memory budget ------------------------------------------------------------------------
def mlp_784_128_10(n: int = 8) -> Model:
    rng = np.random.default_rng(0)
    g = Graph("mlp")
    x = g.input("x", (n, 784))
    w1, b1 = g.parameter("W1", (784, 128), module="hidden"), g.parameter("b1", (128,), module="hidden")
    w2, b2 = g.parameter("W2", (128, 10), module="out"), g.parameter("b2", (10,), module="out")
    h = g.add("relu", g.add("linear", x, w1, b1, name="z1", module="hidden"), name="h", module="hidden")
    g.set_outputs(g.add("linear", h, w2, b2, name="logits", module="out"))
    arrays = {"W1": rng.standard_normal((784, 128)) * 0.05, "b1": np.zeros(128),
              "W2": rng.standard_normal((128, 10)) * 0.1, "b2": np.zeros(10)}
    batch = {"x": rng.standard_normal((n, 784)), "y": rng.integers(0, 10, n).astype(np.float64)}
    return Model(g, arrays, batch=batch, loss="cross_entropy", training=TrainingDefaults("sgd", 0.01, 10))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_1000_snapshots_of_the_784_128_10_mlp_stay_within_the_budget(dtype: str) -> None:
    budget = 64 * 2**20
    s = propscope.open_session(mlp_784_128_10(), dtype=dtype)
    s.train(1000, snapshots=SnapshotSettings(count=1000, budget_bytes=budget))
    snaps = s.snapshots
    per = (784 * 128 + 128 + 128 * 10 + 10) * np.dtype(dtype).itemsize
    assert snaps.nbytes <= budget
    assert len(snaps) == budget // per  # as many as fit, no more
    assert snaps.epochs[:10] == list(range(10)) and snaps.epochs[-1] == 1000
    # a continued run thins what it has and stays within the budget too
    s.train(200, snapshots=SnapshotSettings(count=1000, budget_bytes=budget))
    assert s.snapshots.nbytes <= budget and s.snapshots.epochs[-1] == 1200 and s.snapshots.epochs[:5] == [0, 1, 2, 3, 4]


def test_training_on_from_a_scrubbed_back_epoch_drops_the_later_snapshots() -> None:
    s = propscope.open_session("xor", dtype="float64")
    s.train(30, snapshots=100)
    s.at_epoch(12)
    s.train(8, snapshots=100)  # full-batch SGD: exactly a fresh run of 20 epochs
    assert s.snapshots.epochs == list(range(21)) and len(s.snapshots.loss) == 20
    want = fresh_params(20)
    assert all(np.array_equal(s.parameters_numpy()[k], v) for k, v in want.items())
    s.at_epoch(17)
    assert all(np.array_equal(s.parameters_numpy()[k], v) for k, v in fresh_params(17).items())
    assert s.snapshots.loss[:20] == pytest.approx(fresh_session_losses(20), abs=0)


def fresh_session_losses(epochs: int) -> list[float]:
    s = propscope.open_session("xor", dtype="float64")
    return list(s.train(epochs).loss)

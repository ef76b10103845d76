"""File ▸ Save (.propscope) keeps what the user set up, and reopening gives it back: the loss (chosen in Debug ▸ Loss or
taken from the labels, on the output chosen, a row per token), the data (inputs and labels as loaded), the trained
parameters, and a module's restriction to the path it was traced along. Reopened, the same step shows the same numbers
(float64, exactly). Debug ▸ Loss keeps the user's labels through a loss they do not fit; a big model saves in a job."""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import propscope
from propscope.debugger import Session, open_session
from propscope.debugger.trainer import TrainingError
from propscope.graph.datasets import DataError
from propscope.graph.errors import ModelFormatError
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.graph.readers import open_model, save_model
from propscope.graph.readers.native import MANIFEST, SaveCancelled

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
              pytest.mark.filterwarnings("ignore:propscope.*decided by tensor values:UserWarning")]

N, FEATURES, CLASSES = 6, 4, 3
rng = np.random.default_rng(7)
X = rng.standard_normal((N, FEATURES)).astype(np.float32)
LABELS = np.array([0, 2, 1, 1, 0, 2], dtype=np.int32)  # int32 as a user's file may hold them


# -- the files a user brings -----------------------------------------------------------------
def _torch_net() -> Any:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(FEATURES, 8), torch.nn.Tanh(), torch.nn.Linear(8, CLASSES))


def _onnx_file(folder: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1)
    inits = [numpy_helper.from_array(w.standard_normal((FEATURES, 8)).astype(np.float32), "w1"),
             numpy_helper.from_array(np.zeros(8, np.float32), "b1"),
             numpy_helper.from_array(w.standard_normal((8, CLASSES)).astype(np.float32), "w2"),
             numpy_helper.from_array(np.full(CLASSES, 0.1, np.float32), "b2")]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("Gemm", ["a", "w2", "b2"], ["logits"])]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [N, FEATURES])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [N, CLASSES])], inits)
    path = folder / "chain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _pt2_file(folder: Path) -> Path:
    torch = pytest.importorskip("torch")
    path = folder / "net.pt2"
    torch.export.save(torch.export.export(_torch_net(), (torch.from_numpy(X),)), str(path))
    return path


def _torchscript_file(folder: Path) -> Path:
    torch = pytest.importorskip("torch")
    path = folder / "traced.pt"
    torch.jit.trace(_torch_net(), torch.from_numpy(X)).save(str(path))
    return path


FILES: dict[str, Callable[[Path], Path]] = {"onnx": _onnx_file, "pt2": _pt2_file, "torchscript": _torchscript_file}


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    return {kind: make(folder) for kind, make in FILES.items()}


def _branchy() -> tuple[Any, Any]:
    """A module whose forward takes a branch by its input's values, and inputs that take the first branch."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(FEATURES, 8), nn.Linear(8, CLASSES), nn.Linear(8, CLASSES)

        def forward(self, x: Any) -> Any:
            h = torch.relu(self.a(x))
            if x.sum() > 0:
                return self.b(h)
            return self.c(h) * 2

    torch.manual_seed(0)
    return Branchy().double(), torch.from_numpy(np.abs(X).astype(np.float64))


# -- what must come back ---------------------------------------------------------------------
def _numbers(s: Session) -> tuple[float, np.ndarray, np.ndarray]:
    """The loss, the first parameter's gradient and the prediction, at the end of the backward pass."""
    s.run_to_end()
    first = s.graph.parameters[0].name
    loss = float(np.asarray(s.value(s.loss_node.name))) if s.loss_node is not None else float("nan")
    return loss, np.asarray(s.grad(first)), np.asarray(s.value(s.prediction_node.name))


def _same_session(before: Session, after: Session) -> None:
    assert after.loss_name == before.loss_name is not None
    assert str(after.backend.dtype) == str(before.backend.dtype) == "float64"
    np.testing.assert_array_equal(after.batch["y"], before.batch["y"])
    assert np.array_equal(after.user_labels, before.user_labels) and after.target_drawn == before.target_drawn
    assert len(after.steps) == len(before.steps)
    before_numbers, after_numbers = _numbers(before), _numbers(after)
    assert after_numbers[0] == before_numbers[0]  # the loss, exactly
    np.testing.assert_array_equal(after_numbers[1], before_numbers[1])
    np.testing.assert_array_equal(after_numbers[2], before_numbers[2])


def _trained(s: Session) -> Session:
    """A few steps of training, so the file's own weights are not what is saved."""
    start = s.parameters_numpy()
    s.train(2, optimizer="sgd", lr=0.5)
    assert any(not np.array_equal(v, start[k]) for k, v in s.parameters_numpy().items())
    return s


# -- through the session ---------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("kind", list(FILES))
def test_a_file_with_labels_saved_and_reopened_keeps_its_loss_labels_and_numbers(
        kind: str, model_files: dict[str, Path], tmp_path: Path) -> None:
    s = _trained(open_session(model_files[kind], dtype="float64", data={"x": X, "y": LABELS}))
    assert s.loss_name == "cross_entropy" and s.loss_from_labels  # the file had no loss: the labels chose it
    path = s.save(tmp_path / f"{kind}.propscope")
    with zipfile.ZipFile(path) as zf:
        assert np.load(zf.open("batch/y.npy")).dtype == np.int32  # the labels as the user gave them
    reopened = open_session(path, dtype="float64")
    x = s.graph.inputs[0].name  # `x` in the data names the single input, whatever the file calls it
    assert reopened.model.loss == "cross_entropy" and reopened.batch[x].dtype == np.float32
    _same_session(s, reopened)


@pytest.mark.torch
def test_a_loss_chosen_for_a_file_without_labels_is_saved_with_its_drawn_target_marked(
        model_files: dict[str, Path], tmp_path: Path) -> None:
    s, drawn = open_session(model_files["pt2"], dtype="float64").with_loss("mse")
    assert drawn and s.user_labels is None
    reopened = open_session(s.save(tmp_path / "drawn.propscope"), dtype="float64")
    assert reopened.target_drawn and reopened.user_labels is None  # still not the user's labels
    _same_session(s, reopened)
    _, drawn = reopened.with_loss("cross_entropy")
    assert drawn  # another loss draws its own, as it did before the save


def test_the_chosen_output_and_a_row_per_token_are_kept(tmp_path: Path) -> None:
    b, t, v, d = 2, 3, 5, 4
    r = np.random.default_rng(0)
    g = Graph("lm")
    ids = g.input("ids", (b, t))
    emb, w = g.parameter("emb", (v, d)), g.parameter("head.weight", (d, v))
    hidden = g.add("tanh", g.add("embedding", ids, emb, name="embedded"), name="hidden")
    g.set_outputs(hidden, g.add("matmul", hidden, w, name="logits"))
    model = Model(g, {"emb": r.normal(size=(v, d)), "head.weight": r.normal(size=(d, v))},
                  batch={"ids": r.integers(0, v, (b, t))})
    labels = r.integers(0, v, (b, t))
    s = open_session(model, dtype="float64", output="logits", data={"ids": model.batch["ids"], "y": labels},
                     loss="cross_entropy")
    assert s.prediction_node.meta.get("per_token")  # (B, T) labels read the logits a row per token
    reopened = open_session(s.save(tmp_path / "lm.propscope"), dtype="float64")
    assert reopened.prediction_node.meta.get("per_token")
    assert reopened.model.output_order == ("hidden", "logits_per_token")  # the file's own order, for the menu
    assert reopened.batch["ids"].dtype == np.float64 and reopened.model.batch["ids"].dtype.kind == "i"
    _same_session(s, reopened)


@pytest.mark.torch
def test_a_module_traced_along_one_path_still_refuses_other_data_and_training_when_reopened(tmp_path: Path) -> None:
    module, x = _branchy()
    s = _loaded_branchy(module, x)
    with pytest.raises(TrainingError):  # the path may change with the weights
        s.train(1)
    path = s.save(tmp_path / "branchy.propscope")
    reopened = open_session(path, dtype="float64")
    assert reopened.model.decisions == s.model.decisions and len(s.model.decisions) == 1
    assert any("decided by tensor values 1 time(s)" in w for w in reopened.model.warnings)
    _same_session(s, reopened)
    other = -np.abs(X).astype(np.float64)  # takes the other branch
    with pytest.raises(DataError, match="traced along the path its inputs take"):
        reopened.set_batch({"x": other, "y": LABELS})
    with pytest.raises(TrainingError, match="by tensor values"):
        reopened.train(1)
    reopened.set_batch({"x": x.numpy(), "y": LABELS[::-1].copy()})  # the same inputs, other labels: the same path


def _loaded_branchy(module: Any, x: Any) -> Session:
    return open_session(module, inputs=x, data={"y": LABELS}, dtype="float64")


# -- the format --------------------------------------------------------------------------------
def _rewritten(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    out = path.with_name("changed.propscope")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == MANIFEST:
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
            dst.writestr(item, data)
    return out


def test_a_version_2_file_without_the_new_entries_opens_as_before(tmp_path: Path) -> None:
    s = open_session("classifier", dtype="float64")
    path = s.save(tmp_path / "c.propscope")

    def as_version_2(manifest: dict[str, Any]) -> None:
        manifest["version"] = 2
        for key in ("decisions", "output_order", "aliases", "target_drawn"):
            manifest.pop(key, None)

    old = open_model(_rewritten(path, as_version_2))
    assert old.decisions == () and not old.target_drawn and old.loss == "cross_entropy"


@pytest.mark.parametrize(("entry", "value", "said"), [
    ("decisions", "yes", "decisions should be a list"),
    ("decisions", [""], "decisions should be a list"),
    ("output_order", ["nope"], "output_order should list the graph's outputs"),
    ("aliases", {"other": "no such node"}, "aliases should map"),
    ("target_drawn", "sometimes", "target_drawn should be true or false"),
    ("image_normalization", {"mean": [0.5], "std": [0.0], "source": "x"}, "image_normalization should give"),
    ("image_normalization", {"mean": [0.5], "std": [0.5], "source": "x" * 81}, "image_normalization should give"),
    ("image_normalization", [0.5, 0.5], "image_normalization should give"),
    ("image_fit", {"kind": "zoom", "fraction": 0.875, "resampling": "bilinear", "source": "x"}, "image_fit should"),
    ("image_fit", {"kind": "crop", "fraction": 0.01, "resampling": "bilinear", "source": "x"}, "image_fit should"),
    ("image_fit", {"kind": "crop", "fraction": 0.875, "resampling": "lanczos", "source": "x"}, "image_fit should"),
    ("image_fit", "crop", "image_fit should give"),
])
def test_malformed_session_entries_are_refused_in_one_line(tmp_path: Path, entry: str, value: Any, said: str) -> None:
    path = open_session("classifier").save(tmp_path / "c.propscope")
    with pytest.raises(ModelFormatError, match=said) as info:
        open_model(_rewritten(path, lambda m: m.update({entry: value})))
    assert "\n" not in str(info.value) and "changed.propscope" in str(info.value)


def test_a_cancelled_save_leaves_no_file_and_the_old_one_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "c.propscope"
    model = open_session("classifier").saved_model()
    save_model(model, path)
    before = path.read_bytes()
    with pytest.raises(SaveCancelled):
        save_model(model, path, cancelled=lambda: True)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["c.propscope"]


# -- Debug ▸ Loss keeps the user's labels ------------------------------------------------------
def test_the_users_labels_come_back_after_a_loss_they_do_not_fit(tmp_path: Path) -> None:
    s = open_session("classifier", dtype="float64", seed=3)
    mine = s.batch["y"].copy()
    mse, drawn = s.with_loss("mse")
    assert drawn and mse.batch["y"].shape != mine.shape  # class ids do not fit mse: a target is drawn for it
    none, drawn = mse.with_loss("none")
    assert not drawn and "y" not in none.batch
    back, drawn = none.with_loss("cross_entropy")
    assert not drawn and np.array_equal(back.batch["y"], mine)
    reopened = open_session(none.save(tmp_path / "none.propscope"))
    assert reopened.loss_name is None and np.array_equal(reopened.user_labels, mine)  # saved forward only, kept
    again, drawn = reopened.with_loss("cross_entropy")
    assert not drawn and np.array_equal(again.batch["y"], mine)


def test_a_loss_chosen_for_a_model_with_an_input_named_y_keeps_that_input(tmp_path: Path) -> None:
    """Forward only, `y` is the model's own input; Debug ▸ Loss then takes the name `y` for its target, and the
    input goes on as `y_model` with the same values, saved and reopened so."""
    g = Graph("two_inputs")
    x, y, w = g.input("x", (4, 3)), g.input("y", (4, 3)), g.parameter("w", (3, 2))
    g.set_outputs(g.add("matmul", g.add("add", x, y, name="both"), w, name="out"))
    r = np.random.default_rng(0)
    s = open_session(Model(g, {"w": r.normal(size=(3, 2))}, batch={"x": r.normal(size=(4, 3)),
                                                                     "y": r.normal(size=(4, 3))}), dtype="float64")
    assert s.user_labels is None  # its `y` is an input, not labels
    with_loss, drawn = s.with_loss("mse")
    assert drawn and with_loss.batch["y"].shape == (4, 2)
    np.testing.assert_array_equal(with_loss.batch["y_model"], s.batch["y"])
    s.run_to_end()
    with_loss.run_to_end()
    np.testing.assert_array_equal(with_loss.value("out"), s.value("out"))
    back, _ = with_loss.with_loss("none")
    np.testing.assert_array_equal(back.batch["y_model"], s.batch["y"])
    _same_session(with_loss, open_session(with_loss.save(tmp_path / "two.propscope"), dtype="float64"))


def test_new_data_brings_its_own_labels() -> None:
    s = open_session("classifier", dtype="float64")
    x = s.batch["x"][:10]
    s.set_batch({"x": x, "y": np.full(10, 2)})
    mse, _ = s.with_loss("mse")
    back, drawn = mse.with_loss("cross_entropy")
    assert not drawn and np.array_equal(back.batch["y"], np.full(10, 2))


# -- in the app --------------------------------------------------------------------------------
@pytest.fixture
def window(qtbot: Any, tmp_path: Path) -> Any:
    from PySide6.QtCore import QSettings

    from propscope.gui.main_window import MainWindow

    w = MainWindow(open_session("xor", dtype="float64"), settings=QSettings(str(tmp_path / "p.ini"),
                                                                             QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.resize(1000, 700)
    w.show()
    yield w
    w.close()


def _wait_session(qtbot: Any, window: Any, start: Callable[[], Any]) -> Session:
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=60000):
        start()
    qtbot.waitUntil(lambda: not window.jobs, timeout=60000)
    return window.bridge.session


def _save_and_reopen(qtbot: Any, window: Any, path: Path) -> Session:
    saved = window.save_path(path)
    assert saved
    if saved is not True:  # saving in a job
        qtbot.waitUntil(lambda: not window.jobs, timeout=60000)
    assert window.status_message.text() == f"Saved {path}" and path.exists()
    return _wait_session(qtbot, window, lambda: window.open_path(path))


@pytest.mark.torch
@pytest.mark.parametrize("kind", list(FILES))
def test_the_app_saves_the_loss_and_data_it_shows_and_reopens_them(
        qtbot: Any, window: Any, kind: str, model_files: dict[str, Path], tmp_path: Path) -> None:
    _wait_session(qtbot, window, lambda: window.open_path(model_files[kind]))
    data = tmp_path / "data.npz"
    np.savez(data, x=X, y=LABELS)
    s = _wait_session(qtbot, window, lambda: window.load_data_path(data))  # the labels attach cross-entropy
    assert s.loss_name == "cross_entropy" and str(s.backend.dtype) == "float64"
    menu = {a.data(): a for a in window.loss_actions.actions()}  # Debug ▸ Loss
    s = _wait_session(qtbot, window, menu["mse"].trigger)  # the labels do not fit mse
    assert "your labels y (6,) do not fit it and are kept" in window.status_message.text()
    s = _wait_session(qtbot, window, menu["none"].trigger)
    s = _wait_session(qtbot, window, menu["cross_entropy"].trigger)
    assert np.array_equal(s.batch["y"], LABELS) and not s.target_drawn  # the user's labels, not drawn ones
    reopened = _save_and_reopen(qtbot, window, tmp_path / f"{kind}.propscope")
    assert reopened is not s
    _same_session(s, reopened)


@pytest.mark.torch
def test_the_app_keeps_a_traced_paths_refusal_through_save_and_open(qtbot: Any, tmp_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from propscope.gui.main_window import MainWindow

    module, x = _branchy()
    s = _loaded_branchy(module, x)
    w = MainWindow(s, settings=QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(w)
    w.show()
    reopened = _save_and_reopen(qtbot, w, tmp_path / "branchy.propscope")
    assert reopened.model.decisions == s.model.decisions
    _same_session(s, reopened)
    other = tmp_path / "other.npz"
    np.savez(other, x=-np.abs(X))
    assert not w.load_data_path(other)
    assert "traced along the path its inputs take" in w.last_error and w.bridge.session is reopened
    w.error_box.close()
    w.close()


def test_a_big_model_saves_in_a_job_of_what_the_session_held_when_asked(
        qtbot: Any, window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from propscope.gui import main_window
    from propscope.gui.jobs import Job

    monkeypatch.setattr(main_window, "SAVE_IN_JOB_BYTES", 0)
    s = window.bridge.session
    s.run_to_end()
    want = _numbers(s)
    path = tmp_path / "xor.propscope"
    job = window.save_path(path)
    assert isinstance(job, Job) and window.jobs == [job] and not window.loss_menu.isEnabled()
    s.set_params({k: v * 0 for k, v in s.params.items()})  # changed meanwhile: the save wrote what it was asked
    qtbot.waitUntil(lambda: not window.jobs, timeout=30000)
    assert window.status_message.text() == f"Saved {path}" and window.loss_menu.isEnabled()
    got = _numbers(propscope.open_session(path, dtype="float64"))
    assert got[0] == want[0] and np.array_equal(got[1], want[1])


def test_a_cancelled_save_in_the_app_writes_nothing(qtbot: Any, window: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from propscope.graph.readers import native
    from propscope.gui import main_window

    monkeypatch.setattr(main_window, "SAVE_IN_JOB_BYTES", 0)
    slow = native.save

    def save_when_cancelled(model: Model, path: Path, cancelled: Callable[[], bool]) -> Path:
        while not cancelled():  # held until the user cancels
            time.sleep(0.01)
        return slow(model, path, cancelled)

    monkeypatch.setattr(main_window, "save_model", save_when_cancelled)
    path = tmp_path / "xor.propscope"
    job = window.save_path(path)
    job.cancel()
    qtbot.waitUntil(lambda: not job.running, timeout=30000)
    assert window.status_message.text() == "Cancelled." and not path.exists()
    assert list(tmp_path.glob("*.part")) == []

"""A model file has no loss of its own (a `.pt2`, an ONNX file): labels `y` in the data choose one (whole numbers
shaped as class indices: cross-entropy; real numbers of the prediction's shape: mse), which the command line says, so
a `trace` or a `compare` with the user's labels is never silently forward only; `--loss none` keeps it so. In the app,
File ▸ Load data with labels does the same, unless the user chose Debug ▸ Loss ▸ none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from propscope import cli
from propscope.debugger import open_session
from propscope.debugger.session import loss_for_labels
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.graph.readers import save_model
from propscope.gui.main_window import MainWindow

pytestmark = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


def _classifier(tmp_path: Path) -> Path:
    """A saved 4 → 3 linear classifier with no loss of its own, as a model file is."""
    g = Graph("classifier")
    x = g.input("x", (5, 4))
    w, b = g.parameter("fc.weight", (4, 3), module="fc"), g.parameter("fc.bias", (3,), module="fc")
    g.set_outputs(g.add("linear", x, w, b, name="logits", module="fc"))
    rng = np.random.default_rng(0)
    model = Model(g, {"fc.weight": rng.standard_normal((4, 3)), "fc.bias": np.zeros(3)},
                  batch={"x": rng.standard_normal((5, 4))}, loss=None)
    path = tmp_path / "classifier.propscope"
    save_model(model, path)
    return path


def _data(tmp_path: Path, y: np.ndarray, name: str = "data.npz") -> Path:
    path = tmp_path / name
    np.savez(path, x=np.random.default_rng(1).standard_normal((5, 4)), y=y)
    return path


@pytest.mark.parametrize(("labels", "prediction", "loss"), [
    (np.array([0, 2, 1]), (3, 5), "cross_entropy"),  # class indices
    (np.array([[0], [2], [1]]), (3, 5), "cross_entropy"),  # as a column
    (np.zeros((2, 8), dtype=np.int64), (2, 8, 64), "cross_entropy"),  # a language model's tokens
    (np.zeros((2, 7, 7), dtype=np.int64), (2, 4, 7, 7), "cross_entropy"),  # a segmentation map
    (np.zeros((3, 5)), (3, 5), "mse"),  # real numbers of the prediction's shape
    (np.zeros(3), (3, 5), None),  # real numbers of another shape: nothing to say
    (np.array([0, 1]), (3, 5), None),  # whole numbers that fit no reading
])
def test_the_labels_say_which_loss(labels: np.ndarray, prediction: tuple[int, ...], loss: str | None) -> None:
    assert loss_for_labels(labels, prediction) == loss


def test_a_file_with_labels_gets_a_loss_and_says_so(tmp_path: Path, capsys: Any) -> None:
    model = _classifier(tmp_path)
    data = _data(tmp_path, np.array([0, 2, 1, 1, 0]))
    s = open_session(model, data=data)
    assert s.loss_name == "cross_entropy" and s.loss_from_labels
    s.run_to_end()
    assert np.all(np.isfinite(s.grad("fc.weight"))) and np.any(s.grad("fc.weight"))
    assert open_session(model, data=data, loss="none").loss_name is None
    assert open_session(model).loss_name is None  # no labels: forward only, as before
    regression = _data(tmp_path, np.zeros((5, 3)), "regression.npz")
    assert open_session(model, data=regression).loss_name == "mse"

    assert cli.main(["trace", str(model), "--data", str(data), "--out", str(tmp_path / "t.npz")]) == 0
    err = capsys.readouterr().err
    assert "the data's whole-number labels y take cross_entropy" in err and "--loss none" in err


def test_compare_without_a_loss_says_it_compared_values_only(tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("torch")
    assert cli.main(["compare", str(_classifier(tmp_path)), "--dtype", "float64"]) == 0
    assert "forward values only: no loss, so no gradients" in capsys.readouterr().out


def test_load_data_in_the_app_attaches_the_loss_its_labels_say(qtbot: Any, tmp_path: Path) -> None:
    model = _classifier(tmp_path)
    data = _data(tmp_path, np.array([0, 2, 1, 1, 0]))
    window = MainWindow(open_session(model), settings=QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    assert window.bridge.session.loss_name is None
    assert window.load_data_path(data)
    qtbot.waitUntil(lambda: window.bridge.session.loss_name == "cross_entropy" and not window.jobs, timeout=30000)
    assert "Now the cross_entropy loss" in window.status_message.text()

    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=30000):
        window._loss_chosen("none")  # the user's choice: forward only
    assert window.load_data_path(data)
    qtbot.wait(200)
    assert window.bridge.session.loss_name is None and not window.jobs
    window.close()

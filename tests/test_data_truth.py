"""What the app says about the data must be true: accuracy counts classes where the loss takes them (a segmentation
map's per pixel, as torch's `(logits.argmax(1) == y).float().mean()`), data that holds NaN or inf is said when it is
loaded and named as the origin of the NaN training and the first-non-finite lines meet, and data of the wrong shape
is refused with a hint that fits what was opened (a TorchScript archive's in the archive's terms, not the reader's).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from propscope import open_session
from propscope.backends import get_backend
from propscope.cli import main
from propscope.debugger.compare import compare_backends
from propscope.debugger.grad_flow import gradient_flow
from propscope.debugger.metrics import accuracy
from propscope.debugger.trainer import TrainingDiverged
from propscope.graph.datasets import nonfinite_note
from propscope.graph.errors import ModelFormatError, PropscopeError
from propscope.graph.ir import Graph
from propscope.graph.model import Model, fit_batch
from propscope.graph.readers.sizes import resizable_by


def _segmenter(classes: int = 3, pool: bool = False) -> Model:
    """x (2, 3, 6, 6) -> conv 3×3 (padding 1) -> (2, classes, 6, 6) logits: a segmentation map's per-pixel scores, the
    classes on axis 1 as torch lays them out (or pooled by 2, where a max picks which input a gradient reaches)."""
    rng = np.random.default_rng(0)
    g = Graph("segmenter")
    x, w = g.input("x", (2, 3, 6, 6)), g.parameter("w", (classes, 3, 3, 3))
    out = g.add("conv2d", x, w, name="logits", attrs={"padding": 1})
    if pool:
        out = g.add("max_pool2d", out, name="pooled", attrs={"kernel_size": 2})
    g.set_outputs(out)
    return Model(g, {"w": rng.normal(size=(classes, 3, 3, 3))})


def _torch_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    torch = pytest.importorskip("torch")
    return float((torch.from_numpy(logits).argmax(1) == torch.from_numpy(labels)).double().mean())


# -- 1. accuracy counts the classes where the loss takes them ------------------------------------------------------
@pytest.mark.parametrize(("logits_shape", "labels_shape"), [
    ((7, 4), (7,)),  # a classifier's (N, C)
    ((2, 3, 5, 6), (2, 5, 6)),  # a segmentation map's (N, C, H, W): per pixel
    ((2, 3, 4, 5, 6), (2, 4, 5, 6)),  # a volume's (N, C, D, H, W)
    ((2 * 8, 11), (2 * 8,)),  # a language model's logits read a row per token, (B·T, V), its labels (B·T,)
], ids=["classes", "pixels", "voxels", "tokens"])
def test_accuracy_is_torchs_argmax_over_axis_1(logits_shape: tuple[int, ...], labels_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=logits_shape)
    labels = rng.integers(0, logits_shape[1], labels_shape)
    assert accuracy(logits, labels, "cross_entropy") == pytest.approx(_torch_accuracy(logits, labels), abs=1e-12)
    one_hot = np.moveaxis(np.eye(logits_shape[1])[labels], -1, 1)  # class probabilities shaped like the logits
    assert accuracy(logits, one_hot, "cross_entropy") == pytest.approx(_torch_accuracy(logits, labels), abs=1e-12)


def test_per_token_labels_of_a_batch_score_each_token() -> None:
    rng = np.random.default_rng(4)
    logits, labels = rng.normal(size=(2 * 8, 11)), rng.integers(0, 11, (2, 8))  # labels as the data gives them
    assert accuracy(logits, labels) == pytest.approx(_torch_accuracy(logits, labels.reshape(-1)), abs=1e-12)


def test_binary_cross_entropy_scores_every_element_at_one_half() -> None:
    """A binary mask's (N, 1, H, W) probabilities: one decision per pixel, not an argmax over the image's width."""
    rng = np.random.default_rng(5)
    probabilities, mask = rng.uniform(size=(2, 1, 4, 5)), rng.integers(0, 2, (2, 1, 4, 5)).astype(float)
    expected = float(np.mean((probabilities > 0.5) == (mask > 0.5)))
    assert accuracy(probabilities, mask, "bce") == pytest.approx(expected)
    assert accuracy(probabilities, mask) == pytest.approx(expected)  # one channel: nothing to take an argmax over
    multi = rng.uniform(size=(6, 4))  # multi-label: four independent yes/no answers per sample
    answers = rng.integers(0, 2, (6, 4)).astype(float)
    assert accuracy(multi, answers, "bce") == pytest.approx(float(np.mean((multi > 0.5) == (answers > 0.5))))


@pytest.mark.parametrize("batch_size", [None, 1], ids=["full-batch", "mini-batches"])
def test_training_a_segmentation_model_reports_pixel_accuracy(batch_size: int | None) -> None:
    """Cross-entropy on (N, C, H, W) logits steps and trains; its accuracy is torch's over every pixel (it raised
    "cannot reshape array of size 72 into shape (2,3,6)" before)."""
    labels = np.random.default_rng(1).integers(0, 3, (2, 6, 6))
    s = open_session(_segmenter(), dtype="float64", data={"x": np.random.default_rng(2).normal(size=(2, 3, 6, 6)),
                                                          "y": labels}, loss="cross_entropy")
    s.run_to_end()
    logits = np.asarray(s.value("logits"))
    history = s.train(1, optimizer="sgd", lr=0.0, batch_size=batch_size)
    assert history.metric_values["accuracy"] == [pytest.approx(_torch_accuracy(logits, labels), abs=1e-12)]


# -- 2. NaN and inf in the data: said when loaded, named as the origin -----------------------------------------------
def _classifier_data_with_a_nan(tmp_path: Path) -> Path:
    s = open_session("classifier", dtype="float64")
    x = s.batch["x"].copy()
    x[3, 1] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, x=x, y=s.batch["y"])
    return path


def test_the_note_counts_nan_and_inf_per_array() -> None:
    x = np.zeros((2, 3))
    x[0, 0], x[1, 2] = np.nan, -np.inf
    note = nonfinite_note({"x": x, "y": np.array([0, 1]), "w": np.ones(4)})
    assert note.startswith("the data is not all finite: x holds 1 NaN, 1 inf of 6 values")
    assert "y" not in note.split(":")[1] and "w holds" not in note
    assert nonfinite_note({"x": np.ones(3), "y": np.array([0, 1])}) == ""


def test_the_command_line_warns_of_nan_in_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "classifier", "--data", str(_classifier_data_with_a_nan(tmp_path)), "--out",
                 str(tmp_path / "t.npz")]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "not all finite" in line]
    assert warned == ["propscope: warning: the data is not all finite: x holds 1 NaN of 180 values; it spreads to the "
                      "values computed from it"]


def test_the_app_says_nan_in_the_data_it_loads(qtbot, tmp_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from propscope.gui.main_window import MainWindow

    window = MainWindow(open_session("classifier"), settings=QSettings(str(tmp_path / "p.ini"),
                                                                       QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=10000):
        assert window.load_data_path(_classifier_data_with_a_nan(tmp_path))
    assert window.status_message.text() == ("Data from nan.npz: x 90×2, y 90; warning: the data is not all finite: x "
                                            "holds 1 NaN of 180 values; it spreads to the values computed from it")


def test_training_names_the_data_not_the_first_op_as_the_origin(tmp_path: Path) -> None:
    s = open_session("classifier", dtype="float64", data=_classifier_data_with_a_nan(tmp_path))
    with pytest.raises(TrainingDiverged) as caught:
        s.train(2)
    message = str(caught.value)
    assert "the data's x (1 NaN) already held it, first met by linear 'hidden_input' (forward step 1)" in message
    assert "is made by" not in message


def test_the_gradient_flow_line_names_the_data_as_the_origin(tmp_path: Path) -> None:
    s = open_session("classifier", dtype="float64", data=_classifier_data_with_a_nan(tmp_path))
    s.run_to_end()
    assert "first non-finite value at forward step 1 (linear hidden_input, carried in: the data's x (1 NaN) already " \
           "held it)" in gradient_flow(s).summary()


def test_finite_data_keeps_the_op_that_made_the_nan_as_the_origin() -> None:
    g = Graph("logs")
    x, w = g.input("x", (3, 1)), g.parameter("w", (1, 1))
    g.set_outputs(g.add("log", g.add("matmul", x, w, name="scaled"), name="logged"))
    data = {"x": np.array([[1.0], [0.0], [2.0]]), "y": np.zeros((3, 1))}
    s = open_session(Model(g, {"w": np.ones((1, 1))}), dtype="float64", data=data, loss="mse")
    with pytest.raises(TrainingDiverged, match=r"the first non-finite value is made by log 'logged' \(forward step 2"):
        s.train(1)
    s.run_to_end()
    assert "first non-finite value at forward step 2 (log logged)" in gradient_flow(s).summary()


@pytest.mark.torch
def test_compare_says_the_data_is_not_finite() -> None:
    """Where a max pool routes a NaN gradient differently on each backend, the infinite difference is the data's."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 6, 6))
    x[0, 0, 2, 2] = np.nan
    s = open_session(_segmenter(classes=2, pool=True), dtype="float64", loss="mse",
                     data={"x": x, "y": rng.normal(size=(2, 2, 3, 3))})
    s.run_to_end()
    comparison = compare_backends(s, get_backend("torch", "float64", "cpu"))
    assert not comparison.passed and comparison.max_diff == np.inf
    assert comparison.explanation is not None
    assert comparison.explanation.startswith("the data itself is not finite (x holds 1 NaN of 216 values)")
    x[0, 0, 2, 2] = 0.5  # finite data: no such note
    s = open_session(_segmenter(classes=2, pool=True), dtype="float64", loss="mse",
                     data={"x": x, "y": rng.normal(size=(2, 2, 3, 3))})
    s.run_to_end()
    assert compare_backends(s, get_backend("torch", "float64", "cpu")).explanation is None


# -- 3. the hint of a wrong-shape refusal fits what was opened ---------------------------------------------------------
def test_a_file_of_fixed_sizes_is_not_offered_torchvision() -> None:
    with pytest.raises(PropscopeError) as caught:
        fit_batch(_segmenter().graph, {"x": np.zeros((2, 1, 28, 28))})
    message = str(caught.value)
    assert message.startswith("input 'x': expected shape (2, 3, 6, 6), got (2, 1, 28, 28) (any batch size: "
                              "(N, 3, 6, 6);")
    assert "torchvision" not in message and "traced or exported at" in message


def test_an_architecture_built_at_a_size_names_how_to_build_it_at_another() -> None:
    model = resizable_by(_segmenter(), "torchvision:fcn_resnet50@SIZE")
    with pytest.raises(PropscopeError, match=r"\(any batch size: \(N, 3, 6, 6\); torchvision:fcn_resnet50@SIZE builds "
                                             r"it at other sizes\)"):
        fit_batch(model.with_output(None).graph.copy(), {"x": np.zeros((2, 3, 28, 28))})



@pytest.mark.slow
@pytest.mark.torch
def test_a_torchvision_architecture_offers_its_own_size_spec() -> None:
    if importlib.util.find_spec("torchvision") is None:  # not imported here: propscope's loader imports it its way
        pytest.skip("torchvision is not installed")
    data = {"x": np.zeros((2, 3, 40, 40), dtype=np.float32), "y": np.zeros(2, dtype=np.int64)}
    with pytest.raises(PropscopeError, match=r"got \(2, 3, 40, 40\) \(any batch size: \(N, 3, 48, 48\); "
                                             r"torchvision:squeezenet1_1@SIZE builds it at other sizes\)"):
        open_session("torchvision:squeezenet1_1@48", data=data)

# -- 4. TorchScript: data of the wrong shape is said as such ---------------------------------------------------------
@pytest.mark.torch
def test_a_torchscript_archive_says_the_data_does_not_fit_its_input(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    sample = torch.zeros(1, 3, 8, 8)
    net(sample)
    path = tmp_path / "traced.pt"
    torch.jit.trace(net.eval(), sample).save(str(path))
    wrong = {"x": np.zeros((2, 1, 8, 8), dtype=np.float32), "y": np.zeros(2, dtype=np.int64)}
    with pytest.raises(ModelFormatError) as caught:
        open_session(path, data=wrong)
    message = str(caught.value)
    assert message.startswith(f"{path}: input 'input': the data's shape (2, 1, 8, 8) does not fit the archive, "
                              "traced at (1, 3, 8, 8) (conv2d node ")
    assert "expects 3 input channels" in message and "is not known" not in message and "unsupported" not in message
    fits = open_session(path, data={"x": np.zeros((2, 3, 8, 8), dtype=np.float32), "y": np.zeros(2, np.int64)})
    assert fits.batch["input"].shape == (2, 3, 8, 8)  # a single input is the data's x


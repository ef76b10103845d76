"""Ultralytics YOLO checkpoints (`best.pt`, `yolo11n.pt`: the model object itself, pickled, as ultralytics' trainer
saves it and `strip_optimizer` leaves it): opened without `--arch`, the network built by ultralytics from the
checkpoint's own config, filled with its weights, and stepped on both backends with torch autograd's gradients of the
module ultralytics itself loads from the file. Hostile configs are refused in one line before ultralytics sees them."""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.cli import main
from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import open_model, ultralytics_checkpoint

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ultralytics") is None or importlib.util.find_spec("torch") is None,
    reason="ultralytics is not installed")


@pytest.fixture(scope="module")
def ultralytics(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """ultralytics, offline, its settings file in a temporary folder (it writes one on import)."""
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics-settings")))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    from propscope.graph.readers import _torchvision

    _torchvision.models()  # ultralytics imports torchvision (this machine's may be a CUDA build beside a CPU torch)
    import ultralytics

    return ultralytics


def _saved(ultralytics: Any, config: str, path: Path, imgsz: int = 64, edit: Any = None) -> Path:
    """A checkpoint as a training run leaves it: the trainer's dict (the EMA's model object, its arguments), then
    ultralytics' own `strip_optimizer` (the model in half precision under `model`, as the released weights are)."""
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import RTDETRDetectionModel
    from ultralytics.utils.torch_utils import strip_optimizer

    torch.manual_seed(0)
    model = RTDETRDetectionModel(config, verbose=False) if config.startswith("rtdetr") else \
        ultralytics.YOLO(config).model
    for p in model.parameters():  # BatchNorm's fresh statistics are all ones and zeros: give them numbers
        p.data.add_(0.05 * torch.randn_like(p))
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn_like(b))
        elif name.endswith("running_var"):
            b.copy_(0.5 + torch.rand_like(b))
    if edit is not None:
        edit(model)
    args = get_cfg(overrides={"model": config, "imgsz": imgsz, "data": "coco8.yaml", "epochs": 1})
    torch.save({"epoch": 0, "best_fitness": 0.0, "model": None, "ema": copy.deepcopy(model), "updates": 1,
                "optimizer": None, "train_args": vars(args), "train_metrics": {}, "date": "2026-12-01",
                "version": ultralytics.__version__}, path)
    strip_optimizer(str(path))
    return path


def _loaded(path: Path) -> Any:
    """The module ultralytics itself loads from the checkpoint (its own torch.load of our own file), in float64."""
    from ultralytics.nn.tasks import load_checkpoint

    model, _ = load_checkpoint(str(path))
    for name, p in model.named_parameters():  # loaded for inference: all frozen; in training only the box decoder's
        p.requires_grad_(".dfl." not in name)  # fixed 0…15 weights (DFL) are, which the program holds as a constant
    return model.double().eval()


def _first(out: Any) -> Any:
    while isinstance(out, tuple | list | dict):
        out = next(iter(out.values())) if isinstance(out, dict) else out[0]
    return out


def _assert_autograds(s: Any, module: Any) -> None:
    import torch

    s.run_to_end()
    name = s.graph.inputs[0].name
    x = torch.from_numpy(np.asarray(s.batch[name], dtype=np.float64)).requires_grad_(True)
    loss = torch.nn.functional.mse_loss(_first(module(x)), torch.from_numpy(np.asarray(s.batch["y"])))
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in module.named_parameters() if p.grad is not None}
    assert float(s.backend.to_numpy(s.value(s.loss_node.name))) == pytest.approx(loss.item(), rel=1e-12)
    assert grads and set(grads) <= set(s.parameters_numpy())
    largest = max(float(np.abs(g).max()) for g in grads.values())
    for key, want in grads.items():
        assert s.grad(key) is not None, key
        error = float(np.abs(np.asarray(s.backend.to_numpy(s.grad(key))) - want).max())
        assert error <= 1e-9 * max(float(np.abs(want).max()), 1e-6 * largest), key
    want = x.grad.numpy()
    assert float(np.abs(s.backend.to_numpy(s.grad(name)) - want).max()) <= 1e-9 * float(np.abs(want).max())


# a batch of 2: torch 2.13's CPU batch-norm backward misreads an incoming gradient laid out channels-last at batch 1
# (README, *Backends*), which YOLO12's area attention hands on; propscope's gradients agree with central differences
@pytest.mark.parametrize(("config", "backend"), [
    ("yolo11n.yaml", "numpy"),  # detection: C3k2, C2PSA attention, SPPF, the decoded boxes (DFL, anchors)
    ("yolo11n-seg.yaml", "torch"),  # the mask coefficients and prototypes
    ("yolo11n-cls.yaml", "numpy"),  # classification
    ("yolov8n-pose.yaml", "numpy"),  # keypoints
    ("yolo12n.yaml", "numpy"),  # area attention
    ("yolo26n.yaml", "torch"),  # end-to-end head (no NMS: one-to-one top-k)
    ("yolov6n.yaml", "numpy"),  # its config's activation is `torch.nn.ReLU()`
])
def test_a_checkpoint_opens_without_arch_and_steps_with_autograds_gradients(ultralytics: Any, tmp_path: Path,
                                                                             config: str, backend: str) -> None:
    path = _saved(ultralytics, config, tmp_path / "best.pt")
    assert ultralytics_checkpoint.match(path)
    model = open_model(path)
    assert not model.unsupported_ops, model.unsupported_ops
    assert "Ultralytics" in model.description and "best.pt" in model.description
    first = model.graph.outputs[0]
    x = np.random.default_rng(0).random((2, 3, 64, 64))
    y = np.random.default_rng(1).standard_normal((2, *first.shape[1:]))
    s = open_session(path, backend=backend, dtype="float64", data={"x": x, "y": y}, loss="mse")
    assert s.graph.inputs[0].shape == (2, 3, 64, 64)
    _assert_autograds(s, _loaded(path))


def test_the_training_size_and_the_datas_size(ultralytics: Any, tmp_path: Path) -> None:
    """The image size the run trained at (train_args.imgsz) is the one it opens at; data of another batch and size
    traces it again there."""
    path = _saved(ultralytics, "yolov8n.yaml", tmp_path / "last.pt", imgsz=96)
    assert open_model(path).graph.inputs[0].shape == (1, 3, 96, 96)
    x = np.random.default_rng(0).random((3, 3, 64, 128))
    s = open_session(path, dtype="float64", data={"x": x}, loss="none")
    assert s.graph.inputs[0].shape == (3, 3, 64, 128)
    with pytest.raises(ModelFormatError, match="multiples of 32"):
        open_session(path, dtype="float64", data={"x": np.zeros((1, 3, 60, 60))}, loss="none")


def test_inspect_says_it_opens_and_lists_its_weights(ultralytics: Any, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = _saved(ultralytics, "yolo11n.yaml", tmp_path / "yolo11n.pt")
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "an Ultralytics YOLO checkpoint, whose network opens with `propscope open yolo11n.pt`" in out
    assert "model.23.dfl.conv.weight" in out and "float16" in out


def _with_config(change: Any) -> Any:
    def edit(model: Any) -> None:
        change(model.yaml)

    return edit


@pytest.mark.parametrize(("change", "said"), [
    # a function of ultralytics.nn.tasks that loads (and unpickles) another file, named as a layer
    (lambda c: c["backbone"][0].__setitem__(2, "attempt_load_weights"), "layer 0 of its Ultralytics config names "
                                                                       "'attempt_load_weights', which is not a"),
    (lambda c: c["head"][0].__setitem__(2, "__builtins__"), "'__builtins__', which is not a torch.nn or"),
    # ultralytics evaluates the activation
    (lambda c: c.__setitem__("activation", "__import__('os').system('echo owned')"), "activation"),
    (lambda c: c.__setitem__("activation", "nn.SiLU(__import__('os'))"), "activation"),
    (lambda c: c.__setitem__("activation", "os.system('echo owned')"), "activation"),
    (lambda c: c["backbone"][0].__setitem__(1, 10**6), "[from, repeats, module, arguments]"),
    # widths that ask for billions of parameters: refused by the memory budget before anything is allocated
    (lambda c: c["scales"].__setitem__("n", [0.33, 4000.0, 10**7]), "over the memory budget"),
    # a layer class this ultralytics does not have (a checkpoint from a newer one)
    (lambda c: c["backbone"][0].__setitem__(2, "C9k9"), "layer 0 of its Ultralytics config is a C9k9, which "
                                                        "ultralytics"),
])
def test_a_hostile_config_is_refused_before_ultralytics_sees_it(ultralytics: Any, tmp_path: Path, change: Any,
                                                                said: str) -> None:
    path = _saved(ultralytics, "yolov8n.yaml", tmp_path / "bad.pt", edit=_with_config(change))
    with pytest.raises(ModelFormatError) as caught:
        open_model(path)
    message = str(caught.value)
    assert said in message and "\n" not in message and str(path) in message


def test_weights_that_do_not_fit_the_config_are_refused(ultralytics: Any, tmp_path: Path) -> None:
    def other_width(model: Any) -> None:
        model.yaml["scale"] = "s"  # the config now builds yolov8s, the weights are yolov8n's

    path = _saved(ultralytics, "yolov8n.yaml", tmp_path / "mixed.pt", edit=other_width)
    with pytest.raises(ModelFormatError, match=r"its weights do not fit the network its config builds .*of another "
                                               r"shape model\.0\.conv\.weight"):
        open_model(path)


def test_without_ultralytics_it_says_what_to_install(ultralytics: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    path = _saved(ultralytics, "yolov8n.yaml", tmp_path / "best.pt")
    for name in [m for m in sys.modules if m == "ultralytics" or m.startswith("ultralytics.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import ultralytics raises ImportError
    with pytest.raises(ModelFormatError, match=r"needs ultralytics \(pip install ultralytics\)"):
        open_model(path)


def test_a_plain_state_dict_is_not_taken_for_one(tmp_path: Path) -> None:
    import torch

    path = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    assert not ultralytics_checkpoint.match(path)
    assert not ultralytics_checkpoint.match(tmp_path / "missing.pt")


@pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")
def test_the_app_opens_it_as_a_network_not_as_weights_to_place(ultralytics: Any, tmp_path: Path, qtbot: Any) -> None:
    """File ▸ Open (or a drop) of a YOLO checkpoint builds its network in the background: no architecture dialog,
    the graph folded by ultralytics' layers (`model.0` … `model.23`), steps to the end with the keys."""
    from PySide6.QtCore import QSettings, Qt
    from test_gui_window import make_window

    from propscope.gui.canvas.folding import BOX_PREFIX
    from propscope.gui.opening import is_state_dict

    path = _saved(ultralytics, "yolo11n.yaml", tmp_path / "best.pt")
    assert not is_state_dict(path)
    window = make_window(qtbot, QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat))
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=120000):
        job = window.open_path(path)
        assert job is not None  # a job, not the question which architecture the weights fill
    s = window.bridge.session
    assert s.name == "best" and "model.23.cv2.0.0.conv.weight" in s.graph
    assert BOX_PREFIX + "model.23" in window.canvas.folding.units
    qtbot.keyClick(window, Qt.Key.Key_End)
    qtbot.waitUntil(lambda: not window.debug.sliced.running, timeout=60000)
    assert s.at_end
    window.close()

"""torchvision's architectures by name (`torchvision:resnet18@32`), with random weights or as a state dict's
architecture (`--arch torchvision:resnet18`): built by torchvision's constructor, exported, read as a .pt2, and
stepped to autograd's numbers (float64); a fine-tuned head's class count comes from the state dict; a segmentation
net answers with its `out` map; what cannot open says why in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import display_name, load_target

pytestmark = [pytest.mark.torch, pytest.mark.skipif(not zoo.has_torchvision(), reason="needs torchvision")]


def _autograd(model: Any, batch: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
    import torch

    model = model.double().eval()
    x = torch.from_numpy(np.asarray(batch["x"], dtype=np.float64))
    out = model(x)
    out = out["out"] if isinstance(out, dict) else out
    loss = torch.nn.functional.cross_entropy(out, torch.from_numpy(np.asarray(batch["y"])).long())
    loss.backward()
    return float(loss.detach()), {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}


def _check(s: Any, model: Any) -> None:
    s.run_to_end()
    loss, grads = _autograd(model, {k: np.asarray(v) for k, v in s.batch.items()})
    assert abs(float(s.value(s.loss_node.name)) - loss) < 1e-12 * max(1.0, loss)
    largest = max(float(np.max(np.abs(g))) for g in grads.values())
    for name, want in grads.items():
        scale = max(float(np.max(np.abs(want))), 1e-6 * largest)
        assert float(np.max(np.abs(s.grad(name) - want))) / scale < 1e-9, name


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_an_architecture_by_name_steps_to_autograds_gradients(backend: str) -> None:
    import torch

    s = open_session("torchvision:resnet18@32", backend=backend, dtype="float64")
    assert s.name == display_name("torchvision:resnet18@32") == "resnet18"
    assert s.loss_name == "cross_entropy" and s.graph["x"].shape == (1, 3, 32, 32)
    torch.manual_seed(0)  # the weights the reader drew
    _check(s, zoo.torchvision_models().resnet18())


def test_a_fine_tuned_state_dict_gets_its_own_number_of_classes(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(3)
    tuned = zoo.torchvision_models().mobilenet_v3_small(num_classes=7)
    with torch.no_grad():
        for b in tuned.modules():
            if isinstance(b, torch.nn.BatchNorm2d):  # statistics as training leaves them, not the initial 0 and 1
                b.running_mean.uniform_(-0.2, 0.2)
                b.running_var.uniform_(0.5, 1.5)
    torch.save(tuned.state_dict(), tmp_path / "tuned.pth")
    s = open_session(tmp_path / "tuned.pth", dtype="float64", arch="torchvision:mobilenet_v3_small@32")
    report = next((w for w in s.model.warnings if "matched" in w), "")  # a clean match says nothing
    assert "missing" not in report and "wrong shape" not in report, report
    assert s.prediction_node.shape == (1, 7) and "7 classes" in s.model.description
    _check(s, tuned)


def test_a_segmentation_state_dict_answers_with_its_out_map(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(4)
    net = zoo.torchvision_models().segmentation.fcn_resnet50(weights=None, weights_backbone=None, num_classes=3,
                                                              aux_loss=True)
    torch.save(net.state_dict(), tmp_path / "fcn.pth")
    model = load_target(tmp_path / "fcn.pth", arch="torchvision:fcn_resnet50@32")
    assert next(n.shape for n in model.graph.outputs) == (1, 3, 32, 32)
    report = next((w for w in model.warnings if "matched" in w), "")
    assert "missing" not in report and "wrong shape" not in report, report


@pytest.mark.parametrize(("spec", "says"), [
    ("torchvision:not_a_net", "no classification, segmentation or video model 'not_a_net'"),
    ("torchvision:fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn is a detection model: its outputs are boxes"),
    ("torchvision:raft_small", "raft_small is an optical-flow model"),
    ("torchvision:quantized_resnet18", "a quantized model, run by torchvision's integer kernels (open "
                                       "torchvision:resnet18"),
    ("torchvision:resnet18@5", "between 16 and 1024"),
    ("torchvision:ResNet18", "write torchvision:NAME"),
    ("torchvision:vit_b_16@40", "square images whose side is a multiple of its patch, 16 (torchvision:vit_b_16@32)"),
    ("torchvision:vit_b_16@32x64", "square images"),
    ("torchvision:maxvit_t@64", "square images whose side is a multiple of 224"),
    ("torchvision:maxvit_t@224x448", "square images whose side is a multiple of 224"),
    ("torchvision:mvit_v1_b@112", "only 224×224 clips of 16 frames"),
    ("torchvision:alexnet@32", "alexnet takes images of at least 63×63 (torchvision:alexnet@63)"),
])
def test_what_cannot_open_says_why_in_one_line(spec: str, says: str) -> None:
    with pytest.raises(ModelFormatError) as info:
        load_target(spec)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_the_app_puts_a_state_dict_into_a_torchvision_architecture(tmp_path: Path) -> None:
    """File ▸ Open of a .pth, the architecture typed in its dialog: the loading job's path."""
    import torch

    from propscope.gui.opening import load_file

    torch.manual_seed(5)
    torch.save(zoo.torchvision_models().resnet18(num_classes=4).state_dict(), tmp_path / "r18.pth")
    loaded = load_file(tmp_path / "r18.pth", "numpy", "float32", arch="torchvision:resnet18@32")
    assert loaded.report is not None and loaded.report.ok and not loaded.report.wrong_shape
    assert loaded.session.prediction_node.shape == (1, 4)


def test_the_architecture_dialog_offers_torchvision(qtbot: Any, tmp_path: Path) -> None:
    """As a user meets it: File ▸ Open of a .pth asks which network; "A torchvision architecture", a name and an
    image side, Open; the weights go in and the report says all matched."""
    import torch

    from propscope.gui.main_window import MainWindow

    torch.manual_seed(6)
    torch.save(zoo.torchvision_models().resnet18(num_classes=5).state_dict(), tmp_path / "mine.pth")
    window = MainWindow(open_session("xor"))
    qtbot.addWidget(window)
    assert window.open_path(tmp_path / "mine.pth") is None  # the question first
    dialog = window.open_dialog
    dialog.library_name.setCurrentText("resnet18")
    dialog.image_size.setValue(32)
    assert dialog.use_library.isChecked() and dialog.architecture() == "torchvision:resnet18@32"
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=120_000):
        dialog.accept()
    assert window.bridge.session.prediction_node.shape == (1, 5)
    assert window.last_report.ok and not window.last_report.unexpected  # BatchNorm's num_batches_tracked: not listed
    window.report_dialog.close()


def test_a_dataparallel_state_dict_finds_its_head_through_the_prefix(tmp_path: Path) -> None:
    import torch

    torch.manual_seed(7)
    tuned = zoo.torchvision_models().resnet18(num_classes=3)
    torch.save({f"module.{k}": v for k, v in tuned.state_dict().items()}, tmp_path / "dp.pth")
    model = load_target(tmp_path / "dp.pth", arch="torchvision:resnet18@32")
    assert next(n.shape for n in model.graph.outputs) == (1, 3)
    report = next(w for w in model.warnings if "matched" in w)
    assert "prefix 'module.' stripped" in report and "missing" not in report and "wrong shape" not in report


@pytest.mark.parametrize(("name", "head", "classes"), [
    ("efficientnet_b0", "classifier.1.weight", 7),
    ("efficientnet_b0", "classifier.1.weight", 1280),  # also the width of its features, the head's second axis
    ("convnext_tiny", "classifier.2.weight", 7), ("vit_b_16", "heads.head.weight", 7), ("swin_t", "head.weight", 7),
    ("googlenet", "fc.weight", 7),  # and its two auxiliary heads, which count too
    ("regnet_x_400mf", "fc.weight", 7),  # its constructor computes its widths with tensors: no meta default device
    ("fcn_resnet50", "classifier.4.weight", 7),  # a segmentation net fine-tuned without its auxiliary classifier
    ("lraspp_mobilenet_v3_large", "classifier.high_classifier.weight", 7),
    ("r3d_18", "fc.weight", 7),  # Kinetics' 400 classes the usual count
])
def test_a_fine_tuned_heads_class_count_is_read_from_its_tensors(name: str, head: str, classes: int) -> None:
    """The state dict as torchvision's constructor lays it out for that many classes (shapes only: zero-stride
    arrays), read by the rule open_spec uses; a DataParallel prefix changes nothing."""
    import torch

    from propscope.graph.readers import torchvision_arch

    models = zoo.torchvision_models()
    family = torchvision_arch._family(models, name, name)
    options = torchvision_arch._options(family, classes, False, name)
    shapes = torchvision_arch._shapes(torch, models, name, options)
    assert shapes[head][0] == classes
    tensors = {k: np.broadcast_to(np.float32(0), v) for k, v in shapes.items()}
    assert torchvision_arch._classes_of(torch, models, name, family, tensors) == classes
    wrapped = {f"module.{k}": v for k, v in tensors.items()}
    assert torchvision_arch._classes_of(torch, models, name, family, wrapped) == classes
    usual = torchvision_arch._shapes(torch, models, name, torchvision_arch._options(family, None, False, name))
    unchanged = {k: np.broadcast_to(np.float32(0), v) for k, v in usual.items()}
    assert torchvision_arch._classes_of(torch, models, name, family, unchanged) is None


def test_a_vision_transformer_is_built_for_its_state_dicts_image_size() -> None:
    """A ViT's position embedding fixes its image size: the state dict's wins over the spec's, and says so; without
    one the spec's is passed to the constructor (image_size), so any multiple of the patch opens."""
    from propscope.graph.readers import torchvision_arch

    models = zoo.torchvision_models()
    tensors = {"encoder.pos_embedding": np.broadcast_to(np.float32(0), (1, 1 + 4 * 4, 768))}
    size, _, sized, note = torchvision_arch._geometry(models, "vit_b_16", (32, 32), "s", tensors)
    assert size == (64, 64) and sized == {"image_size": 64} and "for 64×64 images" in note and "not 32×32" in note
    assert torchvision_arch._geometry(models, "vit_b_32", (96, 96), "s", None)[2] == {"image_size": 96}
    assert torchvision_arch._geometry(models, "maxvit_t", None, "s", None)[2] == {"input_size": (224, 224)}
    assert torchvision_arch._geometry(models, "mvit_v2_s", None, "s", None)[:2] == ((224, 224), 16)
    assert torchvision_arch._geometry(models, "s3d", (32, 32), "s", None)[1] == 14  # its weights' shortest clip


def test_a_segmentation_net_steps_with_a_class_map_target_by_default() -> None:
    """Its logits are (N, C, H, W): the generated target is an (N, H, W) map of class indices, as torch takes it."""
    import torch

    s = open_session("torchvision:lraspp_mobilenet_v3_large@32", dtype="float64")
    assert s.loss_name == "cross_entropy" and s.batch["y"].shape == (1, 32, 32) and s.batch["y"].max() < 21
    torch.manual_seed(0)
    _check(s, zoo.torchvision_models().segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None))

"""timm's architectures by name (`timm:NAME[@SIZE]`, `--arch timm:NAME`) and timm checkpoint folders (what timm's
`save_for_hf` writes): built by timm's own constructor with random weights, nothing downloaded, and stepped on both
backends with torch autograd's gradients."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.cli import main
from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import display_name, load_target, open_model, timm_arch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("timm") is None or importlib.util.find_spec("torch") is None,
                                reason="timm is not installed")


def _timm() -> Any:
    from propscope.graph.readers import _torchvision

    _torchvision.models()  # timm imports torchvision (this machine's may be a CUDA build beside a CPU torch)
    import timm

    return timm


def _autograd(module: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    import torch

    m = copy.deepcopy(module).double().eval()
    loss = torch.nn.functional.cross_entropy(m(torch.from_numpy(np.asarray(x, dtype=np.float64))), torch.from_numpy(y))
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in m.named_parameters() if p.grad is not None}


def _assert_autograds(s: Any, module: Any) -> None:
    s.run_to_end()
    x, y = s.batch[s.graph.inputs[0].name], s.batch["y"]
    loss, grads = _autograd(module, x, y)
    assert float(s.backend.to_numpy(s.value(s.loss_node.name))) == pytest.approx(loss, rel=1e-12)
    largest = max(float(np.abs(g).max()) for g in grads.values())
    assert set(grads) <= set(s.parameters_numpy())
    for name, want in grads.items():
        error = float(np.abs(np.asarray(s.backend.to_numpy(s.grad(name))) - want).max())
        assert error <= 1e-9 * max(float(np.abs(want).max()), 1e-6 * largest), name


@pytest.mark.parametrize(("name", "size", "backend"),
                         [("resnet18", 32, "numpy"), ("vit_tiny_patch16_224", 16, "torch")])
def test_an_architecture_by_name_steps_with_autograds_gradients(name: str, size: int, backend: str) -> None:
    timm = _timm()
    s = open_session(f"timm:{name}@{size}", dtype="float64", loss="cross_entropy", backend=backend)
    assert s.name == name and not s.model.unsupported_ops
    assert s.batch[s.graph.inputs[0].name].shape == (1, 3, size, size)  # a vision transformer built for the size
    import torch

    torch.manual_seed(0)  # as open_spec builds it
    options = {"img_size": size} if name.startswith("vit") else {}
    _assert_autograds(s, timm.create_model(name, pretrained=False, **options))


def test_a_checkpoint_folder_as_timm_writes_it(tmp_path: Path) -> None:
    """save_for_hf writes config.json (architecture, num_classes, model_args, pretrained_cfg) and the weights."""
    import torch

    timm = _timm()
    from timm.models import _hub
    torch.manual_seed(3)
    trained = timm.create_model("resnet18", pretrained=False, num_classes=7)
    folder = tmp_path / "my-resnet"
    _hub.save_for_hf(trained, str(folder), safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    assert (folder / "model.safetensors").is_file() and config["architecture"] == "resnet18"
    config["pretrained_cfg"]["input_size"] = [3, 32, 32]  # fine-tuned on small images: exported at their size
    (folder / "config.json").write_text(json.dumps(config))
    for target in (folder, folder / "config.json"):
        model = open_model(target)
        assert display_name(target) == "my-resnet"
        assert "weights from my-resnet/model.safetensors" in model.description and "7 classes" in model.description
        for name, value in trained.state_dict().items():
            if name in model.arrays:
                np.testing.assert_array_equal(model.arrays[name], value.numpy(), err_msg=name)
        assert model.graph.outputs[0].shape == (1, 7) and model.graph.inputs[0].shape == (1, 3, 32, 32)
    s = open_session(folder, dtype="float64")  # cross-entropy by default: a classifier
    assert s.loss_name == "cross_entropy"
    _assert_autograds(s, trained)


def test_a_vision_transformer_folder_built_for_its_size(tmp_path: Path) -> None:
    """save_for_hf writes a ViT built at another size with img_size [H, W] in model_args: opened at that size."""
    import torch

    timm = _timm()
    from timm.models import _hub
    torch.manual_seed(4)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=3)
    _hub.save_for_hf(vit, str(tmp_path / "vit"), safe_serialization=True)
    assert json.loads((tmp_path / "vit" / "config.json").read_text())["model_args"]["img_size"] == [32, 32]
    model = open_model(tmp_path / "vit")
    assert model.graph.outputs[0].shape == (1, 3)
    np.testing.assert_array_equal(model.arrays["pos_embed"], vit.pos_embed.detach().numpy())


def test_a_fine_tuned_state_dict_against_timm_by_name(tmp_path: Path) -> None:
    import torch

    timm = _timm()
    torch.manual_seed(5)
    tuned = timm.create_model("resnet18", pretrained=False, num_classes=4)
    path = tmp_path / "tuned.pth"
    torch.save({f"module.{k}": v for k, v in tuned.state_dict().items()}, path)  # as DataParallel saves it
    model = load_target(path, arch="timm:resnet18@32")
    assert model.graph.outputs[0].shape == (1, 4)  # the head's classes read from the state dict
    np.testing.assert_array_equal(model.arrays["fc.weight"], tuned.fc.weight.detach().numpy())


def test_what_timm_cannot_build_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _timm()
    with pytest.raises(ModelFormatError, match=r"^timm:resnet5000: timm \S+ has no model 'resnet5000' "
                                               r"\(nearest: resnet50"):
        load_target("timm:resnet5000")
    with pytest.raises(ModelFormatError, match="write timm:NAME or timm:NAME@SIZE"):
        timm_arch.parse("timm:ResNet")
    with pytest.raises(ModelFormatError, match="image sides between 16 and 1024"):
        timm_arch.parse("timm:resnet18@8")
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet18", "model_args": {"act_layer": {"x": 1}}}))
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFormatError, match="model_args holds more than names and plain values"):
        open_model(folder)
    (folder / "model.safetensors").unlink()
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet18"}))
    with pytest.raises(ModelFormatError, match="a timm checkpoint without weights"):
        open_model(folder)
    assert main(["inspect", "timm:nosuchnet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no model 'nosuchnet'" in err


def test_a_transformers_folder_is_not_taken_for_timms(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    assert not timm_arch.match(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    assert not timm_arch.match(tmp_path)  # transformers' reader says what is wrong with it


def test_a_distilled_head_gets_the_state_dicts_classes(tmp_path: Path) -> None:
    """DeiT's distilled model has two heads (get_classifier gives both): a fine-tuned 10-class one is kept whole."""
    import torch

    timm = _timm()
    torch.manual_seed(7)
    tuned = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, num_classes=10, img_size=32)
    torch.save(tuned.state_dict(), tmp_path / "deit.pth")
    model = load_target(tmp_path / "deit.pth", arch="timm:deit_tiny_distilled_patch16_224@32")
    assert model.graph.outputs[0].shape == (1, 10)
    np.testing.assert_array_equal(model.arrays["head_dist.weight"], tuned.head_dist.weight.detach().numpy())
    assert load_target("timm:resnet18@32").loss == "cross_entropy"


def test_a_folder_transformers_timm_wrapper_saved_opens_as_timms(tmp_path: Path) -> None:
    """transformers' TimmWrapperForImageClassification.save_pretrained names both `architectures` (its own class)
    and timm's `architecture`, and keeps timm's weights under `timm_model.`: timm builds it, the prefix goes."""
    import torch

    _timm()
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(5)
    config = transformers.TimmWrapperConfig(architecture="resnet18", num_labels=5)
    wrapped = transformers.TimmWrapperForImageClassification(config)
    folder = tmp_path / "wrapped"
    wrapped.save_pretrained(str(folder))
    assert timm_arch.match(folder)
    model = open_model(folder)
    assert "5 classes" in model.description and model.graph.outputs[0].shape == (1, 5)
    assert "prefix 'timm_model.' stripped" in " ".join(model.warnings)
    for name, value in wrapped.timm_model.state_dict().items():
        if name in model.arrays:
            np.testing.assert_array_equal(model.arrays[name], value.numpy(), err_msg=name)


def test_a_vit_takes_the_datas_batch_with_its_weights(tmp_path: Path) -> None:
    """A ViT is traced at batch 1 with its class token expanded to it: data of 3 images re-traces it at 3 (it was
    refused: cannot concatenate (1, 1, 192) and (3, 4, 192)), with the state dict's weights."""
    import torch

    timm = _timm()
    torch.manual_seed(1)
    module = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=4).eval()
    weights = tmp_path / "vit.pt"
    torch.save(module.state_dict(), weights)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 3, 32, 32)), rng.integers(0, 4, 3)
    s = open_session(weights, arch="timm:vit_tiny_patch16_224@32", data={"x": x, "y": y}, dtype="float64")
    assert s.graph["x"].shape == (3, 3, 32, 32)
    s.run_to_end()
    loss, grads = _autograd(module, x, y)
    assert float(s.value("loss")) == pytest.approx(loss, rel=1e-9)
    np.testing.assert_allclose(s.grad("cls_token"), grads["cls_token"], rtol=1e-7, atol=1e-12)

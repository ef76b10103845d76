"""A transformers folder is traced again at the data's image size or audio length (not only its batch and text
length), and a model that cannot take that size (a ViT, whose position embeddings are made for one) is refused in one
line naming the size it takes. Numbers against torch autograd on the checkpoint itself, in float64."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, "tests")
import zoo

from propscope.cli import main
from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError

pytestmark = [pytest.mark.torch, pytest.mark.skipif(not zoo.has_transformers(), reason="needs transformers")]


def _tiny(config: str, arch: str, **settings: Any) -> Any:
    def build() -> Any:
        zoo.torchvision_models()  # transformers imports torchvision when it is installed
        import transformers

        return getattr(transformers, arch)(getattr(transformers, config)(**settings))

    return build


BUILDERS = {
    # made for 90 samples (8 frames); read at 400 (39 frames)
    "wav2vec2": _tiny("Wav2Vec2Config", "Wav2Vec2ForCTC", vocab_size=12, hidden_size=16, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 2),
                      conv_kernel=(10, 3), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2),
    "segformer": _tiny("SegformerConfig", "SegformerForSemanticSegmentation", image_size=32, num_encoder_blocks=2,
                       depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], num_attention_heads=[1, 2],
                       patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=3),
    "convnextv2": _tiny("ConvNextV2Config", "ConvNextV2ForImageClassification", image_size=32, num_stages=2,
                        patch_size=4, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3),
    "vit": _tiny("ViTConfig", "ViTForImageClassification", hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32, image_size=16, patch_size=8, num_labels=4),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    folders = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(0)
        folders[name] = tmp_path_factory.mktemp(name) / name
        zoo._jitter(build()).save_pretrained(folders[name])  # no zero biases or unit norms: every gradient its own
    return folders


RNG = np.random.default_rng(0)
# each at a size other than the one it was made for: (data without the target, prediction shape, loss)
CASES = {
    "wav2vec2": ({"x": RNG.normal(size=(2, 400))}, (2 * 39, 12), "mse"),  # a row per frame, 39 frames a clip
    "segformer": ({"x": RNG.normal(size=(2, 3, 48, 40))}, (2, 3, 12, 10), "mse"),  # not square, not 32×32
    "convnextv2": ({"x": RNG.normal(size=(3, 3, 40, 56))}, (3, 3), "cross_entropy"),
}


def _target(prediction: tuple[int, ...], loss: str) -> np.ndarray:
    if loss == "cross_entropy":
        return RNG.integers(0, prediction[1], size=prediction[0])
    return RNG.normal(size=prediction)


def _autograd(folder: Path, x: np.ndarray, y: np.ndarray, loss: str) -> tuple[Any, dict[str, np.ndarray]]:
    """transformers' own model on the same input, in float64: its prediction and each parameter's gradient."""
    import torch
    import transformers

    cls = getattr(transformers, json.loads((folder / "config.json").read_text())["architectures"][0])
    model = cls.from_pretrained(folder, attn_implementation="eager").double().eval()
    key = model.main_input_name
    logits = zoo._Float64.wrap(model, (key,), flatten=key == "input_values")(torch.from_numpy(x))
    if loss == "cross_entropy":
        torch.nn.functional.cross_entropy(logits, torch.from_numpy(y).long()).backward()
    else:
        torch.nn.functional.mse_loss(logits, torch.from_numpy(y)).backward()
    grads = {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach().numpy(), grads


@pytest.mark.parametrize("name", list(CASES))
def test_a_folder_is_traced_at_the_datas_image_or_audio_size(name: str, checkpoints: dict[str, Path]) -> None:
    inputs, prediction, loss = CASES[name]
    y = _target(prediction, loss)
    s = open_session(checkpoints[name], dtype="float64", data={**inputs, "y": y}, loss=loss)
    assert [tuple(n.shape) for n in s.model.graph.inputs] == [inputs["x"].shape]
    assert s.prediction_node.shape == prediction
    s.run_to_end()
    want, grads = _autograd(checkpoints[name], inputs["x"], y, loss)
    got = s.value(s.prediction_node.name)
    assert float(np.max(np.abs(got - want))) < 1e-10 * max(1.0, float(np.max(np.abs(want))))
    largest = max(float(np.max(np.abs(g))) for g in grads.values())
    checked = 0
    for pname, g in grads.items():
        if pname in s.params:
            scale = max(float(np.max(np.abs(g))), 1e-6 * largest)
            assert float(np.max(np.abs(s.grad(pname) - g))) / scale < 1e-9, pname
            checked += 1
    assert checked >= len(grads) // 2  # the weights, under the names the export kept


def test_data_of_another_size_reads_the_folder_again(checkpoints: dict[str, Path]) -> None:
    s = open_session(checkpoints["segformer"], loss="none")
    assert s.model.graph.inputs[0].shape == (1, 3, 32, 32)
    batch = {"pixel_values": RNG.normal(size=(1, 3, 24, 40))}
    assert s.reads_again_at({"pixel_values": (1, 3, 24, 40)})
    s.set_batch(batch)
    assert s.graph.inputs[0].shape == (1, 3, 24, 40) and s.prediction_node.shape == (1, 3, 6, 10)
    s.run_to_end()


def test_a_vit_takes_the_size_its_position_embeddings_are_made_for(checkpoints: dict[str, Path],
                                                                    tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = checkpoints["vit"]
    with pytest.raises(ModelFormatError, match=r"ViTForImageClassification takes images of 16×16, not the data's "
                                               r"24×24 \(its position embeddings are made for that size\)"):
        open_session(folder, data={"x": RNG.normal(size=(2, 3, 24, 24)), "y": np.array([0, 1])})
    data = tmp_path / "d.npz"
    np.savez(data, x=RNG.normal(size=(1, 3, 32, 16)), y=np.array([2]))
    code = main(["trace", str(folder), "--data", str(data), "--out", str(tmp_path / "t.npz")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "takes images of 16×16, not the data's 32×16" in err
    s = open_session(folder, data={"x": RNG.normal(size=(3, 3, 16, 16)), "y": np.array([0, 1, 3])})
    assert s.graph.inputs[0].shape == (3, 3, 16, 16)  # its own size, another batch: as before

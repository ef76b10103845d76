"""Opening a diffusers checkpoint folder (config.json naming `_class_name`, `diffusion_pytorch_model.safetensors` or
`.bin`, as `save_pretrained` writes it) and a diffusers module handed over in Python.

Tiny random U-Nets (UNet2DModel with attention, NCSN++'s Fourier features and FIR resampling, UNet2DConditionModel
with cross-attention, UNet1DModel as Dance Diffusion builds it) and an AutoencoderKL are saved with
`save_pretrained`, opened by folder, by config.json and at another size (`FOLDER@SIZE`), and stepped to autograd's
loss, every parameter gradient and the input gradients (float64, both backends). Refused with one line: a class
propscope does not build, code shipped with the checkpoint (auto_map), a folder without weights, a pickle that calls
a function.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import diffusers_checkpoint, display_name, load_target, open_model

pytestmark = [pytest.mark.torch, pytest.mark.skipif(
    importlib.util.find_spec("diffusers") is None or importlib.util.find_spec("torch") is None,
    reason="needs torch and diffusers")]


def _diffusers() -> Any:
    zoo.torchvision_models()  # diffusers may import transformers, which imports torchvision when it is installed
    import diffusers

    return diffusers


def _unet2d() -> Any:
    return _diffusers().UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4, attention_head_dim=8)


def _conditional() -> Any:
    return _diffusers().UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=4, attention_head_dim=4, cross_attention_dim=12)


def _vae() -> Any:
    return _diffusers().AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=16)


def _ncsnpp() -> Any:
    """Score SDE's NCSN++ layout: Gaussian Fourier time features of log t, FIR-filtered skip up- and downsampling
    (torch.outer of the filter's taps), the output divided by t."""
    return _diffusers().UNet2DModel(
        sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 32),
        time_embedding_type="fourier", down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"),
        up_block_types=("AttnSkipUpBlock2D", "SkipUpBlock2D"), norm_num_groups=4, attn_norm_num_groups=4,
        attention_head_dim=8)


def _unet1d() -> Any:
    """Dance Diffusion's layout, narrow: Fourier time features concatenated to the waveform, cubic resampling."""
    return _diffusers().UNet1DModel(
        sample_size=64, in_channels=2, out_channels=2, extra_in_channels=16, time_embedding_dim=16,
        block_out_channels=(32, 32, 64), norm_num_groups=4)


BUILDERS = {"unet2d": _unet2d, "conditional": _conditional, "vae": _vae, "unet1d": _unet1d, "ncsnpp": _ncsnpp}
INPUTS = {
    "unet2d": [("sample", (1, 3, 8, 8))],
    "conditional": [("sample", (1, 4, 8, 8)), ("encoder_hidden_states", (1, 8, 12))],
    "vae": [("sample", (1, 3, 16, 16))],
    "unet1d": [("sample", (1, 2, 64))],
    "ncsnpp": [("sample", (1, 3, 8, 8))],
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each model saved as safetensors, the 2-D U-Net also as a pickled `.bin` (safe_serialization=False)."""
    import torch

    folders = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(0)
        model = zoo._jitter(build())  # no zero biases or unit norms: every gradient is its own
        folders[name] = tmp_path_factory.mktemp(name) / name
        model.save_pretrained(folders[name])
        if name == "unet2d":
            folders["unet2d_bin"] = tmp_path_factory.mktemp("bin") / "unet2d_bin"
            model.save_pretrained(folders["unet2d_bin"], safe_serialization=False)
    return folders


def _fixed(cls: Any) -> dict[str, Any]:
    return {"sample_posterior": False} if cls.__name__ == "AutoencoderKL" else \
        {"timestep": diffusers_checkpoint.TIMESTEP}


def _reference(folder: Path, batch: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray],
                                                                     dict[str, np.ndarray]]:
    """torch autograd on the checkpoint loaded by diffusers itself, in float64, its time embedding too (diffusers
    computes it in float32 whatever the model's dtype, and NCSN++'s log t of an integer step in the default dtype;
    propscope's float64 session computes both in float64): the loss, each parameter's gradient and each input's."""
    import torch

    cls = getattr(_diffusers(), json.loads((folder / "config.json").read_text())["_class_name"])
    model = cls.from_pretrained(folder).double().eval()

    def sample(**inputs: Any) -> Any:
        return SimpleNamespace(logits=model(**inputs, **_fixed(cls)).sample)

    names = tuple(k for k in batch if k != "y")
    inputs = [torch.from_numpy(np.asarray(batch[k], dtype=np.float64)).requires_grad_() for k in names]
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = zoo._Float64.wrap(sample, names, flatten=False)(*inputs)
    finally:
        torch.set_default_dtype(default)
    loss = torch.nn.functional.mse_loss(out, torch.from_numpy(np.asarray(batch["y"], dtype=np.float64)))
    loss.backward()
    return (float(loss.detach()), {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None},
            {n: x.grad.numpy() for n, x in zip(names, inputs, strict=True)})


def _assert_autograds(s: Any, folder: Path) -> None:
    s.run_to_end()
    loss, grads, input_grads = _reference(folder, {k: np.asarray(v) for k, v in s.batch.items()})
    assert abs(float(s.value(s.loss_node.name)) - loss) < 1e-12 * max(1.0, abs(loss))
    assert set(grads) == set(s.params) - {n.name for n in s.graph.leaves if n.op.name == "constant"}
    largest = max(float(np.max(np.abs(g))) for g in grads.values())
    for name, want in {**grads, **input_grads}.items():
        # a true zero (an attention key's bias, which softmax cancels) is rounding noise on both sides
        scale = max(float(np.max(np.abs(want))), 1e-6 * largest)
        assert float(np.max(np.abs(np.asarray(s.grad(name)) - want))) / scale < 1e-9, name


@pytest.mark.parametrize(("name", "backend"), [("unet2d", "numpy"), ("conditional", "torch"), ("vae", "torch"),
                                               ("unet1d", "numpy"), ("ncsnpp", "numpy"), ("unet2d_bin", "torch")])
def test_a_checkpoint_steps_to_autograds_gradients(name: str, backend: str, checkpoints: dict[str, Path]) -> None:
    folder = checkpoints[name]
    s = open_session(folder, backend=backend, dtype="float64")
    assert s.name == name and s.loss_name == "mse"
    assert [(n.name, tuple(n.shape)) for n in s.model.graph.inputs] == INPUTS[name.removesuffix("_bin")]
    assert not s.model.unsupported_ops and not s.model.warnings, s.model.warnings
    if name == "vae":  # a reconstruction: the default target is the sample itself
        assert np.array_equal(s.batch["y"], s.batch["sample"])
    _assert_autograds(s, folder)


def test_the_time_embedding_is_a_few_steps_on_constants(checkpoints: dict[str, Path]) -> None:
    """The timestep is a constant, not an input: its sinusoidal features are a few steps that depend on no input
    and no parameter."""
    s = open_session(checkpoints["unet2d"], dtype="float64")
    trig = [n for n in s.graph.ops if n.op.name in ("sin", "cos")]
    assert len(trig) == 2 and "at timestep 500" in s.model.description
    upstream: set[str] = set()
    stack = list(trig)
    while stack:
        node = stack.pop()
        for a in node.inputs:
            if a.name not in upstream:
                upstream.add(a.name)
                stack.append(a)
    kinds = {s.graph[n].op.name for n in upstream}
    assert "input" not in kinds and "parameter" not in kinds and len(upstream) < 12, kinds


def test_config_json_and_another_size(checkpoints: dict[str, Path]) -> None:
    folder = checkpoints["unet2d"]
    assert display_name(folder / "config.json") == display_name(f"{folder}@16") == "unet2d"
    model = load_target(f"{folder}@16")
    assert model.graph.inputs[0].shape == (1, 3, 16, 16) and model.graph.outputs[0].shape == (1, 3, 16, 16)
    assert "UNet2DModel from unet2d (16×16 sample" in model.description
    assert open_model(folder / "config.json").graph.inputs[0].shape == (1, 3, 8, 8)
    with pytest.raises(ModelFormatError, match="a multiple of 2") as info:
        open_model(f"{folder}@9")
    assert "\n" not in str(info.value)


def _copy(folder: Path, into: Path, **config_changes: Any) -> Path:
    into.mkdir()
    for f in folder.iterdir():
        (into / f.name).write_bytes(f.read_bytes())
    config = json.loads((into / "config.json").read_text())
    config.update(config_changes)
    (into / "config.json").write_text(json.dumps(config))
    return into


@pytest.mark.parametrize(("changes", "says"), [
    ({"_class_name": "FluxTransformer2DModel"}, "not FluxTransformer2DModel"),
    ({"_class_name": "os.system"}, "not 'os.system'"),
    ({"auto_map": {"AutoModel": "modeling_evil.Evil"}}, "code shipped with the checkpoint"),
    ({"block_out_channels": [1 << 16, 1 << 17]}, "over the memory budget"),  # refused before it is allocated
])
def test_what_cannot_open_says_why_in_one_line(changes: dict[str, Any], says: str, checkpoints: dict[str, Path],
                                              tmp_path: Path) -> None:
    folder = _copy(checkpoints["unet2d"], tmp_path / "bad", **changes)
    with pytest.raises(ModelFormatError) as info:
        open_model(folder)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_a_folder_without_weights_or_with_a_hostile_pickle(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(checkpoints["unet2d"], tmp_path / "light")
    (folder / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="a diffusers checkpoint without weights"):
        open_model(folder)

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (folder / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(ModelFormatError):
        open_model(folder)
    assert not (tmp_path / "pwned").exists()


def test_a_module_in_python_gives_its_sample(checkpoints: dict[str, Path]) -> None:
    """open_session(unet, inputs=(x, t)): the timestep is an input as the caller gave it, the output the sample."""
    import torch

    unet = _diffusers().UNet2DModel.from_pretrained(checkpoints["unet2d"]).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 8, 8))).float()
    s = open_session(unet, inputs=(x, torch.tensor([500])), dtype="float64")
    assert type(unet).__name__ == "UNet2DModel" and type(unet).forward is _diffusers().UNet2DModel.forward
    assert [n.name for n in s.graph.inputs[:2]] == ["sample", "timestep"] and s.loss_name == "mse"
    assert [tuple(n.shape) for n in s.model.graph.outputs] == [(1, 3, 8, 8)]
    s.run_to_end()
    want = unet.double()(x.double(), 500).sample
    assert float(np.max(np.abs(np.asarray(s.value(s.model.graph.outputs[0].name)) - want.detach().numpy()))) < 1e-6

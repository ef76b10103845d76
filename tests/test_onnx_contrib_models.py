"""onnxruntime's fusions end to end, on the files its optimizers write for tiny random-weight models.

- `optimize_model(model_type=...)` (python fusions, opt_level=0) for CLIP (text and vision), T5's encoder, a
  diffusers UNet2DConditionModel and an AutoencoderKL decoder; its session optimizer (ORT_ENABLE_EXTENDED and
  ORT_ENABLE_ALL, `optimized_model_filepath`) for a torchvision ResNet-18 and BERT.
- Each file opens with no unsupported op and steps to the end; its forward pass equals the original torch model
  (float64 and float32) and onnxruntime where its CPU build runs the file; the weights' gradients equal autograd of
  the original model in float64. Several of the UNet's and VAE's ops (GroupNorm, SkipGroupNorm, BiasSplitGelu,
  BiasAdd, NhwcConv, packed MultiHeadAttention) have GPU kernels only: the original model is their reference.

All exports use the TorchScript exporter: the fusions match its graphs (dynamo's decompositions defeat the UNet's
GroupNorm and attention patterns). transformers' and diffusers' attention are set to their eager forms, whose
MatMul/Softmax graph the attention fusions match (scaled_dot_product_attention exports as another pattern).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
F = torch.nn.functional
pytestmark = [pytest.mark.torch, pytest.mark.slow]


@dataclass
class Built:
    model: Any  # the torch module (float32), returning one tensor
    inputs: dict[str, np.ndarray]
    fused: set[str]  # ops the optimizer must have written (domain-qualified where not the default domain)
    kind: str = ""  # optimize_model's model_type, or "" for onnxruntime's session optimizer
    level: str = "ORT_ENABLE_EXTENDED"
    cpu: bool = True  # onnxruntime's CPU build runs the optimized file
    heads: int = 4  # optimize_model's num_heads and hidden_size (0: read from the graph, as the UNet's fusions do)
    hidden: int = 32


class _Returning(torch.nn.Module):
    """The wrapped model called with keyword inputs, answering one tensor (an attribute of its output)."""

    def __init__(self, net: Any, keys: tuple[str, ...], attr: str | None) -> None:
        super().__init__()
        self.m, self.keys, self.attr = net, keys, attr

    def forward(self, *args: Any) -> Any:
        out = self.m(**dict(zip(self.keys, args, strict=True)))
        return getattr(out, self.attr) if self.attr else out


def _ms(*ops: str) -> set[str]:
    return {f"com.microsoft.{op}" for op in ops}


def _tokens(*shape: int) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 50, shape)


def _image(*shape: int) -> np.ndarray:
    return np.random.default_rng(4).standard_normal(shape).astype(np.float32)


def _transformers() -> Any:
    pytest.importorskip("transformers")
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    import transformers

    return transformers


def _clip_text() -> Built:
    t = _transformers()
    config = t.CLIPTextConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, max_position_embeddings=16, attn_implementation="eager",
                              bos_token_id=0, eos_token_id=1, pad_token_id=1)
    net = _Returning(t.CLIPTextModel(config), ("input_ids",), "last_hidden_state")
    return Built(net, {"input_ids": _tokens(2, 8)}, _ms("SkipLayerNormalization", "QuickGelu"), "clip")


def _clip_vision() -> Built:
    t = _transformers()
    config = t.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                image_size=16, patch_size=8, attn_implementation="eager")
    net = _Returning(t.CLIPVisionModel(config), ("pixel_values",), "last_hidden_state")
    return Built(net, {"pixel_values": _image(2, 3, 16, 16)}, _ms("SkipLayerNormalization", "QuickGelu", "Attention"),
                 "clip")


def _t5() -> Built:
    t = _transformers()
    config = t.T5Config(vocab_size=50, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                        relative_attention_num_buckets=8, relative_attention_max_distance=16, use_cache=False,
                        attn_implementation="eager")
    net = _Returning(t.T5EncoderModel(config), ("input_ids", "attention_mask"), "last_hidden_state")
    mask = np.ones((2, 8), dtype=np.int64)
    mask[1, 6:] = 0
    return Built(net, {"input_ids": _tokens(2, 8), "attention_mask": mask},
                 _ms("SkipSimplifiedLayerNormalization") | {"SimplifiedLayerNormalization"}, "t5")


def _eager_attention(net: Any) -> Any:
    from diffusers.models.attention_processor import AttnProcessor

    net.set_attn_processor(AttnProcessor())
    return net


def _unet() -> Built:
    _transformers()
    diffusers = pytest.importorskip("diffusers")
    net = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    inputs = {"sample": _image(1, 4, 8, 8), "timestep": np.array([3], dtype=np.int64),
              "encoder_hidden_states": _image(1, 5, 32)}
    return Built(_Returning(_eager_attention(net), tuple(inputs), "sample"), inputs,
                 _ms("NhwcConv", "GroupNorm", "SkipGroupNorm", "MultiHeadAttention", "BiasSplitGelu", "BiasAdd",
                     "SkipLayerNormalization"), "unet", cpu=False, heads=0, hidden=0)


def _vae() -> Built:
    _transformers()
    diffusers = pytest.importorskip("diffusers")
    net = diffusers.AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                                  latent_channels=4, norm_num_groups=8, sample_size=16,
                                  down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2)
    return Built(_Returning(_eager_attention(net).decoder, ("sample",), None), {"sample": _image(1, 4, 8, 8)},
                 _ms("NhwcConv", "GroupNorm", "SkipGroupNorm"), "vae", cpu=False, heads=0, hidden=0)


def _resnet18() -> Built:
    models = zoo.torchvision_models()
    if models is None:
        pytest.skip("torchvision is not installed")
    torch.manual_seed(0)
    return Built(models.resnet18(num_classes=10), {"x": _image(1, 3, 32, 32)}, _ms("FusedConv"))


def _bert(level: str) -> Built:
    t = _transformers()
    config = t.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                          intermediate_size=64, max_position_embeddings=16, num_labels=3, attn_implementation="eager")
    keys = ("input_ids", "attention_mask", "token_type_ids")
    mask = np.ones((2, 8), dtype=np.int64)
    mask[1, 5:] = 0
    inputs = {"input_ids": _tokens(2, 8), "attention_mask": mask,
              "token_type_ids": (np.arange(8) >= 4).astype(np.int64)[None].repeat(2, 0)}
    fused = {"SkipLayerNormalization", "Gelu", "FusedMatMul"} | ({"FusedGemm"} if level == "ORT_ENABLE_ALL" else set())
    return Built(_Returning(t.BertForSequenceClassification(config), keys, "logits"), inputs, _ms(*fused),
                 level=level)


MODELS: dict[str, Callable[[], Built]] = {
    "clip_text": _clip_text, "clip_vision": _clip_vision, "t5": _t5, "unet": _unet, "vae": _vae,
    "resnet18_extended": _resnet18, "bert_extended": lambda: _bert("ORT_ENABLE_EXTENDED"),
    "bert_all": lambda: _bert("ORT_ENABLE_ALL"),
}


def _quiet_export(model: Any, inputs: dict[str, np.ndarray], path: Path) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            torch.onnx.export(model, tuple(torch.from_numpy(v) for v in inputs.values()), str(path), dynamo=False,
                              opset_version=17, input_names=list(inputs))
        finally:
            logging.disable(logging.NOTSET)


def _optimized(built: Built, folder: Path) -> Path:
    original, optimized = folder / "model.onnx", folder / "optimized.onnx"
    _quiet_export(built.model, built.inputs, original)
    if built.kind:
        from onnxruntime.transformers.optimizer import optimize_model

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            optimize_model(str(original), model_type=built.kind, num_heads=built.heads, hidden_size=built.hidden,
                           opt_level=0).save_model_to_file(str(optimized))
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, built.level)
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 3  # the NCHWc 'hardware specific' notice
        ort.InferenceSession(str(original), options, providers=["CPUExecutionProvider"])
    return optimized


def _written(path: Path) -> set[str]:
    return {f"{n.domain}.{n.op_type}" if n.domain else n.op_type for n in onnx.load(str(path)).graph.node}


def _expected_gradients(model: Any, name: str) -> dict[str, np.ndarray]:
    """The original model's parameter gradients, as the optimized file holds its parameters: onnxruntime's session
    optimizer folds an eval BatchNorm into the Conv before it, W' = W · γ/σ per output channel, so ∂L/∂W' =
    ∂L/∂W · σ/γ (the BatchNorm's own parameters are gone from the file)."""
    grads = {k: p.grad.numpy() for k, p in model.named_parameters() if p.grad is not None}
    if not name.startswith("resnet"):
        return grads
    modules = dict(model.named_modules())
    folded = {}
    for key, grad in grads.items():
        owner = key.rsplit(".", 1)[0]
        norm_name = owner.replace("conv", "bn") if "conv" in owner else owner.replace("downsample.0", "downsample.1")
        norm = modules.get(norm_name)
        if key.endswith(".weight") and isinstance(modules.get(owner), torch.nn.Conv2d) and norm is not None:
            sigma = torch.sqrt(norm.running_var + norm.eps) / norm.weight
            folded[key] = grad * sigma.detach().numpy().reshape(-1, 1, 1, 1)
        elif key == "fc.weight" or key == "fc.bias":
            folded[key] = grad
    return folded


@pytest.mark.parametrize("name", list(MODELS))
def test_optimized_files_step_and_match_the_original_model(name: str, tmp_path: Path) -> None:
    built = MODELS[name]()
    built.model = zoo._jitter(built.model).eval()  # distinct weights: the exporter shares equal initializers
    path = _optimized(built, tmp_path)
    written = _written(path)
    assert built.fused <= written, f"{name}: the optimizer wrote {sorted(written)}"
    opened = open_model(path)
    assert not any("does not support" in w for w in opened.warnings), opened.warnings
    assert not [n for n in opened.graph if n.op.name == "unsupported"]

    with torch.no_grad():
        reference32 = built.model(*(torch.from_numpy(v) for v in built.inputs.values())).numpy()
    s = open_session(path, backend="numpy", dtype="float32", data=dict(built.inputs), loss="none")
    s.run_to_end()
    got32 = s.backend.to_numpy(s.value(s.prediction_node.name))
    np.testing.assert_allclose(got32, reference32, rtol=1e-4, atol=5e-5, err_msg=f"{name}: float32 against torch")
    if built.cpu:
        (expected,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, built.inputs)[:1]
        np.testing.assert_allclose(got32, expected, rtol=1e-4, atol=5e-5, err_msg=f"{name}: against onnxruntime")

    # float64: the forward pass and the weights' gradients against autograd of the original model
    double = copy.deepcopy(built.model).double()
    args = [torch.from_numpy(v.astype(np.float64) if v.dtype.kind == "f" else v) for v in built.inputs.values()]
    out = double(*args)
    y = np.random.default_rng(5).standard_normal(tuple(out.shape))
    F.mse_loss(out, torch.from_numpy(y)).backward()
    data = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in built.inputs.items()}
    s = open_session(path, backend="numpy", dtype="float64", data={**data, "y": y}, loss="mse")
    s.seek(len(s.steps))  # stepping reaches the end: every forward and backward step taken
    assert s.cursor == len(s.steps) and s.steps[-1].phase != s.steps[0].phase
    got = s.backend.to_numpy(s.value(s.prediction_node.name))
    # 1e-6: the file holds ε, scales and folded weights as float32 numbers
    err = zoo.relative(got, out.detach().numpy())
    assert err <= 1e-6, f"{name}: forward against torch (float64): relative difference {err:.3g}"
    expected_grads = _expected_gradients(double, name)
    scale = max(float(np.abs(g).max()) for g in expected_grads.values())
    leaves = {n.name for n in s.graph.leaves}
    checked = 0
    for param, want in expected_grads.items():
        if param not in leaves:
            continue  # renamed by a fusion (GroupNorm's γ and β, the packed QKV weights)
        # relative to its own largest entry, or to 10⁻³ of the model's largest gradient where that is smaller: the
        # attention's key bias has a gradient of zero in exact arithmetic, and rounding noise on both sides
        err = float(np.abs(s.backend.to_numpy(s.grad(param)) - want).max()) / max(float(np.abs(want).max()),
                                                                                 1e-3 * scale)
        assert err <= 1e-5, f"{name}: {param}: relative difference {err:.3g}"
        checked += 1
    assert checked >= 3, f"{name}: only {checked} parameters kept their names: {sorted(leaves)[:20]}"


def test_session_optimizer_nchwc_layout_is_refused_by_name(tmp_path: Path) -> None:
    """ORT_ENABLE_ALL on x86 writes the NCHWc blocked layout, whose values depend on the CPU that saved the file."""
    built = _resnet18()
    built.level = "ORT_ENABLE_ALL"
    path = _optimized(built, tmp_path)
    if not any(op.startswith("com.microsoft.nchwc.") for op in _written(path)):
        pytest.skip("this CPU's onnxruntime wrote no NCHWc ops")
    message = open_model(path).warnings[0]
    assert "com.microsoft.nchwc.Conv" in message and "NCHWc blocked layout" in message, message

"""Vision-language models (image-text-to-text) as transformers builds them: a vision tower turns the image into
features, a projector maps them to the text model's width, and `masked_scatter` puts them in place of the image
tokens of the ids (`embeds.masked_scatter(ids == image_token, features)`), at positions the data's ids decide. That
is read as a gather at the running count of the mask, `where(mask, features.flat[count], embeds)`: no size depends
on the ids, so the positions follow each batch's as torch's do.

Built by transformers' own constructors with tiny random configs (nothing downloaded), inputs as a processor makes
them (the image tokens in the ids, pixel_values), opened from the live module, stepped to the end of the backward
pass and checked against torch autograd of the module in float64, transformers' float32 islands kept in float64 in
the reference (as tests/test_mixture_of_experts.py does). The survey of every class is in the README.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch,
              pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is not installed")]

VOCAB, IMAGE_TOKEN, TEXT = 96, 90, 6


def _float64_islands() -> Any:
    """Casts to float32 inside the reference go to float64 (see tests/test_mixture_of_experts.py)."""
    from torch.overrides import TorchFunctionMode

    class Float64Islands(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = {k: torch.float64 if v is torch.float32 else v for k, v in (kwargs or {}).items()}
            args = tuple(torch.float64 if a is torch.float32 else a for a in args)
            if func is torch.Tensor.float:
                return args[0].double()
            return func(*args, **kwargs)

    return Float64Islands()


def _text(**extra: Any) -> dict[str, Any]:
    return {"vocab_size": VOCAB, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "max_position_embeddings": 64,
            "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, **extra}


def _vision(**extra: Any) -> dict[str, Any]:
    return {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
            "image_size": 16, "patch_size": 4, **extra}


def _llava() -> Any:
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(text_config={"model_type": "llama", **_text()},
                         vision_config={"model_type": "clip_vision_model", "projection_dim": 32, **_vision()},
                         image_token_id=IMAGE_TOKEN, projector_hidden_act="gelu")
    return LlavaForConditionalGeneration(config), 16  # a CLIP tower: 4×4 patches, its class token dropped


def _gemma3() -> Any:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    config = Gemma3Config(text_config={"model_type": "gemma3_text", **_text(sliding_window=4)},
                          vision_config={"model_type": "siglip_vision_model", **_vision()},
                          mm_tokens_per_image=4, image_token_id=IMAGE_TOKEN, boi_token_id=91, eoi_token_id=92)
    return Gemma3ForConditionalGeneration(config), 4  # SigLIP's 16 patches pooled to 4 tokens


def _aya_vision() -> Any:
    from transformers import AyaVisionConfig, AyaVisionForConditionalGeneration

    config = AyaVisionConfig(text_config={"model_type": "cohere2", **_text(sliding_window=4)},
                             vision_config={"model_type": "siglip_vision_model", **_vision()},
                             image_token_id=IMAGE_TOKEN, downsample_factor=2, adapter_layer_norm_eps=1e-5)
    return AyaVisionForConditionalGeneration(config), 4  # pixel shuffle: 16 patches become 4 tokens


def _paligemma() -> Any:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    config = PaliGemmaConfig(text_config={"model_type": "gemma", **_text()},
                             vision_config={"model_type": "siglip_vision_model", **_vision(),
                                            "projection_dim": 32},
                             image_token_id=IMAGE_TOKEN, projection_dim=32)
    # eager attention: under sdpa the module's own forward attends both ways (transformers skips the causal mask
    # it builds and its Gemma is marked bidirectional) while torch.export's trace keeps the mask (see the README)
    config.text_config._attn_implementation = config._attn_implementation = "eager"
    config.vision_config._attn_implementation = "eager"
    return PaliGemmaForConditionalGeneration(config), 16


def _inputs(tokens: int, start: int = 2) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 80, (1, TEXT + tokens))
    ids[0, start:start + tokens] = IMAGE_TOKEN
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.ones((1, TEXT + tokens), dtype=torch.long),
            "pixel_values": torch.from_numpy(rng.standard_normal((1, 3, 16, 16)))}


def _reference(model: Any, inputs: dict[str, Any], y: Any = None) -> tuple[float, dict[str, np.ndarray]]:
    m = copy.deepcopy(model)
    with _float64_islands():
        logits = m(**inputs, use_cache=False).logits
    y = inputs["input_ids"].reshape(-1) if y is None else torch.from_numpy(np.asarray(y).astype(np.int64))
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y)
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in m.named_parameters() if p.grad is not None}


def _steps_as_autograd(model: Any, inputs: dict[str, Any], backend: str = "numpy") -> Any:
    data = {"y": inputs["input_ids"].numpy()}
    s = open_session(model, inputs=inputs, dtype="float64", backend=backend, loss="cross_entropy", data=data)
    assert not s.model.unsupported_ops
    assert any(n.meta.get("original_op") == "masked_scatter" for n in s.graph.nodes)
    s.run_to_end()
    loss, grads = _reference(model, inputs)
    assert float(s.backend.to_numpy(s.value(s.loss_node.name))) == pytest.approx(loss, rel=1e-12)
    assert any("vision" in k or "visual" in k for k in grads) and any("projector" in k or "merger" in k for k in grads)
    scale = max(float(np.abs(g).max()) for g in grads.values())
    for name, want in grads.items():
        got = s.grad(name)
        assert got is not None, name
        # k_proj.bias: softmax ignores a shift of every score, so its gradient is zero up to rounding
        assert np.abs(np.asarray(s.backend.to_numpy(got)) - want).max() <= 1e-9 * max(
            float(np.abs(want).max()), 1e-6 * scale), name
    return s


@pytest.mark.parametrize("build", [_llava, _gemma3, _aya_vision, _paligemma])
def test_vision_language_model_steps_with_autograds_gradients(build: Any) -> None:
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    torch.manual_seed(0)
    model, tokens = build()
    _steps_as_autograd(model.eval().double(), _inputs(tokens))


def test_the_image_features_go_where_the_ids_put_the_image_tokens() -> None:
    """The same model, its image tokens elsewhere in the ids, on the torch backend too: the features land where
    torch puts them."""
    zoo.torchvision_models()
    torch.manual_seed(0)
    model, tokens = _llava()
    _steps_as_autograd(model.eval().double(), _inputs(tokens, start=5), backend="torch")


def test_a_saved_llava_folder_opens_with_an_image_in_its_sample(tmp_path: Any) -> None:
    """`propscope open FOLDER` (save_pretrained's): the sample it is traced on holds an image and as many image
    tokens as the vision tower gives features, so the graph has the vision tower and the merge, and steps as
    autograd of the module on the same batch."""
    zoo.torchvision_models()
    torch.manual_seed(0)
    model, tokens = _llava()
    model.save_pretrained(tmp_path)
    s = open_session(tmp_path, dtype="float64")
    assert not s.model.unsupported_ops and {n.name for n in s.graph.inputs} >= {"input_ids", "pixel_values"}
    ids = np.asarray(s.batch["input_ids"]).astype(np.int64)
    assert (ids == IMAGE_TOKEN).sum() == tokens and ids[0, 0] != IMAGE_TOKEN
    s.run_to_end()
    inputs = {"input_ids": torch.from_numpy(ids), "pixel_values": torch.from_numpy(s.batch["pixel_values"])}
    loss, grads = _reference(model.eval().double(), inputs, s.batch["y"])  # the generated batch's target
    assert float(s.backend.to_numpy(s.value(s.loss_node.name))) == pytest.approx(loss, rel=1e-12)
    for name in ("model.vision_tower.embeddings.patch_embedding.weight", "model.multi_modal_projector.linear_1.weight",
                 "lm_head.weight"):
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), grads[name]) < 1e-10, name


class _Placed(torch.nn.Module):  # type: ignore[misc]
    """Features of x put at the positions where ids hold 7, over embeddings of the ids (a VLM's merge, small)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.project = torch.nn.Linear(3, 4)
        self.head = torch.nn.Linear(4, 5)

    def forward(self, ids: Any, x: Any) -> Any:
        embeds = self.embed(ids)
        mask = (ids == 7).unsqueeze(-1).expand_as(embeds)
        return self.head(torch.tanh(embeds.masked_scatter(mask, self.project(x))))


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_masked_scatter_at_positions_the_ids_decide(backend: str) -> None:
    """Values and every gradient (the parameters' and the source's) against autograd and central differences:
    source has more values than the mask takes (the rest get no gradient), and the positions differ by row."""
    torch.manual_seed(0)
    model = _Placed().double().eval()
    ids = torch.tensor([[7, 1, 7, 3], [2, 7, 4, 5]])
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    want = model(ids, x)
    upstream = torch.from_numpy(np.random.default_rng(1).standard_normal(tuple(want.shape)))
    grads = torch.autograd.grad(want, [*model.parameters(), x], upstream)
    y = want.detach().numpy() - upstream.numpy() * want.numel() / 2  # mse's gradient at the prediction is upstream
    s = open_session(model, inputs=(ids, x.detach()), dtype="float64", backend=backend, loss="mse",
                     data={"y": y})
    assert not s.model.unsupported_ops
    s.run_to_end()
    np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(),
                               rtol=1e-13)
    for (name, _), g in zip(model.named_parameters(), grads, strict=False):
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), g.numpy()) < 1e-12, name
    source = next(n.name for n in s.graph.inputs if tuple(n.shape) == (4, 3))
    got = np.asarray(s.backend.to_numpy(s.grad(source)))
    assert zoo.relative(got, grads[-1].numpy()) < 1e-12 and not got[3].any()  # 3 positions: row 3 unused

    def loss_at(v: np.ndarray) -> float:
        with torch.no_grad():
            return float((model(ids, torch.from_numpy(v)) * upstream).sum())

    base, h = x.detach().numpy(), 1e-6
    numeric = np.zeros_like(base)
    for i in np.ndindex(base.shape):
        plus, minus = base.copy(), base.copy()
        plus[i] += h
        minus[i] -= h
        numeric[i] = (loss_at(plus) - loss_at(minus)) / (2 * h)
    assert zoo.relative(got, numeric) < 1e-7


def test_llava_next_picks_its_tiling_by_image_sizes_and_steps_along_that_path() -> None:
    """LLaVA-NeXT picks its tiling by the values of image_sizes (a tensor input): torch.export cannot trace that, so
    it is read along the path these inputs take (decisions.py), each decision named, and steps as autograd."""
    zoo.torchvision_models()
    from transformers import LlavaNextConfig, LlavaNextForConditionalGeneration

    torch.manual_seed(0)
    config = LlavaNextConfig(text_config={"model_type": "llama", **_text()},
                             vision_config={"model_type": "clip_vision_model", "projection_dim": 32, **_vision()},
                             image_token_id=IMAGE_TOKEN, image_grid_pinpoints=[[16, 16], [16, 32], [32, 16]])
    model = LlavaNextForConditionalGeneration(config).eval().double()
    inputs = _inputs(36)
    inputs["pixel_values"] = inputs["pixel_values"][:, None].expand(1, 2, 3, 16, 16).contiguous()
    inputs["image_sizes"] = torch.tensor([[16, 16]])
    with pytest.warns(UserWarning, match="decided by tensor values"):
        s = _steps_as_autograd(model, inputs)
    assert s.model.decisions


def _qwen2_vl() -> Any:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [1, 1, 2]}  # M-RoPE: t, h, w
    config = Qwen2VLConfig(text_config={"model_type": "qwen2_vl_text", **_text(rope_parameters=rope)},
                           vision_config={"depth": 2, "embed_dim": 32, "hidden_size": 32, "num_heads": 4,
                                          "mlp_ratio": 2, "patch_size": 4, "temporal_patch_size": 2,
                                          "spatial_merge_size": 2, "in_channels": 3},
                           image_token_id=IMAGE_TOKEN, vision_start_token_id=91, vision_end_token_id=92)
    return Qwen2VLForConditionalGeneration(config)


def _qwen_inputs(start: int = 2) -> dict[str, Any]:
    """A 4×4 grid of patches (2 frames of 4×4 pixels each) merged 2×2: 4 image tokens, marked in mm_token_type_ids."""
    inputs = _inputs(4, start)
    inputs["pixel_values"] = torch.from_numpy(np.random.default_rng(2).standard_normal((16, 3 * 2 * 4 * 4)))
    inputs["image_grid_thw"] = torch.tensor([[1, 4, 4]])
    inputs["mm_token_type_ids"] = (inputs["input_ids"] == IMAGE_TOKEN).long()
    return inputs


def test_qwen2_vl_reads_its_grid_by_value_and_steps_along_that_path() -> None:
    """Qwen2-VL's forward reads image_grid_thw's values (`tolist`, `item`), splits its vision attention by the
    frames' sizes (repeat_interleave by the grid) and makes its M-RoPE positions from the ids and the grid: read
    along the path these inputs take, the decisions named in the warning, every gradient as autograd's."""
    zoo.torchvision_models()
    torch.manual_seed(0)
    model = _qwen2_vl().eval().double()
    with pytest.warns(UserWarning, match=r"decided by tensor values \d+ time\(s\).*grid_thw\.tolist\(\)"):
        s = _steps_as_autograd(model, _qwen_inputs())
    assert any("a size of" in d for d in s.model.decisions) and "along the path" in s.model.description


def test_a_saved_qwen2_vl_folder_opens_with_an_image_grid_in_its_sample(tmp_path: Any) -> None:
    """The folder's sample is as Qwen2-VL's processor makes one: flattened patches, their grid, image tokens marked;
    traced along the path that sample takes, it steps as autograd of the module on the same batch."""
    zoo.torchvision_models()
    torch.manual_seed(0)
    model = _qwen2_vl()
    model.save_pretrained(tmp_path)
    s = open_session(tmp_path, dtype="float64")
    assert not s.model.unsupported_ops and s.model.decisions
    assert {n.name for n in s.graph.inputs} >= {"input_ids", "pixel_values", "image_grid_thw", "mm_token_type_ids"}
    s.run_to_end()
    batch = {k: torch.from_numpy(np.asarray(v)) for k, v in s.batch.items() if k != "y"}
    inputs = {k: v if k == "pixel_values" else v.long() for k, v in batch.items()}
    loss, grads = _reference(model.eval().double(), inputs, s.batch["y"])
    assert float(s.backend.to_numpy(s.value(s.loss_node.name))) == pytest.approx(loss, rel=1e-12)
    for name in ("model.visual.patch_embed.proj.weight", "model.visual.merger.mlp.0.weight", "lm_head.weight"):
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), grads[name]) < 1e-10, name

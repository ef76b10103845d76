"""transformers' vision models beyond classification, opened live and stepped to torch autograd's numbers (float64).

Tiny random configs built by hand (nothing downloaded; backbones given as configs): D-FINE (its distance bins'
expectation is `F.linear` with a 1-D weight), OWL-ViT (image patches scored against text queries, the embeddings
normalised by `torch.linalg.norm`), Deformable DETR and Mask2Former (reference points over each feature map made
with `torch.linspace`). Each was refused by an unsupported op before. The loss goes on the output a user debugs
(`logits`, Mask2Former's `class_queries_logits`); propscope's loss, every parameter's gradient and the image's
gradient must be autograd's on the module itself. Grounding DINO (text phrases from its token ids by torch.isin and
running cummax/cummin, reference points back to logits by torch.special.logit, `~attention_mask.bool()`, and logits
of −∞ past the text that the NumPy cross-entropy turned into NaN) opens and steps too. Also: a 2-D max pool of
an unbatched (C, H, W) tensor (SuperPoint's keypoint suppression) is a 2-D pool, not a 1-D one; `torch.linspace`
folds to torch's values; `torch.where(condition)` of computed values is refused in one line; OWL-ViT's checkpoint
folder is traced with two text queries (with one, the cross-entropy over one class is 0 whatever the weights).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.skipif(not zoo.has_transformers(), reason="needs transformers")]


def _t() -> Any:
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    import transformers

    return transformers


def _image(size: int) -> Any:
    return torch.randn((1, 3, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _d_fine() -> tuple[Any, dict[str, Any], str]:
    t = _t()
    backbone = t.HGNetV2Config(
        embedding_size=8, hidden_sizes=[16] * 4, depths=[1] * 4, stem_channels=[3, 8, 8],
        stage_in_channels=[8, 16, 16, 16], stage_mid_channels=[8] * 4, stage_out_channels=[16] * 4,
        stage_num_blocks=[1] * 4, stage_downsample=[False, True, True, True],
        stage_light_block=[False, False, True, True], stage_kernel_size=[3, 3, 5, 5], stage_numb_of_layers=[1] * 4,
        out_features=["stage2", "stage3", "stage4"])
    config = t.DFineConfig(
        backbone_config=backbone, encoder_hidden_dim=16, encoder_in_channels=[16] * 3, encoder_ffn_dim=32,
        encoder_attention_heads=2, d_model=16, decoder_in_channels=[16] * 3, decoder_ffn_dim=32, decoder_layers=2,
        decoder_attention_heads=2, num_queries=4, num_labels=3, num_denoising=0, anchor_image_size=None,
        eval_size=None, eval_idx=-1, lqe_hidden_dim=8, hidden_expansion=0.5, depth_mult=0.34,
        decoder_n_points=[2, 2, 2])
    return t.DFineForObjectDetection(config), {"pixel_values": _image(64)}, "logits"


def _owlvit() -> tuple[Any, dict[str, Any], str]:
    t = _t()
    config = t.OwlViTConfig(
        text_config=dict(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=2,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    ids = torch.randint(3, 40, (2, 4), generator=torch.Generator().manual_seed(1))  # two text queries: two classes
    return t.OwlViTForObjectDetection(config), {"input_ids": ids, "pixel_values": _image(32),
                                                "attention_mask": torch.ones_like(ids)}, "logits"


def _deformable_detr() -> tuple[Any, dict[str, Any], str]:
    t = _t()
    config = t.DeformableDetrConfig(
        backbone_config=t.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                                       out_features=["stage1", "stage2"]), num_feature_levels=2, encoder_n_points=2,
        decoder_n_points=2, d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=4, num_labels=3)
    return t.DeformableDetrForObjectDetection(config), {"pixel_values": _image(64),
                                                        "pixel_mask": torch.ones((1, 64, 64), dtype=torch.long)}, \
        "logits"


def _mask2former() -> tuple[Any, dict[str, Any], str]:
    t = _t()
    swin = t.SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1] * 4, num_heads=[1, 1, 2, 2],
                        window_size=2, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = t.Mask2FormerConfig(
        backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=32,
        encoder_layers=1, decoder_layers=2, num_attention_heads=2, dim_feedforward=32, num_queries=4, num_labels=3,
        common_stride=4)
    return t.Mask2FormerForUniversalSegmentation(config), {"pixel_values": _image(64)}, "class_queries_logits"


def _grounding_dino() -> tuple[Any, dict[str, Any], str]:
    t = _t()
    config = t.GroundingDinoConfig(
        backbone_config=t.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                                       out_features=["stage1", "stage2"]),
        text_config=t.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=32),
        num_queries=4, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, d_model=32, num_feature_levels=2, encoder_n_points=2,
        decoder_n_points=2, max_text_len=16)
    ids = torch.tensor([[101, 7, 1012, 9, 12, 1012, 102]]) % 40  # two phrases, each closed by a separator
    model = t.GroundingDinoForObjectDetection(config)
    model.model.special_tokens = ids.new_tensor([1012 % 40, 101 % 40, 102 % 40])  # the separators in this vocabulary
    return model, {"input_ids": ids, "pixel_values": _image(64), "attention_mask": torch.ones_like(ids)}, "logits"


MODELS: dict[str, Callable[[], tuple[Any, dict[str, Any], str]]] = {
    "d_fine": _d_fine, "owlvit": _owlvit, "deformable_detr": _deformable_detr, "mask2former": _mask2former,
    "grounding_dino": _grounding_dino}


def _in_float64() -> Any:
    """transformers computes some steps in float32 whatever the model's dtype; propscope's float64 session computes
    them in float64, and so does the reference (float32 asked for is float64). Evaluation-mode batch norm is its
    formula: torch 2.13's CPU batch_norm backward in evaluation mode is wrong where the incoming gradient is laid out
    channels-last (D-FINE's feature maps flattened and transposed into tokens; `test_batch_norm_reference`)."""
    from torch.overrides import TorchFunctionMode

    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")

    class Float64(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            if func is torch.nn.functional.batch_norm:
                a = {**dict(zip(names, args, strict=False)), **(kwargs or {})}
                if not a.get("training", False):
                    return _batch_norm(a["input"], a["running_mean"], a["running_var"], a.get("weight"),
                                       a.get("bias"), a.get("eps", 1e-5))
            if func is torch.Tensor.float:
                return args[0].double()
            args = tuple(torch.float64 if a is torch.float32 else a for a in args)
            kwargs = {k: torch.float64 if v is torch.float32 else v for k, v in (kwargs or {}).items()}
            return func(*args, **kwargs)

    return Float64()


def _batch_norm(x: Any, mean: Any, var: Any, weight: Any, bias: Any, eps: float) -> Any:
    shape = (1, -1) + (1,) * (x.dim() - 2)
    y = (x - mean.reshape(shape)) / (var.reshape(shape) + eps).sqrt()
    y = y if weight is None else y * weight.reshape(shape)
    return y if bias is None else y + bias.reshape(shape)


def _reference(model: Any, inputs: dict[str, Any], key: str,
               y: np.ndarray) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    pixels = inputs["pixel_values"].clone().requires_grad_(True)
    torch.set_default_dtype(torch.float64)  # a tensor made with no dtype (Grounding DINO's logits, torch.full)
    try:
        with _in_float64():
            scores = getattr(model(**{**inputs, "pixel_values": pixels}), key)
    finally:
        torch.set_default_dtype(torch.float32)
    loss = torch.nn.functional.cross_entropy(scores.reshape(-1, scores.shape[-1]), torch.from_numpy(y))
    loss.backward()
    grads = {n: p.grad.numpy() for n, p in model.named_parameters(remove_duplicate=False) if p.grad is not None}
    return float(loss.detach()), grads, pixels.grad.numpy()


@pytest.mark.parametrize("name", list(MODELS))
def test_steps_to_autograds_loss_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    built, inputs, key = MODELS[name]()
    model = zoo._jitter(built).double().eval()  # no zero biases or unit norms: every gradient is its own
    with torch.no_grad(), _in_float64():
        shape = getattr(model(**inputs), key).shape
    # a class for every query; Grounding DINO's classes are its text tokens (the rest, up to max_text_len, are −∞)
    classes = inputs["input_ids"].shape[-1] if name == "grounding_dino" else shape[-1]
    y = np.random.default_rng(5).integers(0, classes, int(np.prod(shape[:-1])))
    # Mask2Former returns no `logits`: its class scores come first, (batch, queries, classes), read a row per query
    output, rows = (None, False) if key == "logits" else (0, True)
    s = open_session(model, inputs=inputs, dtype="float64", loss="cross_entropy", data={"y": y}, output=output,
                     per_token=rows)
    assert not s.model.unsupported_ops, s.model.warnings
    s.run_to_end()
    loss, grads, pixel_grad = _reference(model, inputs, key, y)
    assert abs(float(s.value(s.loss_node.name)) - loss) < 1e-12 * max(1.0, abs(loss))
    largest = max(float(np.max(np.abs(g))) for g in grads.values())
    names = {**{n: n for n in s.params}, **{alias: n for alias, n in (s.model.aliases or {}).items()}}
    for pname, want in grads.items():
        got = s.grad(names[pname]) if pname in names else None
        assert got is not None, f"no gradient for {pname}"
        # a true zero (a bias that a softmax or a group norm cancels) is rounding noise on both sides
        scale = max(float(np.max(np.abs(want))), 1e-6 * largest)
        assert float(np.max(np.abs(np.asarray(got) - want))) / scale < 1e-9, pname
    assert zoo.relative(s.grad("pixel_values"), pixel_grad) < 1e-9


def test_cross_entropy_over_classes_masked_with_minus_infinity() -> None:
    """Logits set to −∞ by a mask computed from the data (Grounding DINO's past the text): the NumPy loss is torch's,
    not NaN (0 · −∞ for the classes the target does not name)."""

    class Masked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, 5)

        def forward(self, x: Any, keep: Any) -> Any:
            return self.fc(x).masked_fill(~keep.bool(), float("-inf"))

    torch.manual_seed(0)
    model = zoo._jitter(Masked()).double()
    x, keep = torch.randn(4, 3, dtype=torch.float64), torch.tensor([[1, 1, 1, 0, 0]] * 4)
    y = np.array([0, 2, 1, 2])
    s = open_session(model, inputs=(x, keep), dtype="float64", loss="cross_entropy", data={"y": y})
    s.run_to_end()
    loss = torch.nn.functional.cross_entropy(model(x, keep), torch.from_numpy(y))
    loss.backward()
    assert abs(float(s.value(s.loss_node.name)) - loss.item()) < 1e-12
    for name, p in model.named_parameters():
        assert zoo.relative(s.grad(name), p.grad.numpy()) < 1e-12, name


def test_batch_norm_with_a_channels_last_gradient() -> None:
    """Evaluation-mode batch norm whose output is flattened into tokens (DETR-style heads): propscope's gradients
    are the formula's. (torch 2.13's own CPU backward differs here, which is why the reference above computes
    batch norm by its formula.)"""

    class Tokens(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm, self.head = torch.nn.Conv2d(2, 4, 1), torch.nn.BatchNorm2d(4), \
                torch.nn.Linear(4, 3)

        def forward(self, x: Any) -> Any:
            return self.head(self.norm(self.conv(x)).flatten(2).transpose(1, 2)).flatten(0, 1)

    torch.manual_seed(0)
    model = zoo._jitter(Tokens()).double().eval()
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)
    y = np.random.default_rng(3).integers(0, 3, 9)
    s = open_session(model, inputs=x, dtype="float64", loss="cross_entropy", data={"y": y})
    s.run_to_end()
    with _in_float64():
        loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(y))
    loss.backward()
    assert abs(float(s.value(s.loss_node.name)) - loss.item()) < 1e-12
    for name, p in model.named_parameters():
        assert zoo.relative(s.grad(name), p.grad.numpy()) < 1e-12, name


def test_unbatched_max_pool2d() -> None:
    """F.max_pool2d of a (C, H, W) tensor pools each plane in 2-D (it was read as a 1-D pool and refused)."""

    class Suppress(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

        def forward(self, x: Any) -> Any:
            scores = self.conv(x)[0]  # (C, H, W), as SuperPoint's keypoint scores
            return torch.nn.functional.max_pool2d(scores, kernel_size=3, stride=1, padding=1).flatten(1)

    torch.manual_seed(0)
    model = zoo._jitter(Suppress()).double()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    y = np.random.default_rng(2).standard_normal((3, 36))
    s = open_session(model, inputs=x, dtype="float64", loss="mse", data={"y": y})
    assert not s.model.unsupported_ops, s.model.warnings
    s.run_to_end()
    xr = x.clone().requires_grad_(True)
    loss = torch.nn.functional.mse_loss(model(xr), torch.from_numpy(y))
    loss.backward()
    assert abs(float(s.value(s.loss_node.name)) - loss.item()) < 1e-12
    for name, p in model.named_parameters():
        assert zoo.relative(s.grad(name), p.grad.numpy()) < 1e-12, name
    assert zoo.relative(s.grad(s.model.graph.inputs[0].name), xr.grad.numpy()) < 1e-12


class _Grid(torch.nn.Module):
    """Reference points as Deformable DETR makes them: a grid of torch.linspace over a feature map."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, 3)

    def forward(self, x: Any) -> Any:
        ys, xs = torch.meshgrid(torch.linspace(0.5, 6.5, 7, dtype=torch.float64),
                                torch.linspace(-1.3, 4.9, 5, dtype=torch.float64), indexing="ij")
        return self.fc(x) + torch.stack([xs, ys], -1).reshape(-1, 2).repeat(1, 2)[:, :3]


def test_linspace_folds_to_torchs_values() -> None:
    torch.manual_seed(0)
    model = zoo._jitter(_Grid()).double()
    x = torch.randn(35, 2, dtype=torch.float64)
    s = open_session(model, inputs=x, dtype="float64", loss="none")
    assert not s.model.unsupported_ops, s.model.warnings
    s.run_to_end()
    with torch.no_grad():
        grid = (model(x) - model.fc(x)).numpy()
    got = np.asarray(s.value(s.model.graph.output.name)) - np.asarray(s.value(s.model.graph.output.inputs[0].name))
    # the grid torch makes, to the last bit or so (torch's vectorised kernel rounds some steps otherwise)
    assert float(np.max(np.abs(got - grid))) <= 4e-16 * float(np.max(np.abs(grid)))


def test_where_of_computed_values_is_refused_in_one_line() -> None:
    class Picks(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return x[torch.where(x > 0)[0]]

    with pytest.warns(UserWarning, match="decided by tensor values"):  # the count of positions: this path's
        s = open_session(Picks(), inputs=torch.randn(6, 2, dtype=torch.float64), loss="none")
    reasons = [n.meta.get("reason", "") for n in s.model.graph if n.op.name == "unsupported"]
    assert any("where(condition) of values computed from the input" in r for r in reasons), reasons


def test_linalg_norm() -> None:
    class Normalised(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x: Any) -> Any:
            y = self.fc(x)
            return y / torch.linalg.norm(y, dim=-1, keepdim=True) + torch.linalg.norm(y, ord="fro", dim=(0, 1))

    torch.manual_seed(0)
    model = zoo._jitter(Normalised()).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = np.random.default_rng(1).integers(0, 3, 5)
    s = open_session(model, inputs=x, dtype="float64", loss="cross_entropy", data={"y": y})
    assert not s.model.unsupported_ops, s.model.warnings
    s.run_to_end()
    xr = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(xr), torch.from_numpy(y)).backward()
    for name, p in model.named_parameters():
        assert zoo.relative(s.grad(name), p.grad.numpy()) < 1e-12, name
    assert zoo.relative(s.grad(s.model.graph.inputs[0].name), xr.grad.numpy()) < 1e-12


def test_owlvit_checkpoint_is_traced_with_two_queries(tmp_path: Any) -> None:
    torch.manual_seed(0)
    built, _, _ = _owlvit()
    zoo._jitter(built).save_pretrained(tmp_path / "owlvit")
    s = open_session(tmp_path / "owlvit", dtype="float64")
    assert [(n.name, tuple(n.shape)) for n in s.model.graph.inputs] == [("input_ids", (2, 8)),
                                                                       ("pixel_values", (1, 3, 32, 32))]
    assert s.loss_name == "cross_entropy" and tuple(s.model.graph.output.shape) == (16, 2)  # a row per image patch
    s.run_to_end()
    t = _t()
    model = t.OwlViTForObjectDetection.from_pretrained(tmp_path / "owlvit", attn_implementation="eager").double()
    inputs = {"input_ids": torch.from_numpy(np.asarray(s.batch["input_ids"])).long(),
              "pixel_values": torch.from_numpy(np.asarray(s.batch["pixel_values"])).double()}
    loss, grads, _ = _reference(model, inputs, "logits", np.asarray(s.batch["y"]).astype(np.int64))
    assert abs(float(s.value(s.loss_node.name)) - loss) < 1e-12 * max(1.0, abs(loss))
    largest = max(float(np.max(np.abs(g))) for g in grads.values())
    for pname, want in grads.items():
        scale = max(float(np.max(np.abs(want))), 1e-6 * largest)
        assert float(np.max(np.abs(np.asarray(s.grad(pname)) - want))) / scale < 1e-9, pname


def test_owlvit_folder_takes_the_datas_queries_and_images(tmp_path: Any) -> None:
    """OWL-ViT's rows of input_ids are its text queries, as many per image: data with three queries for one image,
    then two images with two queries each, read the folder again at those sizes (the reader gave input_ids the
    images' batch, or kept its own two rows, and the data was refused as the wrong shape), each to autograd's loss and
    gradients. Rows that are not a whole number of queries per image are refused in one line."""
    torch.manual_seed(0)
    built, _, _ = _owlvit()
    zoo._jitter(built).save_pretrained(tmp_path / "owlvit")
    s = open_session(tmp_path / "owlvit", dtype="float64")
    model = _t().OwlViTForObjectDetection.from_pretrained(tmp_path / "owlvit", attn_implementation="eager").double()
    rng = np.random.default_rng(0)
    for queries, images in ((3, 1), (4, 2)):
        data = {"input_ids": rng.integers(3, 40, (queries, 8)), "pixel_values": rng.random((images, 3, 32, 32))}
        shapes = {k: v.shape for k, v in data.items()}
        assert s.reads_again_at(shapes)
        scores = s.model_at(shapes).graph.output.shape
        assert tuple(scores) == (16 * images, queries // images)  # a row per image patch, a class per query
        y = rng.integers(0, scores[1], scores[0])
        s.set_batch({**data, "y": y})
        s.run_to_end()
        model.zero_grad()
        inputs = {"input_ids": torch.from_numpy(data["input_ids"]),
                  "pixel_values": torch.from_numpy(data["pixel_values"])}
        loss, grads, _ = _reference(model, inputs, "logits", y)
        assert abs(float(s.value(s.loss_node.name)) - loss) < 1e-12 * max(1.0, abs(loss))
        largest = max(float(np.max(np.abs(g))) for g in grads.values())
        for pname, want in grads.items():
            scale = max(float(np.max(np.abs(want))), 1e-6 * largest)
            assert float(np.max(np.abs(np.asarray(s.grad(pname)) - want))) / scale < 1e-9, (queries, images, pname)
    with pytest.raises(ModelFormatError, match="could not be run and traced"):
        s.set_batch({"input_ids": rng.integers(3, 40, (3, 8)), "pixel_values": rng.random((2, 3, 32, 32)),
                     "y": np.zeros(32, dtype=np.int64)})


@pytest.mark.parametrize("name", ["deformable_detr", "owlvit"])
def test_a_detectors_boxes_are_an_output_a_loss_can_go_on(name: str) -> None:
    """A detector's `pred_boxes` is its second output (the class scores stay first, the loss's by default):
    `output="pred_boxes"` with mean squared error against boxes matches autograd of the same loss on transformers'
    own boxes, loss and gradients (a loss could go on the scores only, so box regression had no gradient to see)."""
    torch.manual_seed(0)
    built, inputs, _ = MODELS[name]()
    model = zoo._jitter(built).double().eval()
    with torch.no_grad(), _in_float64():
        shape = tuple(model(**inputs).pred_boxes.shape)
    plain = open_session(model, inputs=inputs, dtype="float64", loss="none")
    assert [n.meta.get("returns", n.name) for n in plain.graph.outputs][:2] == ["logits", "pred_boxes"]
    y = np.random.default_rng(5).random(shape)  # boxes: (cx, cy, w, h) in [0, 1]
    s = open_session(model, inputs=inputs, dtype="float64", loss="mse", data={"y": y}, output="pred_boxes")
    assert tuple(s.prediction_node.shape) == shape
    s.run_to_end()
    pixels = inputs["pixel_values"].clone().requires_grad_(True)
    model.zero_grad()
    with _in_float64():
        boxes = model(**{**inputs, "pixel_values": pixels}).pred_boxes
    loss = torch.nn.functional.mse_loss(boxes, torch.from_numpy(y))
    loss.backward()
    assert abs(float(s.value(s.loss_node.name)) - loss.item()) < 1e-12 * max(1.0, loss.item())
    grads = {n: p.grad.numpy() for n, p in model.named_parameters(remove_duplicate=False) if p.grad is not None}
    largest = max(float(np.max(np.abs(g))) for g in grads.values())
    names = {**{n: n for n in s.params}, **{alias: n for alias, n in (s.model.aliases or {}).items()}}
    for pname, want in grads.items():
        scale = max(float(np.max(np.abs(want))), 1e-6 * largest)
        assert float(np.max(np.abs(np.asarray(s.grad(names[pname])) - want))) / scale < 1e-9, pname
    assert zoo.relative(s.grad("pixel_values"), pixels.grad.numpy()) < 1e-9


def test_grounding_dino_folder_opens_with_a_target_among_its_text(tmp_path: Any) -> None:
    """A Grounding DINO folder opened without data: its classes past the text are −∞, and a target drawn among all
    of them opened the loss as infinity. The target is drawn among each query's finite classes (marked drawn), and
    the loss and gradients are autograd's."""
    torch.manual_seed(0)
    built, _, _ = _grounding_dino()
    zoo._jitter(built).save_pretrained(tmp_path / "gdino")
    s = open_session(tmp_path / "gdino", dtype="float64")
    y = np.asarray(s.batch["y"]).astype(np.int64)
    tokens = s.graph["input_ids"].shape[-1]
    assert s.target_drawn and s.loss_name == "cross_entropy" and (y < tokens).all() and len(set(y.tolist())) > 1
    s.run_to_end()
    model = _t().GroundingDinoForObjectDetection.from_pretrained(tmp_path / "gdino",
                                                                 attn_implementation="eager").double()
    inputs = {"pixel_values": torch.from_numpy(np.asarray(s.batch["pixel_values"], dtype=np.float64)),
              "input_ids": torch.from_numpy(np.asarray(s.batch["input_ids"])).long()}
    loss, grads, pixel_grad = _reference(model, inputs, "logits", y)
    assert np.isfinite(loss) and abs(float(s.value(s.loss_node.name)) - loss) < 1e-12 * max(1.0, abs(loss))
    largest = max(float(np.max(np.abs(g))) for g in grads.values())
    for pname, want in grads.items():  # a bias a group norm cancels: a true zero, rounding noise on both sides
        scale = max(float(np.max(np.abs(want))), 1e-5 * largest)
        assert float(np.max(np.abs(np.asarray(s.grad(pname)) - want))) / scale < 1e-9, pname
    assert zoo.relative(s.grad("pixel_values"), pixel_grad) < 1e-9
    # another loss, or the boxes, draw a target of their own kind; cross-entropy again draws among the finite
    mse, drawn = s.with_loss("mse")
    assert drawn and mse.batch["y"].shape == tuple(mse.prediction_node.shape)
    boxes = open_session(tmp_path / "gdino", dtype="float64", output="pred_boxes", loss="mse")
    assert boxes.target_drawn and boxes.batch["y"].shape == tuple(boxes.prediction_node.shape)
    again, drawn = mse.with_loss("cross_entropy")
    assert drawn and (np.asarray(again.batch["y"]) < tokens).all()
    again.run_to_end()
    assert np.isfinite(float(again.value(again.loss_node.name)))

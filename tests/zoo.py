"""The architectures engineers bring, built here with random weights (nothing downloaded), for the reader tests.

torchvision's model constructors are pure Python, but torchvision 0.28 may come as a CUDA build whose C
extension does not load on the CPU torch (its `import torchvision` then fails registering `torchvision::nms`).
`torchvision_models()` therefore imports `torchvision.models` without running the package's `__init__`
(which loads the extension): the constructors need none of it.

Every builder returns (module, example inputs, targets): the module outputs logits of shape (N, C) for
`F.cross_entropy`, so one loss serves every model; token models flatten (batch, position) into N.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np

Builder = Callable[[], tuple[Any, tuple[np.ndarray, ...], np.ndarray]]


def torchvision_models() -> Any:
    """`torchvision.models`, imported without torchvision's C extension where it does not load; None when
    torchvision is missing (propscope's own loader, which the torchvision and transformers readers use)."""
    from propscope.graph.readers import _torchvision

    return _torchvision.models()


def export_onnx(model: Any, inputs: tuple[np.ndarray, ...], path: Any, dynamo: bool, **options: Any) -> Any:
    """torch.onnx.export of a copy of `model` (the dynamo exporter may change the module it traces) on `inputs`,
    quietly: the dynamo exporter reports its progress as warnings and log records. Returns `path`."""
    import copy
    import logging
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            torch.onnx.export(copy.deepcopy(model), tuple(torch.from_numpy(a) for a in inputs), str(path),
                              dynamo=dynamo, **options)
        finally:
            logging.disable(logging.NOTSET)
    return path


def has_torchvision() -> bool:
    return importlib.util.find_spec("torchvision") is not None and importlib.util.find_spec("PIL") is not None


def has_transformers() -> bool:
    return importlib.util.find_spec("transformers") is not None


def _images(n: int = 2, c: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, c, size, size))


def _labels(n: int, classes: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, n)


def _jitter(model: Any) -> Any:
    """Nudge every parameter and running statistic off its initial value (zero biases, unit norms would tie)."""
    import torch

    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(1.0 + 0.2 * torch.rand_like(b))
    return model


def _vision(name: str, **kw: Any) -> Builder:
    def build() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
        import torch

        torch.manual_seed(0)
        model = getattr(torchvision_models(), name)(num_classes=10, **kw)
        return _jitter(model).double().eval(), (_images(),), _labels(2, 10)

    return build


def _video(name: str) -> Builder:
    """A torchvision video classifier (3-D convolutions) on two clips of 4 frames of 32×32."""
    def build() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
        import importlib

        import torch

        torchvision_models()
        torch.manual_seed(0)
        model = getattr(importlib.import_module("torchvision.models.video"), name)(num_classes=10)
        clips = np.random.default_rng(0).standard_normal((2, 3, 4, 32, 32))
        return _jitter(model).double().eval(), (clips,), _labels(2, 10)

    return build


def _deeplabv3() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """torchvision's DeepLabV3 (its ASPP head: atrous convolutions beside a global-pooling branch upsampled
    bilinearly; the logits upsampled bilinearly to the image) on a small dilated backbone of torch.nn layers,
    with per-pixel logits (N·H·W, 4). deeplabv3_mobilenet_v3_large itself steps as well (the README's survey)
    but takes a minute of this file's time on two cores."""
    from collections import OrderedDict

    import torch
    from torch import nn

    torchvision_models()
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

    def layer(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dilation, dilation, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU())

    class PixelLogits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            backbone = nn.Sequential(OrderedDict(stem=layer(3, 8, 2), layer1=layer(8, 16, 2),
                                                 layer2=layer(16, 16, dilation=2)))
            self.net = DeepLabV3(IntermediateLayerGetter(backbone, {"layer2": "out"}),
                                 DeepLabHead(16, 4, atrous_rates=(2, 3, 4)))

        def forward(self, x: Any) -> Any:
            return self.net(x)["out"].permute(0, 2, 3, 1).reshape(-1, 4)

    torch.manual_seed(0)
    return _jitter(PixelLogits()).double().eval(), (_images(),), _labels(2 * 32 * 32, 4)


def _unet3d() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """A 3-D U-Net (Çiçek et al.) for volumes: Conv3d, BatchNorm3d, max_pool3d down, ConvTranspose3d up (2×2×2,
    stride 2), skip connections concatenated; per-voxel logits."""
    import torch
    from torch import nn

    class Block(nn.Sequential):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__(nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))

    class UNet3d(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc1, self.enc2, self.mid = Block(1, 4), Block(4, 8), Block(8, 8)
            self.up2, self.dec2 = nn.ConvTranspose3d(8, 8, 2, stride=2), Block(16, 4)
            self.up1, self.dec1 = nn.ConvTranspose3d(4, 4, 2, stride=2), Block(8, 4)
            self.head = nn.Conv3d(4, 3, 1)

        def forward(self, x: Any) -> Any:
            e1 = self.enc1(x)
            e2 = self.enc2(nn.functional.max_pool3d(e1, 2))
            m = self.mid(nn.functional.max_pool3d(e2, 2))
            d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
            d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
            return self.head(d1).permute(0, 2, 3, 4, 1).reshape(-1, 3)

    torch.manual_seed(0)
    volumes = np.random.default_rng(0).standard_normal((2, 1, 8, 8, 8))
    return _jitter(UNet3d()).double().eval(), (volumes,), _labels(2 * 8 * 8 * 8, 3)


def _vit() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    import torch

    torch.manual_seed(0)
    from torchvision.models.vision_transformer import VisionTransformer

    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=10)
    return _jitter(model).double().eval(), (_images(),), _labels(2, 10)


def _unet() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    import torch
    from torch import nn

    class Block(nn.Sequential):
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        """Encoder-decoder with skip connections: max-pool down, transposed convolution up, concat."""

        def __init__(self) -> None:
            super().__init__()
            self.enc1, self.enc2, self.mid = Block(3, 8), Block(8, 16), Block(16, 16)
            self.up2, self.dec2 = nn.ConvTranspose2d(16, 16, 2, stride=2), Block(32, 8)
            self.up1, self.dec1 = nn.ConvTranspose2d(8, 8, 2, stride=2), Block(16, 8)
            self.head = nn.Conv2d(8, 4, 1)

        def forward(self, x: Any) -> Any:
            e1 = self.enc1(x)
            e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
            m = self.mid(nn.functional.max_pool2d(e2, 2))
            d2 = self.dec2(torch.cat([self.up2(m), e2], dim=-3))
            d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=-3))
            logits = self.head(d1)  # (N, 4, H, W): per-pixel classes, flattened for one cross-entropy
            return logits.permute(0, 2, 3, 1).reshape(-1, 4)

    torch.manual_seed(0)
    return _jitter(UNet()).double().eval(), (_images(2, 3, 16),), _labels(2 * 16 * 16, 4)


def _groupnorm_resnet() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.conv1, self.norm1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.GroupNorm(4, c)
            self.conv2, self.norm2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.GroupNorm(4, c)
            self.drop = nn.Dropout(0.2)

        def forward(self, x: Any) -> Any:
            y = nn.functional.silu(self.norm1(self.conv1(x)))
            y = self.norm2(self.conv2(self.drop(y)))
            return nn.functional.relu(x + y)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.block1, self.block2 = nn.Conv2d(3, 8, 3, stride=2, padding=1), Residual(8), Residual(8)
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(8, 10)

        def forward(self, x: Any) -> Any:
            return self.fc(self.pool(self.block2(self.block1(self.stem(x)))).flatten(1))

    torch.manual_seed(0)
    return _jitter(Net()).double().eval(), (_images(2, 3, 16),), _labels(2, 10)


def _transformer_encoder() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.1, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.fc = nn.Linear(16, 5)

        def forward(self, x: Any) -> Any:
            return self.fc(self.encoder(x).mean(1))

    torch.manual_seed(0)
    return _jitter(Encoder()).double().eval(), (np.random.default_rng(0).standard_normal((2, 8, 16)),), _labels(2, 5)


def _bigru() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    import torch
    from torch import nn

    class BiGRU(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(20, 8)
            self.gru = nn.GRU(8, 6, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(12, 3)

        def forward(self, ids: Any) -> Any:
            out, _ = self.gru(self.embed(ids))
            return self.fc(out[:, -1])

    torch.manual_seed(0)
    return _jitter(BiGRU()).double().eval(), (_tokens(20),), _labels(2, 3)


def _lstm_lm() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    import torch
    from torch import nn

    class LanguageModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.lstm, self.head = nn.Embedding(20, 8), nn.LSTM(8, 8, batch_first=True), nn.Linear(8, 20)

        def forward(self, ids: Any) -> Any:
            out, _ = self.lstm(self.embed(ids))
            return self.head(out).reshape(-1, 20)

    torch.manual_seed(0)
    return _jitter(LanguageModel()).double().eval(), (_tokens(20),), _labels(16, 20)


def _tokens(vocab: int, n: int = 2, length: int = 8, seed: int = 3) -> np.ndarray:
    ids = np.random.default_rng(seed).integers(0, vocab, (n, length))
    ids[-1, -1] = 0  # BERT's padding id: its embedding row must get no gradient (padding_idx)
    return ids


class _Logits:
    """Wraps a transformers model so it returns plain logits (N, C) that the export and the loss take."""

    @staticmethod
    def wrap(model: Any, flatten: bool, keys: tuple[str, ...] = ("input_ids",)) -> Any:
        from torch import nn

        class Wrapped(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *inputs: Any) -> Any:
                logits = self.model(**dict(zip(keys, inputs, strict=True))).logits
                return logits.reshape(-1, logits.shape[-1]) if flatten else logits

        return Wrapped()


def _gpt2(use_cache: bool) -> Builder:
    def build() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
        import torch
        torchvision_models()  # transformers imports torchvision when it is installed
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        config = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, use_cache=use_cache,
                            attn_implementation="eager")
        model = _Logits.wrap(GPT2LMHeadModel(config), flatten=True)
        return _jitter(model).double().eval(), (_tokens(40),), _labels(16, 40)

    return build


def _bert() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    import torch
    torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=3, attn_implementation="eager")
    model = _Logits.wrap(BertForSequenceClassification(config), flatten=False)
    return _jitter(model).double().eval(), (_tokens(40),), _labels(2, 3)


def _distilbert() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    import torch
    torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=40, dim=16, n_layers=2, n_heads=2, hidden_dim=32, max_position_embeddings=16,
                              num_labels=3, attn_implementation="eager")
    model = _Logits.wrap(DistilBertForSequenceClassification(config), flatten=False)
    return _jitter(model).double().eval(), (_tokens(40),), _labels(2, 3)


def _opt() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """OPT: learned positions offset by 2 (computed from the attention mask's cumsum, folded), pre-norm decoder
    layers, a ReLU MLP, the embeddings projected in and out where word_embed_proj_dim differs (here 8 of 16)."""
    import torch
    torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    config = OPTConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, ffn_dim=32, num_attention_heads=2,
                       max_position_embeddings=16, word_embed_proj_dim=8, pad_token_id=1, bos_token_id=2,
                       eos_token_id=2, attn_implementation="eager")
    model = _Float64.wrap(OPTForCausalLM(config), ("input_ids",), flatten=True)
    return _jitter(model).double().eval(), (_tokens(40),), _labels(16, 40)


def _clip() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """CLIP's vision tower (the cheaper one, and the one image classifiers use): patch convolution without bias, a
    class token, learned positions, pre-layernorm, a classifier on the mean patch token. torch.onnx's dynamo
    exporter writes Python scalars as float32 (quick_gelu's 1.702, an attention scale of 8^-1/2): 1e-9 from the
    model in the input gradient, so this config uses GELU and 16-wide heads (a scale of exactly 1/4)."""
    import torch
    torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import CLIPConfig, CLIPForImageClassification, CLIPVisionConfig

    torch.manual_seed(0)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, hidden_act="gelu")
    config = CLIPConfig(vision_config=vision.to_dict(), num_labels=10, attn_implementation="eager")
    model = _Float64.wrap(CLIPForImageClassification(config), ("pixel_values",), flatten=False)
    return _jitter(model).double().eval(), (_images(),), _labels(2, 10)


def _bart() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """BART, encoder and decoder: learned positions offset by 2, post-layernorm, cross-attention, logits tied to
    the shared embedding plus a final bias buffer; 8 source tokens, 6 target tokens."""
    import torch
    torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = BartConfig(vocab_size=40, d_model=16, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=16,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                        forced_eos_token_id=None, attn_implementation="eager")
    model = _Logits.wrap(BartForConditionalGeneration(config), flatten=True, keys=("input_ids", "decoder_input_ids"))
    return _jitter(model).double().eval(), (_tokens(40), _tokens(40, length=6, seed=4)), _labels(12, 40)


def _electra() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """ELECTRA's discriminator as a classifier: BERT's encoder behind embeddings of 8 projected to 16, a GELU head
    on the first token."""
    import torch
    torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import ElectraConfig, ElectraForSequenceClassification

    torch.manual_seed(0)
    config = ElectraConfig(vocab_size=40, embedding_size=8, hidden_size=16, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=32, max_position_embeddings=16, num_labels=3,
                           attn_implementation="eager")
    model = _Logits.wrap(ElectraForSequenceClassification(config), flatten=False)
    return _jitter(model).double().eval(), (_tokens(40),), _labels(2, 3)


def _hf_vit() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """transformers' ViT (not torchvision's): patch convolution, class token, learned positions, pre-layernorm,
    GELU MLPs, a classifier on the class token."""
    import torch
    torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                       image_size=32, patch_size=8, num_labels=10, attn_implementation="eager")
    model = _Float64.wrap(ViTForImageClassification(config), ("pixel_values",), flatten=False)
    return _jitter(model).double().eval(), (_images(),), _labels(2, 10)


class _Float64:
    """transformers computes some steps in float32 whatever the model's dtype (RMSNorm's mean square, T5's layer
    norm, the rotary angles, the attention softmax of Llama, OPT, CLIP and ViT: safe in half-precision training).
    propscope's float64 session keeps a cast between float dtypes as the value itself, so its numbers are torch's
    with those steps in float64 (about 1e-7 apart from the float32 ones). The reference here runs them in float64
    too: the model's forward under a torch function mode that asks for float64 wherever the code asks for float32."""

    @staticmethod
    def wrap(model: Any, keys: tuple[str, ...], flatten: bool) -> Any:
        import torch
        from torch.overrides import TorchFunctionMode

        class Float64(TorchFunctionMode):
            def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                if func is torch.Tensor.float:
                    func, args = torch.Tensor.double, args[:1]
                args = tuple(torch.float64 if a is torch.float32 else a for a in args)
                kwargs = {k: torch.float64 if v is torch.float32 else v for k, v in (kwargs or {}).items()}
                return func(*args, **kwargs)

        class InFloat64(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *inputs: Any) -> Any:
                with Float64():
                    logits = self.model(**dict(zip(keys, inputs, strict=True))).logits
                return logits.reshape(-1, logits.shape[-1]) if flatten else logits

        return InFloat64()


def _llama() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """Llama as Qwen2, Mistral and Gemma also are: RMSNorm, rotary positions, a SiLU-gated MLP, 4 query heads
    sharing 2 key/value heads."""
    import torch
    torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
                         attn_implementation="eager")
    model = _Float64.wrap(LlamaForCausalLM(config), ("input_ids",), flatten=True)
    return _jitter(model).double().eval(), (_tokens(40),), _labels(16, 40)


def _t5() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """T5, encoder and decoder: relative-position buckets (logarithms truncated to int64, folded at load time)
    index a learned bias per head; 8 source tokens, 6 target tokens."""
    import torch
    torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16, decoder_start_token_id=0,
                      attn_implementation="eager")
    model = _Float64.wrap(T5ForConditionalGeneration(config), ("input_ids", "decoder_input_ids"), flatten=True)
    return _jitter(model).double().eval(), (_tokens(40), _tokens(40, length=6, seed=4)), _labels(12, 40)


def _whisper() -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """Whisper: two Conv1d over 8 mel bins × 16 frames, frozen sinusoidal positions (a constant), the decoder's
    cross-attention to the encoder; the input gradient is that of the features."""
    import torch
    torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=40, num_mel_bins=8, encoder_layers=2, decoder_layers=2, d_model=16,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_source_positions=8, max_target_positions=16, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=1, attn_implementation="eager")
    model = _Float64.wrap(WhisperForConditionalGeneration(config), ("input_features", "decoder_input_ids"),
                          flatten=True)
    features = np.random.default_rng(0).standard_normal((2, 8, 16))
    return _jitter(model).double().eval(), (features, _tokens(40, length=6, seed=4)), _labels(12, 40)


# name: (builder, needs) where needs is "torchvision", "transformers" or "" (torch alone)
ARCHITECTURES: dict[str, tuple[Builder, str]] = {
    "resnet18": (_vision("resnet18"), "torchvision"),
    "mobilenet_v2": (_vision("mobilenet_v2"), "torchvision"),
    "mobilenet_v3_small": (_vision("mobilenet_v3_small"), "torchvision"),
    "efficientnet_b0": (_vision("efficientnet_b0"), "torchvision"),
    "vit": (_vit, "torchvision"),
    "swin_t": (_vision("swin_t"), "torchvision"),  # shifted windows: torch.roll, a folded attention mask
    "r3d_18": (_video("r3d_18"), "torchvision"),  # a video ResNet: Conv3d, BatchNorm3d, adaptive 3-D pooling
    "deeplabv3": (_deeplabv3, "torchvision"),  # segmentation: ASPP, bilinear upsampling to the image
    "unet3d": (_unet3d, ""),  # a 3-D U-Net decoder: ConvTranspose3d
    "unet": (_unet, ""),
    "groupnorm_resnet": (_groupnorm_resnet, ""),
    "transformer_encoder": (_transformer_encoder, ""),
    "bigru": (_bigru, ""),
    "lstm_lm": (_lstm_lm, ""),
    "gpt2": (_gpt2(False), "transformers"),
    "gpt2_cache": (_gpt2(True), "transformers"),
    "bert": (_bert, "transformers"),
    "distilbert": (_distilbert, "transformers"),
    "llama": (_llama, "transformers"),  # RMSNorm, rotary positions, SiLU-gated MLP, grouped-query attention
    "t5": (_t5, "transformers"),  # encoder-decoder; relative-position buckets (a logarithm cast to int64)
    "whisper": (_whisper, "transformers"),  # Conv1d over audio features, frozen positions, cross-attention
    "opt": (_opt, "transformers"),  # positions from the mask's cumsum, projected embeddings, ReLU MLP
    "clip": (_clip, "transformers"),  # CLIP's vision tower: pre-layernorm, mean-pooled classifier
    "bart": (_bart, "transformers"),  # encoder-decoder, post-layernorm, tied logits plus a bias buffer
    "electra": (_electra, "transformers"),  # BERT's encoder behind projected embeddings
    "hf_vit": (_hf_vit, "transformers"),  # transformers' ViT beside torchvision's
}


# -- what the architecture test files share --------------------------------------------------------------------
NEEDS: dict[str, Callable[[], bool]] = {"torchvision": has_torchvision, "transformers": has_transformers,
                                        "": lambda: True}
_BUILT: dict[str, tuple[Any, tuple[np.ndarray, ...], np.ndarray]] = {}


def params() -> list[Any]:
    """Every architecture as a pytest parameter, skipped with a reason where its library is not installed."""
    import pytest

    return [pytest.param(name, marks=pytest.mark.skipif(not NEEDS[needs](), reason=f"{needs} is not installed"))
            for name, (_, needs) in ARCHITECTURES.items()]


def built(name: str) -> tuple[Any, tuple[np.ndarray, ...], np.ndarray]:
    """(module, inputs, targets) of an architecture, built once per test process."""
    if name not in _BUILT:
        if ARCHITECTURES[name][1] == "torchvision":
            torchvision_models()
        _BUILT[name] = ARCHITECTURES[name][0]()
    return _BUILT[name]


def autograd_reference(model: Any, inputs: tuple[np.ndarray, ...], y: np.ndarray
                       ) -> tuple[float, dict[str, np.ndarray], list[np.ndarray | None]]:
    """torch's cross-entropy loss, the gradient of every parameter under each of its names (tied weights have
    several), and the gradient of each float input."""
    import copy

    import torch

    m = copy.deepcopy(model)
    tensors = [torch.from_numpy(a.copy()) for a in inputs]
    for t in tensors:
        t.requires_grad_(t.is_floating_point())
    loss = torch.nn.functional.cross_entropy(m(*tensors), torch.from_numpy(y))
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in m.named_parameters(remove_duplicate=False) if p.grad is not None}
    return float(loss.detach()), grads, [t.grad.numpy() if t.grad is not None else None for t in tensors]


def relative(got: Any, want: np.ndarray) -> float:
    """The largest difference, relative to the largest magnitude of `want`."""
    scale = max(float(np.max(np.abs(want), initial=0.0)), 1e-12)
    return float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want), initial=0.0)) / scale


def scriptable(model: Any) -> Any:
    """`model` ready for `torch.jit.script`: the zoo's own modules annotate `forward` with `Any` (this file's
    typing), which TorchScript types as Any, not Tensor, and refuses to pass on to a layer. Each such `forward` is
    given a twin whose `Any` names `torch.Tensor` (its code, source and closure unchanged), on the module's own
    class (every build makes its classes afresh). Returns `model`."""
    import types

    import torch

    for module in model.modules():
        cls = type(module)
        forward = cls.__dict__.get("forward")
        if cls.__module__ != __name__ or not isinstance(forward, types.FunctionType) \
                or forward.__globals__.get("Any") is torch.Tensor:
            continue
        twin = types.FunctionType(forward.__code__, {**forward.__globals__, "Any": torch.Tensor}, forward.__name__,
                                  forward.__defaults__, forward.__closure__)
        twin.__qualname__, twin.__module__ = forward.__qualname__, forward.__module__
        twin.__annotations__ = forward.__annotations__
        cls.forward = twin
    return model

"""timm's model families, as a sweep of every timm model module found them (its smallest architecture each, random
weights, the whole pass on the NumPy backend in float64 against torch autograd of the module itself): the families
that did not open or step, or stepped to other numbers, each at the smallest size that shows what was wrong; and ten
diverse families on the torch backend.

What the sweep found: a vision transformer built with `dynamic_img_size` resamples its position embedding with an
antialiased bicubic resize when exported (an unsupported op); HaloNet's blocked neighbourhoods are `Tensor.unfold`
(unsupported); CoaT shares one position encoding between a stage and its blocks, and the gradient was answered under
one of its names only; NFNet's weight standardization made a zero bias under its convolution's bias's name, which
the bias itself lost; EfficientViT keeps its attention in float32 in an `autocast(enabled=False)` block, which
torch.export writes as a higher-order op (unsupported); Gemma 4's vision tower picks its position embeddings by
F.one_hot (unsupported); NaFlexViT resamples its position embeddings with upsample_linear1d (unsupported).
"""

from __future__ import annotations

import copy
import importlib.util
from typing import Any

import numpy as np
import pytest

from propscope.debugger import open_session

pytestmark = pytest.mark.skipif(importlib.util.find_spec("timm") is None or importlib.util.find_spec("torch") is None,
                                reason="timm is not installed")


def _timm() -> Any:
    from propscope.graph.readers import _torchvision

    _torchvision.models()  # timm imports torchvision (this machine's may be a CUDA build beside a CPU torch)
    import timm

    return timm


def _reference(module: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and every parameter's gradient (under each of its names) by torch autograd, in float64."""
    import torch

    m = copy.deepcopy(module).double().eval()
    loss = torch.nn.functional.cross_entropy(m(torch.from_numpy(np.asarray(x, dtype=np.float64))), torch.from_numpy(y))
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in m.named_parameters(remove_duplicate=False)
                                  if p.grad is not None}


def _assert_matches(s: Any, module: Any, rel: float = 1e-9) -> None:
    """The session's loss and the gradient of every parameter the module has (by every name torch gives it) equal
    autograd's, each to `rel` of its largest entry (of the largest gradient's, for one that is nearly all zero)."""
    s.run_to_end()
    x, y = s.batch[s.graph.inputs[0].name], s.batch["y"]
    loss, grads = _reference(module, x, y)
    assert float(s.backend.to_numpy(s.value(s.loss_node.name))) == pytest.approx(loss, rel=rel)
    largest = max(float(np.abs(g).max()) for g in grads.values())
    for name, want in grads.items():
        got = np.asarray(s.backend.to_numpy(s.grad(name)))  # a shared parameter answers to each of its names
        error = float(np.abs(got - want).max())
        assert error <= rel * max(float(np.abs(want).max()), 1e-6 * largest), name


def _by_name(spec: str, backend: str = "numpy", **model_args: Any) -> tuple[Any, Any]:
    """A session of `timm:NAME@SIZE` (its constructor given `model_args`) and the module timm builds for it, the
    same way and seed."""
    import torch

    from propscope.graph.readers import timm_arch

    timm = _timm()
    name, size = timm_arch.parse(spec)
    s = open_session(timm_arch.open_spec(spec, model_args=model_args) if model_args else spec, dtype="float64",
                     loss="cross_entropy", backend=backend)
    assert not s.model.unsupported_ops, s.model.unsupported_ops
    options = dict(model_args)
    if size is not None:
        options["img_size"] = size[0]
    torch.manual_seed(0)  # as open_spec builds it
    try:
        module = timm.create_model(name, pretrained=False, **options)
    except TypeError:  # an architecture that takes any size has no img_size
        options.pop("img_size", None)
        torch.manual_seed(0)
        module = timm.create_model(name, pretrained=False, **options)
    return s, module


def test_a_vit_that_resamples_its_position_embedding() -> None:
    """test_vit has dynamic_img_size: exported, it resamples its position embedding to the grid it meets, by an
    antialiased bicubic resize (F.interpolate(antialias=True)), even to the size it has."""
    s, module = _by_name("timm:test_vit@32")
    resizes = [n for n in s.graph.ops if n.op.name == "upsample_bicubic2d"]
    assert resizes and all(n.attrs["antialias"] for n in resizes)
    _assert_matches(s, module)


def test_coat_shares_its_position_encodings() -> None:
    """CoaT's stage and its serial blocks hold one position encoding under several names (cpe1.proj.weight,
    serial_blocks1.0.cpe.proj.weight, ...): the gradient is theirs under each name."""
    import torch

    from propscope.graph.readers import state_dict, timm_arch

    args: dict[str, Any] = {"embed_dims": [16, 16, 16, 16], "serial_depths": [1, 1, 1, 1], "parallel_depth": 1,
                            "num_heads": 8, "mlp_ratios": [1, 1, 1, 1]}
    s, module = _by_name("timm:coat_tiny@32", **args)
    assert "cpe1.proj.weight" in s.model.aliases
    _assert_matches(s, module)
    # its state dict holds the shared tensors under every name: all of them are the graph's, none unexpected
    torch.manual_seed(9)
    tuned = _timm().create_model("coat_tiny", img_size=32, **args)
    tensors = {k: v.numpy() for k, v in tuned.state_dict().items()}
    model, report = state_dict.apply_state_dict(timm_arch.open_spec("timm:coat_tiny@32", model_args=args), tensors)
    assert not report.unexpected and not report.missing, report.summary()
    kept = model.aliases["cpe1.proj.weight"]
    np.testing.assert_array_equal(model.arrays[kept], tensors["cpe1.proj.weight"])


def test_efficientvit_keeps_its_attention_out_of_autocast() -> None:
    """EfficientViT (MIT)'s linear attention runs in an autocast(enabled=False) block, a higher-order op in the
    exported program, read in place. Torch computes that block in float32 even in a float64 model (`.float()`);
    propscope computes such a float32 island in the session's dtype, as designed: the two differ by float32's
    rounding there."""
    s, module = _by_name("timm:efficientvit_b0@32")
    _assert_matches(s, module, rel=1e-5)


def test_halonet_blocks_its_neighbourhoods_with_unfold() -> None:
    """HaloNet's attention gathers each block's neighbourhood with Tensor.unfold (the family's smallest, halonet_h1,
    needs 256×256 images: here a two-stage ByobNet with the same halo attention, 16×16)."""
    import torch

    _timm()
    from timm.models.byobnet import ByoBlockCfg, ByobNet, ByoModelCfg

    cfg = ByoModelCfg(blocks=(ByoBlockCfg(type="bottle", d=1, c=16, s=1, gs=0, br=0.5),
                              ByoBlockCfg(type="self_attn", d=1, c=16, s=1, gs=0, br=0.5)),
                      stem_chs=8, stem_type="", stem_pool="", num_features=0, self_attn_layer="halo",
                      self_attn_kwargs={"block_size": 4, "halo_size": 1, "num_heads": 2})
    torch.manual_seed(0)
    module = ByobNet(cfg, num_classes=5).eval()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((1, 3, 16, 16)), rng.integers(0, 5, 1)
    s = open_session(copy.deepcopy(module).double(), inputs=x, data={"y": y}, loss="cross_entropy",
                     dtype="float64")
    assert not s.model.unsupported_ops and any(n.meta.get("original_op") == "unfold" or "unfold" in n.name
                                               for n in s.graph.ops)
    _assert_matches(s, module)


def test_nfnet_keeps_its_conv_biases_names() -> None:
    """NFNet's ScaledStdConv2d standardizes its weight with F.batch_norm, which has no bias: the zero bias made for it
    took the name of the convolution's own bias (`final_conv.bias`), which became `final_conv.bias_1`, so the
    gradient was not found under its name and a state dict's bias was never loaded."""
    import torch

    s, module = _by_name("timm:test_nfnet@32")
    assert s.graph["final_conv.bias"].op.name == "parameter"  # the zero constant takes another name
    _assert_matches(s, module)
    from propscope.graph.readers import state_dict, timm_arch

    torch.manual_seed(9)
    tuned = _timm().create_model("test_nfnet")
    tensors = {k: v.numpy() for k, v in tuned.state_dict().items()}
    model, report = state_dict.apply_state_dict(timm_arch.open_spec("timm:test_nfnet@32"), tensors)
    assert not report.unexpected and not report.missing, report.summary()
    np.testing.assert_array_equal(model.arrays["final_conv.bias"], tensors["final_conv.bias"])


def test_gemma4_looks_up_its_positions_by_one_hot() -> None:
    """Gemma 4's vision tower (its smallest has 167M parameters: here one block, 32 wide) picks its 2-D position
    embeddings with F.one_hot times the table. Torch computes its rotary table in float32 (`.float()`, in a no_grad
    block) even in a float64 model; propscope in the session's dtype, as designed."""
    s, module = _by_name("timm:gemma4_vit_167m@32", depth=1, embed_dim=32, num_heads=2, head_dim=16,
                         intermediate_size=32)
    _assert_matches(s, module, rel=1e-5)


def test_naflexvit_resamples_its_factorized_position_embeddings() -> None:
    """NaFlexViT's factorized position embeddings (a row and a column table) are resampled to the grid by 1-D linear
    interpolation of sequences (upsample_linear1d, unsupported before); here one block, 32 wide. Torch resamples
    them in float32 even in a float64 model; propscope in the session's dtype."""
    s, module = _by_name("timm:naflexvit_base_patch16_parfac_gap@32", depth=1, embed_dim=32, num_heads=2)
    assert any(n.name.startswith("upsample_linear1d") for n in s.graph.ops)
    _assert_matches(s, module, rel=1e-5)


TORCH_BACKEND = ["test_resnet", "test_convnext", "test_efficientnet", "test_vit", "test_byobnet", "test_mambaout",
                 "test_coatnet", "mobilenetv3_small_050", "ghostnet_050", "lcnetv2_small"]


@pytest.mark.torch
@pytest.mark.parametrize("name", TORCH_BACKEND)
def test_families_on_the_torch_backend(name: str) -> None:
    s, module = _by_name(f"timm:{name}@32", backend="torch")
    _assert_matches(s, module)

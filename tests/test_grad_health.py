"""The vanishing/exploding flags of `propscope grads` (debugger/grad_flow.py) on standard models: quiet on fresh
torchvision, timm and transformers models and on the examples (so `--strict` means something), loud on networks
broken on purpose, naming the parameter and saying why."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.cli import main
from propscope.debugger import open_session
from propscope.debugger.grad_flow import activation_flow, gradient_flow
from propscope.graph.examples import EXAMPLES


def _flagged(flow: Any) -> dict[str, str]:
    return {r.name: r.flag for r in flow.rows if r.verdict}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_the_examples_are_quiet(name: str) -> None:
    flow = gradient_flow(open_session(name))
    assert not flow.flagged, flow.text(flagged_only=True)


needs_torchvision = pytest.mark.skipif(not zoo.has_torchvision(), reason="torchvision is not installed")


@pytest.mark.torch
@pytest.mark.slow
@needs_torchvision
@pytest.mark.parametrize("target", ["torchvision:resnet18@64", "timm:convnext_atto@64"])
def test_strict_passes_on_fresh_models(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    """ConvNeXt's blocks are gated by a layer scale of 10⁻⁶: their weights' gradients are 10⁶ below the stem's and
    the head's, alike at every depth: nothing is vanishing, nothing exploding (the old rule flagged 32)."""
    if target.startswith("timm"):
        pytest.importorskip("timm")
    assert main(["grads", target, "--strict", "--flagged"]) == 0, capsys.readouterr().out
    assert "every gradient finite" in capsys.readouterr().out


@pytest.mark.torch
@pytest.mark.slow
@needs_torchvision
@pytest.mark.parametrize("target", ["torchvision:mobilenet_v3_small@64", "torchvision:efficientnet_b0@64",
                                    "torchvision:vit_b_16@64", "timm:efficientnet_b0@64",
                                    "timm:vit_tiny_patch16_224@64"])
def test_fresh_vision_models_are_quiet(target: str) -> None:
    """EfficientNet and MobileNet in eval mode with BatchNorms at their initial statistics shrink the signal 10¹⁴
    both ways; every weight's gradient (its input times its error) stays alike. torchvision's ViT zeroes its head:
    no gradient passes it at this step, which the summary says instead of flagging 150 parameters."""
    if target.startswith("timm"):
        pytest.importorskip("timm")
    flow = gradient_flow(open_session(target))
    assert not flow.flagged, flow.text(flagged_only=True)
    if "vit_b_16" in target:
        assert "heads.head.weight is all 0 (a zero-initialised head)" in flow.summary()


def _language_model(kind: str) -> Any:
    import torch

    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    import transformers as T

    torch.manual_seed(0)
    small = {"vocab_size": 128, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "max_position_embeddings": 64}
    if kind == "gpt2":
        model = T.GPT2LMHeadModel(T.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=128, n_positions=64,
                                               bos_token_id=0, eos_token_id=0, use_cache=False))
    elif kind == "bert":
        model = T.BertForSequenceClassification(T.BertConfig(**small))
    else:
        model = T.LlamaForCausalLM(T.LlamaConfig(num_key_value_heads=2, **small))

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = model

        def forward(self, ids: Any) -> Any:
            return self.m(input_ids=ids).logits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_session(Logits().eval(), inputs=torch.randint(0, 128, (2, 8)), per_token=kind != "bert",
                            loss="cross_entropy")


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is not installed")
@pytest.mark.parametrize("kind", ["gpt2", "bert", "llama"])
def test_fresh_language_models_are_quiet(kind: str) -> None:
    s = _language_model(kind)
    flow = gradient_flow(s)
    assert not flow.flagged, flow.text(flagged_only=True)
    activations = activation_flow(s)
    assert not activations.flagged, activations.text(flagged_only=True)
    if kind == "llama":  # an RMSNorm is one row, its output: not its mean and its + eps
        norm_rows = [r.name for r in activations.rows if r.module == "m.model.norm"]
        assert len(norm_rows) == 1 and not norm_rows[0].startswith(("mean", "add")), norm_rows


@pytest.mark.torch
@pytest.mark.slow
@needs_torchvision
def test_a_conv_scaled_by_a_million_is_named_and_what_is_before_it_explodes(tmp_path: Path) -> None:
    """ResNet-18 with layer2.0.conv1 ×10⁶: ∂L/∂h jumps back across it (exploding, and says so: it was called
    "vanishing, tiny for its weights' size", which named the cause the wrong way round); the error arriving before
    it is 10³-10⁴ that at the loss (exploding); the biases, BatchNorms and the head are not flagged (the old rule
    called fc.bias and the damaged layer's BatchNorm shifts vanishing)."""
    import torch

    models = zoo.torchvision_models()
    state = models.resnet18(num_classes=10).state_dict()
    state["layer2.0.conv1.weight"] = state["layer2.0.conv1.weight"] * 1e6
    path = tmp_path / "damaged.pth"
    torch.save(state, path)
    flow = gradient_flow(open_session(path, arch="torchvision:resnet18@64"))
    flags = _flagged(flow)
    assert flags["layer2.0.conv1.weight"].startswith("exploding (∂L/∂h jumps ")
    assert "its weights' rms 2.0e+06× its peers'" in flags["layer2.0.conv1.weight"]
    before = {"conv1.weight"} | {f"layer1.{i}.conv{j}.weight" for i in range(2) for j in (1, 2)}
    assert set(flags) == before | {"layer2.0.conv1.weight"}
    assert all(flag.startswith("exploding") for flag in flags.values())
    assert main(["grads", str(path), "--arch", "torchvision:resnet18@64", "--strict", "--flagged"]) == 1


def _mlp(layers: int, activation: str, width: int = 16) -> Any:
    import torch

    torch.manual_seed(0)
    blocks: list[Any] = []
    for _ in range(layers):
        blocks += [torch.nn.Linear(width, width), torch.nn.Sigmoid() if activation == "sigmoid" else torch.nn.ReLU()]
    return torch.nn.Sequential(*blocks, torch.nn.Linear(width, 4)).double()


def _session(model: Any) -> Any:
    import torch

    x = torch.from_numpy(np.random.default_rng(0).standard_normal((8, 16)))
    y = np.random.default_rng(1).integers(0, 4, 8)
    return open_session(model, inputs=x, data={"y": y}, loss="cross_entropy")


@pytest.mark.torch
def test_a_sigmoid_net_30_deep_vanishes_toward_the_input() -> None:
    flow = gradient_flow(_session(_mlp(30, "sigmoid")))
    weights = [r for r in flow.rows if r.name.endswith("weight")]
    flagged = [r.name for r in weights if r.verdict == "vanishing"]
    assert flagged == [r.name for r in weights[:len(flagged)]] and len(flagged) >= 10  # the first layers, in order
    assert weights[-1].verdict == weights[-2].verdict == ""
    assert "of its peers' nearest the loss" in weights[0].flag
    assert not any(r.verdict for r in flow.rows if r.name.endswith("bias"))


@pytest.mark.torch
def test_a_zeroed_layer_gets_a_gradient_and_says_what_it_stops() -> None:
    """All-zero weights (zero-initialised: LoRA's B, a zero conv) are not dead while they get a gradient: no
    gradient passes back through them yet, which the row and the summary say, and the layers before them, at 0
    this step, are not flagged either (the first update changes it)."""
    import torch

    model = _mlp(8, "relu")
    with torch.no_grad():
        model[6].weight.zero_()
    flow = gradient_flow(_session(model))
    assert not flow.flagged, flow.text(flagged_only=True)
    zeroed = next(r for r in flow.rows if r.name == "6.weight")
    assert zeroed.flag.startswith("zero weights: no gradient passes back through it yet; its own ‖∂L/∂w‖ is ")
    assert zeroed.short_flag == "zero weights"
    before = [r for r in flow.rows if r.name in ("0.weight", "2.weight", "4.weight")]
    assert all(r.norm == 0 and r.flag == "0 at this step: no gradient passes back through 6.weight (all 0) yet"
               for r in before), flow.text()
    assert "6.weight is all 0 (zero-initialised): no gradient passes back through it" in flow.summary()


@pytest.mark.torch
def test_one_weight_scaled_up_explodes_the_gradient_toward_the_input() -> None:
    import torch

    model = _mlp(8, "relu")
    with torch.no_grad():
        model[10].weight.mul_(1e8)  # the error before it: 10⁴-10⁸ times that at the loss
    flags = _flagged(gradient_flow(_session(model)))
    assert flags["10.weight"].startswith("exploding (∂L/∂h jumps ")  # the layer that does it, named as such
    before = [f"{i}.weight" for i in range(0, 10, 2)]
    assert all(flags.get(name, "").startswith("exploding (∂L/∂y at its layer") for name in before), flags
    assert set(flags) == {*before, "10.weight"}

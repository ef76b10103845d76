"""The gradient-health verdicts (debugger/grad_flow.py) on the faults engineers bring: dead ReLU layers behind a
one-output head, a deep Sequential in the activations view, zero-initialised weights, one layer scaled up, and
recurrent layers that vanish or explode through time; each number a verdict states checked against torch autograd,
and fresh networks (a ConvNeXt-like block, a GPT-2-like transformer) left quiet."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

from propscope.debugger import open_session
from propscope.debugger.grad_flow import ACTIVATION_ROWS, activation_flow, gradient_flow

torch = pytest.importorskip("torch")
nn = torch.nn
pytestmark = pytest.mark.torch


def _session(model: Any, x: np.ndarray, out: int, loss: str = "mse") -> Any:
    y = np.random.default_rng(1).standard_normal((x.shape[0], out))
    return open_session(model.double().eval(), inputs=torch.from_numpy(x), data={"y": y}, loss=loss)


def _flags(flow: Any) -> dict[str, str]:
    return {r.name: r.flag for r in flow.rows if r.verdict}


def _number(text: str, before: str) -> float:
    """The number a verdict states right after `before`."""
    found = re.search(re.escape(before) + r"\s*([0-9.e+-]+)", text)
    assert found, (before, text)
    return float(found.group(1))


class DeadReLU(nn.Module):
    """fc2's bias of −10 keeps its ReLUs at 0 on every sample: fc1 and fc2 get no error, fc3 no input."""

    def __init__(self, out: int) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.fc4 = nn.Linear(4, 16), nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(
            16, out)
        with torch.no_grad():
            self.fc2.bias.fill_(-10.0)

    def forward(self, x: Any) -> Any:
        return self.fc4(torch.relu(self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))))


@pytest.mark.parametrize("out", [1, 2])
def test_dead_relu_layers_are_named_with_why_whatever_the_head(out: int) -> None:
    torch.manual_seed(0)
    model = DeadReLU(out).double()
    x = np.random.default_rng(0).standard_normal((8, 4))
    flow = gradient_flow(_session(model, x, out))
    flags = _flags(flow)
    assert set(flags) == {"fc1.weight", "fc2.weight", "fc3.weight"}, flow.text()
    for name in ("fc1.weight", "fc2.weight"):
        assert flags[name] == ("vanishing (dead: no gradient gets back past relu_1 (relu), whose output is 0 "
                               "everywhere: dead units)")
    assert flags["fc3.weight"] == "vanishing (dead: its input relu_1 is 0 everywhere, so its gradient is 0)"
    assert "every gradient finite" not in flow.summary()
    # torch autograd agrees: exactly 0 on fc1-fc3, not on the head
    y = torch.from_numpy(np.random.default_rng(1).standard_normal((8, out)))
    torch.nn.functional.mse_loss(model(torch.from_numpy(x)), y).backward()
    assert all(not torch.any(getattr(model, f"fc{i}").weight.grad) for i in (1, 2, 3))
    head = next(r for r in flow.rows if r.name == "fc4.weight")
    assert head.norm == pytest.approx(float(model.fc4.weight.grad.norm()), rel=1e-9) and head.norm > 0


def test_a_deep_sequential_lists_its_layers_in_the_activations_view() -> None:
    """30 sigmoid layers in one Sequential: 61 module outputs, over ACTIVATION_ROWS; the layers are listed (the
    first, the last and every flagged one kept, the rest evenly), not one row for the whole Sequential."""

    class Deep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers: list[Any] = [nn.Linear(4, 16), nn.Sigmoid()]
            for _ in range(29):
                layers += [nn.Linear(16, 16), nn.Sigmoid()]
            self.net = nn.Sequential(*layers, nn.Linear(16, 1))

        def forward(self, x: Any) -> Any:
            return self.net(x)

    torch.manual_seed(0)
    flow = activation_flow(_session(Deep(), np.random.default_rng(0).standard_normal((8, 4)), 1))
    modules = [r.module for r in flow.rows]
    assert len(flow.rows) == ACTIVATION_ROWS and flow.left_out == 61 - ACTIVATION_ROWS
    assert modules[0] == "net.0" and modules[-1] == "net.60"
    assert f"{ACTIVATION_ROWS} of 61 activations" in flow.summary()
    assert "1 between them not listed" in flow.summary()
    assert flow.rows[0].verdict == "vanishing" and flow.rows[-1].verdict == ""


class LoRALinear(nn.Module):
    """A frozen-style base layer plus a low-rank update B·A with B zero-initialised (LoRA)."""

    def __init__(self) -> None:
        super().__init__()
        self.base = nn.Linear(8, 8)
        self.lora_a = nn.Linear(8, 2, bias=False)
        self.lora_b = nn.Linear(2, 8, bias=False)
        nn.init.zeros_(self.lora_b.weight)

    def forward(self, x: Any) -> Any:
        return self.base(x) + self.lora_b(self.lora_a(x))


def test_zero_initialised_weights_are_not_dead_and_say_they_will_learn() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), LoRALinear(), nn.Tanh(), nn.Linear(8, 2)).double()
    x = np.random.default_rng(0).standard_normal((8, 4))
    flow = gradient_flow(_session(model, x, 2))
    assert not flow.flagged, flow.text()
    b = next(r for r in flow.rows if r.name == "2.lora_b.weight")
    assert b.flag.startswith("zero weights: no gradient passes back through it yet; its own ‖∂L/∂w‖ is ")
    assert b.flag.endswith(", it will learn") and "dead" not in b.flag
    a = next(r for r in flow.rows if r.name == "2.lora_a.weight")
    assert a.norm == 0 and a.flag == "0 at this step: no gradient passes back through 2.lora_b.weight (all 0) yet"
    assert "2.lora_b.weight is all 0 (zero-initialised)" in flow.summary()
    y = torch.from_numpy(np.random.default_rng(1).standard_normal((8, 2)))
    torch.nn.functional.mse_loss(model(torch.from_numpy(x)), y).backward()
    stated = _number(b.flag, "its own ‖∂L/∂w‖ is")
    assert stated == pytest.approx(float(model[2].lora_b.weight.grad.norm()), rel=1e-2) and stated > 0


class ReluMLP(nn.Module):
    def __init__(self, depth: int = 6, scaled: int = 3, scale: float = 1e4) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4 if i == 0 else 16, 16) for i in range(depth)])
        self.head = nn.Linear(16, 1)
        with torch.no_grad():
            self.layers[scaled].weight.mul_(scale)

    def forward(self, x: Any) -> Any:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x)


def test_a_layer_scaled_up_is_exploding_with_the_jump_autograd_measures() -> None:
    """layers.3 ×10⁴: ∂L/∂h jumps back across it, so it and the layers before it are exploding (not "vanishing,
    tiny for its weights' size"); the factor stated is torch's ∂L/∂h at its input against the largest past it."""
    torch.manual_seed(0)
    model = ReluMLP().double()
    x = np.random.default_rng(0).standard_normal((8, 4))
    flow = gradient_flow(_session(model, x, 1))
    flags = _flags(flow)
    assert flags["layers.3.weight"].startswith("exploding (∂L/∂h jumps ")
    assert "its weights' rms" in flags["layers.3.weight"]
    assert set(flags) == {f"layers.{i}.weight" for i in range(4)}, flow.text()
    assert all(flags[f"layers.{i}.weight"].startswith("exploding (∂L/∂y at its layer") for i in range(3))
    # torch: ∂L/∂h entering layers.3 against the largest error past it (its output, the ReLU's, layers.4's)
    kept: dict[str, Any] = {}
    h = torch.from_numpy(x)
    for i, layer in enumerate(model.layers):
        if h.requires_grad:  # not the batch
            h.retain_grad()
        kept[f"in{i}"] = h
        z = layer(h)
        z.retain_grad()
        kept[f"z{i}"] = z
        h = torch.relu(z)
        h.retain_grad()
        kept[f"a{i}"] = h
    y = torch.from_numpy(np.random.default_rng(1).standard_normal((8, 1)))
    torch.nn.functional.mse_loss(model.head(h), y).backward()

    def rms(t: Any) -> float:
        return float(t.grad.norm()) / t.grad.numel() ** 0.5

    jump = rms(kept["in3"]) / max(rms(kept["z3"]), rms(kept["a3"]), rms(kept["z4"]))
    assert _number(flags["layers.3.weight"], "∂L/∂h jumps") == pytest.approx(jump, rel=0.05) and jump > 100
    activations = activation_flow(_session(model, x, 1))
    assert any(r.verdict == "exploding" and "jumps" in r.flag for r in activations.rows), activations.text()


def _state_grads(cell: Any, xs: Any, head: Any, y: Any, lstm: bool) -> list[float]:
    """torch autograd's RMS of ∂L/∂s at every step, unrolled by hand: s is the state a step passes on (the LSTM's
    h and c stacked, as propscope's cell carries it)."""
    h = torch.zeros(xs.shape[0], cell.hidden_size, dtype=xs.dtype)
    c = torch.zeros_like(h)
    states = []
    for t in range(xs.shape[1]):
        if lstm:
            state = torch.stack(cell(xs[:, t], (h, c)))
            h, c = state[0], state[1]
        else:
            state = h = cell(xs[:, t], h)
        state.retain_grad()
        states.append(state)
    torch.nn.functional.mse_loss(head(h), y).backward()
    return [float(s.grad.norm()) / s.grad.numel() ** 0.5 for s in states]


class LastStep(nn.Module):
    def __init__(self, kind: str, steps_radius: float | None = None) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 16, batch_first=True) if kind == "lstm" else nn.RNN(4, 16, batch_first=True)
        self.head = nn.Linear(16, 1)
        if steps_radius is not None:
            with torch.no_grad():
                q, _ = torch.linalg.qr(torch.randn(16, 16))
                self.rnn.weight_hh_l0.copy_(q * steps_radius)

    def forward(self, x: Any) -> Any:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


@pytest.mark.parametrize(("kind", "steps", "radius", "verdict"),
                         [("lstm", 200, None, "vanishing"), ("rnn", 30, 3.0, "exploding")])
def test_vanishing_and_exploding_through_time_match_autograd(kind: str, steps: int, radius: float | None,
                                                             verdict: str) -> None:
    torch.manual_seed(0)
    model = LastStep(kind, radius).double()
    x = 0.1 * np.random.default_rng(0).standard_normal((4, steps, 4)) if radius else (
        np.random.default_rng(0).standard_normal((4, steps, 4)))
    s = _session(model, x, 1)
    flow = gradient_flow(s)
    (time,) = flow.through_time
    assert time.verdict == verdict and time.steps == steps and (time.first_time, time.last_time) == (0, steps - 1)
    assert flow.summary().count(f"rnn {verdict} through time") == 1
    assert _flags(flow)["rnn.weight_hh_l0"].startswith(f"{verdict} (through time: ∂L/∂h at t=0 is ")
    cell: Any = nn.LSTMCell(4, 16) if kind == "lstm" else nn.RNNCell(4, 16)
    cell = cell.double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(model.rnn, f"{name}_l0"))
    y = torch.from_numpy(np.random.default_rng(1).standard_normal((4, 1)))
    grads = _state_grads(cell, torch.from_numpy(x), model.head, y, kind == "lstm")
    assert time.first_rms == pytest.approx(grads[0], rel=1e-6)
    assert time.last_rms == pytest.approx(grads[-1], rel=1e-6)
    assert (time.ratio < 1e-3) if verdict == "vanishing" else (time.ratio > 100)
    activations = activation_flow(s)
    assert any(r.verdict == verdict and "through time" in r.flag for r in activations.rows), activations.text()
    assert f"rnn {verdict} through time" in activations.summary()


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block without timm: depthwise 7×7, LayerNorm, 4× MLP with GELU, a layer scale of 10⁻⁶, residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))
        for m in (self.dwconv, self.pwconv1, self.pwconv2):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Any) -> Any:
        h = self.dwconv(x).permute(0, 2, 3, 1)
        h = self.gamma * self.pwconv2(torch.nn.functional.gelu(self.pwconv1(self.norm(h))))
        return x + h.permute(0, 3, 1, 2)


class ConvNeXtLike(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, stride=4)
        self.stem_norm = nn.GroupNorm(1, dim)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(dim) for _ in range(3)])
        self.head = nn.Linear(dim, 10)
        nn.init.trunc_normal_(self.stem.weight, std=0.02)

    def forward(self, x: Any) -> Any:
        return self.head(self.blocks(self.stem_norm(self.stem(x))).mean((2, 3)))


class GPTBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc, self.out = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.heads = heads
        for m in (self.qkv, self.proj, self.fc, self.out):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Any) -> Any:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(attended)
        return x + self.out(torch.nn.functional.gelu(self.fc(self.ln2(x))))


class GPTLike(nn.Module):
    def __init__(self, vocab: int = 64, dim: int = 32, layers: int = 2) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, dim), nn.Embedding(16, dim)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        self.blocks = nn.Sequential(*[GPTBlock(dim, 4) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(dim)

    def forward(self, ids: Any) -> Any:
        h = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        return self.ln_f(self.blocks(h)) @ self.wte.weight.T  # tied head, as GPT-2's


def test_fresh_convnext_like_and_gpt_like_networks_are_quiet() -> None:
    """The jump rule stays quiet where the layer scale of 10⁻⁶ gates every block (ConvNeXt) and on a fresh
    pre-norm transformer with a tied head."""
    torch.manual_seed(0)
    convnext = open_session(ConvNeXtLike().double().eval(),
                            inputs=torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 32, 32))),
                            data={"y": np.array([1, 7])}, loss="cross_entropy")
    torch.manual_seed(0)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 64, (2, 8)))
    gpt = open_session(GPTLike().double().eval(), inputs=ids, per_token=True, loss="cross_entropy")
    for s in (convnext, gpt):
        flow = gradient_flow(s)
        assert not flow.flagged, flow.text(flagged_only=True)
        activations = activation_flow(s)
        assert not activations.flagged, activations.text(flagged_only=True)

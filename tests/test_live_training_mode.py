"""Modules handed over in training mode, as engineers debugging training hand them over: batch norm on the batch's
statistics, dropout, stochastic depth (torchvision's StochasticDepth, transformers' drop path), Dropout2d and
AlphaDropout, traced as they are and after `run_decompositions()`.

With every drop probability 0 the pass is deterministic and must give torch autograd's loss and gradients, on both
backends. With p > 0 propscope draws each mask once, when the model is read, seeded by its node (torch's own draws
cannot be had), so the values are checked for what the layer does with its mask: a sample's residual branch kept
(scaled by 1/(1 − p)) or dropped, whole channels zeroed, dropped elements set to SELU's lowest.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import pytest

import propscope
from propscope.backends import get_backend
from propscope.debugger.compare import compare_backends

torch = pytest.importorskip("torch")
nn = torch.nn

import zoo  # noqa: E402  (after the importorskip: zoo builds torch models)

BACKENDS = ("numpy", "torch")
BATCH = 8  # with 2 images, training-mode batch norm over resnet18's 1×1 last maps has 2 values a channel: torch's
# own gradients then move by 1e-9 under a 1e-15 change of the input, and mobilenet_v2's by 1e-6 (RegNet's by 1e-2)


def _decomposed(module: Any, x: Any) -> Any:
    """The module's program after `run_decompositions()` (torch's deprecation notices while it runs kept quiet)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(module, (x,)).run_decompositions()


def _autograd(module: Any, kwargs: dict[str, Any], y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """torch's cross-entropy and every parameter's gradient on a copy, in the module's own mode; token logits a row
    per token, as propscope reads a transformers model."""
    m = copy.deepcopy(module)
    out = m(**kwargs)
    out = getattr(out, "logits", out)
    out = out.reshape(-1, out.shape[-1]) if out.dim() == 3 else out
    loss = nn.functional.cross_entropy(out, torch.from_numpy(y))
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in m.named_parameters() if p.grad is not None}


def _matches_autograd(s: Any, module: Any, kwargs: dict[str, Any], y: np.ndarray) -> None:
    """The loss and every parameter's gradient within 1e-9 of autograd's, relative to the parameter's largest
    gradient floored at 1e-6 of the model's (a bias before a training-mode batch norm has a true-zero gradient: the
    batch mean takes it away, and both sides give rounding noise). The buffers' bookkeeping (`num_batches_tracked
    += 1`, new running statistics) is no step."""
    assert not s.model.unsupported_ops
    assert not [n.name for n in s.graph.ops if any("num_batches_tracked" in i.name for i in n.inputs)]
    s.run_to_end()
    loss, grads = _autograd(module, kwargs, y)
    assert float(s.backend.to_numpy(s.value(s.loss_node.name))) == pytest.approx(loss, rel=1e-10)
    params = s.parameters_numpy()
    largest = max(float(np.abs(g).max()) for g in grads.values())
    for name, want in grads.items():
        if name not in params:  # a tied weight, read under the name torch.export keeps (lm_head.weight)
            continue
        error = float(np.abs(s.backend.to_numpy(s.grad(name)) - want).max())
        assert error <= 1e-9 * max(float(np.abs(want).max()), 1e-6 * largest), name


@pytest.mark.skipif(not zoo.has_torchvision(), reason="torchvision is not installed")
@pytest.mark.parametrize("backend", BACKENDS)
def test_resnet18_in_training_mode_gives_autograds_gradients(backend: str) -> None:
    """Batch norm on the batch's statistics in every block; the trace updates no running statistic."""
    torch.manual_seed(0)
    module = zoo._jitter(zoo.torchvision_models().resnet18(num_classes=10)).double().train()
    images, y = torch.from_numpy(zoo._images(BATCH)), zoo._labels(BATCH, 10)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    s = propscope.open_session(module, inputs=images, data={"y": y}, loss="cross_entropy", dtype="float64",
                               backend=backend)
    assert "(training mode)" in s.model.description
    _matches_autograd(s, module, {"x": images}, y)
    assert module.training and all(torch.equal(v, before[k]) for k, v in module.state_dict().items())


def _gpt2() -> Any:
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2, attn_implementation="eager",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return zoo._jitter(GPT2LMHeadModel(config)).double().train()


@pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is not installed")
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_transformers_model_in_training_mode_gives_autograds_gradients(backend: str) -> None:
    module = _gpt2()
    ids = torch.from_numpy(zoo._tokens(40))
    s = propscope.open_session(module, inputs={"input_ids": ids}, data={"y": zoo._labels(16, 40)},
                               loss="cross_entropy", dtype="float64", backend=backend)
    _matches_autograd(s, module, {"input_ids": ids}, zoo._labels(16, 40))


class _Decomposable(nn.Module):
    """Batch norm in 2-D and 1-D, dropout in place and not, as a training loop's small model has them."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
        self.drop_in_place, self.fc1 = nn.Dropout(p, inplace=True), nn.Linear(4 * 6 * 6, 8)
        self.bn1d, self.drop, self.fc2 = nn.BatchNorm1d(8), nn.Dropout(p), nn.Linear(8, 3)

    def forward(self, x: Any) -> Any:
        h = self.drop_in_place(torch.relu(self.bn(self.conv(x))).flatten(1))
        return self.fc2(self.drop(torch.relu(self.bn1d(self.fc1(h)))))


def test_a_decomposed_training_program_reads_batch_norm_and_dropout() -> None:
    """`run_decompositions()` of a training-mode program (what a saved training checkpoint's program often is):
    `_native_batch_norm_legit_functional` with its running statistics as buffer mutations, `native_dropout`, and an
    in-place dropout as `empty_permuted` + `bernoulli`. At p = 0 it is autograd's to 1e-9; at p = 0.5 it steps."""
    torch.manual_seed(0)
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = np.array([0, 1, 2, 0, 1, 2])
    module = _Decomposable(0.0).double().train()
    s = propscope.open_session(_decomposed(module, x), data={"y": y}, loss="cross_entropy", dtype="float64")
    _matches_autograd(s, module, {"x": x}, y)
    dropping = _Decomposable(0.5).double().train()
    decomposed = _decomposed(dropping, x)
    assert {"aten._native_batch_norm_legit_functional.default", "aten.native_dropout.default",
            "aten.empty_permuted.default", "aten.bernoulli.p"} <= {str(n.target) for n in decomposed.graph.nodes}
    for program in (torch.export.export(dropping, (x,)), decomposed):
        s = propscope.open_session(program, data={"y": y}, loss="cross_entropy", dtype="float64")
        assert not s.model.unsupported_ops
        s.run_to_end()
        assert np.isfinite(float(s.backend.to_numpy(s.value(s.loss_node.name))))
        assert compare_backends(s, get_backend("torch", "float64")).passed


class _Residual(nn.Module):
    """x + drop(fc(x)) with the drop as torchvision's StochasticDepth or as transformers' drop path computes it
    (`floor(keep + rand(N, 1))`)."""

    def __init__(self, kind: str, p: float) -> None:
        super().__init__()
        self.fc, self.kind, self.p = nn.Linear(6, 6), kind, p
        self.stochastic_depth = _stochastic_depth(p) if kind == "torchvision" else None

    def forward(self, x: Any) -> Any:
        branch = self.fc(x)
        if self.kind == "torchvision":
            return x + self.stochastic_depth(branch)
        keep = 1.0 - self.p
        survives = (keep + torch.rand((x.shape[0], 1), dtype=x.dtype, device=x.device)).floor_()
        return x + branch.div(keep) * survives


def _stochastic_depth(p: float) -> Any:
    zoo.torchvision_models()  # torchvision's models and ops, without its C extension where that does not load
    from torchvision.ops import StochasticDepth

    return StochasticDepth(p, "row")


def _opened(module: Any, x: Any, decomposed: bool) -> Any:
    target = _decomposed(module, x) if decomposed else module
    s = propscope.open_session(target, inputs=None if decomposed else x, dtype="float64", loss="none")
    assert not s.model.unsupported_ops
    s.run_to_end()
    return s


def _output(s: Any) -> np.ndarray:
    return np.asarray(s.backend.to_numpy(s.value(s.graph.outputs[0].name)))


@pytest.mark.parametrize("decomposed", [False, True], ids=["as_is", "decomposed"])
@pytest.mark.parametrize("kind", [
    pytest.param("torchvision", marks=pytest.mark.skipif(not zoo.has_torchvision(), reason="no torchvision")),
    "drop_path"])
def test_stochastic_depth_keeps_or_drops_each_samples_branch(kind: str, decomposed: bool) -> None:
    torch.manual_seed(0)
    module = _Residual(kind, 0.5).double().train()
    x = torch.randn(16, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = _output(_opened(module, x, decomposed))
    with torch.no_grad():
        dropped, kept = x.numpy(), (x + module.fc(x) / 0.5).numpy()
    is_kept = np.all(np.isclose(out, kept, rtol=1e-12, atol=0), axis=1)
    is_dropped = np.all(out == dropped, axis=1)
    assert np.all(is_kept ^ is_dropped)  # every sample one or the other, whole
    assert 0 < is_kept.sum() < 16  # both drawn (the seed is fixed: this draw keeps some and drops some)
    again = _opened(module, x, decomposed)
    np.testing.assert_array_equal(_output(again), out)  # drawn from the node's seed: every open the same


class _Drops(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Dropout(0.5), nn.Dropout(0.5)
        self.channels, self.alpha = nn.Dropout2d(0.5), nn.AlphaDropout(0.5)

    def forward(self, x: Any) -> Any:
        return torch.stack([self.first(x), self.second(x), self.channels(x), self.alpha(x)])


@pytest.mark.parametrize("decomposed", [False, True], ids=["as_is", "decomposed"])
def test_dropout_masks_are_drawn_per_layer_per_channel_and_alpha_dropout_sets_selus_lowest(decomposed: bool) -> None:
    x = torch.rand(4, 8, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) + 0.5  # no zeros
    first, second, channels, alpha = _output(_opened(_Drops().train(), x, decomposed))
    held = x.numpy()
    for out in (first, second):
        assert np.all((out == 0) | np.isclose(out, 2 * held, rtol=1e-15))
    assert np.any(first != second)  # two layers of one shape, two masks (one seed each)
    zeroed = np.all(channels == 0, axis=(2, 3))
    assert np.all(zeroed | np.all(np.isclose(channels, 2 * held, rtol=1e-15), axis=(2, 3)))  # a channel whole
    assert 0 < zeroed.sum() < zeroed.size
    selu_alpha = 1.7580993408473766  # torch's AlphaDropout: a = 1/√((α²p + 1)(1 − p)), kept a·x + αap
    a = 1.0 / np.sqrt((selu_alpha**2 * 0.5 + 1) * 0.5)
    dropped = np.isclose(alpha, selu_alpha * a * (0.5 - 1), rtol=1e-12)
    assert np.all(dropped | np.isclose(alpha, a * held + selu_alpha * a * 0.5, rtol=1e-12))
    assert 0 < dropped.sum() < dropped.size


class _Reparameterised(nn.Module):
    """A VAE's sampling step: z = μ + ε · exp(log σ² / 2) with ε = randn_like(μ)."""

    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Linear(4, 2 * 64)

    def forward(self, x: Any) -> Any:
        mu, log_var = self.encode(x).chunk(2, dim=-1)
        return torch.stack([mu + torch.randn_like(mu) * torch.exp(0.5 * log_var), mu, log_var])


def test_a_vaes_noise_is_drawn_once_and_the_gradients_flow_around_it() -> None:
    torch.manual_seed(0)
    module = _Reparameterised().double()
    x = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    s = _opened(module, x, decomposed=False)
    z, mu, log_var = _output(s)
    noise = (z - mu) / np.exp(0.5 * log_var)
    assert abs(noise.mean()) < 0.2 and 0.8 < noise.std() < 1.2  # standard normal (192 draws, the seed fixed)
    np.testing.assert_array_equal(_output(_opened(module, x, decomposed=False))[0], z)
    assert compare_backends(s, get_backend("torch", "float64")).passed

"""Mixtures of experts as transformers builds them (Mixtral here; Qwen-MoE, OLMoE and the rest share its experts
code): the tokens sorted by expert (argsort), each row's token found as position // top-k, the tokens per expert
counted (histc) and summed into offsets, each expert's matrices applied to its rows (transformers' grouped_mm).

Built by transformers' own constructor with random weights (nothing downloaded), opened from the live module and
from a `.pt2` saved by torch.export, stepped on both backends, and checked against torch autograd of the module in
float64. transformers computes RMSNorm and the router's softmax in float32 even inside a float64 model (float32
islands, which propscope computes in the session's dtype and says so): the reference runs the module with those
casts kept in float64, so both sides compute the same function and agree to the last digits.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.debugger.grad_flow import gradient_flow

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch,
              pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is not installed")]

VOCAB, EXPERTS = 48, 4


def _float64_islands() -> Any:
    """A torch function mode under which casts to float32 (`.float()`, `.to(torch.float32)`, `dtype=torch.float`)
    go to float64 instead."""
    from torch.overrides import TorchFunctionMode

    class Float64Islands(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = {k: torch.float64 if v is torch.float32 else v for k, v in (kwargs or {}).items()}
            args = tuple(torch.float64 if a is torch.float32 else a for a in args)
            if func is torch.Tensor.float:
                return args[0].double()
            return func(*args, **kwargs)

    return Float64Islands()


def _mixtral(layers: int = 2) -> Any:
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    config = MixtralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=layers,
                           num_attention_heads=4, num_key_value_heads=2, num_local_experts=EXPERTS,
                           num_experts_per_tok=2, max_position_embeddings=32)
    return MixtralForCausalLM(config).eval()


def _tokens() -> np.ndarray:
    return np.random.default_rng(3).integers(0, VOCAB, (2, 8))


def _reference(model: Any, ids: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    m = copy.deepcopy(model).double()
    m.set_experts_implementation("batched_mm")  # torch's own grouped product takes no float64; the same sums
    with _float64_islands():
        logits = m(torch.from_numpy(ids)).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(ids).reshape(-1))
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in m.named_parameters() if p.grad is not None}


def _assert_matches(s: Any, loss: float, grads: dict[str, np.ndarray]) -> None:
    s.run_to_end()
    assert float(s.backend.to_numpy(s.value(s.loss_node.name))) == pytest.approx(loss, rel=1e-12)
    assert any(".experts." in k for k in grads)
    for name, want in grads.items():
        got = s.grad(name)
        assert got is not None, name
        assert zoo.relative(s.backend.to_numpy(got), want) < 1e-10, name


def _session(target: Any, ids: np.ndarray, backend: str = "numpy", **kw: Any) -> Any:
    return open_session(target, dtype="float64", backend=backend, loss="cross_entropy",
                        data={"input_ids": ids, "y": ids}, **kw)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_mixtral_steps_with_autograds_gradients(backend: str) -> None:
    model, ids = _mixtral(), _tokens()
    s = _session(model, ids, backend, inputs=torch.from_numpy(ids))
    assert not s.model.unsupported_ops
    ops = {n.op.name for n in s.graph.nodes}
    assert {"grouped_mm", "histc", "argsort"} <= ops
    _assert_matches(s, *_reference(model, ids))


def test_a_saved_mixtral_opens_from_its_pt2(tmp_path: Any) -> None:
    """The file holds transformers' grouped_mm as a custom op: it is read as the catalog's, no transformers needed
    to read it."""
    model, ids = _mixtral(layers=1), _tokens()
    model.config.use_cache = False  # as one exports a language model to read it: no key/value cache in the outputs
    program = torch.export.export(model, (torch.from_numpy(ids),), strict=False)
    torch.export.save(program, str(tmp_path / "mixtral.pt2"))
    s = _session(tmp_path / "mixtral.pt2", ids)
    assert not s.model.unsupported_ops and any(n.op.name == "grouped_mm" for n in s.graph.nodes)
    _assert_matches(s, *_reference(model, ids))


def test_router_collapse_leaves_the_unchosen_experts_without_gradient() -> None:
    """Router collapse, as an engineer meets it: a router that scores every expert alike sends every token to the
    same top-k experts; the others learn nothing. Their slices of the experts' weights have a zero gradient, as in
    torch (ties broken where torch's top-k breaks them), and the chosen ones do not."""
    model, ids = _mixtral(layers=1), _tokens()
    with torch.no_grad():
        model.model.layers[0].mlp.gate.weight.zero_()
    s = _session(model, ids, inputs=torch.from_numpy(ids))
    _assert_matches(s, *_reference(model, ids))
    down = np.asarray(s.backend.to_numpy(s.grad("model.layers.0.mlp.experts.down_proj")))
    chosen = [e for e in range(EXPERTS) if down[e].any()]
    assert len(chosen) == model.config.num_experts_per_tok
    flow = gradient_flow(s)  # gradient health names the idle experts, on the rows and in the summary
    idle = ", ".join(str(e) for e in range(EXPERTS) if e not in chosen)
    row = next(r for r in flow.rows if r.name == "model.layers.0.mlp.experts.down_proj")
    assert f"2 of {EXPERTS} experts got no token in this batch (experts {idle})" in row.flag
    assert "model.layers.0.mlp.experts (2 of 4 experts)" in flow.summary()


def test_a_router_that_spreads_its_tokens_leaves_no_expert_idle() -> None:
    model, ids = _mixtral(layers=1), _tokens()
    flow = gradient_flow(_session(model, ids, inputs=torch.from_numpy(ids)))
    assert not any("experts got no token" in r.flag for r in flow.rows) and "no token" not in flow.summary()


def test_deepseek_v3_routes_by_group_as_torch() -> None:
    """DeepSeek-V3's router: sigmoid scores with a correction bias, the experts in groups, the top groups marked by
    a scatter at the positions its top-k computed, the experts outside them masked, then the top experts."""
    zoo.torchvision_models()
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    torch.manual_seed(0)
    config = DeepseekV3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, moe_intermediate_size=24,
                              num_hidden_layers=2, first_k_dense_replace=1, num_attention_heads=4,
                              num_key_value_heads=4, n_routed_experts=EXPERTS, num_experts_per_tok=2, n_group=2,
                              topk_group=1, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8,
                              v_head_dim=8, max_position_embeddings=32)
    model, ids = DeepseekV3ForCausalLM(config).eval(), _tokens()
    s = _session(model, ids, inputs=torch.from_numpy(ids))
    assert not s.model.unsupported_ops and any(n.meta.get("original_op") == "scatter" or n.op.name == "index_put"
                                               for n in s.graph.nodes)
    _assert_matches(s, *_reference(model, ids))


class _Scatters(torch.nn.Module):  # type: ignore[misc]
    """The scatters a router writes, at positions its own top-k computed: a mask (value), a sum (scatter_add of
    computed values), an overwrite by a computed source; index_add at rows a truncating division of computed
    positions picks (JetMoE gathers its experts' outputs so); a clamp by computed bounds (PhiMoE's sparse mixer)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(6, 5)

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        top = torch.topk(h, 2, dim=-1).indices
        mask = torch.zeros_like(h).scatter(1, top, 1.0)
        summed = torch.zeros_like(h).scatter_add(1, top, torch.tanh(h[:, :2]))
        written = h.scatter(1, top, h[:, 3:] * 2.0)
        rows = torch.div(torch.argsort(h[:, 0]) - 1, 2, rounding_mode="trunc")  # −1 → 0 (a floor would give −1)
        added = torch.zeros_like(h).index_add(0, rows, torch.sin(h), alpha=0.5)  # repeated rows add up
        identity = torch.eye(5, dtype=h.dtype) * 0.5  # a constant (Lara's chunked linear attention adds one)
        clamped = h.clamp(min=h[:, :1], max=torch.tanh(h) + 0.5)  # tensor bounds (PhiMoE); column 0 ties its bound
        return (h * mask + summed * written + added + clamped).sum(-1, keepdim=True) * (h @ identity)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_scatters_at_computed_positions_match_autograd(backend: str) -> None:
    """Values and every parameter's gradient of L = Σ prediction · u, through mse against y = prediction − u·n/2
    (whose gradient at the prediction is u), against torch autograd of the module."""
    torch.manual_seed(1)
    model = _Scatters().double().eval()
    x = np.random.default_rng(0).standard_normal((4, 6))
    want = model(torch.from_numpy(x))
    upstream = np.random.default_rng(1).standard_normal(tuple(want.shape))
    grads = torch.autograd.grad(want, list(model.parameters()), torch.from_numpy(upstream))
    y = want.detach().numpy() - upstream * want.numel() / 2
    s = open_session(model, inputs=torch.from_numpy(x), dtype="float64", backend=backend, loss="mse",
                     data={"x": x, "y": y})
    assert not s.model.unsupported_ops
    s.run_to_end()
    np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), want.detach().numpy(), rtol=1e-13)
    for (name, _), g in zip(model.named_parameters(), grads, strict=True):
        assert zoo.relative(s.backend.to_numpy(s.grad(name)), g.numpy()) < 1e-12, name


def test_llama4_experts_and_complex_rotations_as_torch() -> None:
    """Llama 4's text model: a shared expert beside routed ones, rotary positions written with complex numbers
    (polar, view_as_complex, a complex product, view_as_real: see test_complex_rotary.py)."""
    zoo.torchvision_models()
    from transformers import Llama4ForCausalLM, Llama4TextConfig

    torch.manual_seed(0)
    config = Llama4TextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, intermediate_size_mlp=48,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, head_dim=8,
                              num_local_experts=EXPERTS, num_experts_per_tok=1, max_position_embeddings=32,
                              pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model, ids = Llama4ForCausalLM(config).eval(), _tokens()
    s = _session(model, ids, inputs=torch.from_numpy(ids))
    assert not s.model.unsupported_ops
    _assert_matches(s, *_reference(model, ids))

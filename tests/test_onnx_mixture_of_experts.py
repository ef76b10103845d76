"""Mixtures of experts exported to ONNX, opened and stepped: Mixtral, Qwen3-MoE and DeepSeek-V3 (experts in groups, its
router marking the top groups by a scatter at the positions its top-k computed) built by transformers' constructors
with tiny configs, exported by both of torch's exporters with `set_experts_implementation("batched_mm")`.

What torch itself refuses (not propscope): transformers' default grouped_mm experts (no ONNX function for
`transformers.grouped_mm_fallback` in the dynamo exporter; `aten::histc` in the TorchScript one), the eager experts
with dynamo (a loop over the experts a batch hit: data-dependent), Llama 4 and complex rotary embeddings (complex
tensors: `aten::polar`, `view_as_complex`, complex `unsqueeze`). The TorchScript exporter also refuses the packed-
sequence check transformers runs when no attention mask is given (`aten::diff`), so the export passes a mask of ones.

Both exporters fold the rotary angles, computed in a float32 island, to float32 constants (and RMSNorm's eps to a
float32 1e-5): the file's numbers differ from the module's float64 run by that rounding, about 1e-7 relative in the
gradients; hence ROUNDED. The loss agrees to 1e-10. The reference is autograd of the module in float64 with its
float32 islands kept in float64, as in test_mixture_of_experts.py.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytestmark = [pytest.mark.torch,
              pytest.mark.skipif(not zoo.has_transformers(), reason="transformers is not installed")]

VOCAB, EXPERTS = 48, 4
ROUNDED = 1e-6  # the exporters' float32 rotary angles (measured up to 1.2e-7)


def _model(name: str) -> Any:
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    import transformers as tr

    torch.manual_seed(0)
    if name == "mixtral":
        model = tr.MixtralForCausalLM(tr.MixtralConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=40, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2, num_local_experts=EXPERTS, num_experts_per_tok=2, max_position_embeddings=32))
    elif name == "qwen3_moe":
        model = tr.Qwen3MoeForCausalLM(tr.Qwen3MoeConfig(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=40, moe_intermediate_size=24, num_hidden_layers=1,
            num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_experts=EXPERTS, num_experts_per_tok=2,
            max_position_embeddings=32))
    else:
        model = tr.DeepseekV3ForCausalLM(tr.DeepseekV3Config(
            vocab_size=VOCAB, hidden_size=32, intermediate_size=48, moe_intermediate_size=24, num_hidden_layers=2,
            first_k_dense_replace=1, num_attention_heads=4, num_key_value_heads=4, n_routed_experts=EXPERTS,
            num_experts_per_tok=2, n_group=2, topk_group=1, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8,
            qk_nope_head_dim=8, v_head_dim=8, max_position_embeddings=32))
    model.config.use_cache = False  # no key/value cache in the outputs
    model.set_experts_implementation("batched_mm")
    # off their initial values: the dynamo exporter stores equal initializers (every RMSNorm's ones) once
    return zoo._jitter(model).double().eval()


class _Logits(torch.nn.Module):  # type: ignore[misc]
    """The model's logits, given an attention mask of ones (see the module's docstring)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.m = model

    def forward(self, ids: Any) -> Any:
        return self.m(ids, attention_mask=torch.ones_like(ids)).logits


def _tokens() -> np.ndarray:
    return np.random.default_rng(3).integers(0, VOCAB, (2, 8))


def _reference(model: Any, ids: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    from test_mixture_of_experts import _float64_islands

    m = copy.deepcopy(model)
    with _float64_islands():
        logits = m(torch.from_numpy(ids)).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), torch.from_numpy(ids).reshape(-1))
    loss.backward()
    return float(loss.detach()), {k: p.grad.numpy() for k, p in m.named_parameters() if p.grad is not None}


def _folded_from(path: Path) -> dict[str, str]:
    """Each initializer the dynamo exporter's optimizer folded from one value alone (a Linear's weight transposed,
    the experts' weights): that value, by initializer."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {vi.name: names[0] for vi in proto.graph.value_info for e in vi.metadata_props
            if e.key == "pkg.onnxscript.optimizer.folded_from" and len(names := re.findall(r"'([^']*)'", e.value)) == 1}


def _parameters(s: Any, path: Path) -> dict[str, tuple[Any, bool]]:
    """The session's parameter leaves by the module's parameter name, each with whether the file stores it
    transposed (`.T`, a Linear's weight as a MatMul's (in, out) matrix)."""
    folded = _folded_from(path)
    out = {}
    for n in s.graph.nodes:
        if n.op.name != "parameter":
            continue
        name = folded.get(str(n.meta.get("file_name", n.name)), n.name) if n.name == n.meta.get("file_name", n.name) \
            else n.name
        transposed = name.endswith(".T")
        out[name.removesuffix(".T").removeprefix("m.")] = (n, transposed)
    return out


def _unrecorded(params: dict[str, tuple[Any, bool]], model: Any, s: Any) -> dict[str, tuple[Any, bool]]:
    """`params` with a leaf named after no parameter renamed to the parameter it equals: DeepSeek-V3's router casts
    its weight to float32, and the dynamo exporter stores that cast's result as `to_copy_22`, with no record of what
    it was folded from."""
    weights = {k: p.detach().numpy() for k, p in model.named_parameters()}
    out = {}
    for key, (node, transposed) in params.items():
        if key not in weights:
            value = np.asarray(s.backend.to_numpy(s.value(node.name)))
            key = next((k for k, w in weights.items() if k not in params and w.shape == value.shape
                        and np.array_equal(w, value)), key)
        out[key] = (node, transposed)
    return out


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe", "deepseek_v3"])
def test_exported_experts_step_with_autograds_gradients(name: str, exporter: str, tmp_path: Path) -> None:
    model, ids = _model(name), _tokens()
    path = zoo.export_onnx(_Logits(model), (ids,), tmp_path / f"{name}.{exporter}.onnx", exporter == "dynamo",
                           input_names=["input_ids"])
    loss, grads = _reference(model, ids)
    buffers = {k for k, _ in model.named_buffers()}
    for backend in ("numpy", "torch"):
        s = open_session(path, dtype="float64", backend=backend, data={"input_ids": ids, "y": ids},
                         loss="cross_entropy")
        assert not s.model.unsupported_ops
        if name == "deepseek_v3":  # the top groups marked at the positions the router's top-k computed
            assert any(n.meta.get("original_op") == "ScatterElements" and n.op.name == "index_put"
                       for n in s.graph.nodes)
        s.run_to_end()
        got = float(s.backend.to_numpy(s.value(s.loss_node.name)))
        assert got == pytest.approx(loss, rel=1e-10), backend
        params = _unrecorded(_parameters(s, path), model, s)
        # nothing else is a parameter: the rotary cosines the dynamo exporter folded from a buffer are constants
        assert set(params) <= set(grads) | buffers, sorted(set(params) - set(grads) - buffers)
        assert any(".experts." in k for k in params)
        for key, want in grads.items():
            node, transposed = params[key]
            g = np.asarray(s.backend.to_numpy(s.grad(node.name)))
            assert zoo.relative(g.T if transposed else g, want) < ROUNDED, f"{backend}: {key}"

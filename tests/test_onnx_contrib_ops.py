"""onnxruntime's com.microsoft contrib ops: the fusions `onnxruntime.transformers.optimizer.optimize_model` and its
session optimizer write (SkipLayerNormalization, BiasGelu, FastGelu, Attention, ...), read as catalog ops.

- One-node files made with onnx.helper per op: the forward pass equals onnxruntime's (float32), the NumPy backend's
  gradients equal torch autograd of the op written in torch from ContribOperators.md (float64), and a central
  difference along a random direction.
- End to end: tiny BERT, ViT and GPT-2 (random weights) exported and optimized as engineers do: they open without an
  unsupported op, match onnxruntime on the optimized file and torch on the original model, their weight gradients
  match autograd of the transformers model, and stepping reaches the end.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
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
pytestmark = pytest.mark.torch

MS = "com.microsoft"


def _unsupported(graph: Any) -> list[str]:
    return [f"{n.meta.get('original_op')}: {n.meta.get('reason')}" for n in graph if n.op.name == "unsupported"]


# -- one-node files ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OneNode:
    op: str
    inputs: dict[str, np.ndarray]  # graph inputs in node order ("" entries: an absent optional input)
    torch_fn: Callable[..., Any]  # the float inputs as float64 tensors (in `inputs` order) -> the output
    attrs: dict[str, Any] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)  # initializers (not differentiated)
    order: tuple[str, ...] = ()  # the node's inputs, "" for an absent one (default: inputs then constants)
    domain: str = MS
    output: int = 0  # which of the node's outputs the file returns
    catalog: frozenset[str] = frozenset()  # catalog ops the reader must have made of it
    declared: tuple[int, ...] | None = None  # the output's shape, where the file declares it
    integer: bool = False  # the output is int32 (EmbedLayerNormalization's mask_index)
    cpu: bool = True  # onnxruntime's CPU build runs it (else the forward is checked against the torch reference)


def _rng(seed: int, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _file(case: OneNode, path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    types = {np.dtype("float32"): TensorProto.FLOAT, np.dtype("int32"): TensorProto.INT32,
             np.dtype("int64"): TensorProto.INT64}
    inputs = [helper.make_tensor_value_info(k, types[v.dtype], list(v.shape)) for k, v in case.inputs.items()]
    inits = [numpy_helper.from_array(v, k) for k, v in case.constants.items()]
    outs = [f"y{i}" if i in (0, case.output) else "" for i in range(case.output + 1)]
    node = helper.make_node(case.op, list(case.order or (*case.inputs, *case.constants)), outs, domain=case.domain,
                            **case.attrs)
    kind = TensorProto.INT32 if case.integer else TensorProto.FLOAT
    declared = None if case.declared is None else list(case.declared)
    graph = helper.make_graph([node], case.op, inputs, [helper.make_tensor_value_info(outs[-1], kind, declared)],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    onnx.save(model, str(path))
    return path


def _layer_norm(x: Any, gamma: Any, beta: Any, eps: float) -> Any:
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps)


def _rms(x: Any, gamma: Any, eps: float) -> Any:
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * gamma


def _heads(x: Any, n: int) -> Any:
    b, s, h = x.shape
    return x.reshape(b, s, n, h // n).transpose(1, 2)


def _attention(x: Any, w: Any, bias: Any, heads: int, sizes: tuple[int, int, int], mask: np.ndarray | None = None,
               causal: bool = False, scale: float | None = None, fill: float = -10000.0) -> Any:
    """com.microsoft.Attention as ContribOperators.md defines it, in torch (mask: the additive key mask)."""
    qkv = x @ w + bias
    q, k, v = (_heads(t, heads) for t in qkv.split(list(sizes), dim=-1))
    scores = q @ k.transpose(-1, -2) * (scale if scale is not None else (sizes[0] // heads) ** -0.5)
    if causal:
        scores = scores + torch.triu(torch.full(scores.shape[-2:], fill, dtype=scores.dtype), diagonal=1)
    if mask is not None:
        scores = scores + torch.from_numpy(mask)
    out = scores.softmax(-1) @ v
    return out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)


def _lengths_mask(lengths: list[int], keys: int, fill: float = -10000.0) -> np.ndarray:
    seen = np.arange(keys)[None, :] < np.asarray(lengths)[:, None]
    return np.where(seen, 0.0, fill).reshape(len(lengths), 1, 1, keys)


def _rotary(x: Any, ids: np.ndarray, cos: np.ndarray, sin: np.ndarray, heads: int, interleaved: bool) -> Any:
    """com.microsoft.RotaryEmbedding of a (B, S, N·h) input: each pair of features turned by its position's angle."""
    b, s, hidden = x.shape
    t = x.reshape(b, s, heads, hidden // heads)
    c = torch.from_numpy(cos.astype(np.float64)[ids])[:, :, None, :]
    sn = torch.from_numpy(sin.astype(np.float64)[ids])[:, :, None, :]
    x1, x2 = (t[..., 0::2], t[..., 1::2]) if interleaved else t.chunk(2, dim=-1)
    real, imag = x1 * c - x2 * sn, x1 * sn + x2 * c
    turned = torch.stack([real, imag], dim=-1).flatten(-2) if interleaved else torch.cat([real, imag], dim=-1)
    return turned.reshape(b, s, hidden)


def _mha(q: Any, k: Any, v: Any, heads: int, bias: Any = None, mask: np.ndarray | None = None, attn_bias: Any = None,
         causal: bool = False, scale: float | None = None) -> Any:
    """com.microsoft.MultiHeadAttention of separate (B, S, D) projections, in torch (mask: the additive key mask)."""
    if bias is not None:
        d, dv = q.shape[-1], v.shape[-1]
        q, k, v = q + bias[:d], k + bias[d:2 * d], v + bias[2 * d:2 * d + dv]
    qh, kh, vh = _heads(q, heads), _heads(k, heads), _heads(v, heads)
    scores = qh @ kh.transpose(-1, -2) * (scale if scale is not None else qh.shape[-1] ** -0.5)
    if causal:
        scores = scores + torch.triu(torch.full(scores.shape[-2:], -10000.0, dtype=scores.dtype), diagonal=1)
    if mask is not None:
        scores = scores + torch.from_numpy(mask)
    if attn_bias is not None:
        scores = scores + attn_bias
    out = scores.softmax(-1) @ vh
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)


def _by_token(x: Any) -> Any:
    """(B, N, L, h) as (B, L, N·h)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


def _packed(x: Any, index: int) -> Any:
    """Part `index` of a packed (B, L, N, parts, h) tensor as (B, L, N·h)."""
    return x[:, :, :, index].reshape(x.shape[0], x.shape[1], -1)


def _group_norm_nhwc(x: Any, gamma: Any, beta: Any, groups: int, silu: bool, eps: float = 1e-5) -> Any:
    y = F.group_norm(x.permute(0, 3, 1, 2), groups, gamma, beta, eps)
    return (F.silu(y) if silu else y).permute(0, 2, 3, 1)


_MHA_MASK = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=np.int32)


_ANGLES = np.arange(8)[:, None] * (1.0 / 10000 ** (np.arange(4) / 4))[None, :]
_COS, _SIN = np.cos(_ANGLES).astype(np.float32), np.sin(_ANGLES).astype(np.float32)
_IDS = np.array([[0, 1, 2, 3], [2, 3, 4, 5]], dtype=np.int64)
_MASK = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=np.int32)
_FUSED_CONV = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}

CASES: dict[str, OneNode] = {
    "skip_layer_norm": OneNode(
        "SkipLayerNormalization",
        {"x": _rng(1, 2, 3, 8), "skip": _rng(2, 2, 3, 8), "gamma": _rng(3, 8), "beta": _rng(4, 8), "bias": _rng(5, 8)},
        lambda x, s, g, be, bi: _layer_norm(x + s + bi, g, be, 1e-12), catalog=frozenset({"layer_norm"})),
    "skip_layer_norm_eps_2d_skip": OneNode(
        "SkipLayerNormalization", {"x": _rng(6, 2, 3, 8), "skip": _rng(7, 3, 8), "gamma": _rng(8, 8)},
        lambda x, s, g: _layer_norm(x + s, g, None, 1e-3), {"epsilon": 1e-3}),
    "skip_layer_norm_sum_output": OneNode(
        "SkipLayerNormalization",
        {"x": _rng(9, 2, 3, 8), "skip": _rng(10, 2, 3, 8), "gamma": _rng(11, 8), "beta": _rng(12, 8),
         "bias": _rng(13, 8)}, lambda x, s, g, be, bi: x + s + bi, output=3),
    "skip_simplified_layer_norm": OneNode(
        "SkipSimplifiedLayerNormalization",
        {"x": _rng(14, 2, 3, 8), "skip": _rng(15, 2, 3, 8), "gamma": _rng(16, 8), "bias": _rng(17, 8)},
        lambda x, s, g, bi: _rms(x + s + bi, g, 1e-12), catalog=frozenset({"rms_norm"})),
    "simplified_layer_norm": OneNode(
        "SimplifiedLayerNormalization", {"x": _rng(18, 2, 3, 8), "scale": _rng(19, 8)},
        lambda x, g: _rms(x, g, 1e-5), domain="", catalog=frozenset({"rms_norm"})),
    "bias_gelu": OneNode("BiasGelu", {"a": _rng(20, 2, 3, 8), "b": _rng(21, 8)}, lambda a, b: F.gelu(a + b),
                         catalog=frozenset({"gelu"})),
    "fast_gelu": OneNode("FastGelu", {"x": _rng(22, 2, 3, 8, scale=2.0), "bias": _rng(23, 8)},
                         lambda x, b: F.gelu(x + b, approximate="tanh")),
    "fast_gelu_no_bias": OneNode("FastGelu", {"x": _rng(24, 2, 3, 8, scale=2.0)},
                                 lambda x: F.gelu(x, approximate="tanh")),
    "gelu": OneNode("Gelu", {"x": _rng(25, 2, 3, 8, scale=2.0)}, lambda x: F.gelu(x)),
    "quick_gelu": OneNode("QuickGelu", {"x": _rng(26, 2, 3, 8, scale=2.0)}, lambda x: x * torch.sigmoid(1.702 * x),
                          catalog=frozenset({"silu"})),
    "quick_gelu_alpha": OneNode("QuickGelu", {"x": _rng(27, 2, 3, 8, scale=2.0)},
                                lambda x: x * torch.sigmoid(1.25 * x), {"alpha": 1.25}),
    "fused_matmul": OneNode("FusedMatMul", {"a": _rng(28, 2, 3, 4), "b": _rng(29, 2, 5, 4)},
                            lambda a, b: 0.5 * a @ b.transpose(-1, -2), {"alpha": 0.5, "transB": 1}),
    "fused_matmul_trans_a": OneNode("FusedMatMul", {"a": _rng(30, 4, 3), "b": _rng(31, 4, 5)},
                                    lambda a, b: a.T @ b, {"transA": 1}),
    "fused_conv_relu": OneNode(
        "FusedConv", {"x": _rng(32, 1, 2, 5, 5), "w": _rng(33, 3, 2, 3, 3), "b": _rng(34, 3)},
        lambda x, w, b: F.relu(F.conv2d(x, w, b, padding=1)), {"activation": "Relu", **_FUSED_CONV}),
    "fused_conv_sum_leaky_relu": OneNode(
        "FusedConv", {"x": _rng(35, 1, 2, 5, 5), "w": _rng(36, 3, 2, 3, 3), "b": _rng(37, 3),
                      "z": _rng(38, 1, 3, 5, 5)},
        lambda x, w, b, z: F.leaky_relu(F.conv2d(x, w, b, padding=1) + z, 0.2),
        {"activation": "LeakyRelu", "activation_params": [0.2], **_FUSED_CONV}),
    "fused_conv_clip": OneNode(
        "FusedConv", {"x": _rng(39, 1, 2, 5, 5), "w": _rng(40, 3, 2, 3, 3)},
        lambda x, w: F.conv2d(x, w, padding=1).clamp(-1.0, 1.5),
        {"activation": "Clip", "activation_params": [-1.0, 1.5], **_FUSED_CONV}),
    "attention": OneNode(
        "Attention", {"x": _rng(41, 2, 4, 8), "w": _rng(42, 8, 24, scale=0.5), "bias": _rng(43, 24)},
        lambda x, w, b: _attention(x, w, b, 2, (8, 8, 8)), {"num_heads": 2}, catalog=frozenset({"softmax"})),
    "attention_key_counts": OneNode(  # (B,) right padding, an input of the run
        "Attention", {"x": _rng(44, 2, 4, 8), "w": _rng(45, 8, 24, scale=0.5), "bias": _rng(46, 24),
                      "mask_index": np.array([4, 2], dtype=np.int32)},
        lambda x, w, b: _attention(x, w, b, 2, (8, 8, 8), _lengths_mask([4, 2], 4)), {"num_heads": 2}),
    "attention_raw_mask_causal_scale": OneNode(  # a (B, T) 0/1 mask the file fixes; GPT-2's unidirectional
        "Attention", {"x": _rng(47, 2, 4, 8), "w": _rng(48, 8, 24, scale=0.5), "bias": _rng(49, 24)},
        lambda x, w, b: _attention(x, w, b, 2, (8, 8, 8), np.where(_MASK > 0, 0.0, -10000.0)[:, None, None, :],
                                   causal=True, scale=0.3),
        {"num_heads": 2, "unidirectional": 1, "scale": 0.3}, constants={"mask": _MASK}),
    "attention_qkv_sizes_raw_mask_input": OneNode(
        "Attention", {"x": _rng(50, 2, 4, 8), "w": _rng(51, 8, 20, scale=0.5), "bias": _rng(52, 20),
                      "mask": _MASK},
        lambda x, w, b: _attention(x, w, b, 2, (8, 8, 4), np.where(_MASK > 0, 0.0, -10000.0)[:, None, None, :]),
        {"num_heads": 2, "qkv_hidden_sizes": [8, 8, 4]}),
    "embed_layer_norm": OneNode(
        "EmbedLayerNormalization",
        {"ids": np.array([[1, 4, 7, 2], [3, 3, 9, 0]], dtype=np.int32),
         "segments": np.array([[0, 0, 1, 1], [0, 1, 1, 1]], dtype=np.int32), "word": _rng(53, 10, 8),
         "position": _rng(54, 6, 8), "segment": _rng(55, 2, 8), "gamma": _rng(56, 8), "beta": _rng(57, 8)},
        lambda word, pos, seg, g, b: _layer_norm(word[torch.tensor([[1, 4, 7, 2], [3, 3, 9, 0]])] + pos[:4][None]
                                                 + seg[torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])], g, b, 1e-12),
        {"mask_index_type": 0}, catalog=frozenset({"embedding", "layer_norm"})),
    "rotary_3d": OneNode(
        "RotaryEmbedding", {"x": _rng(58, 2, 4, 16)}, lambda x: _rotary(x, _IDS, _COS, _SIN, 2, False),
        constants={"ids": _IDS, "cos": _COS, "sin": _SIN}, catalog=frozenset({"concat"})),
    "rotary_3d_interleaved_first_position": OneNode(
        "RotaryEmbedding", {"x": _rng(59, 2, 4, 16)},
        lambda x: _rotary(x, np.broadcast_to(np.arange(3, 7), (2, 4)), _COS, _SIN, 2, True),
        {"interleaved": 1}, constants={"ids": np.array([3], dtype=np.int64), "cos": _COS, "sin": _SIN}),
    # MultiHeadAttention (Stable Diffusion, CLIP): separate, in heads, packed (the packed forms run on GPUs only)
    "mha_cross_bias": OneNode(
        "MultiHeadAttention", {"q": _rng(65, 2, 4, 8), "k": _rng(66, 2, 5, 8), "v": _rng(67, 2, 5, 8),
                               "bias": _rng(68, 24)},
        lambda q, k, v, b: _mha(q, k, v, 2, b), {"num_heads": 2}, catalog=frozenset({"softmax"})),
    "mha_key_padding_attention_bias": OneNode(
        "MultiHeadAttention", {"q": _rng(69, 2, 4, 8), "k": _rng(70, 2, 5, 8), "v": _rng(71, 2, 5, 8),
                               "bias": _rng(72, 24), "mask": _MHA_MASK, "attention_bias": _rng(73, 1, 2, 4, 5)},
        lambda q, k, v, b, ab: _mha(q, k, v, 2, b, np.where(_MHA_MASK > 0, 0.0, -10000.0)[:, None, None, :], ab),
        {"num_heads": 2}),
    "mha_key_counts_causal_scale": OneNode(
        "MultiHeadAttention", {"q": _rng(74, 2, 4, 8), "k": _rng(75, 2, 4, 8), "v": _rng(76, 2, 4, 8),
                               "mask": np.array([4, 2], dtype=np.int32)},
        lambda q, k, v: _mha(q, k, v, 2, mask=_lengths_mask([4, 2], 4), causal=True, scale=0.3),
        {"num_heads": 2, "unidirectional": 1, "scale": 0.3}, order=("q", "k", "v", "", "mask")),
    "mha_key_mask_3d_v_size": OneNode(  # (B, S, T) raw mask; V of another width
        "MultiHeadAttention", {"q": _rng(77, 2, 4, 8), "k": _rng(78, 2, 5, 8), "v": _rng(79, 2, 5, 4),
                               "mask": np.tile(_MHA_MASK[:, None, :], (1, 4, 1))},
        lambda q, k, v: _mha(q, k, v, 2, mask=np.where(_MHA_MASK > 0, 0.0, -10000.0)[:, None, None, :]),
        {"num_heads": 2}, order=("q", "k", "v", "", "mask")),
    "mha_kv_in_heads": OneNode(  # K, V (B, N, L, h): onnxruntime adds Q's part of the bias only
        "MultiHeadAttention", {"q": _rng(80, 2, 4, 8), "k": _rng(81, 2, 2, 5, 4), "v": _rng(82, 2, 2, 5, 4),
                               "bias": _rng(83, 24)},
        lambda q, k, v, b: _mha(q + b[:8], _by_token(k), _by_token(v), 2), {"num_heads": 2}),
    "mha_packed_qkv": OneNode(
        "MultiHeadAttention", {"qkv": _rng(84, 2, 4, 2, 3, 4), "bias": _rng(85, 24)},
        lambda x, b: _mha(_packed(x, 0), _packed(x, 1), _packed(x, 2), 2, b), {"num_heads": 2},
        order=("qkv", "", "", "bias"), cpu=False),
    "mha_packed_kv": OneNode(
        "MultiHeadAttention", {"q": _rng(86, 2, 4, 8), "kv": _rng(87, 2, 5, 2, 2, 4)},
        lambda q, kv: _mha(q, _packed(kv, 0), _packed(kv, 1), 2), {"num_heads": 2}, cpu=False),
    "fused_gemm_leaky_relu": OneNode(
        "FusedGemm", {"a": _rng(88, 3, 4), "b": _rng(89, 5, 4), "c": _rng(90, 5)},
        lambda a, b, c: F.leaky_relu(a @ b.T + c, 0.1), {"activation": "LeakyRelu", "activation_alpha": 0.1,
                                                        "transB": 1}),
    "fused_gemm_hard_sigmoid": OneNode(
        "FusedGemm", {"a": _rng(91, 3, 4), "b": _rng(92, 4, 5)},
        lambda a, b: torch.clamp(0.3 * (a @ b) + 0.4, 0.0, 1.0),
        {"activation": "HardSigmoid", "activation_alpha": 0.3, "activation_beta": 0.4}),
    # the UNet's and VAE's ops: onnxruntime runs them on GPUs only (end to end in test_onnx_contrib_models.py)
    "group_norm_nhwc_silu": OneNode(
        "GroupNorm", {"x": _rng(93, 2, 3, 3, 8), "gamma": _rng(94, 8), "beta": _rng(95, 8)},
        lambda x, g, b: _group_norm_nhwc(x, g, b, 2, True), {"groups": 2, "activation": 1}, cpu=False,
        catalog=frozenset({"group_norm", "silu"})),
    "group_norm_nchw_eps": OneNode(
        "GroupNorm", {"x": _rng(96, 2, 8, 3, 3), "gamma": _rng(97, 8), "beta": _rng(98, 8)},
        lambda x, g, b: F.group_norm(x, 4, g, b, 1e-3), {"groups": 4, "activation": 0, "channels_last": 0,
                                                         "epsilon": 1e-3}, cpu=False),
    "skip_group_norm_per_channel_skip": OneNode(
        "SkipGroupNorm", {"x": _rng(99, 2, 3, 3, 8), "gamma": _rng(100, 8), "beta": _rng(101, 8),
                          "skip": _rng(102, 2, 8), "bias": _rng(103, 8)},
        lambda x, g, be, s, bi: _group_norm_nhwc(x + s[:, None, None, :] + bi, g, be, 2, True),
        {"groups": 2, "activation": 1}, cpu=False),
    "skip_group_norm_sum_output": OneNode(
        "SkipGroupNorm", {"x": _rng(104, 2, 3, 3, 8), "gamma": _rng(105, 8), "beta": _rng(106, 8),
                          "skip": _rng(107, 2, 3, 3, 8)},
        lambda x, g, be, s: x + s, {"groups": 2, "activation": 0}, output=1, cpu=False),
    "bias_split_gelu": OneNode(
        "BiasSplitGelu", {"x": _rng(108, 2, 4, 8), "bias": _rng(109, 8)},
        lambda x, b: (x + b)[..., :4] * F.gelu((x + b)[..., 4:]), cpu=False, catalog=frozenset({"gelu", "mul"})),
    "bias_add": OneNode("BiasAdd", {"x": _rng(110, 2, 4, 8), "bias": _rng(111, 8), "skip": _rng(112, 2, 4, 8)},
                        lambda x, b, s: x + b + s, cpu=False),
    "nhwc_conv": OneNode(  # weight (M, kH, kW, C), as onnxruntime's NhwcConv fusion writes it
        "NhwcConv", {"x": _rng(113, 1, 5, 6, 2), "w": _rng(114, 3, 3, 3, 2), "b": _rng(115, 3)},
        lambda x, w, b: F.conv2d(x.permute(0, 3, 1, 2), w.permute(0, 3, 1, 2), b, stride=(1, 2),
                                 padding=1).permute(0, 2, 3, 1),
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [1, 2]}, cpu=False,
        catalog=frozenset({"conv2d"})),
    "nhwc_fused_conv": OneNode(  # weight in Conv's own layout (M, C, kH, kW), as NhwcFusedConv's schema says
        "NhwcFusedConv", {"x": _rng(116, 1, 5, 6, 3), "w": _rng(117, 4, 3, 3, 3), "b": _rng(118, 4)},
        lambda x, w, b: torch.tanh(F.conv2d(x.permute(0, 3, 1, 2), w, b, padding=1)).permute(0, 2, 3, 1),
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "activation": "Tanh"}, cpu=False,
        catalog=frozenset({"conv2d", "tanh"})),
}


def _floats(case: OneNode) -> dict[str, np.ndarray]:
    return {k: v for k, v in case.inputs.items() if v.dtype.kind == "f"}


def _loss(path: Path, inputs: dict[str, np.ndarray], y: np.ndarray) -> float:
    s = open_session(path, backend="numpy", dtype="float64", data={**inputs, "y": y}, loss="mse")
    s.run_to_end()
    return float(s.backend.to_numpy(s.value(s.loss_node.name)))


@pytest.mark.parametrize("name", list(CASES))
def test_one_node_files_match_onnxruntime_autograd_and_differences(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    path = _file(case, tmp_path / f"{name}.onnx")
    model = open_model(path)
    assert not _unsupported(model.graph), _unsupported(model.graph)
    made = {n.op.name for n in model.graph.ops}
    assert case.catalog <= made, f"{name}: made {sorted(made)}"
    floats = _floats(case)
    tensors = {k: torch.from_numpy(v.astype(np.float64)).requires_grad_(True) for k, v in floats.items()}
    out = case.torch_fn(*tensors.values())
    if case.cpu:
        expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, case.inputs)[0]
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=2e-4, atol=2e-5,
                                   err_msg=f"{name}: the torch reference against onnxruntime")
    else:  # a GPU-only kernel: the torch reference, written from ContribOperators.md, stands in for it
        expected = out.detach().numpy()
    s = open_session(path, backend="numpy", dtype="float32", data=dict(case.inputs), loss="none")
    s.run_to_end()
    np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), expected, rtol=2e-4, atol=2e-5,
                               err_msg=f"{name}: forward (float32) against onnxruntime or the reference")
    y = np.random.default_rng(99).standard_normal(expected.shape)
    loss_tensor = F.mse_loss(out, torch.from_numpy(y))
    loss_tensor.backward()
    loss_tensor = loss_tensor.detach()
    data = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in case.inputs.items()}
    s = open_session(path, backend="numpy", dtype="float64", data={**data, "y": y}, loss="mse")
    s.run_to_end()
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss_tensor.item()) <= 1e-12
    rng = np.random.default_rng(7)
    for k, t in tensors.items():
        if t.grad is None:  # not on the returned output's path (the sum output ignores gamma and beta)
            continue
        grad = s.backend.to_numpy(s.grad(k))
        err = zoo.relative(grad, t.grad.numpy())
        assert err <= 1e-10, f"{name}: gradient of {k} against autograd: relative difference {err:.3g}"
        direction = rng.standard_normal(grad.shape)
        h = 1e-5
        plus = _loss(path, {**data, k: data[k] + h * direction}, y)
        minus = _loss(path, {**data, k: data[k] - h * direction}, y)
        along = float((grad * direction).sum())
        assert abs((plus - minus) / (2 * h) - along) <= 1e-6 * max(1.0, abs(along)), f"{name}: {k} differences"


def test_embed_layer_norm_mask_index_is_the_key_count_attention_reads(tmp_path: Path) -> None:
    """EmbedLayerNormalization's mask_index output as onnxruntime computes it, for a mask with a hole in it."""
    case = CASES["embed_layer_norm"]
    mask = np.array([[1, 0, 1, 1], [1, 1, 0, 0]], dtype=np.int32)
    moved = OneNode(case.op, {**case.inputs, "mask": mask}, case.torch_fn, output=1, integer=True)
    path = _file(moved, tmp_path / "mask_index.onnx")
    (expected,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, moved.inputs)
    s = open_session(path, backend="numpy", dtype="float64", data=dict(moved.inputs), loss="none")
    s.run_to_end()
    np.testing.assert_array_equal(s.backend.to_numpy(s.value(s.prediction_node.name)), expected)


@pytest.mark.parametrize(("name", "op", "attrs", "says"), [
    ("past", "Attention", {"num_heads": 2}, "Attention with past"),
    ("left_padding", "Attention", {"num_heads": 2}, "mask_index of shape (4,)"),
    ("rotary_scale", "RotaryEmbedding", {"scale": 0.5}, "RotaryEmbedding with scale 0.5"),
    ("packed", "RotaryEmbedding", {"is_packed_batching": 1}, "is_packed_batching"),
    ("batch_transpose", "FusedMatMul", {"transBatchA": 1}, "transBatchA"),
    ("no_heads", "Attention", {"num_heads": 0}, "Attention with num_heads 0 (at least 1 head)"),
])
def test_what_propscope_does_not_read_is_refused_in_one_line(name: str, op: str, attrs: dict[str, Any], says: str,
                                                             tmp_path: Path) -> None:
    if op == "Attention":
        base = CASES["attention"]
        extra = {"past": {"mask_index": np.array([4, 4], dtype=np.int32), "past": _rng(60, 2, 2, 2, 1, 4)},
                 "left_padding": {"mask_index": np.array([4, 4, 0, 1], dtype=np.int32)},
                 "no_heads": {}}[name]
        case = OneNode(op, {**base.inputs, **extra}, base.torch_fn, attrs, declared=(2, 4, 8))
    elif op == "RotaryEmbedding":
        base = CASES["rotary_3d"]
        case = OneNode(op, base.inputs, base.torch_fn, attrs, base.constants, declared=(2, 4, 16))
    else:
        case = OneNode(op, {"a": _rng(61, 2, 3, 4), "b": _rng(62, 2, 4, 5)}, lambda a, b: a @ b, attrs,
                       declared=(2, 3, 5))
    model = open_model(_file(case, tmp_path / f"{name}.onnx"))
    (placeholder,) = [n for n in model.graph if n.op.name == "unsupported"]
    assert placeholder.meta["original_op"] == f"{MS}.{op}"
    assert says in placeholder.meta["reason"], placeholder.meta["reason"]


# -- the unsupported-ops message -----------------------------------------------------------------------------------
def test_the_message_names_the_unsupported_op_not_the_ops_after_it(tmp_path: Path) -> None:
    """An op propscope refuses whose output shape the file leaves out (onnxruntime's fusions declare none) makes no
    node: the MatMul and Gemm after it become the placeholders, but the message names the refused op."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("GatedRelativePositionBias", ["x"], ["h"], domain=MS, name="fused", num_heads=1),
             helper.make_node("MatMul", ["h", "w"], ["m"], name="matmul"),
             helper.make_node("Gemm", ["m", "w2"], ["y"], name="gemm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                              initializer=[numpy_helper.from_array(_rng(63, 4, 4), "w"),
                                           numpy_helper.from_array(_rng(64, 4, 3), "w2")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)]),
              str(tmp_path / "fused.onnx"))
    message = open_model(tmp_path / "fused.onnx").warnings[0]
    assert message.startswith("1 node(s) use ops propscope does not support: com.microsoft.GatedRelativePositionBias;"
                              " 1 node(s) after them cannot be built (Gemm)"), message
    assert message.endswith("('gemm'), which lacks an output of unsupported op com.microsoft.GatedRelativePositionBias")


# -- end to end: the optimizer's output ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Optimized:
    original: Path
    optimized: Path
    model: Any  # the torch module (float32), returning logits
    inputs: dict[str, np.ndarray]


def _quiet_export(model: Any, inputs: dict[str, np.ndarray], path: Path, dynamo: bool) -> None:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            torch.onnx.export(model, tuple(torch.from_numpy(v) for v in inputs.values()), str(path), dynamo=dynamo,
                              opset_version=18 if dynamo else 17, input_names=list(inputs))
        finally:
            logging.disable(logging.NOTSET)


def _optimized(name: str, folder: Path) -> Optimized:
    """The tiny model, exported and run through onnxruntime's transformer optimizer (num_heads 4, hidden 32)."""
    pytest.importorskip("transformers")
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    import transformers
    from onnxruntime.transformers.optimizer import optimize_model

    torch.manual_seed(0)
    tokens = np.random.default_rng(3).integers(0, 40, (2, 8))
    if name == "bert":
        config = transformers.BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         intermediate_size=64, max_position_embeddings=16, num_labels=3,
                                         attn_implementation="eager")
        net, keys, kind = transformers.BertForSequenceClassification(config), \
            ("input_ids", "attention_mask", "token_type_ids"), "bert"
        mask = np.ones((2, 8), dtype=np.int64)
        mask[1, 5:] = 0
        inputs = {"input_ids": tokens, "attention_mask": mask, "token_type_ids": (np.arange(8) >= 4).astype(np.int64)
                  [None].repeat(2, 0)}
    elif name == "vit":
        config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, image_size=16, patch_size=8, num_labels=3)
        net, keys, kind = transformers.ViTForImageClassification(config), ("pixel_values",), "vit"
        inputs = {"pixel_values": np.random.default_rng(4).standard_normal((2, 3, 16, 16)).astype(np.float32)}
    else:
        config = transformers.GPT2Config(vocab_size=40, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                                         use_cache=False, attn_implementation="eager")
        net, keys, kind = transformers.GPT2LMHeadModel(config), ("input_ids",), "bert"
        inputs = {"input_ids": tokens}

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.m = net

        def forward(self, *args: Any) -> Any:
            return self.m(**dict(zip(keys, args, strict=True))).logits

    model = zoo._jitter(Logits()).eval()
    original, optimized = folder / f"{name}.onnx", folder / f"{name}_optimized.onnx"
    _quiet_export(model, inputs, original, dynamo=name == "gpt2")
    with contextlib.redirect_stdout(io.StringIO()):
        optimize_model(str(original), model_type=kind, num_heads=4, hidden_size=32,
                       opt_level=0).save_model_to_file(str(optimized))
    return Optimized(original, optimized, model, inputs)


FUSED = {"bert": {"SkipLayerNormalization", "BiasGelu", "Attention"}, "vit": {"SkipLayerNormalization", "BiasGelu"},
         "gpt2": {"SkipLayerNormalization", "FastGelu"}}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bert", "vit", "gpt2"])
def test_optimized_transformers_open_match_onnxruntime_torch_and_autograd(name: str, tmp_path: Path) -> None:
    files = _optimized(name, tmp_path)
    written = {n.op_type for n in onnx.load(str(files.optimized)).graph.node if n.domain == MS}
    assert FUSED[name] <= written, sorted(written)
    opened = open_model(files.optimized)
    assert not any("does not support" in w for w in opened.warnings), opened.warnings
    assert not _unsupported(opened.graph)
    expected = ort.InferenceSession(str(files.optimized), providers=["CPUExecutionProvider"]).run(None, files.inputs)[0]
    with torch.no_grad():
        reference = files.model(*(torch.from_numpy(v) for v in files.inputs.values())).numpy()
    # float64: the optimizer's int64 -> int32 Cast of BERT's mask is a wrap that a float32 session reads inexactly
    s = open_session(files.optimized, backend="numpy", dtype="float64", data=dict(files.inputs), loss="none")
    s.run_to_end()
    got = s.backend.to_numpy(s.value(s.prediction_node.name))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-5, err_msg=f"{name}: against onnxruntime")
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=2e-5, err_msg=f"{name}: against torch")

    # the weights' gradients against autograd of the transformers model, in float64
    double = files.model.double()
    args = [torch.from_numpy(v.astype(np.float64) if v.dtype.kind == "f" else v) for v in files.inputs.values()]
    logits = double(*args)
    y = np.random.default_rng(5).standard_normal(tuple(logits.shape))
    F.mse_loss(logits, torch.from_numpy(y)).backward()
    data = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in files.inputs.items()}
    s = open_session(files.optimized, backend="numpy", dtype="float64", data={**data, "y": y}, loss="mse")
    s.seek(len(s.steps))  # stepping reaches the end: every forward and backward step taken
    assert s.cursor == len(s.steps) and s.steps[-1].phase != s.steps[0].phase
    leaves = {n.name for n in s.graph.leaves}
    checked = 0
    for param, p in double.named_parameters():
        if param in leaves and p.grad is not None:
            got, want = s.backend.to_numpy(s.grad(param)), p.grad.numpy()
            if got.shape != want.shape:  # the position table's rows at the traced positions, folded at export
                assert s.graph[param].meta.get("folded_from") == param and got.shape[0] == 1, param
                got, want = got[0], want[: got.shape[1]]
            err = zoo.relative(got, want)
            # 1e-6, not 1e-10: the file holds the attention scale and LayerNorm's ε as float32 numbers (ViT's
            # q bias, whose gradient softmax nearly cancels, sees it at 6e-8)
            assert err <= 1e-6, f"{name}: {param}: relative difference {err:.3g}"
            checked += 1
    assert checked >= 3, f"{name}: only {checked} parameters kept their names: {sorted(leaves)[:20]}"


@pytest.mark.slow
def test_float16_optimized_bert_opens_and_matches_onnxruntime(tmp_path: Path) -> None:
    """convert_float_to_float16(keep_io_types=True): the contrib ops' float16 initializers read as the others."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    files = _optimized("bert", tmp_path)
    half = OnnxModel(onnx.load(str(files.optimized)))
    half.convert_float_to_float16(keep_io_types=True)
    path = tmp_path / "bert_fp16.onnx"
    half.save_model_to_file(str(path))
    opened = open_model(path)
    assert not _unsupported(opened.graph), _unsupported(opened.graph)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, files.inputs)[0]
    s = open_session(path, backend="numpy", dtype="float32", data=dict(files.inputs), loss="none")
    s.run_to_end()
    np.testing.assert_allclose(s.backend.to_numpy(s.value(s.prediction_node.name)), expected, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize(("name", "case", "says"), [
    ("mha_past", OneNode("MultiHeadAttention", {"q": _rng(116, 2, 1, 8), "k": _rng(117, 2, 1, 8),
                                                "v": _rng(118, 2, 1, 8), "past_key": _rng(119, 2, 2, 3, 4),
                                                "past_value": _rng(120, 2, 2, 3, 4)}, _mha, {"num_heads": 2},
                         order=("q", "k", "v", "", "", "", "past_key", "past_value"), declared=(2, 1, 8)),
     "MultiHeadAttention with past_key, past_value"),
    ("mha_cross_causal", OneNode("MultiHeadAttention", {"q": _rng(121, 2, 4, 8), "k": _rng(122, 2, 5, 8),
                                                        "v": _rng(123, 2, 5, 8)}, _mha,
                                 {"num_heads": 2, "unidirectional": 1}, declared=(2, 4, 8)), "unidirectional"),
    ("gemm_elu", OneNode("FusedGemm", {"a": _rng(124, 3, 4), "b": _rng(125, 4, 5)}, lambda a, b: a @ b,
                         {"activation": "Elu"}, declared=(3, 5)), "FusedGemm with activation 'Elu'"),
    ("nchwc", OneNode("ReorderInput", {"x": _rng(126, 1, 8, 3, 3)}, lambda x: x, domain="com.microsoft.nchwc",
                      declared=(1, 8, 3, 3)), "NCHWc blocked layout"),
    # parameters a fusion always writes, left out (onnxruntime refuses these files too: no defaults to make up)
    ("gemm_leaky_without_alpha", OneNode("FusedGemm", {"a": _rng(127, 3, 4), "b": _rng(128, 4, 5)}, lambda a, b: a @ b,
                                         {"activation": "LeakyRelu"}, declared=(3, 5)),
     "FusedGemm with activation 'LeakyRelu' and parameters []"),
    ("conv_hardsigmoid_one_param", OneNode("FusedConv", {"x": _rng(129, 1, 2, 5, 5), "w": _rng(130, 3, 2, 3, 3)},
                                           lambda x, w: x, {"activation": "HardSigmoid", "activation_params": [0.3]},
                                           declared=(1, 3, 3, 3)),
     "HardSigmoid (alpha, beta)"),
    ("group_norm_no_groups", OneNode("GroupNorm", {"x": _rng(131, 2, 3, 3, 8), "gamma": _rng(132, 8),
                                                   "beta": _rng(133, 8)}, lambda x, g, b: x,
                                     {"groups": 0, "activation": 0}, declared=(2, 3, 3, 8)),
     "GroupNorm with groups 0 (at least 1 group)"),
    ("simplified_norm_axis", OneNode("SimplifiedLayerNormalization", {"x": _rng(134, 2, 3, 8), "scale": _rng(135, 8)},
                                     lambda x, g: x, {"axis": 9}, domain="", declared=(2, 3, 8)),
     "over axis 9 of a 3-D input"),
])
def test_onnxruntime_ops_propscope_does_not_read_are_refused_by_name(name: str, case: OneNode, says: str,
                                                                     tmp_path: Path) -> None:
    model = open_model(_file(case, tmp_path / f"{name}.onnx"))
    (placeholder,) = [n for n in model.graph if n.op.name == "unsupported"]
    assert placeholder.meta["original_op"] == (f"{case.domain}.{case.op}" if case.domain else case.op)
    assert says in placeholder.meta["reason"], placeholder.meta["reason"]

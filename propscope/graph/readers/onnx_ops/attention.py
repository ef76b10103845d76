"""ONNX Attention (opset 23), lowered like torch's scaled dot-product attention; RotaryEmbedding (opset 23) as the
slices, products and sums a rotation of each pair of features is; LinearAttention (opset 27) as its recurrence,
unrolled one time step after the other."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import Missing, Unmapped
from .._build import additive_mask
from ..onnx_reader import Ctx, Init, Reader, onnx_op
from .elementwise import const, op


@onnx_op("Attention")
def _attention(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    if len(ins) > 4 or ctx.attrs.get("softcap") or ctx.attrs.get("q_num_heads"):
        raise Unmapped("Attention with a KV cache, softcap or packed heads")
    q, k, v = (r.node(t, ctx) for t in ins[:3])
    mask = None
    if len(ins) > 3 and ins[3] is not None:
        m = r.folded(ins[3])
        mask = r.b.const(additive_mask(m), ctx.module, "attn_mask") if m is not None else r.node(ins[3], ctx)
    module = f"{ctx.module}.attention" if ctx.module else "attention"
    return r.b.attention(q, k, v, ctx.name, module, ctx.attrs.get("scale"), bool(ctx.attrs.get("is_causal", 0)),
                         mask)


def _cache(r: Reader, ctx: Ctx, cache: Any, ids: Any, layout: tuple[int, ...], tag: str) -> Node:
    """A cos or sin cache as one value per (batch, position, pair), shaped to broadcast against the features:
    `layout` is its shape there. With position ids, the rows they pick (folded when both are known, else an `index`
    step); a cache is a constant of the file, never a parameter to train."""
    known = cache.array if isinstance(cache, Init) else r.folded(cache)  # a float initializer too: not trained
    picks = None if ids is None else r.folded(ids)
    if ids is not None and known is not None and picks is not None:
        known = np.take(known, picks.astype(np.int64), axis=0)
    if known is not None and (ids is None or picks is not None):
        return r.b.const(known.reshape(layout), ctx.module, tag, name=f"{ctx.name}.{tag}")
    node = r.node(cache, ctx, kind="constant", hint=tag)
    if ids is not None:
        node = op(r, ctx, "index", node, r.node(ids, ctx, kind="constant", hint="position_ids"), suffix=f"{tag}_rows",
                  axis=0)
    return op(r, ctx, "reshape", node, suffix=f"{tag}_b", shape=(-1, *layout[1:]))


@onnx_op("RotaryEmbedding")
def _rotary(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Rotary positions (RoPE): each pair (x1, x2) of the first `rotary_embedding_dim` features (the two halves, or
    neighbours when interleaved) turned by its position's angle, x1·cos − x2·sin and x1·sin + x2·cos, the rest
    passed through. X is (batch, heads, sequence, head size), or (batch, sequence, heads · head size) with
    num_heads; the caches are (positions, rotary dim / 2) picked by position_ids, or (batch, sequence, rotary dim /
    2) without them."""
    x = r.node(ins[0], ctx)
    ids = ins[3] if len(ins) > 3 else None
    shape = x.shape
    if len(shape) == 3:
        heads = int(ctx.attrs.get("num_heads", 0))
        if heads < 1 or shape[2] % heads:
            raise Unmapped(f"RotaryEmbedding of a 3-D input {shape} with num_heads {heads}")
        x = op(r, ctx, "reshape", x, suffix="heads", shape=(-1, shape[1], heads, shape[2] // heads))
        sequence_axis = 1
    elif len(shape) == 4:
        sequence_axis = 2
    else:
        raise Unmapped(f"RotaryEmbedding of a {len(shape)}-D input")
    size = x.shape[-1]
    rotated = int(ctx.attrs.get("rotary_embedding_dim", 0)) or size
    if rotated % 2 or rotated > size:
        raise Unmapped(f"RotaryEmbedding of {rotated} of {size} features")
    half = rotated // 2
    batch, positions = x.shape[0], x.shape[sequence_axis]
    caches = (r.shape(ins[1]), r.shape(ins[2]))
    if any(c[-1:] != (half,) or len(c) != (2 if ids is not None else 3) for c in caches):
        raise Unmapped(f"RotaryEmbedding caches {caches[0]} and {caches[1]} for {half} feature pairs")
    layout = (batch, 1, positions, half) if sequence_axis == 2 else (batch, positions, 1, half)
    cos, sin = (_cache(r, ctx, ins[i], ids, layout, tag) for i, tag in ((1, "cos"), (2, "sin")))
    interleaved = bool(ctx.attrs.get("interleaved", 0))
    last = len(x.shape) - 1

    def cut(start: int, stop: int | None, step: int, tag: str) -> Node:
        return op(r, ctx, "slice", x, suffix=tag, axes=(last,), starts=(start,), stops=(stop,), steps=(step,))

    x1, x2 = (cut(0, rotated, 2, "x1"), cut(1, rotated, 2, "x2")) if interleaved else \
        (cut(0, half, 1, "x1"), cut(half, rotated, 1, "x2"))
    real = op(r, ctx, "sub", op(r, ctx, "mul", x1, cos, suffix="x1_cos"), op(r, ctx, "mul", x2, sin, suffix="x2_sin"),
              suffix="real")
    imag = op(r, ctx, "add", op(r, ctx, "mul", x1, sin, suffix="x1_sin"), op(r, ctx, "mul", x2, cos, suffix="x2_cos"),
              suffix="imag")
    if interleaved:  # back to neighbours: (…, pairs, 2) read as (…, rotated)
        pairs = [op(r, ctx, "reshape", v, suffix=f"{tag}_pair", shape=(-1, *v.shape[1:], 1))
                 for v, tag in ((real, "real"), (imag, "imag"))]
        both = op(r, ctx, "concat", *pairs, suffix="pairs", axis=last + 1)
        parts = [op(r, ctx, "reshape", both, suffix="turned", shape=(-1, *x.shape[1:last], rotated))]
    else:
        parts = [real, imag]
    if rotated < size:
        parts.append(cut(rotated, None, 1, "passed"))
    out = op(r, ctx, "concat", *parts, suffix="joined" if len(shape) == 3 else "", axis=last)
    return op(r, ctx, "reshape", out, shape=(-1, *shape[1:])) if len(shape) == 3 else out


@onnx_op("LinearAttention")
def _linear_attention(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Linear attention (opset 27: linear attention, RetNet/GLA's gated form, DeltaNet and Gated DeltaNet) unrolled
    one time step after the other, as ONNX defines it: per head a state S (key size × value size), per step t

        S ← exp(g_t) · S                          (gated rules: the decay, per head or per key feature)
        v ← β_t · (v_t − Sᵀ k_t)                  (delta rules: write only what S does not already recall)
        S ← S + k_t ⊗ v                           (the write: an outer product)
        o_t = scale · q_t S                       (the read; query heads share their key/value head's S: GQA)

    so a learner sees the recurrence as the state's steps; gradients flow back through every step. The final S is
    the second output (present_state); past_state, when given, is the first S."""
    query, key, value = (r.node(v, ctx, hint=h) for v, h in zip(ins[:3], ("query", "key", "value"), strict=True))
    past, decay, beta = ([*ins[3:], None, None, None][i] for i in range(3))
    rule = str(ctx.attrs.get("update_rule", "gated_delta"))
    q_heads, kv_heads = int(ctx.attrs.get("q_num_heads", 0)), int(ctx.attrs.get("kv_num_heads", 0))
    gated, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    if rule not in ("linear", "gated", "delta", "gated_delta") or kv_heads < 1 or q_heads < 1 or q_heads % kv_heads:
        raise Unmapped(f"LinearAttention with update_rule {rule!r}, {q_heads} query and {kv_heads} key/value heads")
    if gated != (decay is not None) or delta != (beta is not None):
        raise Unmapped(f"LinearAttention's {rule!r} rule with{'' if decay is not None else 'out'} a decay and "
                       f"with{'' if beta is not None else 'out'} a beta")
    shapes = [query.shape, key.shape, value.shape]
    if any(len(s) != 3 for s in shapes) or shapes[0][2] % q_heads or shapes[1][2] % kv_heads \
            or shapes[2][2] % kv_heads or len({s[:2] for s in shapes}) != 1:
        raise Unmapped(f"LinearAttention of {shapes} (ONNX: (B, T, heads · size) each)")
    batch, steps, _ = query.shape
    d_k, d_v, group = query.shape[2] // q_heads, value.shape[2] // kv_heads, q_heads // kv_heads
    if key.shape[2] != kv_heads * d_k:
        raise Unmapped(f"LinearAttention keys {key.shape} for queries of {d_k} features per head")
    scale = float(ctx.attrs.get("scale", 0.0)) or 1.0 / math.sqrt(d_k)

    def heads(x: Node, n: int, tail: tuple[int, ...], tag: str) -> Node:
        """(B, T, n · size) as (B, n, T, *tail): one head per row of steps, each step's features shaped `tail`."""
        split = op(r, ctx, "reshape", x, suffix=f"{tag}_heads", shape=(-1, steps, n, *tail))
        return op(r, ctx, "transpose", split, suffix=f"{tag}_by_head", axes=(0, 2, 1, *range(3, 3 + len(tail))))

    def at(x: Node, t: int, tag: str) -> Node:
        return op(r, ctx, "select", x, suffix=f"t{t}.{tag}", axis=2, index=t)

    scaled = op(r, ctx, "mul", query, const(r, ctx, scale, "scale"), suffix="q_scaled")
    q = heads(scaled, kv_heads, (group, d_k), "q")  # (B, H_kv, T, group, d_k): a key/value head's queries together
    k_col, v_row = heads(key, kv_heads, (d_k, 1), "k"), heads(value, kv_heads, (1, d_v), "v")
    k_row = heads(key, kv_heads, (1, d_k), "k_row") if delta else None
    g = b = None
    if decay is not None:
        per = r.shape(decay)[-1]
        if r.shape(decay)[:2] != (batch, steps) or per not in (kv_heads, kv_heads * d_k):
            raise Unmapped(f"LinearAttention decay {r.shape(decay)} for {kv_heads} heads of {d_k} key features")
        g = op(r, ctx, "exp", heads(r.node(decay, ctx, hint="decay"), kv_heads, (per // kv_heads, 1), "decay"),
               suffix="decay_factor")
    if beta is not None:
        per = r.shape(beta)[-1]
        if r.shape(beta)[:2] != (batch, steps) or per not in (kv_heads, 1):
            raise Unmapped(f"LinearAttention beta {r.shape(beta)} for {kv_heads} heads")
        b = heads(r.node(beta, ctx, hint="beta"), per, (1, 1), "beta")
    state: Node | None = None
    if past is not None:
        state = r.node(past, ctx, kind="constant", hint="past_state")
        if state.shape != (batch, kv_heads, d_k, d_v):
            raise Unmapped(f"LinearAttention past_state {state.shape}, not {(batch, kv_heads, d_k, d_v)}")
    reads = []
    for t in range(steps):
        if g is not None and state is not None:
            state = op(r, ctx, "mul", state, at(g, t, "decay"), suffix=f"t{t}.decayed")
        written = at(v_row, t, "v")
        if b is not None:
            if state is not None and k_row is not None:
                recalled = op(r, ctx, "matmul", at(k_row, t, "k_row"), state, suffix=f"t{t}.recalled")
                written = op(r, ctx, "sub", written, recalled, suffix=f"t{t}.new")
            written = op(r, ctx, "mul", at(b, t, "beta"), written, suffix=f"t{t}.update")
        outer = op(r, ctx, "mul", at(k_col, t, "k"), written, suffix=f"t{t}.write")
        state = outer if state is None else op(r, ctx, "add", state, outer, suffix=f"t{t}.state")
        read = op(r, ctx, "matmul", at(q, t, "q"), state, suffix=f"t{t}.read")  # (B, H_kv, group, d_v)
        reads.append(op(r, ctx, "reshape", read, suffix=f"t{t}.out", shape=(-1, 1, q_heads * d_v)))
    out = reads[0] if steps == 1 else op(r, ctx, "concat", *reads, axis=1)
    assert state is not None
    return [out, state]


# -- onnxruntime's fused attention (com.microsoft) ---------------------------------------------------------------
def _heads(r: Reader, ctx: Ctx, x: Node, heads: int, tag: str) -> Node:
    """(B, S, N·h) as (B, N, S, h)."""
    split = op(r, ctx, "reshape", x, suffix=f"{tag}_heads", shape=(-1, x.shape[1], heads, x.shape[2] // heads))
    return op(r, ctx, "transpose", split, suffix=f"{tag}_by_head", axes=(0, 2, 1, 3))


def _merged(r: Reader, ctx: Ctx, out: Node) -> Node:
    """(B, N, S, h) back to (B, S, N·h), the attention's output."""
    by_token = op(r, ctx, "transpose", out, suffix="by_token", axes=(0, 2, 1, 3))
    return op(r, ctx, "reshape", by_token, shape=(-1, out.shape[2], out.shape[1] * out.shape[3]))


def _key_mask(r: Reader, ctx: Ctx, mask: Any, batch: int, length: int, keys: int) -> Node | None:
    """onnxruntime's mask_index as an additive mask of the scores (0 where a key is seen, mask_filter_value where
    not): (B,) key counts of right-padded rows, or a raw 0/1 mask (B, T) or (B, S, T). Other forms (left padding
    as (2·B,), (3·B + 2,), Megatron's (B, 1, M, M)) are refused by name."""
    if mask is None:
        return None
    fill = float(ctx.attrs.get("mask_filter_value", -10000.0))
    shape = r.shape(mask)
    known = r.folded(mask)
    if shape == (batch,):  # right padding: key j is seen while j < the row's length
        if known is not None:
            seen = np.arange(keys)[None, :] < known.reshape(batch, 1)
            return r.b.const(np.where(seen, 0.0, fill).reshape(batch, 1, 1, keys), ctx.module, "key_mask")
        lengths = op(r, ctx, "reshape", r.node(mask, ctx, kind="constant", hint="mask_index"), suffix="lengths",
                     shape=(batch, 1, 1, 1))
        seen_node = op(r, ctx, "compare", r.b.const(np.arange(keys).reshape(1, 1, 1, keys), ctx.module, "positions"),
                       lengths, suffix="key_seen", op="lt")
    elif shape in ((batch, keys), (batch, length, keys)):
        layout = (batch, 1, 1, keys) if len(shape) == 2 else (batch, 1, length, keys)
        if known is not None:
            return r.b.const(np.where(known.reshape(layout) > 0, 0.0, fill), ctx.module, "key_mask")
        raw = op(r, ctx, "reshape", r.node(mask, ctx, kind="constant", hint="mask"), suffix="mask_b", shape=layout)
        seen_node = op(r, ctx, "compare", raw, const(r, ctx, 0.0, "zero"), suffix="key_seen", op="gt")
    else:
        raise Unmapped(f"{ctx.op} with a mask_index of shape {shape} for batch {batch} and {keys} keys (propscope "
                       "reads per-row key counts (B,) and raw 0/1 masks (B, T) or (B, S, T))")
    return op(r, ctx, "where", seen_node, const(r, ctx, 0.0, "zero"), const(r, ctx, fill, "mask_filter_value"),
              suffix="key_mask")


def _attend(r: Reader, ctx: Ctx, q: Node, k: Node, v: Node, masks: list[Node | None], causal: bool) -> Node:
    """softmax(q kᵀ · scale + masks) v per head, (B, N, S, h) each, merged back to (B, S, N·h)."""
    extra: Node | None = None
    for m in masks:
        if m is not None:
            extra = m if extra is None else op(r, ctx, "add", extra, m, suffix="masks")
    module = f"{ctx.module}.attention" if ctx.module else "attention"
    scale = ctx.attrs.get("scale")
    out = r.b.attention(q, k, v, f"{ctx.name}.heads", module, None if not scale else float(scale), causal, extra)
    return _merged(r, ctx, out)


def _refuse_state(ctx: Ctx, ins: list[Any], stateful: dict[int, str]) -> None:
    """One line naming what needs run-time state (a KV cache, its lengths) or a fused rotary step."""
    used = [what for i, what in stateful.items() if len(ins) > i and ins[i] is not None]
    if ctx.attrs.get("do_rotary") or ctx.attrs.get("past_present_share_buffer"):
        used.append("do_rotary" if ctx.attrs.get("do_rotary") else "past_present_share_buffer")
    if used:
        raise Unmapped(f"{ctx.op} with {', '.join(used)} (a KV cache or a fused rotary step: propscope steps "
                       "attention without past state; export without use_cache)")


@onnx_op("com.microsoft.Attention")
def _ms_attention(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """BERT's and GPT-2's self-attention, fused: input · weights + bias split into Q, K, V (qkv_hidden_sizes, or
    three equal parts), num_heads heads, softmax(Q Kᵀ · scale + mask + attention_bias) V with scale 1/√head_size
    unless given, causal when unidirectional. The optional present output (the KV cache) is refused where used."""
    _refuse_state(ctx, ins, {4: "past", 6: "past_sequence_length"})
    x = r.node(ins[0], ctx)
    w = r.node(ins[1], ctx)
    heads = _num_heads(ctx, "Attention")
    if len(x.shape) != 3 or len(w.shape) != 2 or w.shape[0] != x.shape[2]:
        raise Unmapped(f"Attention of input {x.shape} with weights {w.shape}")
    sizes = [int(s) for s in ctx.attrs.get("qkv_hidden_sizes", [])] or [w.shape[1] // 3] * 3
    if sum(sizes) != w.shape[1] or sizes[0] != sizes[1] or any(s % heads for s in sizes):
        raise Unmapped(f"Attention with Q, K, V sizes {sizes} for weights {w.shape} and {heads} heads")
    qkv = op(r, ctx, "matmul", x, w, suffix="qkv")
    if len(ins) > 2 and ins[2] is not None:
        qkv = op(r, ctx, "add", qkv, r.node(ins[2], ctx, hint="bias"), suffix="qkv_biased")
    bounds = [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
    parts = [_heads(r, ctx, op(r, ctx, "slice", qkv, suffix=tag, axes=(2,), starts=(bounds[i],),
                                  stops=(bounds[i + 1],), steps=(1,)), heads, tag)
             for i, tag in enumerate(("q", "k", "v"))]
    batch, length = x.shape[0], x.shape[1]
    mask = _key_mask(r, ctx, ins[3] if len(ins) > 3 else None, batch, length, length)
    bias = r.node(ins[5], ctx, hint="attention_bias") if len(ins) > 5 and ins[5] is not None else None
    q, k, v = parts
    out = _attend(r, ctx, q, k, v, [mask, bias], bool(ctx.attrs.get("unidirectional", 0)))
    return [out, Missing("Attention's present output (the KV cache; propscope steps attention without past state)")]


@onnx_op("com.microsoft.RotaryEmbedding")
def _ms_rotary(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """onnxruntime's RoPE: ONNX's RotaryEmbedding with its inputs in another order (input, position_ids, cos_cache,
    sin_cache); position_ids (B, S), or (1,) holding the first position of every row. A 3-D input without
    num_heads has heads of twice the caches' width. Packed batches and a scale other than 1 are refused by name."""
    if ctx.attrs.get("is_packed_batching"):
        raise Unmapped("RotaryEmbedding with is_packed_batching (ragged batches)")
    if float(ctx.attrs.get("scale", 1.0)) != 1.0:
        raise Unmapped(f"RotaryEmbedding with scale {ctx.attrs['scale']}")
    x, ids, cos, sin = ins[:4]
    shape = r.shape(x)
    if len(shape) < 3:
        raise Unmapped(f"RotaryEmbedding of a {len(shape)}-D input")
    length = shape[1] if len(shape) == 3 else shape[2]
    if r.shape(ids) == (1,):
        first = r.folded(ids)
        if first is None:
            raise Unmapped("RotaryEmbedding whose first position is computed at run time")
        if int(first[0]) < 0:  # onnxruntime refuses it too: the caches have no row for it
            raise Unmapped(f"RotaryEmbedding whose first position is {int(first[0])}")
        ids = np.broadcast_to(int(first[0]) + np.arange(length), (shape[0], length)).copy()
    attrs: dict[str, Any] = {k: ctx.attrs[k] for k in ("interleaved", "rotary_embedding_dim", "num_heads")
                             if k in ctx.attrs}
    if attrs.get("rotary_embedding_dim") and not attrs.get("num_heads"):  # onnxruntime refuses it: a partial
        raise Unmapped("RotaryEmbedding with rotary_embedding_dim but no num_heads")  # rotation hides the head size
    if len(shape) == 3 and not attrs.get("num_heads"):
        width = 2 * r.shape(cos)[-1]
        if shape[2] % width:
            raise Unmapped(f"RotaryEmbedding of hidden size {shape[2]} with caches for heads of {width}")
        attrs["num_heads"] = shape[2] // width
    onnx_ctx = Ctx(ctx.op, ctx.name, ctx.module, None, attrs, ctx.opset)
    return _rotary(r, [x, cos, sin, ids], onnx_ctx)


def _bias_part(r: Reader, ctx: Ctx, bias: Node | None, start: int, stop: int, tag: str) -> Node | None:
    """The slice of MultiHeadAttention's (D + D + D_v) bias that belongs to Q, K or V."""
    if bias is None:
        return None
    return op(r, ctx, "slice", bias, suffix=f"{tag}_bias", axes=(0,), starts=(start,), stops=(stop,), steps=(1,))


def _projected(r: Reader, ctx: Ctx, x: Node, bias: Node | None, heads: int, tag: str) -> Node:
    """A (B, S, N·h) projection (+ its bias) as (B, N, S, h)."""
    if bias is not None:
        x = op(r, ctx, "add", x, bias, suffix=f"{tag}_biased")
    return _heads(r, ctx, x, heads, tag)


def _unpacked(r: Reader, ctx: Ctx, packed: Node, index: int, bias: Node | None, tag: str) -> Node:
    """Part `index` of a packed (B, L, N, parts, h) tensor (+ its bias, (N·h,)) as (B, N, L, h)."""
    _, length, heads, _, size = packed.shape
    part = op(r, ctx, "slice", packed, suffix=tag, axes=(3,), starts=(index,), stops=(index + 1,), steps=(1,))
    part = op(r, ctx, "reshape", part, suffix=f"{tag}_heads", shape=(-1, length, heads, size))
    if bias is not None:
        per_head = op(r, ctx, "reshape", bias, suffix=f"{tag}_bias_heads", shape=(heads, size))
        part = op(r, ctx, "add", part, per_head, suffix=f"{tag}_biased")
    return op(r, ctx, "transpose", part, suffix=f"{tag}_by_head", axes=(0, 2, 1, 3))


def _mha_qkv(r: Reader, ctx: Ctx, ins: list[Any], heads: int) -> tuple[Node, Node, Node]:
    """Q, K, V as (B, N, S, h) from MultiHeadAttention's forms: separate (B, S, D) projections, K and V already
    split into heads (B, N, L, h), packed QKV (B, L, N, 3, h) or packed KV (B, L, N, 2, h); the bias (D + D + D_v)
    added to each projection (to Q alone where K and V come in heads, as onnxruntime does)."""
    query = r.node(ins[0], ctx, hint="query")
    key = r.node(ins[1], ctx, hint="key") if ins[1] is not None else None
    value = r.node(ins[2], ctx, hint="value") if ins[2] is not None else None
    bias = r.node(ins[3], ctx, hint="bias") if ins[3] is not None else None
    if len(query.shape) == 5:  # packed QKV
        if key is not None or value is not None or query.shape[2:4] != (heads, 3):
            raise Unmapped(f"MultiHeadAttention of packed QKV {query.shape} with {heads} heads and separate K or V")
        d = heads * query.shape[4]
        return tuple(_unpacked(r, ctx, query, i, _bias_part(r, ctx, bias, i * d, (i + 1) * d, tag), tag)
                     for i, tag in enumerate(("q", "k", "v")))  # type: ignore[return-value]
    if len(query.shape) != 3 or key is None or query.shape[2] % heads:
        raise Unmapped(f"MultiHeadAttention of query {query.shape} with key "
                       f"{None if key is None else key.shape} and {heads} heads")
    d = query.shape[2]
    q = _projected(r, ctx, query, _bias_part(r, ctx, bias, 0, d, "q"), heads, "q")
    if len(key.shape) == 5:  # packed KV
        if value is not None or key.shape[2:4] != (heads, 2) or key.shape[2] * key.shape[4] != d:
            raise Unmapped(f"MultiHeadAttention of packed KV {key.shape} for query {query.shape} and {heads} heads")
        return q, _unpacked(r, ctx, key, 0, _bias_part(r, ctx, bias, d, 2 * d, "k"), "k"), \
            _unpacked(r, ctx, key, 1, _bias_part(r, ctx, bias, 2 * d, 2 * d + d, "v"), "v")
    if value is None or len(value.shape) != len(key.shape):
        raise Unmapped(f"MultiHeadAttention of key {key.shape} with value {None if value is None else value.shape}")
    if len(key.shape) == 4:  # already (B, N, L, h): onnxruntime adds only Q's part of the bias
        if key.shape[1] != heads or value.shape[1] != heads or key.shape[:3] != value.shape[:3]:
            raise Unmapped(f"MultiHeadAttention of key {key.shape} and value {value.shape} in heads (B, N, L, h) "
                           f"with {heads} heads")
        return q, key, value
    if key.shape[2] != d or value.shape[2] % heads:
        raise Unmapped(f"MultiHeadAttention of query {query.shape}, key {key.shape}, value {value.shape}")
    return q, _projected(r, ctx, key, _bias_part(r, ctx, bias, d, 2 * d, "k"), heads, "k"), \
        _projected(r, ctx, value, _bias_part(r, ctx, bias, 2 * d, 2 * d + value.shape[2], "v"), heads, "v")


@onnx_op("com.microsoft.MultiHeadAttention")
def _ms_multi_head_attention(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Stable Diffusion's, CLIP's and the cross-attentions' fused attention: Q, K, V given separately (+ bias), K
    and V already split into heads, or packed; softmax(Q Kᵀ · scale + key_padding_mask + attention_bias) V with
    num_heads heads, scale 1/√head_size unless given, causal when unidirectional. present_key / present_value
    are K and V by head (no past joins them); a KV cache (past_key, past_value, past_sequence_length,
    cache_indirection) and the qk output are refused by name."""
    ins = [*ins, *[None] * 10][:10]
    _refuse_state(ctx, ins, {6: "past_key", 7: "past_value", 8: "past_sequence_length", 9: "cache_indirection"})
    heads = _num_heads(ctx, "MultiHeadAttention")
    q, k, v = _mha_qkv(r, ctx, ins, heads)
    batch, length, keys = q.shape[0], q.shape[2], k.shape[2]
    causal = bool(ctx.attrs.get("unidirectional", 0))
    if causal and length != keys:
        raise Unmapped(f"MultiHeadAttention, unidirectional, of {length} queries and {keys} keys (causal "
                       "attention without a KV cache has as many keys as queries)")
    mask = _key_mask(r, ctx, ins[4], batch, length, keys)
    bias = r.node(ins[5], ctx, hint="attention_bias") if ins[5] is not None else None
    out = _attend(r, ctx, q, k, v, [mask, bias], causal)
    return [out, k, v, Missing("MultiHeadAttention's qk output (propscope shows the scores as steps of their own)")]


def _num_heads(ctx: Ctx, op: str) -> int:
    """A contrib attention's num_heads (required, at least 1: a file may say 0 or leave it out)."""
    heads = int(ctx.attrs.get("num_heads", 0))
    if heads < 1:
        raise Unmapped(f"{op} with num_heads {heads} (at least 1 head)")
    return heads

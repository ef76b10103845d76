"""ONNX Dropout: the identity in inference, with its mask (all kept) when a model asks for it.

Training-mode Dropout (a model exported without `.eval()`) draws a random mask at every run: it is the catalog's
`dropout`, its mask drawn from a seed of its node as a `.pt2`'s dropout in training mode is (the same at every step
and on both backends, not the file's runtime's numbers), and said in a warning. Inference is training_mode false
(opset 12 on), any Dropout of opsets 7 to 11, and is_test=1 before opset 7 (is_test=0 is refused by name).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._aten import Missing, Unmapped
from ..aten.constants import seed_of
from ..onnx_reader import Ctx, Reader, onnx_op
from .elementwise import op


@onnx_op("Dropout")
def _dropout(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    training = r.folded(ins[2]) if len(ins) > 2 and ins[2] is not None else np.asarray(False)
    if ctx.opset < 7:  # Dropout-1 and -6: `is_test` says inference; its default, 0, is training
        training = np.asarray(not ctx.attrs.get("is_test", 0))
    if training is None:
        raise Unmapped("Dropout whose training flag is computed at run time")
    ratio = r.folded(ins[1]) if len(ins) > 1 and ins[1] is not None else np.asarray(ctx.attrs.get("ratio", 0.5))
    if bool(training) and (ratio is None or float(ratio) != 0.0):
        if ctx.opset < 7:  # is_test left at its default in a file made for inference, as old zoo files are
            raise Unmapped("Dropout before opset 7 in training mode (is_test=0, its default)")
        if ratio is None or not 0.0 <= float(ratio) < 1.0:
            raise Unmapped("Dropout in training mode with a ratio computed at run time or outside [0, 1)")
        if r.training_dropouts == 0:
            r.b.warnings.append(
                f"Dropout {ctx.name!r} is in training mode (the model was exported without .eval()): each such "
                "dropout drops with a mask drawn once from a seed of its node, the same at every step; export from "
                "model.eval() to step the model as it predicts")
        r.training_dropouts += 1
        dropped = r.b.op("dropout", r.node(x, ctx), name=ctx.name, module=ctx.module,
                         attrs={"p": float(ratio), "training": True, "seed": seed_of(ctx.name)})
        return [dropped, Missing("the dropout mask of a Dropout in training mode")]
    return [x, np.ones(r.shape(x), dtype=bool)]


@onnx_op("com.microsoft.EmbedLayerNormalization")
def _embed_layer_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """BERT's embeddings, fused: LayerNorm(word[input_ids] + position[position_ids] + segment[segment_ids]) with
    positions 0 … S − 1 unless given, and, from the optional mask, mask_index (the row sums of the 0/1 mask: the
    key counts Attention reads). The optional embedding_sum output is refused where used."""
    ids, segments, words, positions, segment_table, gamma, beta, mask, position_ids = [*ins, *[None] * 9][:9]
    token_ids = r.node(ids, ctx, kind="constant", hint="input_ids")
    length = token_ids.shape[-1]
    total = op(r, ctx, "embedding", token_ids, r.node(words, ctx, hint="word_embedding"), suffix="words")
    if position_ids is None:
        picked = r.b.const(np.arange(length).reshape(1, length), ctx.module, "position_ids")
    else:
        picked = r.node(position_ids, ctx, kind="constant", hint="position_ids")
    placed = op(r, ctx, "embedding", picked, r.node(positions, ctx, hint="position_embedding"), suffix="positions")
    total = op(r, ctx, "add", total, placed, suffix="with_positions")
    if (segments is None) != (segment_table is None):
        raise Unmapped("EmbedLayerNormalization with segment_ids but no segment_embedding, or the reverse")
    if segments is not None:
        segment = op(r, ctx, "embedding", r.node(segments, ctx, kind="constant", hint="segment_ids"),
                     r.node(segment_table, ctx, hint="segment_embedding"), suffix="segments")
        total = op(r, ctx, "add", total, segment, suffix="with_segments")
    hidden = total.shape[-1:]
    node = r.b.op("layer_norm", total, r.node(gamma, ctx), r.node(beta, ctx), name=ctx.name, module=ctx.module,
                  attrs={"normalized_shape": hidden, "eps": float(ctx.attrs.get("epsilon", 1e-12))})
    if mask is None:
        mask_index: Any = Missing("EmbedLayerNormalization's mask_index without a mask input")
    else:
        known = r.folded(mask)
        mask_index = (known != 0).sum(axis=1).astype(np.int32) if known is not None else \
            op(r, ctx, "sum", r.node(mask, ctx, kind="constant", hint="mask"), suffix="mask_index", axis=(1,),
               keepdims=False)
    return [node, mask_index, Missing("EmbedLayerNormalization's embedding_sum output (propscope builds the "
                                      "normalized output and mask_index)")]

"""ATen dropout and embedding."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...ir import Node
from .._aten import (
    Ctx,
    Missing,
    Translator,
    Unmapped,
    aten,
    op_key,
    self_arg,
)
from .._budget import array_room
from .constants import seed_of


@aten("dropout", "native_dropout")
def _dropout(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Dropout in training mode is one step whose mask is drawn from a seed of its node (`seed_of`); in eval mode,
    or with p = 0, it is the identity. `native_dropout` (what `run_decompositions()` leaves) also returns the mask,
    which only torch's own backward reads."""
    x = self_arg(a)
    train, p = a.get("train", True) is not False, float(a.get("p", 0.5))  # native_dropout's train=None trains
    out = x if not train or p == 0 else t.b.op("dropout", t.node(x, ctx), name=ctx.name, module=ctx.module,
                                                attrs={"p": p, "training": True, "seed": seed_of(ctx.name)})
    return [out, Missing("dropout's mask")] if op_key(ctx.target) == "native_dropout" else out


_SELU_ALPHA = 1.7580993408473766  # SELU's λα: alpha dropout sets what it drops to SELU's lowest, −λα (Dropout.cpp)


@aten("feature_dropout", "alpha_dropout", "feature_alpha_dropout")
def _masked_dropout(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Dropout2d/3d (whole channels of a sample), AlphaDropout (a SELU network's: dropped values set to SELU's
    lowest and all rescaled to keep the mean and variance) and their feature forms, in training mode: x times a mask
    drawn when the model is read (seeded by the node, as dropout's) and, for alpha dropout, plus an offset, so a
    multiplication (and an addition) with constants, as `run_decompositions()` writes them too; the identity in eval
    mode."""
    x = self_arg(a)
    train, p, op = a.get("train", True), float(a.get("p", 0.5)), op_key(ctx.target)
    if not train or p == 0:
        return x
    shape = tuple(t.shape(x))
    if op.startswith("feature"):
        if len(shape) < 2:
            raise Unmapped(f"{op} of a tensor without channels")
        shape = shape[:2] + (1,) * (len(shape) - 2)
    array_room(shape, np.float64, op, t.where)
    keep = (np.random.default_rng(seed_of(ctx.name)).random(shape) >= p).astype(np.float64)
    node = t.node(x, ctx)
    if op.endswith("alpha_dropout"):
        scale = 1.0 / np.sqrt((_SELU_ALPHA**2 * p + 1) * (1 - p)) if p < 1 else 0.0
        offset = (keep - 1.0) * _SELU_ALPHA * scale + _SELU_ALPHA * scale * p
        kept = _times(t, ctx, node, keep * scale, f"{ctx.name}.kept")
        return t.b.op("add", kept, t.b.const(offset, ctx.module, "offset"), name=ctx.name, module=ctx.module,
                      original_op=op)
    return _times(t, ctx, node, keep / (1.0 - p) if p < 1 else keep * 0.0, ctx.name, op)


def _times(t: Translator, ctx: Ctx, x: Node, factor: np.ndarray, name: str, op: str | None = None) -> Node:
    meta: dict[str, Any] = {"original_op": op} if op else {}
    return t.b.op("mul", x, t.b.const(factor, ctx.module, "mask"), name=name, module=ctx.module, **meta)


@aten("embedding")
def _embedding(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if a.get("scale_grad_by_freq"):
        raise Unmapped("embedding with scale_grad_by_freq")
    weight = t.node(a["weight"], ctx, "weight")
    padding = int(a.get("padding_idx", -1))
    attrs = {"padding_idx": padding % weight.shape[0]} if padding >= 0 or padding < -1 else {}
    return t.b.op("embedding", t.node(a["indices"], ctx, "ids"), weight, name=ctx.name, module=ctx.module,
                  attrs=attrs)


_BAG_MODES = {0: "sum", 1: "mean", 2: "max"}


@aten("embedding_bag", "_embedding_bag", "_embedding_bag_forward_only")
def _embedding_bag(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """nn.EmbeddingBag: one step for the lookups and the sum, mean or max of each bag; of its four outputs only the
    bags are a network's (the others are bookkeeping for torch's own backward)."""
    if a.get("scale_grad_by_freq"):
        raise Unmapped("embedding_bag with scale_grad_by_freq")
    mode = int(a.get("mode", 0))
    if mode not in _BAG_MODES:
        raise Unmapped(f"embedding_bag mode {mode}")
    padding = a.get("padding_idx")
    weight = t.node(a["weight"], ctx, "weight")
    inputs = [t.node(a["indices"], ctx, "ids"), weight, t.node(a["offsets"], ctx, "offsets")]
    if a.get("per_sample_weights") is not None:
        inputs.append(t.node(a["per_sample_weights"], ctx, "per_sample_weights"))
    attrs = {"mode": _BAG_MODES[mode], "include_last_offset": bool(a.get("include_last_offset", False)),
             "padding_idx": None if padding is None or int(padding) == -1 else int(padding) % weight.shape[0]}
    node = t.b.op("embedding_bag", *inputs, name=ctx.name, module=ctx.module, attrs=attrs)
    return [node] + [Missing("embedding_bag's bookkeeping for torch's backward")] * 3

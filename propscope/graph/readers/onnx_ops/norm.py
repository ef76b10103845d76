"""ONNX normalisations."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._aten import Missing, Unmapped
from ..onnx_reader import Ctx, Reader, onnx_op


@onnx_op("BatchNormalization")
def _batch_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    if ctx.attrs.get("training_mode", 0):
        raise Unmapped("BatchNormalization in training mode")
    x = r.node(ins[0], ctx)
    scale, bias = r.node(ins[1], ctx), r.node(ins[2], ctx)
    mean, var = r.node(ins[3], ctx, kind="constant"), r.node(ins[4], ctx, kind="constant")
    node = r.b.op("batch_norm", x, scale, bias, mean, var, name=ctx.name, module=ctx.module,
                  attrs={"training": False, "momentum": 1.0 - float(ctx.attrs.get("momentum", 0.9)),
                         "eps": float(ctx.attrs.get("epsilon", 1e-5))})
    return [node, Missing("running mean"), Missing("running variance")]


@onnx_op("LayerNormalization")
def _layer_norm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    axis = int(ctx.attrs.get("axis", -1)) % len(x.shape)
    norm = x.shape[axis:]
    w = r.node(ins[1], ctx)
    b = r.b.const(np.zeros(norm), ctx.module, "bias") if len(ins) < 3 or ins[2] is None else r.node(ins[2], ctx)
    if w.shape != norm or b.shape != norm:
        raise Unmapped(f"LayerNormalization with scale {w.shape} or bias {b.shape} broadcast over {norm}")
    node = r.b.op("layer_norm", x, w, b, name=ctx.name, module=ctx.module,
                  attrs={"normalized_shape": norm, "eps": float(ctx.attrs.get("epsilon", 1e-5))})
    return [node, Missing("layer-norm mean"), Missing("layer-norm inverse deviation")]

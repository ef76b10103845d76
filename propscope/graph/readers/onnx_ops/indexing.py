"""ONNX GatherElements and Tile onto the catalog's `gather` and `tile` (the shape plumbing that folds
at load time is in `shape.py`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._aten import Unmapped
from .._budget import tile_room
from ..onnx_reader import Ctx, Reader, onnx_op
from .elementwise import op


@onnx_op("GatherElements")
def _gather_elements(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    shape = r.shape(ins[0])
    axis = int(ctx.attrs.get("axis", 0)) % len(shape)
    idx = r.folded(ins[1])
    if idx is not None:  # negative indices count from the end, as ONNX allows and torch.gather does not
        idx = np.where(idx < 0, idx + shape[axis], idx).astype(np.int64)
    c = r.folded(ins[0])
    if c is not None and idx is not None:
        return np.take_along_axis(c, idx, axis=axis)
    index = r.node(idx if idx is not None else ins[1], ctx, hint="index")
    return op(r, ctx, "gather", r.node(ins[0], ctx), index, axis=axis)


@onnx_op("Tile")
def _tile(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    repeats = r.folded(ins[1])
    if repeats is None:
        raise Unmapped("Tile repeats computed at run time")
    reps = tuple(int(v) for v in repeats.reshape(-1))
    c = r.folded(ins[0])
    if c is not None:
        tile_room(c, reps, f"Tile {ctx.name!r} of a constant", r.where)
        return np.tile(c, reps)
    return op(r, ctx, "tile", r.node(ins[0], ctx), repeats=reps)

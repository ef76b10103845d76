"""ATen distances between rows: cdist (and its forms after decomposition) and pdist."""

from __future__ import annotations

from typing import Any

from .._aten import Ctx, Translator, aten, op_key, self_arg

# torch's compute_mode for p = 2: 0 (or None) uses the matrix-product form when either side has more than 25 rows,
# 1 always, 2 never (at::cdist and cdist_impl in aten/src/ATen/native/Distance.cpp)
_MM_ROWS = 25


@aten("cdist", "_cdist_forward", "_euclidean_dist")
def _cdist(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x1, x2 = a["x1"], a["x2"]
    if op_key(ctx.target) == "_euclidean_dist":  # what cdist computes for p = 2 with the matrix product
        p, use_mm = 2.0, True
    else:
        p = float(a.get("p", 2.0))
        mode = a.get("compute_mode")
        mode = 0 if mode is None else int(mode)
        rows = max(t.shape(x1)[-2], t.shape(x2)[-2])
        use_mm = p == 2 and (mode == 1 or (mode == 0 and rows > _MM_ROWS))
    return t.b.op("cdist", t.node(x1, ctx, "x1"), t.node(x2, ctx, "x2"), name=ctx.name, module=ctx.module,
                  attrs={"p": p, "use_mm": use_mm})


@aten("pdist", "_pdist_forward")
def _pdist(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    return t.b.op("pdist", t.node(self_arg(a), ctx, "x"), name=ctx.name, module=ctx.module,
                  attrs={"p": float(a.get("p", 2.0))})

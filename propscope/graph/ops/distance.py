"""Distances between rows: `cdist` (every row of one set against every row of another: prototypes, k-nearest
neighbours, metric learning) and `pdist` (every pair of rows of one set, the upper triangle flattened).

Both are p-norms of row differences, δ = a − b: d = (Σ_k |δ_k|^p)^(1/p), Σ|δ| for p = 1, max|δ| for p = ∞,
the count of δ_k ≠ 0 for p = 0. Their derivatives are torch's (`_cdist_backward`, `_pdist_backward`): 0 where a
distance is 0 (a row against itself: the norm has no derivative there), and at p = ∞ the whole upstream goes to
every coordinate where |δ| is the largest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]

_PARTIAL = ("sign(δ)·(|δ|/d)^(p−1), δ = {a} − {b}; 0 where d = 0; p = 2: δ/d; p = 1: sign(δ); "
            "p = ∞: sign(δ) where |δ| = d, else 0; p = 0: 0")


def _rows(shape: Shape, role: str, op: str) -> None:
    if len(shape) < 2:
        raise ShapeError(f"{op} needs rows: {role} must be (..., rows, features), got {S.fmt(shape)}")


def _cdist(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    a, b = tuple(shapes[0]), tuple(shapes[1])
    _rows(a, "x1", "cdist")
    _rows(b, "x2", "cdist")
    if a[-1] != b[-1]:
        raise ShapeError(f"cdist needs rows of one length: x1 {S.fmt(a)} has {a[-1]} features, x2 {S.fmt(b)} "
                         f"has {b[-1]}")
    try:
        batch = S.broadcast([a[:-2], b[:-2]], {})
    except ShapeError:
        raise ShapeError(f"cdist: the batch axes of x1 {S.fmt(a)} and x2 {S.fmt(b)} do not broadcast") from None
    return (*batch, a[-2], b[-2])


define(OpDef(
    "cdist", ("x1", "x2"), "d[..., i, j] = ‖x1[..., i, :] − x2[..., j, :]‖_p = (Σ_k |x1[i, k] − x2[j, k]|^p)^(1/p)",
    {"x1": "∂d[i, j]/∂x1[i, k] = " + _PARTIAL.format(a="x1[i, k]", b="x2[j, k]"),
     "x2": "∂d[i, j]/∂x2[j, k] = −(the same)"},
    _cdist, "cdist", out="d", category="reduce", default_attrs={"p": 2.0, "use_mm": False},
    summary="the p-norm distance of every row of x1 to every row of x2 (torch.cdist); use_mm: p = 2 computed as "
            "√(|a|² + |b|² − 2a·b), as torch does for more than 25 rows",
))


def _pdist(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    if len(x) != 2:
        raise ShapeError(f"pdist needs a matrix of rows (rows, features), got {S.fmt(x)}")
    return (x[0] * (x[0] - 1) // 2,)


define(OpDef(
    "pdist", ("x",), "d[(i, j)] = ‖x[i, :] − x[j, :]‖_p  for every pair i < j, in row-major order",
    {"x": "∂d[(i, j)]/∂x[i, k] = " + _PARTIAL.format(a="x[i, k]", b="x[j, k]") + "; ∂/∂x[j, k] = −(the same)"},
    _pdist, "pdist", out="d", category="reduce", default_attrs={"p": 2.0},
    summary="the p-norm distance of every pair of rows i < j (torch.pdist, scipy's pdist order)",
))

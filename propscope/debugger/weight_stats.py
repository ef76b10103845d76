"""A checkpoint's tensors by themselves, before any architecture: each one's shape, dtype, norm, range and the count
of its NaN and infinite entries, so that `propscope inspect weights.pt` says which layer's weights blew up in training
(what Netron shows as a list of initializers, with the numbers an engineer checks first)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from ..graph.ops.shapes import fmt
from .grad_flow import counts_text


@dataclass(frozen=True)
class WeightRow:
    name: str
    shape: tuple[int, ...]
    dtype: str
    size: int
    norm: float  # over the finite entries
    mean: float
    std: float
    min: float
    max: float
    nan: int
    inf: int

    @property
    def flag(self) -> str:
        return counts_text(self.nan, self.inf)

    def as_dict(self) -> dict[str, object]:
        """For JSON: numbers there are none of (no finite entry) are null, not NaN (which JSON has no word for)."""
        out = {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in asdict(self).items()}
        return {**out, "shape": list(self.shape)}


def weight_rows(tensors: Mapping[str, np.ndarray], stored: Mapping[str, str] | None = None) -> list[WeightRow]:
    """One row per tensor, in the file's order; numbers over the finite entries, in float64; the dtype each was
    stored in (`stored`: float16 and bfloat16 are read as float32, and their overflow to inf is what to look for)."""
    stored = stored or {}
    rows = []
    for name, array in tensors.items():
        a = np.asarray(array)
        if a.dtype.kind == "b":
            a = a.astype(np.uint8)
        values = a.astype(np.float64, copy=False).ravel() if a.dtype.kind in "biuf" else np.zeros(0)
        finite = np.isfinite(values)
        nan = int(np.isnan(values).sum())
        good = values if finite.all() else values[finite]
        stats = (float(np.linalg.norm(good)), float(good.mean()), float(good.std()), float(good.min()),
                 float(good.max())) if good.size else (float("nan"),) * 5
        rows.append(WeightRow(name, tuple(a.shape), stored.get(name, str(np.asarray(array).dtype)), int(a.size), *stats,
                              nan,
                              int(values.size - finite.sum()) - nan))
    return rows


def text(rows: list[WeightRow], title: str) -> str:
    """The table, then one line naming the tensors with NaN or infinite entries (or saying there are none)."""
    width = max([len(r.name) for r in rows] + [6])
    shapes = max([len(fmt(r.shape)) for r in rows] + [5])
    lines = [title, f" {'tensor':<{width}}  {'shape':<{shapes}}  {'dtype':<8} {'‖w‖':>10} {'mean':>10} {'std':>10} "
             f"{'min':>10} {'max':>10}  non-finite"]
    for r in rows:
        numbers = " ".join(f"{v:>10.3e}" if np.isfinite(v) else f"{'—':>10}"  # no finite entry: nothing to say
                           for v in (r.norm, r.mean, r.std, r.min, r.max))
        lines.append(f" {r.name:<{width}}  {fmt(r.shape):<{shapes}}  {r.dtype:<8} {numbers}  {r.flag}")
    bad = [r for r in rows if r.flag]
    total = sum(r.size for r in rows)
    summary = f"{len(rows)} tensors, {total:,} values"
    if bad:
        named = ", ".join(f"{r.name} ({r.flag})" for r in bad[:4]) + (f", … {len(bad) - 4} more" if len(bad) > 4
                                                                       else "")
        summary += f": {len(bad)} hold{'s' if len(bad) == 1 else ''} non-finite values: {named}"
    else:
        summary += ", all finite"
    return "\n".join([*lines, summary])

"""How numbers and tensors are written and summarised on screen; plain NumPy, no Qt, so it is tested headless.

These only read arrays the session already computed (an element, a summary for display);
no gradient or value is ever derived here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Index = tuple[int, ...]
MINUS = "−"


def fmt_num(x: Any, digits: int = 4) -> str:
    """A number as a person reads it: 4 significant digits, a real minus sign, nan/inf spelled out."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else MINUS + "∞"
    if x == 0:
        return "0"
    text = f"{x:.{digits}g}"
    if "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return text.replace("-", MINUS)


def fmt_shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape) if shape else "scalar"


def fmt_index(index: Index) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]" if index else ""


def as_array(value: Any) -> np.ndarray:
    return np.asarray(value)


def as_matrix(value: Any) -> np.ndarray:
    """A 2-D view for tables and heatmaps: scalar 1×1, vector one row, N-D rows × last axis."""
    a = np.asarray(value)
    if a.ndim == 0:
        return a.reshape(1, 1)
    if a.ndim == 1:
        return a.reshape(1, -1)
    return a.reshape(-1, a.shape[-1])


def matrix_cell(index: Index, shape: tuple[int, ...]) -> tuple[int, int]:
    """Where element `index` of a tensor of `shape` sits in its `as_matrix` view."""
    if not shape:
        return 0, 0
    if len(shape) == 1:
        return 0, index[0]
    row = int(np.ravel_multi_index(index[:-1], shape[:-1])) if len(shape) > 2 else index[0]
    return row, index[-1]


def cell_index(row: int, col: int, shape: tuple[int, ...]) -> Index:
    """The tensor index of cell (row, col) of the `as_matrix` view."""
    if not shape:
        return ()
    if len(shape) == 1:
        return (col,)
    lead = tuple(int(i) for i in np.unravel_index(row, shape[:-1])) if len(shape) > 2 else (row,)
    return (*lead, col)


def fit_index(index: Index | None, shape: tuple[int, ...]) -> Index:
    """`index` made valid for `shape`: trailing axes kept (as broadcasting aligns them), clipped to bounds."""
    if not shape:
        return ()
    index = tuple(index or ())
    index = index[-len(shape):] if len(index) >= len(shape) else (0,) * (len(shape) - len(index)) + index
    return tuple(min(max(i, 0), d - 1) for i, d in zip(index, shape, strict=True))


def element(value: Any, index: Index) -> float:
    a = np.asarray(value)
    return float(a[fit_index(index, a.shape)]) if a.ndim else float(a)


@dataclass(frozen=True)
class Stats:
    size: int
    min: float
    max: float
    mean: float
    std: float
    nonfinite: int

    def text(self) -> str:
        bad = f" · non-finite {self.nonfinite}" if self.nonfinite else ""
        return (f"min {fmt_num(self.min)} · max {fmt_num(self.max)} · mean {fmt_num(self.mean)}"
                f" · std {fmt_num(self.std)}{bad}")


def stats(value: Any) -> Stats:
    """Summary of the finite elements, and how many are not finite."""
    a = np.asarray(value, dtype=np.float64).reshape(-1)
    finite = a[np.isfinite(a)]
    bad = int(a.size - finite.size)
    if finite.size == 0:
        nan = float("nan")
        return Stats(int(a.size), nan, nan, nan, nan, bad)
    return Stats(int(a.size), float(finite.min()), float(finite.max()), float(finite.mean()),
                 float(finite.std()), bad)


def histogram(value: Any, bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges of the finite elements (a single bin around a constant tensor)."""
    a = np.asarray(value, dtype=np.float64).reshape(-1)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return np.zeros(0), np.zeros(1)
    bins = bins or int(min(40, max(5, math.sqrt(a.size))))
    lo, hi = float(a.min()), float(a.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(a, bins=bins, range=(lo, hi))
    return counts, edges


def symmetric_range(value: Any) -> float:
    """Half-width of a colour scale centred at zero that holds every finite element."""
    a = np.asarray(value, dtype=np.float64)
    finite = np.abs(a[np.isfinite(a)])
    m = float(finite.max()) if finite.size else 0.0
    return m if m > 0 else 1.0

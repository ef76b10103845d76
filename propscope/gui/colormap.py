"""The diverging colour map centred at zero (blue < 0 < red), as plain NumPy for every view to share."""

from __future__ import annotations

from typing import Any

import numpy as np

# Stops from negative to positive; white means zero, so the sign of a number is seen at a glance.
STOPS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
COLORS = np.array([
    [33, 102, 172],
    [146, 197, 222],
    [247, 247, 247],
    [244, 165, 130],
    [178, 24, 43],
], dtype=np.float64)
NONFINITE = (255, 0, 255)  # magenta: never produced by the scale itself


def lut(n: int = 256) -> np.ndarray:
    """An (n, 3) uint8 lookup table, for pyqtgraph's ImageItem."""
    t = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(t, STOPS, COLORS[:, c]) for c in range(3)], axis=1).astype(np.uint8)


def diverging_rgba(values: Any, vmax: float) -> np.ndarray:
    """RGBA uint8 of `values` on [-vmax, vmax]; NaN and Inf in magenta."""
    a = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(a)
    t = np.clip(np.where(finite, a, 0.0) / (2 * vmax) + 0.5, 0.0, 1.0)
    out = np.empty((*a.shape, 4), dtype=np.uint8)
    for c in range(3):
        out[..., c] = np.interp(t, STOPS, COLORS[:, c]).astype(np.uint8)
    out[..., 3] = 255
    out[~finite, :3] = NONFINITE
    return out

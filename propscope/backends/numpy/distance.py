"""Distances between rows on NumPy, each derivative beside its forward (torch's `_cdist_backward`,
`_pdist_backward` and `_euclidean_dist_backward`, by hand).

The row differences δ are made a block at a time (at most `BLOCK` elements): a cdist of 4,096 rows against 4,096
rows of 512 features would otherwise hold 8.6·10⁹ differences at once.
"""

from __future__ import annotations

import math

import numpy as np

from .kernels import Array, kernel, unbroadcast

BLOCK = 1 << 22  # elements of one block of row differences: 32 MB in float64


def p_norm(delta: Array, p: float) -> Array:
    """‖δ‖_p over the last axis (cdist, pdist, and vector_norm with its reduced axes moved last)."""
    size = np.abs(delta)
    if p == 0:
        return np.count_nonzero(size, axis=-1).astype(delta.dtype)
    if p == 1:
        return size.sum(axis=-1)
    if p == 2:
        return np.sqrt(np.sum(delta * delta, axis=-1))
    if math.isinf(p):
        return size.max(axis=-1, initial=0.0)
    return np.sum(size ** p, axis=-1) ** (1.0 / p)


def p_norm_partial(delta: Array, d: Array, p: float) -> Array:
    """∂d/∂a for d = ‖a − b‖_p, per coordinate of δ = a − b (`d` broadcast against δ: reduced axes kept as 1). As
    torch: 0 where d = 0 (and where δ = 0 for p < 1, where |δ|^(p−1) has a pole); at ∞ sign(δ) on every largest
    |δ| (cdist's rule; a vector norm shares it among them instead, in reduce.py)."""
    if p == 0:
        return np.zeros_like(delta)
    if p == 1:
        return np.sign(delta)
    if math.isinf(p):
        return np.sign(delta) * (np.abs(delta) == d)
    keep = d != 0
    if p < 1:
        keep = keep & (delta != 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if p == 2:
            local = delta / d
        elif p < 2:
            local = np.sign(delta) * np.abs(delta) ** (p - 1) / d ** (p - 1)
        else:
            local = delta * np.abs(delta) ** (p - 2) / d ** (p - 1)
    return np.where(keep, local, 0.0).astype(delta.dtype, copy=False)


def _rows_per_block(*sizes: int) -> int:
    return max(1, BLOCK // max(1, math.prod(sizes)))


# -- cdist ------------------------------------------------------------------------------------------------------
def _euclidean_mm(x1: Array, x2: Array) -> Array:
    """p = 2 as one matrix product, √(max(|a|² + |b|² − 2a·b, 0)): torch's `_euclidean_dist`, the same
    concatenation, so the rounding is torch's (more than 25 rows, or compute_mode="use_mm_for_euclid_dist")."""
    n1 = np.sum(x1 * x1, axis=-1, keepdims=True)
    n2 = np.sum(x2 * x2, axis=-1, keepdims=True)
    a = np.concatenate([-2 * x1, n1, np.ones_like(n1)], axis=-1)
    b = np.concatenate([x2, np.ones_like(n2), n2], axis=-1)
    return np.sqrt(np.maximum(a @ np.swapaxes(b, -1, -2), 0))


def _batched(x1: Array, x2: Array) -> tuple[Array, Array]:
    batch = np.broadcast_shapes(x1.shape[:-2], x2.shape[:-2])
    return np.broadcast_to(x1, (*batch, *x1.shape[-2:])), np.broadcast_to(x2, (*batch, *x2.shape[-2:]))


@kernel("cdist")
def cdist(x1: Array, x2: Array, p: float = 2.0, use_mm: bool = False) -> Array:
    if p == 2 and use_mm:
        return _euclidean_mm(x1, x2)
    a, b = _batched(x1, x2)
    out = np.empty((*a.shape[:-1], b.shape[-2]), dtype=np.result_type(x1, x2))
    rows = _rows_per_block(*b.shape)  # one row of a against all of b, for every batch
    for s in range(0, a.shape[-2], rows):
        out[..., s:s + rows, :] = p_norm(a[..., s:s + rows, None, :] - b[..., None, :, :], p)
    return out


@cdist.gradient
def _(g: Array, x1: Array, x2: Array, out: Array, p: float = 2.0, use_mm: bool = False) -> tuple[Array, Array]:
    if p == 2:  # Σ_j g[i, j]·(a_i − b_j)/d[i, j], as two matrix products: no differences are made
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(out == 0, 0.0, g / out).astype(out.dtype, copy=False)
        g1 = x1 * ratio.sum(axis=-1, keepdims=True) - ratio @ x2
        g2 = x2 * ratio.sum(axis=-2)[..., None] - np.swapaxes(ratio, -1, -2) @ x1
        return unbroadcast(g1, x1.shape), unbroadcast(g2, x2.shape)
    a, b = _batched(x1, x2)
    g1, g2 = np.zeros(a.shape, dtype=out.dtype), np.zeros(b.shape, dtype=out.dtype)
    rows = _rows_per_block(*b.shape)
    for s in range(0, a.shape[-2], rows):
        delta = a[..., s:s + rows, None, :] - b[..., None, :, :]
        local = p_norm_partial(delta, out[..., s:s + rows, :, None], p) * g[..., s:s + rows, :, None]
        g1[..., s:s + rows, :] = local.sum(axis=-2)
        g2 -= local.sum(axis=-3)
    return unbroadcast(g1, x1.shape), unbroadcast(g2, x2.shape)


# -- pdist ------------------------------------------------------------------------------------------------------
def _pair_runs(n: int) -> list[tuple[int, int]]:
    """Row i's pairs (i, j > i) sit at out[start : start + n − 1 − i]: (i, start) for every row with a pair."""
    runs, start = [], 0
    for i in range(n - 1):
        runs.append((i, start))
        start += n - 1 - i
    return runs


@kernel("pdist")
def pdist(x: Array, p: float = 2.0) -> Array:
    n = x.shape[0]
    out = np.empty(n * (n - 1) // 2, dtype=x.dtype)
    for i, start in _pair_runs(n):  # a row at a time: at most n × features differences at once
        out[start:start + n - 1 - i] = p_norm(x[i] - x[i + 1:], p)
    return out


@pdist.gradient
def _(g: Array, x: Array, out: Array, p: float = 2.0) -> tuple[Array]:
    n = x.shape[0]
    grad = np.zeros_like(x)
    for i, start in _pair_runs(n):
        end = start + n - 1 - i
        local = p_norm_partial(x[i] - x[i + 1:], out[start:end, None], p) * g[start:end, None]
        grad[i] += local.sum(axis=0)
        grad[i + 1:] -= local
    return (grad,)

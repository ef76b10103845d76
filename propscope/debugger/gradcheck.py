"""Gradient check: the backend's gradients against finite differences, in float64.

A fourth-order central difference, [f(x−2h) − 8f(x−h) + 8f(x+h) − f(x+2h)] / 12h, keeps both the
truncation error (h⁴) and the rounding error (ε/h) near 1e-13, so a relative error of 1e-7 is a
real disagreement, not noise.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends.numpy import NumpyProgram
from ..graph.errors import PropscopeError
from .session import Session
from .trace import count_consumers, plan


@dataclass(frozen=True)
class GradCheckRow:
    name: str
    kind: str  # "parameter" or "input"
    relative_error: float  # ‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖)
    max_abs_error: float
    elements: int
    # the largest error rounding in the loss alone could make in the estimate each entry kept (see `rounding_noise`)
    resolution: float = 0.0
    within_noise: bool = False  # every entry's error within its own estimate's rounding noise
    # entries holding NaN or ±inf: in the backward pass's gradient, and in the central differences' estimate
    analytic_nonfinite: int = 0
    numeric_nonfinite: int = 0

    def nonfinite_text(self) -> str:
        """Where a NaN makes the error NaN, which side holds it and what that means; "" where neither does."""
        a, n = self.analytic_nonfinite, self.numeric_nonfinite
        if not a and not n:
            return ""
        if a and not n:
            return (f"the gradient holds NaN or inf at {a:,} entries where the differences are finite: a derivative "
                    "infinite where the loss is not (sqrt, a norm or x^p at 0)")
        if n and not a:
            return f"the differences hold NaN or inf at {n:,} entries: the loss is not finite near these values"
        return f"both hold NaN or inf ({a:,} and {n:,} entries): the loss itself is not finite here"

    def ok(self, tolerance: float) -> bool:
        """Within the relative tolerance, or as close as the differences can tell: where the gradient is too small
        for them (a vanishing one), or the error is at the loss's own rounding, they cannot say it is wrong."""
        return self.relative_error <= tolerance or self.within_noise


def numeric_gradient(f: Callable[[], Any], x: np.ndarray, h: float = 1e-3,
                     at: list[tuple[int, ...]] | None = None, noise: np.ndarray | None = None,
                     analytic: np.ndarray | None = None, cancelled: Callable[[], bool] | None = None) -> np.ndarray:
    """d f / d x by the fourth-order central difference, one element at a time (x is restored); with `at`, only at
    those indices (the others stay 0). `noise`, where given (x's shape), gets how far rounding in f alone could
    move each estimate kept.

    Each element is also estimated with a step 100 times smaller; where the two disagree by more than the small
    step's rounding noise, the stencil straddled a kink (ReLU at 0, say) and the small step's estimate is the one kept.
    With `analytic` (x's shape), an element whose ordinary estimate already agrees with it as closely as two smooth
    estimates must agree is taken as it is, without the small step: half the passes of a check that holds.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    # Index x itself, never x.reshape(-1): for a transposed or strided array (a transpose's value) that
    # reshape is a copy, and perturbing the copy would leave f unchanged.
    for i in np.ndindex(x.shape) if at is None else at:
        if cancelled is not None and cancelled():
            raise _Cancelled
        coarse, coarse_noise = _stencil(f, x, i, h)
        if analytic is not None and _close(coarse, float(analytic[i]), coarse_noise):
            grad[i] = coarse
            if noise is not None:
                noise[i] = coarse_noise
            continue
        fine, fine_noise = _stencil(f, x, i, h / 100)
        # f itself is only exact to a few ulps (NumPy's SIMD loops round by the arrays' alignment), so a gradient
        # of 0 reads as ±1e-12 through the small step: that is no kink
        smooth = _close(coarse, fine, fine_noise)
        grad[i] = coarse if smooth else fine
        if noise is not None:
            noise[i] = coarse_noise if smooth else fine_noise
    return grad


class _Cancelled(Exception):
    """`cancelled()` said stop, between two entries (x is restored: a stencil puts its entry back)."""


def _close(a: float, b: float, noise: float) -> bool:
    """Two estimates of one derivative that agree as smooth ones do: to 1e-6 of their size, or within rounding."""
    return abs(a - b) <= max(1e-6 * max(abs(a), abs(b), 1e-8), 4 * noise)


def _stencil(f: Callable[[], Any], x: np.ndarray, i: tuple[int, ...], h: float) -> tuple[float, float]:
    """The estimate with step h, and how far rounding in f alone could move it (18 ulps of f over 12 h)."""
    orig = x[i]
    samples = []
    for k in (-2, -1, 1, 2):
        x[i] = orig + k * h
        samples.append(float(f()))
    x[i] = orig
    return (samples[0] - 8 * samples[1] + 8 * samples[2] - samples[3]) / (12 * h), rounding_noise(samples, h)


def rounding_noise(samples: Any, h: float) -> float:
    """How far the fourth-order stencil with step h can move from rounding in f alone: 18 ulps of f over 12 h."""
    return 18 * float(np.finfo(np.float64).eps) * float(np.max(np.abs(samples))) / (12 * h)


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    scale = max(float(np.linalg.norm(analytic)), float(np.linalg.norm(numeric)))
    return 0.0 if scale == 0 else float(np.linalg.norm(analytic - numeric)) / scale


@dataclass(frozen=True)
class GradCheckResult:
    """One leaf's check with both gradients kept, for a view that shows them side by side. Where the check was
    sampled, both arrays hold the checked entries only, in the order of `entries` (their indices in the leaf),
    and `size` says how many the leaf has."""

    row: GradCheckRow
    analytic: np.ndarray
    numeric: np.ndarray
    entries: tuple[tuple[int, ...], ...] | None = None
    size: int = 0


AUTO_SAMPLE_ABOVE = 20_000  # parameter and input entries checked one by one up to this; 8 of each tensor above it
AUTO_SAMPLES = 8


def default_samples(session: Session) -> int | None:
    """How many entries of each tensor a check samples when not told: all (None) up to `AUTO_SAMPLE_ABOVE`
    entries of parameters and inputs together (an image's entries count too), `AUTO_SAMPLES` above it."""
    total = sum(int(np.prod(n.shape)) for n in (*session.graph.parameters, *session.graph.inputs))
    return None if total <= AUTO_SAMPLE_ABOVE else AUTO_SAMPLES


def gradcheck(session: Session, h: float = 1e-3, samples: int | None = None,
              progress: Callable[[int, int, str], bool | None] | None = None) -> list[GradCheckRow]:
    """Check every parameter and every (floating) input gradient of the session's loss, in float64; with `samples`,
    at that many entries of each (see `gradcheck_detailed`)."""
    return [r.row for r in gradcheck_detailed(session, h, progress, samples)]


def sample_entries(analytic: np.ndarray, count: int, seed: int) -> list[tuple[int, ...]]:
    """`count` indices of a tensor to check: half where the analytic gradient is largest (where a wrong derivative
    shows most), half drawn at random (seeded by the tensor), all of them where it has no more."""
    if analytic.size <= count:
        return list(np.ndindex(analytic.shape))
    flat = np.abs(analytic).ravel()
    top = np.argpartition(flat, flat.size - count // 2)[flat.size - count // 2:] if count // 2 else np.zeros(0, int)
    rest = np.setdiff1d(np.arange(flat.size), top)
    drawn = np.random.default_rng(seed).choice(rest, count - top.size, replace=False)
    return [tuple(int(v) for v in np.unravel_index(i, analytic.shape)) for i in np.sort(np.concatenate([top, drawn]))]


def gradcheck_detailed(
    session: Session, h: float = 1e-3, progress: Callable[[int, int, str], bool | None] | None = None,
    samples: int | None = None, cancelled: Callable[[], bool] | None = None,
) -> list[GradCheckResult]:
    """`gradcheck` with both gradients of every leaf; `progress(done, total, name)` is told before each leaf,
    and returning False from it stops the check (the leaves done so far are returned); `cancelled()`, asked before
    every entry, stops it there too (a big leaf's entries take seconds each: a closed window's thread ends at once).
    With `samples`, each tensor is checked at that many of its entries (`sample_entries`): four forward passes an
    entry make a real network's every entry a matter of hours; the result's arrays then hold the sampled entries
    only."""
    if session.loss_node is None:
        raise PropscopeError("gradient check needs a loss; this session runs forward only")
    leaves = {k: np.array(session.backend.to_numpy(v), dtype=np.float64) for k, v in session.params.items()}
    for node in session.graph.inputs:
        arr = np.asarray(session.batch[node.name])
        leaves[node.name] = np.array(arr, dtype=np.float64) if arr.dtype.kind == "f" else arr
    # inputs read only through a non-differentiable role (token ids, index tensors) get no gradient to check
    reached = count_consumers(plan(session.graph))
    targets = [(n.name, "parameter") for n in session.graph.parameters]
    targets += [
        (n.name, "input")
        for n in session.graph.inputs
        if n.meta.get("role") != "target" and leaves[n.name].dtype.kind == "f" and n.name in reached
    ]
    program = NumpyProgram(session.graph)
    loss, analytic = _analytic(session, leaves, [name for name, _ in targets])
    noise = 4 * rounding_noise([loss], h)
    rows = []
    for done, (name, kind) in enumerate(targets):
        if progress is not None and progress(done, len(targets), name) is False:
            break
        got = analytic[name]  # None: no gradient reaches it (a head the loss is not on), so it is 0
        shape = leaves[name].shape
        a = np.zeros(shape) if got is None else np.asarray(got, dtype=np.float64).reshape(shape)
        at = None if samples is None else sample_entries(a, samples, zlib.crc32(name.encode()))
        rounding = np.zeros(shape)
        try:
            numeric = numeric_gradient(lambda: program.predict(leaves), leaves[name], h, at, rounding, analytic=a,
                                       cancelled=cancelled)
        except _Cancelled:
            break
        size, entries = a.size, None
        if at is not None and len(at) < a.size:
            picked, entries = tuple(np.array(at).T), tuple(at)
            a, numeric, rounding = a[picked], numeric[picked], rounding[picked]
        # an exact 0 that the differences confirm to within f's own rounding: both say no gradient
        agree = not a.any() and float(np.max(np.abs(numeric), initial=0.0)) <= noise
        error = np.abs(a - numeric)
        row = GradCheckRow(
            name, kind, 0.0 if agree else relative_error(a, numeric), float(np.max(error, initial=0.0)),
            numeric.size, 4 * float(np.max(rounding, initial=0.0)), bool(np.all(error <= 4 * rounding)),
            int(np.count_nonzero(~np.isfinite(a))), int(np.count_nonzero(~np.isfinite(numeric))),
        )
        rows.append(GradCheckResult(row, a, numeric, entries, size))
    return rows


def _analytic(
    session: Session, leaves: dict[str, np.ndarray], wrt: list[str]
) -> tuple[float, dict[str, np.ndarray | None]]:
    """The session backend's own gradients, recomputed in float64."""
    from ..backends import get_backend

    backend = get_backend(session.backend.name, "float64", session.backend.device)
    program = backend.compile(session.graph)
    loss, grads = program.loss_and_grads({k: backend.asarray(v) for k, v in leaves.items()}, wrt)
    return float(backend.to_numpy(loss)), {k: None if v is None else backend.to_numpy(v) for k, v in grads.items()}

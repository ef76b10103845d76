"""The NumPy kernel table: each op's forward with its hand-written derivative right beside it.

Elementwise ops give `local`: their partial derivatives, one array per input, which is what the
chain-rule view shows. Their VJP is then always the same: upstream × local, summed back over
broadcast axes. Other ops (matrix products, reductions, losses) give `vjp` directly.

Some ops' torch backward *selects* rather than multiplies: relu's threshold_backward, clamp's where(),
maximum's masked_fill, triu applied to the gradient, floor's zeros. Where such an op drops the gradient,
torch gives 0 even for an infinite or NaN upstream, while upstream × 0 would be NaN: a NaN gradient
torch does not have. Those kernels register their partials with `selecting` (the gradient is 0 wherever
the partial is 0) or add `keeps` (the exact places torch multiplies, per input); `local` stays the
partials the chain-rule view shows.
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

Array = np.ndarray


def unbroadcast(grad: Array, shape: tuple[int, ...]) -> Array:
    """Sum `grad` back down to `shape`, undoing NumPy broadcasting (a value used n times gets n gradients)."""
    if grad.shape == shape:
        return grad
    axes = _broadcast_axes(grad.shape, shape)
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad.reshape(shape)


@functools.lru_cache(maxsize=4096)
def _broadcast_axes(grad_shape: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    lead = len(grad_shape) - len(shape)
    return tuple(range(lead)) + tuple(
        i + lead for i, d in enumerate(shape) if d == 1 and grad_shape[i + lead] != 1
    )


# -- working memory reused from call to call ------------------------------------------------------------------
SCRATCH_BYTES = 256 * 2**20  # the most kept for reuse (conv.IM2COL_BYTES: a whole window matrix); larger is fresh
_scratch_lock = threading.Lock()
_scratch: list[Array] = []  # the one buffer, grown to the largest request so far and kept


@contextmanager
def scratch(nbytes: int) -> Iterator[Array]:
    """`nbytes` of working memory (uint8) for the duration of a `with`: a convolution's window matrix.

    Memory a process has just been given costs a page fault per page on first touch, and on a virtual machine that
    hands freed memory back to its host (a balloon) far more: VGG-16's second convolution at 224×224 in float64
    (a 231 MB window matrix) took 0.4-0.7 s to touch after a pause of a few seconds, as between two steps taken by
    hand, against 30 ms in memory the process held already. So one buffer is kept, as large as the largest window
    matrix so far (up to SCRATCH_BYTES), and lent out; a thread that finds it lent (another job computing), or a
    larger request, gets a fresh array. The slabs stay as they were (conv.IM2COL_BYTES): OpenBLAS may round a
    product of another shape differently in the last bits, and the numbers must not move. Nothing borrowed may
    outlive the `with`: a kernel returns arrays of its own, never views of this.
    """
    if nbytes > SCRATCH_BYTES or not _scratch_lock.acquire(blocking=False):
        yield np.empty(nbytes, dtype=np.uint8)
        return
    try:
        if not _scratch or _scratch[0].nbytes < nbytes:
            _scratch.clear()  # the smaller buffer goes before the larger one comes
            _scratch.append(np.empty(nbytes, dtype=np.uint8))
        yield _scratch[0][:nbytes]
    finally:
        _scratch_lock.release()


def borrowed(buf: Array, shape: tuple[int, ...], dtype: Any) -> Array:
    """The front of a `scratch` buffer as a C-contiguous array of `shape` and `dtype`."""
    dtype = np.dtype(dtype)
    return buf[: math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)


def times(g: Array, p: Array | float, keep: Array | None) -> Array:
    """upstream × local where `keep` holds, 0 elsewhere (None: everywhere), never computing upstream × 0 there."""
    if keep is None:
        return g * p
    out = np.zeros(np.broadcast_shapes(np.shape(g), np.shape(p)), dtype=np.result_type(g, p))
    np.multiply(g, p, out=out, where=keep)
    return out


class Kernel:
    """One op on NumPy: forward, and either `local` (elementwise partials) or `vjp`."""

    __slots__ = ("_keep", "_local", "_selects", "_vjp", "_vjp_skips", "forward", "name")

    def __init__(self, name: str, forward: Callable[..., Any]) -> None:
        self.name = name
        self.forward = forward
        self._local: Callable[..., tuple[Array | None, ...]] | None = None
        self._vjp: Callable[..., tuple[Array | None, ...]] | None = None
        self._vjp_skips = False  # whether the VJP takes `needs`, to skip gradients nobody wants
        self._selects = False  # whether the VJP selects (torch's where/masked_fill/zeros) instead of multiplying
        self._keep: Callable[..., tuple[Array | None, ...]] | None = None  # where it multiplies, per input

    # decorators, used right under the forward they belong to
    def local(self, fn: Callable[..., tuple[Array | None, ...]]) -> Callable[..., Any]:
        self._local = fn
        return fn

    def selecting(self, fn: Callable[..., tuple[Array | None, ...]]) -> Callable[..., Any]:
        """`local` for an op whose torch backward selects: where a partial is 0, the gradient is 0 (not
        upstream × 0, which is NaN for an infinite or NaN upstream); elsewhere it is upstream × partial."""
        self._local = fn
        self._selects = True
        return fn

    def keeps(self, fn: Callable[..., tuple[Array | None, ...]]) -> Callable[..., Any]:
        """Where the VJP is upstream × partial, per input, given the kernel's own arguments (`local`'s); 0
        elsewhere. None for an input: a plain product everywhere. For ops whose partial can be 0 where torch
        still multiplies (hardswish at −1.5, the base of a^b where a^(b−1) = 0)."""
        self._keep = fn
        self._selects = True
        return fn

    def gradient(self, fn: Callable[..., tuple[Array | None, ...]]) -> Callable[..., Any]:
        self._vjp = fn
        self._vjp_skips = "needs" in inspect.signature(fn).parameters
        return fn

    @property
    def elementwise(self) -> bool:
        return self._local is not None

    @property
    def selects(self) -> bool:
        """Whether the elementwise VJP selects where torch's does, rather than multiplying everywhere."""
        return self._selects

    def kept(
        self, inputs: Any, out: Array, attrs: dict[str, Any], parts: Any
    ) -> tuple[Array | None, ...] | None:
        """Per input, where the VJP multiplies upstream × partial (None: everywhere); None for a product op."""
        if not self._selects:
            return None
        if self._keep is not None:
            return self._keep(*inputs, out, **attrs)
        return tuple([None if p is None else np.asarray(p) != 0 for p in parts])

    def partials(self, inputs: list[Array], out: Array, attrs: dict[str, Any]) -> tuple[Array | None, ...] | None:
        """Elementwise local derivatives ∂out/∂input_i, or None for ops that are not elementwise."""
        return None if self._local is None else self._local(*inputs, out, **attrs)

    def vjp(
        self, g: Array, inputs: list[Array], out: Array, attrs: dict[str, Any], needs: tuple[bool, ...] | None = None
    ) -> tuple[Array | None, ...]:
        """dL/d(input) for each input; `needs` may mark inputs whose gradient nobody will read."""
        if self._vjp is not None:
            if needs is not None and self._vjp_skips:
                return self._vjp(g, *inputs, out, needs=needs, **attrs)
            return self._vjp(g, *inputs, out, **attrs)
        assert self._local is not None, f"kernel {self.name} has no derivative"
        parts = self._local(*inputs, out, **attrs)
        keeps = self.kept(inputs, out, attrs, parts)
        if keeps is None:
            return tuple([None if p is None else unbroadcast(g * p, x.shape) for p, x in zip(parts, inputs)])  # noqa: B905
        return tuple([
            None if p is None else unbroadcast(times(g, p, k), x.shape)
            for p, k, x in zip(parts, keeps, inputs)  # noqa: B905
        ])


KERNELS: dict[str, Kernel] = {}


def kernel(name: str) -> Callable[[Callable[..., Any]], Kernel]:
    """Register `fn` as the forward of op `name`; returns the Kernel to hang its derivative on."""

    def register(fn: Callable[..., Any]) -> Kernel:
        if name in KERNELS:
            raise ValueError(f"NumPy kernel {name!r} defined twice")
        KERNELS[name] = Kernel(name, fn)
        return KERNELS[name]

    return register

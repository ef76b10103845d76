"""The NumPy kernel table: each op's forward with its hand-written derivative right beside it.

Elementwise ops give `local`: their partial derivatives, one array per input, which is what the
chain-rule view shows. Their VJP is then always the same: upstream × local, summed back over
broadcast axes. Other ops (matrix products, reductions, losses) give `vjp` directly.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
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


class Kernel:
    """One op on NumPy: forward, and either `local` (elementwise partials) or `vjp`."""

    __slots__ = ("_local", "_vjp", "_vjp_skips", "forward", "name")

    def __init__(self, name: str, forward: Callable[..., Any]) -> None:
        self.name = name
        self.forward = forward
        self._local: Callable[..., tuple[Array | None, ...]] | None = None
        self._vjp: Callable[..., tuple[Array | None, ...]] | None = None
        self._vjp_skips = False  # whether the VJP takes `needs`, to skip gradients nobody wants

    # decorators, used right under the forward they belong to
    def local(self, fn: Callable[..., tuple[Array | None, ...]]) -> Callable[..., Any]:
        self._local = fn
        return fn

    def gradient(self, fn: Callable[..., tuple[Array | None, ...]]) -> Callable[..., Any]:
        self._vjp = fn
        self._vjp_skips = "needs" in inspect.signature(fn).parameters
        return fn

    @property
    def elementwise(self) -> bool:
        return self._local is not None

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
        return tuple([None if p is None else unbroadcast(g * p, x.shape) for p, x in zip(parts, inputs)])  # noqa: B905


KERNELS: dict[str, Kernel] = {}


def kernel(name: str) -> Callable[[Callable[..., Any]], Kernel]:
    """Register `fn` as the forward of op `name`; returns the Kernel to hang its derivative on."""

    def register(fn: Callable[..., Any]) -> Kernel:
        if name in KERNELS:
            raise ValueError(f"NumPy kernel {name!r} defined twice")
        KERNELS[name] = Kernel(name, fn)
        return KERNELS[name]

    return register

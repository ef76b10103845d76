"""The torch kernel table: one short torch function per catalog op, registered by name.

Each op family has a module of its own here, named as in `graph/ops/` and `backends/numpy/`;
importing this package loads them all. No derivative is written in any of them: gradients come
from `torch.autograd` (see `backend.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ...graph.errors import UnsupportedOpError
from ...graph.ir import Node

Tensor = torch.Tensor
KERNELS: dict[str, Callable[..., Tensor]] = {}


def kernel(name: str) -> Callable[[Callable[..., Tensor]], Callable[..., Tensor]]:
    """Register the torch forward of catalog op `name`: fn(*inputs, **attrs) -> tensor."""

    def register(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        if name in KERNELS:
            raise ValueError(f"torch kernel {name!r} defined twice")
        KERNELS[name] = fn
        return fn

    return register



def kernel_for(node: Node) -> Callable[..., Tensor]:
    try:
        return KERNELS[node.op.name]
    except KeyError:
        raise UnsupportedOpError(
            f"the torch backend has no kernel for op {node.op.name!r} (node {node.name!r})"
        ) from None



def integer_ids(ids: Tensor) -> Tensor:
    """Integer ids; float ids (data cast to the session's dtype) are whole numbers and are rounded."""
    return torch.round(ids).long() if ids.is_floating_point() else ids.long()

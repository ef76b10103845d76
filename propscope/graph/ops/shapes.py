"""Shape rules shared by many ops; each raises ShapeError with the shapes in the message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError

Shape = tuple[int, ...]


def fmt(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def same(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    return tuple(shapes[0])


def broadcast(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    """NumPy's broadcasting of the shapes (np.broadcast_shapes, in plain Python: this runs for every
    elementwise node a reader adds, and the NumPy call costs more than the rule)."""
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for s in shapes:
        offset = ndim - len(s)
        for i, d in enumerate(s):
            have = out[offset + i]
            if d != have:
                if have == 1:
                    out[offset + i] = d
                elif d != 1:
                    raise ShapeError("cannot broadcast " + " with ".join(fmt(s) for s in shapes))
    return tuple(out)


def scalar(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    return ()


def matmul(a: Shape, b: Shape) -> Shape:
    if not a or not b:
        raise ShapeError(f"matmul needs at least 1-D operands, got {fmt(a)} and {fmt(b)}")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ShapeError(f"inner dimensions differ: {fmt(a)} @ {fmt(b)} ({a2[-1]} != {b2[-2]})")
    try:
        batch = tuple(a2[:-2]) if a2[:-2] == b2[:-2] else broadcast([a2[:-2], b2[:-2]], {})
    except ShapeError:
        raise ShapeError(f"batch dimensions do not broadcast: {fmt(a)} @ {fmt(b)}") from None
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def axes(attr: Any, ndim: int) -> tuple[int, ...]:
    """Normalise an `axis` attribute (None, int or sequence) to sorted non-negative axes."""
    if attr is None:
        return tuple(range(ndim))
    items = (attr,) if isinstance(attr, int) else tuple(attr)
    out = []
    for ax in items:
        if not -ndim <= ax < ndim:
            raise ShapeError(f"axis {ax} is out of range for {ndim}-D input")
        out.append(ax % ndim)
    return tuple(sorted(set(out)))


def reduce(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    shape = tuple(shapes[0])
    reduced = axes(attrs.get("axis"), len(shape))
    if attrs.get("keepdims"):
        return tuple(1 if i in reduced else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in reduced)


def one_axis(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    """Same shape, after checking that the op's single `axis` exists."""
    shape = tuple(shapes[0])
    axes(attrs.get("axis", -1), len(shape))
    return shape

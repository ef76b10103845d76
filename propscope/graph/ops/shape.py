"""Indexing and shape ops: pick elements by index tensors, flip, expand, tile, keep a triangle.

None of these computes anything new: each output element is a copy of some input element (or 0),
so every gradient is the upstream gradient routed back to where the element came from, summed
where one input element fed several outputs (repeated indices, expand, tile). Index tensors are
data: those roles are non-differentiable. (`shapes.py` beside this file holds shared shape rules.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]


def _ints(name: str, value: Any) -> tuple[int, ...]:
    """An attribute that must be a tuple of integers (an int alone counts as one)."""
    items = (value,) if isinstance(value, int) else value
    try:
        out = tuple(items)
    except TypeError:
        raise ShapeError(f"{name} must be a tuple of integers, got {value!r}") from None
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in out):
        raise ShapeError(f"{name} must be a tuple of integers, got {value!r}")
    return tuple(int(v) for v in out)


# -- gather (torch.gather, ONNX GatherElements) -----------------------------------------------------
def _gather(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, idx = tuple(shapes[0]), tuple(shapes[1])
    if not x:
        raise ShapeError("gather needs at least a 1-D input")
    (axis,) = S.axes(int(attrs.get("axis", 0)), len(x))
    if len(idx) != len(x):
        raise ShapeError(f"gather's index {S.fmt(idx)} must have as many axes as x {S.fmt(x)}")
    _within_off_axis("gather", idx, x, axis)
    return idx


def _within_off_axis(op: str, idx: Shape, x: Shape, axis: int) -> None:
    """An element-wise index (gather's, scatter_reduce's) is no larger than x along every axis but its own."""
    for d, (n, m) in enumerate(zip(idx, x, strict=True)):
        if d != axis and n > m:
            raise ShapeError(f"{op}'s index {S.fmt(idx)} is larger than x {S.fmt(x)} along axis {d}")


define(OpDef(
    "gather", ("x", "idx"),
    "out[i, j, k] = x[i, idx[i, j, k], k]  (axis = 1: each element picks its own index along the axis)",
    {"x": "∂L/∂x[i, m, k] = Σ over the j where idx[i, j, k] = m of ∂L/∂out[i, j, k]  (np.add.at)"},
    _gather, "gather", category="shape", nondifferentiable=frozenset({"idx"}), default_attrs={"axis": 0},
    summary="pick one element along an axis for every entry of an index tensor shaped like the output "
            "(torch.gather, ONNX GatherElements); negative indices count from the end",
))


# -- scatter_reduce (torch.scatter_reduce, ONNX ScatterElements with a reduction) ------------------------------
SCATTER_REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


def _scatter_reduce(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, src, idx = (tuple(s) for s in shapes)
    if not x:
        raise ShapeError("scatter_reduce needs at least a 1-D input")
    (axis,) = S.axes(int(attrs.get("axis", 0)), len(x))
    if attrs.get("reduce") not in SCATTER_REDUCTIONS:
        raise ShapeError(f"scatter_reduce's reduce must be one of {', '.join(SCATTER_REDUCTIONS)}, "
                         f"got {attrs.get('reduce')!r}")
    if not isinstance(attrs.get("include_self", True), bool):
        raise ShapeError(f"include_self must be True or False, got {attrs.get('include_self')!r}")
    if idx != src or len(idx) != len(x):
        raise ShapeError(f"scatter_reduce's index {S.fmt(idx)} must have src's shape {S.fmt(src)} and as many axes "
                         f"as x {S.fmt(x)}")
    _within_off_axis("scatter_reduce", idx, x, axis)
    return x


define(OpDef(
    "scatter_reduce", ("x", "src", "idx"),
    "out = x, then out[i, idx[i, j], k] = reduce(out[i, idx[i, j], k], src[i, j, k])  (axis = 1; reduce: sum, prod, "
    "mean, amax, amin over everything that lands there; without include_self, x's own value there is left out)",
    {"x": "∂L/∂x = ∂L/∂out · ∂reduce/∂x where x takes part (sum: 1; mean: 1/n; prod: the others' product; amax and "
          "amin: 1/(ties) where x is the extreme), 0 where include_self leaves it out",
     "src": "∂L/∂src[i, j, k] = ∂L/∂out[i, idx[i, j], k] · ∂reduce/∂src  (as for x: 1, 1/n, the others' product, "
            "1/(ties) at the extreme)"},
    _scatter_reduce, "scatter", category="shape", nondifferentiable=frozenset({"idx"}),
    default_attrs={"axis": 0, "reduce": "sum", "include_self": True},
    # the chain rule of the node's own reduction, not the five at once (where nothing lands, out = x whatever it is)
    derivatives_by=("reduce", {
        "sum": {"x": "∂L/∂x = ∂L/∂out  (0 where src lands and include_self=False)",
                "src": "∂L/∂src[i, j, k] = ∂L/∂out[i, idx[i, j], k]"},
        "prod": {"x": "where src lands: ∂L/∂x = ∂L/∂out · Π (the src landing there), 0 if include_self=False; "
                      "elsewhere ∂L/∂out",
                 "src": "∂L/∂src[i, j, k] = ∂L/∂out[i, idx[i, j], k] · Π (the others landing there, x's own value "
                        "with include_self)"},
        "mean": {"x": "where src lands: ∂L/∂x = ∂L/∂out / n,  n = 1 + how many land, 0 if include_self=False; "
                      "elsewhere ∂L/∂out",
                 "src": "∂L/∂src[i, j, k] = ∂L/∂out[i, idx[i, j], k] / n,  n = how many land there (x's own value "
                        "counted with include_self)"},
        "amax": {"x": "where src lands: ∂L/∂x = ∂L/∂out / ties if x is the largest there (include_self), else 0; "
                      "elsewhere ∂L/∂out",
                 "src": "∂L/∂src[i, j, k] = ∂L/∂out[i, idx[i, j], k] / ties if src[i, j, k] is the largest there, "
                        "else 0"},
        "amin": {"x": "where src lands: ∂L/∂x = ∂L/∂out / ties if x is the smallest there (include_self), else 0; "
                      "elsewhere ∂L/∂out",
                 "src": "∂L/∂src[i, j, k] = ∂L/∂out[i, idx[i, j], k] / ties if src[i, j, k] is the smallest there, "
                        "else 0"},
    }),
    summary="reduce each src element into x at its index along an axis: the sums, products, means, maxima or minima "
            "of what lands on each element (torch.scatter_reduce, ONNX ScatterElements with a reduction; "
            "PyTorch Geometric's message aggregation)",
))


# -- flip ---------------------------------------------------------------------------------------
def _flip(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    axes = _ints("flip's axes", attrs.get("axes", ()))
    if len(set(S.axes(axes, len(x)))) != len(axes):
        raise ShapeError(f"flip's axes {axes} name an axis twice")
    return x


define(OpDef(
    "flip", ("x",), "out[..., i, ...] = x[..., n − 1 − i, ...]  (reversed along each of the axes)",
    {"x": "∂L/∂x = ∂L/∂out reversed along the same axes"},
    _flip, "flip", category="shape", default_attrs={"axes": (0,)},
    summary="reverse the order of the elements along the given axes (torch.flip)",
))


# -- expand (torch.Tensor.expand) ---------------------------------------------------------------------
def expanded_shape(x: Shape, attr: Any) -> Shape:
    """The shape torch's x.expand(*shape) gives: −1 keeps an axis, new axes may only come first."""
    shape = _ints("expand's shape", attr)
    lead = len(shape) - len(x)
    if lead < 0:
        raise ShapeError(f"cannot expand x {S.fmt(x)} to fewer axes {shape}")
    out = []
    for d, size in enumerate(shape):
        have = x[d - lead] if d >= lead else None
        if size == -1:
            if have is None:
                raise ShapeError(f"expand's shape {shape}: −1 (keep) is not allowed for the new leading axis {d}")
            size = have
        elif size < 0 or (have is not None and have not in (1, size)):
            raise ShapeError(f"cannot expand x {S.fmt(x)} to {shape}: axis {d} has size {have}, only 1 can grow")
        out.append(size)
    return tuple(out)


def _expand(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    return expanded_shape(tuple(shapes[0]), attrs.get("shape"))


define(OpDef(
    "expand", ("x",), "out = x repeated along its size-1 axes (and new leading axes) without copying",
    {"x": "∂L/∂x = ∂L/∂out summed over the expanded axes"},
    _expand, "expand", category="shape", default_attrs={"shape": ()},
    summary="broadcast x to a larger shape (torch.expand: −1 keeps an axis, new axes come first)",
))


# -- tile (torch.Tensor.repeat, ONNX Tile) ------------------------------------------------------------
def _tile(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    repeats = _ints("tile's repeats", attrs.get("repeats"))
    if len(repeats) < len(x):
        raise ShapeError(f"tile needs a repeat count for each of the {len(x)} axes of x {S.fmt(x)}, got {repeats}")
    if any(r < 0 for r in repeats):
        raise ShapeError(f"tile's repeats {repeats} cannot be negative")
    padded = (1,) * (len(repeats) - len(x)) + x
    return tuple(r * d for r, d in zip(repeats, padded, strict=True))


define(OpDef(
    "tile", ("x",), "out = x laid side by side r_k times along each axis k",
    {"x": "∂L/∂x = Σ over the r copies of ∂L/∂out[copy]"},
    _tile, "tile", category="shape", default_attrs={"repeats": (1,)},
    summary="repeat the whole tensor r_k times along axis k (torch.Tensor.repeat, ONNX Tile); more repeats "
            "than axes add leading axes",
))


# -- triangles ----------------------------------------------------------------------------------
def _triangle(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    if len(x) < 2:
        raise ShapeError(f"triu/tril work on matrices (the last two axes), got {S.fmt(x)}")
    _ints("diagonal", attrs.get("diagonal", 0))
    return x


define(OpDef(
    "triu", ("x",), "out[.., i, j] = x[.., i, j] if j − i ≥ k else 0",
    {"x": "∂out/∂x = 1[j − i ≥ k]"}, _triangle, "triu", category="shape", elementwise=True,
    default_attrs={"diagonal": 0},
    summary="keep the upper triangle of the last two axes: k = diagonal (0 the main diagonal, >0 above it)",
))
define(OpDef(
    "tril", ("x",), "out[.., i, j] = x[.., i, j] if j − i ≤ k else 0",
    {"x": "∂out/∂x = 1[j − i ≤ k]"}, _triangle, "tril", category="shape", elementwise=True,
    default_attrs={"diagonal": 0},
    summary="keep the lower triangle of the last two axes: k = diagonal (0 the main diagonal, <0 below it)",
))


# -- index_nd (x[:, i, j]: several index tensors at once) ---------------------------------------------
INDEX_ROLES = ("idx1", "idx2", "idx3", "idx4", "idx5", "idx6")


def indexed_axes(ndim: int, n_indices: int, attr: Any) -> tuple[int, ...]:
    """The axes the index tensors address, non-negative; None means the first n."""
    axes = tuple(range(n_indices)) if attr is None else _ints("index_nd's axes", attr)
    if len(axes) != n_indices:
        raise ShapeError(f"index_nd got {n_indices} index tensors for {len(axes)} axes {axes}")
    if len(axes) > ndim:
        raise ShapeError(f"index_nd: {len(axes)} index tensors for a {ndim}-D input")
    norm = S.axes(axes, ndim)
    if len(norm) != len(axes):
        raise ShapeError(f"index_nd's axes {axes} name an axis twice")
    return tuple(a % ndim for a in axes)


def _index_nd(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    axes = indexed_axes(len(x), len(shapes) - 1, attrs.get("axes"))
    try:
        picked = tuple(np.broadcast_shapes(*(tuple(s) for s in shapes[1:])))
    except ValueError:
        raise ShapeError("index_nd's index tensors do not broadcast: "
                         + " with ".join(S.fmt(tuple(s)) for s in shapes[1:])) from None
    rest = [d for i, d in enumerate(x) if i not in axes]
    if sorted(axes) == list(range(min(axes), max(axes) + 1)):  # consecutive: the picked axes stay in place
        first = min(axes)
        return (*x[:first], *picked, *x[first + len(axes):])
    return (*picked, *rest)  # torch and NumPy put them first when other axes separate the indexed ones


define(OpDef(
    "index_nd", ("x", *INDEX_ROLES),
    "out[a, b] = x[a, idx1[b], idx2[b]]  (axes 1, 2: the index tensors, broadcast together, pick elements)",
    {"x": "∂L/∂x[a, m, n] = Σ over the b where (idx1[b], idx2[b]) = (m, n) of ∂L/∂out[a, b]  (np.add.at)"},
    _index_nd, "[i,j]", category="shape", min_arity=2, nondifferentiable=frozenset(INDEX_ROLES),
    default_attrs={"axes": None},
    summary="advanced indexing with one integer tensor per indexed axis (x[:, i, j] in torch); axes None "
            "means the first ones; consecutive axes keep their place, separated ones move to the front",
))


# -- index_put (x[:, i, j] = values, or += with accumulate: torch's index_put, scatter-add) -------------
def _index_put(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, values = tuple(shapes[0]), tuple(shapes[1])
    if len(shapes) < 3:
        raise ShapeError("index_put needs at least one index tensor")
    if not isinstance(attrs.get("accumulate", False), bool):
        raise ShapeError(f"accumulate must be True or False, got {attrs.get('accumulate')!r}")
    picked = _index_nd([x, *shapes[2:]], {"axes": attrs.get("axes")})
    try:
        fits = np.broadcast_shapes(values, picked) == picked
    except ValueError:
        fits = False
    if not fits:
        raise ShapeError(f"index_put's values {S.fmt(values)} do not broadcast to the {S.fmt(picked)} elements "
                         "the index tensors pick")
    return x


define(OpDef(
    "index_put", ("x", "values", *INDEX_ROLES),
    "out = x, then out[a, idx1[b], idx2[b]] (+)= values[a, b]  (axes 1, 2; += with accumulate: repeats add up)",
    {"x": "∂L/∂x = ∂L/∂out, and 0 where a value overwrote x (none is overwritten with accumulate)",
     "values": "∂L/∂values[a, b] = ∂L/∂out[a, idx1[b], idx2[b]]  (summed where values were broadcast)"},
    _index_put, "[i,j]=", category="shape", min_arity=3, nondifferentiable=frozenset(INDEX_ROLES),
    default_attrs={"axes": None, "accumulate": False},
    summary="put values at the elements the index tensors pick (x[:, i, j] = v in torch; index_put), or add "
            "them there with accumulate (index_put(..., accumulate=True): scatter-add, as F.fold and "
            "max unpooling decompose); positions as in index_nd",
))


# -- a cast to a narrower float dtype (mixed precision: x.half(), autocast) --------------------------------------
NARROW_FLOATS = ("float16", "bfloat16", "float32")


def narrows(source: str | None, target: str | None) -> bool:
    """Whether a reader makes a cast from float dtype `source` to `target` a rounding `cast` step: to float16 or
    bfloat16 from any other float, where ±65504 (float16) or 8 bits of mantissa make NaN and inf that a user
    debugs. A float32 island in a float64 model (transformers' RMSNorm, rotary angles, softmax) is computed in the
    session's dtype instead, and said: rounding there would only blur a float64 session's exactness (its
    gradients checked to 1e-15 against autograd of the module with the casts removed)."""
    if source is None or target is None or source == target:
        return False
    return target in ("float16", "bfloat16")


def round_to_float(x: np.ndarray, dtype: str) -> np.ndarray:
    """x rounded to the nearest value of `dtype` (ties to even, overflowing to ±inf, NaN kept), in x's dtype.
    bfloat16, which NumPy lacks, is torch's c10::round_to_nearest_even on float32's bits: the 16 high bits,
    rounded by the 16 low ones. float64 goes through float32 first, as torch converts it (rounding twice)."""
    if dtype == "bfloat16":
        with np.errstate(over="ignore"):
            single = np.asarray(x, dtype=np.float32)
        bits = single.view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
        return np.where(np.isnan(single), single, rounded).astype(x.dtype, copy=False)
    with np.errstate(over="ignore"):  # beyond the dtype's range is ±inf, as in torch
        if dtype == "float16" and x.dtype == np.float64:
            return np.asarray(x).astype(np.float32).astype(np.float16).astype(x.dtype)  # through float32, as torch
        return np.asarray(x).astype(dtype).astype(x.dtype, copy=False)


def _cast(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    if attrs.get("dtype") not in NARROW_FLOATS:
        raise ShapeError(f"cast rounds to one of {', '.join(NARROW_FLOATS)}, got {attrs.get('dtype')!r}")
    return tuple(shapes[0])


define(OpDef(
    "cast", ("x",), "out = x rounded to the narrower float dtype (float16: ±65504 at most, beyond it ±∞)",
    {"x": "∂L/∂x = ∂L/∂out rounded to the same dtype (torch casts the gradient back)"},
    _cast, "→fp", category="shape", default_attrs={"dtype": "float16"},
    summary="a cast to a narrower float (x.half(), x.bfloat16(), autocast): the values round through it and "
            "stay in the session's dtype, and so does the gradient flowing back, as torch's _to_copy backward",
))
define(OpDef(
    "detach", ("x",), "out = x, and no gradient flows back through it (∂L/∂x gets nothing from here)", {},
    S.same, "detach", category="shape", nondifferentiable=frozenset({"x"}),
    summary="the value as it is, cut off from the gradient (x.detach(), a torch.no_grad() block inside the "
            "forward): what reaches x reaches it by other paths only, as in torch",
))

"""Layers between the dense ones: embedding, dropout, and getting at parts of a tensor (norms: norm.py).

Token ids and index tensors are data, not trainable values: those roles are
non-differentiable, so the debugger shows no gradient flowing into them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]


def _embedding(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    ids, table = tuple(shapes[0]), tuple(shapes[1])
    if len(table) != 2:
        raise ShapeError(f"the embedding table must be (vocabulary, dim), got {S.fmt(table)}")
    return (*ids, table[1])


define(OpDef(
    "embedding", ("ids", "E"), "out[..., :] = E[ids[...], :]  (one row of the table per token id)",
    {"E": "∂L/∂E[k] = Σ over the positions where ids = k of ∂L/∂out[position]  (np.add.at); 0 for k = padding_idx"},
    _embedding, "emb", category="shape", nondifferentiable=frozenset({"ids"}), default_attrs={"padding_idx": None},
    summary="look up one row of a table per integer id (token ids are data: no gradient); the padding_idx row, "
            "if any, gets no gradient (PyTorch's nn.Embedding(padding_idx=...))",
))

def _embedding_bag(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    ids, table, offsets = (tuple(s) for s in shapes[:3])  # shapes: offsets[0] is how many offsets there are
    if len(table) != 2:
        raise ShapeError(f"the embedding table must be (vocabulary, dim), got {S.fmt(table)}")
    if len(ids) != 1 or len(offsets) != 1:
        raise ShapeError(f"embedding_bag takes 1-D ids and offsets (a 2-D batch is flattened by the reader), got "
                         f"ids {S.fmt(ids)} and offsets {S.fmt(offsets)}")
    if len(shapes) > 3 and tuple(shapes[3]) != ids:
        raise ShapeError(f"per-sample weights {S.fmt(tuple(shapes[3]))} must match the ids {S.fmt(ids)}")
    mode = attrs.get("mode", "sum")
    if mode not in ("sum", "mean", "max"):
        raise ShapeError(f"embedding_bag mode {mode!r} is not sum, mean or max")
    if len(shapes) > 3 and mode != "sum":
        raise ShapeError(f"per-sample weights need mode 'sum', not {mode!r} (as in PyTorch)")
    bags = offsets[0] - (1 if attrs.get("include_last_offset") else 0)
    if bags < 0:
        raise ShapeError("include_last_offset needs at least one offset")
    return (bags, table[1])


define(OpDef(
    "embedding_bag", ("ids", "E", "offsets", "w"),
    "out[b, :] = Σ, mean or max over the ids k of bag b (ids[offsets[b]] up to the next offset) of w[k]·E[ids[k], :]",
    {"E": "∂L/∂E[r] = Σ over the bag entries with id r of ∂L/∂out[bag] · w (sum), / the bag's size (mean); "
          "max: ∂L/∂out[bag, d] to the row that was largest in feature d",
     "w": "∂L/∂w[k] = ∂L/∂out[bag of k] · E[ids[k], :]"},
    _embedding_bag, "bag", category="shape", min_arity=3, nondifferentiable=frozenset({"ids", "offsets"}),
    default_attrs={"mode": "sum", "padding_idx": None, "include_last_offset": False},
    summary="the rows of a table looked up for each bag of ids, summed, averaged or maxed per bag "
            "(PyTorch's nn.EmbeddingBag: recommendation models' sparse features); padding_idx entries are left out",
))

define(OpDef(
    "dropout", ("x",), "out = x · m / (1 − p),  m ~ Bernoulli(1 − p) drawn from the seed;  out = x in eval",
    {"x": "∂out/∂x = m / (1 − p)  (1 in eval)"}, S.same, "drop", elementwise=True,
    default_attrs={"p": 0.5, "training": True, "seed": 0},
    summary="zero each element with probability p and scale the rest by 1/(1 − p); seeded, so steps repeat",
))


def _concat(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    first = tuple(shapes[0])
    if not first:
        raise ShapeError("concat needs at least 1-D inputs")
    (axis,) = S.axes(int(attrs.get("axis", 0)), len(first))
    total = 0
    for s in shapes:
        s = tuple(s)
        if len(s) != len(first) or s[:axis] + s[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ShapeError(
                f"cannot concatenate {' and '.join(S.fmt(tuple(t)) for t in shapes)} along axis {axis}: "
                "the other axes differ"
            )
        total += s[axis]
    return (*first[:axis], total, *first[axis + 1:])


define(OpDef(
    "concat", ("x...",), "out = [x1, x2, …] joined along an axis",
    {"x...": "∂L/∂x_k = the part of ∂L/∂out where x_k sits"},
    _concat, "‖", category="shape", default_attrs={"axis": 0},
    summary="join tensors along an axis (torch.cat)",
))


def slices(shape: Shape, attrs: Mapping[str, Any]) -> tuple[slice, ...]:
    """One Python slice per axis from the `axes`, `starts`, `stops`, `steps` attrs (ONNX's Slice, stop None = end)."""
    ndim = len(shape)
    axes = tuple(attrs.get("axes", ()))
    n = len(axes)
    starts = tuple(attrs.get("starts") or (None,) * n)
    stops = tuple(attrs.get("stops") or (None,) * n)
    steps = tuple(attrs.get("steps") or (1,) * n)
    if not (len(starts) == len(stops) == len(steps) == n):
        raise ShapeError(f"slice needs as many starts, stops and steps as axes ({n})")
    out = [slice(None)] * ndim
    for ax, start, stop, step in zip(axes, starts, stops, steps, strict=True):
        if not -ndim <= int(ax) < ndim:
            raise ShapeError(f"axis {ax} is out of range for {S.fmt(shape)}")
        if step is not None and int(step) == 0:
            raise ShapeError("a slice step cannot be zero")
        out[int(ax) % ndim] = slice(
            None if start is None else int(start), None if stop is None else int(stop),
            None if step is None else int(step),
        )
    return tuple(out)


def _slice(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    return tuple(len(range(*sl.indices(d))) for sl, d in zip(slices(x, attrs), x, strict=True))


define(OpDef(
    "slice", ("x",), "out = x[start:stop:step] along the given axes",
    {"x": "∂L/∂x = ∂L/∂out placed back at the sliced positions, 0 elsewhere"},
    _slice, "[:]", category="shape", default_attrs={"axes": (0,), "starts": (0,), "stops": (None,), "steps": (1,)},
    summary="a strided slice along some axes (x[a:b:c]); the other axes are kept whole",
))


def _select(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x = tuple(shapes[0])
    (axis,) = S.axes(int(attrs.get("axis", 0)), len(x)) if x else (None,)
    if axis is None:
        raise ShapeError("select needs at least a 1-D input")
    index = int(attrs.get("index", 0))
    if not -x[axis] <= index < x[axis]:
        raise ShapeError(f"index {index} is out of range for axis {axis} of size {x[axis]}")
    return x[:axis] + x[axis + 1:]


define(OpDef(
    "select", ("x",), "out = x[..., i, ...]  (one index along an axis; that axis disappears)",
    {"x": "∂L/∂x = ∂L/∂out at index i of the axis, 0 at the other indices"},
    _select, "[i]", category="shape", default_attrs={"axis": 0, "index": 0},
    summary="pick one index along an axis (x[:, t] picks time step t), as torch.select",
))


def _index(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
    x, idx = tuple(shapes[0]), tuple(shapes[1])
    if not x:
        raise ShapeError("index needs at least a 1-D input")
    (axis,) = S.axes(int(attrs.get("axis", 0)), len(x))
    return (*x[:axis], *idx, *x[axis + 1:])


define(OpDef(
    "index", ("x", "idx"), "out = x[..., idx, ...]  (gather the rows idx along an axis; repeats allowed)",
    {"x": "∂L/∂x[..., k, ...] = Σ over the positions where idx = k of ∂L/∂out  (np.add.at)"},
    _index, "[idx]", category="shape", nondifferentiable=frozenset({"idx"}), default_attrs={"axis": 0},
    summary="gather along an axis with an integer index tensor (torch.index_select, np.take)",
))

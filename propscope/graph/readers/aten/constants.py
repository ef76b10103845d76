"""Tensors made from nothing but sizes and constants (zeros, arange, masks, comparisons, random draws): folded at
load time."""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from ...ir import Node
from ...ops.shape import INDEX_ROLES, SCATTER_REDUCTIONS
from .._aten import (
    Ctx,
    Missing,
    Translator,
    Unmapped,
    aten,
    dtype_arg,
    op_key,
    self_arg,
)
from .._budget import array_room, range_length
from .._build import finite_mask


@aten("zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like", "empty_like", "new_zeros",
      "new_ones", "new_full", "new_empty", "scalar_tensor", "arange", "fill", "empty_strided", "empty_permuted", "eye")
def _create(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    if op == "scalar_tensor":
        return np.asarray(a["s"], dtype=dtype_arg(a))
    if op == "eye":  # an identity (chunked linear attention adds one to its triangular system)
        n = int(a["n"])
        m = n if a.get("m") is None else int(a["m"])
        if n < 0 or m < 0:
            raise Unmapped(f"eye of {n} by {m}")
        array_room((n, m), dtype_arg(a), "eye", t.where)
        return np.eye(n, m, dtype=dtype_arg(a))
    if op == "arange":
        start, end, step = a.get("start", 0), a.get("end"), a.get("step", 1)
        if isinstance(end, Missing) and isinstance(start, int | float) and isinstance(step, int | float) \
                and ctx.shapes and ctx.shapes[0] is not None and len(ctx.shapes[0]) == 1:
            # an end the data computes (torch.arange(counts.sum())) where the program fixes the length (a path
            # traced along these inputs, `decisions.py`: Qwen3-VL's patch positions)
            end = start + ctx.shapes[0][0] * step
        count = range_length(start, end, step, "arange", t.where)
        array_room((count,), dtype_arg(a), "arange", t.where)
        return np.arange(start, end, step, dtype=dtype_arg(a))
    shape = ctx.shapes[0]
    if shape is None:
        raise Unmapped("no declared output shape")
    # empty_permuted (a decomposed in-place dropout's mask before its draw) is empty laid out otherwise in memory
    fill = 0.0 if op == "empty_permuted" else {"zeros": 0.0, "ones": 1.0, "empty": 0.0}.get(
        op.removeprefix("new_").removesuffix("_like"))  # ones_like was read as 0 until this
    if fill is None:
        fill = a.get("fill_value", a.get("value", 0.0))
        if not isinstance(fill, int | float | bool):  # fill.Tensor: a 0-d tensor (Swin's shifted-window mask)
            known = t.known(fill)
            if known is None or known.size != 1:
                raise Unmapped("fill with a value computed from the input")
            fill = known.reshape(()).item()
    like = self_arg(a) if ("self" in a or "input" in a) else None
    array_room(shape, dtype_arg(a, like), op, t.where)
    return np.full(shape, fill, dtype=dtype_arg(a, like))


def seed_of(name: str) -> int:
    """The seed of a random draw at the node `name`: fixed by the node, so a model opens and steps the same way
    every time, and different at each node, so two dropouts of one shape do not drop the same elements."""
    return zlib.crc32(name.encode("utf-8"))


@aten("rand", "rand_like", "randn", "randn_like")
def _random(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """Random numbers of a fixed shape (transformers' drop path: `floor(keep + rand(N, 1, 1))` marks the samples
    whose residual branch survives; a VAE's noise): drawn once, when the model is read, seeded by the node, as
    dropout's mask is (not torch's numbers: the same on both backends and at every step)."""
    op = op_key(ctx.target)
    like = self_arg(a) if op.endswith("_like") else None
    shape = tuple(t.shape(like)) if like is not None else ctx.shapes[0]
    if shape is None:
        raise Unmapped("no declared output shape")
    dtype = np.dtype(dtype_arg(a, t.known(like) if like is not None else None))
    if dtype.kind != "f":
        raise Unmapped(f"{op} of {dtype}")
    array_room(shape, np.float64, op, t.where)
    rng = np.random.default_rng(seed_of(ctx.name))
    return (rng.random(shape) if op.startswith("rand_") or op == "rand" else rng.standard_normal(shape)).astype(dtype)


@aten("bernoulli")
def _bernoulli(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """A 0/1 draw of the shape of `self` (torchvision's and timm's stochastic depth: `empty(N, 1, 1, 1)
    .bernoulli_(1 − p)` keeps or drops each sample's residual branch), with probability `p` or, without one, the
    values of `self`: drawn once, when the model is read, seeded by the node, as dropout's mask is. Probabilities
    computed from the input would make the draw a step of its own, which the catalog does not have."""
    x = self_arg(a)
    overload = ctx.target.rsplit(".", 1)[-1]
    # bernoulli(x) draws with x's values; bernoulli.p and bernoulli_.float with p, whose default 0.5 a program
    # leaves out (StochasticDepth(0.5)), bernoulli.Tensor with a tensor p
    p = a.get("p", 0.5 if overload in ("p", "float") else None)
    chance = t.known(x) if p is None else t.known(p)
    if chance is None:
        raise Unmapped("a Bernoulli draw with probabilities computed from the input")
    shape = tuple(t.shape(x))
    array_room(shape, np.float64, "bernoulli", t.where)
    draw = np.random.default_rng(seed_of(ctx.name)).random(shape) < np.broadcast_to(chance, shape)
    known = t.known(x)
    return draw.astype(known.dtype if known is not None and known.dtype.kind == "f" else np.float64)


@aten("zero")
def _zero(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """x.zero_() (Swin V2 zeroes the key's part of a cloned qkv bias): zeros of x's shape, whatever x is, so a
    constant; x gets no gradient through it (torch's is 0 too)."""
    x = self_arg(a)
    shape = tuple(t.shape(x))
    array_room(shape, np.float64, "zero", t.where)
    return np.zeros(shape, dtype=dtype_arg(a, x))


@aten("meshgrid")
def _meshgrid(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """torch.meshgrid of tensors fixed at load time (BEiT's and Swin V2's relative-position index): folded."""
    known = [t.known(x) for x in a["tensors"]]
    if any(k is None for k in known):
        raise Unmapped("meshgrid of values computed from the input")
    axes = [np.asarray(k).reshape(-1) for k in known]
    shape = tuple(len(x) for x in axes)
    for x in axes:
        array_room(shape, x.dtype, "meshgrid", t.where)
    indexing = a.get("indexing") or "ij"  # torch's default, where NumPy's is "xy"
    if indexing not in ("ij", "xy"):
        raise Unmapped(f"meshgrid indexing {indexing!r}")
    return [np.array(g) for g in np.meshgrid(*axes, indexing="ij" if indexing == "ij" else "xy")]


@aten("linspace")
def _linspace(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """torch.linspace of numbers fixed at load time (Deformable DETR's and Mask2Former's reference points over each
    feature map): folded, computed as torch's scalar kernel does, from the start for the first half and from the end
    for the rest (its vectorised kernel may round a value one bit otherwise)."""
    start, end, count = a.get("start"), a.get("end"), a.get("steps")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (start, end, count)) \
            or not isinstance(count, int) or count < 0:
        raise Unmapped("linspace with bounds computed from the input")
    steps = count
    dtype = dtype_arg(a)
    array_room((steps,), dtype, "linspace", t.where)
    if steps == 1:
        return np.full(1, start, dtype=dtype)
    kind = np.dtype(dtype).kind
    work = dtype if kind == "f" else np.float64
    step = (np.asarray(end, work) - np.asarray(start, work)) / np.asarray(steps - 1, work)
    i = np.arange(steps)
    half = steps // 2
    values = np.where(i < half, np.asarray(start, work) + step * i.astype(work),
                      np.asarray(end, work) - step * (steps - 1 - i).astype(work))
    return values.astype(dtype)


@aten("triu", "tril")
def _tri(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op, diagonal = op_key(ctx.target), int(a.get("diagonal", 0))
    x = t.known(self_arg(a))
    if x is None:
        return t.b.op(op, t.node(self_arg(a), ctx), name=ctx.name, module=ctx.module, attrs={"diagonal": diagonal})
    return (np.triu if op == "triu" else np.tril)(x, diagonal)


@aten("diff")
def _diff(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """torch.diff of position ids and the like: only ever of constants in the models people export."""
    x = t.known(self_arg(a))
    if x is None:
        raise Unmapped("diff of a computed tensor")
    extra: dict[str, np.ndarray] = {}
    for key in ("prepend", "append"):
        if a.get(key) is not None:
            value = t.known(a[key])
            if value is None:
                raise Unmapped(f"diff with a computed {key}")
            extra[key] = value
    return np.diff(x, n=int(a.get("n", 1)), axis=int(a.get("dim", -1)), **extra)


def blend(t: Translator, ctx: Ctx, where_true: Any, where_false: Any, keep: np.ndarray) -> Node:
    """where(keep, a, b) with a condition known at load time: one `where` step with the mask as a constant.

    Exact where a branch holds ±∞ (a mask times 0 would be NaN); a −∞ (or the dtype's lowest number) fill is
    an attention mask and becomes the finite fill, which gives softmax the same zeros and keeps values finite.
    """
    picks = []
    for value, role in ((where_true, "a"), (where_false, "b")):
        known = t.known(value)
        picks.append(t.node(value, ctx, role) if known is None else
                     t.b.const(finite_mask(np.asarray(known, dtype=np.float64)), ctx.module, role))
    return t.b.op("where", t.b.const(keep.astype(bool), ctx.module, "mask"), *picks, name=ctx.name,
                  module=ctx.module, original_op=op_key(ctx.target))


@aten("cumsum")
def _cumsum(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x, dim = self_arg(a), int(a["dim"])
    known = t.known(x)
    if known is not None:  # position ids from a padding mask, say
        integer = known.dtype.kind in "biu" and a.get("dtype") is None  # torch sums bools and ints as int64
        return np.cumsum(known, axis=dim, dtype=np.int64 if integer else dtype_arg(a, known))
    return t.b.op("cumsum", t.node(x, ctx), name=ctx.name, module=ctx.module, attrs={"axis": dim})


# -- data movement that models use only on constants (token type ids, cache bookkeeping, buffers) -------------
def _known_all(t: Translator, a: dict[str, Any], keys: tuple[str, ...], what: str) -> list[np.ndarray]:
    values = []
    for key in keys:
        value = t.known(a[key]) if key in a else None
        if value is None:
            raise Unmapped(f"{what} of computed tensors (propscope folds it only on constants)")
        values.append(value)
    return values


@aten("scatter", "scatter_add", "scatter_reduce")
def _scatter(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    if t.known(a["self"]) is None or t.known(a["index"]) is None or ("src" in a and t.known(a["src"]) is None):
        return _scatter_computed(t, a, ctx, op)
    x, index = _known_all(t, a, ("self", "index"), op)
    dim = int(a["dim"]) % max(x.ndim, 1)
    src = t.known(a["src"]) if "src" in a else np.asarray(a.get("value", 0.0))
    if src is None:
        raise Unmapped(f"{op} of a computed source (propscope folds it only on constants)")
    out = x.copy()
    index = index.astype(np.int64)
    src = np.broadcast_to(src, index.shape) if src.ndim == 0 else src[tuple(slice(0, n) for n in index.shape)]
    positions: list[Any] = list(np.indices(index.shape, sparse=True))
    positions[dim] = index
    reduce = a.get("reduce", "sum" if op == "scatter_add" else None)
    if reduce is None:
        out[tuple(positions)] = src
    elif reduce in ("sum", "add"):
        np.add.at(out, tuple(positions), src)
    elif reduce in ("prod", "multiply"):
        np.multiply.at(out, tuple(positions), src)
    elif reduce in ("amax", "amin"):
        (np.maximum if reduce == "amax" else np.minimum).at(out, tuple(positions), src)
    else:
        raise Unmapped(f"{op} with reduce={reduce!r}")
    return out


@aten("index_reduce")
def _index_reduce(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """x.index_reduce(dim, index, source, reduce): source's slices reduced into x's at the positions of the 1-D
    `index` along dim (products, means, maxima, minima of what lands there; a graph network's per-node aggregation
    written with whole rows): scatter_reduce with the index repeated across source's other axes."""
    x, source, index = self_arg(a), a["source"], a["index"]
    picked = tuple(t.shape(source))
    dim = int(a["dim"]) % max(len(picked), 1)
    if len(t.shape(index)) != 1 or not picked or t.shape(index)[0] != picked[dim]:
        raise Unmapped(f"index_reduce by a {tuple(t.shape(index))} index into a {picked} source along axis {dim}")
    along = [picked[dim] if k == dim else 1 for k in range(len(picked))]
    known = t.known(index)
    if known is not None:
        full: Any = np.broadcast_to(known.reshape(along), picked).copy()
    else:
        standing = t.b.op("reshape", t.node(index, ctx, "index"), name=f"{ctx.name}.index_axis", module=ctx.module,
                          attrs={"shape": tuple(along)})
        full = t.b.op("expand", standing, name=f"{ctx.name}.index", module=ctx.module, attrs={"shape": picked})
    return _scatter(t, {"self": x, "dim": dim, "index": full, "src": source, "reduce": a["reduce"],
                        "include_self": a.get("include_self", True)}, ctx)


def _scatter_computed(t: Translator, a: dict[str, Any], ctx: Ctx, op: str) -> Node:
    """scatter of computed values or at computed positions (DeepSeek-V3's routing marks the groups its top-k chose:
    zeros.scatter_(1, group_idx, 1)): an `index_put` at every element of `index`, the positions along the other
    axes those of the element itself; scatter_add (and reduce='sum') adds, as index_put's accumulate does."""
    x, index = a["self"], a["index"]
    shape, picked = t.shape(x), tuple(t.shape(index))
    ndim = len(shape)
    if not 1 <= ndim <= len(INDEX_ROLES) or len(picked) != ndim:
        raise Unmapped(f"{op} of a {ndim}-D tensor by a {len(picked)}-D index")
    dim = int(a["dim"]) % ndim
    reduce = a.get("reduce", "sum" if op == "scatter_add" else None)
    reduce = {"add": "sum", "multiply": "prod"}.get(str(reduce), reduce)  # scatter's older names
    include_self = bool(a.get("include_self", True))
    if reduce not in (None, *SCATTER_REDUCTIONS):
        raise Unmapped(f"{op} with reduce={reduce!r} at computed positions")
    if "src" in a:
        if tuple(t.shape(a["src"])) != picked:
            raise Unmapped(f"{op} of a source {tuple(t.shape(a['src']))} larger than its index {picked}")
        values = t.node(a["src"], ctx, "src")
    else:
        values = t.b.const(np.full(picked, float(np.asarray(a.get("value", 0.0)))), ctx.module, "value")
    if reduce not in (None, "sum") or not include_self:
        # products, means, maxima and minima (a graph network's messages aggregated per node), or without x's own
        # value: one step whose derivative shares the gradient as torch's does (ties at a maximum evenly)
        return t.b.op("scatter_reduce", t.node(x, ctx, "self"), values, t.node(index, ctx, "index"), name=ctx.name,
                      module=ctx.module, original_op=op,
                      attrs={"axis": dim, "reduce": reduce, "include_self": include_self})
    positions = [t.node(index, ctx, "index") if k == dim else t.b.const(
        np.arange(n).reshape([n if j == k else 1 for j in range(ndim)]), ctx.module, f"axis{k}")
        for k, n in enumerate(picked)]
    return t.b.op("index_put", t.node(x, ctx, "self"), values, *positions, name=ctx.name, module=ctx.module,
                  original_op=op, attrs={"axes": tuple(range(ndim)), "accumulate": reduce is not None})


@aten("masked_scatter")
def _masked_scatter(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    if any(t.known(a[key]) is None for key in ("self", "mask", "source")):
        return _masked_scatter_computed(t, a, ctx)
    x, mask, source = _known_all(t, a, ("self", "mask", "source"), "masked_scatter")
    out = x.copy()
    where = np.broadcast_to(mask.astype(bool), x.shape)
    out[where] = source.reshape(-1)[: int(where.sum())]
    return out


def _masked_scatter_computed(t: Translator, a: dict[str, Any], ctx: Ctx) -> Node:
    """x.masked_scatter(mask, source) of computed tensors: a vision-language model puts its image features in place
    of the image tokens of its ids (`embeds.masked_scatter(ids == image_token, features)`), the mask made from the
    data's ids. Each element the mask sets takes the next of source's values in order, which is source's values
    gathered at the count of set elements before it: out = where(mask, source.flat[c · mask], x), c the exclusive
    running count (cumsum) of the mask. The output's shape is x's whatever the ids, so no size depends on the data:
    the positions follow the ids of each batch as torch's do. The gradient reaches x where the mask is clear and
    source's first count(mask) values where it is set (`where`, then `index`'s scatter-add)."""
    x, mask, source = a["self"], a["mask"], a["source"]
    shape = tuple(t.shape(x))
    if tuple(t.shape(mask)) != shape and len(t.shape(mask)) > len(shape):
        raise Unmapped(f"masked_scatter of a {tuple(t.shape(mask))} mask over a {shape} tensor")
    flexible = (-1, *shape[1:]) if shape and math.prod(shape[1:]) > 0 else shape  # the batch axis stays free
    picked = t.node(mask, ctx, "mask")
    if picked.shape != shape:
        picked = t.b.op("expand", picked, name=f"{ctx.name}.mask", module=ctx.module, attrs={"shape": shape})
    flat = t.b.op("reshape", picked, name=f"{ctx.name}.flat_mask", module=ctx.module, attrs={"shape": (-1,)})
    before = t.b.op("cumsum", flat, name=f"{ctx.name}.count", module=ctx.module,
                    attrs={"axis": 0, "exclusive": True})
    # at a clear element, position 0 (any value would do: `where` drops it and sends it no gradient)
    position = t.b.op("mul", before, flat, name=f"{ctx.name}.position", module=ctx.module)
    values = t.b.op("reshape", t.node(source, ctx, "source"), name=f"{ctx.name}.source", module=ctx.module,
                    attrs={"shape": (-1,)})
    taken = t.b.op("index", values, position, name=f"{ctx.name}.taken", module=ctx.module, attrs={"axis": 0})
    placed = t.b.op("reshape", taken, name=f"{ctx.name}.placed", module=ctx.module, attrs={"shape": flexible})
    return t.b.op("where", picked, placed, t.node(x, ctx, "self"), name=ctx.name, module=ctx.module,
                  original_op="masked_scatter")


@aten("unique_consecutive")
def _unique_consecutive(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """torch.unique_consecutive of a constant (Qwen2.5-VL's window boundaries, a list its forward builds): each
    run of equal values once, with each element's run (`return_inverse`) and each run's length (`return_counts`),
    the three outputs torch's op has."""
    (x,) = _known_all(t, a, ("self",), "unique_consecutive")
    if a.get("dim") is not None:
        raise Unmapped("unique_consecutive along an axis")
    flat = x.reshape(-1)
    starts = np.flatnonzero(np.concatenate([[True], flat[1:] != flat[:-1]])) if flat.size else np.zeros(0, int)
    runs = np.cumsum(np.concatenate([[False], flat[1:] != flat[:-1]])) if flat.size else np.zeros(0, int)
    counts = np.diff(np.append(starts, flat.size))
    inverse = runs.reshape(x.shape) if a.get("return_inverse") else np.zeros(0)  # torch's empty when not asked
    return flat[starts], inverse.astype(np.int64), (counts if a.get("return_counts") else np.zeros(0)).astype(np.int64)


@aten("nonzero")
def _nonzero(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    (x,) = _known_all(t, a, ("self",), "nonzero")
    return np.argwhere(x).astype(np.int64)


@aten("as_strided")
def _as_strided(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    size, stride = [int(v) for v in a["size"]], [int(v) for v in a["stride"]]
    offset = int(a.get("storage_offset") or 0)
    if t.known(a["self"]) is None:
        return _restrided(t, a["self"], size, stride, offset)
    (x,) = _known_all(t, a, ("self",), "as_strided")
    flat = np.ascontiguousarray(x).reshape(-1)
    if any(s < 0 for s in stride) or offset < 0:
        raise Unmapped("as_strided with negative strides or offset")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) if all(size) else offset
    if last >= max(flat.size, 1) and all(size):
        raise Unmapped("as_strided beyond the tensor's storage")
    array_room(size, flat.dtype, "as_strided", t.where)
    positions = offset + sum(np.arange(n).reshape([-1 if i == k else 1 for i in range(len(size))]) * s
                             for k, (n, s) in enumerate(zip(size, stride, strict=True)))
    return flat[np.asarray(positions, dtype=np.int64)] if size else flat[offset]


def _restrided(t: Translator, x: Any, size: list[int], stride: list[int], offset: int) -> Any:
    """as_strided of a computed tensor that changes nothing: the same sizes over the layout the tensor already has
    in memory, as the file records it (decompositions restride a result so, e.g. adaptive_avg_pool2d's in Swin).
    Any other reading of memory is not a step propscope has."""
    layout = t.input_layout()
    if layout is not None and tuple(size) == tuple(t.shape(x)) and offset == layout[1] and all(
            n == 1 or s == held for n, s, held in zip(size, stride, layout[0], strict=True)):
        return x
    raise Unmapped("as_strided of computed tensors (propscope folds it only on constants, and reads through it "
                   "only where it keeps the tensor as it is)")


@aten("atan2")
def _atan2(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    y, x = _known_all(t, a, ("self", "other"), "atan2")
    return np.arctan2(y, x)

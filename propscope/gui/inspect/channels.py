"""Which axis of a 4-D or 5-D value holds its channels, read from the graph: NCHW or channels-last (N, H, W, C), and
for volumes NCDHW or (N, D, H, W, C). No Qt here.

The layer view draws a 4-D value as one map per channel. PyTorch's convolutions, pools and batch norms are NCHW,
but transformers over images keep their values channels-last between those ops: Swin-T permutes its patch
embedding to (N, H, W, C) and runs every layer norm, linear and window over the last axis, and ConvNeXt's blocks
do the same between a depthwise convolution and the permute back. Drawn as NCHW, Swin's (2, 8, 8, 96) layer norm
came out as "8 channels of 8×96".

The layout is carried through the graph from the ops that decide it, forward and back, until nothing changes:

- the ops that work on NCHW values (convolutions, pools, batch and group norms, 2-D upsampling) take and give NCHW;
- a transpose moves the channel axis where its permutation sends it (NCHW → (0, 2, 3, 1) → channels-last);
- a layer norm (or RMS norm) over the last axis alone of a 4-D value of unknown layout normalises each
  position's channels: channels-last;
- a linear over the last axis of a channels-last value keeps it channels-last;
- a reshape that keeps the shape, and every other op (elementwise ops, pads, slices, concats, reductions that
  keep their dimensions) keep the axes' meaning: their 4-D values share one layout, so a value of unknown layout
  takes its neighbours' (Swin's windows, reassembled by a reshape from 6-D, are channels-last because the
  residual add they meet is);
- a matmul, a reshape that regroups the axes, an expand or a tile leave it unknown, drawn as NCHW as before.

Volumes (video clips, scans) follow the same rules with the 3-D ops deciding NCDHW; a value meets only values of its
own rank (a 5-D value's channels-last axis is 4).
"""

from __future__ import annotations

import weakref

from ...graph.ir import Graph, Node

NCHW, CHANNELS_LAST = 1, 3  # the channel axis of a 4-D value (of a 5-D value: 1 or `last_axis(5)`, 4)
RANKS = (4, 5)  # images (N, C, H, W) and volumes (N, C, D, H, W)
NCHW_OPS = frozenset({
    "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d",
    "batch_norm", "group_norm", "upsample_bilinear2d", "upsample_nearest2d", "upsample_bicubic2d",
    "grid_sample",  # the image and the result; the grid (N, H, W, 2) is not a feature map
    "conv3d", "conv_transpose3d", "max_pool3d", "avg_pool3d", "adaptive_avg_pool3d", "upsample_nearest3d",
    "upsample_trilinear3d",
})
LAST_AXIS_NORMS = frozenset({"layer_norm", "rms_norm"})
REGROUPING_OPS = frozenset({"matmul", "reshape", "flatten", "transpose", "expand", "tile"})  # handled or unknown

MAX_ROUNDS = 4  # forward and backward passes; Swin-T settles in two

_cache: weakref.WeakKeyDictionary[Graph, tuple[int, dict[str, int]]] = weakref.WeakKeyDictionary()


def last_axis(rank: int) -> int:
    """The channel axis of a channels-last value of `rank` dimensions."""
    return rank - 1


def channel_axis(graph: Graph, node: Node) -> int:
    """The channel axis of 4-D or 5-D `node`: the last (3, or 4 for a volume) when the graph says so, else `NCHW`
    (1)."""
    return _axes(graph).get(node.name, NCHW)


def layout_known(graph: Graph, node: Node) -> bool:
    """Whether the graph says where the channels of 4-D or 5-D `node` are (BERT's (batch, heads, tokens, features)
    queries are drawn as NCHW too, but nothing says that they are)."""
    return node.name in _axes(graph)


def _axes(graph: Graph) -> dict[str, int]:
    """The known channel axis of the 4-D and 5-D values of `graph` (kept while the graph keeps its nodes)."""
    count = len(graph)
    cached = _cache.get(graph)
    if cached is not None and cached[0] == count:
        return cached[1]
    axes: dict[str, int] = {}
    nodes = list(graph)
    for _ in range(MAX_ROUNDS):
        known = len(axes)
        for node in nodes:
            if len(node.shape) in RANKS and node.name not in axes:
                axis = _forward(node, axes)
                if axis is not None:
                    axes[node.name] = axis
        for node in reversed(nodes):
            if node.name in axes:
                for source, axis in _backward(node, axes[node.name]):
                    axes.setdefault(source.name, axis)
        if len(axes) == known:
            break
    _cache[graph] = (count, axes)
    return axes


def _same_rank(node: Node) -> list[Node]:
    """The inputs of `node` with as many dimensions as it has (the ones whose axes mean what its axes mean)."""
    return [a for a in node.inputs if len(a.shape) == len(node.shape)]


def _channel_axes(rank: int) -> tuple[int, int]:
    return NCHW, last_axis(rank)


def _permutation(node: Node) -> tuple[int, ...] | None:
    """A transpose's permutation of 4 (or 5) axes that keeps the batch first, else None."""
    perm = tuple(node.attrs.get("axes") or ())
    rank = len(node.inputs[0].shape)
    return perm if rank in RANKS and len(perm) == rank and perm[0] == 0 else None


def _forward(node: Node, axes: dict[str, int]) -> int | None:
    """The channel axis of 4-D or 5-D `node` from its inputs' (None: unknown)."""
    op = node.op.name
    if op in NCHW_OPS:
        return NCHW
    if op == "transpose":
        perm = _permutation(node)
        source = axes.get(node.inputs[0].name) if perm is not None else None
        if perm is None or source is None:
            return None
        moved = perm.index(source)
        return moved if moved in _channel_axes(len(perm)) else None
    if op == "reshape":
        return axes.get(node.inputs[0].name) if tuple(node.inputs[0].shape) == tuple(node.shape) else None
    if op in REGROUPING_OPS:
        return None
    last = last_axis(len(node.shape))
    known = {axes[a.name] for a in _same_rank(node) if a.name in axes}
    if op == "linear":
        return last if known == {last} else None
    if op in LAST_AXIS_NORMS and not known and len(node.inputs[0].shape) == len(node.shape) \
            and len(tuple(node.attrs.get("normalized_shape") or ())) == 1:
        return last
    return known.pop() if len(known) == 1 else None


def _backward(node: Node, axis: int) -> list[tuple[Node, int]]:
    """The channel axis the inputs of `node` of its rank must have for its value to have `axis`."""
    op = node.op.name
    if op in NCHW_OPS:
        return [(node.inputs[0], NCHW)] if len(node.inputs[0].shape) == len(node.shape) else []
    if op == "transpose":
        perm = _permutation(node)
        return [(node.inputs[0], perm[axis])] if perm is not None and perm[axis] in _channel_axes(len(perm)) else []
    if op == "reshape":
        return [(node.inputs[0], axis)] if tuple(node.inputs[0].shape) == tuple(node.shape) else []
    if op in REGROUPING_OPS or (op == "linear" and axis != last_axis(len(node.shape))):
        return []
    return [(a, axis) for a in (node.inputs[:1] if op == "linear" else _same_rank(node))]

"""Views for the tutorial's Part 9 layers, for the selected node: convolution, recurrence, attention.

- Convolution (and pooling, and any 4-D value or (out, in, kh, kw) weight): feature maps and
  filters as image grids; click an output pixel to light its receptive field on the input. A value
  the graph shows to be channels-last (N, H, W, C), as Swin's, is drawn as C maps of H×W (`channels`).
- Volumes (video clips, scans: 5-D values (N, C, D, H, W), or (N, D, H, W, C) channels-last): the same maps for one
  depth slice, chosen in the header and kept while stepping through values of the same depth (carried to the same
  place in the volume where the depth changes: a pooled value's slice 2 of 4 is slice 4 or 5 of 8). A 3-D filter is
  drawn one tile per depth tap; a 3-D window op shows, beside its filters, the input slices the chosen output
  slice's windows read, one per tap, so that tap t of the input meets tap t of each filter.
- Recurrence: the hidden state and the gates over time as heatmaps, time on x; the gradient of the
  hidden state over time shows the vanishing at a glance.
- Attention: the attention matrix of each head, tokens on both axes and the weights written in.

Every number shown is the session's own (its values and gradients at the cursor); the gates and the
attention of a fused op are recomputed from the cell's inputs by the NumPy backend's helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from ...backends.numpy.attention import attention_weights
from ...backends.numpy.recurrent import gru_gates, lstm_gates
from ...debugger import Session
from ...graph.ir import Graph, Node
from ...graph.ops.conv import pads4, pair
from ...graph.ops.conv3d import pads6, triple
from ..bridge import SessionBridge
from ..docks import DockScroll, ScrollBody
from ..format import fmt_num, fmt_shape, symmetric_range
from ..guard import guarded, guarded_answer
from ..selection import Selection
from ..theme import ThemeManager
from .channels import NCHW, channel_axis, layout_known
from .heat_grid import MIN_CELL, HeatGrid, Mark, Tile

CONV, RECURRENT, ATTENTION = "convolution", "recurrence", "attention"
WINDOW_OPS = ("conv2d", "max_pool2d", "avg_pool2d")
VOLUME_WINDOW_OPS = ("conv3d", "max_pool3d", "avg_pool3d")
VOLUME_FILTER_OPS = ("conv3d", "conv_transpose3d")  # their weight (input 1) is a 5-D filter bank
MAX_MAPS = 16  # feature maps shown per grid (the first ones)
MAX_FILTERS = 32
GATE_NAMES = {
    "lstm_cell": (("i", "input gate i"), ("f", "forget gate f"), ("g", "candidate g"), ("o", "output gate o")),
    "gru_cell": (("r", "reset gate r"), ("z", "update gate z"), ("n", "candidate n")),
}
SHORT = {"h": "hidden h", "c": "cell c", "i": "input i", "f": "forget f", "g": "cand. g", "o": "output o",
         "r": "reset r", "z": "update z", "n": "cand. n"}
BOUNDED = ("i", "f", "o", "r", "z")  # sigmoid gates: 0 … 1


@dataclass
class Section:
    title: str
    tiles: list[Tile]
    note: str = ""
    group: int = 1  # tiles that belong together (the depth taps of one 3-D filter), kept in one row


@dataclass
class Page:
    """What the view shows for one node: a headline and up to three grids."""

    kind: str
    headline: str
    sections: list[Section] = field(default_factory=list)
    message: str = ""  # instead of the grids (not computed yet, ...)
    samples: int = 0  # batch size, when the sample can be chosen
    targets: list[tuple[str, Any]] = field(default_factory=list)  # per tile of the clickable grid: node, index prefix
    keys: list[str] = field(default_factory=list)  # recurrence: what each tile shows (h, c, a gate)
    channel_axis: int = NCHW  # convolution: where the tiles' channel sits in an index of the node (1, or the last)
    depths: int = 0  # a volume: the depth of the value whose slices are drawn (0: nothing to choose)
    depth: int = 0  # the depth slice drawn


# -- which view a node gets ----------------------------------------------------------------------
def recurrent_cells(graph: Graph, module: str) -> list[Node]:
    """The unrolled cells of one recurrent layer, in time order."""
    cells = [n for n in graph if n.op.category == "recurrent" and n.module == module]
    return sorted(cells, key=lambda n: (n.meta.get("time", n.index), n.index))


def view_kind(graph: Graph, node: Node) -> str | None:
    if node.op.name == "scaled_dot_product_attention" or ("tokens" in node.meta and len(node.shape) >= 2):
        return ATTENTION
    if node.op.name == "softmax" and len(node.shape) >= 2 and node.attrs.get("axis", -1) in (-1, len(node.shape) - 1) \
            and any(u.op.name == "matmul" and u.inputs[0] is node for u in graph.users(node)):
        return ATTENTION  # softmax(q kᵀ) @ v: attention lowered to products, as the readers write it
    if node.op.category == "recurrent" or (node.meta.get("time") is not None and recurrent_cells(graph, node.module)):
        return RECURRENT
    if len(node.shape) == 4:
        return CONV
    if len(node.shape) == 5 and (layout_known(graph, node) or _volume_filter_op(graph, node)):
        # only what the graph shows to be a volume (next to 3-D ops) or a 3-D filter bank: Llama's keys and values
        # expanded to (batch, kv heads, repeats, tokens, features) for grouped-query attention are 5-D too, and
        # drawn as depth slices of channel maps they read as something they are not
        return CONV
    return None


def fitting_nodes(graph: Graph) -> list[str]:
    """Nodes worth a layer view, one per layer: convolutions, the first cell of each recurrent layer, attention."""
    out, layers = [], set()
    for node in graph:
        kind = view_kind(graph, node)
        if (kind == CONV and node.op.name in ("conv2d", "conv3d")) or kind == ATTENTION:
            out.append(node.name)
        elif kind == RECURRENT and node.op.category == "recurrent" and node.module not in layers:
            layers.add(node.module)
            out.append(node.name)
    return out


# -- convolution ---------------------------------------------------------------------------------
def receptive_field(node: Node, channel: int, row: int, col: int) -> tuple[list[int], list[int], list[int]]:
    """The input channels, rows and columns that output pixel (channel, row, col) of a window op reads.

    Rows and columns may fall outside the input (into the padding); the caller clips them.
    """
    x_shape = node.inputs[0].shape
    a = node.attrs
    if node.op.name == "conv2d":
        w_shape = node.inputs[1].shape
        kh, kw = w_shape[2], w_shape[3]
        stride = pair(a.get("stride", 1))
        groups = int(a.get("groups", 1))
        per_in, per_out = x_shape[1] // groups, w_shape[0] // groups
        g = channel // per_out
        channels = list(range(g * per_in, (g + 1) * per_in))
    else:
        kh, kw = pair(a["kernel_size"])
        stride = (kh, kw) if a.get("stride") is None else pair(a["stride"])
        channels = [channel]
    ph, _, pw, _ = pads4(a.get("padding", 0))  # the first row and column sit after the top and left padding
    dh, dw = pair(a.get("dilation", 1))
    rows = [row * stride[0] - ph + dh * k for k in range(kh)]
    cols = [col * stride[1] - pw + dw * k for k in range(kw)]
    return channels, rows, cols


def _field_marks(rows: list[int], cols: list[int]) -> list[Mark]:
    dilated = (len(rows) > 1 and rows[1] - rows[0] > 1) or (len(cols) > 1 and cols[1] - cols[0] > 1)
    if dilated:  # cell by cell
        return [(r, c, r + 1, c + 1) for r in rows for c in cols]
    return [(rows[0], cols[0], rows[-1] + 1, cols[-1] + 1)]


def _maps(value: np.ndarray, sample: int, label: str, vmax: float) -> list[Tile]:
    return [Tile(value[sample, c], f"{label} {c}", vmax) for c in range(min(value.shape[1], MAX_MAPS))]


def _more(count: int, limit: int, what: str) -> str:
    return f"showing the first {limit} of {count} {what}" if count > limit else ""


def conv_page(s: Session, node: Node, sample: int, gradient: bool, index: tuple[int, ...] | None,
              depth: int = 0) -> Page:
    if len(node.shape) == 5:
        return volume_page(s, node, sample, depth, gradient, index)
    read = s.grad if gradient else s.value
    word = "∂L/∂" if gradient else ""
    page = Page(CONV, "")
    if node.op.name not in WINDOW_OPS:
        value = read(node.name)
        is_filter = node.op.name in ("parameter", "constant") and node.module and len(node.shape) == 4 and any(
            u.op.name == "conv2d" and u.inputs[1] is node for u in s.graph.users(node))
        page.channel_axis = NCHW if is_filter else channel_axis(s.graph, node)
        if is_filter:
            page.headline = f"Filters {escape(node.name)} · {fmt_shape(node.shape)} (out, in, height, width)"
        elif page.channel_axis != NCHW:
            page.headline = f"Feature maps of {escape(node.name)} · {fmt_shape(node.shape)} (batch, h, w, channels): " \
                            "channels last, one map per channel"
        else:
            read_as = "" if layout_known(s.graph, node) else "read as "  # what nothing in the graph says
            page.headline = f"Feature maps of {escape(node.name)} · {fmt_shape(node.shape)} " \
                            f"({read_as}batch, channels, h, w)"
        if value is None:
            page.message = _not_yet(s, node, gradient)
            return page
        value = np.asarray(value, dtype=np.float64)
        if page.channel_axis != NCHW:
            value = np.moveaxis(value, page.channel_axis, NCHW)  # drawn as NCHW; indices still name the node's axes
            index = None if index is None or len(index) != 4 else (index[0], index[3], index[1], index[2])
        vmax = symmetric_range(value)
        if is_filter:
            tiles, outs = _filters(value, vmax)
            page.sections.append(Section(f"{word}{node.name}{_filters_legend(outs, value.shape[1])}", tiles,
                                         _more(value.shape[0] * value.shape[1], MAX_FILTERS, "filters")))
            return page
        page.samples = value.shape[0]
        sample = min(sample, value.shape[0] - 1)
        tiles = _maps(value, sample, "channel", vmax)
        if index is not None and len(index) == 4 and index[0] == sample and index[1] < len(tiles):
            tiles[index[1]].marks.append((index[2], index[3], index[2] + 1, index[3] + 1))
        page.sections.append(Section(f"{word}{node.name} · sample {sample}", tiles,
                                     _more(value.shape[1], MAX_MAPS, "channels")))
        page.targets = [(node.name, (sample, c)) for c in range(len(tiles))]
        return page

    x_node = node.inputs[0]
    what = {"conv2d": "Convolution", "max_pool2d": "Max pooling", "avg_pool2d": "Average pooling"}[node.op.name]
    attrs = ", ".join(f"{k} {v}" for k, v in node.attrs.items() if v not in (None, 0, 1) or k == "kernel_size")
    page.headline = f"{what} <b>{escape(node.name)}</b>: {escape(x_node.name)} {fmt_shape(x_node.shape)} → " \
                    f"{fmt_shape(node.shape)}" + (f" · {escape(attrs)}" if attrs else "")
    out, x = read(node.name), read(x_node.name)
    if out is None or x is None:
        page.message = _not_yet(s, node, gradient)
        return page
    out, x = np.asarray(out, dtype=np.float64), np.asarray(x, dtype=np.float64)
    page.samples = out.shape[0]
    sample = min(sample, out.shape[0] - 1)
    in_tiles = _maps(x, sample, "in", symmetric_range(x))
    out_tiles = _maps(out, sample, "out", symmetric_range(out))
    filters: list[Tile] = []
    filter_outs: list[int] = []  # the output channel of each filter tile
    inputs_per_filter = 0
    if node.op.name == "conv2d":
        w = read(node.inputs[1].name)
        if w is not None:
            filters, filter_outs = _filters(np.asarray(w, dtype=np.float64), symmetric_range(w))
            inputs_per_filter = np.shape(w)[1]
    if index is not None and len(index) == 4 and index[0] == sample:
        o, i, j = index[1:]
        if o < len(out_tiles):
            out_tiles[o].marks.append((i, j, i + 1, j + 1))
        channels, rows, cols = receptive_field(node, o, i, j)
        for c in channels:
            if c < len(in_tiles):
                in_tiles[c].marks.extend(_field_marks(rows, cols))
        for t, filter_out in zip(filters, filter_outs, strict=True):
            t.outlined = filter_out == o
    hint = "click an output pixel: its receptive field lights up on the input"
    page.sections.append(Section(f"{word}{x_node.name} (input) · sample {sample}", in_tiles,
                                 _more(x.shape[1], MAX_MAPS, "channels")))
    if filters:
        legend = _filters_legend(filter_outs, inputs_per_filter)
        page.sections.append(Section(f"{word}{node.inputs[1].name}{legend}", filters))
    page.sections.append(Section(f"{word}{node.name} (output) · sample {sample}", out_tiles,
                                 _more(out.shape[1], MAX_MAPS, "channels") or hint))
    page.targets = [(node.name, (sample, c)) for c in range(len(out_tiles))]
    return page


def _filters(w: np.ndarray, vmax: float) -> tuple[list[Tile], list[int]]:
    """The first `MAX_FILTERS` kernels of weight `w` (out, in, kh, kw) as tiles titled "out←in" (one per output
    channel, titled by it, for a depthwise convolution), and the output channel of each.

    Where every tile shown is of one output channel (32 inputs or more), the legend names it once and each tile
    may shorten its title to its input channel: at 1024×768 a 3×3 kernel is 16 pixels wide, and "0←10" (23 pixels
    at the smallest title size) did not fit it."""
    tiles: list[Tile] = []
    outs: list[int] = []
    one_out = w.shape[1] >= MAX_FILTERS
    for o in range(w.shape[0]):
        for i in range(w.shape[1]):
            if len(tiles) < MAX_FILTERS:
                title = f"{o}" if w.shape[1] == 1 else f"{o}←{i}"
                tiles.append(Tile(w[o, i], title, vmax, numbers=True, short=f"{i}" if one_out else ""))
                outs.append(o)
    return tiles, outs


def _filters_legend(outs: list[int], inputs: int) -> str:
    """What the filter tiles' titles say, after the weight's name."""
    if inputs == 1:
        return " (filters: one per channel)"
    if len(set(outs)) == 1:
        return f" (filters: out ← in; out {outs[0]} ← in 0…{len(outs) - 1})"
    return " (filters: out ← in)"


# -- volumes -----------------------------------------------------------------------------------------
def volume_depths(graph: Graph, node: Node) -> int:
    """How many depth slices the layer view can choose between for `node` (0: none, not a volume's slices)."""
    if view_kind(graph, node) != CONV or len(node.shape) != 5 or _volume_filter_op(graph, node):
        return 0
    axis = channel_axis(graph, node)
    return node.shape[2] if axis == NCHW else node.shape[1]  # (N, C, D, H, W) or (N, D, H, W, C)


def depth_axis(graph: Graph, node: Node) -> int:
    """Where the depth sits in an index of 5-D `node`."""
    return 2 if channel_axis(graph, node) == NCHW else 1


def _volume_filter_op(graph: Graph, node: Node) -> str:
    """The 3-D convolution whose filters parameter `node` is ("" when it is none's)."""
    if node.op.name not in ("parameter", "constant") or not node.module or len(node.shape) != 5:
        return ""
    return next((u.op.name for u in graph.users(node) if u.op.name in VOLUME_FILTER_OPS and u.inputs[1] is node), "")


def depth_taps(node: Node, depth: int) -> list[int]:
    """The input depths (some may fall in the padding, outside the volume) that the windows of output depth slice
    `depth` of a 3-D window op read, one per depth tap."""
    a = node.attrs
    if node.op.name == "conv3d":
        kd = node.inputs[1].shape[2]
        sd = triple(a.get("stride", 1))[0]
    else:
        kd = triple(a["kernel_size"])[0]
        sd = kd if a.get("stride") is None else triple(a["stride"])[0]
    front = pads6(a.get("padding", 0))[0]
    dd = triple(a.get("dilation", 1))[0]
    return [depth * sd - front + dd * k for k in range(kd)]


def volume_receptive_field(node: Node, channel: int, row: int, col: int) -> tuple[list[int], list[int], list[int]]:
    """The input channels, rows and columns that output element (channel, ·, row, col) of a 3-D window op reads on
    each depth slice its window reads (`depth_taps`); rows and columns may fall into the padding."""
    x_shape = node.inputs[0].shape
    a = node.attrs
    if node.op.name == "conv3d":
        w_shape = node.inputs[1].shape
        kh, kw = w_shape[3], w_shape[4]
        stride = triple(a.get("stride", 1))[1:]
        groups = int(a.get("groups", 1))
        per_in, per_out = x_shape[1] // groups, w_shape[0] // groups
        g = channel // per_out
        channels = list(range(g * per_in, (g + 1) * per_in))
    else:
        _, kh, kw = triple(a["kernel_size"])
        stride = (kh, kw) if a.get("stride") is None else triple(a["stride"])[1:]
        channels = [channel]
    _, _, ph, _, pw, _ = pads6(a.get("padding", 0))
    _, dh, dw = triple(a.get("dilation", 1))
    rows = [row * stride[0] - ph + dh * k for k in range(kh)]
    cols = [col * stride[1] - pw + dw * k for k in range(kw)]
    return channels, rows, cols


def _volume_filters(w: np.ndarray, vmax: float, transposed: bool) -> tuple[list[Tile], list[int]]:
    """The kernels of 3-D weight `w` as tiles, one per depth tap, the taps of a kernel side by side (a grid group
    of kd tiles), as many whole kernels as `MAX_FILTERS` tiles hold (at least one); and the output channel of each.

    A conv3d weight is (out, in, kd, kh, kw), titled "out←in"; a conv_transpose3d weight is (in, out, kd, kh, kw),
    titled "in→out"; each tap adds its depth ("0←1 d2")."""
    kd = w.shape[2]
    tiles: list[Tile] = []
    outs: list[int] = []
    kernels = max(1, MAX_FILTERS // kd)
    for a in range(w.shape[0]):
        for b in range(w.shape[1]):
            if len(tiles) >= kernels * kd:
                return tiles, outs
            pair_title = f"{a}→{b}" if transposed else f"{a}←{b}"
            for t in range(kd):
                tiles.append(Tile(w[a, b, t], f"{pair_title} d{t}", vmax, numbers=True))
                outs.append(b if transposed else a)
    return tiles, outs


def _volume_filters_legend(w_shape: tuple[int, ...], transposed: bool) -> str:
    kd = w_shape[2]
    pairs = "in → out" if transposed else "out ← in"
    return f" (filters: {pairs}, each as its {kd} depth taps d0…d{kd - 1} side by side)" if kd > 1 else \
        f" (filters: {pairs})"


def volume_page(s: Session, node: Node, sample: int, depth: int, gradient: bool,
                index: tuple[int, ...] | None) -> Page:
    """A 5-D value as its maps at one depth slice, a 3-D filter bank as its depth taps, or a 3-D window op as its
    input slices, filters and output slice."""
    if node.op.name in VOLUME_WINDOW_OPS:
        return _volume_window_page(s, node, sample, depth, gradient, index)
    read = s.grad if gradient else s.value
    word = "∂L/∂" if gradient else ""
    page = Page(CONV, "")
    value = read(node.name)
    filter_of = _volume_filter_op(s.graph, node)
    if filter_of:
        transposed = filter_of == "conv_transpose3d"
        axes = "(in, out, depth, height, width)" if transposed else "(out, in, depth, height, width)"
        page.headline = f"Filters {escape(node.name)} · {fmt_shape(node.shape)} {axes}: one tile per depth tap"
        if value is None:
            page.message = _not_yet(s, node, gradient)
            return page
        value = np.asarray(value, dtype=np.float64)
        tiles, _outs = _volume_filters(value, symmetric_range(value), transposed)
        count = value.shape[0] * value.shape[1] * value.shape[2]
        page.sections.append(Section(f"{word}{node.name}{_volume_filters_legend(value.shape, transposed)}",
                                     tiles, _more(count, len(tiles), "filter taps"), group=value.shape[2]))
        return page
    page.channel_axis = channel_axis(s.graph, node)
    last = page.channel_axis != NCHW
    if last:
        page.headline = f"Feature maps of {escape(node.name)} · {fmt_shape(node.shape)} (batch, depth, h, w, " \
                        "channels): channels last, one map per channel at one depth slice"
    else:
        page.headline = f"Feature maps of {escape(node.name)} · {fmt_shape(node.shape)} " \
                        "(batch, channels, depth, h, w): one depth slice"
    if value is None:
        page.message = _not_yet(s, node, gradient)
        return page
    value = np.asarray(value, dtype=np.float64)
    if last:  # drawn as NCDHW; indices still name the node's axes
        value = np.moveaxis(value, page.channel_axis, NCHW)
        index = None if index is None or len(index) != 5 else (index[0], index[4], index[1], index[2], index[3])
    vmax = symmetric_range(value)  # the whole volume's range: slices compare by colour as the depth changes
    page.samples, page.depths = value.shape[0], value.shape[2]
    sample, depth = min(sample, value.shape[0] - 1), min(max(depth, 0), value.shape[2] - 1)
    page.depth = depth
    tiles = [Tile(value[sample, c, depth], f"channel {c}", vmax) for c in range(min(value.shape[1], MAX_MAPS))]
    if index is not None and len(index) == 5 and index[0] == sample and index[2] == depth and index[1] < len(tiles):
        tiles[index[1]].marks.append((index[3], index[4], index[3] + 1, index[4] + 1))
    page.sections.append(Section(f"{word}{node.name} · sample {sample} · depth {depth} of 0…{page.depths - 1}",
                                 tiles, _more(value.shape[1], MAX_MAPS, "channels")))
    page.targets = [(node.name, (sample, c, depth)) for c in range(len(tiles))]
    return page


def _volume_window_page(s: Session, node: Node, sample: int, depth: int, gradient: bool,
                        index: tuple[int, ...] | None) -> Page:
    read = s.grad if gradient else s.value
    word = "∂L/∂" if gradient else ""
    x_node = node.inputs[0]
    what = {"conv3d": "3-D convolution", "max_pool3d": "3-D max pooling", "avg_pool3d": "3-D average pooling"}
    attrs = ", ".join(f"{k} {v}" for k, v in node.attrs.items() if v not in (None, 0, 1) or k == "kernel_size")
    page = Page(CONV, f"{what[node.op.name]} <b>{escape(node.name)}</b>: {escape(x_node.name)} "
                      f"{fmt_shape(x_node.shape)} → {fmt_shape(node.shape)}" + (f" · {escape(attrs)}" if attrs else ""))
    out, x = read(node.name), read(x_node.name)
    if out is None or x is None:
        page.message = _not_yet(s, node, gradient)
        return page
    out, x = np.asarray(out, dtype=np.float64), np.asarray(x, dtype=np.float64)
    page.samples, page.depths = out.shape[0], out.shape[2]
    sample, depth = min(sample, out.shape[0] - 1), min(max(depth, 0), out.shape[2] - 1)
    page.depth = depth
    taps = depth_taps(node, depth)
    # the padding the windows read where a tap falls outside the volume: zeros, or −∞ for a max (drawn as unknown)
    padding = np.nan if node.op.name == "max_pool3d" else 0.0
    x_range = symmetric_range(x)
    in_channels = min(x.shape[1], max(1, MAX_MAPS // len(taps)))
    in_tiles, in_of = [], []
    for c in range(in_channels):
        for z in taps:
            inside = 0 <= z < x.shape[2]
            matrix = x[sample, c, z] if inside else np.full(x.shape[3:], padding)
            in_tiles.append(Tile(matrix, f"in {c} d{z}" if inside else f"in {c} pad", x_range,
                                 short=f"d{z}" if inside else "pad"))
            in_of.append(c)
    out_tiles = [Tile(out[sample, c, depth], f"out {c}", symmetric_range(out))
                 for c in range(min(out.shape[1], MAX_MAPS))]
    filters: list[Tile] = []
    filter_outs: list[int] = []
    w_shape: tuple[int, ...] = ()
    if node.op.name == "conv3d":
        w = read(node.inputs[1].name)
        if w is not None:
            w = np.asarray(w, dtype=np.float64)
            w_shape = w.shape
            filters, filter_outs = _volume_filters(w, symmetric_range(w), transposed=False)
    if index is not None and len(index) == 5 and index[0] == sample and index[2] == depth:
        o, i, j = index[1], index[3], index[4]
        if o < len(out_tiles):
            out_tiles[o].marks.append((i, j, i + 1, j + 1))
        channels, rows, cols = volume_receptive_field(node, o, i, j)
        for t, c in zip(in_tiles, in_of, strict=True):
            if c in channels:
                t.marks.extend(_field_marks(rows, cols))
        for t, filter_out in zip(filters, filter_outs, strict=True):
            t.outlined = filter_out == o
    inside = [z for z in taps if 0 <= z < x.shape[2]]
    reads = f"depths {inside[0]}…{inside[-1]}" if len(inside) > 1 else f"depth {inside[0]}" if inside else "padding"
    page.sections.append(Section(f"{word}{x_node.name} (input) · sample {sample} · channel by channel, the {reads} "
                                 f"that output depth {depth} reads", in_tiles,
                                 _more(x.shape[1], in_channels, "channels"), group=len(taps)))
    if filters:
        page.sections.append(Section(f"{word}{node.inputs[1].name}{_volume_filters_legend(w_shape, False)}",
                                     filters, group=w_shape[2]))
    hint = "click an output pixel: its receptive field lights up on the input slices"
    page.sections.append(Section(f"{word}{node.name} (output) · sample {sample} · depth {depth} of 0…"
                                 f"{page.depths - 1}", out_tiles, _more(out.shape[1], MAX_MAPS, "channels") or hint))
    page.targets = [(node.name, (sample, c, depth)) for c in range(len(out_tiles))]
    return page


# -- recurrence ------------------------------------------------------------------------------------
def _state_parts(value: np.ndarray | None, cell: Node, sample: int) -> dict[str, np.ndarray]:
    """h (and c for an LSTM) of one sample from a cell's value or gradient."""
    if value is None:
        return {}
    v = np.asarray(value, dtype=np.float64)
    parts = {"h": v[0], "c": v[1]} if cell.op.name == "lstm_cell" else {"h": v}
    return {k: (p[min(sample, p.shape[0] - 1)] if p.ndim > 1 else p) for k, p in parts.items()}


def cell_gates(s: Session, cell: Node, sample: int) -> dict[str, np.ndarray]:
    """The gates of one cell for one sample, from its inputs at the cursor ({} before it runs)."""
    helper = {"lstm_cell": lstm_gates, "gru_cell": gru_gates}.get(cell.op.name)
    if helper is None or s.value(cell.name) is None:
        return {}
    args = [np.asarray(s.value(a.name), dtype=np.float64) for a in cell.inputs]
    gates = helper(*args)
    return {k: (g[min(sample, g.shape[0] - 1)] if g.ndim > 1 else g) for k, g in gates.items()}


def recurrent_page(s: Session, node: Node, sample: int, gradient: bool) -> Page:
    cells = recurrent_cells(s.graph, node.module)
    first = cells[0]
    kind = first.op.name
    hidden = first.shape[-1]
    steps = len(cells)
    batch = first.shape[-2] if len(first.shape) >= 2 and (kind != "lstm_cell" or len(first.shape) == 3) else 1
    page = Page(RECURRENT, f"{first.op.symbol or kind} layer <b>{escape(node.module or first.name)}</b> unrolled "
                           f"over {steps} time steps · hidden size {hidden}", samples=batch)
    sample = min(sample, batch - 1)
    cols = [f"t{c.meta.get('time', k)}" for k, c in enumerate(cells)]
    rows = [str(k) for k in range(hidden)]
    series: dict[str, np.ndarray] = {}

    def put(key: str, t: int, v: np.ndarray | None) -> None:
        if v is not None:
            series.setdefault(key, np.full((hidden, steps), np.nan))[:, t] = v

    for t, cell in enumerate(cells):
        read = s.grad(cell.name) if gradient else s.value(cell.name)
        for part, v in _state_parts(read, cell, sample).items():
            put(part, t, v)
        if not gradient:
            for key, g in cell_gates(s, cell, sample).items():
                if key in dict(GATE_NAMES.get(kind, ())):
                    put(key, t, g)
    now = _time_of(s, cells)
    marks = [] if now is None else [(0, now, hidden, now + 1)]
    bounded = kind != "rnn_cell" or first.attrs.get("nonlinearity", "tanh") == "tanh"
    tiles = []
    if gradient:
        labels = [("h", "∂L/∂h")] + ([("c", "∂L/∂c")] if kind == "lstm_cell" else [])
    else:
        labels = [("h", "hidden state h")] + ([("c", "cell state c")] if kind == "lstm_cell" else [])
        labels += list(GATE_NAMES.get(kind, ()))
    page.keys = [key for key, _ in labels]
    for key, title in labels:
        m = series.get(key, np.full((hidden, steps), np.nan))
        if gradient or key == "c" or (key == "h" and not bounded):
            vmax = symmetric_range(m[np.isfinite(m)]) if np.isfinite(m).any() else 1.0
        else:
            vmax = 1.0
        tiles.append(Tile(m, title, vmax, rows, cols, list(marks), short=title if gradient else SHORT[key]))
    ranges = ", ".join(f"{'∂L/∂' if gradient else ''}{key} ±{fmt_num(t.range, 2)}"
                       for t, (key, _) in zip(tiles, labels, strict=True) if key not in BOUNDED)
    note = (f"Time runs left to right, one row per hidden unit. Gates run from 0 (white) to 1 (red); {ranges}. "
            "Gates live inside each cell: they have no gradient of their own." if not gradient else
            f"The gradient reaching each time step ({ranges}): see it fade towards t0 as it vanishes.")
    page.sections.append(Section(f"sample {sample}" + (" · gradients" if gradient else ""), tiles, note))
    page.targets = [(c.name, None) for c in cells]
    return page


def _time_of(s: Session, cells: list[Node]) -> int | None:
    """The column of the step now being taken, when it is one of these cells (or a select feeding one)."""
    record = s.current
    if record is None:
        return None
    names = {c.name: k for k, c in enumerate(cells)}
    if record.node.name in names:
        return names[record.node.name]
    for k, c in enumerate(cells):
        if record.node in c.inputs[:1]:
            return k
    return None


# -- attention -----------------------------------------------------------------------------------
def attention_matrix(s: Session, node: Node, gradient: bool) -> np.ndarray | None:
    """The node's attention weights as (heads, queries, keys) for the first sample; None if not computed."""
    if node.op.name == "scaled_dot_product_attention":
        if gradient or s.value(node.name) is None:
            return None
        q, k = (np.asarray(s.value(a.name), dtype=np.float64) for a in node.inputs[:2])
        a = node.attrs
        m = attention_weights(q, k, int(a.get("num_heads", 1)), bool(a.get("causal", False)), a.get("scale"))
    else:
        v = s.grad(node.name) if gradient else s.value(node.name)
        if v is None:
            return None
        m = np.asarray(v, dtype=np.float64)
    if m.ndim == 2:
        return m[None]
    return m.reshape(-1, *m.shape[-3:])[0] if m.ndim > 3 else m


def tokens_for(graph: Graph, node: Node, length: int) -> list[str]:
    tokens = node.meta.get("tokens")
    if tokens is None:
        tokens = next((n.meta["tokens"] for n in graph if "tokens" in n.meta and len(n.meta["tokens"]) == length),
                      None)
    if tokens is None or len(tokens) != length:
        return [str(k) for k in range(length)]
    return [str(t) for t in tokens]


def attention_page(s: Session, node: Node, gradient: bool, index: tuple[int, ...] | None) -> Page:
    page = Page(ATTENTION, f"Attention <b>{escape(node.name)}</b> · each row is a word (query), each column the "
                           "word it looks at (key)")
    m = attention_matrix(s, node, gradient)
    if m is None:
        page.message = ("A fused attention op has no gradient of its own weights; select it in Value mode."
                        if gradient and node.op.name == "scaled_dot_product_attention"
                        else _not_yet(s, node, gradient))
        return page
    heads, length, keys = m.shape
    rows, cols = tokens_for(s.graph, node, length), tokens_for(s.graph, node, keys)
    vmax = 1.0 if not gradient else symmetric_range(m)
    tiles = [Tile(m[h], f"head {h}" + (" · ∂L/∂A" if gradient else ""), vmax, rows, cols, numbers=True)
             for h in range(heads)]
    own = node.op.name != "scaled_dot_product_attention"
    if own and index is not None and len(index) >= 2 and len(node.shape) in (2, 3) and len(index) == len(node.shape):
        h = index[0] if len(index) == 3 else 0
        if h < heads:
            tiles[h].marks.append((index[-2], index[-1], index[-2] + 1, index[-1] + 1))
    note = "weights in each row add up to 1" if not gradient else ""
    page.sections.append(Section("attention weights" if not gradient else "gradient of the attention weights",
                                 tiles, note))
    if own and len(node.shape) in (2, 3):
        page.targets = [(node.name, (h,) if len(node.shape) == 3 else ()) for h in range(heads)]
    return page


def _not_yet(s: Session, node: Node, gradient: bool) -> str:
    if gradient and s.loss_node is None:
        return f"No gradient of {node.name}: there is no loss, so no backward pass (Debug ▸ Loss attaches one)."
    if gradient:
        return f"No gradient of {node.name} yet: it arrives during the backward pass."
    step = s.node_phase_index(node.name, "forward")
    return f"{node.name} is not computed yet" + (f": its forward step is {step + 1}." if step is not None else ".")


# -- the widget ------------------------------------------------------------------------------------
class _SectionView(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.title = QLabel()
        self.title.setWordWrap(True)  # a long title would set the dock's minimum width (past a 1024 screen's edge)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.grid = HeatGrid()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 2)
        lay.setSpacing(2)
        lay.addWidget(self.title)
        lay.addWidget(self.grid, 1)
        lay.addWidget(self.note)


class DepthBox(QSpinBox):
    """The depth slice shown: ↑ and ↓ choose it while it has the focus, and the window's step keys still step (a
    spin box takes ← and → for its text cursor, and PageUp, PageDown, Home and End for itself, so a presenter
    remote's PageDown would have jumped ten slices instead of taking the next step)."""

    STEP_KEYS = frozenset({Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown,
                           Qt.Key.Key_Home, Qt.Key.Key_End})

    @guarded_answer(False)
    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) \
                and event.key() in self.STEP_KEYS:
            event.ignore()  # not overridden: the window's shortcut takes the key
            return True
        return super().event(event)


class LayerView(QWidget):
    """The dock's content: the page for the selected node, or a list of nodes that have one."""

    fitChanged = Signal(bool)  # whether the selected node has a layer view

    def __init__(self, bridge: SessionBridge, selection: Selection, themes: ThemeManager,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("layerView")
        self.bridge, self.selection, self.themes = bridge, selection, themes
        self.page: Page | None = None
        self.node: str | None = None
        self.fits = False
        self._stale = True
        self.header = QLabel()
        self.header.setWordWrap(True)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.linkActivated.connect(lambda name: self.selection.select(name))
        self.sample = QSpinBox()
        self.sample.setObjectName("layerSample")
        self.sample.setPrefix("sample ")
        self.sample.setToolTip("Which example of the batch to show")
        self.sample.valueChanged.connect(lambda _v: self.refresh())
        self.depth_box = DepthBox()
        self.depth_box.setObjectName("layerDepth")
        self.depth_box.setPrefix("depth ")
        self.depth_box.setToolTip("Which depth slice of the volume to show (a video's frame): ↑ and ↓ once it has "
                                  "the focus (Tab or a click), a number typed, or the mouse wheel over it")
        self.depth_box.setAccessibleName("Depth slice")
        self.depth_box.valueChanged.connect(lambda _v: self.refresh())
        self._depths = 0  # the depth of the volume last drawn: its slice is kept for values of the same depth
        self._seen_index: tuple[int, ...] | None = None  # the selected element last drawn (a new one moves the slice)
        self.mode = QComboBox()
        self.mode.setObjectName("layerMode")
        self.mode.addItems(["Values", "Gradients"])
        self.mode.setToolTip("Show the values or the gradients ∂L/∂…")
        self.mode.activated.connect(lambda _i: self.refresh())
        for w in (self.sample, self.mode):
            w.setFocusPolicy(Qt.FocusPolicy.ClickFocus)  # the arrow keys stay with stepping
        # reached by Tab too: scrubbing through a volume is done from the keyboard, slice by slice
        self.depth_box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        controls = QHBoxLayout()
        controls.addWidget(self.mode)
        controls.addWidget(self.sample)
        controls.addWidget(self.depth_box)
        controls.addStretch(1)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.sections = [_SectionView() for _ in range(3)]
        for k, sv in enumerate(self.sections):
            sv.grid.cellClicked.connect(lambda t, r, c, k=k: self._clicked(k, t, r, c))
        # Its rows scroll where the dock is shorter than they need (as the inspector's do): beside the canvas in
        # projector type at 1024×768 a convolution's header, controls and three grids needed 343 px, and the window
        # asked for up to 883 lines of the screen's 768 with the Diff tab under the canvas.
        self.body = ScrollBody()
        self.body.setObjectName("layerRows")
        lay = self.box = QVBoxLayout(self.body)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addWidget(self.header)
        lay.addLayout(controls)
        lay.addWidget(self.message)
        for sv in self.sections:
            lay.addWidget(sv, 1)
        lay.addStretch(0)
        self.scroll = DockScroll(self.body)
        self.scroll.setObjectName("layerScroll")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll)
        self.body.resized.connect(self._share_height)
        bridge.cursorMoved.connect(lambda _c: self.refresh())
        bridge.traceChanged.connect(self.refresh)
        bridge.sessionChanged.connect(lambda _s: self.refresh())
        selection.changed.connect(self.refresh)
        themes.changed.connect(self._theme)
        self._theme()

    @property
    def gradient(self) -> bool:
        return self.mode.currentIndex() == 1

    def grids(self) -> list[HeatGrid]:
        """The grids now shown, top to bottom."""
        return [sv.grid for sv in self.sections if not sv.isHidden()]

    def refresh(self) -> None:
        s = self.bridge.session
        name = self.selection.node
        node = s.graph[name] if name is not None and name in s.graph else None
        kind = view_kind(s.graph, node) if node is not None else None
        fits = kind is not None
        if fits != self.fits:
            self.fits = fits
            self.fitChanged.emit(fits)
        if not self.isVisible():
            self._stale = True  # drawn when shown
            return
        self._stale = False
        if name != self.node:  # another node: its headline and controls in sight first
            self.scroll.verticalScrollBar().setValue(0)
        self.node = name
        if node is None or kind is None:
            self._show_hint(s)
            return
        index = self.selection.index
        if kind == CONV:
            depth = self._follow_depth(s.graph, node, index)
            page = conv_page(s, node, self.sample.value(), self.gradient, index, depth)
        elif kind == RECURRENT:
            page = recurrent_page(s, node, self.sample.value(), self.gradient)
        else:
            page = attention_page(s, node, self.gradient, index)
        self._show(page)

    def _follow_depth(self, graph: Graph, node: Node, index: tuple[int, ...] | None) -> int:
        """The depth slice to draw `node` at: the one chosen, kept for a value of the same depth and carried to the
        same place in the volume for another depth; a newly selected element's own slice."""
        depths = volume_depths(graph, node)
        new_index, self._seen_index = index != self._seen_index, index
        if not depths:
            return 0
        depth = self.depth_box.value()
        if self._depths and self._depths != depths:  # the slice's centre, at the new depth
            depth = int((depth + 0.5) * depths / self._depths)
        if new_index and index is not None and len(index) == 5:
            depth = index[depth_axis(graph, node)]
        depth = min(max(depth, 0), depths - 1)
        self._depths = depths
        self.depth_box.blockSignals(True)
        self.depth_box.setRange(0, depths - 1)
        self.depth_box.setSuffix(f" of 0…{depths - 1}")
        self.depth_box.setValue(depth)
        self.depth_box.blockSignals(False)
        return depth

    def _show_hint(self, s: Session) -> None:
        self.page = None
        names = fitting_nodes(s.graph)
        links = " · ".join(f'<a href="{escape(n)}">{escape(n)}</a>' for n in names[:12])
        self.header.setText("<b>Layer view</b><br>Select a convolution, a recurrent cell or an attention node"
                            + (f":<br>{links}" if links else " (this model has none)."))
        self.message.hide()
        self.sample.hide()
        self.depth_box.hide()
        self.mode.hide()
        for sv in self.sections:
            sv.hide()

    def _show(self, page: Page) -> None:
        self.page = page
        self.header.setText(page.headline)
        self.mode.show()
        self.sample.setVisible(page.samples > 1)
        if page.samples > 1:
            self.sample.blockSignals(True)
            self.sample.setRange(0, page.samples - 1)
            self.sample.blockSignals(False)
        self.depth_box.setVisible(page.depths > 1)
        self.message.setVisible(bool(page.message))
        self.message.setText(page.message)
        for k, sv in enumerate(self.sections):
            if k < len(page.sections):
                sec = page.sections[k]
                sv.title.setText(f"<b>{escape(sec.title)}</b>")
                sv.note.setText(sec.note)
                sv.note.setVisible(bool(sec.note))
                sv.grid.set_tiles(sec.tiles, sec.group)
                sv.show()
            else:
                sv.hide()
        self._share_height()

    def _share_height(self) -> None:
        """Share the height so that every grid's cells come out about the same size."""
        shown = [sv for sv in self.sections if not sv.isHidden()]
        if not shown:
            return
        width = max(self.body.width() - 12, 100)
        room = sum(sv.grid.height() for sv in shown)
        low, high = MIN_CELL, 64.0 * self.themes.theme.scale  # from the grids' smallest cell (`HeatGrid.min_cell`)
        for _ in range(20):  # the largest common cell size whose grids fit the room together
            mid = (low + high) / 2
            if sum(sv.grid.height_at(width, mid) for sv in shown) <= room:
                low = mid
            else:
                high = mid
        for sv in shown:
            need = sv.grid.height_at(width, low) + sv.title.sizeHint().height() + 4
            if not sv.note.isHidden():
                need += sv.note.heightForWidth(width)
            self.box.setStretchFactor(sv, max(1, min(round(need), 100000)))

    def _clicked(self, section: int, tile: int, row: int, col: int) -> None:
        """A click on the output grid selects that element (and so lights its receptive field)."""
        page = self.page
        if page is None:
            return
        clickable = len(page.sections) - 1 if page.kind == CONV else 0
        if section != clickable or tile >= len(page.targets):
            return
        if page.kind == RECURRENT:  # a column is a time step: select that cell, at this unit's h (or c)
            if col >= len(page.targets):
                return
            cell = self.bridge.session.graph[page.targets[col][0]]
            lead = ((1,) if page.keys[tile] == "c" else (0,)) if cell.op.name == "lstm_cell" else ()
            batch = (self.sample.value(),) if len(cell.shape) - len(lead) >= 2 else ()
            self.selection.select(cell.name, (*lead, *batch, row))
            return
        name, prefix = page.targets[tile]
        if page.kind == CONV and page.channel_axis != NCHW:  # (sample, channel[, depth]) of (N[, D], H, W, C)
            sample, channel, *depth = prefix
            self.selection.select(name, (sample, *depth, row, col, channel))
            return
        self.selection.select(name, (*prefix, row, col))

    @guarded
    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()

    def _theme(self) -> None:
        theme = self.themes.theme
        for sv in self.sections:
            sv.grid.apply_theme(theme)
            font = theme.font(11.5, bold=False)
            sv.title.setFont(font)
            sv.note.setFont(theme.font(10))
        self.header.setFont(theme.font(12))
        self.message.setFont(theme.font(11))
        self.refresh()

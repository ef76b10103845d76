"""ONNX GRU, LSTM and RNN: gate order and layout mapped to PyTorch's cells, unrolled per time step."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import Lazy, Unmapped
from ..onnx_reader import Ctx, Init, Reader, onnx_op

# rows of ONNX's stacked gates, in PyTorch's order: GRU z, r, h -> r, z, n; LSTM i, o, f, c -> i, f, g, o
_GATES = {"GRU": (1, 0, 2), "LSTM": (0, 2, 3, 1), "RNN": (0,)}


def _reorder(w: np.ndarray, order: tuple[int, ...]) -> np.ndarray:
    parts = np.split(w, len(order), axis=0)
    return np.concatenate([parts[i] for i in order], axis=0)


@onnx_op("GRU", "LSTM", "RNN")
def _recurrent(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    kind = {"GRU": "gru", "LSTM": "lstm", "RNN": "rnn"}[ctx.op]
    a = ctx.attrs
    if a.get("clip") is not None or a.get("activation_alpha") or a.get("input_forget", 0):
        raise Unmapped("clip, activation parameters or coupled input-forget gates")
    acts = [s.decode() if isinstance(s, bytes) else str(s) for s in a.get("activations", [])]
    nonlinearity = "tanh"
    if kind == "rnn" and acts:
        nonlinearity = acts[0].lower()
        if nonlinearity not in ("tanh", "relu"):
            raise Unmapped(f"an RNN with activation {acts[0]}")
    elif acts and [s.lower() for s in acts] != (["sigmoid", "tanh"] if kind == "gru" else
                                               ["sigmoid", "tanh", "tanh"]) * (len(acts) // (2 if kind == "gru"
                                                                                              else 3)):
        raise Unmapped(f"activations {acts}")
    if len(ins) > 4 and ins[4] is not None:
        lens = r.folded(ins[4])
        if lens is None or not np.all(lens == r.shape(ins[0])[int(a.get("layout", 0))]):
            raise Unmapped("sequences of different lengths (sequence_lens)")
    if len(ins) > 7 and ins[7] is not None:
        peep = r.folded(ins[7])
        if peep is None or peep.any():
            raise Unmapped("an LSTM with peepholes (PyTorch's LSTM has none)")
    W, R = ins[1], ins[2]
    B = ins[3] if len(ins) > 3 else None
    x = r.node(ins[0], ctx)
    batch_first = int(a.get("layout", 0)) == 1
    if batch_first:  # (batch, time, features): the cells step along axis 1
        x = r.b.op("transpose", x, name=f"{ctx.name}.time_major", module=ctx.module, attrs={"axes": (1, 0, 2)})
    steps, batch = x.shape[0], x.shape[1]
    dirs = r.shape(W)[0]
    hidden = int(a.get("hidden_size") or r.shape(R)[-1])
    order = _GATES[ctx.op]
    g = len(order)
    direction = str(a.get("direction", "forward"))
    layer = r.gru_count.get(ctx.module, 0)
    r.gru_count[ctx.module] = layer + 1
    base = ctx.module or ctx.name
    xs = [r.b.op("select", x, name=f"{base}.x{t}", module=ctx.module, attrs={"axis": 0, "index": t})
          for t in range(steps)]
    states = [_initial(r, ctx, ins, i, batch_first) for i in (5, 6)]
    per_dir: list[list[Node]] = []
    finals: list[Node] = []
    for d in range(dirs):
        suffix = f"_l{layer}" + ("_reverse" if d == 1 or direction == "reverse" else "")
        w_ih = _weight(r, ctx, W, d, order, None, f"{base}.weight_ih{suffix}")
        w_hh = _weight(r, ctx, R, d, order, None, f"{base}.weight_hh{suffix}")
        if B is None:
            zeros = np.zeros(g * hidden, dtype=np.float64)
            b_ih = r.b.leaf("parameter", f"{base}.bias_ih{suffix}", zeros, module=ctx.module)
            b_hh = r.b.leaf("parameter", f"{base}.bias_hh{suffix}", zeros.copy(), module=ctx.module)
        else:
            b_ih = _weight(r, ctx, B, d, order, (0, g * hidden), f"{base}.bias_ih{suffix}")
            b_hh = _weight(r, ctx, B, d, order, (g * hidden, 2 * g * hidden), f"{base}.bias_hh{suffix}")
        state = _state(r, ctx, kind, states, d, batch, hidden, f"state0{suffix}")
        reverse = d == 1 or direction == "reverse"
        if kind == "gru" and not a.get("linear_before_reset", 0):  # ONNX's default, not PyTorch's cell
            cells = _gru_reset_before(r, ctx, xs, state, (w_ih, w_hh, b_ih, b_hh), hidden, f"{base}{suffix}", reverse)
        else:
            cells = r.b.recurrent(kind, xs, state, (w_ih, w_hh, b_ih, b_hh), ctx.module, f"{base}{suffix}",
                                  reverse=reverse, nonlinearity=nonlinearity)
        per_dir.append(cells)
        finals.append(cells[0] if reverse else cells[-1])

    def h_of(s: Node, tag: str) -> Node:
        if kind != "lstm":
            return s
        return r.b.op("select", s, name=f"{s.name}.{tag}", module=ctx.module, attrs={"axis": 0, "index": 0})

    def y() -> Node:
        parts = []
        for t in range(steps):
            hs = [r.b.op("reshape", h_of(per_dir[d][t], "h"), name=f"{base}{'' if d == 0 else '_reverse'}.y{t}",
                         module=ctx.module, attrs={"shape": (1, 1, batch, hidden)}) for d in range(dirs)]
            parts.append(hs[0] if dirs == 1 else r.b.op("concat", *hs, name=f"{base}.y{t}", module=ctx.module,
                                                        attrs={"axis": 1}))
        y_all = parts[0] if steps == 1 else r.b.op("concat", *parts, name=f"{ctx.name}.Y", module=ctx.module,
                                                   attrs={"axis": 0})
        if batch_first:  # ONNX's layout 1: (batch, time, directions, hidden)
            return r.b.op("transpose", y_all, name=f"{ctx.name}.Y_batch_first", module=ctx.module,
                          attrs={"axes": (2, 0, 1, 3)})
        return y_all

    def final(index: int, tag: str) -> Node:
        parts = []
        for d, s in enumerate(finals):
            v = s if kind != "lstm" else r.b.op("select", s, name=f"{s.name}.{tag}", module=ctx.module,
                                                attrs={"axis": 0, "index": index})
            parts.append(r.b.op("reshape", v, name=f"{ctx.name}.{tag}{d}", module=ctx.module,
                                attrs={"shape": (1, batch, hidden)}))
        both = parts[0] if dirs == 1 else r.b.op("concat", *parts, name=f"{ctx.name}.{tag}", module=ctx.module,
                                                 attrs={"axis": 0})
        if batch_first:  # (batch, directions, hidden)
            return r.b.op("transpose", both, name=f"{ctx.name}.{tag}_batch_first", module=ctx.module,
                          attrs={"axes": (1, 0, 2)})
        return both

    out: list[Any] = [Lazy(y), Lazy(partial(final, 0, "h_n"))]
    if kind == "lstm":
        out.append(Lazy(partial(final, 1, "c_n")))
    return out


def _weight(r: Reader, ctx: Ctx, value: Any, d: int, order: tuple[int, ...], cut: tuple[int, int] | None,
            name: str) -> Node:
    """Direction d of a stacked ONNX weight (or of the bias, rows `cut`), its gates in PyTorch's order.

    An initializer becomes a parameter in PyTorch's layout (`gru.weight_ih_l0`, as the state dict names
    it); a weight the model receives at run time is rearranged by select, slice and concat steps.
    """
    array = value.array if isinstance(value, Init) else r.folded(value)
    if array is not None:
        part = array[d] if cut is None else array[d][cut[0]:cut[1]]
        return r.b.leaf("parameter", name, np.ascontiguousarray(_reorder(part, order)), module=ctx.module)
    node = r.node(value, ctx)
    one = r.b.op("select", node, name=f"{name}.dir", module=ctx.module, attrs={"axis": 0, "index": d})
    start = 0 if cut is None else cut[0]
    rows = (one.shape[0] if cut is None else cut[1] - cut[0]) // len(order)
    gates = [r.b.op("slice", one, name=f"{name}.gate{i}", module=ctx.module,
                    attrs={"axes": (0,), "starts": (start + i * rows,), "stops": (start + (i + 1) * rows,),
                           "steps": (1,)}) for i in order]
    return gates[0] if len(gates) == 1 else r.b.op("concat", *gates, name=name, module=ctx.module,
                                                    attrs={"axis": 0})


def _initial(r: Reader, ctx: Ctx, ins: list[Any], index: int, batch_first: bool) -> Any:
    """initial_h (5) or initial_c (6): an array, a node computed at run time (the dynamo exporter's zeros
    of the batch's size), or None; in (directions, batch, hidden)."""
    if len(ins) <= index or ins[index] is None:
        return None
    c = r.folded(ins[index])
    if c is not None:
        return np.transpose(c, (1, 0, 2)) if batch_first else c
    node = r.node(ins[index], ctx, hint="initial_state")
    if batch_first:
        node = r.b.op("transpose", node, name=f"{ctx.name}.state{index}_dir_major", module=ctx.module,
                      attrs={"axes": (1, 0, 2)})
    return node


def _state(r: Reader, ctx: Ctx, kind: str, states: list[Any], d: int, batch: int, hidden: int, tag: str) -> Node:
    """The cell's first state for direction d: h, or the LSTM's stacked [h; c]."""
    parts: list[Any] = []
    for s in states[: 2 if kind == "lstm" else 1]:
        if s is None or isinstance(s, np.ndarray):
            arr = np.zeros((batch, hidden)) if s is None else np.asarray(s[d], dtype=np.float64)
            parts.append(arr)
        else:
            parts.append(r.b.op("select", s, name=f"{ctx.name}.{tag}_{len(parts)}", module=ctx.module,
                                attrs={"axis": 0, "index": d}))
    if all(isinstance(p, np.ndarray) for p in parts):
        arr = np.stack(parts) if kind == "lstm" else parts[0]
        if not arr.any():  # zeros broadcast over the batch: the graph keeps its batch size free
            arr = np.zeros((2, 1, hidden)) if kind == "lstm" else np.zeros(hidden)
        return r.b.const(arr.astype(np.float64), ctx.module, tag)
    nodes = [p if isinstance(p, Node) else r.b.const(p, ctx.module, f"{tag}_{i}") for i, p in enumerate(parts)]
    if kind != "lstm":
        return nodes[0]
    stacked = [r.b.op("reshape", n, name=f"{ctx.name}.{tag}_row{i}", module=ctx.module,
                      attrs={"shape": (1, batch, hidden)}) for i, n in enumerate(nodes)]
    return r.b.op("concat", *stacked, name=f"{ctx.name}.{tag}", module=ctx.module, attrs={"axis": 0})


def _gru_reset_before(r: Reader, ctx: Ctx, xs: list[Node], state: Node, weights: tuple[Node, Node, Node, Node],
                      hidden: int, prefix: str, reverse: bool) -> list[Node]:
    """ONNX's default GRU (linear_before_reset=0) unrolled into catalog steps, since PyTorch's cell (the
    catalog's gru_cell) applies the reset gate after the recurrent product:
    n = tanh(x W_nᵀ + b_in + (r ⊙ h) R_nᵀ + b_hn), not tanh(x W_nᵀ + b_in + r ⊙ (h R_nᵀ + b_hn)).
    The weights arrive in PyTorch's gate order r, z, n."""
    m = ctx.module

    def gate(node: Node, i: int, tag: str) -> Node:
        return r.b.op("slice", node, name=f"{prefix}.{tag}", module=m,
                      attrs={"axes": (0,), "starts": (i * hidden,), "stops": ((i + 1) * hidden,), "steps": (1,)})

    w_ih, w_hh, b_ih, b_hh = weights
    W = {g: gate(w_ih, i, f"W_i{g}") for i, g in enumerate("rzn")}
    R = {g: gate(w_hh, i, f"W_h{g}") for i, g in enumerate("rzn")}
    bi = {g: gate(b_ih, i, f"b_i{g}") for i, g in enumerate("rzn")}
    bh = {g: gate(b_hh, i, f"b_h{g}") for i, g in enumerate("rzn")}
    one = r.b.const(np.ones(()), m, "one")
    order = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    h = state
    states: dict[int, Node] = {}
    for t in order:
        def step(name: str, op_name: str, *inputs: Node, _t: int = t, **attrs: Any) -> Node:
            return r.b.op(op_name, *inputs, name=f"{prefix}.t{_t}.{name}", module=m, attrs=attrs or None, time=_t)

        def lin(x: Node, w: Node, b: Node, name: str) -> Node:
            return step(name, "linear", x, w, b, transpose_weight=True)

        z = step("z", "sigmoid", step("z_in", "add", lin(xs[t], W["z"], bi["z"], "xz"), lin(h, R["z"], bh["z"], "hz")))
        reset = step("r", "sigmoid", step("r_in", "add", lin(xs[t], W["r"], bi["r"], "xr"),
                                          lin(h, R["r"], bh["r"], "hr")))
        n = step("n", "tanh", step("n_in", "add", lin(xs[t], W["n"], bi["n"], "xn"),
                                   lin(step("rh", "mul", reset, h), R["n"], bh["n"], "hn")))
        h = step("h", "add", step("keep_new", "mul", step("1-z", "sub", one, z), n), step("keep_old", "mul", z, h))
        states[t] = h
    return [states[t] for t in range(len(xs))]

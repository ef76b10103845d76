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
    if int(a.get("layout", 0)) != 0:
        raise Unmapped("batch-first layout=1")
    if a.get("clip") is not None or a.get("activation_alpha") or a.get("input_forget", 0):
        raise Unmapped("clip, activation parameters or coupled input-forget gates")
    if kind == "gru" and not a.get("linear_before_reset", 0):
        raise Unmapped("a GRU with linear_before_reset=0 (PyTorch's GRU has 1)")
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
        if lens is None or not np.all(lens == r.shape(ins[0])[0]):
            raise Unmapped("sequences of different lengths (sequence_lens)")
    found = [r.folded(v) if not isinstance(v, Init) else v.array for v in ins[1:4] if v is not None]
    weights = [w for w in found if w is not None]
    if len(weights) < 2 or len(weights) != len(found):
        raise Unmapped("recurrent weights computed at run time")
    W, R = weights[0], weights[1]
    B = weights[2] if len(weights) > 2 and ins[3] is not None else None
    x = r.node(ins[0], ctx)
    steps, batch = x.shape[0], x.shape[1]
    dirs = W.shape[0]
    hidden = int(a.get("hidden_size") or R.shape[-1])
    order = _GATES[ctx.op]
    g = len(order)
    direction = str(a.get("direction", "forward"))
    layer = r.gru_count.get(ctx.module, 0)
    r.gru_count[ctx.module] = layer + 1
    base = ctx.module or ctx.name
    xs = [r.b.op("select", x, name=f"{base}.x{t}", module=ctx.module, attrs={"axis": 0, "index": t})
          for t in range(steps)]
    h0 = r.folded(ins[5]) if len(ins) > 5 and ins[5] is not None else np.zeros((dirs, batch, hidden))
    c0 = r.folded(ins[6]) if len(ins) > 6 and ins[6] is not None else np.zeros((dirs, batch, hidden))
    if h0 is None or c0 is None:
        raise Unmapped("an initial state computed at run time")
    per_dir: list[list[Node]] = []
    finals: list[Node] = []
    for d in range(dirs):
        suffix = f"_l{layer}" + ("_reverse" if d == 1 or direction == "reverse" else "")
        w_ih = r.b.leaf("parameter", f"{base}.weight_ih{suffix}", np.ascontiguousarray(_reorder(W[d], order)),
                        module=ctx.module)
        w_hh = r.b.leaf("parameter", f"{base}.weight_hh{suffix}", np.ascontiguousarray(_reorder(R[d], order)),
                        module=ctx.module)
        bias = np.zeros(2 * g * hidden, dtype=W.dtype) if B is None else B[d]
        b_ih = r.b.leaf("parameter", f"{base}.bias_ih{suffix}", _reorder(bias[: g * hidden], order), module=ctx.module)
        b_hh = r.b.leaf("parameter", f"{base}.bias_hh{suffix}", _reorder(bias[g * hidden:], order), module=ctx.module)
        if kind == "lstm":
            state0 = np.stack([h0[d], c0[d]])
            state0 = state0 if state0.any() else np.zeros((2, 1, hidden))
        else:
            state0 = h0[d] if h0[d].any() else np.zeros(hidden)
        state = r.b.const(state0.astype(np.float64), ctx.module, f"state0{suffix}")
        reverse = d == 1 or direction == "reverse"
        states = r.b.recurrent(kind, xs, state, (w_ih, w_hh, b_ih, b_hh), ctx.module, f"{base}{suffix}",
                               reverse=reverse, nonlinearity=nonlinearity)
        per_dir.append(states)
        finals.append(states[0] if reverse else states[-1])

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
        return parts[0] if steps == 1 else r.b.op("concat", *parts, name=f"{ctx.name}.Y", module=ctx.module,
                                                  attrs={"axis": 0})

    def final(index: int, tag: str) -> Node:
        parts = []
        for d, s in enumerate(finals):
            v = s if kind != "lstm" else r.b.op("select", s, name=f"{s.name}.{tag}", module=ctx.module,
                                                attrs={"axis": 0, "index": index})
            parts.append(r.b.op("reshape", v, name=f"{ctx.name}.{tag}{d}", module=ctx.module,
                                attrs={"shape": (1, batch, hidden)}))
        return parts[0] if dirs == 1 else r.b.op("concat", *parts, name=f"{ctx.name}.{tag}", module=ctx.module,
                                                 attrs={"axis": 0})

    out: list[Any] = [Lazy(y), Lazy(partial(final, 0, "h_n"))]
    if kind == "lstm":
        out.append(Lazy(partial(final, 1, "c_n")))
    return out

"""ATen's fused recurrent layers, unrolled into one cell per time step."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import (
    Ctx,
    Lazy,
    Sequence,
    Translator,
    Unmapped,
    aten,
    op_key,
    self_arg,
)


@aten("gru", "lstm", "rnn_tanh", "rnn_relu")
def _recurrent(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    kind = {"gru": "gru", "lstm": "lstm", "rnn_tanh": "rnn", "rnn_relu": "rnn"}[op]
    if not ctx.target.endswith(".input"):
        raise Unmapped("a packed sequence")
    x = t.node(self_arg(a), ctx)
    if len(x.shape) != 3:
        raise Unmapped(f"a recurrent input of shape {x.shape}")
    layers, bidir = int(a["num_layers"]), bool(a["bidirectional"])
    batch_first, has_bias = bool(a["batch_first"]), bool(a["has_biases"])
    if a.get("train") and float(a.get("dropout", 0.0)) > 0 and layers > 1:
        t.b.warnings.append(f"{kind} {ctx.name!r}: dropout between layers is left out")
    params = list(a["params"])
    per = 4 if has_bias else 2
    dirs = 2 if bidir else 1
    if len(params) != per * layers * dirs:
        raise Unmapped("recurrent weights with projections (proj_size) or an unexpected layout")
    time_axis = 1 if batch_first else 0
    steps = x.shape[time_axis]
    module = ctx.module
    hidden = t.shape(params[1])[1]
    h0 = a["hx"][0] if kind == "lstm" else a["hx"]
    c0 = a["hx"][1] if kind == "lstm" else None
    base = module or ctx.name
    xs: list[Any] = [Lazy(partial(_pick, t, x, f"{base}.x{i}", module, time_axis, i)) for i in range(steps)]
    finals: list[tuple[Node, Node | None]] = []
    outs: list[Lazy] = []
    for layer in range(layers):
        layer_outs: list[list[Lazy]] = []
        for d in range(dirs):
            k = layer * dirs + d
            w = params[k * per: (k + 1) * per]
            w_ih, w_hh = t.node(w[0], ctx), t.node(w[1], ctx)
            if has_bias:
                b_ih, b_hh = t.node(w[2], ctx), t.node(w[3], ctx)
            else:
                b_ih = t.b.const(np.zeros(w_ih.shape[0]), module, "no_bias")
                b_hh = b_ih
            state = _initial_state(t, ctx, kind, h0, c0, k, hidden)
            suffix = ("" if layers == 1 else f".l{layer}") + ("_reverse" if d else "")
            inputs = [t.node(v, ctx) for v in xs]
            states = t.b.recurrent(kind, inputs, state, (w_ih, w_hh, b_ih, b_hh), module,
                                   f"{base}{suffix}", reverse=bool(d),
                                   nonlinearity="relu" if op == "rnn_relu" else "tanh")
            if kind == "lstm":  # h is the first half of the stacked state
                hs = [Lazy(partial(_pick, t, s, f"{base}{suffix}.h{i}", module, 0, 0)) for i, s in enumerate(states)]
            else:
                hs = [Lazy(partial(_same_node, s)) for s in states]
            last = states[0] if d else states[-1]
            finals.append((last, None))
            layer_outs.append(hs)
        if dirs == 1:
            outs = layer_outs[0]
        else:
            outs = [Lazy(partial(_join, t, ctx, f, r, f"{base}.l{layer}.h{i}"))
                    for i, (f, r) in enumerate(zip(layer_outs[0], layer_outs[1], strict=True))]
        xs = list(outs)

    def full() -> Node:
        batch = x.shape[1 - time_axis]
        width = hidden * dirs
        one = (batch, 1, width) if batch_first else (1, batch, width)
        parts = [t.b.op("reshape", t.node(h, ctx), name=f"{base}.out{i}", module=module, attrs={"shape": one})
                 for i, h in enumerate(outs)]
        return t.b.op("concat", *parts, name=ctx.name, module=module, attrs={"axis": time_axis})

    def stacked(index: int) -> Node:
        parts = []
        for k, (s, _) in enumerate(finals):
            h = s if kind != "lstm" else t.b.op("select", s, name=f"{ctx.name}.final{index}_{k}", module=module,
                                               attrs={"axis": 0, "index": index})
            parts.append(t.b.op("reshape", h, name=f"{ctx.name}.n{index}_{k}", module=module,
                                attrs={"shape": (1, *h.shape)}))
        return parts[0] if len(parts) == 1 else t.b.op("concat", *parts, name=f"{ctx.name}.n{index}",
                                                          module=module, attrs={"axis": 0})

    result: list[Any] = [Sequence(outs, time_axis, Lazy(full)), Lazy(partial(stacked, 0))]
    if kind == "lstm":
        result.append(Lazy(partial(stacked, 1)))
    return result


def _pick(t: Translator, x: Node, name: str, module: str, axis: int, index: int) -> Node:
    return t.b.op("select", x, name=name, module=module, attrs={"axis": axis, "index": index})


def _same_node(node: Node) -> Node:
    return node


def _join(t: Translator, ctx: Ctx, forward: Any, backward: Any, name: str) -> Node:
    """The two directions of a bidirectional layer, side by side in the features."""
    return t.b.op("concat", t.node(forward, ctx), t.node(backward, ctx), name=name, module=ctx.module,
                  attrs={"axis": -1})


def _initial_state(t: Translator, ctx: Ctx, kind: str, h0: Any, c0: Any, k: int, hidden: int) -> Node:
    """h (or the LSTM's stacked [h; c]) before the first step; an all-zero state serves any batch size."""
    if t.const(h0) and (c0 is None or t.const(c0)):
        h = np.asarray(h0)[k]
        if kind == "lstm":
            state = np.stack([h, np.asarray(c0)[k]])
            if not state.any():
                state = np.zeros((2, 1, hidden))
        else:
            state = h if h.any() else np.zeros(hidden)
        return t.b.const(state.astype(np.float64), ctx.module, "state0")
    h = t.b.op("select", t.node(h0, ctx), name=f"{ctx.name}.h0_{k}", module=ctx.module, attrs={"axis": 0, "index": k})
    if kind != "lstm":
        return h
    c = t.b.op("select", t.node(c0, ctx), name=f"{ctx.name}.c0_{k}", module=ctx.module, attrs={"axis": 0, "index": k})
    one = (1, *h.shape)
    hr = t.b.op("reshape", h, name=f"{ctx.name}.h0r_{k}", module=ctx.module, attrs={"shape": one})
    cr = t.b.op("reshape", c, name=f"{ctx.name}.c0r_{k}", module=ctx.module, attrs={"shape": one})
    return t.b.op("concat", hr, cr, name=f"{ctx.name}.s0_{k}", module=ctx.module, attrs={"axis": 0})


@aten("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell")
def _one_cell(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """nn.LSTMCell, GRUCell, RNNCell as torch.export keeps them: one catalog cell, the LSTM's (h', c') read
    from its stacked state as two selects."""
    op = op_key(ctx.target)
    kind = op.split("_")[0]
    x = t.node(self_arg(a), ctx)
    w_ih, w_hh = t.node(a["w_ih"], ctx), t.node(a["w_hh"], ctx)
    gates_width = w_ih.shape[0]
    b_ih, b_hh = (t.node(a[b], ctx) if a.get(b) is not None
                  else t.b.const(np.zeros(gates_width), ctx.module, f"no_{b}") for b in ("b_ih", "b_hh"))
    state = _cell_state(t, ctx, kind, a["hx"])
    attrs = {"nonlinearity": "relu" if op == "rnn_relu_cell" else "tanh"} if kind == "rnn" else None
    out = t.b.op(f"{kind}_cell", x, state, w_ih, w_hh, b_ih, b_hh, name=ctx.name, module=ctx.module, attrs=attrs)
    if kind != "lstm":
        return out
    return [Lazy(partial(_pick, t, out, f"{ctx.name}.{half}", ctx.module, 0, i)) for i, half in enumerate("hc")]


def _cell_state(t: Translator, ctx: Ctx, kind: str, hx: Any) -> Node:
    """The cell's state node: h, or the LSTM's [h; c] stacked on a new first axis. An all-zero state (the
    default when no state is passed) is one small constant that serves any batch size."""
    parts = list(hx) if kind == "lstm" else [hx]
    known = [t.known(p) for p in parts]
    if all(k is not None for k in known):
        arrays = [np.asarray(k, dtype=np.float64) for k in known]
        if not any(v.any() for v in arrays):
            hidden = arrays[0].shape[-1]
            return t.b.const(np.zeros((2, 1, hidden) if kind == "lstm" else hidden), ctx.module, "state0")
        return t.b.const(np.stack(arrays) if kind == "lstm" else arrays[0], ctx.module, "state0")
    if kind != "lstm":
        return t.node(hx, ctx)
    h, c = (t.node(p, ctx) for p in parts)
    hr, cr = (t.b.op("reshape", v, name=f"{ctx.name}.{n}0", module=ctx.module, attrs={"shape": (1, *v.shape)})
              for n, v in (("h", h), ("c", c)))
    return t.b.op("concat", hr, cr, name=f"{ctx.name}.s0", module=ctx.module, attrs={"axis": 0})

"""Recurrent cells, one time step each: a layer is unrolled into one cell node per step.

Weights follow PyTorch's RNNCell, LSTMCell and GRUCell exactly (W_ih (gates·H, I), W_hh (gates·H, H),
gate order i, f, g, o for the LSTM and r, z, n for the GRU), so their state_dicts load unchanged.

The LSTM cell carries (h, c) as ONE stacked value `s` of shape (2, ..., H): a node has one output,
and splitting the cell into an h-op and a c-op would compute the gates twice and show one cell as two
steps. With the stacked state, each time step is one step, and the gradient that flows back from
cell to cell is the gradient of (h, c) together: the cell-state highway of the lesson is visible as
the `c` half of it. A `select` (axis 0, index 0) reads h for the layers above.

The state may broadcast against the batch (an initial state of shape (H,) or (2, 1, H) serves any
batch size); its gradient is summed back to its own shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError
from . import shapes as S
from .opdef import OpDef, define

Shape = tuple[int, ...]


def _cell_shape(name: str, gates: int, stacked: bool) -> Any:
    def rule(shapes: Sequence[Shape], attrs: Mapping[str, Any]) -> Shape:
        x, s, w_ih, w_hh, b_ih, b_hh = (tuple(t) for t in shapes)
        if len(w_hh) != 2 or w_hh[0] != gates * w_hh[1]:
            raise ShapeError(f"{name}: W_hh must be ({gates}·H, H), got {S.fmt(w_hh)}")
        hidden = w_hh[1]
        if not x or w_ih != (gates * hidden, x[-1]):
            raise ShapeError(f"{name}: W_ih must be ({gates * hidden}, {x[-1] if x else '?'}), got {S.fmt(w_ih)}")
        for role, b in (("b_ih", b_ih), ("b_hh", b_hh)):
            if b != (gates * hidden,):
                raise ShapeError(f"{name}: {role} must be ({gates * hidden},), got {S.fmt(b)}")
        state = s
        if stacked:
            if not s or s[0] != 2:
                raise ShapeError(f"{name}: the state stacks (h, c) as (2, ..., {hidden}), got {S.fmt(s)}")
            state = s[1:]
        if not state or state[-1] != hidden:
            raise ShapeError(f"{name}: the state must end in the hidden size {hidden}, got {S.fmt(s)}")
        try:
            lead = tuple(np.broadcast_shapes(x[:-1], state[:-1]))
        except ValueError:
            raise ShapeError(f"{name}: input {S.fmt(x)} and state {S.fmt(s)} disagree on the batch") from None
        return (2, *lead, hidden) if stacked else (*lead, hidden)

    return rule


_W = "W_ih", "W_hh", "b_ih", "b_hh"

define(OpDef(
    "rnn_cell", ("x", "h", *_W), "h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)",
    {
        "x": "∂L/∂x = δ W_ih,  δ = ∂L/∂h' ⊙ (1 − h'²)",
        "h": "∂L/∂h = δ W_hh  (the step back in time: repeated, it shrinks or grows the gradient)",
        "W_ih": "∂L/∂W_ih = δᵀ x",
        "W_hh": "∂L/∂W_hh = δᵀ h",
        "b_ih": "∂L/∂b_ih = Σ_batch δ",
        "b_hh": "∂L/∂b_hh = Σ_batch δ",
    },
    _cell_shape("rnn_cell", 1, False), "RNN", out="h'", category="recurrent",
    default_attrs={"nonlinearity": "tanh"},
    summary="one time step of a plain (Elman) RNN, as torch.nn.RNNCell (nonlinearity tanh or relu)",
))

define(OpDef(
    "lstm_cell", ("x", "s", *_W),
    "[i, f, g, o] = [σ, σ, tanh, σ](x W_ihᵀ + b_ih + h W_hhᵀ + b_hh);  c' = f ⊙ c + i ⊙ g;  "
    "h' = o ⊙ tanh(c');  s = [h; c] → s' = [h'; c']",
    {
        "x": "∂L/∂x = δ W_ih,  δ = [∂L/∂i · i(1−i), ∂L/∂f · f(1−f), ∂L/∂g · (1−g²), ∂L/∂o · o(1−o)],  "
             "∂L/∂o = ∂L/∂h' ⊙ tanh(c'),  ∂L/∂i = ∂L/∂ĉ ⊙ g,  ∂L/∂f = ∂L/∂ĉ ⊙ c,  ∂L/∂g = ∂L/∂ĉ ⊙ i",
        "s": "∂L/∂c = ∂L/∂ĉ ⊙ f  with ∂L/∂ĉ = ∂L/∂c' + ∂L/∂h' ⊙ o ⊙ (1 − tanh²(c'))  (the cell-state highway);  "
             "∂L/∂h = δ W_hh",
        "W_ih": "∂L/∂W_ih = δᵀ x",
        "W_hh": "∂L/∂W_hh = δᵀ h",
        "b_ih": "∂L/∂b_ih = Σ_batch δ",
        "b_hh": "∂L/∂b_hh = Σ_batch δ",
    },
    _cell_shape("lstm_cell", 4, True), "LSTM", out="s'", category="recurrent",
    summary="one time step of an LSTM, as torch.nn.LSTMCell; state (h, c) stacked as one (2, ..., H) value",
))

define(OpDef(
    "gru_cell", ("x", "h", *_W),
    "r = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr);  z = σ(x W_izᵀ + b_iz + h W_hzᵀ + b_hz);  "
    "n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn));  h' = (1 − z) ⊙ n + z ⊙ h",
    {
        "x": "∂L/∂x = δ_i W_ih,  δ_i = [∂L/∂r · r(1−r), ∂L/∂z · z(1−z), ∂L/∂n · (1−n²)],  "
             "∂L/∂n = ∂L/∂h' ⊙ (1 − z),  ∂L/∂z = ∂L/∂h' ⊙ (h − n),  ∂L/∂r = ∂L/∂n · (1−n²) ⊙ (h W_hnᵀ + b_hn)",
        "h": "∂L/∂h = ∂L/∂h' ⊙ z + δ_h W_hh,  δ_h = δ_i with its n part multiplied by r",
        "W_ih": "∂L/∂W_ih = δ_iᵀ x",
        "W_hh": "∂L/∂W_hh = δ_hᵀ h",
        "b_ih": "∂L/∂b_ih = Σ_batch δ_i",
        "b_hh": "∂L/∂b_hh = Σ_batch δ_h",
    },
    _cell_shape("gru_cell", 3, False), "GRU", out="h'", category="recurrent",
    summary="one time step of a GRU, as torch.nn.GRUCell (gate order r, z, n)",
))

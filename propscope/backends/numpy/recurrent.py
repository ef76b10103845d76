"""RNN, LSTM and GRU cells on NumPy: one time step forward, and its VJP written out gate by gate.

Every cell is an affine map of (x, h) into gate pre-activations followed by elementwise gates, so
the backward pass is: gate gradients by the chain rule, then `_affine_back` sends the
pre-activation gradient δ to x, h, the weights and the biases. The gates are recomputed in the
VJP (kernels keep no state); `lstm_gates` and `gru_gates` expose them for the views.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .activations import _sigmoid
from .kernels import Array, kernel, unbroadcast


def _rows(a: Array, lead: tuple[int, ...]) -> Array:
    """`a` broadcast to the batch `lead` and flattened to (rows, features), for the weight gradients."""
    return np.broadcast_to(a, (*lead, a.shape[-1])).reshape(-1, a.shape[-1])


def _affine_back(d_in: Array, d_hid: Array, x: Array, h: Array, w_ih: Array, w_hh: Array,
                 h_shape: tuple[int, ...]) -> tuple[Array, Array, Array, Array, Array, Array]:
    """Gradients of x W_ihᵀ + b_ih (given δ_in) and h W_hhᵀ + b_hh (given δ_hid), summed over the batch."""
    lead = d_in.shape[:-1]
    gx = unbroadcast(d_in @ w_ih, x.shape)
    gh = unbroadcast(d_hid @ w_hh, h_shape)
    d_in2, d_hid2 = d_in.reshape(-1, d_in.shape[-1]), d_hid.reshape(-1, d_hid.shape[-1])
    return gx, gh, d_in2.T @ _rows(x, lead), d_hid2.T @ _rows(h, lead), d_in2.sum(axis=0), d_hid2.sum(axis=0)


# -- RNN ------------------------------------------------------------------------------------------
@kernel("rnn_cell")
def rnn_cell(x: Array, h: Array, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array, nonlinearity: str) -> Array:
    z = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    return np.tanh(z) if nonlinearity == "tanh" else np.maximum(z, 0).astype(z.dtype, copy=False)


@rnn_cell.gradient
def _(g: Array, x: Array, h: Array, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array, out: Array,
      nonlinearity: str) -> tuple[Array, ...]:
    delta = g * (1.0 - out * out) if nonlinearity == "tanh" else g * (out > 0)
    return _affine_back(delta, delta, x, h, w_ih, w_hh, h.shape)


# -- LSTM -----------------------------------------------------------------------------------------
def lstm_gates(x: Array, s: Array, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array) -> dict[str, Array]:
    """The gates of one LSTM step (i, f, g, o), and the new cell state c' and output h'."""
    h, c = s[0], s[1]
    i, f, g, o = np.split(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh, 4, axis=-1)
    i, f, g, o = _sigmoid(i), _sigmoid(f), np.tanh(g), _sigmoid(o)
    c_new = f * c + i * g
    return {"i": i, "f": f, "g": g, "o": o, "c": c_new, "h": o * np.tanh(c_new)}


@kernel("lstm_cell")
def lstm_cell(x: Array, s: Array, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array) -> Array:
    gates = lstm_gates(x, s, w_ih, w_hh, b_ih, b_hh)
    return np.stack([gates["h"], gates["c"]])


@lstm_cell.gradient
def _(grad: Array, x: Array, s: Array, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array,
      out: Array) -> tuple[Array, ...]:
    h, c = s[0], s[1]
    gates = lstm_gates(x, s, w_ih, w_hh, b_ih, b_hh)
    i, f, g, o = gates["i"], gates["f"], gates["g"], gates["o"]
    tanh_c = np.tanh(gates["c"])
    dh_new, dc_new = grad[0], grad[1]
    dc = dc_new + dh_new * o * (1.0 - tanh_c * tanh_c)  # c' reaches the loss directly and through h'
    delta = np.concatenate(
        [dc * g * i * (1.0 - i), dc * c * f * (1.0 - f), dc * i * (1.0 - g * g), dh_new * tanh_c * o * (1.0 - o)],
        axis=-1,
    )
    gx, gh, gw_ih, gw_hh, gb_ih, gb_hh = _affine_back(delta, delta, x, h, w_ih, w_hh, s.shape[1:])
    gc = unbroadcast(dc * f, s.shape[1:])  # the highway: only the forget gate scales it
    return gx, np.stack([gh, gc]), gw_ih, gw_hh, gb_ih, gb_hh


# -- GRU ------------------------------------------------------------------------------------------
def gru_gates(x: Array, h: Array, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array) -> dict[str, Array]:
    """The gates of one GRU step (r, z, n), the hidden part h W_hnᵀ + b_hn that r scales, and h'."""
    r_i, z_i, n_i = np.split(x @ w_ih.T + b_ih, 3, axis=-1)
    r_h, z_h, n_h = np.split(h @ w_hh.T + b_hh, 3, axis=-1)
    r, z = _sigmoid(r_i + r_h), _sigmoid(z_i + z_h)
    n = np.tanh(n_i + r * n_h)
    return {"r": r, "z": z, "n": n, "n_h": n_h, "h": (1.0 - z) * n + z * h}


@kernel("gru_cell")
def gru_cell(x: Array, h: Array, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array) -> Array:
    return gru_gates(x, h, w_ih, w_hh, b_ih, b_hh)["h"]


@gru_cell.gradient
def _(grad: Array, x: Array, h: Array, w_ih: Array, w_hh: Array, b_ih: Array, b_hh: Array,
      out: Array) -> tuple[Any, ...]:
    gates = gru_gates(x, h, w_ih, w_hh, b_ih, b_hh)
    r, z, n, n_h = gates["r"], gates["z"], gates["n"], gates["n_h"]
    dn = grad * (1.0 - z) * (1.0 - n * n)  # through tanh
    dr = dn * n_h * r * (1.0 - r)
    dz = grad * (h - n) * z * (1.0 - z)
    d_in = np.concatenate([dr, dz, dn], axis=-1)
    d_hid = np.concatenate([dr, dz, dn * r], axis=-1)
    gx, gh, gw_ih, gw_hh, gb_ih, gb_hh = _affine_back(d_in, d_hid, x, h, w_ih, w_hh, h.shape)
    return gx, gh + unbroadcast(grad * z, h.shape), gw_ih, gw_hh, gb_ih, gb_hh

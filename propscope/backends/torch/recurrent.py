"""Recurrent cells in torch: PyTorch's RNNCell, LSTMCell, GRUCell equations (the state may broadcast)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .kernels import Tensor, kernel


@kernel("rnn_cell")
def rnn_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
             nonlinearity: str) -> Tensor:
    z = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    return torch.tanh(z) if nonlinearity == "tanh" else torch.relu(z)


@kernel("lstm_cell")
def lstm_cell(x: Tensor, s: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    h, c = s[0], s[1]  # (h, c) stacked as one value
    i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    return torch.stack([h_new, c_new])


@kernel("gru_cell")
def gru_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> Tensor:
    r_i, z_i, n_i = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)
    r_h, z_h, n_h = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(r_i + r_h), torch.sigmoid(z_i + z_h)
    n = torch.tanh(n_i + r * n_h)
    return (1.0 - z) * n + z * h


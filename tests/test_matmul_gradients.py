"""The NumPy backend's matmul and Linear gradients where the weight is shared by every leading position, as
transformers and torchvision's attention run them: equal to torch autograd's, and computed in one product over all
positions, never one per leading index (torchvision ViT's (197, 1, 768) attention input made a 197 × 768 × 2304
temporary, 1.4 GB in float32 and 3 s, for a (768, 2304) gradient)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from propscope.backends.numpy import KERNELS

LAYOUTS = [(197, 1), (1, 197), (4, 8), (2, 3, 5)]  # (L, N) sequence-first, (B, T), and two leading axes


def grads(op: str, x: np.ndarray, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    kernel = KERNELS[op]
    if op == "linear":
        b = np.zeros(w.shape[0])
        out = kernel.forward(x, w, b, transpose_weight=True)
        gx, gw, _ = kernel.vjp(g, [x, w, b], out, {"transpose_weight": True})
    else:
        out = kernel.forward(x, w)
        gx, gw = kernel.vjp(g, [x, w], out, {})
    return gx, gw


@pytest.mark.torch
@pytest.mark.parametrize("lead", LAYOUTS, ids=str)
@pytest.mark.parametrize("op", ["linear", "matmul"])
def test_a_shared_weight_gets_autograds_gradient_in_every_layout(op, lead):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((*lead, 6))
    w = rng.standard_normal((5, 6) if op == "linear" else (6, 5))
    g = rng.standard_normal((*lead, 5))
    gx, gw = grads(op, x, w, g)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    out = torch.nn.functional.linear(tx, tw) if op == "linear" else tx @ tw
    out.backward(torch.tensor(g))
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(gw, tw.grad.numpy(), rtol=1e-12, atol=1e-13)


def test_the_weight_gradient_makes_no_temporary_per_leading_position():
    rng = np.random.default_rng(1)
    length, k, m = 64, 256, 512
    x, w, g = rng.standard_normal((length, 1, k)), rng.standard_normal((m, k)), rng.standard_normal((length, 1, m))
    tracemalloc.start()
    try:
        grads("linear", x, w, g)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_position = length * k * m * 8  # 64 × 256 × 512 float64: 67 MB, what one product per position made
    assert peak < 4 * (k * m + length * (k + m)) * 8 < per_position / 4, peak

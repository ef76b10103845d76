"""A subgraph of constants alone (a diffusion U-Net's sinusoidal embedding of a constant timestep, a mask made from a
buffer) is computed on the forward pass and gets no backward steps, as torch's autograd gives it no gradient."""

from __future__ import annotations

import numpy as np
import pytest

from propscope.debugger import open_session
from propscope.graph import Graph, Model


def embedded() -> Model:
    """y = x W + sin(c · 500): the sine of a constant is a value with no parameter or input above it."""
    rng = np.random.default_rng(0)
    g = Graph("embedded")
    x = g.input("x", (4, 3))
    w = g.parameter("W", (3, 2))
    c = g.add("constant", name="freqs", shape=(2,))
    angle = g.add("mul", c, g.add("constant", name="t", shape=()), name="angle")
    emb = g.add("sin", angle, name="embedding")
    h = g.add("add", g.add("matmul", x, w, name="xw"), emb, name="h")
    g.set_outputs(h)
    arrays = {"W": rng.normal(size=(3, 2)), "freqs": np.array([0.1, 0.01]), "t": np.array(500.0)}
    return Model(g, arrays, batch={"x": rng.normal(size=(4, 3)), "y": rng.normal(size=(4, 2))}, loss="mse")


def test_constants_alone_get_no_backward_steps() -> None:
    s = open_session(embedded(), dtype="float64")
    backward = [p.node.name for p in s.steps if p.phase == "backward"]
    assert backward == ["loss", "h", "xw"]
    s.run_to_end()
    assert s.grad("embedding") is None and s.grad("angle") is None
    assert s.value("embedding") is not None  # computed and shown on the way forward
    x, y, w = s.batch["x"], s.batch["y"], s.model.arrays["W"]
    h = x @ w + np.sin(np.array([0.1, 0.01]) * 500.0)
    np.testing.assert_allclose(s.grad("W"), x.T @ (2 * (h - y) / h.size), rtol=1e-12)
    assert not s.gradient_flows("embedding") and s.gradient_flows("xw")


def test_a_constant_timestep_in_a_traced_module_gets_no_backward_steps() -> None:
    torch = pytest.importorskip("torch")

    class TimeEmbedded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.register_buffer("freqs", torch.exp(-torch.arange(4.0)))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            emb = torch.sin(self.freqs * 500.0)  # the step is fixed: nothing here needs a gradient
            return self.lin(x) * emb

    torch.manual_seed(0)
    module = TimeEmbedded().double()
    x = torch.randn(3, 4, dtype=torch.float64)
    s = open_session(module, inputs=x, loss="mse", dtype="float64")
    s.run_to_end()
    assert [p.node.op.name for p in s.steps if p.phase == "forward"].count("sin") == 1
    assert not any(p.node.op.name == "sin" for p in s.steps if p.phase == "backward")
    y = torch.from_numpy(s.batch["y"])
    loss = torch.nn.functional.mse_loss(module(x), y)
    loss.backward()
    np.testing.assert_allclose(s.grad("lin.weight"), module.lin.weight.grad.numpy(), rtol=1e-10)

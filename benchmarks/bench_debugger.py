"""Debugger costs: one step / step back on a 1,000-node graph (target <= 1 ms), and the memory of a full
trace of a 784-128-10 MLP at batch 64 against the bytes of its values plus its gradients (target <= 3x).

Run: python benchmarks/bench_debugger.py
"""

from __future__ import annotations

import time

import numpy as np

from propscope.debugger import open_session
from propscope.graph import Graph, Model


def chain_model(n_ops: int = 1000) -> Model:
    """A 1,000-node graph: a long chain of tanh and residual adds on a (8, 16) value."""
    rng = np.random.default_rng(0)
    g = Graph("chain")
    h = g.input("x", (8, 16))
    w = g.parameter("w", (16,))
    while len(g) < n_ops - 1:
        h = g.add("tanh", g.add("add", h, w) if len(g) % 3 else g.add("mul", h, w))
    g.set_outputs(h)
    return Model(
        g, {"w": rng.normal(0, 0.1, 16)}, batch={"x": rng.normal(size=(8, 16)), "y": np.zeros((8, 16))}, loss="mse"
    )


def mlp_model(batch: int = 64) -> Model:
    rng = np.random.default_rng(0)
    g = Graph("mlp")
    x = g.input("x", (batch, 784))
    w1, b1 = g.parameter("W1", (784, 128)), g.parameter("b1", (128,))
    w2, b2 = g.parameter("W2", (128, 10)), g.parameter("b2", (10,))
    h = g.add("relu", g.add("linear", x, w1, b1, name="z1"), name="h1")
    g.set_outputs(g.add("linear", h, w2, b2, name="logits"))
    arrays = {
        "W1": rng.normal(0, 0.05, (784, 128)),
        "b1": np.zeros(128),
        "W2": rng.normal(0, 0.1, (128, 10)),
        "b2": np.zeros(10),
    }
    return Model(
        g, arrays, batch={"x": rng.normal(size=(batch, 784)), "y": rng.integers(0, 10, batch)}, loss="cross_entropy"
    )


def step_costs() -> None:
    s = open_session(chain_model(), dtype="float32")
    n = len(s.steps)
    t0 = time.perf_counter()
    while s.step() is not None:
        pass
    first = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    while s.cursor:
        s.step_back()
    back = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    while s.step() is not None:
        pass
    again = (time.perf_counter() - t0) / n
    print(
        f"{len(s.graph)}-node graph, {n} steps: step (computing) {first * 1e3:.3f} ms, "
        f"step_back {back * 1e3:.4f} ms, step (replay) {again * 1e3:.4f} ms  (target <= 1 ms)"
    )


def _buffer(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def trace_memory() -> None:
    s = open_session(mlp_model(), dtype="float32")
    s.run_to_end()
    values = [s.trace.values[n.name] for n in s.graph]
    grads = list(s.trace.final_grads().values())
    essential = sum(np.asarray(a).nbytes for a in values + grads)
    held: dict[int, int] = {}

    def hold(a: object) -> None:
        if isinstance(a, np.ndarray):
            b = _buffer(a)
            held[id(b)] = b.nbytes

    for a in s.trace.values.values():
        hold(a)
    for history in s.trace._history.values():
        for _, total in history:
            hold(total)
    for r in s.trace.records:
        hold(r.output if r.phase == "forward" else r.upstream)
        for t in getattr(r, "terms", ()):
            hold(t.contribution)
            hold(t.total)
    total = sum(held.values())
    print(
        f"784-128-10 MLP, batch 64, float32: values+gradients {essential / 1e6:.2f} MB, trace holds "
        f"{total / 1e6:.2f} MB, ratio {total / essential:.2f}x (target <= 3x)"
    )


if __name__ == "__main__":
    step_costs()
    trace_memory()

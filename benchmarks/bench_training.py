"""Training speed: `Session.train` against hand-written NumPy doing the same work, in the same process.

1. xor (2-4-1 sigmoid, SGD lr 0.1, float64) for 10,000 epochs against the tutorial's loop
   (Part 7), which also computes the MSE every epoch.
2. A 784-128-10 ReLU MLP with softmax cross-entropy, batch 64, Adam, float32, against a
   hand-written forward, backward and Adam update; both record the loss each step.

Runs alternate between the two sides and the best of several is kept, so a busy machine hurts
both alike. BLAS runs on one thread unless OPENBLAS_NUM_THREADS/OMP_NUM_THREADS say otherwise:
on a small shared machine its worker threads spin against each other and make timings random.
Run: python benchmarks/bench_training.py   (target: ratio <= 1.3)
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before NumPy loads its BLAS

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from propscope.backends import get_backend  # noqa: E402
from propscope.debugger import Session, open_session  # noqa: E402
from propscope.graph import Graph, Model  # noqa: E402


# -- 1. xor ------------------------------------------------------------------------------------
def tutorial_xor(epochs: int, seed: int = 0) -> None:
    """Part 7's loop as the tutorial writes it."""
    rs = np.random.RandomState(seed)
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    y = np.array([[0], [1], [1], [0]])
    W1, b1 = rs.randn(2, 4), np.zeros((1, 4))
    W2, b2 = rs.randn(4, 1), np.zeros((1, 1))
    lr = 0.1
    losses = []

    def sigmoid(x: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-x))

    def sigmoid_derivative(x: np.ndarray) -> np.ndarray:
        return x * (1 - x)

    for _ in range(epochs):
        hidden_output = sigmoid(np.dot(X, W1) + b1)
        final_output = sigmoid(np.dot(hidden_output, W2) + b2)
        losses.append(np.mean(np.square(y - final_output)))
        error = y - final_output
        d_output = error * sigmoid_derivative(final_output)
        error_hidden = d_output.dot(W2.T)
        d_hidden = error_hidden * sigmoid_derivative(hidden_output)
        W2 += hidden_output.T.dot(d_output) * lr
        b2 += np.sum(d_output, axis=0, keepdims=True) * lr
        W1 += X.T.dot(d_hidden) * lr
        b1 += np.sum(d_hidden, axis=0, keepdims=True) * lr


def propscope_xor(epochs: int, seed: int = 0) -> Callable[[], None]:
    session = open_session("xor", dtype="float64", seed=seed)
    return lambda: session.train(epochs)


# -- 2. a 784-128-10 MLP with Adam ---------------------------------------------------------------
def mlp_model(batch: int = 64, seed: int = 0) -> Model:
    rng = np.random.default_rng(seed)
    g = Graph("mlp")
    x = g.input("x", (batch, 784))
    w1, b1 = g.parameter("W1", (784, 128)), g.parameter("b1", (128,))
    w2, b2 = g.parameter("W2", (128, 10)), g.parameter("b2", (10,))
    h = g.add("relu", g.add("linear", x, w1, b1, name="z1"), name="h1")
    g.set_outputs(g.add("linear", h, w2, b2, name="logits"))
    arrays = {
        "W1": rng.normal(0, np.sqrt(2 / 784), (784, 128)), "b1": np.zeros(128),
        "W2": rng.normal(0, np.sqrt(2 / 128), (128, 10)), "b2": np.zeros(10),
    }
    data = {"x": rng.normal(size=(batch, 784)), "y": rng.integers(0, 10, batch)}
    return Model(g, arrays, batch=data, loss="cross_entropy")


def handwritten_mlp(model: Model, steps: int, lr: float = 1e-3) -> None:
    """Forward, backward and torch.optim.Adam's update, written out in NumPy (float32)."""
    f = np.float32
    x = model.batch["x"].astype(f)
    y = model.batch["y"]
    n = len(y)
    onehot = np.zeros((n, 10), dtype=f)
    onehot[np.arange(n), y] = 1
    params = [model.arrays[k].astype(f) for k in ("W1", "b1", "W2", "b2")]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    losses = []
    for t in range(1, steps + 1):
        W1, b1, W2, b2 = params
        z1 = x @ W1 + b1
        h1 = np.maximum(z1, 0)
        logits = h1 @ W2 + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        losses.append(float(-np.sum(onehot * (shifted - np.log(total))) / n))
        dlogits = (exp / total - onehot) / n
        dh1 = dlogits @ W2.T
        dz1 = dh1 * (z1 > 0)
        grads = [x.T @ dz1, dz1.sum(axis=0), h1.T @ dlogits, dlogits.sum(axis=0)]
        c1, c2 = 1 - beta1**t, math.sqrt(1 - beta2**t)  # Python floats keep the arrays float32
        for p, g, mi, vi in zip(params, grads, m, v, strict=True):
            mi *= beta1
            mi += (1 - beta1) * g
            vi *= beta2
            vi += (1 - beta2) * g * g
            p -= (lr / c1) * mi / (np.sqrt(vi) / c2 + eps)


def propscope_mlp(model: Model, steps: int) -> Callable[[], None]:
    session = Session(model, get_backend("numpy", "float32"))
    return lambda: session.train(steps, optimizer="adam", lr=1e-3, metrics=())


# -- timing --------------------------------------------------------------------------------------
def best_of(pairs: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Each callable `rounds` times, alternating; the fastest run of each."""
    best = dict.fromkeys(pairs, float("inf"))
    for _ in range(rounds):
        for name, fn in pairs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating runs of each side (default 7)")
    parser.add_argument("--epochs", type=int, default=10_000, help="xor epochs (default 10000)")
    parser.add_argument("--steps", type=int, default=300, help="MLP Adam steps (default 300)")
    args = parser.parse_args()

    epochs = args.epochs
    t = best_of({"tutorial": lambda: tutorial_xor(epochs), "propscope": propscope_xor(epochs)}, args.rounds)
    print(f"xor, {epochs} epochs of SGD: tutorial loop {t['tutorial']:.3f} s, s.train {t['propscope']:.3f} s, "
          f"ratio {t['propscope'] / t['tutorial']:.2f}x (target <= 1.3x)")

    model = mlp_model()
    steps = args.steps
    t = best_of({"numpy": lambda: handwritten_mlp(model, steps), "propscope": propscope_mlp(model, steps)},
                args.rounds)
    print(f"784-128-10 MLP, batch 64, {steps} Adam steps: hand-written {t['numpy']:.3f} s, "
          f"s.train {t['propscope']:.3f} s, ratio {t['propscope'] / t['numpy']:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()

"""Engine speed: one XOR iteration (forward, backward, SGD update) on the NumPy backend, no tracing,
against one iteration of the tutorial's hand-written loop, in the same process.

Run: python benchmarks/bench_engine.py   (target: ratio <= 1.3)
"""

from __future__ import annotations

import timeit

import numpy as np

from propscope.backends.numpy import NumpyProgram
from propscope.debugger import open_session


def reference_iteration_factory():  # type: ignore[no-untyped-def]
    rs = np.random.RandomState(0)
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    y = np.array([[0], [1], [1], [0]])
    W1, b1 = rs.randn(2, 4), np.zeros((1, 4))
    W2, b2 = rs.randn(4, 1), np.zeros((1, 1))
    lr = 0.1

    def sigmoid(x):  # type: ignore[no-untyped-def]
        return 1 / (1 + np.exp(-x))

    def iteration() -> None:
        nonlocal W1, b1, W2, b2
        hidden_output = sigmoid(np.dot(X, W1) + b1)
        final_output = sigmoid(np.dot(hidden_output, W2) + b2)
        np.mean(np.square(y - final_output))
        error = y - final_output
        d_output = error * (final_output * (1 - final_output))
        error_hidden = d_output.dot(W2.T)
        d_hidden = error_hidden * (hidden_output * (1 - hidden_output))
        W2 += hidden_output.T.dot(d_output) * lr
        b2 += np.sum(d_output, axis=0, keepdims=True) * lr
        W1 += X.T.dot(d_hidden) * lr
        b1 += np.sum(d_hidden, axis=0, keepdims=True) * lr

    return iteration


def propscope_iteration_factory():  # type: ignore[no-untyped-def]
    s = open_session("xor", dtype="float64")
    program = NumpyProgram(s.graph)
    leaves = {**s.params, "X": s.backend.asarray(s.batch["X"]), "y": s.backend.asarray(s.batch["y"])}
    names = [n.name for n in s.graph.parameters]
    params = [leaves[n] for n in names]
    lr = 0.1

    def iteration() -> None:
        _, grads = program.loss_and_grads(leaves, names)
        for p, name in zip(params, names, strict=True):
            p -= lr * grads[name]

    return iteration


def best_of(fn, number: int = 2000, repeat: int = 7) -> float:  # type: ignore[no-untyped-def]
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main() -> None:
    ref, ours = reference_iteration_factory(), propscope_iteration_factory()
    best_of(ref, 200, 1), best_of(ours, 200, 1)  # warm up
    t_ref, t_ours = best_of(ref), best_of(ours)
    print(
        f"xor iteration: reference {t_ref * 1e6:.1f} us, propscope {t_ours * 1e6:.1f} us, "
        f"ratio {t_ours / t_ref:.2f}x (target <= 1.3x)"
    )


if __name__ == "__main__":
    main()

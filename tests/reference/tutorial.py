"""The tutorial's programs (Neural Networks 101, Parts 1, 3 and 7), reproduced for propscope's tests.

The examples are checked against these, so they follow the tutorial's arithmetic step for step (the same
`np.random.randn` draws, the same order of operations, the same "climbing" update `W += lr * a.T @ delta`)
and therefore give its numbers to the last bit. Written as functions that return everything a test
compares, rather than as scripts that print.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Part 7's data: XOR truth table, kept as integer arrays as the tutorial writes them.
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
XOR_Y = np.array([[0], [1], [1], [0]])
HIDDEN = 4
TUTORIAL_LR = 0.1
TUTORIAL_EPOCHS = 10_000


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def sigmoid_slope_from_output(a: np.ndarray) -> np.ndarray:
    """σ'(z) written with σ(z) = a, as the tutorial's `sigmoid_derivative` takes the activation."""
    return a * (1 - a)


# -- Part 1: the beach decision ----------------------------------------------------------------------
def beach_decision() -> tuple[float, int]:
    """Sunny 1, free time 1, car broken 0; weights 5, 10, -20; bias 2: z and the step's answer."""
    inputs, weights, bias = np.array([1, 1, 0]), np.array([5, 10, -20]), 2
    z = float(inputs @ weights + bias)
    return z, int(z > 0)


# -- Part 3: one sigmoid neuron ----------------------------------------------------------------------
class Neuron:
    """Weights from `np.random.randn(n)` (the caller seeds NumPy), bias 0."""

    def __init__(self, num_inputs: int) -> None:
        self.weights = np.random.randn(num_inputs)
        self.bias = 0.0

    def forward(self, inputs: np.ndarray) -> float:
        return sigmoid(np.dot(inputs, self.weights) + self.bias)


# -- Part 7: XOR from scratch --------------------------------------------------------------------------
@dataclass
class XorRun:
    """Where the tutorial's loop stands after its last epoch.

    `hidden_output`, `final_output`, `d_output` and `d_hidden` are the last epoch's, computed before its
    update; the weights are after it. `losses` holds the MSE the tutorial prints, one per epoch.
    """

    X: np.ndarray
    y: np.ndarray
    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    hidden_output: np.ndarray = field(default_factory=lambda: np.empty(0))
    final_output: np.ndarray = field(default_factory=lambda: np.empty(0))
    d_output: np.ndarray = field(default_factory=lambda: np.empty(0))
    d_hidden: np.ndarray = field(default_factory=lambda: np.empty(0))
    losses: np.ndarray = field(default_factory=lambda: np.empty(0))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(np.dot(sigmoid(np.dot(x, self.W1) + self.b1), self.W2) + self.b2)


def xor_from_scratch(seed: int = 0, epochs: int = TUTORIAL_EPOCHS, lr: float = TUTORIAL_LR) -> XorRun:
    """Part 7's training loop: seed, draw W1 (2×4) then W2 (4×1), zero biases, full-batch updates.

    NumPy's global generator is left as it was found (the tutorial seeds it; a test run should not notice).
    """
    state = np.random.get_state()
    np.random.seed(seed)
    w1, w2 = np.random.randn(2, HIDDEN), np.random.randn(HIDDEN, 1)
    np.random.set_state(state)
    run = XorRun(X=XOR_X.copy(), y=XOR_Y.copy(), W1=w1, b1=np.zeros((1, HIDDEN)), W2=w2, b2=np.zeros((1, 1)))
    losses = np.empty(epochs)
    for epoch in range(epochs):
        run.hidden_output = sigmoid(np.dot(run.X, run.W1) + run.b1)
        run.final_output = sigmoid(np.dot(run.hidden_output, run.W2) + run.b2)
        losses[epoch] = np.mean(np.square(run.y - run.final_output))
        # the tutorial's backward pass: the error climbs back through each sigmoid
        run.d_output = (run.y - run.final_output) * sigmoid_slope_from_output(run.final_output)
        run.d_hidden = run.d_output.dot(run.W2.T) * sigmoid_slope_from_output(run.hidden_output)
        run.W2 += run.hidden_output.T.dot(run.d_output) * lr
        run.b2 += np.sum(run.d_output, axis=0, keepdims=True) * lr
        run.W1 += run.X.T.dot(run.d_hidden) * lr
        run.b1 += np.sum(run.d_hidden, axis=0, keepdims=True) * lr
    run.losses = losses
    return run

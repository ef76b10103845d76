"""The tutorial's networks as built-in examples, with the tutorial's names and numbers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .datasets import make_dataset
from .errors import PropscopeError
from .examples_deep import DEEP_EXAMPLES
from .ir import Graph
from .model import Model, TrainingDefaults

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=float)


class UnknownExampleError(PropscopeError):
    pass


@dataclass(frozen=True)
class Example:
    name: str
    summary: str
    lesson: str
    build: Callable[[int], Model]


def perceptron(seed: int) -> Model:
    """Part 1: should I go to the beach? z = 1·5 + 1·10 + 0·(−20) + 2 = 17, step(17) = 1."""
    g = Graph("perceptron")
    x = g.input("x", (3,), label="sunny, free time, car broken")
    w = g.parameter("w", (3,))
    b = g.parameter("b", ())
    z = g.add("linear", x, w, b, name="z")
    g.set_outputs(g.add("step", z, name="go"))
    return Model(
        g,
        {"w": np.array([5.0, 10.0, -20.0]), "b": np.array(2.0)},
        batch={"x": np.array([1.0, 1.0, 0.0]), "y": np.array(1.0)},
        loss="mse",
        description="The beach decision: inputs sunny, free time, car broken; a step activation has no gradient.",
    )


def neuron(seed: int) -> Model:
    """Part 3: one sigmoid neuron, weights from np.random.seed(seed) then randn(3), bias 0."""
    weights = np.random.RandomState(seed).randn(3)  # the same draw as np.random.seed(seed); randn(3)
    g = Graph("neuron")
    x = g.input("inputs", (3,))
    w = g.parameter("weights", (3,))
    b = g.parameter("bias", ())
    z = g.add("linear", x, w, b, name="z")
    g.set_outputs(g.add("sigmoid", z, name="output"))
    return Model(
        g,
        {"weights": weights, "bias": np.array(0.0)},
        batch={"inputs": np.array([1.0, 0.0, 5.0]), "y": np.array(1.0)},
        loss="mse",
        description="A single neuron: dot product, bias, sigmoid.",
    )


def dense_layer(seed: int) -> Model:
    """Part 4: 3 inputs into a layer of 4 neurons, one matrix product: sigmoid(x · W + b)."""
    rng = np.random.default_rng(seed)
    g = Graph("dense-layer")
    x = g.input("x", (1, 3))
    w = g.parameter("W", (3, 4))
    b = g.parameter("b", (1, 4))
    z = g.add("linear", x, w, b, name="z")
    g.set_outputs(g.add("sigmoid", z, name="a"))
    return Model(
        g,
        {"W": rng.standard_normal((3, 4)), "b": np.zeros((1, 4))},
        batch={"x": np.array([[1.0, 0.0, 5.0]]), "y": np.array([[0.0, 1.0, 1.0, 0.0]])},
        loss="mse",
        description="A layer of 4 neurons is one 3×4 matrix product plus a bias.",
    )


def xor(seed: int) -> Model:
    """Part 7 exactly: np.random.seed(seed), W1 = randn(2, 4), W2 = randn(4, 1), zero biases, lr 0.1.

    The objective is ½ Σ (ŷ − y)², whose gradient is the tutorial's update rule; its printed
    MSE is reported beside it as a metric.
    """
    legacy = np.random.RandomState(seed)  # draws exactly what np.random.seed(seed) then randn(...) draws
    w1 = legacy.randn(2, 4)
    w2 = legacy.randn(4, 1)
    g = Graph("xor")
    x = g.input("X", (4, 2))
    p = {
        name: g.parameter(name, shape)
        for name, shape in (("W1", (2, 4)), ("b1", (1, 4)), ("W2", (4, 1)), ("b2", (1, 1)))
    }
    hidden_input = g.add("linear", x, p["W1"], p["b1"], name="hidden_input", module="hidden")
    hidden_output = g.add("sigmoid", hidden_input, name="hidden_output", module="hidden")
    final_input = g.add("linear", hidden_output, p["W2"], p["b2"], name="final_input", module="output")
    g.set_outputs(g.add("sigmoid", final_input, name="final_output", module="output"))
    return Model(
        g,
        {"W1": w1, "b1": np.zeros((1, 4)), "W2": w2, "b2": np.zeros((1, 1))},
        batch={"X": XOR_X.copy(), "y": XOR_Y.copy()},
        loss="sse",
        metrics=("mse",),
        training=TrainingDefaults("sgd", 0.1, 10_000),
        description="The XOR network from scratch (2-4-1, sigmoid), trained by the tutorial's update rule.",
    )


def _torch_linear_layers(seed: int, sizes: list[tuple[int, int]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """nn.Linear weights exactly as torch.manual_seed(seed) gives them; a NumPy stand-in without torch."""
    try:
        import torch
    except ImportError:
        rng = np.random.default_rng(seed)
        out = []
        for fan_in, fan_out in sizes:
            bound = 1.0 / np.sqrt(fan_in)
            out.append((rng.uniform(-bound, bound, (fan_out, fan_in)), rng.uniform(-bound, bound, fan_out)))
        return out
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(fan_in, fan_out) for fan_in, fan_out in sizes]
    return [(lay.weight.detach().numpy().copy(), lay.bias.detach().numpy().copy()) for lay in layers]


def xor_torch(seed: int) -> Model:
    """Part 10: nn.Linear(2, 4), sigmoid, nn.Linear(4, 1), sigmoid, MSELoss, Adam at lr 0.1."""
    (w1, b1), (w2, b2) = _torch_linear_layers(seed, [(2, 4), (4, 1)])
    g = Graph("xor-torch")
    x = g.input("x", (4, 2))
    values = {"layer1.weight": w1, "layer1.bias": b1, "layer2.weight": w2, "layer2.bias": b2}
    p = {name: g.parameter(name, v.shape, module=name.split(".")[0]) for name, v in values.items()}
    h = g.add(
        "linear",
        x,
        p["layer1.weight"],
        p["layer1.bias"],
        name="layer1",
        attrs={"transpose_weight": True},
        module="layer1",
    )
    a = g.add("sigmoid", h, name="act_1", module="act")
    o = g.add(
        "linear",
        a,
        p["layer2.weight"],
        p["layer2.bias"],
        name="layer2",
        attrs={"transpose_weight": True},
        module="layer2",
    )
    g.set_outputs(g.add("sigmoid", o, name="act_2", module="act"))
    return Model(
        g,
        {k: v.astype(np.float64) for k, v in values.items()},
        batch={"x": XOR_X.copy(), "y": XOR_Y.copy()},
        loss="mse",
        training=TrainingDefaults("adam", 0.1, 1_000),
        description="The tutorial's PyTorch XOR: nn.Linear layers (x @ Wᵀ + b), sigmoid, MSELoss, Adam.",
    )


def classifier(seed: int) -> Model:
    """A small ReLU network (2-16-3) with softmax cross-entropy on three Gaussian blobs."""
    data = make_dataset("blobs", n=90, noise=0.35, seed=seed, classes=3)
    rng = np.random.default_rng(seed)
    g = Graph("classifier")
    x = g.input("x", data.x.shape)
    w1, b1 = g.parameter("W1", (2, 16), module="hidden"), g.parameter("b1", (16,), module="hidden")
    w2, b2 = g.parameter("W2", (16, 3), module="output"), g.parameter("b2", (3,), module="output")
    h = g.add("relu", g.add("linear", x, w1, b1, name="hidden_input", module="hidden"), name="hidden", module="hidden")
    g.set_outputs(g.add("linear", h, w2, b2, name="logits", module="output"))
    return Model(
        g,
        {
            "W1": rng.standard_normal((2, 16)) * np.sqrt(2 / 2),
            "b1": np.zeros(16),
            "W2": rng.standard_normal((16, 3)) * np.sqrt(2 / 16),
            "b2": np.zeros(3),
        },
        batch=data.batch(),
        loss="cross_entropy",
        metrics=("accuracy",),
        training=TrainingDefaults("adam", 0.01, 500),
        description="A ReLU classifier with softmax cross-entropy on three 2-D clusters.",
        dataset=("blobs", {"n": 90, "noise": 0.35, "classes": 3}),
    )


EXAMPLES: dict[str, Example] = {
    e.name: e
    for e in (
        Example(
            "perceptron",
            "Part 1: the beach decision, a perceptron with a step activation (z = 17, go = 1)",
            "Part 1",
            perceptron,
        ),
        Example("neuron", "Part 3: a single sigmoid neuron with three inputs", "Part 3", neuron),
        Example(
            "dense-layer", "Part 4: 3 inputs into a layer of 4 neurons as one matrix product", "Part 4", dense_layer
        ),
        Example("xor", "Part 7: the XOR network from scratch (NumPy, sigmoid, SGD at lr 0.1)", "Part 7", xor),
        Example("xor-torch", "Part 10: the PyTorch XOR (nn.Linear, sigmoid, MSELoss, Adam)", "Part 10", xor_torch),
        Example(
            "classifier", "A ReLU network with softmax cross-entropy on three 2-D clusters", "Parts 2, 5", classifier
        ),
        *(Example(*row) for row in DEEP_EXAMPLES),  # Part 9: CNN, RNN/LSTM/GRU, attention (examples_deep.py)
    )
}


def load_example(name: str, seed: int = 0) -> Model:
    if name not in EXAMPLES:
        raise UnknownExampleError(f"unknown example {name!r}; known examples: {', '.join(EXAMPLES)}")
    if not 0 <= seed < 2**32:  # np.random.seed's range, which the examples draw with
        raise PropscopeError(f"seed must be a whole number from 0 to 2**32 - 1, got {seed}")
    return EXAMPLES[name].build(seed)

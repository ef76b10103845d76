"""The built-in examples reproduce the tutorial's numbers, and the reference programs are the truth."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from propscope import open_session
from propscope.debugger.gradcheck import gradcheck
from propscope.graph.examples import EXAMPLES, UnknownExampleError, load_example

SEEDS = [0, 1, 3, 42]


# -- Part 1 and Part 3 ---------------------------------------------------------------------------
def test_perceptron_goes_to_the_beach(tutorial: ModuleType) -> None:
    s = open_session("perceptron", dtype="float64")
    s.run_to_end()
    assert tutorial.beach_decision() == (17.0, 1)
    assert float(s.value("z")) == 17.0
    assert float(s.value("go")) == 1.0
    assert not np.any(s.grad("w")), "a step activation passes no gradient"


@pytest.mark.parametrize("seed", [0, 3])
def test_neuron_matches_the_reference(tutorial: ModuleType, seed: int) -> None:
    state = np.random.get_state()
    np.random.seed(seed)
    neuron = tutorial.Neuron(3)
    np.random.set_state(state)
    expected = neuron.forward(np.array([1, 0, 5]))
    # the arithmetic spelled out, as the tutorial writes it
    np.random.seed(seed)
    w = np.random.randn(3)
    assert expected == 1 / (1 + np.exp(-(np.dot([1, 0, 5], w) + 0.0)))

    s = open_session("neuron", dtype="float64", seed=seed)
    s.run_to_end()
    np.testing.assert_array_equal(s.value("weights"), neuron.weights)
    assert float(s.value("output")) == pytest.approx(float(expected), rel=1e-15, abs=0)


def test_neuron_seeds_differ() -> None:
    first_weights = {float(load_example("neuron", seed).arrays["weights"][0]) for seed in (0, 3)}
    assert len(first_weights) == 2


# -- Part 7: the XOR network from scratch ------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_xor_matches_the_reference_program(tutorial: ModuleType, seed: int) -> None:
    """Forward values and gradients equal one iteration of xor_numpy.py at the same seed.

    The reference climbs: W += lr * (activation.T @ delta) with delta = (y - out) * σ'. The gradient of
    ½ Σ (ŷ − y)² is that update divided by −lr.
    """
    np.random.seed(seed)
    w1, w2 = np.random.randn(2, 4), np.random.randn(4, 1)
    ref = tutorial.xor_from_scratch(seed, epochs=1)

    s = open_session("xor", dtype="float64", seed=seed)
    np.testing.assert_array_equal(s.value("W1"), w1)
    np.testing.assert_array_equal(s.value("W2"), w2)
    np.testing.assert_array_equal(s.value("b1"), np.zeros((1, 4)))
    np.testing.assert_array_equal(s.value("b2"), np.zeros((1, 1)))
    s.run_to_end()

    close = {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(s.value("hidden_output"), ref.hidden_output, **close)
    np.testing.assert_allclose(s.value("final_output"), ref.final_output, **close)
    d_output, d_hidden, hidden, x = ref.d_output, ref.d_hidden, ref.hidden_output, ref.X
    np.testing.assert_allclose(s.grad("W2"), -hidden.T @ d_output, **close)
    np.testing.assert_allclose(s.grad("b2"), -np.sum(d_output, axis=0, keepdims=True), **close)
    np.testing.assert_allclose(s.grad("W1"), -x.T @ d_hidden, **close)
    np.testing.assert_allclose(s.grad("b1"), -np.sum(d_hidden, axis=0, keepdims=True), **close)
    np.testing.assert_allclose(s.grad("final_output"), -(ref.y - ref.final_output), **close)
    # the reference's printed loss is the MSE; the objective is half the sum of squares
    mse = np.mean(np.square(ref.y - ref.final_output))
    assert float(s.value("loss")) == pytest.approx(0.5 * 4 * mse, rel=1e-12)
    # and the reference's update, applied to our gradients, gives the reference's weights after one epoch
    lr = load_example("xor", seed).training.lr
    np.testing.assert_allclose(w1 - lr * s.grad("W1"), ref.W1, **close)
    np.testing.assert_allclose(w2 - lr * s.grad("W2"), ref.W2, **close)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_references_integer_data_runs_in_the_sessions_dtype(tutorial: ModuleType, dtype: str) -> None:
    """The tutorial's X and y are integer arrays; a float32 session must not silently compute in float64."""
    ref = tutorial.xor_from_scratch(0, epochs=1)
    assert ref.X.dtype.kind == "i" and ref.y.dtype.kind == "i"
    s = open_session("xor", dtype=dtype, data={"X": ref.X, "y": ref.y})
    s.run_to_end()
    for node in s.graph:
        assert s.value(node.name).dtype == np.dtype(dtype), node.name
        grad = s.grad(node.name)
        assert grad is None or grad.dtype == np.dtype(dtype), node.name
    np.testing.assert_allclose(s.value("final_output"), ref.final_output, rtol=1e-6 if dtype == "float32" else 1e-12)


def test_xor_reports_the_tutorials_mse() -> None:
    model = load_example("xor", 0)
    assert model.loss == "sse" and "mse" in model.metrics and model.training.lr == 0.1


# -- Part 10: the PyTorch XOR ----------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("seed", [0, 7])
def test_xor_torch_has_torchs_initial_weights(seed: int) -> None:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layer1, layer2 = nn.Linear(2, 4), nn.Linear(4, 1)
    expected = {"layer1.weight": layer1.weight, "layer1.bias": layer1.bias,
                "layer2.weight": layer2.weight, "layer2.bias": layer2.bias}
    model = load_example("xor-torch", seed)
    assert set(model.parameters) == set(expected)
    for name, tensor in expected.items():
        np.testing.assert_array_equal(model.arrays[name].astype(np.float32), tensor.detach().numpy(),
                                      err_msg=name)
    s = open_session("xor-torch", dtype="float32", seed=seed)
    for name, tensor in expected.items():
        np.testing.assert_array_equal(s.value(name), tensor.detach().numpy(), err_msg=name)


@pytest.mark.torch
def test_xor_torch_forward_and_gradients_match_torch() -> None:
    """The tutorial's nn.Module, in float64, against our NumPy backend on the same weights."""
    import torch
    from torch import nn

    torch.manual_seed(5)
    layer1, layer2 = nn.Linear(2, 4).double(), nn.Linear(4, 1).double()
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=torch.float64)
    out = torch.sigmoid(layer2(torch.sigmoid(layer1(x))))
    loss = nn.MSELoss()(out, y)
    loss.backward()

    s = open_session("xor-torch", dtype="float64", seed=5)
    s.run_to_end()
    assert float(s.value("loss")) == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(s.value("act_2"), out.detach().numpy(), rtol=1e-12)
    for name, p in (("layer1.weight", layer1.weight), ("layer1.bias", layer1.bias),
                    ("layer2.weight", layer2.weight), ("layer2.bias", layer2.bias)):
        np.testing.assert_allclose(s.grad(name), p.grad.numpy(), rtol=1e-10, atol=1e-14, err_msg=name)


# -- every example ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EXAMPLES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_example_traces(name: str, dtype: str) -> None:
    s = open_session(name, dtype=dtype)
    assert s.loss_node is not None, f"{name} has no default loss"
    s.run_to_end()
    assert s.at_end and s.trace.first_nonfinite is None
    loss = s.value(s.loss_node.name)
    assert loss.shape == () and np.isfinite(loss) and loss.dtype == np.dtype(dtype)
    for node in s.graph:
        value = s.value(node.name)
        assert value is not None and value.shape == node.shape, node.name
        if node.meta.get("role") != "target":  # class indices stay integers
            assert value.dtype == np.dtype(dtype), (node.name, value.dtype)
    for p in s.graph.parameters:
        grad = s.grad(p.name)
        assert grad is not None and grad.shape == p.shape and grad.dtype == np.dtype(dtype), p.name


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_example_passes_gradcheck(name: str) -> None:
    rows = gradcheck(open_session(name, dtype="float64"))
    assert {r.name for r in rows if r.kind == "parameter"} == set(load_example(name).parameters)
    for row in rows:
        assert row.relative_error < 1e-7, f"{name}: {row}"


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_examples_are_seeded(name: str) -> None:
    a, b = load_example(name, 11), load_example(name, 11)
    for key in a.arrays:
        np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    for key in a.batch:
        np.testing.assert_array_equal(a.batch[key], b.batch[key])


def test_every_example_has_a_summary() -> None:
    assert {"perceptron", "neuron", "dense-layer", "xor", "xor-torch", "classifier"} <= set(EXAMPLES)
    for example in EXAMPLES.values():
        assert example.summary.strip() and "\n" not in example.summary


def test_unknown_example_lists_the_known_ones() -> None:
    with pytest.raises(UnknownExampleError) as info:
        load_example("xorr")
    assert "xorr" in str(info.value) and all(name in str(info.value) for name in EXAMPLES)


def test_classifier_is_a_relu_network_with_cross_entropy() -> None:
    model = load_example("classifier")
    assert model.loss == "cross_entropy"
    assert "relu" in {n.op.name for n in model.graph.ops}
    assert set(np.unique(model.batch["y"])) == {0, 1, 2} and model.batch["x"].shape[1] == 2

"""The PyTorch backend: every op and every example agree with the NumPy backend, forward and backward.

The torch backend takes its gradients from autograd and the NumPy one from hand-written rules,
so agreement here checks both. torch is imported inside the tests: without it they are skipped
(conftest), and the test that blocks torch runs anyway.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.backends import BackendError, get_backend
from propscope.debugger import NonFiniteBreakpoint, open_session
from propscope.debugger.compare import compare_backends, max_abs_diff
from propscope.debugger.session import Session
from propscope.graph import EXAMPLES, Graph, Model
from propscope.graph.ops import CATALOG

TOL = {"float64": 1e-10, "float32": 1e-5}
DTYPES = ("float64", "float32")


def close(a: Any, b: Any, dtype: str) -> bool:
    """Within the tolerance: absolute up to magnitude 1, relative beyond (as `propscope compare`)."""
    diff, scale = max_abs_diff(np.asarray(a), np.asarray(b))
    return diff <= TOL[dtype] * max(1.0, scale)


# -- every op ------------------------------------------------------------------------------------
Gen = Callable[[np.random.Generator], np.ndarray]


def normal(*shape: int) -> Gen:
    return lambda rng: rng.normal(size=shape)


def positive(*shape: int) -> Gen:
    return lambda rng: rng.uniform(0.5, 2.0, size=shape)


def probs(*shape: int) -> Gen:
    return lambda rng: rng.uniform(0.05, 0.95, size=shape)


def fixed(value: Any) -> Gen:
    return lambda rng: np.asarray(value)


def classes(n: int, c: int) -> Gen:
    return lambda rng: rng.integers(0, c, size=n)


@dataclass
class Case:
    op: str
    inputs: list[Gen]
    attrs: dict[str, Any] = field(default_factory=dict)
    id: str = ""


def case(op: str, *inputs: Gen, id: str = "", **attrs: Any) -> Case:
    return Case(op, list(inputs), attrs, f"{op}-{id}" if id else op)


CASES = [
    *(case(op, normal(3, 4), normal(3, 4), id="same") for op in ("add", "sub", "mul")),
    *(case(op, normal(3, 4), normal(1, 4), id="row") for op in ("add", "sub", "mul")),
    *(case(op, normal(), normal(2, 3), id="scalar") for op in ("add", "sub", "mul")),
    case("div", normal(3, 4), positive(3, 4), id="same"),
    case("div", normal(3, 4), positive(4), id="broadcast"),
    case("div", positive(3, 1), normal(3, 4), id="column"),
    case("neg", normal(3, 4)),
    case("pow", normal(3, 4), exponent=2.0, id="square"),
    case("pow", normal(3, 4), exponent=3.0, id="cube"),
    case("pow", positive(3, 4), exponent=0.5, id="sqrt"),
    case("pow", positive(3, 4), exponent=-1.5, id="negative"),
    case("exp", normal(3, 4)),
    case("log", positive(3, 4)),
    case("matmul", normal(3, 4), normal(4, 5), id="2d"),
    case("matmul", normal(4), normal(4, 5), id="vec-mat"),
    case("matmul", normal(3, 4), normal(4), id="mat-vec"),
    case("matmul", normal(4), normal(4), id="dot"),
    case("matmul", normal(2, 3, 4), normal(4, 5), id="batched"),
    case("matmul", normal(3, 4), normal(2, 4, 5), id="broadcast-batch"),
    case("linear", normal(5, 3), normal(3, 4), normal(4), id="tutorial"),
    case("linear", normal(5, 3), normal(4, 3), normal(4), transpose_weight=True, id="nn-linear"),
    case("linear", normal(3), normal(3), normal(), id="perceptron"),
    case("linear", normal(5, 3), normal(3, 4), normal(1, 4), id="row-bias"),
    *(case(op, normal(2, 3, 4), axis=axis, keepdims=keep, id=f"{axis}-{keep}")
      for op in ("sum", "mean") for axis in (None, 0, -1, (0, 2)) for keep in (False, True)),
    case("sum", normal(), id="0d"),
    case("reshape", normal(2, 6), shape=(3, 4), id="3x4"),
    case("reshape", normal(2, 3, 2), shape=(-1,), id="flat"),
    case("reshape", normal(12), shape=(4, -1), id="infer"),
    case("transpose", normal(3, 4), id="2d"),
    case("transpose", normal(2, 3, 4), axes=(0, 2, 1), id="3d"),
    case("transpose", normal(2, 3, 4), axes=(-1, 0, 1), id="negative-axes"),
    case("step", normal(3, 4)),
    case("sigmoid", normal(3, 4)),
    case("sigmoid", fixed([-800.0, -30.0, 0.0, 30.0, 800.0]), id="saturated"),
    case("tanh", normal(3, 4)),
    case("relu", normal(3, 4)),
    case("relu", fixed([-1.0, 0.0, 2.0]), id="kink"),
    case("leaky_relu", normal(3, 4)),
    case("leaky_relu", fixed([-1.0, 0.0, 2.0]), negative_slope=0.2, id="kink"),
    case("gelu", normal(3, 4), approximate="none", id="erf"),
    case("gelu", normal(3, 4), approximate="tanh", id="tanh"),
    case("silu", normal(3, 4), id="beta1"),
    case("silu", normal(3, 4), beta=1.7, id="beta"),
    case("softmax", normal(3, 4), axis=-1, id="last"),
    case("softmax", normal(3, 4), axis=0, id="first"),
    case("log_softmax", normal(3, 4), axis=-1, id="last"),
    case("log_softmax", normal(3, 4), axis=0, id="first"),
    case("mse", normal(4, 1), normal(4, 1)),
    case("sse", normal(4, 1), normal(4, 1)),
    case("bce", probs(4, 1), fixed([[0.0], [1.0], [1.0], [0.0]]), id="hard"),
    case("bce", probs(6), probs(6), id="soft"),
    case("bce", fixed([0.0, 1.0, 0.5]), fixed([1.0, 0.0, 1.0]), id="clamped"),
    case("cross_entropy", normal(5, 3), classes(5, 3), id="indices"),
    case("cross_entropy", normal(5, 3), fixed(np.eye(3)[[0, 2, 1, 1, 0]]), id="onehot"),
    case("cross_entropy", normal(5, 3), probs(5, 3), id="soft"),
    case("cross_entropy", normal(3), fixed(2), id="unbatched"),
    case("conv2d", normal(2, 3, 6, 6), normal(4, 3, 3, 3), normal(4), id="3x3"),
    case("conv2d", normal(2, 3, 7, 6), normal(4, 3, 3, 3), normal(4), stride=2, padding=1, id="stride-pad"),
    case("conv2d", normal(1, 2, 7, 7), normal(3, 2, 3, 3), normal(3), dilation=2, id="dilated"),
    case("conv2d", normal(2, 4, 5, 5), normal(6, 2, 3, 3), normal(6), groups=2, id="groups"),
    case("conv2d", normal(2, 3, 6, 5), normal(2, 3, 3, 2), stride=(1, 2), padding=(1, 0), id="no-bias"),
    case("max_pool2d", normal(2, 3, 6, 6), id="2x2"),
    case("max_pool2d", normal(2, 3, 7, 7), kernel_size=3, stride=2, padding=1, id="padded"),
    case("max_pool2d", normal(1, 2, 8, 8), kernel_size=2, stride=1, dilation=2, id="dilated"),
    case("avg_pool2d", normal(2, 3, 6, 6), id="2x2"),
    case("avg_pool2d", normal(2, 3, 7, 7), kernel_size=3, stride=2, padding=1, id="padded"),
    case("flatten", normal(2, 3, 4), id="batch"),
    case("flatten", normal(2, 3, 4, 5), start_dim=0, end_dim=1, id="leading"),
    case("batch_norm", normal(6, 3), normal(3), normal(3), normal(3), positive(3), id="train-2d"),
    case("batch_norm", normal(4, 3, 5, 5), normal(3), normal(3), normal(3), positive(3), id="train-4d"),
    case("batch_norm", normal(4, 3, 5), normal(3), normal(3), normal(3), positive(3), training=False,
         id="eval"),
    case("layer_norm", normal(3, 4, 5), normal(5), normal(5), id="last"),
    case("layer_norm", normal(3, 4, 5), normal(4, 5), normal(4, 5), eps=1e-3, id="two-axes"),
    case("embedding", fixed([[0, 1, 1], [6, 0, 1]]), normal(7, 4), id="repeats"),
    case("embedding", fixed([2.0, 5.0]), normal(7, 4), id="float-ids"),
    case("embedding", fixed([[0, 1, 1], [6, 0, 1]]), normal(7, 4), padding_idx=0, id="padding"),
    case("dropout", normal(4, 5), p=0.3, seed=3, id="train"),
    case("dropout", normal(4, 5), training=False, id="eval"),
    case("dropout", normal(4, 5), p=1.0, id="all"),
    case("concat", normal(2, 3), normal(2, 1), normal(2, 4), axis=1, id="columns"),
    case("concat", normal(2, 3), normal(4, 3), id="rows"),
    case("slice", normal(5, 6), axes=(0,), starts=(1,), stops=(4,), steps=(1,), id="rows"),
    case("slice", normal(5, 6), axes=(0, 1), starts=(None, None), stops=(None, 1), steps=(2, -2),
         id="negative-step"),
    case("select", normal(3, 4, 5), axis=1, index=2, id="middle"),
    case("select", normal(3, 4, 5), axis=-1, index=-1, id="last"),
    case("index", normal(5, 3), fixed([[0, 4], [4, 2]]), id="rows"),
    case("index", normal(5, 3), fixed([2, 0, -1, 2]), axis=1, id="columns"),
    case("rnn_cell", normal(3, 4), normal(3, 5), normal(5, 4), normal(5, 5), normal(5), normal(5), id="tanh"),
    case("rnn_cell", normal(3, 4), normal(5), normal(5, 4), normal(5, 5), normal(5), normal(5),
         nonlinearity="relu", id="relu-broadcast"),
    case("lstm_cell", normal(3, 4), normal(2, 3, 5), normal(20, 4), normal(20, 5), normal(20), normal(20)),
    case("lstm_cell", normal(3, 4), normal(2, 1, 5), normal(20, 4), normal(20, 5), normal(20), normal(20),
         id="broadcast"),
    case("gru_cell", normal(3, 4), normal(3, 5), normal(15, 4), normal(15, 5), normal(15), normal(15)),
    case("gru_cell", normal(3, 4), normal(5), normal(15, 4), normal(15, 5), normal(15), normal(15),
         id="broadcast"),
    case("scaled_dot_product_attention", normal(2, 5, 8), normal(2, 6, 8), normal(2, 6, 4), num_heads=2,
         id="heads"),
    case("scaled_dot_product_attention", normal(5, 8), normal(5, 8), normal(5, 8), causal=True, scale=0.3,
         id="causal"),
]


def build(c: Case, seed: int = 0) -> tuple[Graph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    g = Graph(c.id)
    arrays = {f"in{i}": gen(rng) for i, gen in enumerate(c.inputs)}
    leaves = [g.input(name, arr.shape) for name, arr in arrays.items()]
    g.set_outputs(g.add(c.op, *leaves, name="out", attrs=c.attrs))
    return g, arrays


@pytest.mark.torch
def test_every_catalog_op_has_a_torch_kernel_and_a_case() -> None:
    from propscope.backends.torch import KERNELS

    ops = {name for name, op in CATALOG.items() if not op.is_leaf}
    assert ops <= set(KERNELS), f"no torch kernel for {sorted(ops - set(KERNELS))}"
    # the op families added later check their parity in their own test_ops_*.py (opcheck.check_backends_agree)
    families = set()
    for path in sorted(Path(__file__).parent.glob("test_ops_*.py")):
        families |= {c.op for c in importlib.import_module(path.stem).CASES}
    covered = {c.op for c in CASES} | families
    assert ops <= covered, f"no parity case for {sorted(ops - covered)}"


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_op_agrees_with_numpy(c: Case, dtype: str) -> None:
    """Forward, VJP with a random upstream, elementwise partials: torch (autograd) against NumPy (by hand)."""
    g, arrays = build(c)
    node = g["out"]
    np_b, th_b = get_backend("numpy", dtype), get_backend("torch", dtype)
    np_in = [np_b.asarray(arrays[a.name]) for a in node.inputs]
    th_in = [th_b.asarray(arrays[a.name]) for a in node.inputs]
    np_out, th_out = np_b.forward(node, np_in), th_b.forward(node, th_in)
    assert th_b.to_numpy(th_out).shape == np_out.shape == node.shape
    assert th_b.to_numpy(th_out).dtype == np_out.dtype
    assert close(np_out, th_b.to_numpy(th_out), dtype), "forward differs"

    upstream = np.random.default_rng(1).normal(size=node.shape)
    np_g = np_b.vjp(node, np_in, np_out, np_b.asarray(upstream))
    th_g = th_b.vjp(node, th_in, th_out, th_b.asarray(upstream))
    for i, (a, b) in enumerate(zip(np_g, th_g, strict=True)):
        assert (a is None) == (b is None), f"input {i}: gradient present on one backend only"
        if a is not None:
            assert th_b.to_numpy(b).shape == np.shape(a) == node.inputs[i].shape
            assert close(a, th_b.to_numpy(b), dtype), f"gradient of input {i} differs"

    np_p = np_b.partials(node, np_in, np_out)
    th_p = th_b.partials(node, th_in, th_out)
    if node.op.elementwise:
        assert np_p is not None and th_p is not None
    if np_p is not None:
        assert th_p is not None
        for a, b in zip(np_p, th_p, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                got = th_b.to_numpy(b)
                assert close(np.broadcast_to(a, got.shape), got, dtype), "partials differ"


@pytest.mark.torch
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_a_strangely_laid_out_upstream_gradient_is_read_as_its_values(training: bool) -> None:
    """torch 2.13's CPU batch-norm backward misreads a gradient of shape (1, C, H, W) laid out channels-last with a
    batch stride of C (timm's EfficientFormer hands one on from its token transpose at batch 1): weight, bias and
    input gradients all wrong. The backend gives every VJP a contiguous upstream, so it agrees with NumPy."""
    import torch

    c = case("batch_norm", normal(1, 16, 3, 3), normal(16), normal(16), normal(16), positive(16), training=training)
    g, arrays = build(c)
    node = g["out"]
    np_b, th_b = get_backend("numpy", "float64"), get_backend("torch", "float64")
    np_in = [np_b.asarray(arrays[a.name]) for a in node.inputs]
    th_in = [th_b.asarray(arrays[a.name]) for a in node.inputs]
    np_out, th_out = np_b.forward(node, np_in), th_b.forward(node, th_in)
    flat = torch.from_numpy(np.random.default_rng(2).normal(size=16 * 3 * 3))
    upstream = flat.as_strided((1, 16, 3, 3), (16, 1, 3 * 16, 16))
    np_g = np_b.vjp(node, np_in, np_out, upstream.contiguous().numpy())
    th_g = th_b.vjp(node, th_in, th_out, upstream)
    for i in range(3):  # the input, the scale and the shift
        assert close(np_g[i], th_b.to_numpy(th_g[i]), "float64"), f"gradient of input {i} differs"


# -- every example -------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("example", list(EXAMPLES))
def test_example_traces_agree(example: str, dtype: str) -> None:
    """Every value, every gradient and every step record of a full pass agree across backends."""
    s = open_session(example, dtype=dtype)
    s.run_to_end()
    result = compare_backends(s, get_backend("torch", dtype))
    assert result.passed, [d for d in result.failures]
    assert result.cursor == len(s.steps)

    t = open_session(example, backend="torch", dtype=dtype)
    t.run_to_end()
    for ra, rb in zip(s.trace.records, t.trace.records, strict=True):
        assert (ra.phase, ra.node.name) == (rb.phase, rb.node.name)
        if ra.phase == "forward":
            assert close(ra.output, t.backend.to_numpy(rb.output), dtype)
        else:
            assert close(ra.upstream, t.backend.to_numpy(rb.upstream), dtype)
            assert [x.input.name for x in ra.terms] == [x.input.name for x in rb.terms]
            for xa, xb in zip(ra.terms, rb.terms, strict=True):
                assert close(xa.contribution, t.backend.to_numpy(xb.contribution), dtype)
                assert close(xa.total, t.backend.to_numpy(xb.total), dtype)
                assert (xa.arrival, xa.consumers) == (xb.arrival, xb.consumers)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_program_agrees_with_numpy(dtype: str) -> None:
    """The training fast path (one autograd pass) gives the trace's loss and parameter gradients."""
    for example in EXAMPLES:
        s = open_session(example, dtype=dtype)
        leaves = {n.name: s.trace.values[n.name] for n in s.graph.leaves}
        wrt = [n.name for n in s.graph.parameters]
        np_loss, np_grads = s.backend.compile(s.graph).loss_and_grads(leaves, wrt)
        tb = get_backend("torch", dtype)
        th_leaves = {k: tb.asarray(v) for k, v in leaves.items()}
        th_loss, th_grads = tb.compile(s.graph).loss_and_grads(th_leaves, wrt)
        assert close(np_loss, tb.to_numpy(th_loss), dtype), example
        for name in wrt:
            assert close(np_grads[name], tb.to_numpy(th_grads[name]), dtype), (example, name)
        pred = tb.compile(s.graph).predict({k: tb.asarray(v) for k, v in leaves.items()})
        assert not pred.requires_grad


# -- the debugger on torch -----------------------------------------------------------------------
@pytest.mark.torch
def test_values_stay_tensors_and_reach_numpy_only_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    s = open_session("xor", backend="torch", dtype="float64")
    calls: list[int] = []
    original = s.backend.to_numpy
    monkeypatch.setattr(s.backend, "to_numpy", lambda v: calls.append(1) or original(v))
    s.run_to_end()
    assert calls == [], "stepping copied values to the host"
    assert all(isinstance(v, torch.Tensor) for v in s.trace.values.values())
    assert all(isinstance(g, torch.Tensor) for g in s.trace.final_grads().values())
    assert all(v.device.type == "cpu" and not v.requires_grad for v in s.trace.values.values())
    assert isinstance(s.grad("W1"), np.ndarray) and calls


@pytest.mark.torch
def test_stepping_and_time_travel_on_torch() -> None:
    import torch

    s = open_session("xor", backend="torch", dtype="float32")
    s.run_to_end()
    end = {n.name: (s.value(n.name), s.grad(n.name)) for n in s.graph}
    records = list(s.trace.records)
    while s.step_back() is not None:
        pass
    assert s.cursor == 0 and s.grad("W1") is None and s.value("final_output") is None
    while s.step() is not None:
        pass
    assert s.at_end and all(a is b for a, b in zip(records, s.trace.records, strict=True))
    for name, (value, grad) in end.items():
        assert np.array_equal(s.value(name), value)
        assert (grad is None and s.grad(name) is None) or np.array_equal(s.grad(name), grad)
    s.run_to("hidden_output", "backward")
    step = s.current
    assert step is not None and step.phase == "backward" and isinstance(step.upstream, torch.Tensor)
    s.seek(3)
    assert s.cursor == 3 and s.grad("W1") is None


@pytest.mark.torch
def test_breakpoints_on_torch() -> None:
    g = Graph("nan")
    x = g.input("x", (2, 3))
    w = g.parameter("w", (3, 3))
    b = g.parameter("b", (3,))
    z = g.add("linear", x, w, b, name="z")
    g.set_outputs(g.add("sigmoid", g.add("log", z, name="logz"), name="a"))
    model = Model(g, {"w": -np.eye(3), "b": np.zeros(3)}, batch={"x": np.ones((2, 3)), "y": np.zeros((2, 3))},
                  loss="mse")
    s = Session(model, get_backend("torch", "float64"))
    s.add_breakpoint("a", "backward")
    s.break_on_nonfinite = True
    stop = s.continue_()
    assert stop is not None and isinstance(stop.breakpoint, NonFiniteBreakpoint)
    assert stop.step.node.name == "logz" and "non-finite" in stop.reason and s.cursor == 2
    s.break_on_nonfinite = False  # the NaN flows on: every later step would stop too
    stop = s.continue_()
    assert stop is not None and stop.step.node.name == "a" and stop.step.phase == "backward"
    assert s.continue_() is None and s.at_end
    s.break_on_nonfinite = True
    s.reset()
    again = s.continue_()  # after time travel, the same record (computed once) stops it again
    assert again is not None and again.step is s.trace.records[1] and again.step.node.name == "logz"
    assert s.trace.first_nonfinite is not None and s.trace.first_nonfinite[1].name == "logz"


@pytest.mark.torch
def test_set_backend_keeps_the_cursor() -> None:
    s = open_session("classifier", dtype="float64")
    s.seek(len(s.steps) - 2)
    before = {n.name: (s.value(n.name), s.grad(n.name)) for n in s.graph}
    moved: list[int] = []
    s.cursor_moved.connect(moved.append)
    s.set_backend(get_backend("torch", "float64"))
    assert s.backend.name == "torch" and s.cursor == len(s.steps) - 2 and moved[-1] == s.cursor
    for name, (value, grad) in before.items():
        assert (value is None) == (s.value(name) is None) and (grad is None) == (s.grad(name) is None)
        if value is not None:
            assert close(value, s.value(name), "float64")
        if grad is not None:
            assert close(grad, s.grad(name), "float64")
    s.set_backend(get_backend("numpy", "float64"))
    assert s.cursor == len(s.steps) - 2


@pytest.mark.torch
def test_explain_on_torch() -> None:
    s = open_session("xor", backend="torch", dtype="float64")
    s.run_to_end()
    explanation = s.explain("W1", (0, 1))
    assert explanation.agrees()
    assert explanation.computed == pytest.approx(float(s.grad("W1")[0, 1]), abs=1e-12)


@pytest.mark.torch
def test_comparison_flags_a_real_difference() -> None:
    """The comparison is not vacuous: a perturbed parameter on the other side shows at that node and after."""
    s = open_session("xor", dtype="float64")
    s.run_to_end()
    other = get_backend("torch", "float64")
    result = compare_backends(s, other)
    assert result.passed and set(result.by_node()) == {n.name for n in s.graph}
    s.trace.values["W2"] = s.trace.values["W2"] + 1e-6  # the replay starts from these leaves
    result = compare_backends(s, other)
    assert not result.passed
    assert {d.name for d in result.failures} >= {"final_input", "final_output", "loss"}
    diffs = {d.name: d for d in result.nodes}
    assert diffs["hidden_input"].value_diff == 0 and diffs["hidden_input"].grad_diff > 1e-8


@pytest.mark.torch
def test_compare_at_the_cursor() -> None:
    s = open_session("xor", dtype="float32")
    s.seek(3)
    result = compare_backends(s, get_backend("torch", "float32"))
    assert result.cursor == 3 and result.passed
    diffs = {d.name: d for d in result.nodes}
    assert np.isnan(diffs["final_output"].value_diff) and np.isnan(diffs["W1"].grad_diff)


def test_max_abs_diff_treats_matching_nonfinite_as_equal() -> None:
    assert max_abs_diff(np.array([np.nan, np.inf, 1.0]), np.array([np.nan, np.inf, 1.5]))[0] == 0.5
    assert max_abs_diff(np.array([np.nan]), np.array([1.0]))[0] == np.inf
    assert max_abs_diff(None, np.zeros(2))[0] == np.inf


# -- devices and availability --------------------------------------------------------------------
@pytest.mark.torch
def test_cuda_without_cuda_is_a_clear_error() -> None:
    import torch

    if torch.cuda.is_available():
        with pytest.raises(BackendError, match="no CUDA device 99"):
            get_backend("torch", "float32", "cuda:99")
        return
    for device in ("cuda", "cuda:0"):
        with pytest.raises(BackendError, match=r"CUDA is not available: .*--device cpu"):
            get_backend("torch", "float32", device)
    with pytest.raises(BackendError, match="CUDA is not available"):
        open_session("xor", backend="torch", device="cuda")


@pytest.mark.torch
def test_unknown_devices_and_dtypes() -> None:
    with pytest.raises(BackendError, match="unknown device"):
        get_backend("torch", "float32", "gpu please")
    with pytest.raises(BackendError, match="cpu or cuda"):
        get_backend("torch", "float32", "meta")
    with pytest.raises(BackendError, match="unknown dtype"):
        get_backend("torch", "float16")


@pytest.mark.torch
def test_available_devices_lists_cpu_first() -> None:
    from propscope.backends import backend_devices
    from propscope.backends.torch import available_devices

    assert available_devices()[0] == "cpu" and backend_devices("torch") == available_devices()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_traces_agree_with_numpy(dtype: str) -> None:
    for example in EXAMPLES:
        s = open_session(example, dtype=dtype)
        s.run_to_end()
        cuda = get_backend("torch", dtype, "cuda")
        result = compare_backends(s, cuda)
        assert result.passed, (example, result.failures)
        t = open_session(example, backend="torch", dtype=dtype, device="cuda")
        t.run_to_end()
        assert all(v.device.type == "cuda" for v in t.trace.values.values())
        assert t.explain(t.graph.parameters[0].name, (0,) * len(t.graph.parameters[0].shape)).agrees()


@pytest.mark.cuda
def test_cuda_compare_command(capsys: pytest.CaptureFixture[str]) -> None:
    from propscope.cli import main

    assert main(["compare", "classifier", "--device", "cuda"]) == 0
    assert "on cuda" in capsys.readouterr().out


def test_torch_stays_optional() -> None:
    """With torch blocked, propscope and the NumPy backend work; asking for torch says how to install it."""
    script = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import propscope
from propscope.backends import BackendError, get_backend
from propscope.cli import main
from propscope.debugger import open_session
s = open_session("xor-torch", dtype="float64")
s.run_to_end()
assert s.grad("layer1.weight") is not None
try:
    get_backend("torch", "float32")
except BackendError as exc:
    print("ERROR:", exc)
print("COMPARE:", main(["compare", "xor"]))
from propscope.backends import backend_devices
print("DEVICES:", backend_devices("numpy"), backend_devices("torch"))
"""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ERROR: the torch backend needs PyTorch: pip install" in done.stdout
    assert "COMPARE: 2" in done.stdout and "pip install" in done.stderr
    assert "DEVICES: ['cpu'] []" in done.stdout  # the app shows torch greyed out, with the install command


def test_importing_propscope_does_not_import_torch() -> None:
    script = "import sys, propscope, propscope.debugger, propscope.backends; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


# -- the command line ----------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_compare_command_passes_on_xor(dtype: str, capsys: pytest.CaptureFixture[str]) -> None:
    from propscope.cli import main

    assert main(["compare", "xor", "--dtype", dtype]) == 0
    out = capsys.readouterr().out
    assert f"numpy/{dtype} on cpu vs torch/{dtype} on cpu" in out and "agree" in out
    assert "final_output" in out


@pytest.mark.torch
def test_compare_command_fails_above_the_tolerance(capsys: pytest.CaptureFixture[str]) -> None:
    from propscope.cli import main

    assert main(["compare", "classifier", "--dtype", "float32", "--tol", "1e-12", "--top", "3"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "backends differ beyond 1e-12" in captured.err


def test_a_difference_that_starts_at_a_torch_kernel_known_to_differ_is_explained() -> None:
    """On CUDA, torch's hardswish/hardsigmoid use a float32 1/6 (tests/test_cuda.py measures it): where the first
    node beyond the tolerance is one of them, the comparison says so, for the command and the Diff dock."""
    from propscope.debugger.compare import Comparison, NodeDiff

    def comparison(other: str, first_op: str) -> Comparison:
        nodes = (NodeDiff("x", "input", 0.0, 0.0, 1.0, 1.0), NodeDiff("act", first_op, 3e-8, 0.0, 1.0, 1.0),
                 NodeDiff("conv", "conv2d", 1e-8, 1e-9, 1.0, 1.0))
        return Comparison("numpy/float64 on cpu", other, "float64", 3, 6, 1e-10, nodes)

    said = comparison("torch/float64 on cuda:0", "hardswish").explanation
    assert said is not None and "act" in said and "1/6 rounded to float32" in said
    assert comparison("torch/float64 on cuda", "hardsigmoid").explanation is not None
    assert comparison("torch/float64 on cpu", "hardswish").explanation is None  # the CPU kernel is exact
    assert comparison("torch/float64 on cuda:0", "relu").explanation is None
    reversed_sides = Comparison("torch/float64 on cuda:0", "numpy/float64 on cpu", "float64", 3, 6, 1e-10,
                                comparison("", "hardswish").nodes)
    assert reversed_sides.explanation is not None


# -- training with torch.optim -------------------------------------------------------------------
VARIANTS = {
    "sgd": [{}, {"momentum": 0.5, "nesterov": True, "weight_decay": 0.01}],
    "momentum": [{}, {"dampening": 0.1}],
    "rmsprop": [{}, {"centered": True, "momentum": 0.3, "alpha": 0.9}],
    "adam": [{}, {"amsgrad": True, "weight_decay": 0.01, "betas": (0.8, 0.99)}],
    "adamw": [{}, {"weight_decay": 0.1, "eps": 1e-6}],
}


@pytest.mark.torch
@pytest.mark.parametrize("optimizer", list(VARIANTS))
def test_training_histories_agree_across_backends(optimizer: str) -> None:
    """Our NumPy optimizers on NumPy against the real torch.optim classes on torch: same losses, weights."""
    for example in ("xor-torch", "classifier"):
        for hparams in VARIANTS[optimizer]:
            runs = []
            for backend in ("numpy", "torch"):
                s = open_session(example, backend=backend, dtype="float64")
                history = s.train(epochs=150, optimizer=optimizer, lr=0.05, **hparams)
                runs.append((np.asarray(history.loss), s.parameters_numpy()))
            (loss_np, params_np), (loss_th, params_th) = runs
            assert len(loss_np) == 150
            assert np.max(np.abs(loss_np - loss_th)) < 1e-10, (example, hparams)
            for name, value in params_np.items():
                assert np.max(np.abs(value - params_th[name])) < 1e-9, (example, hparams, name)


@pytest.mark.torch
def test_mini_batch_training_agrees_across_backends() -> None:
    runs = []
    for backend in ("numpy", "torch"):
        s = open_session("classifier", backend=backend, dtype="float64")
        history = s.train(epochs=20, optimizer="adam", lr=0.01, batch_size=32, seed=3)
        runs.append((np.asarray(history.loss), s.parameters_numpy()))
    assert np.max(np.abs(runs[0][0] - runs[1][0])) < 1e-10
    assert all(np.max(np.abs(runs[0][1][k] - runs[1][1][k])) < 1e-9 for k in runs[0][1])


@pytest.mark.torch
def test_torch_sessions_train_with_torch_optim() -> None:
    import torch

    from propscope.backends import optimizer_for
    from propscope.backends.optimizers import Optimizer, OptimizerError
    from propscope.backends.torch.optim import TorchOptimizer
    from propscope.debugger.trainer import Trainer

    s = open_session("xor-torch", backend="torch", dtype="float32")
    trainer = Trainer(s, epochs=5)
    assert isinstance(trainer.optimizer, TorchOptimizer)
    trainer.run()
    assert type(trainer.optimizer.optimizer) is torch.optim.Adam and trainer.optimizer.steps == 5
    assert set(trainer.optimizer.state["layer1.weight"]) >= {"exp_avg", "exp_avg_sq"}
    assert isinstance(s.params["layer1.weight"], torch.Tensor)
    assert isinstance(optimizer_for(get_backend("numpy"), "sgd", ["w"], lr=0.1), Optimizer)
    expected = {"sgd": "SGD", "momentum": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW"}
    for name, cls in expected.items():
        opt = optimizer_for(s.backend, name, ["w"], lr=0.1)
        w = torch.ones(3)
        opt.step([w], [torch.ones(3)])
        assert type(opt.optimizer).__name__ == cls and opt.optimizer.param_groups[0]["lr"] == 0.1
        assert bool((w < 1).all())
    assert optimizer_for(s.backend, "momentum", ["w"]).hparams["momentum"] == 0.9
    with pytest.raises(OptimizerError, match="no hyperparameter"):
        optimizer_for(s.backend, "adam", ["w"], momentum=0.9)


@pytest.mark.torch
def test_torch_optimizer_writes_numpy_arrays_and_follows_lr_changes() -> None:
    from propscope.backends.torch.optim import TorchOptimizer

    opt = TorchOptimizer("sgd", ["w"], lr=0.5)
    w, out = np.ones(2), np.zeros(2)
    opt.step([w], [np.full(2, 2.0)], out=[out])
    assert np.array_equal(w, np.ones(2)) and np.array_equal(out, np.zeros(2))
    opt.hparams["lr"] = 0.25  # a learning-rate slider between steps
    opt.step([out], [np.ones(2)])
    assert np.array_equal(out, np.full(2, -0.25))
    opt.reset()
    assert opt.steps == 0 and opt.optimizer is None


def _reference_predictions(reference: Path, seed: int) -> np.ndarray:
    """The tutorial's Part 10 program (tests/reference/xor_torch.py), in its own process as the tutorial runs."""
    script = str(reference / "xor_torch.py")
    done = subprocess.run([sys.executable, script, "--seed", str(seed)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return np.array([float(v) for v in done.stdout.split()])


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 7])
def test_part_10_reproduced_on_torch(seed: int, reference_dir: Path) -> None:
    """Session.train on the torch backend ends where the tutorial's own PyTorch program does."""
    want = _reference_predictions(reference_dir, seed)
    assert want.shape == (4,)
    s = open_session("xor-torch", backend="torch", dtype="float32", seed=seed)
    s.train(epochs=1000)
    s.run_to_end()
    got = s.value(s.prediction_node.name).ravel()
    assert np.max(np.abs(got - want)) < 1e-6


@pytest.mark.torch
def test_kept_autograd_records_go_with_their_trace() -> None:
    """Each forward's autograd record lives exactly as long as its output; without them the VJP re-runs."""
    import gc

    s = open_session("classifier", backend="torch", dtype="float64")
    s.run_to_end()
    assert len(s.backend._tape) == len(s.graph.ops)
    expected = s.grad("W1")
    s.refresh()
    gc.collect()
    assert len(s.backend._tape) == 0
    lean = get_backend("torch", "float64")
    lean.keep_graph = False
    s.set_backend(lean)
    s.run_to_end()
    assert len(lean._tape) == 0
    assert np.array_equal(s.grad("W1"), expected)


@pytest.mark.torch
@pytest.mark.slow
def test_part_10_reproduced_by_the_train_command(reference_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's command as written (the train command's default dtype, float64) ends as the tutorial."""
    from propscope.cli import main

    seed = 3
    out = tmp_path / "trained.propscope"
    argv = ["train", "xor-torch", "--backend", "torch", "--seed", str(seed), "--epochs", "1000",
            "--out", str(out)]
    assert main(argv) == 0
    assert "adam (lr 0.1)" in capsys.readouterr().out
    s = open_session(out, backend="torch", dtype="float64")
    s.seek(s.n_forward)
    got = s.value(s.prediction_node.name).ravel()
    assert np.max(np.abs(got - _reference_predictions(reference_dir, seed))) < 1e-6


@pytest.mark.torch
def test_exact_float32_turns_tf32_off_and_restores_it() -> None:
    import torch

    from propscope.backends.torch import exact_float32

    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with exact_float32():
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before

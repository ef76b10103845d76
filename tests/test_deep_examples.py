"""The Part 9 examples (cnn, rnn, lstm, gru, attention): they step both ways, pass gradcheck, and teach their lesson."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from propscope.backends.numpy import NumpyBackend
from propscope.debugger import open_session
from propscope.debugger.gradcheck import gradcheck
from propscope.debugger.steps import BackwardStep
from propscope.graph.examples import EXAMPLES, load_example
from propscope.graph.examples_deep import DEEP_EXAMPLES, SEQ_LEN, synthetic_digits

DEEP = [row[0] for row in DEEP_EXAMPLES]
RECURRENT = ["rnn", "lstm", "gru"]


def _state(s):  # type: ignore[no-untyped-def]
    """Every node's value and gradient at the cursor, as copies."""
    out = {}
    for node in s.graph:
        v, g = s.value(node.name), s.grad(node.name)
        out[node.name] = (None if v is None else v.copy(), None if g is None else g.copy())
    return out


def _same(a, b) -> bool:  # type: ignore[no-untyped-def]
    for name in a:
        for x, y in zip(a[name], b[name], strict=True):
            if (x is None) != (y is None) or (x is not None and not np.array_equal(x, y)):
                return False
    return True


def test_registered_in_order_after_the_tutorials_first_examples() -> None:
    assert list(EXAMPLES)[-len(DEEP):] == DEEP
    for name in DEEP:
        assert EXAMPLES[name].lesson.startswith("Part 9")


@pytest.mark.parametrize("name", DEEP)
def test_steps_to_the_end_and_back_with_identical_traces(name: str) -> None:
    s = open_session(name, dtype="float64")
    total = len(s.steps)
    assert 10 <= total <= 600, f"{name}: {total} steps is not steppable by hand"
    seen = [_state(s)]
    while s.step() is not None:
        seen.append(_state(s))
    assert s.at_end and s.trace.first_nonfinite is None and len(seen) == total + 1
    for cursor in range(total - 1, -1, -1):  # back to the start: every earlier state exactly as it was
        s.step_back()
        assert s.cursor == cursor and _same(seen[cursor], _state(s)), f"{name}: state {cursor} differs going back"
    s.run_to_end()
    assert _same(seen[-1], _state(s))
    fresh = open_session(name, dtype="float64")
    fresh.run_to_end()
    assert _same(seen[-1], _state(fresh))


@pytest.mark.parametrize("name", DEEP)
def test_gradcheck(name: str) -> None:
    rows = gradcheck(open_session(name, dtype="float64"))
    assert {r.name for r in rows if r.kind == "parameter"} == set(load_example(name).parameters)
    assert all(r.relative_error < 1e-7 for r in rows), [r for r in rows if r.relative_error >= 1e-7]


@pytest.mark.parametrize("name", DEEP)
def test_every_backward_step_of_a_new_op_is_one_step(name: str) -> None:
    """Each cell, conv or attention product is ONE step forward and one backward, never expanded behind the view."""
    s = open_session(name, dtype="float64")
    s.run_to_end()
    forward = [r.node.name for r in s.trace.records if not isinstance(r, BackwardStep)]
    assert len(forward) == len(set(forward)) == len(s.graph.ops)


# -- cnn ----------------------------------------------------------------------------------------------
def test_cnn_edge_filter_responds_on_the_vertical_edge() -> None:
    s = open_session("cnn")
    s.run_to("edge.map")
    edge = s.value("edge.map")[0, 0]
    assert edge.shape == (4, 4)
    # columns 1 and 2 are the windows straddling the bright→dark edge; 0 and 3 see flat ground
    assert np.all(edge[:, 1:3] >= 29.99)
    assert np.allclose(edge[:, [0, 3]], 0.0, atol=1e-6)
    np.testing.assert_allclose(edge, [[0, 30, 30, 0]] * 4)


def test_cnn_first_filter_starts_as_the_edge_detector_and_digits_are_synthetic() -> None:
    model = load_example("cnn")
    np.testing.assert_allclose(model.arrays["conv1.weight"][0, 0] * 3.0, [[1, 0, -1]] * 3)
    x, y = model.batch["x"], model.batch["y"]
    assert x.shape == (20, 1, 8, 8) and set(y) == set(range(10))
    images, labels = synthetic_digits(20, 0)
    np.testing.assert_array_equal(images, x)
    np.testing.assert_array_equal(labels, y)
    ink = (images > 0.5).sum(axis=(1, 2, 3))
    assert np.all(ink >= 7) and ink[1] < ink[8]  # a 1 has less ink than an 8


# -- recurrent ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", RECURRENT)
def test_recurrent_layer_is_unrolled_one_cell_per_step_under_its_box(kind: str) -> None:
    g = load_example(kind).graph
    cells = [n for n in g if n.op.name == f"{kind}_cell"]
    assert [c.name for c in cells] == [f"{kind}.t{t}" for t in range(SEQ_LEN)]
    assert all(c.module == kind and c.meta["time"] == t for t, c in enumerate(cells))
    for prev, cell in itertools.pairwise(cells):
        assert cell.inputs[1] is prev  # the state flows from step to step
    weights = {a.name for c in cells for a in c.inputs[2:]}
    assert weights == {f"{kind}.weight_ih", f"{kind}.weight_hh", f"{kind}.bias_ih", f"{kind}.bias_hh"}
    assert all(g[w].module == kind for w in weights)


def _per_step_gradient(kind: str, seed: int) -> np.ndarray:
    s = open_session(kind, dtype="float64", seed=seed)
    s.run_to_end()
    norms = np.array([np.linalg.norm(s.grad(f"{kind}.t{t}")) for t in range(SEQ_LEN)])
    return norms / norms[-1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_plain_rnn_gradient_vanishes_and_the_gated_cells_keep_it(seed: int) -> None:
    rnn, lstm, gru = (_per_step_gradient(kind, seed) for kind in RECURRENT)
    assert np.all(np.diff(rnn) > 0), "the RNN's gradient shrinks at every step back"
    assert rnn[0] < 0.05
    assert lstm[0] > 3 * rnn[0] and gru[0] > 3 * rnn[0]
    assert lstm[0] > 0.05 and gru[0] > 0.2


def test_lstm_state_is_stacked_h_and_c_and_the_head_reads_h() -> None:
    s = open_session("lstm", dtype="float64")
    s.run_to("logits")
    last = s.value(f"lstm.t{SEQ_LEN - 1}")
    assert last.shape == (2, 16, 8)
    np.testing.assert_array_equal(s.value("lstm.h"), last[0])
    assert np.all(np.abs(last[0]) < 1)  # h = o·tanh(c) is bounded, c is not
    assert np.abs(last[1]).max() > np.abs(last[0]).max()


# -- attention -----------------------------------------------------------------------------------------
def test_attention_matrix_is_causal_and_sums_to_one() -> None:
    s = open_session("attention", dtype="float64")
    s.run_to("attn.weights")
    node = s.graph["attn.weights"]
    weights = s.value("attn.weights")
    assert weights.shape == (2, 5, 5)  # heads × words × words
    assert node.meta["tokens"] == ("the", "cat", "sat", "on", "the")
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0)
    assert np.all(weights[..., np.triu_indices(5, k=1)[0], np.triu_indices(5, k=1)[1]] == 0.0)
    assert np.all(weights[..., 0, 0] == 1.0)  # the first word can only look at itself


def test_attention_from_primitives_equals_the_fused_op() -> None:
    """The steppable block and the one-op `scaled_dot_product_attention` compute the same thing."""
    from propscope.graph.ir import Graph

    s = open_session("attention", dtype="float64")
    s.run_to_end()
    q, k, v = (s.value(f"attn.{w}") for w in "qkv")
    g = Graph("fused")
    leaves = [g.input(w, a.shape) for w, a in zip("qkv", (q, k, v), strict=True)]
    node = g.add("scaled_dot_product_attention", *leaves, attrs={"num_heads": 2, "causal": True})
    np.testing.assert_allclose(NumpyBackend("float64").forward(node, [q, k, v]), s.value("attn.concat_heads"),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("torch", marks=pytest.mark.torch)])
def test_token_ids_get_no_gradient(backend: str) -> None:
    s = open_session("attention", backend=backend, dtype="float64")
    s.run_to_end()
    assert s.grad("tokens") is None and s.grad("embed.weight") is not None
    rows = gradcheck(s)  # the ids are data: checked on neither backend, and every weight still is
    assert {r.name for r in rows if r.kind == "input"} == set()
    assert all(r.relative_error < 1e-7 for r in rows)


# -- both backends ---------------------------------------------------------------------------------------
@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", DEEP)
def test_numpy_and_torch_traces_agree(name: str, dtype: str) -> None:
    """Every value and gradient of a full pass, stepped on NumPy (hand-written VJPs) and on torch (autograd)."""
    from propscope.backends import get_backend
    from propscope.debugger.compare import compare_backends

    s = open_session(name, dtype=dtype)
    s.run_to_end()
    result = compare_backends(s, get_backend("torch", dtype))
    assert result.passed, [d for d in result.failures]
    t = open_session(name, backend="torch", dtype=dtype)
    t.run_to_end()
    assert [(r.phase, r.node.name) for r in s.trace.records] == [(r.phase, r.node.name) for r in t.trace.records]
    tol = 1e-10 if dtype == "float64" else 1e-4
    for ra, rb in zip(s.trace.records, t.trace.records, strict=True):
        if isinstance(ra, BackwardStep):
            assert [x.input.name for x in ra.terms] == [x.input.name for x in rb.terms], ra.node.name
            for xa, xb in zip(ra.terms, rb.terms, strict=True):
                np.testing.assert_allclose(xa.contribution, t.backend.to_numpy(xb.contribution), rtol=tol, atol=tol,
                                           err_msg=f"{name}: {ra.node.name} -> {xa.input.name}")
        else:
            np.testing.assert_allclose(ra.output, t.backend.to_numpy(rb.output), rtol=tol, atol=tol,
                                       err_msg=f"{name}: {ra.node.name}")

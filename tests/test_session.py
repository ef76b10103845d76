"""The Session: stepping, exact time travel, the chain rule in each step, breakpoints."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from propscope.backends.numpy import NumpyProgram
from propscope.backends.numpy.kernels import unbroadcast
from propscope.debugger import BackwardStep, ForwardStep, GradNormBreakpoint, open_session
from propscope.debugger.gradcheck import numeric_gradient
from propscope.graph import EXAMPLES, Graph, GraphError, Model

UNARY = ("sigmoid", "tanh", "relu", "silu", "neg", "gelu")
BINARY = ("add", "sub", "mul")


def random_model(draw_ops: list[tuple[str, int, int]], seed: int) -> Model:
    """A random DAG on (3, 4) values: unary, binary and linear ops reusing earlier nodes (fan-out)."""
    rng = np.random.default_rng(seed)
    g = Graph("random")
    nodes = [g.input("x", (3, 4))]
    arrays: dict[str, np.ndarray] = {}
    for i, (kind, a, b) in enumerate(draw_ops):
        left, right = nodes[a % len(nodes)], nodes[b % len(nodes)]
        if kind == "linear":
            w = g.parameter(f"W{i}", (4, 4))
            bias = g.parameter(f"b{i}", (4,))
            arrays[w.name], arrays[bias.name] = rng.normal(0, 0.5, (4, 4)), rng.normal(0, 0.5, 4)
            nodes.append(g.add("linear", left, w, bias, name=f"n{i}"))
        elif kind in BINARY:
            nodes.append(g.add(kind, left, right, name=f"n{i}"))
        else:
            nodes.append(g.add(kind, left, name=f"n{i}"))
    g.set_outputs(nodes[-1])
    batch = {"x": rng.normal(size=(3, 4)), "y": rng.normal(size=(3, 4))}
    return Model(g, arrays, batch=batch, loss="mse")


ops_strategy = st.lists(
    st.tuples(st.sampled_from((*UNARY, *BINARY, "linear")), st.integers(0, 50), st.integers(0, 50)),
    min_size=1,
    max_size=10,
)


def snapshot(s) -> list[tuple[str, object, object]]:  # type: ignore[no-untyped-def]
    return [(n.name, s.value(n.name), s.grad(n.name)) for n in s.graph]


def same_state(a, b) -> bool:  # type: ignore[no-untyped-def]
    for (na, va, ga), (nb, vb, gb) in zip(a, b, strict=True):
        if na != nb:
            return False
        for x, y in ((va, vb), (ga, gb)):
            if (x is None) != (y is None) or (x is not None and not np.array_equal(x, y, equal_nan=True)):
                return False
    return True


@pytest.mark.parametrize("name", list(EXAMPLES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stepping_to_the_end_gives_the_uninterrupted_gradients(name: str, dtype: str) -> None:
    s = open_session(name, dtype=dtype)
    while s.step() is not None:
        pass
    leaves = {**s.params, **{n.name: s.backend.asarray(s.batch[n.name]) for n in s.graph.inputs}}
    wrt = [n.name for n in s.graph.leaves if s.grad(n.name) is not None]
    loss, grads = NumpyProgram(s.graph).loss_and_grads(leaves, wrt)
    assert np.array_equal(s.value("loss"), loss)
    for key, grad in grads.items():
        assert np.array_equal(s.grad(key), grad), key
        assert s.grad(key).dtype == np.dtype(dtype)


@settings(max_examples=40, deadline=None)
@given(ops=ops_strategy, seed=st.integers(0, 1000), data=st.data())
def test_back_k_then_forward_k_is_bit_identical(ops, seed, data) -> None:  # type: ignore[no-untyped-def]
    s = open_session(random_model(ops, seed), dtype="float64")
    total = len(s.steps)
    s.seek(data.draw(st.integers(0, total), label="start"))
    before = snapshot(s)
    k = data.draw(st.integers(0, s.cursor), label="k")
    for _ in range(k):
        s.step_back()
    for _ in range(k):
        s.step()
    assert same_state(before, snapshot(s))


def test_values_and_gradients_appear_only_once_computed() -> None:
    s = open_session("xor")
    assert s.cursor == 0 and s.current is None
    assert s.value("hidden_input") is None and s.grad("W1") is None
    assert s.value("W1") is not None  # leaves are known from the start
    s.step()
    assert isinstance(s.current, ForwardStep)
    assert s.value("hidden_input") is not None and s.value("hidden_output") is None
    s.run_to("loss", "backward")
    assert s.grad("loss") == 1.0 and s.grad("final_output") is not None and s.grad("W2") is None
    s.step_back()
    assert s.grad("final_output") is None
    assert s.position_text() == "forward 5/10 · sse loss"


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_every_contribution_is_upstream_times_local(name: str) -> None:
    s = open_session(name, dtype="float64")
    s.run_to_end()
    checked = 0
    for record in s.trace.records:
        if not isinstance(record, BackwardStep):
            continue
        partials = s.trace.partials(record)
        for term in record.terms:
            x = record.inputs[term.position]
            if partials is not None:
                expected = unbroadcast(record.upstream * partials[term.position], x.shape)
            else:  # not elementwise: upstream · J, with J from finite differences of the forward
                expected = _numeric_vjp(s, record, term.position)
            np.testing.assert_allclose(term.contribution, expected, rtol=1e-7, atol=1e-10)
            total = term.contribution if term.total_before is None else term.total_before + term.contribution
            np.testing.assert_array_equal(term.total, total)
            checked += 1
    assert checked >= 3


def _numeric_vjp(s, record, position) -> np.ndarray:  # type: ignore[no-untyped-def]
    inputs = [np.array(v, dtype=np.float64) for v in record.inputs]
    upstream = np.asarray(record.upstream)

    def f() -> float:
        return float(np.sum(s.backend.forward(record.node, inputs) * upstream))

    return numeric_gradient(f, inputs[position])


def test_gradients_add_up_where_a_value_feeds_several_consumers() -> None:
    g = Graph("fanout")
    x = g.input("x", (2,))
    w = g.parameter("w", (2,))
    a = g.add("mul", x, w, name="a")
    b = g.add("sigmoid", w, name="b")
    g.set_outputs(g.add("add", a, b, name="out"))
    model = Model(g, {"w": np.array([0.5, -1.0])}, batch={"x": np.array([2.0, 3.0]), "y": np.zeros(2)}, loss="sse")
    s = open_session(model, dtype="float64")
    s.run_to_end()
    terms = [t for r in s.trace.records if isinstance(r, BackwardStep) for t in r.terms if t.input.name == "w"]
    assert [(t.arrival, t.consumers) for t in terms] == [(1, 2), (2, 2)]
    assert terms[0].total_before is None
    np.testing.assert_array_equal(terms[1].total, terms[0].contribution + terms[1].contribution)
    np.testing.assert_array_equal(s.grad("w"), terms[1].total)


def test_a_nan_in_one_weight_stops_continue_at_the_first_op_that_made_it() -> None:
    s = open_session("xor", dtype="float64")
    s.params["W2"][1, 0] = np.nan
    s.refresh()
    s.break_on_nonfinite = True
    stop = s.continue_()
    assert stop is not None
    assert stop.step.node.name == "final_input" and stop.step.phase == "forward"
    assert "final_input" in stop.reason and "non-finite" in stop.reason
    assert s.cursor == stop.step.index + 1
    assert s.trace.first_nonfinite is not None and s.trace.first_nonfinite[1].name == "final_input"


def test_node_breakpoints_stop_in_the_right_pass_and_end_when_none_left() -> None:
    s = open_session("xor")
    s.add_breakpoint("hidden_output", "backward")
    hits = []
    s.breakpoint_hit.connect(hits.append)
    stop = s.continue_()
    assert stop is not None and stop.step.phase == "backward" and stop.step.node.name == "hidden_output"
    assert hits == [stop]
    assert s.continue_() is None and s.at_end
    with pytest.raises(GraphError):
        s.add_breakpoint("no_such_node")


def deep_sigmoid_stack(depth: int, scale: float) -> Model:
    rng = np.random.default_rng(0)
    g = Graph("deep")
    h = g.input("x", (4, 4))
    arrays = {}
    for i in range(depth):
        w = g.parameter(f"W{i}", (4, 4))
        arrays[w.name] = rng.normal(0, scale, (4, 4))
        h = g.add("sigmoid", g.add("matmul", h, w, name=f"z{i}"), name=f"a{i}")
    g.set_outputs(h)
    return Model(g, arrays, batch={"x": rng.normal(size=(4, 4)), "y": np.ones((4, 4))}, loss="sse")


def test_gradient_norm_breakpoints_catch_vanishing_and_exploding() -> None:
    s = open_session(deep_sigmoid_stack(12, 1.0), dtype="float64")
    s.add_breakpoint(GradNormBreakpoint(below=1e-4))
    stop = s.continue_()
    assert stop is not None and "vanishing" in stop.reason
    assert stop.step.phase == "backward" and stop.step.index > s.n_forward
    s.breakpoints = [GradNormBreakpoint(above=1.0)]
    s.reset()
    stop = s.continue_()
    assert stop is not None and "exploding" in stop.reason
    s.reset()
    s.breakpoints = [GradNormBreakpoint(above=1e6)]
    assert s.continue_() is None


def test_events_fire_on_moves_and_trace_changes() -> None:
    s = open_session("xor")
    moves: list[int] = []
    changes: list[bool] = []
    s.cursor_moved.connect(moves.append)
    s.trace_changed.connect(lambda: changes.append(True))
    s.step()
    s.step()
    s.step_back()
    s.run_to_end()
    assert moves == [1, 2, 1, len(s.steps)]
    s.refresh()
    assert changes == [True] and s.cursor == 0


def test_forward_only_session_has_no_backward_steps() -> None:
    s = open_session("xor", loss="none")
    assert all(p.phase == "forward" for p in s.steps) and s.loss_node is None
    s.run_to_end()
    assert s.grad("W1") is None


def test_breakpoint_changes_are_announced() -> None:
    s = open_session("xor")
    changes: list[bool] = []
    s.breakpoints_changed.connect(lambda: changes.append(True))
    s.add_breakpoint("hidden_output")
    s.add_breakpoint("hidden_output")  # already there: no event
    s.break_on_nonfinite = True
    s.remove_breakpoint("hidden_output")
    s.clear_breakpoints()
    assert len(changes) == 4 and not s.breakpoints and not s.break_on_nonfinite


@pytest.mark.parametrize("name", ["xor", "attention"])
def test_node_phase_index_is_the_first_step_of_that_node_and_phase_after_every_new_trace(name: str) -> None:
    s = open_session(name, dtype="float64")
    for _ in range(2):  # the first trace, then the one set_params makes
        first: dict[tuple[str, str], int] = {}
        for step in s.steps:
            first.setdefault((step.node.name, step.phase), step.index)
        for node in s.graph.nodes:
            for phase in ("forward", "backward"):
                assert s.node_phase_index(node.name, phase) == first.get((node.name, phase))
        assert s.node_phase_index("no such node", "forward") is None
        s.set_params({k: v * 0.5 for k, v in s.params.items()})


def test_with_loss_keeps_the_data_the_parameters_and_the_breakpoints() -> None:
    from propscope.debugger import NonFiniteBreakpoint

    s = open_session("classifier", dtype="float64", seed=2)
    s.train(3, optimizer="adam", lr=0.05)
    trained = s.parameters_numpy()
    s.breakpoints.append(NonFiniteBreakpoint())
    plain, drawn = s.with_loss("none")
    assert plain.loss_node is None and not drawn and "y" not in plain.batch and plain.breakpoints == s.breakpoints
    again, drawn = s.with_loss("cross_entropy")  # the data's own class ids fit: kept
    assert not drawn and np.array_equal(again.batch["y"], s.batch["y"])
    for name, value in trained.items():
        np.testing.assert_array_equal(again.parameters_numpy()[name], value)
    again.run_to_end()
    s.run_to_end()
    assert float(again.value(again.loss_node.name)) == float(s.value(s.loss_node.name))
    other, drawn = s.with_loss("bce")  # class ids 0..2 are not probabilities of 3 outputs: a 0/1 target is drawn
    assert drawn and set(np.unique(other.batch["y"])) <= {0.0, 1.0} and other.batch["y"].shape == (90, 3)


def test_a_file_session_is_named_by_the_files_stem(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`propscope open DIR/net.propscope` and File ▸ Open name the session alike: the window's title and the default
    save and export names are `net`, not the path as typed."""
    from propscope.graph.readers import save_model

    path = tmp_path / "net.propscope"
    save_model(open_session("xor").model, path)
    assert open_session(str(path)).name == "net"
    assert open_session(path).name == "net"
    assert open_session("xor").name == "xor"


def test_a_model_output_named_y_takes_a_loss() -> None:
    """`y` is the loss's target: a model node of that name (an ONNX file's output named so, as ONNX's own examples
    name it) gives way as `y_model`, still shown as `y`; a model input of that name is refused in one line."""
    g = Graph("named_y")
    x = g.input("x", (3, 2))
    g.set_outputs(g.add("tanh", g.add("matmul", x, g.parameter("W", (2, 2)), name="h"), name="y"))
    model = Model(g, {"W": np.eye(2)}, batch={"x": np.arange(6.0).reshape(3, 2)})
    s = open_session(model, loss="mse", data={"x": model.batch["x"], "y": np.zeros((3, 2))}, dtype="float64")
    s.run_to_end()
    assert s.prediction_node.name == "y_model" and s.prediction_node.meta["returns"] == "y"
    np.testing.assert_allclose(s.value("loss"), np.mean(np.tanh(model.batch["x"]) ** 2))
    assert model.graph["y"].meta.get("returns") is None  # the model's own graph is left as it was
    g3 = Graph("parameter_y")  # an ONNX initializer named y: its value is keyed by that name too
    x3 = g3.input("x", (3, 2))
    g3.set_outputs(g3.add("matmul", x3, g3.parameter("y", (2, 2)), name="out"))
    weights = Model(g3, {"y": 2 * np.eye(2)}, batch={"x": model.batch["x"]})
    s3 = open_session(weights, loss="mse", data={"x": weights.batch["x"], "y": np.zeros((3, 2))}, dtype="float64")
    s3.run_to_end()
    assert [p.name for p in s3.graph.parameters] == ["y_model"] and s3.graph["y_model"].meta["returns"] == "y"
    np.testing.assert_allclose(s3.grad("y_model"), 2 * weights.batch["x"].T @ (2 * weights.batch["x"]) / 6)
    assert s3.train(epochs=2, optimizer="sgd", lr=0.01).loss[-1] < s3.history.loss[0]
    g2 = Graph("input_y")  # an input named y gives way as well: the data names it y_model beside the target y
    y_in = g2.input("y", (3, 2))
    g2.set_outputs(g2.add("tanh", y_in, name="out"))
    s2 = open_session(Model(g2, {}, batch={"y": np.full((3, 2), 0.5)}), loss="mse",
                      data={"y_model": np.full((3, 2), 0.5), "y": np.zeros((3, 2))}, dtype="float64")
    assert s2.graph["y_model"].meta["returns"] == "y"
    s2.run_to_end()
    assert float(s2.value(s2.loss_node.name)) == pytest.approx(np.tanh(0.5) ** 2)


"""'Explain this gradient': the paths from one element to the loss sum to the computed gradient."""

from __future__ import annotations

import io

import numpy as np
import pytest

import propscope.debugger.explain as explain_module
from propscope.backends import get_backend
from propscope.debugger import open_session
from propscope.debugger.explain import ExplainError
from propscope.debugger.repl import DebuggerShell
from propscope.debugger.session import Session
from propscope.graph import EXAMPLES
from propscope.graph.ir import Graph
from propscope.graph.model import Model


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_paths_sum_to_the_computed_gradient_on_every_example(name: str) -> None:
    s = open_session(name, dtype="float64")
    rng = np.random.default_rng(1)
    for param in s.graph.parameters:
        index = tuple(int(rng.integers(0, d)) for d in param.shape)
        e = s.explain(param.name, index, max_paths=50)
        assert e.total_paths >= 1
        assert e.agrees(rtol=1e-9, atol=1e-12), (param.name, index, e.path_sum, e.computed)
        assert np.isclose(sum(p.product for p in e.paths) + e.omitted_sum, e.computed, rtol=1e-9, atol=1e-12)


def test_xor_w1_has_one_path_per_sample_through_x_sigma_w2_sigma_loss() -> None:
    s = open_session("xor", dtype="float64")
    e = s.explain("W1", (0, 2))
    assert e.total_paths == 4 and e.omitted == 0
    s.run_to_end()
    x, w2 = s.value("X"), s.value("W2")
    h, out, y = s.value("hidden_output"), s.value("final_output"), s.batch["y"]
    for sample, path in enumerate(e.paths):
        assert [f.consumer for f in path.factors] == [
            "hidden_input",
            "hidden_output",
            "final_input",
            "final_output",
            "loss",
        ]
        assert all(f.element[0] == sample for f in path.factors[:-1])
        expected = [
            x[sample, 0],
            h[sample, 2] * (1 - h[sample, 2]),
            w2[2, 0],
            out[sample, 0] * (1 - out[sample, 0]),
            out[sample, 0] - y[sample, 0],
        ]
        np.testing.assert_allclose([f.value for f in path.factors], expected, rtol=1e-12)
    assert e.agrees(rtol=1e-12)


def test_long_enumerations_are_capped_and_say_how_many_were_left_out() -> None:
    s = open_session("classifier", dtype="float64")
    e = s.explain("W1", (1, 3), max_paths=5)
    assert len(e.paths) == 5 and e.total_paths == 90 * 3 and e.omitted == 265
    assert "265 more path(s)" in e.text()
    assert e.agrees(rtol=1e-9)


def test_explain_refuses_what_it_cannot_explain() -> None:
    s = open_session("xor")
    with pytest.raises(ExplainError, match="not an element"):
        s.explain("W1", (5, 0))
    with pytest.raises(ExplainError, match="needs a loss"):
        open_session("xor", loss="none").explain("W1", (0, 0))


def run_shell(target: str, commands: str) -> str:
    out = io.StringIO()
    shell = DebuggerShell(open_session(target, dtype="float64"), stdin=io.StringIO(commands), stdout=out)
    shell.cmdloop()
    return out.getvalue()


def test_terminal_debugger_steps_breaks_prints_and_explains() -> None:
    text = run_shell(
        "xor",
        "step 6\nback\nbreak hidden_output backward\ncontinue\ngrad W2\nprint final_output\nexplain W1 0 2\n"
        "list\nbogus\nprint nope\nquit\n",
    )
    assert "backward 6/10 · sse loss" in text and "forward 5/10 · sse loss" in text
    assert "stopped at step 9: breakpoint on backward hidden_output" in text
    assert "∂L/∂W2 = shape (4, 1)" in text
    assert "4 path(s) to the loss" in text and "equals the computed gradient" in text
    assert "->●" in text and "unknown command 'bogus'" in text
    assert "has no node named 'nope'" in text


def test_terminal_debugger_breaks_on_nan() -> None:
    s = open_session(
        "xor",
        dtype="float64",
        data={"X": np.array([[0, 0], [0, np.nan], [1, 0], [1, 1.0]]), "y": np.array([[0], [1], [1], [0.0]])},
    )
    out = io.StringIO()
    DebuggerShell(s, stdin=io.StringIO("break nan\ncontinue\nquit\n"), stdout=out).cmdloop()
    assert "non-finite value (NaN or Inf) produced by linear hidden_input" in out.getvalue()


def conv_net(channels: int = 2, size: int = 6, pool: bool = True) -> Session:
    """x → conv 3×3 (padding 1) → ReLU → [2×2 max-pool] → flatten → linear → cross-entropy, float64."""
    rng = np.random.default_rng(0)
    g = Graph("conv_net")
    x = g.input("x", (2, channels, size, size))
    w = g.parameter("conv.weight", (channels, channels, 3, 3), module="conv")
    h = g.add("relu", g.add("conv2d", x, w, name="conv", attrs={"padding": 1}, module="conv"), name="act")
    if pool:
        h = g.add("max_pool2d", h, name="pool", attrs={"kernel_size": 2})
    flat = g.add("flatten", h, name="flatten")
    fc = g.parameter("fc.weight", (int(np.prod(flat.shape[1:])), 3), module="fc")
    g.set_outputs(g.add("matmul", flat, fc, name="fc", module="fc"))
    arrays = {"conv.weight": rng.standard_normal(w.shape) / 3, "fc.weight": rng.standard_normal(fc.shape) / 3}
    data = {"x": rng.standard_normal(x.shape), "y": rng.integers(0, 3, 2)}
    return Session(Model(g, arrays), get_backend("numpy", "float64"), data, "cross_entropy")


@pytest.mark.parametrize("pool", [False, True])
def test_column_by_column_gives_what_the_whole_jacobians_give(monkeypatch: pytest.MonkeyPatch, pool: bool) -> None:
    """Every op's Jacobian too large to build (as a big convolution's is): each column from the forward pass and
    a VJP per output reached; the same paths (through max pooling, also the window's other elements, with product
    0) and the same sum, equal to the computed gradient."""
    whole = [conv_net(pool=pool).explain("conv.weight", (1, 0, i, i), max_paths=10_000) for i in range(3)]
    monkeypatch.setattr(explain_module, "MAX_JACOBIAN_ELEMENTS", 0)
    for i, dense in enumerate(whole):
        e = conv_net(pool=pool).explain("conv.weight", (1, 0, i, i), max_paths=10_000)
        assert e.agrees(rtol=1e-12, atol=1e-15) and e.path_sum == pytest.approx(dense.path_sum, rel=1e-12, abs=1e-15)
        by_hops = {tuple((f.consumer, f.element) for f in p.factors): p.product for p in e.paths}
        assert all(by_hops[tuple((f.consumer, f.element) for f in p.factors)] == pytest.approx(p.product, abs=1e-15)
                   for p in dense.paths)
        assert (e.total_paths == dense.total_paths) if not pool else (e.total_paths >= dense.total_paths)


def test_a_convolution_too_large_for_its_whole_jacobian_is_explained_within_memory() -> None:
    """64 filters of 64×3×3 on 8×8: the conv's Jacobian against its weight would be 8,192 × 36,864 float64 (2.4
    GB); one element's paths take a column of it, in well under 100 MB."""
    import tracemalloc

    s = conv_net(channels=64, size=8, pool=False)
    s.run_to_end()
    tracemalloc.start()
    try:
        e = s.explain("conv.weight", (5, 7, 1, 1), max_paths=20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.agrees(rtol=1e-9) and e.total_paths > 20 and e.omitted > 0
    assert peak < 100e6, peak


def test_explain_refuses_in_one_sentence_when_it_would_take_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(explain_module, "EXPLAIN_SECONDS", 0.0)
    with pytest.raises(ExplainError, match=r"explaining conv.weight\[0, 0, 1, 1\] took longer than 0 s") as info:
        conv_net().explain("conv.weight", (0, 0, 1, 1))
    assert "\n" not in str(info.value) and "nearer the loss" in str(info.value)
    out = io.StringIO()
    DebuggerShell(conv_net(), stdin=io.StringIO("explain conv.weight 0 0 1 1\nquit\n"), stdout=out).cmdloop()
    assert "*** explaining conv.weight[0, 0, 1, 1] took longer than 0 s" in out.getvalue()

"""What the GUI writes (no Qt): numbers, summaries, and the chain-rule text against the session's arrays."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import propscope
from propscope.debugger import BackwardStep
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.gui.format import (
    as_matrix,
    cell_index,
    fit_index,
    fmt_num,
    fmt_shape,
    histogram,
    matrix_cell,
    stats,
)
from propscope.gui.inspect.chain_text import chain_rule_html

COLORS = {"text": "#000", "muted": "#555", "gradient": "#d40", "forward": "#14e", "breakpoint": "#e00"}


def fanout_model() -> Model:
    """h feeds two ops, so its gradient is the sum of two contributions."""
    g = Graph("fanout")
    x = g.input("x", (2, 3))
    w, b = g.parameter("W", (3, 3)), g.parameter("b", (3,))
    h = g.add("tanh", g.add("linear", x, w, b, name="z"), name="h")
    g.set_outputs(g.add("add", g.add("sigmoid", h, name="u"), g.add("relu", h, name="v"), name="out"))
    rng = np.random.default_rng(3)
    return Model(g, {"W": rng.standard_normal((3, 3)), "b": np.full(3, 0.1)},
                 batch={"x": rng.standard_normal((2, 3)), "y": np.zeros((2, 3))}, loss="mse")


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub("<[^>]+>", " ", html).replace("&nbsp;", " "))


def test_numbers_read_well():
    assert fmt_num(0.123456) == "0.1235"
    assert fmt_num(-2.5) == "−2.5"
    assert fmt_num(1e-7) == "1e−7"
    assert fmt_num(float("nan")) == "NaN"
    assert fmt_num(-math.inf) == "−∞"
    assert fmt_num(0.0) == "0"
    assert fmt_shape(()) == "scalar"
    assert fmt_shape((4, 2)) == "4×2"


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4)])
def test_matrix_cells_round_trip(shape):
    a = np.arange(int(np.prod(shape))).reshape(shape)
    m = as_matrix(a)
    for index in np.ndindex(*shape) if shape else [()]:
        r, c = matrix_cell(index, shape)
        assert m[r, c] == a[index]
        assert cell_index(r, c, shape) == index


def test_fit_index():
    assert fit_index((3, 9), (4, 4)) == (3, 3)
    assert fit_index(None, (2, 2)) == (0, 0)
    assert fit_index((1, 2), (4,)) == (2,)
    assert fit_index((1,), ()) == ()


def test_stats_count_non_finite_and_skip_them():
    st = stats(np.array([1.0, np.nan, 3.0, np.inf]))
    assert (st.min, st.max, st.mean, st.nonfinite) == (1.0, 3.0, 2.0, 2)
    assert "non-finite 2" in st.text()
    counts, edges = histogram(np.array([1.0, 1.0, 2.0, np.nan]))
    assert counts.sum() == 3 and edges.size == counts.size + 1
    counts, _ = histogram(np.full(4, 7.0))
    assert counts.sum() == 4


def test_chain_rule_text_has_the_sessions_numbers_at_every_xor_step():
    s = propscope.open_session("xor")
    assert "Press Step" in text(chain_rule_html(s, None, None, COLORS))
    for k in range(1, len(s.steps) + 1):
        s.seek(k)
        record = s.current
        node = record.node.name
        index = (1, 0) if len(record.node.shape) == 2 else ()
        t = text(chain_rule_html(s, node, index, COLORS))
        assert f"{record.phase} {k}/{len(s.steps)}" in t
        if isinstance(record, BackwardStep):
            partials = record.partials()
            for term in record.terms:
                contribution = np.asarray(term.contribution)
                at = fit_index(index, contribution.shape) if record.node.op.elementwise else (0,) * contribution.ndim
                assert fmt_num(contribution[at], 5) in t
                assert term.formula in t
                if partials is not None and record.node.op.elementwise:
                    # upstream × local = contribution, each number as the session holds it
                    up = np.asarray(record.upstream)[fit_index(index, np.shape(record.upstream))]
                    local = np.asarray(partials[term.position])[at]
                    assert f"{fmt_num(up, 5)} × {fmt_num(local, 5)} = {fmt_num(contribution[at], 5)}" in t
        else:
            assert fmt_num(np.asarray(s.value(node))[fit_index(index, record.node.shape)], 5) in t


def test_running_sum_where_gradients_add_up():
    s = propscope.open_session(fanout_model())
    firsts, seconds = [], []
    for k in range(1, len(s.steps) + 1):
        s.seek(k)
        for term in getattr(s.current, "terms", ()):
            if term.input.name == "h":
                t = text(chain_rule_html(s, "h", (1, 2), COLORS))
                (firsts if term.arrival == 1 else seconds).append((t, term))
    assert len(firsts) == 1 and len(seconds) == 1
    t, _term = firsts[0]
    assert "contribution 1 of 2" in t and "1 more to come" in t
    t, term = seconds[0]
    before, contribution, total = (np.asarray(v)[1, 2] for v in (term.total_before, term.contribution, term.total))
    assert f"contribution 2 of 2: ∂L/∂h = {fmt_num(before, 5)} + {fmt_num(contribution, 5)} = {fmt_num(total, 5)}" in t
    assert "complete" in t
    np.testing.assert_allclose(total, np.asarray(s.grad("h"))[1, 2])

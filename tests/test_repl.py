"""`propscope debug` (debugger/repl.py): what its summaries of a tensor say, above all about NaN and infinite
entries, which min/max/mean alone would hide."""

from __future__ import annotations

import io

import numpy as np

from propscope.backends import get_backend
from propscope.debugger.repl import DebuggerShell, fmt_array
from propscope.debugger.session import Session
from propscope.graph.ir import Graph
from propscope.graph.model import Model


def nan_weight_session() -> Session:
    """A linear layer of 16×8 weights, one of them NaN, then a head: the NaN's row of outputs goes NaN."""
    rng = np.random.default_rng(0)
    g = Graph("nan_weight")
    x = g.input("x", (4, 16))
    w, head = g.parameter("fc.weight", (16, 8), module="fc"), g.parameter("head.weight", (8, 2), module="head")
    fc = g.add("matmul", x, w, name="fc", module="fc")
    g.set_outputs(g.add("matmul", fc, head, name="head", module="head"))
    weight = rng.standard_normal((16, 8))
    weight[3, 5] = np.nan
    arrays = {"fc.weight": weight, "head.weight": rng.standard_normal((8, 2))}
    data = {"x": rng.standard_normal((4, 16)), "y": rng.standard_normal((4, 2))}
    return Session(Model(g, arrays), get_backend("numpy", "float64"), data, "mse")


def test_print_says_first_how_many_entries_are_nan_and_gives_the_finite_entries_statistics() -> None:
    out = io.StringIO()
    commands = "break nan\ncontinue\nprint fc\nprint fc.weight\nquit\n"
    DebuggerShell(nan_weight_session(), stdin=io.StringIO(commands), stdout=out).cmdloop()
    text = out.getvalue()
    assert "produced by matmul fc" in text
    weight = next(line for line in text.splitlines() if "fc.weight = " in line)
    assert weight.split("fc.weight = ")[1].startswith(
        "shape (16, 8) float64  NOT FINITE: 1 NaN of 128  finite entries: min "
    )
    finite = nan_weight_session().parameters_numpy()["fc.weight"]
    finite = finite[np.isfinite(finite)]
    assert f"mean {finite.mean():.6g}" in weight
    value = next(line for line in text.splitlines() if line.startswith("(propscope nan_weight) fc = "))
    assert "NOT FINITE: 4 NaN of 32" in value  # the NaN weight's column, on every sample


def test_the_counts_name_each_kind_and_a_clean_tensor_says_nothing_of_them() -> None:
    big = np.zeros(1000, dtype=np.float32)
    big[:3], big[3], big[4:6] = np.nan, np.inf, -np.inf
    text = fmt_array(big)
    assert "NOT FINITE: 3 NaN, 1 +inf, 2 -inf of 1,000  finite entries: min 0  max 0  mean 0" in text
    assert fmt_array(np.full(100, np.nan)).endswith("NOT FINITE: 100 NaN of 100  (no finite entry)")
    assert fmt_array(np.arange(100.0)) == "shape (100,) float64  min 0  max 99  mean 49.5"
    small = fmt_array(np.array([1.0, np.nan]))  # printed in full, counted all the same
    assert small.startswith("shape (2,) float64  NOT FINITE: 1 NaN of 2\n") and "nan" in small
    assert "NOT FINITE" not in fmt_array(np.arange(100))  # integers are always finite

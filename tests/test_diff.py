"""Diffs on the graph: a model against itself, against a copy with one weight changed, across structure and epochs."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import propscope
from propscope.cli import main
from propscope.debugger.diff import ONLY_A, ONLY_B, SAME, diff, diff_backends, match_nodes, relative_change
from propscope.graph.examples import load_example
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.graph.readers.native import save


def changed_copy(tmp_path: Path, name: str = "xor", param: str = "W1", index: tuple[int, ...] = (0, 1),
                 delta: float = 0.25) -> Path:
    model = load_example(name)
    arrays = {k: np.array(v) for k, v in model.arrays.items()}
    arrays[param][index] += delta
    return save(dataclasses.replace(model, arrays=arrays), tmp_path / f"{name}-changed.propscope")


def downstream(model: Model, param: str) -> set[str]:
    return {param} | nx.descendants(model.graph.to_networkx(), param)


def test_relative_change() -> None:
    a = np.array([3.0, 4.0])
    assert relative_change(a, a.copy()) == 0.0
    assert relative_change(a, np.zeros(2)) == 1.0
    assert relative_change(a, a + np.array([0.0, 5.0])) == pytest.approx(5 / np.linalg.norm([3, 9]))
    assert relative_change(np.zeros(2), np.zeros(2)) == 0.0
    assert relative_change(np.array([np.nan]), np.array([np.nan])) == 0.0
    assert math.isnan(relative_change(a, np.array([3.0, np.nan])))  # no number: a NaN, not a change of inf
    assert math.isnan(relative_change(a, np.array([np.inf, 4.0])))
    assert relative_change(a, np.zeros(3)) == math.inf
    assert math.isnan(relative_change(a, None))


@pytest.mark.parametrize("name", ["xor", "classifier"])
def test_a_model_against_itself_is_zero_everywhere(name: str) -> None:
    result = diff(name, name, trace=True)
    assert result.rows and all(r.status == SAME for r in result.rows)
    for r in result.rows:
        for kind in ("params", "values", "grads"):
            assert r.change(kind) == 0 or math.isnan(r.change(kind)), (r.name, kind)
    assert result.changed("params") == [] and result.changed("values") == [] and result.changed("grads") == []


def test_one_changed_weight_is_reported_exactly_and_its_downstream_nodes_with_trace(tmp_path: Path) -> None:
    path = changed_copy(tmp_path, "classifier", "W2", (3, 1))
    result = diff("classifier", path, trace=True)
    assert [r.name for r in result.changed("params")] == ["W2"]
    w2 = result.row("W2")
    assert w2.param_max_abs == pytest.approx(0.25)
    assert w2.param_change == pytest.approx(0.25 / max(np.linalg.norm(v) for v in result.pair("W2", "params")))
    values_changed = {r.name for r in result.changed("values")}
    assert values_changed == downstream(load_example("classifier"), "W2")
    assert {r.name for r in result.changed("grads")} >= {"W1", "b1", "W2"}


def test_cli_diff_of_a_model_against_itself_and_a_changed_copy(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    same = save(load_example("xor"), tmp_path / "xor.propscope")
    assert main(["diff", str(same), "xor", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["nodes"]
    assert all(r["param_change"] == 0 for r in rows if r["is_parameter"])
    changed = changed_copy(tmp_path)
    assert main(["diff", "xor", str(changed)]) == 0
    out = capsys.readouterr().out
    assert "1 changed" in out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert lines["W1"].split()[2] != "0" and "changed" in lines["W1"]
    assert all(lines[p].split()[2] == "0" for p in ("b1", "W2", "b2"))
    assert main(["diff", "xor", str(changed), "--trace", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["nodes"]
    moved = {r["name"] for r in rows if r["value_change"]}
    assert moved == downstream(load_example("xor"), "W1")


def test_a_weight_gone_nan_is_named_not_finite_with_its_count_not_a_change_of_inf(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nan = changed_copy(tmp_path, "xor", "W2", (1, 0), delta=np.nan)
    result = diff("xor", nan)
    w2 = result.row("W2")
    assert w2.status == "not finite (B: 1 NaN)" and w2.nonfinite == {"params": "B: 1 NaN"}
    assert math.isnan(w2.param_change) and math.isnan(w2.change("params")) and w2.moved("params") == math.inf
    assert [r.name for r in result.changed("params")] == ["W2"] and result.ranked("params")[0].name == "W2"
    assert result.by_node("params")["W2"] == math.inf  # coloured as the largest change there is
    assert diff(nan, nan).row("W2").status == SAME  # the same NaN on both sides is no change
    assert main(["diff", "xor", str(nan)]) == 0
    out = capsys.readouterr().out
    assert "1 changed" in out and "inf" not in out
    line = next(line for line in out.splitlines() if line.split()[0] == "W2")
    assert line.split()[2] == "-" and line.endswith("not finite (B: 1 NaN)")
    assert main(["diff", "xor", str(nan), "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["nodes"] if r["name"] == "W2")
    assert row["param_change"] is None and row["nonfinite"] == {"params": "B: 1 NaN"}
    traced = diff(nan, "xor", trace=True)  # its value and gradient run NaN downstream, said per kind
    assert traced.row("W2").status == "not finite (A: 1 NaN; gradient A: 4 NaN)"
    assert traced.row("final_output").status.startswith("not finite (value A: 4 NaN")


def test_cli_diff_runs_headless_and_says_a_missing_epoch_in_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run.propscope"
    assert main(["train", "xor", "--epochs", "50", "--snapshots", "5", "--out", str(run)]) == 0
    code = ("import sys; from propscope.cli import main; r = main(sys.argv[1:]); "
            "assert not {'PySide6', 'torch', 'pandas'} & set(sys.modules), sorted(sys.modules); sys.exit(r)")
    done = subprocess.run([sys.executable, "-c", code, "diff", f"{run}@0", f"{run}@50", "--trace"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{run}@0 vs {run}@50: 4 parameters, 4 changed" in done.stdout
    done = subprocess.run([sys.executable, "-m", "propscope.cli", "diff", f"{run}@7", "xor"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "epoch 7 was not recorded; the nearest recorded epochs are" in done.stderr


def test_graphs_that_differ_in_structure_match_by_name_and_module_path() -> None:
    a, b = Graph("a"), Graph("b")
    for g, hidden in ((a, "h"), (b, "hidden_act")):
        x = g.input("x", (4, 2))
        w = g.parameter("W", (2, 3), module="layer1")
        z = g.add("matmul", x, w, name="z" if g is a else "proj", module="layer1")
        h = g.add("relu", z, name=hidden, module="layer1")
        if g is b:
            h = g.add("sigmoid", h, name="extra", module="layer2")
        g.set_outputs(h)
    pairs = [(x.name if x else None, y.name if y else None) for x, y in match_nodes(a, b)]
    assert pairs == [("x", "x"), ("W", "W"), ("z", "proj"), ("h", "hidden_act"), (None, "extra")]
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3))
    ma = Model(a, {"W": w}, batch={"x": rng.standard_normal((4, 2))})
    mb = Model(b, {"W": w.copy()})
    result = diff(ma, mb, trace=True)
    assert result.row("extra").status == ONLY_B
    assert result.row("z").name_b == "proj" and result.row("z").value_change == 0
    assert [r.name for r in result.changed("params")] == []
    back = diff(mb, ma)
    assert back.row("extra").status == ONLY_A


def test_two_epochs_of_a_run_and_the_notebook_table() -> None:
    s = propscope.open_session("xor", dtype="float64")
    s.train(40, snapshots=10)
    result = diff((s, 0), (s, 40))
    assert result.label_a.endswith("@0") and {r.name for r in result.changed("params")} == {"W1", "b1", "W2", "b2"}
    same = diff((s, 40), s)  # the session stands on epoch 40 after training
    assert same.changed("params") == []
    table = propscope.diff((s, 0), (s, 40))
    pandas = pytest.importorskip("pandas") if "pandas" in sys.modules or _has_pandas() else None
    if pandas is not None:
        assert isinstance(table, pandas.DataFrame)
        assert set(table.loc[table.is_parameter, "name"]) == {"W1", "b1", "W2", "b2"}
    else:
        assert isinstance(table, list) and {r["name"] for r in table if r["is_parameter"]} == {"W1", "b1", "W2", "b2"}


def _has_pandas() -> bool:
    import importlib.util

    return importlib.util.find_spec("pandas") is not None


def test_two_backends_as_a_diff() -> None:
    pytest.importorskip("torch")
    from propscope.backends import get_backend

    s = propscope.open_session("xor", dtype="float64")
    result = diff_backends(s, get_backend("torch", "float64"))
    assert result.traced and max(r.change("values") for r in result.rows) < 1e-12
    assert max(r.change("grads") for r in result.rows if not math.isnan(r.grad_change)) < 1e-12


def test_import_propscope_loads_no_pandas() -> None:
    code = "import propscope, sys; print(sorted({'pandas', 'torch', 'PySide6', 'onnx'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]"

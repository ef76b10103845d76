"""Dead and saturated units (debugger/unit_health.py, `propscope grads --units`, `flow units`, propscope.grads):
every activation function's output after the forward pass, the shares computed from the values the trace holds
and checked against NumPy's own computation of the same layer."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import propscope
from propscope.backends import get_backend
from propscope.cli import main
from propscope.debugger.repl import DebuggerShell
from propscope.debugger.session import Session
from propscope.debugger.unit_health import FLAGGED_SHARE, unit_health
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.graph.readers import save_model

WIDTH, CLASSES = 16, 3


def mlp(activations: list[tuple[str, dict[str, Any]]], bias: list[float], batch: int = 32, scale: float = 1.0,
        seed: int = 0) -> Model:
    """Layers `layer{i}`: a linear map with weights of `scale`/√width and every bias `bias[i]`, then an activation;
    a linear head."""
    rng = np.random.default_rng(seed)
    g = Graph("units")
    h = g.input("x", (batch, WIDTH))
    arrays: dict[str, np.ndarray] = {}
    for i, ((op, attrs), b0) in enumerate(zip(activations, bias, strict=True)):
        m = f"layer{i}"
        w, b = g.parameter(f"{m}.weight", (WIDTH, WIDTH), module=m), g.parameter(f"{m}.bias", (WIDTH,), module=m)
        arrays[w.name] = scale * rng.standard_normal((WIDTH, WIDTH)) / math.sqrt(WIDTH)
        arrays[b.name] = np.full(WIDTH, b0)
        h = g.add(op, g.add("linear", h, w, b, name=f"{m}.linear", module=m), name=f"{m}.act", module=m, attrs=attrs)
    w, b = g.parameter("head.weight", (WIDTH, CLASSES), module="head"), g.parameter("head.bias", (CLASSES,),
                                                                                    module="head")
    arrays[w.name], arrays[b.name] = rng.standard_normal((WIDTH, CLASSES)), np.zeros(CLASSES)
    g.set_outputs(g.add("linear", h, w, b, name="head.linear", module="head"))
    data = {"x": np.random.default_rng(seed + 1).standard_normal((batch, WIDTH)),
            "y": np.random.default_rng(seed + 2).integers(0, CLASSES, batch)}
    return Model(g, arrays, batch=data, loss="cross_entropy")


def session(model: Model) -> Session:
    return Session(model, get_backend("numpy", "float64"), model.batch, "cross_entropy")


def value(s: Session, name: str) -> np.ndarray:
    return np.asarray(s.backend.to_numpy(s.trace.value(name, len(s.steps))))


def test_a_relu_layer_pushed_below_zero_is_dead_and_its_share_is_numpys() -> None:
    s = session(mlp([("relu", {}), ("relu", {}), ("relu", {})], bias=[0.0, -4.0, 0.1]))
    health = unit_health(s)
    assert s.cursor == 0  # computed in the trace; the cursor stays
    assert [r.name for r in health.rows] == ["layer0.act", "layer1.act", "layer2.act"]
    assert [r.order for r in health.rows] == [1, 3, 5]  # each its forward step
    for r in health.rows:
        h = value(s, r.name)
        assert r.dead == pytest.approx(float(np.mean(np.all(h == 0, axis=0))))
        assert r.zeros == pytest.approx(float(np.mean(h == 0)))
        assert r.mean == pytest.approx(float(h.mean())) and r.std == pytest.approx(float(h.std()))
        assert math.isnan(r.saturated)  # a ReLU has no flat end above
    # layer 2 sees only zeros and its bias 0.1: alive, if the same for every sample
    assert [r.verdict for r in health.rows] == ["", "dead", ""]
    assert health.rows[1].dead == 1.0 and health.rows[0].dead < FLAGGED_SHARE and health.rows[2].zeros == 0
    assert health.summary() == "3 activation outputs, batch of 32: 1 dead (layer1)"


def test_saturated_sigmoids_and_tanhs_and_the_bounds_of_clamp() -> None:
    layers = [("sigmoid", {}), ("tanh", {}), ("clamp", {"min": -1.0, "max": 1.0}), ("clamp", {"min": 0.0, "max": 6.0}),
              ("hardsigmoid", {})]
    s = session(mlp(layers, bias=[0.0] * 5, scale=12.0))  # large weights: pre-activations of size ~12
    rows = {r.op if r.op != "clamp" else f"clamp{r.name[5]}": r for r in unit_health(s).rows}
    h = {k: value(s, r.name) for k, r in rows.items()}
    assert rows["sigmoid"].saturated == pytest.approx(float(np.mean((h["sigmoid"] < 0.01) | (h["sigmoid"] > 0.99))))
    assert rows["tanh"].saturated == pytest.approx(float(np.mean(np.abs(h["tanh"]) > 0.99)))
    assert rows["clamp2"].saturated == pytest.approx(float(np.mean(np.abs(h["clamp2"]) >= 1.0)))  # hardtanh
    # ReLU6: its floor at 0 is a ReLU's (dead), only its ceiling saturates
    assert rows["clamp3"].saturated == pytest.approx(float(np.mean(h["clamp3"] >= 6.0)))
    assert rows["clamp3"].dead == pytest.approx(float(np.mean(np.all(h["clamp3"] == 0, axis=0))))
    assert math.isnan(rows["sigmoid"].dead)
    for r in rows.values():
        assert r.verdict == ("saturated" if r.saturated >= FLAGGED_SHARE else "dead" if r.dead >= FLAGGED_SHARE
                             else ""), r
    assert rows["sigmoid"].verdict == rows["tanh"].verdict == "saturated"
    gentle = unit_health(session(mlp([("sigmoid", {}), ("tanh", {})], bias=[0.0, 0.0], scale=0.5)))
    assert [r.verdict for r in gentle.rows] == ["", ""] and all(r.saturated < 0.05 for r in gentle.rows)


def test_one_sample_is_not_enough_to_call_a_unit_dead() -> None:
    s = session(mlp([("relu", {})], bias=[-0.5], batch=1))
    health = unit_health(s)
    (row,) = health.rows
    assert math.isnan(row.dead) and row.zeros > FLAGGED_SHARE and row.verdict == ""  # any ReLU layer's half is 0
    assert "dead units need 2 samples or more" in health.summary()


def test_nan_values_and_a_graph_without_activations() -> None:
    model = mlp([("relu", {})], bias=[0.0])
    model.batch["x"][0, 0] = np.nan
    (row,) = unit_health(session(model)).rows
    assert row.verdict == "not finite" and row.nonfinite == WIDTH  # one sample's whole row
    linear = Graph("linear")
    x, w = linear.input("x", (4, 2)), linear.parameter("w", (2, 3))
    linear.set_outputs(linear.add("matmul", x, w))
    plain = Session(Model(linear, {"w": np.ones((2, 3))}), get_backend("numpy", "float64"),
                    {"x": np.ones((4, 2))}, "none")
    assert unit_health(plain).rows == () and unit_health(plain).summary() == "no activation functions in this graph"


def test_the_command_line_the_debugger_and_the_notebook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "units.propscope"
    save_model(mlp([("relu", {}), ("sigmoid", {})], bias=[-4.0, 0.0]), path)
    assert main(["grads", str(path), "--units", "--strict", "--csv", str(tmp_path / "u.csv")]) == 1  # a dead layer
    out = capsys.readouterr().out
    assert "dead and saturated units after the forward pass" in out and "layer0.act" in out and " dead" in out
    assert (tmp_path / "u.csv").read_text().splitlines()[0] == \
        "module,output,op,shape,step,mean,std,zeros,dead,saturated,nonfinite,flag"
    assert main(["grads", str(path), "--units", "--flagged", "--csv", str(tmp_path / "f.csv")]) == 0
    written = (tmp_path / "f.csv").read_text().splitlines()
    assert len(written) == 2 and written[1].startswith("layer0,layer0.act,relu")  # the dead layer alone
    assert main(["grads", str(path), "--units", "--activations"]) == 2
    assert "--activations or --units, not both" in capsys.readouterr().err
    shell = DebuggerShell(propscope.open_session(str(path), dtype="float64"), stdout=io.StringIO())
    shell.onecmd("flow units flagged")
    said = shell.stdout.getvalue()  # type: ignore[attr-defined]
    assert "layer0.act" in said and "layer1.act" not in said  # the sigmoid layer is healthy: not listed
    shell.onecmd("flow units")
    assert "layer1.act" in shell.stdout.getvalue()[len(said):]  # type: ignore[attr-defined]
    shell.onecmd("flow units activations")
    assert "usage: flow [activations | units] [flagged]" in shell.stdout.getvalue()  # type: ignore[attr-defined]
    rows = propscope.grads(str(path), view="units", dtype="float64")
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else rows
    assert [r["flag"] for r in records] == ["dead", ""]
    with pytest.raises(ValueError, match="one of parameters, activations, units"):
        propscope.grads(str(path), view="neurons")

"""GUI speed, run by hand: `QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui.py`.

Targets (issue 5): one step's repaint on xor <= 16 ms; opening a synthetic 5,000-node graph with
layout and scene <= 1 s; a frame while panning that graph fitted to the view <= 33 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PySide6.QtCore import QtMsgType, qInstallMessageHandler
from PySide6.QtWidgets import QApplication

import propscope
from propscope.backends import get_backend
from propscope.debugger import Session
from propscope.graph.ir import Graph
from propscope.graph.layout import layered_layout
from propscope.graph.model import Model
from propscope.gui.main_window import MainWindow


def synthetic_model(stages: int = 50, branches: int = 20) -> Model:
    """A wide residual network: `branches` towers of linear → tanh → add(skip from the next tower)."""
    rng = np.random.default_rng(0)
    g = Graph("synthetic")
    arrays: dict[str, np.ndarray] = {}
    batch: dict[str, np.ndarray] = {}
    h = []
    for j in range(branches):
        h.append(g.input(f"x{j}", (4, 8)))
        batch[f"x{j}"] = rng.standard_normal((4, 8))
    for s in range(stages):
        new = []
        for j in range(branches):
            w, b = g.parameter(f"W{s}_{j}", (8, 8)), g.parameter(f"b{s}_{j}", (8,))
            arrays[w.name] = rng.standard_normal((8, 8)) * 0.3
            arrays[b.name] = np.zeros(8)
            z = g.add("linear", h[j], w, b, name=f"z{s}_{j}")
            a = g.add("tanh", z, name=f"a{s}_{j}")
            new.append(g.add("add", a, h[(j + 1) % branches], name=f"r{s}_{j}"))
        h = new
    out = h[0]
    for j in range(1, branches):
        out = g.add("add", out, h[j], name=f"sum{j}")
    g.set_outputs(out)
    batch["y"] = np.zeros((4, 8))
    return Model(g, arrays, batch=batch, loss="mse")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def summary(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {ms(statistics.median(times))}, p95 {ms(p95)}, max {ms(max(times))}"


def bench_step(app: QApplication) -> None:
    window = MainWindow(propscope.open_session("xor"))
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    s = window.bridge.session
    dispatched, full = [], []
    for _round in range(10):
        s.reset()
        app.processEvents()
        for _ in range(len(s.steps)):
            t = time.perf_counter()
            s.step()
            app.processEvents()  # the views' updates and the repaints they scheduled
            dispatched.append(time.perf_counter() - t)
        s.reset()
        app.processEvents()
        for _ in range(len(s.steps)):
            t = time.perf_counter()
            s.step()
            window.repaint()  # worst case: every widget of the window painted again
            full.append(time.perf_counter() - t)
    print(f"xor step + repaint (scheduled repaints): {summary(dispatched)}  [target <= 16 ms]")
    print(f"xor step + whole-window repaint:         {summary(full)}")
    window.close()


def bench_big(app: QApplication) -> None:
    model = synthetic_model()
    n = len(model.graph)
    t0 = time.perf_counter()
    session = Session(model, get_backend("numpy", "float32"), name="synthetic")
    t1 = time.perf_counter()
    layout = layered_layout(session.graph)
    t2 = time.perf_counter()
    window = MainWindow(session, layout=layout)
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    window.canvas.viewport().repaint()
    t3 = time.perf_counter()
    print(f"open {len(session.graph)}-node graph ({n} + loss): session {ms(t1 - t0)}, layout {ms(t2 - t1)}, "
          f"window + scene + first paint {ms(t3 - t2)}; total {ms(t3 - t0)}  [target <= 1000 ms]")
    canvas = window.canvas
    canvas.fit()
    app.processEvents()
    print(f"  fitted zoom {canvas.zoom() * 100:.1f}%, crossings {layout.crossings}")
    frames, scrolled = [], []
    bar = canvas.horizontalScrollBar()
    for k in range(60):
        t = time.perf_counter()
        canvas.translate(3 if k % 2 else -3, 2)  # a drag: the whole view moves
        canvas.viewport().repaint()
        frames.append(time.perf_counter() - t)
    for k in range(60):
        t = time.perf_counter()
        bar.setValue(bar.value() + (5 if k < 30 else -5))
        canvas.viewport().repaint()
        scrolled.append(time.perf_counter() - t)
    print(f"pan fitted graph, full viewport repaint: {summary(frames)}  [target <= 33 ms]")
    print(f"pan fitted graph by scrolling:           {summary(scrolled)}")
    canvas.set_zoom(0.6)
    canvas.center_on_node("z25_10")
    app.processEvents()
    zoomed = []
    for k in range(30):
        t = time.perf_counter()
        canvas.translate(3 if k % 2 else -3, 2)
        canvas.viewport().repaint()
        zoomed.append(time.perf_counter() - t)
    print(f"pan at 60% zoom (labels shown):          {summary(zoomed)}")
    t = time.perf_counter()
    session.step()
    canvas.viewport().repaint()
    print(f"one step on the big graph, with repaint:  {ms(time.perf_counter() - t)}")
    window.close()


def modular_model(stages: int = 50, branches: int = 20) -> Model:
    """The synthetic network with every stage in its own module (`stage.0` … `stage.49`), as a loaded model has."""
    plain = synthetic_model(stages, branches)
    g = Graph("modular")
    for node in plain.graph:
        name = node.name
        stage = name[1:].split("_")[0] if name[0] in "Wbzar" and name[1:2].isdigit() else None
        module = {"module": f"stage.{stage}"} if stage is not None else {}
        g.add(node.op, *(g[a.name] for a in node.inputs), name=name, attrs=node.attrs,
              shape=node.shape if node.is_leaf else None, **module)
    g.set_outputs(*(o.name for o in plain.graph.outputs))
    return Model(g, plain.arrays, batch=plain.batch, loss="mse")


def bench_folded(app: QApplication) -> None:
    """A 5,000-node model with modules: it opens folded; opening boxes relays out the shown graph."""
    from propscope.gui.canvas.folding import Folding

    model = modular_model()
    t0 = time.perf_counter()
    session = Session(model, get_backend("numpy", "float32"), name="modular")
    folding = Folding.of(session.graph)
    layout = folding.layout()
    t1 = time.perf_counter()
    window = MainWindow(session)
    window.canvas.set_layout(session.graph, layout, folding)
    window.canvas.rebuild()
    window.resize(1400, 900)
    window.show()
    app.processEvents()
    window.canvas.viewport().repaint()
    t2 = time.perf_counter()
    shown = len(window.canvas.graph_scene.names)
    print(f"open {len(session.graph)}-node modular graph folded ({shown} shown): folds + layout {ms(t1 - t0)}, "
          f"window + first paint {ms(t2 - t1)}; total {ms(t2 - t0)}  [target <= 1000 ms]")
    canvas = window.canvas
    for label in ("open the repeated block", "open everything"):
        t = time.perf_counter()
        if label == "open everything":
            canvas.fold_all(False)
        else:
            key = next(k for k in canvas.folding.closed if "#block" in k)
            canvas.toggle_fold(key)
        app.processEvents()
        canvas.viewport().repaint()
        print(f"  {label}: {ms(time.perf_counter() - t)} ({len(canvas.graph_scene.names)} shown)")
    canvas.fit()
    app.processEvents()
    frames = []
    for k in range(60):
        t = time.perf_counter()
        canvas.translate(3 if k % 2 else -3, 2)
        canvas.viewport().repaint()
        frames.append(time.perf_counter() - t)
    print(f"pan the unfolded modular graph, fitted:  {summary(frames)}  [target <= 33 ms]")
    window.close()


def main() -> int:
    qInstallMessageHandler(lambda kind, _ctx, msg: None if kind == QtMsgType.QtWarningMsg
                           and "propagateSizeHints" in msg else sys.stderr.write(msg + "\n"))
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    print(f"Qt platform: {app.platformName()}, Python {sys.version.split()[0]}")
    bench_step(app)
    bench_big(app)
    bench_folded(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())

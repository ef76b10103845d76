"""Big graphs in the real window, in-process: `QT_QPA_PLATFORM=offscreen python benchmarks/bench_big_graphs.py`.

Targets (issue 14): the canvas alone (layout, scene, first paint of a 1000×700 view) on a chain as an ONNX
file gives it (no loss) at most 0.2 s at 20,000 ops and 25 ms at 1,000 (median of three opens after a warm
one); in the whole window, at 20,000 nodes, layout + scene + first paint at most 3 s; every frame (fitted,
1:1, panning, stepping) at most 16 ms; stepping on 5,000 nodes at most 16 ms per step including the
repaint. Two shapes: a plain chain of activations (what the ONNX chains of the Netron benchmark
are) and a residual chain of modules (`blocks.K`: linear, tanh, add), which opens folded into one
box and is then unfolded (all 20,000 nodes shown) for the figures.

A frame is one synchronous `viewport().repaint()` after the move, timed with what the move itself
costs (making items, refreshing nodes); the figure is the median of several, with the worst.
`--profile` prints where the 20,000-node open spends its time.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PySide6.QtCore import QtMsgType, qInstallMessageHandler
from PySide6.QtWidgets import QApplication

from propscope.backends import get_backend
from propscope.debugger import Session
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.gui.bridge import SessionBridge
from propscope.gui.canvas import GraphView
from propscope.gui.canvas.folding import Folding
from propscope.gui.main_window import MainWindow
from propscope.gui.selection import Selection
from propscope.gui.theme import ThemeManager

OPEN_S, FRAME_MS = 3.0, 16.0
CANVAS_S = {20000: 0.2, 5000: None, 1000: 0.025}  # the canvas alone on a chain without a loss (the ONNX chains)


def activation_chain(nodes: int, loss: str | None = "mse") -> Model:
    """An input and `nodes - 1` activations in a row, as the ONNX chains (which come without a loss)."""
    g = Graph(f"chain{nodes}")
    h = g.input("x", (4, 16))
    kinds = ("relu", "tanh", "sigmoid")
    for i in range(nodes - 1):
        h = g.add(kinds[i % 3], h, name=f"op{i}")
    g.set_outputs(h)
    return Model(g, {}, batch={"x": np.ones((4, 16)), "y": np.zeros((4, 16))}, loss=loss)


def open_canvas(model: Model, times: int = 3) -> float:
    """Median seconds from nothing to the canvas alone painted once (layout, scene, first paint of a
    1000×700 view), after one warm open (Qt's first-use costs belong to the app's start, not to an open)."""
    session = Session(model, get_backend("numpy"))
    bridge, selection, themes = SessionBridge(session), Selection(), ThemeManager()
    took = []
    for _ in range(times + 1):
        start = time.perf_counter()
        view = GraphView(bridge, selection, themes)
        view.resize(1000, 700)
        view.show()
        QApplication.processEvents()
        view.viewport().repaint()
        took.append(time.perf_counter() - start)
        view.close()
        view.deleteLater()
        QApplication.processEvents()
    return statistics.median(took[1:])


def block_chain(nodes: int) -> Model:
    """About `nodes` nodes: an input, then modules of W, b, linear, tanh, add (5 nodes each)."""
    g = Graph(f"blocks{nodes}")
    h = g.input("x", (2, 4))
    arrays = {}
    for k in range(max(1, (nodes - 1) // 5)):
        m = f"blocks.{k}"
        w, b = g.parameter(f"{m}.weight", (4, 4), module=m), g.parameter(f"{m}.bias", (4,), module=m)
        arrays[w.name], arrays[b.name] = np.eye(4) * 0.5, np.zeros(4)
        z = g.add("linear", h, w, b, name=f"{m}.linear", module=m)
        a = g.add("tanh", z, name=f"{m}.tanh", module=m)
        h = g.add("add", a, h, name=f"{m}.add", module=m)
    g.set_outputs(h)
    return Model(g, arrays, batch={"x": np.ones((2, 4)), "y": np.zeros((2, 4))}, loss="mse")


def open_window(model: Model) -> tuple[MainWindow, float]:
    """The window on `model` as the app opens it (repeated modules folded), shown and painted once; the seconds
    from the session to the first paint (layout included)."""
    session = Session(model, get_backend("numpy"))
    start = time.perf_counter()
    window = MainWindow(session)
    window.resize(1400, 900)
    window.show()
    QApplication.processEvents()
    window.canvas.viewport().repaint()
    return window, time.perf_counter() - start


def unfold(window: MainWindow) -> float:
    """Open every module: layout + scene + paint of the whole graph, in seconds."""
    start = time.perf_counter()
    graph = window.bridge.session.graph
    folding = Folding.of(graph, ())
    window.canvas.set_layout(graph, folding.layout(), folding)
    window.canvas.rebuild()
    window.canvas.viewport().repaint()
    return time.perf_counter() - start


def frame_ms(window: MainWindow, move: Callable[[], object], times: int = 12) -> tuple[float, float]:
    """Median and worst milliseconds of `move` plus the repaint it causes."""
    vp = window.canvas.viewport()
    took = []
    for _ in range(times):
        start = time.perf_counter()
        move()
        vp.repaint()
        took.append((time.perf_counter() - start) * 1000)
    return statistics.median(took), max(took)


def frames(window: MainWindow) -> dict[str, tuple[float, float]]:
    canvas = window.canvas
    session = window.bridge.session
    out = {}
    canvas.fit()
    out["fitted"] = frame_ms(window, lambda: None)
    sign = [1]

    def pan() -> None:
        sign[0] = -sign[0]
        canvas.horizontalScrollBar().setValue(canvas.horizontalScrollBar().value() + 40 * sign[0])

    out["fitted, panning"] = frame_ms(window, pan)
    canvas.set_zoom(1.0)
    canvas.center_on_node(session.steps[0].node.name)
    out["1:1"] = frame_ms(window, lambda: None)
    out["1:1, panning"] = frame_ms(window, pan)
    out["1:1, stepping"] = frame_ms(window, session.step, times=30)
    canvas.fit()
    out["fitted, stepping"] = frame_ms(window, session.step, times=30)
    return out


def profile_open(model: Model) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    window, _ = open_window(model)
    unfold(window)
    profiler.disable()
    window.close()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true", help="profile opening the 20,000-node chain and stop")
    args = parser.parse_args()
    np.seterr(all="ignore")
    qInstallMessageHandler(lambda kind, _ctx, msg: kind != QtMsgType.QtDebugMsg and None)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    if args.profile:
        profile_open(activation_chain(20000))
        return 0
    ok = True
    for nodes, target in CANVAS_S.items():
        took = open_canvas(activation_chain(nodes, loss=None))
        verdict = "" if target is None else "ok" if took <= target else "SLOW"
        ok &= verdict != "SLOW"
        print(f"chain {nodes:,}, no loss: the canvas alone, layout + scene + first paint, {took * 1000:.0f} ms "
              f"{verdict}", flush=True)
    for label, model in (("chain 20,000", activation_chain(20000)), ("blocks 20,000", block_chain(20000)),
                         ("chain 5,000", activation_chain(5000)), ("blocks 5,000", block_chain(5000))):
        window, opened = open_window(model)
        big = "20,000" in label
        if window.canvas.folding_for_session().closed:
            print(f"{label}: opened folded in {opened:.2f} s", flush=True)
            opened = unfold(window)
        verdict = "ok" if not big or opened <= OPEN_S else "SLOW"
        ok &= verdict == "ok"
        print(f"{label}: layout + scene + first paint, every node shown, {opened:.2f} s {verdict if big else ''}",
              flush=True)
        for what, (median, worst) in frames(window).items():
            verdict = "ok" if median <= FRAME_MS else "SLOW"
            ok &= verdict == "ok"
            print(f"  {what:<18} median {median:5.1f} ms, worst {worst:5.1f} ms  {verdict}", flush=True)
        window.close()
        window.deleteLater()
        app.processEvents()
        gc.collect()  # the closed window's garbage, collected here and not in the next graph's first frame
    print("all within target" if ok else "some figures over target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

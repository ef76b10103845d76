"""The timeline's speed, run by hand: `QT_QPA_PLATFORM=offscreen python benchmarks/bench_timeline.py`.

Targets (issue 18):
1. Scrubbing to a recorded epoch redraws within 50 ms on xor and on the classifier: the time from
   moving the timeline to the end of the paint it causes (canvas, inspector, neuron view, decision
   boundary, the plots' epoch marker), every recorded epoch visited once, in a shown 1400×900 window.
2. The app stays responsive while recording during training: the longest wait of the event loop
   (a 1 ms timer's gaps) while the app trains the 784-128-10 MLP with 1,000 snapshots asked for is
   at most 16 ms, and no worse than training without recording. The memory the snapshots hold is
   printed beside the budget set in the dock.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before NumPy loads its BLAS
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer, QtMsgType, qInstallMessageHandler  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import propscope  # noqa: E402
from propscope.graph.ir import Graph  # noqa: E402
from propscope.graph.model import Model, TrainingDefaults  # noqa: E402
from propscope.gui.main_window import MainWindow  # noqa: E402


def quiet(mode: QtMsgType, context: object, message: str) -> None:
    if "propagateSizeHints" not in message:
        print(message)


def window_on(session: propscope.Session) -> MainWindow:
    w = MainWindow(session)
    w.resize(1400, 900)
    w.show()
    w.training_dock.raise_()
    return w


def bench_scrub(app: QApplication, name: str, epochs: int, snapshots: int) -> list[float]:
    s = propscope.open_session(name)
    s.train(epochs, snapshots=snapshots)
    w = window_on(s)
    s.seek(s.n_forward + 1)  # a backward step shown, so the chain rule and gradients redraw too
    app.processEvents()
    bar = w.timeline
    times, cpu = [], []
    for i in range(len(bar.epochs)):
        t, c = time.perf_counter(), time.thread_time()
        bar.show_index(i)
        app.processEvents()  # the paints it causes
        times.append(1000 * (time.perf_counter() - t))
        cpu.append(1000 * (time.thread_time() - c))
    # the GUI thread's own CPU time beside the wall time: on a shared machine the wall time also counts waiting
    print(f"scrub {name} ({len(bar.epochs)} epochs of {epochs}): wall median {statistics.median(times):.1f} ms, "
          f"worst {max(times):.1f} ms; GUI thread CPU median {statistics.median(cpu):.1f} ms, worst {max(cpu):.1f} ms "
          f"(target <= 50 ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    w.close()
    return times


def mlp_784_128_10(n: int = 64) -> Model:
    rng = np.random.default_rng(0)
    g = Graph("mlp-784-128-10")
    x = g.input("x", (n, 784))
    w1, b1 = g.parameter("W1", (784, 128), module="hidden"), g.parameter("b1", (128,), module="hidden")
    w2, b2 = g.parameter("W2", (128, 10), module="out"), g.parameter("b2", (10,), module="out")
    h = g.add("relu", g.add("linear", x, w1, b1, name="z1", module="hidden"), name="h", module="hidden")
    g.set_outputs(g.add("linear", h, w2, b2, name="logits", module="out"))
    arrays = {"W1": rng.standard_normal((784, 128)) * 0.05, "b1": np.zeros(128),
              "W2": rng.standard_normal((128, 10)) * 0.1, "b2": np.zeros(10)}
    batch = {"x": rng.standard_normal((n, 784)), "y": rng.integers(0, 10, n).astype(np.float64)}
    return Model(g, arrays, batch=batch, loss="cross_entropy", training=TrainingDefaults("sgd", 0.01, 1000))


def longest_waits(app: QApplication, w: MainWindow, epochs: int, record: bool) -> tuple[list[float], float]:
    """The event loop's gaps (ms) while the app trains `epochs` epochs; and the seconds it took."""
    panel = w.training
    panel.runner.reset()
    panel.snapshot_controls.record.setChecked(record)
    panel.snapshot_controls.count.setValue(1000)
    gaps: list[float] = []
    clock = QElapsedTimer()
    ticker = QTimer()
    ticker.setInterval(1)

    def tick() -> None:
        gaps.append(clock.nsecsElapsed() / 1e6)
        clock.restart()

    ticker.timeout.connect(tick)
    loop = QEventLoop()
    done = panel.runner.stateChanged.connect(lambda state: state in ("finished", "failed") and loop.quit())
    start = time.perf_counter()
    clock.start()
    ticker.start()
    panel.start(epochs)
    loop.exec()
    ticker.stop()
    panel.runner.stateChanged.disconnect(done)
    app.processEvents()
    return gaps[1:], time.perf_counter() - start


def bench_recording(app: QApplication, epochs: int) -> None:
    w = window_on(propscope.open_session(mlp_784_128_10(), dtype="float64"))
    app.processEvents()
    for record in (False, True, False, True):
        gaps, seconds = longest_waits(app, w, epochs, record)
        snaps = w.bridge.session.snapshots
        held = f", {len(snaps)} snapshots, {snaps.nbytes / 2**20:.0f} MiB of " \
               f"{w.training.snapshot_controls.budget.value()} MiB" if record and snaps else ""
        over = sum(g > 16 for g in gaps)
        print(f"training 784-128-10 {epochs} epochs, recording {'on ' if record else 'off'}: {seconds:.1f} s, "
              f"event loop gaps p99 {np.percentile(gaps, 99):.1f} ms, worst {max(gaps):.1f} ms, "
              f"{over} over 16 ms{held}")
    w.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000, help="epochs trained before scrubbing (default 2000)")
    parser.add_argument("--snapshots", type=int, default=100, help="snapshots recorded (default 100)")
    parser.add_argument("--mlp-epochs", type=int, default=1000, help="784-128-10 epochs while recording")
    args = parser.parse_args()
    qInstallMessageHandler(quiet)
    app = QApplication.instance() or QApplication([])
    for name in ("xor", "classifier"):
        bench_scrub(app, name, args.epochs, args.snapshots)
    bench_recording(app, args.mlp_epochs)


if __name__ == "__main__":
    main()

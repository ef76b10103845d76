"""The timeline's speed, run by hand: `QT_QPA_PLATFORM=offscreen python benchmarks/bench_timeline.py`.

Targets (issue 18):
1. Scrubbing to a recorded epoch redraws within 50 ms on xor and on the classifier: the time from
   moving the timeline to the end of the paint it causes (canvas, inspector, neuron view, decision
   boundary, the plots' epoch marker), every recorded epoch visited once, in a shown 1400×900 window.
2. The app stays responsive while recording during training: the longest wait of the event loop
   (a 1 ms timer's gaps) while the app trains the 784-128-10 MLP with 1,000 snapshots asked for is
   at most 16 ms, and no worse than training without recording. The memory the snapshots hold is
   printed beside the budget set in the dock. Beside each gap count: how many of those gaps the GUI
   thread spent computing (its own CPU time over half the gap; the rest it waited, for the CPU on a
   loaded machine or for the GIL), and the GUI thread's CPU time per second of training.

Run one part with --only scrub or --only recording; the load average is printed with each line
(the figures are wall times, and other work on the machine lengthens them).
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
    # the GUI thread's own CPU time beside the wall time: on a shared machine the wall time also counts waiting.
    # The first scrub also makes the plots that show an epoch for the first time (importing pyqtgraph): said apart.
    first, times, cpu = times[0], times[1:], cpu[1:]
    print(f"scrub {name} ({len(bar.epochs)} epochs of {epochs}): wall median {statistics.median(times):.1f} ms, "
          f"worst {max(times):.1f} ms; GUI thread CPU median {statistics.median(cpu):.1f} ms, worst {max(cpu):.1f} ms; "
          f"the first scrub {first:.0f} ms (target <= 50 ms; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs)")
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


def longest_waits(app: QApplication, w: MainWindow, epochs: int, record: bool,
                  trace: bool = False) -> tuple[list[tuple[float, float]], float, float]:
    """The event loop's gaps while the app trains `epochs` epochs, each as (wall ms, the GUI thread's CPU ms);
    the seconds it took; the GUI thread's CPU seconds."""
    panel = w.training
    panel.runner.reset()
    panel.snapshot_controls.record.setChecked(record)
    panel.snapshot_controls.count.setValue(1000)
    panel.snapshot_controls.trace.setChecked(trace)
    gaps: list[tuple[float, float]] = []
    clock = QElapsedTimer()
    ticker = QTimer()
    ticker.setInterval(1)
    cpu = [time.thread_time()]

    def tick() -> None:
        now = time.thread_time()
        gaps.append((clock.nsecsElapsed() / 1e6, 1000 * (now - cpu[-1])))
        cpu.append(now)
        clock.restart()

    ticker.timeout.connect(tick)
    loop = QEventLoop()
    done = panel.runner.stateChanged.connect(lambda state: state in ("finished", "failed") and loop.quit())
    start, cpu_start = time.perf_counter(), time.thread_time()
    clock.start()
    cpu[0] = time.thread_time()
    ticker.start()
    panel.start(epochs)
    loop.exec()
    ticker.stop()
    cpu_seconds = time.thread_time() - cpu_start
    panel.runner.stateChanged.disconnect(done)
    app.processEvents()
    return gaps[1:], time.perf_counter() - start, cpu_seconds


def bench_recording(app: QApplication, epochs: int, rounds: int = 2, trace: bool = False) -> None:
    w = window_on(propscope.open_session(mlp_784_128_10(), dtype="float64"))
    app.processEvents()
    for record in (False, True) * rounds:
        gaps, seconds, cpu = longest_waits(app, w, epochs, record, trace and record)
        snaps = w.bridge.session.snapshots
        held = f", {len(snaps)} snapshots{' with traces' if trace else ''}, {snaps.nbytes / 2**20:.0f} MiB of " \
               f"{w.training.snapshot_controls.budget.value()} MiB" if record and snaps else ""
        walls = [g for g, _ in gaps]
        over = [(g, c) for g, c in gaps if g > 16]
        busy = sum(c > g / 2 for g, c in over)
        print(f"training 784-128-10 {epochs} epochs, recording {'on ' if record else 'off'}: {seconds:.1f} s, "
              f"event loop gaps p99 {np.percentile(walls, 99):.1f} ms, worst {max(walls):.1f} ms, "
              f"{len(over)} over 16 ms ({busy} with the GUI thread computing), GUI thread CPU "
              f"{1000 * cpu / seconds:.0f} ms/s{held} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    w.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2000, help="epochs trained before scrubbing (default 2000)")
    parser.add_argument("--snapshots", type=int, default=100, help="snapshots recorded (default 100)")
    parser.add_argument("--mlp-epochs", type=int, default=1000, help="784-128-10 epochs while recording")
    parser.add_argument("--rounds", type=int, default=2, help="training runs with recording off, then on, each round")
    parser.add_argument("--trace", action="store_true", help="record each snapshot's values and gradients too")
    parser.add_argument("--only", choices=("scrub", "recording"), help="run one part of the benchmark")
    args = parser.parse_args()
    qInstallMessageHandler(quiet)
    app = QApplication.instance() or QApplication([])
    if args.only != "recording":
        for name in ("xor", "classifier"):
            bench_scrub(app, name, args.epochs, args.snapshots)
    if args.only != "scrub":
        bench_recording(app, args.mlp_epochs, args.rounds, args.trace)


if __name__ == "__main__":
    main()

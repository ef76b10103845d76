"""Live-training speed, run by hand: `QT_QPA_PLATFORM=offscreen python benchmarks/bench_gui_training.py`.

Targets (issue 6):
1. xor trained from the app's training dock (window shown, plots live) runs at most 10% slower, in
   epochs per second, than the headless trainer. Both sides train the same float32 session. The
   app records gradient norms for its gradient-health plot by default (its "Record" box), which
   the headless trainer does not, so each side is timed with and without them. Runs alternate
   and the best of several is kept, so a busy machine hurts both sides alike.
2. One refresh of the loss plot with a 1,000,000-epoch history (setData plus the paint it causes)
   takes at most 16 ms.
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
from PySide6.QtCore import QEventLoop, QtMsgType, qInstallMessageHandler  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

import propscope  # noqa: E402
from propscope.gui.main_window import MainWindow  # noqa: E402


def quiet(mode: QtMsgType, context: object, message: str) -> None:
    if "propagateSizeHints" not in message:
        print(message)


# -- 1. epochs per second --------------------------------------------------------------------------
def headless(epochs: int, grad_norms: bool) -> float:
    s = propscope.open_session("xor")
    history = s.train(epochs, grad_norms=grad_norms)
    return len(history) / history.seconds


def in_app(app: QApplication, window: MainWindow, epochs: int, grad_norms: bool) -> tuple[float, float]:
    """(epochs/s of the trainer's loop, epochs/s from pressing Play to the plots showing the end)."""
    panel = window.training
    panel.runner.reset()
    panel.health_plot.record.setChecked(grad_norms)
    loop = QEventLoop()
    done = panel.runner.stateChanged.connect(lambda state: state == "finished" and loop.quit())
    start = time.perf_counter()
    panel.start(epochs)
    loop.exec()
    app.processEvents()
    wall = time.perf_counter() - start
    panel.runner.stateChanged.disconnect(done)
    history = panel.runner.trainer.history
    return len(history) / history.seconds, len(history) / wall


def bench_rate(app: QApplication, epochs: int, rounds: int) -> None:
    window = MainWindow(propscope.open_session("xor"))
    window.resize(1400, 900)
    window.show()
    window.training_dock.raise_()
    app.processEvents()
    best: dict[str, float] = {}

    def keep(name: str, rate: float) -> None:
        best[name] = max(best.get(name, 0.0), rate)

    for _ in range(rounds):
        for norms in (False, True):
            suffix = " + norms" if norms else ""
            keep(f"headless{suffix}", headless(epochs, norms))
            loop_rate, wall_rate = in_app(app, window, epochs, norms)
            keep(f"app{suffix}", loop_rate)
            keep(f"app{suffix} (wall)", wall_rate)
    frames = window.training.budget.rate_hz
    window.close()
    base = best["headless"]
    print(f"xor, {epochs:,} epochs, float32, best of {rounds} (app: the trainer's loop; wall: Play to last frame):")
    for name, rate in best.items():
        print(f"  {name:<22} {rate:>9,.0f} epochs/s   {rate / base:5.2f}x headless")
    for suffix in ("", " + norms"):
        slower = 100 * (1 - best[f"app{suffix}"] / best[f"headless{suffix}"])
        print(f"  app{suffix} vs headless{suffix}: {slower:.1f}% slower (target <= 10%)")
    print(f"  gradient norms cost the headless trainer {100 * (1 - best['headless + norms'] / base):.1f}%; "
          f"the plots were redrawn at {frames:.0f} Hz at the end")


# -- 2. plot refresh with a million epochs ---------------------------------------------------------
class FakeHistory:
    """A History's columns, grown as a trainer grows them."""

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(0)
        self.has_test = True
        self.epoch = list(range(n))
        decay = np.exp(-np.arange(n) / (n / 8))
        self.loss = (decay + 0.01 * rng.random(n)).tolist()
        self.test_loss = (decay * 1.1 + 0.01 * rng.random(n)).tolist()
        self.grad_norms = {p: (decay * (i + 1) + 1e-3).tolist() for i, p in enumerate(("W1", "b1", "W2", "b2"))}

    def grow(self, k: int) -> None:
        n = len(self.loss)
        self.epoch.extend(range(n, n + k))
        for column in (self.loss, self.test_loss, *self.grad_norms.values()):
            column.extend([column[-1]] * k)


def bench_refresh(app: QApplication, n: int, frames: int) -> None:
    window = MainWindow(propscope.open_session("xor"))
    window.resize(1400, 900)
    window.show()
    window.training_dock.raise_()
    app.processEvents()
    panel = window.training
    log, budget = panel.runner.log, panel.budget
    history = FakeHistory(n)
    log.follow(history, 0)
    start = time.perf_counter()
    log.pull()
    first_pull = time.perf_counter() - start
    for plot, label in ((panel.loss_plot, "loss plot"), (panel.health_plot, "gradient health (4 curves)")):
        for log_scale in (True, False):
            if plot is panel.loss_plot:
                plot.log_scale.setChecked(log_scale)
            elif not log_scale:
                continue
            plot.refresh()
            app.processEvents()
            times = []
            for _ in range(frames):
                history.grow(500)  # what a fast trainer adds between two frames
                budget.painted = 0.0
                t = time.perf_counter()
                log.pull()
                plot.refresh()
                app.processEvents()  # the paint it causes
                times.append(time.perf_counter() - t)
            ms = [1000 * x for x in times]
            scale = "log" if log_scale else "linear"
            print(f"{label}, {log.n:,} points, {scale} y: median {statistics.median(ms):.1f} ms, "
                  f"worst {max(ms):.1f} ms (target <= 16 ms)")
    print(f"first copy of {n:,} epochs into the log: {1000 * first_pull:.0f} ms (once, when a plot first sees them)")
    window.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20_000, help="xor epochs per run (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs of each side (default 5)")
    parser.add_argument("--points", type=int, default=1_000_000, help="history length (default 1000000)")
    parser.add_argument("--frames", type=int, default=30, help="refreshes timed (default 30)")
    args = parser.parse_args()
    qInstallMessageHandler(quiet)
    app = QApplication.instance() or QApplication([])
    bench_rate(app, args.epochs, args.rounds)
    bench_refresh(app, args.points, args.frames)


if __name__ == "__main__":
    main()

"""Export speed, run by hand: `python benchmarks/bench_export.py` (offscreen; no display needed).

Target (issue 17): exporting xor's whole pass (11 frames) at 1280×720 takes at most 5 s. Measured three
ways: the export itself in a warm process (GIF, PNG frames, and MP4 where imageio-ffmpeg is installed),
and the whole command, `propscope export xor --out pass.gif`, from a cold start (Python, NumPy and Qt
imports included).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import propscope
from propscope.gui.app import application
from propscope.gui.export import ExportOptions, export_pass, video_available

TARGET_S = 5.0
SIZE = (1280, 720)


def timed(fn: object, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    application()
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        kinds = ["pass.gif", "frames"] + (["pass.mp4"] if video_available() else [])
        for name in kinds:
            seconds = timed(lambda name=name: export_pass(propscope.open_session("xor"), folder / name,
                                                          ExportOptions(size=SIZE)))
            ok = seconds <= TARGET_S
            failed |= not ok
            print(f"xor pass, 11 frames at 1280x720 -> {name:9s} {seconds:6.2f} s  (target <= {TARGET_S:.0f} s) "
                  f"{'ok' if ok else 'SLOW'}")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "propscope.cli", "export", "xor", "--out", str(folder / "cli.gif")],
                       check=True, capture_output=True)
        seconds = time.perf_counter() - start
        ok = seconds <= TARGET_S
        failed |= not ok
        print(f"propscope export xor --out pass.gif (cold start)   {seconds:6.2f} s  (target <= {TARGET_S:.0f} s) "
              f"{'ok' if ok else 'SLOW'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Render the README's projector-mode screenshots: xor at backward step 7, in the three rooms projector mode
is designed for. Headless (Qt renders offscreen where there is no display).

    .venv/bin/python scripts/screenshots.py            # writes assets/xor-projector-<W>x<H>.png
    .venv/bin/python scripts/screenshots.py --out DIR
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOMS = ["1024x768", "1280x720", "1920x1080"]
STEP = 7  # backward through the output sigmoid: the chain rule with its numbers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for size in ROOMS:
        path = args.out / f"xor-projector-{size}.png"
        command = [sys.executable, "-m", "propscope.cli", "open", "xor", "--projector", "--step", str(STEP),
                   "--size", size, "--screenshot", str(path)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"screenshots: {size} failed: {done.stderr.strip()}", file=sys.stderr)
            return 1
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

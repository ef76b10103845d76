"""The `propscope` console script.

Python's cyclic garbage collector is held off from the very start: importing NumPy, Qt and the app and
building the window make some 10⁵ objects that all live on, and the collector would walk them over and
over (about 40 ms of a small file's 0.5 s open, in some 120 passes). It is turned back on as soon as the
command runs (`cli.main`), or, for the app, once its window is on screen (`gui.app`); a `--screenshot`
process ends without it.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    from .cli import entry  # the package's __init__ imports nothing heavy before this line (see propscope/__init__)

    entry()

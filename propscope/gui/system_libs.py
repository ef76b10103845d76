"""The system libraries Qt needs on Linux, checked before Qt is imported (this module imports no Qt).

PySide6's wheels carry Qt but not the X11/xcb, OpenGL and font libraries beneath it. Where one is
missing Qt aborts with a page of messages (exit 134), or PySide6 fails to import; here the missing
ones are found by loading each by name, and named with the Debian/Ubuntu package that provides it.
The list is what `ldd` shows for PySide6 6.x's libQt6Gui, libQt6XcbQpa and the xcb platform plugin
on Debian 12.

`python -m propscope.gui.system_libs` prints the packages to install (one line, empty when none are
missing); `scripts/setup` uses it.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterable

# soname -> Debian/Ubuntu package. Needed by every window, on screen or offscreen:
GUI_LIBS = {
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
    "libxkbcommon.so.0": "libxkbcommon0",
}
# needed to show a window on an X11 (or XWayland) display: the xcb platform plugin
XCB_LIBS = {
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
}


def loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_packages(libs: Iterable[str] | None = None, can_load: Callable[[str], bool] | None = None) -> list[str]:
    """The packages whose libraries cannot be loaded (all of them by default), in a stable order."""
    can_load = can_load or loadable
    table = {**GUI_LIBS, **XCB_LIBS}
    wanted = table if libs is None else {name: table[name] for name in libs}
    return sorted({package for soname, package in wanted.items() if not can_load(soname)})


def install_line(packages: Iterable[str]) -> str:
    return "sudo apt-get install -y " + " ".join(packages)


def has_display(environ: os._Environ[str] | dict[str, str] | None = None) -> bool:
    """Whether a window can be shown: always off Linux; on Linux an X11 or Wayland display is set."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def choose_platform(screenshot: bool, environ: os._Environ[str] | dict[str, str] | None = None) -> str | None:
    """Set up Qt's platform before QApplication exists; returns a sentence to show when no window is possible.

    A screenshot needs no screen: without a display (and without a platform the user chose), Qt renders
    offscreen. A window without a display, or without the libraries the display needs, cannot open: the
    sentence says why, with the exact install line where libraries are missing.
    """
    env = os.environ if environ is None else environ
    chosen = env.get("QT_QPA_PLATFORM", "")
    linux = sys.platform.startswith("linux")
    needs_xcb = linux and chosen in ("", "xcb") and not env.get("WAYLAND_DISPLAY")
    if screenshot and not chosen and (not has_display(env) or (needs_xcb and missing_packages(XCB_LIBS))):
        env["QT_QPA_PLATFORM"] = "offscreen"  # a picture needs no screen
        chosen, needs_xcb = "offscreen", False
    if not has_display(env) and not chosen:
        return ("no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset); run it on a desktop "
                "or with ssh -X, or render a picture with --screenshot FILE.png")
    if not linux:
        return None
    missing = missing_packages([*GUI_LIBS, *(XCB_LIBS if needs_xcb else ())])
    if missing:
        return (f"Qt needs system libraries that are missing ({', '.join(missing)}); install them with: "
                f"{install_line(missing)}")
    return None


if __name__ == "__main__":
    print(" ".join(missing_packages()))

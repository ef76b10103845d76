"""One error path: whatever goes wrong while a file is opened or traced becomes one short line.

`one_line(exc, path)` is the sentence the command line prints after `propscope: error: ` and the app
shows in its dialog: the file first, then what is wrong, at most ~200 characters, with any long
string that came from the file (an op name, a member name) shortened. `capture_warnings()` keeps
third-party warnings raised while loading (torch's pickle notes, onnx's) off the terminal.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import PropscopeError

MAX_LINE = 200
OWN_LINE = 320  # propscope's own messages, which say what to do at their end
MAX_TOKEN = 48

# Python's own errors, said as what they mean for a file being read.
_PLAIN = {
    MemoryError: "not enough memory to open it (try a smaller --max-memory budget or a smaller model)",
    RecursionError: "nested too deeply to read",
    OverflowError: "holds a number too large to use",
    UnicodeError: "holds text that is not valid UTF-8",
}
_LONG_TOKEN = re.compile(r"\S{" + str(MAX_TOKEN + 1) + ",}")


def shorten(text: str, limit: int = MAX_LINE, keep_end: bool = False) -> str:
    """One line: whitespace runs collapsed, every overlong token cut in its middle, the whole capped; with
    `keep_end`, cut in its middle instead (propscope's own messages end with what to do about it)."""
    text = " ".join(text.split())
    text = _LONG_TOKEN.sub(lambda m: m.group(0)[: MAX_TOKEN // 2] + "…" + m.group(0)[-MAX_TOKEN // 4:], text)
    if len(text) <= limit:
        return text
    if keep_end:
        tail = limit // 3
        return text[: limit - tail - 3].rstrip() + " … " + text[-tail:].lstrip()
    return text[: limit - 1].rstrip() + "…"


def one_line(exc: BaseException, path: str | None = None, limit: int = MAX_LINE) -> str:
    """`FILE: what is wrong`, in at most `limit` characters."""
    if isinstance(exc, PropscopeError):
        what = str(exc)
    else:
        plain = next((text for kind, text in _PLAIN.items() if isinstance(exc, kind)), None)
        detail = str(exc).strip()
        what = plain or f"{type(exc).__name__}{': ' + detail if detail else ''} (propscope --debug shows where)"
    what = " ".join(what.split())
    ours = isinstance(exc, PropscopeError)
    if ours:  # written to be read whole, ending with what to do: room for it beside a long path
        limit = max(limit, OWN_LINE)
    if not path:
        return shorten(what, limit, keep_end=ours)
    # the path is the user's own: kept whole (unless absurdly long); what follows it is shortened
    shown = path if len(path) <= 160 else path[:80] + "…" + path[-79:]
    for prefix in (path, shown):
        if what.startswith(prefix):
            what = what[len(prefix):].lstrip(": ")
            break
    return f"{shown}: {shorten(what, max(80, limit - len(shown) - 2), keep_end=ours)}" if what else shown


def first_line(exc: BaseException, limit: int = MAX_LINE) -> str:
    """An exception's first non-blank line (torch.export's messages go on for pages), shortened to `limit` (an
    ellipsis where it was cut); its class where it has no text."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return shorten(lines[0], limit) if lines else type(exc).__name__


# -- keeping a reading thread's output to itself -----------------------------------------------------------------
# sys.stderr, warnings.showwarning and logging's handlers are one for the whole process, and the app reads models on
# worker threads while its own thread goes on (an exception hook's report, another open): so a reading thread is
# *marked*, and hooks installed once for all (counted, under a lock) drop what a marked thread writes to stderr or
# logs through torch, and keep its warnings in its own list; every other thread's output passes as before.
_lock = threading.RLock()
_muted: dict[int, int] = {}  # thread -> depth of quiet_torch
_capturing: dict[int, tuple[int, list[warnings.WarningMessage]]] = {}  # thread -> (depth, its warnings)
_users = 0
_saved: dict[str, Any] = {}


class _MutedStderr:
    """sys.stderr for every thread: a muted thread's writes are dropped, the rest go to the stream it replaced."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return len(text) if threading.get_ident() in _muted else self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _MutedRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread not in _muted


_RECORD_FILTER = _MutedRecords()


def _show_warning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    entry = _capturing.get(threading.get_ident())
    if entry is None:
        _saved["showwarning"](message, category, filename, lineno, file, line)
    else:
        entry[1].append(warnings.WarningMessage(message, category, filename, lineno, file, line))


def _torch_handlers() -> set[logging.Handler]:
    """The handlers torch's loggers write through: torch gives each of its loggers its own, not propagating."""
    loggers = [logger for name, logger in logging.Logger.manager.loggerDict.items()
               if isinstance(logger, logging.Logger) and (name == "torch" or name.startswith("torch."))]
    return {handler for logger in [*loggers, logging.getLogger()] for handler in logger.handlers}


@contextmanager
def _hooks() -> Iterator[None]:
    """The hooks, installed by the first thread in and taken out by the last one out (left alone where someone
    replaced them meanwhile)."""
    global _users
    with _lock:
        if _users == 0:
            _saved["stderr"], _saved["showwarning"] = sys.stderr, warnings.showwarning
            _saved["filters"] = list(warnings.filters)
            sys.stderr = _MutedStderr(sys.stderr)
            warnings.showwarning = _show_warning
            # every warning reaches showwarning while a model is read: a reader's own (NumPy's log(0) of a folded
            # mask) is a note kept with the read, never an error; the filters are one for all threads, so this holds
            # for the others too until the last reader is done, when they come back as they were
            warnings.simplefilter("always")
            _saved["handlers"] = _torch_handlers()
            for handler in _saved["handlers"]:
                handler.addFilter(_RECORD_FILTER)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                if isinstance(sys.stderr, _MutedStderr):
                    sys.stderr = _saved["stderr"]
                if warnings.showwarning is _show_warning:
                    warnings.showwarning = _saved["showwarning"]
                warnings.filters = _saved["filters"]  # as catch_warnings gives them back
                warnings._filters_mutated()  # type: ignore[attr-defined]  # the module's caches of the filters
                for handler in _saved["handlers"]:
                    handler.removeFilter(_RECORD_FILTER)
                _saved.clear()


@contextmanager
def capture_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Warnings this thread raises while loading are kept in the list yielded, not printed (third-party loaders'
    notes: torch's pickle warnings, onnx's); other threads' warnings print as before."""
    ident = threading.get_ident()
    with _hooks():
        with _lock:
            depth, caught = _capturing.get(ident, (0, []))
            _capturing[ident] = (depth + 1, caught)
        try:
            yield caught
        finally:
            with _lock:
                depth, _ = _capturing[ident]
                if depth == 1:
                    del _capturing[ident]
                else:
                    _capturing[ident] = (depth - 1, caught)


@contextmanager
def quiet_torch() -> Iterator[None]:
    """torch.export, when it cannot trace, prints the partial graph to stderr and logs warnings before it raises:
    pages in a user's terminal for what one line says. This thread's are held back while it runs (its exception is
    not); other threads' output is not touched."""
    ident = threading.get_ident()
    with _hooks():
        with _lock:
            _muted[ident] = _muted.get(ident, 0) + 1
        try:
            yield
        finally:
            with _lock:
                _muted[ident] -= 1
                if not _muted[ident]:
                    del _muted[ident]


@contextmanager
def quiet_library(library: Any) -> Iterator[None]:
    """transformers' or diffusers' own progress bars and notices off while one reads a model (the app shows its own
    progress); both have the same `utils.logging`."""
    logging = library.utils.logging
    level = logging.get_verbosity()
    logging.set_verbosity_error()
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()

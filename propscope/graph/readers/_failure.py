"""One error path: whatever goes wrong while a file is opened or traced becomes one short line.

`one_line(exc, path)` is the sentence the command line prints after `propscope: error: ` and the app
shows in its dialog: the file first, then what is wrong, at most ~200 characters, with any long
string that came from the file (an op name, a member name) shortened. `capture_warnings()` keeps
third-party warnings raised while loading (torch's pickle notes, onnx's) off the terminal.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr

from ..errors import PropscopeError

MAX_LINE = 200
MAX_TOKEN = 48

# Python's own errors, said as what they mean for a file being read.
_PLAIN = {
    MemoryError: "not enough memory to open it (try a smaller --max-memory budget or a smaller model)",
    RecursionError: "nested too deeply to read",
    OverflowError: "holds a number too large to use",
    UnicodeError: "holds text that is not valid UTF-8",
}
_LONG_TOKEN = re.compile(r"\S{" + str(MAX_TOKEN + 1) + ",}")


def shorten(text: str, limit: int = MAX_LINE) -> str:
    """One line: whitespace runs collapsed, every overlong token cut in its middle, the whole capped."""
    text = " ".join(text.split())
    text = _LONG_TOKEN.sub(lambda m: m.group(0)[: MAX_TOKEN // 2] + "…" + m.group(0)[-MAX_TOKEN // 4:], text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def one_line(exc: BaseException, path: str | None = None, limit: int = MAX_LINE) -> str:
    """`FILE: what is wrong`, in at most `limit` characters."""
    if isinstance(exc, PropscopeError):
        what = str(exc)
    else:
        plain = next((text for kind, text in _PLAIN.items() if isinstance(exc, kind)), None)
        detail = str(exc).strip()
        what = plain or f"{type(exc).__name__}{': ' + detail if detail else ''} (propscope --debug shows where)"
    what = " ".join(what.split())
    if not path:
        return shorten(what, limit)
    # the path is the user's own: kept whole (unless absurdly long); what follows it is shortened
    shown = path if len(path) <= 160 else path[:80] + "…" + path[-79:]
    for prefix in (path, shown):
        if what.startswith(prefix):
            what = what[len(prefix):].lstrip(": ")
            break
    return f"{shown}: {shorten(what, max(80, limit - len(shown) - 2))}" if what else shown


def first_line(exc: BaseException, limit: int = MAX_LINE) -> str:
    """An exception's first non-blank line (torch.export's messages go on for pages), cut to `limit`; its class
    where it has no text."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


@contextmanager
def capture_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Warnings raised while loading are recorded, not printed (a reader turns the useful ones into
    `Model.warnings`); the CLI prints them only with --debug."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


@contextmanager
def quiet_torch() -> Iterator[None]:
    """torch.export, when it cannot trace, prints the partial graph to stderr and logs warnings before it raises:
    pages in a user's terminal for what one line says. Both are held back while it runs (its exception is not)."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)

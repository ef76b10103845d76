"""One memory budget per open: every allocation a file causes is counted before it is made.

Weights, strided views, folded constants, decompressed zip members and generated batches all call
`charge(nbytes, what, where)` first; the total over one `open_model` may not pass the budget, so a
712-byte file cannot ask for 8 GiB and a thousand aliases of one region cannot add up to 2 GB.
The default is half the memory the machine has available; `--max-memory` (and the app) change it.
Also here: reading a zip member in bounded chunks, its declared size charged first.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelFormatError

MIN_BUDGET = 256 * 2**20
# What reading a damaged zip member can raise, from the container to the decompressor (lzma is optional).
ZIP_ERRORS: tuple[type[BaseException], ...] = (zipfile.BadZipFile, OSError, EOFError, ValueError,
                                               NotImplementedError, RuntimeError, zlib.error)


def open_zip(path: Any, where: str, damaged: str) -> zipfile.ZipFile:
    """The zip archive at `path`, or one line: no such file, or `damaged` with zipfile's reason put in its `{}`
    (each format says what it expected: "not a torch.export archive (not a zip file: {})")."""
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ModelFormatError(f"{where}: no such file") from None
    except ZIP_ERRORS as exc:
        raise ModelFormatError(f"{where}: {damaged.format(str(exc)[:100])}") from None


try:
    import lzma

    ZIP_ERRORS += (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    pass
FALLBACK_BUDGET = 4 * 2**30  # where the machine does not say how much memory it has
CHUNK = 2**20


def available_memory() -> int | None:
    """Bytes of memory the machine can give without swapping (Linux's MemAvailable), else None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def address_space_limit() -> int | None:
    """The process's address-space limit (ulimit -v), where one is set."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, ValueError, OSError):
        return None
    return soft if soft > 0 and soft != resource.RLIM_INFINITY else None


def default_budget() -> int:
    """Half of the available memory (and of an address-space limit): the rest is for the trace, the app,
    the libraries' own mappings and everything else running."""
    available = available_memory()
    budget = max(MIN_BUDGET, available // 2) if available else FALLBACK_BUDGET
    limit = address_space_limit()
    return min(budget, max(MIN_BUDGET, limit // 2)) if limit else budget


_limit_override: int | None = None


def set_max_memory(limit: int | None) -> None:
    """The budget for every later open (None: back to the default sized from the machine)."""
    global _limit_override
    if limit is not None and limit <= 0:
        raise ValueError("the memory budget must be positive")
    _limit_override = limit


def max_memory_override() -> int | None:
    """The budget set by `set_max_memory` (`--max-memory`, the app's setting), None while it is the default."""
    return _limit_override


def current_limit() -> int:
    return _limit_override if _limit_override is not None else default_budget()


_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


def parse_size(text: str) -> int:
    """`512M`, `4G`, `1.5GiB` or plain bytes as a byte count (ValueError with a sentence otherwise)."""
    found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    unit = found.group(2).upper() if found else ""
    if not found or unit not in _UNITS:
        raise ValueError(f"a memory size such as 512M or 4G, got {text[:40]!r}")
    value = int(float(found.group(1)) * _UNITS[unit])
    if value < 1:
        raise ValueError(f"a memory size must be positive, got {text[:40]!r}")
    return value


def human(nbytes: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} bytes"


@dataclass
class MemoryBudget:
    limit: int
    used: int = 0

    def charge(self, nbytes: int, what: str, where: str) -> None:
        nbytes = max(0, int(nbytes))
        if self.used + nbytes > self.limit:
            # "(2 GiB) needs 2 GiB": a `what` that already says its size is not told it again
            needs = "would go" if human(nbytes) in what else f"needs {human(nbytes)} more,"
            used = f", {human(self.used)} of it used by this file already" if self.used else ""
            raise ModelFormatError(
                f"{where}: {what} {needs} over the memory budget of {human(self.limit)}{used}; refused "
                "(--max-memory raises the budget)"
            )
        self.used += nbytes

    def check(self, nbytes: int, what: str, where: str) -> None:
        """Refuse `nbytes` that would not fit in what is left, without counting them."""
        if self.used + max(0, int(nbytes)) > self.limit:
            self.charge(nbytes, what, where)


_active: ContextVar[MemoryBudget | None] = ContextVar("propscope_memory_budget", default=None)


@contextmanager
def memory_budget(limit: int | None = None) -> Iterator[MemoryBudget]:
    """The budget every allocation of one open counts against; an open inside an open (a state dict's
    architecture file) shares the outer one."""
    outer = _active.get()
    if outer is not None and limit is None:
        yield outer
        return
    budget = MemoryBudget(limit if limit is not None else current_limit())
    token = _active.set(budget)
    try:
        yield budget
    finally:
        _active.reset(token)


def charge(nbytes: int, what: str, where: str) -> None:
    """Count `nbytes` against the open's budget before allocating them (outside an open: this one
    allocation against a fresh budget)."""
    budget = _active.get()
    if budget is None:
        MemoryBudget(current_limit()).charge(nbytes, what, where)
    else:
        budget.charge(nbytes, what, where)


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, limit: int | None = None) -> bytes:
    """A zip member's bytes: the declared size charged first and checked against `limit`, then read in
    bounded chunks, so a member that inflates past its declared size is stopped, not trusted."""
    name = info.filename
    if limit is not None and info.file_size > limit:
        raise ModelFormatError(f"{where}: {name} claims {info.file_size} bytes, more than propscope will load")
    charge(info.file_size, f"member {name}", where)
    parts = []
    total = 0
    try:
        with zf.open(info) as fh:
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > info.file_size:
                    raise ModelFormatError(f"{where}: {name} inflates past the {info.file_size} bytes it declares")
                parts.append(chunk)
    except ZIP_ERRORS as exc:
        raise ModelFormatError(f"{where}: {name} cannot be read ({str(exc)[:100]}); the file may be damaged") from None
    if total != info.file_size:
        raise ModelFormatError(f"{where}: {name} holds {total} bytes, not the {info.file_size} it declares")
    return b"".join(parts)


def array_room(shape: Iterable[int], dtype: Any, what: str, where: str) -> None:
    """Refuse a folded constant of `shape` and `dtype` the budget has no room for, before it is made. Only
    checked: the reader charges every folded array once it exists (charging here too counted it twice)."""
    itemsize = np.dtype(dtype).itemsize if dtype is not None else 8
    (_active.get() or MemoryBudget(current_limit())).check(math.prod(int(d) for d in shape) * itemsize, what, where)


def fold_room(arrays: Iterable[Any], what: str, where: str, shape: Iterable[int] | None = None) -> None:
    """Refuse a fold of `arrays` (broadcast together, or into `shape` when given) that the budget has no room
    for, before NumPy makes it: two 400 KB constants added as (n, 1) + (1, n) make 40 GB. Only checked here;
    the reader charges the folded array once it exists, so it is counted once."""
    out = tuple(np.broadcast_shapes(*(np.shape(a) for a in arrays))) if shape is None else tuple(shape)
    nbytes = math.prod(int(d) for d in out) * 8  # folds run in float64 or int64
    (_active.get() or MemoryBudget(current_limit())).check(nbytes, what, where)


def matmul_room(a: Any, b: Any, what: str, where: str) -> None:
    """fold_room for np.matmul(a, b): the batch axes broadcast, then (rows of a) × (columns of b)."""
    sa, sb = np.shape(a), np.shape(b)
    if len(sa) < 1 or len(sb) < 1:
        return  # NumPy refuses a scalar operand before allocating anything
    rows, cols = (sa[-2] if len(sa) > 1 else 1), (sb[-1] if len(sb) > 1 else 1)
    batch = np.broadcast_shapes(sa[:-2], sb[:-2])
    fold_room((), what, where, shape=(*batch, rows, cols))


def tile_room(a: Any, repeats: Iterable[int], what: str, where: str) -> None:
    """fold_room for np.tile(a, repeats)."""
    reps, shape = tuple(int(r) for r in repeats), np.shape(a)
    n = max(len(reps), len(shape))
    padded_reps, padded_shape = (1,) * (n - len(reps)) + reps, (1,) * (n - len(shape)) + tuple(shape)
    fold_room((), what, where, shape=[max(r, 0) * d for r, d in zip(padded_reps, padded_shape, strict=True)])


def range_length(start: Any, stop: Any, step: Any, what: str, where: str) -> int:
    """How many values `arange(start, stop, step)` makes, refused past one tensor's limit before it is made."""
    try:
        bounds = [float(v) for v in (start, stop, step)]
    except (TypeError, ValueError, OverflowError):  # a bound computed at run time: the op stays unsupported
        raise TypeError(f"{what} has bounds that are not numbers") from None
    if bounds[2] == 0 or not all(math.isfinite(v) for v in bounds):
        raise ValueError(f"{what} has a step of 0 or a bound that is not finite")
    count = max(0, math.ceil((bounds[1] - bounds[0]) / bounds[2]))
    if count > 2**31:
        raise ModelFormatError(f"{where}: {what} would make {count} values, more than propscope will load")
    return count

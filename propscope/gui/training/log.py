"""What the training plots show: every epoch of every run since the last Reset, in growable float64 arrays.

A trainer's `History` holds Python lists, one run at a time. Plots want arrays they can hand to
`setData` whole, many times a second, across runs (Play, Pause, Play again). Converting a
million-entry list every frame would cost more than the frame, so the log copies only the rows
added since its last look and hands out views of arrays it grows by doubling. It has no Qt in it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

START_CAPACITY = 1024


class _Column:
    """A growable array (doubling, so appends cost O(1) amortized); `view(n)` is its first n rows,
    valid until the next growth. With `log`, it also keeps log10 of every value, computed once per row:
    a log-scale plot then needs no pass over the whole history per frame."""

    def __init__(self, log: bool = True) -> None:
        self.data = np.empty(START_CAPACITY)
        self.log = np.empty(START_CAPACITY, dtype=np.float32) if log else None

    def write(self, start: int, values: Any) -> None:
        values = np.asarray(values, dtype=np.float64)
        end = start + len(values)
        if end > len(self.data):
            size = max(2 * end, 2 * len(self.data))  # room for as many rows again: no growth right after a big pull
            self.data = _grown(self.data, start, size)
            if self.log is not None:
                self.log = _grown(self.log, start, size)
        self.data[start:end] = values
        if self.log is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                np.log10(values, out=self.log[start:end], casting="same_kind")


def _grown(a: np.ndarray, used: int, size: int) -> np.ndarray:
    out = np.empty(size, dtype=a.dtype)
    out[:used] = a[:used]
    return out


class TrainingLog:
    """Epoch (x, cumulative over runs), train loss, test loss and gradient norms per parameter."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.n = 0
        self.has_test = False
        self._x = _Column(log=False)
        self._loss = _Column()
        self._test = _Column()
        self._norms: dict[str, _Column] = {}
        self._source: Any = None  # the History being followed, and how much of it is copied
        self._taken = 0
        self._offset = 0
        # a loss summed over samples: the test loss is drawn scaled to the training set's size, so the two
        # curves share one scale (a sum over 40 samples beside one over 160 would look 4 times better)
        self._test_scale = 1.0
        self.test_scaled_to: int | None = None  # that size, where scaling happened
        self.test_scale = 1.0  # the factor that scaling multiplied the test loss by (training samples / test samples)

    # -- following a running History -------------------------------------------------------------
    def follow(self, history: Any, offset: int, sizes: tuple[int, int] | None = None) -> None:
        """Copy `history`'s rows from now on, its epoch 0 drawn at x = `offset`. With `sizes` (train and test
        sample counts of a loss that sums over samples), the test loss is scaled to the training set's size."""
        self._source, self._taken, self._offset = history, 0, offset
        self._test_scale = 1.0 if sizes is None else sizes[0] / sizes[1]
        if sizes is not None:
            self.test_scaled_to, self.test_scale = sizes[0], self._test_scale
        if history.has_test and not self.has_test:
            self.has_test = True
            self._test.write(0, np.full(self.n, np.nan))  # earlier runs had no test data
        for name in history.grad_norms:
            if name not in self._norms:
                self._norms[name] = _Column()
                self._norms[name].write(0, np.full(self.n, np.nan))

    def pull(self) -> int:
        """Copy the rows the trainer appended since the last pull (it may be appending meanwhile); how many."""
        h = self._source
        if h is None:
            return 0
        # columns are appended one after another: take only the rows every column has
        lengths = [len(h.loss), *(len(v) for v in h.grad_norms.values())]
        if h.has_test:
            lengths.append(len(h.test_loss))
        end = min(lengths)
        start = self._taken
        if end <= start:
            return 0
        at, count = self.n, end - start
        self._x.write(at, np.asarray(h.epoch[start:end], dtype=np.float64) + self._offset)
        self._loss.write(at, h.loss[start:end])
        if self.has_test:
            test = np.asarray(h.test_loss[start:end], dtype=np.float64) if h.has_test else np.full(count, np.nan)
            self._test.write(at, test * self._test_scale if self._test_scale != 1.0 else test)
        for name, column in self._norms.items():
            values = h.grad_norms.get(name)
            column.write(at, values[start:end] if values is not None else np.full(count, np.nan))
        self._taken = end
        self.n = at + count
        return count

    # -- reading -----------------------------------------------------------------------------
    @property
    def x(self) -> np.ndarray:
        return self._x.data[:self.n]

    @property
    def loss(self) -> np.ndarray:
        return self._loss.data[:self.n]

    @property
    def test_loss(self) -> np.ndarray:
        """NaN where a run had no test data."""
        return self._test.data[:self.n]

    @property
    def norm_names(self) -> list[str]:
        return list(self._norms)

    def grad_norm(self, name: str) -> np.ndarray:
        return self._norms[name].data[:self.n]

    def log10(self, column: str) -> np.ndarray:
        """log10 of "loss", "test_loss" or a parameter's gradient norm, kept as the rows come (float32)."""
        source = {"loss": self._loss, "test_loss": self._test}.get(column) or self._norms[column]
        assert source.log is not None
        return source.log[:self.n]

    def to_csv(self, path: str | Path) -> Path:
        """epoch, loss[, test_loss], grad_norm:<parameter>...; floats written with repr so they read back exactly."""
        path = Path(path)
        columns = [self.x.astype(np.int64), self.loss]
        header = ["epoch", "loss"]
        if self.has_test:
            columns.append(self.test_loss)
            header.append(f"test_loss_scaled_to_{self.test_scaled_to}" if self.test_scaled_to else "test_loss")
        for name in self._norms:
            columns.append(self.grad_norm(name))
            header.append(f"grad_norm:{name}")
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(zip(*(c.tolist() for c in columns), strict=True))
        return path

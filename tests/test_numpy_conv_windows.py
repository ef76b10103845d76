"""The NumPy convolutions' window matrix and fold, built without the padded image, and the working memory they
borrow (`kernels.scratch`).

im2col reads the image itself, writing zeros where a window reaches into the padding, and col2im adds each
window's values straight into the image's gradient, dropping what falls on the padding: both are checked here
against the plain recipe (pad, take strided windows; fold into the padded image, crop) to the bit, on geometries
with asymmetric padding, strides, dilations, kernels wider than the image and slabs of rows, channels and kernel
rows. The fold's order of additions per cell is part of the contract (the numbers may not move), so its values
span many magnitudes: another order would round differently.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

import propscope.backends.numpy.kernels as table
from propscope.backends.numpy import conv
from propscope.graph.ops.conv import Grid, grid

GEOMETRIES = [  # (image h, w), kernel, stride, padding (top, bottom, left, right), dilation
    ((9, 8), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    ((11, 7), (3, 2), (2, 1), (1, 0, 2, 1), (1, 2)),
    ((5, 6), (4, 4), (3, 2), (3, 1, 0, 2), (2, 1)),
    ((2, 3), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),  # a kernel wider than the image: some taps read only padding
    ((7, 7), (1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),
    ((13, 4), (3, 1), (1, 3), (0, 4, 1, 1), (3, 1)),
]


def _grid(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int],
          pads: tuple[int, int, int, int], dilation: tuple[int, int]) -> Grid:
    return grid(size, kernel, stride, pads, dilation)


def _reference_windows(x: np.ndarray, g: Grid) -> np.ndarray:
    """(C, kh, kw, N, out_h, out_w): the plain recipe, the padded image's strided windows."""
    return conv._windows(conv._pad(x, g), g).transpose(1, 4, 5, 0, 2, 3)


def _reference_fold(gwin: np.ndarray, g: Grid) -> np.ndarray:
    """col2im into the padded image, one addition per kernel offset in (u, v) order, then cropped."""
    (kh, kw), (sh, sw), (dh, dw) = g.kernel, g.stride, g.dilation
    oh, ow = gwin.shape[2:4]
    gxp = np.zeros((*gwin.shape[:2], *g.padded), dtype=gwin.dtype)
    for u in range(kh):
        for v in range(kw):
            gxp[:, :, u * dh: u * dh + sh * (oh - 1) + 1: sh, v * dw: v * dw + sw * (ow - 1) + 1: sw] += gwin[..., u, v]
    (h, w), top, left = g.size, g.pads[0], g.pads[2]
    return gxp[:, :, top: top + h, left: left + w]


def _spread(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values over sixteen orders of magnitude, both signs: sums of them depend on their order."""
    return rng.choice([-1.0, 1.0], shape) * 10.0 ** rng.uniform(-8, 8, shape)


@pytest.mark.parametrize("small", [0, conv._SMALL_IMAGE], ids=["per-offset", "padded-whole"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[f"g{i}" for i in range(len(GEOMETRIES))])
def test_window_matrix_without_the_padded_image(geometry: tuple[Any, ...], small: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A large image is never padded: one strided copy per kernel offset, zeros where it reads padding. (A small
    one is padded whole and copied at once, the fewer NumPy calls.)"""
    monkeypatch.setattr(conv, "_SMALL_IMAGE", small)
    g = _grid(*geometry)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, *g.size))
    (kh, kw), (oh, ow) = g.kernel, g.out
    want = _reference_windows(x, g)
    cols = np.full((3, kh, kw, 2, oh, ow), np.nan)
    conv._unfold_into(cols, x, g, slice(None), slice(0, 2), slice(0, oh))
    np.testing.assert_array_equal(cols, want)
    # a slab: the second sample's later rows, the last two channels, the kernel rows from 1 on
    rows, taps = slice(oh // 2, oh), slice(min(1, kh - 1), kh)
    part = np.full((2, kh - taps.start, kw, 1, oh - rows.start, ow), np.nan)
    conv._unfold_into(part, x, g, slice(1, 3), slice(1, 2), rows, taps)
    np.testing.assert_array_equal(part, want[1:3, taps, :, 1:2, rows])


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[f"g{i}" for i in range(len(GEOMETRIES))])
def test_fold_into_the_image_adds_in_the_same_order(geometry: tuple[Any, ...]) -> None:
    g = _grid(*geometry)
    rng = np.random.default_rng(2)
    gwin = _spread(rng, (2, 3, *g.out, *g.kernel))
    want = _reference_fold(gwin, g)
    np.testing.assert_array_equal(conv._fold(gwin, g), want)
    # in two slabs of output rows, the later one first (as _fold_product goes): the same sums, to the bit
    split = g.out[0] // 2
    gx = np.zeros((2, 3, *g.size))
    conv._fold_into(gx, gwin[:, :, split:], g, split)
    conv._fold_into(gx, gwin[:, :, :split], g, 0)
    np.testing.assert_array_equal(gx, want)


def _conv_pass(x: np.ndarray, w: np.ndarray, b: np.ndarray, g: np.ndarray, **attrs: Any) -> list[np.ndarray]:
    out = conv.conv2d.forward(x, w, b, **attrs)
    return [out, *conv.conv2d.vjp(g, [x, w, b], out, attrs)]


def _problem(seed: int, n: int = 2) -> tuple[list[np.ndarray], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((n, 6, 17, 15)), rng.standard_normal((8, 3, 3, 3)), rng.standard_normal(8)
    attrs = {"stride": (1, 2), "padding": (1, 2, 0, 1), "dilation": (2, 1), "groups": 2}
    g = rng.standard_normal(conv.conv2d.forward(x, w, b, **attrs).shape)
    return [x, w, b, g], attrs


@pytest.mark.parametrize("limit", [conv.IM2COL_BYTES, 1, 5000], ids=["whole", "rows", "slabs"])
def test_borrowed_memory_changes_no_number(limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same pass in the kept buffer and in fresh arrays of its own: the same numbers, to the bit."""
    arrays, attrs = _problem(3)
    monkeypatch.setattr(conv, "IM2COL_BYTES", limit)
    monkeypatch.setattr(conv, "_SMALL_IMAGE", 0)
    borrowed = _conv_pass(*arrays, **attrs)
    monkeypatch.setattr(table, "SCRATCH_BYTES", 0)
    fresh = _conv_pass(*arrays, **attrs)
    for got, want in zip(borrowed, fresh, strict=True):
        np.testing.assert_array_equal(got, want)


def test_results_never_share_the_borrowed_memory() -> None:
    """What a kernel returns is its own: the next convolution (which reuses the buffer) changes none of it."""
    arrays, attrs = _problem(4)
    first = _conv_pass(*arrays, **attrs)
    kept = [a.copy() for a in first]
    other, _ = _problem(5)
    _conv_pass(*other, **attrs)
    transposed = conv.conv_transpose2d.forward(other[3], other[1], None, stride=1, padding=1, output_padding=0,
                                               dilation=1, groups=2)  # (N, 8, ...) back to 6 channels
    assert np.isfinite(transposed).all()
    for got, want in zip(first, kept, strict=True):
        np.testing.assert_array_equal(got, want)
    with table.scratch(64) as buf:
        assert not any(np.shares_memory(buf, a) for a in first)


def test_two_threads_at_once_get_the_same_numbers() -> None:
    """One thread finds the buffer lent and works in memory of its own; both get what one thread alone gets."""
    problems = [_problem(6 + i, n=4) for i in range(2)]
    alone = [_conv_pass(*arrays, **attrs) for arrays, attrs in problems]
    results: dict[int, list[np.ndarray]] = {}
    start = threading.Barrier(2)

    def work(i: int) -> None:
        start.wait()
        for _ in range(5):
            results[i] = _conv_pass(*problems[i][0], **problems[i][1])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(2):
        for got, want in zip(results[i], alone[i], strict=True):
            np.testing.assert_array_equal(got, want)


def test_scratch_is_one_buffer_lent_once_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "_scratch", [])
    with table.scratch(1000) as a, table.scratch(1000) as nested:  # the second finds it lent: memory of its own
        assert not np.shares_memory(a, nested)
    with table.scratch(500) as b:  # given back: the same memory again
        assert np.shares_memory(a, b) and b.nbytes == 500
    with table.scratch(table.SCRATCH_BYTES + 1) as big:  # above the bound: never kept
        assert big.nbytes == table.SCRATCH_BYTES + 1
    assert table._scratch[0].nbytes == 1000
    with pytest.raises(RuntimeError), table.scratch(10):
        raise RuntimeError("a kernel failed")
    with table.scratch(10) as again:  # an error inside gave it back
        assert np.shares_memory(again, a)

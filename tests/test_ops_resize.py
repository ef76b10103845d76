"""The resize family's sampling ops: bicubic upsampling and grid_sample in its three modes (the nearest, bilinear and
trilinear upsamplings and pad have their rows in test_ops_conv.py and test_ops_conv3d.py).

Every case runs the three op checks (hand-written VJP against central differences, NumPy against torch's own
function under autograd, propscope's torch backend against its NumPy backend). Grid points are drawn clear of
pixel centres and of the image's border, where the bilinear weights (and the border clamp) have kinks that a
difference stencil would straddle; random grids against torch close the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opcheck import Case, check_against_torch, check_backends_agree, check_gradient, normal, one_op

from propscope.graph.errors import ShapeError


def _interp(**kw: Any) -> Any:
    return lambda F, t, x: F.interpolate(x, mode="bicubic", **kw)


def _pixels_to_grid(pixels: np.ndarray, size: int, align_corners: bool) -> np.ndarray:
    """Pixel positions back to grid_sample's [−1, 1] coordinates (the inverse of its unnormalisation)."""
    return pixels * 2 / (size - 1) - 1 if align_corners else (pixels * 2 + 1) / size - 1


def points(n: int, h: int, w: int, height: int, width: int, align_corners: bool, low: float = -1.6,
           high_extra: float = 1.6, depth: int = 0, d: int = 0) -> Any:
    """A grid of (n, h, w) points (volumes: (n, d, h, w)) whose pixel positions lie in [low, size − 1 +
    high_extra], with fractions in [0.15, 0.85] (clear of the kinks at whole pixels, and of the border clamp at 0
    and size − 1)."""
    shape = (n, d, h, w) if depth else (n, h, w)
    sizes = (width, height, depth) if depth else (width, height)

    def make(rng: np.random.Generator) -> np.ndarray:
        axes = []
        for size in sizes:
            whole = rng.integers(int(np.floor(low)), int(np.floor(size - 1 + high_extra)), shape)
            axes.append(_pixels_to_grid(whole + rng.uniform(0.15, 0.85, shape), size, align_corners))
        return np.stack(axes, axis=-1)

    return make


def _grid(mode: str, padding: str, align: bool) -> Any:
    return lambda F, t, x, g: F.grid_sample(x, g, mode=mode, padding_mode=padding, align_corners=align)


def _grid_case(mode: str, padding: str, align: bool, tag: str, **kw: Any) -> Case:
    return Case("grid_sample", (normal(2, 3, 4, 5), points(2, 3, 4, 4, 5, align, **kw)), _grid(mode, padding, align),
                {"mode": mode, "padding_mode": padding, "align_corners": align}, tag)


def _volume_case(mode: str, padding: str, align: bool, tag: str, **kw: Any) -> Case:
    return Case("grid_sample", (normal(2, 2, 3, 4, 5), points(2, 3, 2, 4, 5, align, depth=3, d=2, **kw)),
                _grid(mode, padding, align), {"mode": mode, "padding_mode": padding, "align_corners": align}, tag)


CASES = [
    # bicubic: up, down, align_corners both ways, scales as F.interpolate passes them, an axis kept
    Case("upsample_bicubic2d", (normal(2, 2, 4, 5),), _interp(size=(9, 11)), {"output_size": (9, 11)}, "up"),
    Case("upsample_bicubic2d", (normal(2, 2, 4, 5),), _interp(size=(9, 11), align_corners=True),
         {"output_size": (9, 11), "align_corners": True}, "up-align-corners"),
    Case("upsample_bicubic2d", (normal(1, 2, 8, 7),), _interp(size=(3, 4)), {"output_size": (3, 4)}, "down"),
    Case("upsample_bicubic2d", (normal(1, 2, 8, 7),), _interp(size=(1, 4), align_corners=True),
         {"output_size": (1, 4), "align_corners": True}, "down-align-corners-to-one"),
    Case("upsample_bicubic2d", (normal(1, 2, 3, 4),), _interp(scale_factor=(1.7, 2.5)),
         {"scales": (1.7, 2.5)}, "scale-fractional"),
    Case("upsample_bicubic2d", (normal(1, 3, 5, 5),), _interp(size=(5, 8)), {"output_size": (5, 8)}, "keep-height"),
    # antialiased (F.interpolate(antialias=True)): shrinking spreads the filter over several pixels, growing is the
    # plain filter (bicubic's a = −0.5), edges renormalised; bilinear's too
    Case("upsample_bicubic2d", (normal(1, 2, 9, 8),), _interp(size=(4, 3), antialias=True),
         {"output_size": (4, 3), "antialias": True}, "antialias-down"),
    Case("upsample_bicubic2d", (normal(1, 2, 3, 4),), _interp(size=(7, 4), antialias=True),
         {"output_size": (7, 4), "antialias": True}, "antialias-up"),
    Case("upsample_bicubic2d", (normal(1, 2, 7, 6),), _interp(scale_factor=(0.45, 1.6), antialias=True),
         {"scales": (0.45, 1.6), "antialias": True}, "antialias-scales"),
    Case("upsample_bilinear2d", (normal(2, 2, 8, 5),),
         lambda F, t, x: F.interpolate(x, size=(3, 5), mode="bilinear", antialias=True),
         {"output_size": (3, 5), "antialias": True}, "bilinear-antialias-down"),
    Case("upsample_bilinear2d", (normal(1, 2, 6, 7),),
         lambda F, t, x: F.interpolate(x, size=(4, 2), mode="bilinear", align_corners=True, antialias=True),
         {"output_size": (4, 2), "align_corners": True, "antialias": True}, "bilinear-antialias-align-corners"),
    # grid_sample: both modes, every padding, align_corners both ways, points inside and outside the image
    _grid_case("bilinear", "zeros", False, "bilinear-zeros"),
    _grid_case("bilinear", "zeros", True, "bilinear-zeros-align-corners"),
    _grid_case("bilinear", "border", False, "bilinear-border"),
    _grid_case("bilinear", "border", True, "bilinear-border-align-corners"),
    _grid_case("bilinear", "reflection", False, "bilinear-reflection", low=-6.0, high_extra=6.0),
    _grid_case("bilinear", "reflection", True, "bilinear-reflection-align-corners", low=-6.0, high_extra=6.0),
    _grid_case("nearest", "zeros", False, "nearest-zeros"),
    _grid_case("nearest", "border", True, "nearest-border-align-corners"),
    _grid_case("nearest", "reflection", False, "nearest-reflection", low=-6.0, high_extra=6.0),
    _grid_case("bicubic", "zeros", False, "bicubic-zeros"),
    _grid_case("bicubic", "zeros", True, "bicubic-zeros-align-corners", low=-3.6, high_extra=3.6),
    _grid_case("bicubic", "border", False, "bicubic-border", low=-3.6, high_extra=3.6),
    _grid_case("bicubic", "reflection", True, "bicubic-reflection-align-corners", low=-6.0, high_extra=6.0),
    _grid_case("bicubic", "reflection", False, "bicubic-reflection", low=-6.0, high_extra=6.0),
    # volumes (VoxelMorph's warps): trilinear in every padding, nearest
    _volume_case("bilinear", "zeros", False, "trilinear-zeros"),
    _volume_case("bilinear", "border", True, "trilinear-border-align-corners"),
    _volume_case("bilinear", "reflection", False, "trilinear-reflection", low=-5.0, high_extra=5.0),
    _volume_case("nearest", "zeros", True, "volume-nearest-zeros-align-corners"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradient_matches_finite_differences(case: Case) -> None:
    check_gradient(case)


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_torch(case: Case) -> None:
    check_against_torch(case)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_backends_agree(case: Case, dtype: str) -> None:
    check_backends_agree(case, dtype)


@pytest.mark.parametrize(("op", "shapes", "attrs", "message"), [
    ("grid_sample", [(1, 2, 4, 4), (1, 3, 3, 2)], {"mode": "area"}, "mode 'area' is not one of"),
    ("grid_sample", [(1, 2, 4, 4), (1, 3, 3, 2)], {"padding_mode": "wrap"}, "padding_mode 'wrap'"),
    ("grid_sample", [(1, 2, 4), (1, 3, 2)], {}, "(batch, channels, height, width) or volumes"),
    ("grid_sample", [(1, 2, 4, 4, 4), (1, 3, 3, 3, 3)], {"mode": "bicubic"}, "bicubic mode samples images"),
    ("grid_sample", [(1, 2, 4, 4, 4), (1, 3, 3, 2)], {}, "(batch 1, depth, height, width, 3)"),
    ("grid_sample", [(1, 2, 4, 4), (2, 3, 3, 2)], {}, "(batch 1, height, width, 2)"),
    ("grid_sample", [(1, 2, 4, 4), (1, 3, 3, 3)], {}, "(batch 1, height, width, 2)"),
    ("upsample_bicubic2d", [(1, 2, 4)], {"output_size": (2, 3)}, "(batch, channels, height, width)"),
    ("upsample_bicubic2d", [(1, 2, 4, 4)], {}, "needs an output_size or scales"),
])
def test_shape_rule_says_what_is_wrong(op: str, shapes: list[tuple[int, ...]], attrs: dict[str, Any],
                                       message: str) -> None:
    with pytest.raises(ShapeError) as info:
        one_op(op, [np.zeros(s) for s in shapes], attrs)
    assert message in str(info.value)


def test_grid_points_far_outside_or_nan_read_zeros_without_warnings() -> None:
    """Points at ±10³⁰⁰ or NaN index no pixel (and make no integer overflow); zeros padding reads 0 there."""
    import warnings

    from propscope.backends.numpy import NumpyBackend

    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    grid = np.array([[[[1e300, 0.0], [-1e300, 0.0], [np.nan, 0.0], [0.0, 0.0]]]])
    node = one_op("grid_sample", [x, grid], {"mode": "bilinear", "padding_mode": "zeros", "align_corners": True})
    b = NumpyBackend("float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = b.forward(node, [x, grid])
        gx, _ = b.vjp(node, [x, grid], out, np.ones(out.shape))
    np.testing.assert_array_equal(out[..., :3], 0.0)
    np.testing.assert_array_equal(out[0, :, 0, 3], x[0, :, 1, 1])  # the centre, exactly
    assert gx is not None and gx.sum() == 2.0  # only the centre pixel of each channel got a gradient


def _against_torch(op: str, arrays: list[np.ndarray], attrs: dict[str, Any], fn: Any, seed: int) -> None:
    import torch

    from propscope.backends.numpy import NumpyBackend

    node = one_op(op, arrays, attrs)
    b = NumpyBackend("float64")
    out = b.forward(node, arrays)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    want = fn(*tensors)
    np.testing.assert_allclose(out, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    upstream = np.random.default_rng(seed + 1).standard_normal(out.shape)
    grads = b.vjp(node, arrays, out, upstream)
    for got, expected in zip(grads, torch.autograd.grad(want, tensors, torch.tensor(upstream)), strict=True):
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-9, atol=1e-10)


@pytest.mark.torch
@settings(max_examples=40, deadline=None)
@given(mode=st.sampled_from(["bilinear", "nearest", "bicubic"]),
       padding=st.sampled_from(["zeros", "border", "reflection"]),
       align=st.booleans(), hw=st.lists(st.integers(1, 6), min_size=2, max_size=3),
       out=st.lists(st.integers(1, 5), min_size=3, max_size=3), spread=st.sampled_from([0.5, 1.0, 1.5, 4.0]),
       seed=st.integers(0, 2**16))
def test_grid_sample_any_grid_matches_torch(mode: str, padding: str, align: bool, hw: list[int],
                                            out: list[int], spread: float, seed: int) -> None:
    """Points anywhere (on pixel centres and the border too: the kinks are where torch's one-sided choices and ours
    must agree), images and volumes down to one pixel."""
    import torch.nn.functional as F

    if len(hw) == 3 and mode == "bicubic":
        mode = "bilinear"  # (PyTorch's bicubic samples images only)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 2, *hw))
    grid = rng.uniform(-spread, spread, (2, *out[:len(hw)], len(hw)))
    grid[(0,) * (len(hw) + 1)] = (-1.0, 1.0, -1.0)[:len(hw)]  # the corners themselves
    _against_torch("grid_sample", [x, grid], {"mode": mode, "padding_mode": padding, "align_corners": align},
                   lambda t, g: F.grid_sample(t, g, mode=mode, padding_mode=padding, align_corners=align), seed)


@pytest.mark.torch
@settings(max_examples=30, deadline=None)
@given(align=st.booleans(), by_scale=st.booleans(), hw=st.tuples(st.integers(1, 8), st.integers(1, 8)),
       out=st.tuples(st.integers(1, 13), st.integers(1, 13)),
       scales=st.tuples(st.sampled_from([0.5, 0.75, 1.3, 2.0, 3.0]), st.sampled_from([0.6, 1.0, 1.25, 3.7])),
       seed=st.integers(0, 2**16))
def test_bicubic_any_size_matches_torch(align: bool, by_scale: bool, hw: tuple[int, int], out: tuple[int, int],
                                        scales: tuple[float, float], seed: int) -> None:
    import torch.nn.functional as F

    if by_scale and min(int(hw[0] * scales[0]), int(hw[1] * scales[1])) < 1:
        by_scale = False
    x = np.random.default_rng(seed).standard_normal((2, 2, *hw))
    size_kw: dict[str, Any] = {"scale_factor": scales} if by_scale else {"size": out}
    attrs: dict[str, Any] = {"scales": scales} if by_scale else {"output_size": out}
    attrs["align_corners"] = align
    _against_torch("upsample_bicubic2d", [x], attrs,
                   lambda t: F.interpolate(t, mode="bicubic", align_corners=align, **size_kw), seed)


@pytest.mark.torch
@settings(max_examples=30, deadline=None)
@given(mode=st.sampled_from(["bilinear", "bicubic"]), align=st.booleans(), by_scale=st.booleans(),
       hw=st.tuples(st.integers(1, 12), st.integers(2, 12)), out=st.tuples(st.integers(1, 13), st.integers(2, 13)),
       scales=st.tuples(st.sampled_from([0.3, 0.5, 0.75, 1.3, 2.0]), st.sampled_from([1.0, 1.25, 3.7])),
       seed=st.integers(0, 2**16))
def test_antialiased_any_size_matches_torch(mode: str, align: bool, by_scale: bool, hw: tuple[int, int],
                                            out: tuple[int, int], scales: tuple[float, float], seed: int) -> None:
    """Shrinking by any factor (the filter reaching over many pixels), growing, one row, a given scale. (Widths of
    2 and more: torch 2.13's antialiased kernel answers wrongly where the image or the output is one pixel wide,
    as its own channels-last copy of the same image shows.)"""
    import torch.nn.functional as F

    if by_scale and min(int(hw[0] * scales[0]), int(hw[1] * scales[1])) < 1:
        by_scale = False
    x = np.random.default_rng(seed).standard_normal((2, 2, *hw))
    size_kw: dict[str, Any] = {"scale_factor": scales} if by_scale else {"size": out}
    attrs: dict[str, Any] = {"scales": scales} if by_scale else {"output_size": out}
    attrs.update(align_corners=align, antialias=True)
    _against_torch(f"upsample_{mode}2d", [x], attrs,
                   lambda t: F.interpolate(t, mode=mode, align_corners=align, antialias=True, **size_kw), seed)


@pytest.mark.torch
@pytest.mark.parametrize("sizes", [(3, 4), (1, 5), (4, 1), (2, 3, 4), (1, 1, 2)], ids=str)
@pytest.mark.parametrize("align", [False, True])
def test_affine_base_grid_is_torchs_identity_grid(sizes: tuple[int, ...], align: bool) -> None:
    """The readers' affine grid is this base grid times θᵀ: for θ = I it is F.affine_grid's own grid, exactly."""
    import warnings

    import torch
    import torch.nn.functional as F

    from propscope.graph.ops.resize import affine_base_grid

    dims = len(sizes)
    theta = torch.eye(dims, dims + 1, dtype=torch.float64)[None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note that unit axes with align_corners changed in 1.3
        want = F.affine_grid(theta, [1, 1, *sizes], align_corners=align).numpy().reshape(-1, dims)
    np.testing.assert_array_equal(affine_base_grid(sizes, align)[:, :dims], want)

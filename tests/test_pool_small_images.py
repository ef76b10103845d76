"""Pooling on images as small as the window or smaller, ceil_mode both ways, exactly as PyTorch.

PyTorch's rule (aten/src/ATen/native/Pool.h): an output side is
div_rtn(n + 2p − d(k − 1) − 1 + (ceil_mode ? s − 1 : 0), s) + 1, with div_rtn rounding toward −∞, less
one in ceil_mode if the last window would start at or past n + p (`pooling_output_shape_pad_lr`); it
refuses padding over half the kernel, k // 2, whatever the dilation (`pool2d_shape_check`, max_pool1d's
own check) and an output side under 1. So ceil_mode keeps one window on a 1×1 image with kernel 2,
stride 2, but a 1×1 image with kernel 3 and no padding has none even in ceil_mode.

Every geometry of a small grid (sides 1-5, kernels 1-4, strides 1-3, padding 0-2, dilation 1-3 for max,
ceil_mode, count_include_pad) is checked: the shape rule refuses exactly where torch raises, and where torch
pools, the NumPy forward and VJP equal torch autograd's in float64 (opcheck's `check_against_torch`).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opcheck import Case, check_against_torch, check_backends_agree, fixed, one_op

from propscope.backends.numpy import NumpyBackend
from propscope.graph.errors import ShapeError
from propscope.graph.ops.conv import window_out

SIZES = (1, 2, 3, 5)  # the 1-D ops' lengths
IMAGES = ((1, 1), (1, 2), (2, 1), (2, 2), (2, 3), (3, 5), (5, 5))  # the 2-D ops' (height, width)
KERNELS = (1, 2, 3, 4)
STRIDES = (1, 2, 3)
PADS = (0, 1, 2)


def _image(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Distinct values, so no max-pool window has a tie."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) * 0.25 - n / 8


def _geometries(kind: str, one_d: bool) -> list[dict[str, Any]]:
    out = []
    images = [(1, n) for n in SIZES] if one_d else IMAGES
    for (h, w), k, s, p, ceil in itertools.product(images, KERNELS, STRIDES, PADS, (False, True)):
        for extra in ([{"dilation": d} for d in (1, 2, 3)] if kind == "max" else
                      [{"count_include_pad": c} for c in (True, False)]):
            out.append({"hw": (h, w), "kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil, **extra})
    return out


def _torch_fn(kind: str, one_d: bool, geo: dict[str, Any]) -> Any:
    k, s, p, ceil = geo["kernel_size"], geo["stride"], geo["padding"], geo["ceil_mode"]
    dims = "1d" if one_d else "2d"
    if kind == "max":
        d = geo["dilation"]
        return lambda F, t, x: getattr(F, f"max_pool{dims}")(x, k, s, p, d, ceil)
    include = geo["count_include_pad"]
    return lambda F, t, x: getattr(F, f"avg_pool{dims}")(x, k, s, p, ceil, include)


@pytest.mark.torch
@pytest.mark.parametrize("one_d", [False, True], ids=["2d", "1d"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_small_images_every_geometry_as_torch(kind: str, one_d: bool) -> None:
    import torch
    import torch.nn.functional as F

    op = f"{kind}_pool{'1d' if one_d else '2d'}"
    refused = pooled = blind = 0
    for i, geo in enumerate(_geometries(kind, one_d)):
        h, w = geo["hw"]
        shape = (1, 2, w) if one_d else (1, 2, h, w)
        attrs = {key: v for key, v in geo.items() if key != "hw"}
        fn = _torch_fn(kind, one_d, geo)
        x = _image(shape, i)
        try:
            fn(F, torch, torch.tensor(x))
            torch_ok = True
        except RuntimeError:
            torch_ok = False
        if not torch_ok:
            with pytest.raises(ShapeError):
                one_op(op, [x], attrs)
            refused += 1
            continue
        if kind == "max" and _window_without_pixel(shape, attrs):
            # torch's max_pool2d backward writes through the index −1 of such a window (heap corruption,
            # "double free or corruption"), so only torch's forward is compared: −∞ there, as ours. propscope's
            # torch backend pads such an image itself (−∞ cells), so its backward runs, and agrees with NumPy's
            node = one_op(op, [x], attrs)
            got = NumpyBackend("float64").forward(node, [x])
            np.testing.assert_array_equal(got, fn(F, torch, torch.tensor(x)).numpy(), err_msg=str(geo))
            assert np.isneginf(got).any()
            check_backends_agree(Case(op, (fixed(x),), fn, attrs, tag=str(geo)), "float64")
            blind += 1
            continue
        check_against_torch(Case(op, (fixed(x),), fn, attrs, tag=str(geo)))
        pooled += 1
    assert refused and pooled  # the grid has both kinds
    assert (blind > 0) == (kind == "max")


def _window_without_pixel(shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    """Whether a dilated max-pool window holds only padding (its taps step over the image's pixels)."""
    k, s, p, d = attrs["kernel_size"], attrs["stride"], attrs["padding"], attrs.get("dilation", 1)
    for n in shape[2:]:
        out = window_out(n, k, s, p, p, d, attrs["ceil_mode"])
        if any(all(not 0 <= o * s - p + j * d < n for j in range(k)) for o in range(out)):
            return True
    return False


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("op", "shape", "attrs"), [
    ("max_pool2d", (1, 2, 1, 1), {"kernel_size": 2, "stride": 2, "ceil_mode": True}),
    ("max_pool2d", (1, 2, 2, 2), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ("max_pool2d", (1, 2, 2, 2), {"kernel_size": 3, "stride": 3, "padding": 1, "dilation": 2, "ceil_mode": True}),
    ("avg_pool2d", (1, 2, 1, 1), {"kernel_size": 2, "stride": 2, "ceil_mode": True}),
    ("avg_pool2d", (1, 2, 2, 2), {"kernel_size": 3, "stride": 2, "ceil_mode": True, "count_include_pad": False}),
    ("avg_pool2d", (1, 2, 2, 1), {"kernel_size": 4, "stride": 3, "padding": 2, "ceil_mode": True}),
    ("max_pool1d", (1, 2, 1), {"kernel_size": 2, "stride": 2, "ceil_mode": True}),
    ("avg_pool1d", (1, 2, 2), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
], ids=lambda v: str(v) if not isinstance(v, dict) else "-".join(f"{k}={x}" for k, x in v.items()))
def test_small_images_torch_backend_agrees(op: str, shape: tuple[int, ...], attrs: dict[str, Any], dtype: str) -> None:
    """propscope's torch backend pools the same windows as the NumPy one, forward, VJP and partials."""
    torch_fn = lambda F, t, x: x  # noqa: E731  (unused by check_backends_agree)
    check_backends_agree(Case(op, (fixed(_image(shape, 0)),), torch_fn, attrs), dtype)


@pytest.mark.parametrize(("size", "kernel", "stride", "pad", "dilation", "ceil", "out"), [
    (1, 2, 2, 0, 1, True, 1),   # the window reaches past the image, starts inside it: kept
    (1, 2, 2, 0, 1, False, 0),
    (2, 3, 2, 0, 1, True, 1),
    (1, 3, 2, 0, 1, True, 0),   # ⌊(1 − 3 + 1) / 2⌋ + 1 = 0: none, even in ceil_mode (torch refuses)
    (1, 3, 3, 1, 1, True, 1),
    (5, 2, 2, 1, 1, True, 3),   # the fourth window would start in the padding after the image: dropped
    (6, 3, 2, 0, 1, True, 3),
])
def test_window_out_is_pytorchs(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool,
                                out: int) -> None:
    assert window_out(size, kernel, stride, pad, pad, dilation, ceil) == out


@pytest.mark.parametrize(("attrs", "refused"), [
    ({"kernel_size": 3, "padding": 2, "dilation": 2}, True),  # half the dilated window (5 // 2) allows 2; torch: 3 // 2
    ({"kernel_size": 2, "padding": 1, "dilation": 3}, False),
    ({"kernel_size": 4, "padding": 2}, False),
    ({"kernel_size": 4, "padding": 3}, True),
])
def test_padding_at_most_half_the_kernel(attrs: dict[str, Any], refused: bool) -> None:
    x = np.zeros((1, 1, 6, 6))
    if refused:
        with pytest.raises(ShapeError, match="at most half"):
            one_op("max_pool2d", [x], attrs)
    else:
        one_op("max_pool2d", [x], attrs)


@pytest.mark.parametrize(("kernel", "dilation", "pad"), [(3, 2, 2), (2, 3, 2), (3, 1, 2)])
def test_an_onnx_max_pool_padded_past_half_its_kernel_opens_as_an_explicit_pad(
        tmp_path: Path, kernel: int, dilation: int, pad: int) -> None:
    """ONNX allows any pads; PyTorch's pools take at most half the kernel. The reader pads with −∞ first and pools
    without padding, so such a file opens, and steps as torch computes it with the same explicit pad."""
    onnx = pytest.importorskip("onnx")
    torch = pytest.importorskip("torch")
    from onnx import TensorProto, helper

    from propscope.debugger import open_session

    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[kernel, kernel], dilations=[dilation, dilation],
                            pads=[pad, pad, pad, pad])
    size = 7
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) + 1
    graph = helper.make_graph([node], "pool",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, out, out])])
    path = tmp_path / "pool.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = open_session(path, dtype="float64", loss="none")
    x = session.batch[session.graph.inputs[0].name]
    session.run_to_end()
    t = torch.tensor(x, requires_grad=True)
    padded = torch.nn.functional.pad(t, (pad, pad, pad, pad), value=float("-inf"))
    expected = torch.nn.functional.max_pool2d(padded, kernel, stride=1, dilation=dilation)
    y = session.value(session.graph.outputs[0].name)
    np.testing.assert_array_equal(np.asarray(y), expected.detach().numpy())

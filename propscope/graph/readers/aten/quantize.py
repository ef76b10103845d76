"""ATen fake quantization (quantization-aware training) and the `quantized_decomposed` quantize/dequantize pairs
that PT2E quantization writes, read onto the catalog's `fake_quantize`, `quantize` and `dequantize`.

- `fake_quantize_per_tensor_affine` and `_per_channel_affine` (and their `_cachemask` forms that
  `run_decompositions()` writes) are `fake_quantize`, with torch's rounding: x·(1/s), 1/s in float32, and the
  per-tensor kernel's float32 output.
- `fused_moving_avg_obs_fake_quant` is what eager-mode QAT (`prepare_qat` with the x86/fbgemm qconfig) exports:
  an observer and a fake quantization in one op. With its observer off (`disable_observer`, as for evaluation)
  it fake-quantizes with the scale and zero point torch derives from the observer's running min and max; those
  are computed when the file is read, by torch's own kernel on the stored buffers. With the observer on the grid
  follows every batch, which is refused in one line.
- `quantized_decomposed.quantize_*` followed by `dequantize_*` on the same grid is one `fake_quantize` (see
  onnx_ops/quantize.py for why one op); a dequantize of a constant integer tensor (PT2E's quantized weights) is a
  float parameter holding the dequantized weights, so that it has a gradient.
- `_fake_quantize_learnable_*` (LSQ, whose scale and zero point are trained) is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from ...errors import GraphError
from ...ir import Node
from .._aten import SCALAR_TYPES, Ctx, Lazy, Missing, Translator, Unmapped, aten, op_key, self_arg
from .._budget import charge
from .._build import module_of

_TORCH_PER_TENSOR = {"inverse": True, "float32_output": True}  # torch's per-tensor kernel: a float32 product
_TORCH_PER_CHANNEL = {"inverse": True, "float32_output": False}  # its per-channel kernel keeps the exact product


@dataclass
class Grid:
    scale: Any
    zero_point: Any
    axis: int | None
    qmin: int
    qmax: int


@dataclass
class Quantized(Lazy):
    """A quantized_decomposed quantize's integers: a `quantize` step unless a dequantize on the same grid reads
    them (the pair is one `fake_quantize`)."""

    source: Any = None
    grid: Grid | None = None
    ctx: Ctx | None = None


def _stored_name(value: Any) -> str | None:
    """The state-dict name of a buffer or constant of the program (what its loader was made with)."""
    fetch = getattr(value, "array", None)
    if isinstance(fetch, partial) and len(fetch.args) >= 2 and isinstance(fetch.args[1], str):
        return fetch.args[1]
    return None


def _leaf(t: Translator, value: Any, ctx: Ctx, role: str, shape: tuple[int, ...], dtype: Any) -> Node:
    """A scale or zero point as a constant leaf shaped to broadcast against the tensor ((C, 1, 1) along axis 1 of
    NCHW), or a computed one reshaped."""
    arr = t.known(value)
    if arr is None:
        node = t.node(value, ctx, role)
        if shape and node.shape != (node.shape[0], *shape[1:]):
            node = t.b.op("reshape", node, name=f"{ctx.name}.{role}_shaped", module=ctx.module, attrs={"shape": shape})
        elif not shape and node.shape != ():
            node = t.b.op("reshape", node, name=f"{ctx.name}.{role}_shaped", module=ctx.module, attrs={"shape": ()})
        return node
    arr = np.asarray(arr, dtype=dtype)
    arr = arr.reshape(shape) if shape else arr.reshape(())
    name = _stored_name(value) or f"{ctx.name}.{role}"
    return t.b.leaf("constant", name, arr, module=ctx.module, inline=_stored_name(value) is None)


def _shape(grid: Grid, ndim: int) -> tuple[int, ...]:
    return () if grid.axis is None else (-1, *(1,) * (ndim - 1 - grid.axis))


def _check(t: Translator, grid: Grid, shape: tuple[int, ...]) -> None:
    """One scale and zero point, or one per channel along the axis: refused in one line otherwise."""
    channels = 1 if grid.axis is None else shape[grid.axis]
    for role, value in (("scales", grid.scale), ("zero points", grid.zero_point)):
        known = t.known(value)
        if known is not None and known.size not in ({1} if grid.axis is None else {1, channels}):
            where = "one tensor" if grid.axis is None else f"{channels} channels along axis {grid.axis}"
            raise Unmapped(f"{known.size} {role} for {where}")


def _op(t: Translator, op: str, x: Any, grid: Grid, ctx: Ctx, attrs: dict[str, Any]) -> Node:
    node = t.node(x, ctx)
    _check(t, grid, node.shape)
    shape = _shape(grid, len(node.shape))
    scale = _leaf(t, grid.scale, ctx, "scale", shape, np.float32)
    zero = _leaf(t, grid.zero_point, ctx, "zero_point", shape, np.int64)
    bounds = {} if op == "dequantize" else {"qmin": grid.qmin, "qmax": grid.qmax}
    return t.b.op(op, node, scale, zero, name=ctx.name, module=ctx.module or node.module,
                  attrs={**bounds, **attrs}, original_op=op_key(ctx.target))


def _axis(value: Any, ndim: int) -> int:
    axis = int(value)
    if not -ndim <= axis < ndim:
        raise Unmapped(f"axis {axis} of a {ndim}-D tensor")
    return axis % ndim


def _enabled(t: Translator, flag: Any, what: str) -> bool:
    known = t.known(flag)
    if known is None:
        raise Unmapped(f"whether {what} is on is computed at run time")
    return bool(np.asarray(known).reshape(-1)[0])


def _with_mask(ctx: Ctx, out: Any) -> Any:
    """The `_cachemask` forms also return the mask their backward reads: not computed here."""
    return [out, Missing("the fake-quantization mask (torch's backward reads it)")] if len(ctx.shapes) > 1 else out


@aten("fake_quantize_per_tensor_affine", "fake_quantize_per_tensor_affine_cachemask",
      "_fake_quantize_per_tensor_affine_cachemask_tensor_qparams")
def _fake_quantize_per_tensor(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    if "fake_quant_enabled" in a and not _enabled(t, a["fake_quant_enabled"], "fake quantization"):
        return _with_mask(ctx, x)
    grid = Grid(a["scale"], a["zero_point"], None, int(a["quant_min"]), int(a["quant_max"]))
    return _with_mask(ctx, _op(t, "fake_quantize", x, grid, ctx, _TORCH_PER_TENSOR))


@aten("fake_quantize_per_channel_affine", "fake_quantize_per_channel_affine_cachemask")
def _fake_quantize_per_channel(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    zero = t.known(a["zero_point"])
    if zero is not None and zero.dtype.kind == "f" and not np.array_equal(zero, np.round(zero)):
        raise Unmapped("a per-channel zero point that is not a whole number (torch rounds zp + x/s together then)")
    grid = Grid(a["scale"], a["zero_point"], _axis(a["axis"], len(t.shape(x))), int(a["quant_min"]),
                int(a["quant_max"]))
    return _with_mask(ctx, _op(t, "fake_quantize", x, grid, ctx, _TORCH_PER_CHANNEL))


@aten("_fake_quantize_learnable_per_tensor_affine", "_fake_quantize_learnable_per_channel_affine")
def _fake_quantize_learnable(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    raise Unmapped("LSQ's learnable fake quantization (_LearnableFakeQuantize): the gradients of its scale and "
                   "zero point are not computed by propscope; torch.fake_quantize_per_tensor_affine or a "
                   "FakeQuantize with a fixed grid is read")


def observed_qparams(running_min: np.ndarray, running_max: np.ndarray, scale: np.ndarray, zero: np.ndarray,
                     qmin: int, qmax: int, per_row: bool, symmetric: bool, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The scale and zero point torch's fused observer computes from its running min and max (with the observer
    off it recomputes them so at every call, ignoring the stored ones): torch's own kernel, on copies."""
    import torch

    n = int(np.asarray(running_min).size)
    if n == 0 or not np.isfinite(running_min).all() or not np.isfinite(running_max).all():
        raise Unmapped("an observer that has seen no data (its running min and max are not set)")
    charge(64 * n, "the observer's quantization parameters", where)
    s = torch.tensor(np.asarray(scale, dtype=np.float32).reshape(-1).copy())
    z = torch.tensor(np.asarray(zero, dtype=np.int32).reshape(-1).copy())
    if s.numel() != n:
        s, z = torch.ones(n), torch.zeros(n, dtype=torch.int32)
    lo = torch.tensor(np.asarray(running_min, dtype=np.float32).reshape(-1).copy())
    hi = torch.tensor(np.asarray(running_max, dtype=np.float32).reshape(-1).copy())
    probe = torch.zeros((n, 1) if per_row else (1,))
    torch.fused_moving_avg_obs_fake_quant(probe, torch.tensor([0]), torch.tensor([1]), lo, hi, s, z, 0.01, qmin, qmax,
                                          0, per_row, symmetric)
    return s.numpy().copy(), z.numpy().astype(np.int64)


@aten("fused_moving_avg_obs_fake_quant", "_fused_moving_avg_obs_fq_helper",
      "_fused_moving_avg_obs_fq_helper_functional")
def _fused_observer(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    key = op_key(ctx.target)
    if _enabled(t, a["observer_on"], "the observer"):
        raise Unmapped("an observer that is on: its scale follows every batch's min and max (call "
                       "model.apply(torch.ao.quantization.disable_observer) before exporting)")
    lo, hi = t.known(a["running_min"]), t.known(a["running_max"])
    scale, zero = t.known(a["scale"]), t.known(a["zero_point"])
    if lo is None or hi is None or scale is None or zero is None:
        raise Unmapped("an observer whose statistics are computed at run time")
    qmin, qmax = int(a["quant_min"]), int(a["quant_max"])
    per_row = bool(a.get("per_row_fake_quant", False))
    s, z = observed_qparams(lo, hi, scale, zero, qmin, qmax, per_row, bool(a.get("symmetric_quant", False)),
                            t.where)
    if not _enabled(t, a["fake_quant_on"], "fake quantization"):
        out = x
    elif per_row:
        grid = Grid(s, z, _axis(a["ch_axis"], len(t.shape(x))), qmin, qmax)
        out = _op(t, "fake_quantize", x, grid, ctx, _TORCH_PER_CHANNEL)
    else:
        grid = Grid(s.reshape(()), z.reshape(()), None, qmin, qmax)
        out = _op(t, "fake_quantize", x, grid, ctx, _TORCH_PER_TENSOR)
    if key == "fused_moving_avg_obs_fake_quant":
        return out
    mask = Missing("the fake-quantization mask (torch's backward reads it)")
    if key == "_fused_moving_avg_obs_fq_helper":
        return [out, mask]
    return [out, mask, np.asarray(lo), np.asarray(hi), s.reshape(np.shape(scale)), z.astype(np.asarray(zero).dtype)]


# -- PT2E: quantized_decomposed --------------------------------------------------------------------------------
def _bounds(t: Translator, a: dict[str, Any]) -> tuple[int, int]:
    lo, hi = t.known(a["quant_min"]), t.known(a["quant_max"])
    if lo is None or hi is None:
        raise Unmapped("a quantization range computed at run time")
    return int(np.asarray(lo).reshape(-1)[0]), int(np.asarray(hi).reshape(-1)[0])


def _grid(t: Translator, a: dict[str, Any], ndim: int) -> Grid:
    qmin, qmax = _bounds(t, a)
    if "axis" in a:
        return Grid(a["scales"], a["zero_points"], _axis(a["axis"], ndim), qmin, qmax)
    return Grid(a["scale"], a["zero_point"], None, qmin, qmax)


def _same(t: Translator, a: Any, b: Any) -> bool:
    if a is b:
        return True
    ka, kb = t.known(a), t.known(b)
    if ka is None or kb is None:
        return False
    return ka.size == kb.size and bool(np.array_equal(np.asarray(ka).reshape(-1), np.asarray(kb).reshape(-1)))


@aten("quantized_decomposed.quantize_per_tensor", "quantized_decomposed.quantize_per_channel")
def _quantize(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = a["input"]
    grid = _grid(t, a, len(t.shape(x)))
    _check(t, grid, t.shape(x))
    attrs = _TORCH_PER_TENSOR if grid.axis is None else {"inverse": True, "float32_output": True}

    def make() -> Node:  # when something reads the integers; a failure is then that reader's Unmapped
        try:
            return _op(t, "quantize", x, grid, ctx, attrs)
        except GraphError as exc:
            raise Unmapped(str(exc)) from None

    return Quantized(make, source=x, grid=grid, ctx=ctx)


@aten("quantized_decomposed.dequantize_per_tensor", "quantized_decomposed.dequantize_per_channel")
def _dequantize(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    q = a["input"]
    out_dtype = a.get("out_dtype")
    if isinstance(out_dtype, int) and SCALAR_TYPES.get(out_dtype) not in ("float32", None):
        raise Unmapped(f"a dequantize to {SCALAR_TYPES.get(out_dtype, out_dtype)}")
    if isinstance(q, Quantized) and q.grid is not None and q.ctx is not None:
        grid = _grid(t, a, len(t.shape(q.source)))
        g = q.grid
        if g.axis == grid.axis and _same(t, g.scale, grid.scale) and _same(t, g.zero_point, grid.zero_point):
            return _op(t, "fake_quantize", q.source, g, q.ctx, {"inverse": True, "float32_output": True})
    else:
        ints = t.known(q)  # its shape from the array: asking the translator would make a leaf of the integers
        grid = _grid(t, a, np.ndim(ints) if ints is not None else len(t.shape(q)))
    ints, scale = t.known(q), t.known(grid.scale)
    zero = np.zeros(()) if grid.zero_point is None else t.known(grid.zero_point)
    if ints is not None and scale is not None and zero is not None and np.asarray(ints).dtype.kind in "iu":
        ints = np.asarray(ints)
        shape = _shape(grid, ints.ndim)
        name = _stored_name(q) or ctx.name
        charge(ints.size * 4, f"the dequantized {name!r}", t.where)
        diff = ints.astype(np.int64) - np.asarray(zero).astype(np.int64).reshape(shape or ())
        weights = diff.astype(np.float32) * np.asarray(scale, dtype=np.float32).reshape(shape or ())
        return t.b.leaf("parameter", name, weights, module=module_of(name) or ctx.module, file_name=name)
    if grid.zero_point is None:
        grid.zero_point = np.zeros((), dtype=np.int64)
    return _op(t, "dequantize", q, grid, ctx, {"float32_output": True})


@aten("quantized_decomposed.fake_quant_per_channel")
def _fake_quant_per_channel(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = a["input"]
    qmin, qmax = _bounds(t, a)
    grid = Grid(a["scales"], a["zero_points"], _axis(a["axis"], len(t.shape(x))), qmin, qmax)
    return _op(t, "fake_quantize", x, grid, ctx, {"inverse": True, "float32_output": True})

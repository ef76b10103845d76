"""ONNX quantization: the QDQ form `quantize_static` writes, `quantize_dynamic`'s integer products, and the
QOperator convolution and matrix product, read onto the catalog's `fake_quantize`, `quantize`, `dequantize`.

A QuantizeLinear→DequantizeLinear pair on a computed tensor is read as one `fake_quantize` step. The pair is
what the model means (x, and the float value the integer kernel will see in its place); as one op its gradient
is torch's straight-through estimator exactly, in one place, where a learner sees it defined (two ops would
show a made-up derivative for the rounding on one and multiply by s·(1/s) on the other), and the quantization
error is one step's input beside its output. A QuantizeLinear whose integers something else reads (a graph
output, QOperator's integer ops) is a `quantize` step, a DequantizeLinear of a computed tensor a `dequantize`.

A DequantizeLinear of a constant integer initializer (the weights and biases of a QDQ file) is a float
parameter named after that initializer (`conv1.weight_quantized`), holding (q − zp)·s as onnxruntime computes
it (in float32): the forward is onnxruntime's, and the engineer gets ∂L/∂W for the weights the model uses.

`quantize_dynamic` writes DynamicQuantizeLinear (the scale and zero point chosen from the batch: two
`choose_qparams` steps with no gradient, and a `quantize`), MatMulInteger and ConvInteger (the product of the
integers less their zero points: a constant integer weight becomes a float parameter of those differences, in
integer units), and, for an LSTM, onnxruntime's own DynamicQuantizeLSTM, which is refused by name. QLinearConv,
QLinearMatMul and onnxruntime's QGemm (QOperator's Linear) are what they mean: dequantize, the float op,
quantize. Blocked quantization, 2- and 4-bit integers and float8 grids are refused by name, except onnxruntime's
MatMulNBits (`MatMulNBitsQuantizer`'s 4-bit weights, transformers.js's `model_q4.onnx`): its packed blocks of
integers are dequantized when the file is read into the (N, K) float parameter onnxruntime computes with, in
nn.Linear's layout, and the product is that Linear's `linear` step.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import GraphError
from ...ir import Node
from .._aten import Lazy, Unmapped
from .._budget import charge
from .._build import clean_name
from ..onnx_reader import HANDLERS, Ctx, Init, Reader, onnx_op

# the integer types a grid may have, by ONNX element type, with their ranges
_TYPES = {2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32"}
RANGES = {"uint8": (0, 255), "int8": (-128, 127), "uint16": (0, 65535), "int16": (-32768, 32767),
          "int32": (-2**31, 2**31 - 1)}
_REFUSED = {21: "uint4", 22: "int4", 25: "uint2", 26: "int2", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
            19: "float8e5m2", 20: "float8e5m2fnuz", 23: "float4e2m1"}
_ONNX_GRID = {"inverse": False, "float32_output": True}  # ONNX divides; its dequantized values are float32


@dataclass
class Grid:
    """One QuantizeLinear's or DequantizeLinear's grid: scale and zero point as the file gives them (a constant
    array, an initializer, or a computed node), the axis they vary along (None: one for the whole tensor), and
    the integer type's range."""

    scale: Any
    zero_point: Any
    axis: int | None
    dtype: str

    @property
    def bounds(self) -> tuple[int, int]:
        return RANGES[self.dtype]


@dataclass
class Quantized(Lazy):
    """A QuantizeLinear's output: a `quantize` step only when something other than a matching DequantizeLinear
    reads it (which reads the pair as one `fake_quantize`)."""

    source: Any = None
    grid: Grid | None = None
    ctx: Ctx | None = None


# per open: each constant leaf of a scale or zero point in the shape it broadcasts in, and each integer
# initializer's dequantized parameter, so that a value used twice is one leaf
_LEAVES: weakref.WeakKeyDictionary[Reader, dict[tuple[int, tuple[int, ...]], Node]] = weakref.WeakKeyDictionary()
_PARAMETERS: weakref.WeakKeyDictionary[Reader, dict[tuple[Any, ...], Init]] = weakref.WeakKeyDictionary()


def known(r: Reader, value: Any) -> np.ndarray | None:
    """The value as an array when the file fixes it (scales are float initializers: not parameters here)."""
    if isinstance(value, Init):
        return value.array
    if value is None or isinstance(value, Quantized):
        return None
    return r.folded(value)


def _element_type(r: Reader, value: Any, fallback: int | None) -> str:
    """The integer type of a zero point (or of the integers themselves), else of `fallback` (ONNX's numbers)."""
    arr = known(r, value)
    if arr is not None and arr.dtype.name in RANGES:
        return arr.dtype.name
    if arr is not None:
        raise Unmapped(f"a zero point of type {arr.dtype.name} (propscope's grids are 8-, 16- and 32-bit integers)")
    if isinstance(value, Quantized) and value.grid is not None:
        return value.grid.dtype
    code = 2 if fallback is None else int(fallback)
    if code in _REFUSED:
        raise Unmapped(f"{_REFUSED[code]} quantization (propscope's grids are 8-, 16- and 32-bit integers)")
    if code not in _TYPES:
        raise Unmapped(f"quantization to ONNX type {code} (propscope's grids are 8-, 16- and 32-bit integers)")
    return _TYPES[code]


def grid_of(r: Reader, ins: list[Any], ctx: Ctx, shape: tuple[int, ...], data: Any = None) -> Grid:
    """The grid of a QuantizeLinear (ins: x, scale, zero point) or DequantizeLinear (its integers `data`), for a
    tensor of `shape`: one scale and zero point, or one per channel along the axis."""
    ndim = len(shape)
    block = int(ctx.attrs.get("block_size", 0) or 0)
    if block:
        raise Unmapped(f"blocked quantization (block_size={block}: a scale per block of {block} along an axis)")
    precision = int(ctx.attrs.get("precision", 0) or 0)
    if precision not in (0, 1, 11):
        raise Unmapped(f"QuantizeLinear computed in ONNX type {precision} (precision)")
    scale = ins[1]
    zero_point = ins[2] if len(ins) > 2 else None
    if data is not None and zero_point is None:
        dtype = _element_type(r, data, None)
    else:
        dtype = _element_type(r, zero_point, ctx.attrs.get("output_dtype"))
    scale_shape = r.shape(scale)
    if len(scale_shape) > 1:
        raise Unmapped(f"a scale of shape {scale_shape} (blocked quantization)")
    axis: int | None = None
    if scale_shape and scale_shape[0] != 1:
        axis = int(ctx.attrs.get("axis", 1))
        if not -ndim <= axis < ndim:
            raise Unmapped(f"axis {axis} of a {ndim}-D tensor")
        axis %= ndim
        if scale_shape[0] != shape[axis]:
            raise Unmapped(f"{scale_shape[0]} scales for {shape[axis]} channels along axis {axis}")
    if zero_point is not None and r.shape(zero_point) not in ((), (1,), scale_shape):
        raise Unmapped(f"a zero point of shape {r.shape(zero_point)} for scales of shape {scale_shape}")
    return Grid(scale, zero_point, axis, dtype)


def lazily(make: Callable[[], Node]) -> Callable[[], Node]:
    """A `quantize` step made when something reads the integers: a failure then is that reader's Unmapped (the
    reader's placeholder path, which also asks for its inputs, catches no other error)."""
    def run() -> Node:
        try:
            return make()
        except GraphError as exc:
            raise Unmapped(str(exc)) from None
    return run


def shaped(grid: Grid, ndim: int) -> tuple[int, ...]:
    """The shape a scale or zero point broadcasts in: () for one value, (C, 1, 1) along axis 1 of NCHW."""
    if grid.axis is None:
        return ()
    return (-1, *(1,) * (ndim - 1 - grid.axis))


def _leaf(r: Reader, value: Any, ctx: Ctx, role: str, shape: tuple[int, ...], dtype: str) -> Node:
    """A scale or zero point as a node shaped to broadcast: a constant leaf (a float initializer is a
    constant here, not a parameter), or a computed node reshaped."""
    if value is None:  # no zero point: 0
        return r.b.const(np.zeros((), dtype=dtype), ctx.module, role, name=f"{ctx.name}.{role}")
    arr = known(r, value)
    if arr is None:
        node = r.node(value, ctx, hint=role)
        if node.shape == tuple(d if d != -1 else node.shape[0] for d in shape):
            return node
        return r.b.op("reshape", node, name=f"{node.name}.shaped", module=ctx.module, attrs={"shape": shape})
    target = arr.reshape(shape) if shape else arr.reshape(())
    cache = _LEAVES.setdefault(r, {})
    key = (id(value), target.shape)
    if isinstance(value, Init) and key in cache:
        return cache[key]
    # an initializer's name as node names read (`/Relu_output_0_scale` -> `Relu_output_0_scale`)
    name = clean_name(value.name.strip("/").replace("/", ".")) if isinstance(value, Init) else f"{ctx.name}.{role}"
    leaf = r.b.leaf("constant", name, target, module=ctx.module, inline=not isinstance(value, Init))
    if isinstance(value, Init):
        cache[key] = leaf
    return leaf


def _attrs(grid: Grid, op: str) -> dict[str, Any]:
    if op == "dequantize":
        return {"float32_output": True}
    qmin, qmax = grid.bounds
    return {"qmin": qmin, "qmax": qmax, **_ONNX_GRID}


def grid_op(r: Reader, op: str, x: Any, grid: Grid, ctx: Ctx, name: str | None = None, **meta: Any) -> Node:
    """`fake_quantize`, `quantize` or `dequantize` of x on `grid`."""
    node = r.node(x, ctx)
    shape = shaped(grid, len(node.shape))
    if grid.axis is not None and known(r, grid.scale) is not None \
            and known(r, grid.scale).size != node.shape[grid.axis]:  # type: ignore[union-attr]
        raise Unmapped(f"{known(r, grid.scale).size} scales for {node.shape[grid.axis]} "  # type: ignore[union-attr]
                       f"channels along axis {grid.axis}")
    scale = _leaf(r, grid.scale, ctx, "scale", shape, "float32")
    zero = _leaf(r, grid.zero_point, ctx, "zero_point", shape, grid.dtype)
    return r.b.op(op, node, scale, zero, name=name or ctx.name, module=ctx.module or node.module,
                  attrs=_attrs(grid, op), **meta)


def dequantized(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """(q − zp)·s of constant integers, as onnxruntime computes it: the difference made float32, times the
    float32 scale (one rounding each)."""
    s = np.asarray(scale, dtype=np.float32).reshape(shape)
    # int32 holds every difference of 8- and 16-bit levels: half the int64 temporary (the reader charges 12 bytes an
    # element for the difference, its float32 copy and the product)
    wide = np.int32 if np.asarray(q).dtype.itemsize <= 2 else np.int64
    zp = np.zeros((), dtype=wide) if zero_point is None else np.asarray(zero_point).reshape(shape)
    diff = np.asarray(q, dtype=wide) - zp.astype(wide)
    return diff.astype(np.float32) * s


def parameter_of(r: Reader, q: Any, grid: Grid, ctx: Ctx) -> Init | None:
    """A constant integer tensor dequantized: a float initializer (a parameter where a node uses it) named after
    the integer one; None where q, the scale or the zero point is not fixed in the file."""
    ints, scale = known(r, q), known(r, grid.scale)
    zero = known(r, grid.zero_point) if grid.zero_point is not None else np.zeros(())
    if ints is None or scale is None or zero is None or ints.dtype.kind not in "iu":
        return None
    shape = shaped(grid, ints.ndim)
    if grid.axis is not None and scale.size != ints.shape[grid.axis]:
        raise Unmapped(f"{scale.size} scales for {ints.shape[grid.axis]} channels along axis {grid.axis}")
    name = q.name if isinstance(q, Init) else (ctx.outputs[0] if ctx.outputs and ctx.outputs[0] else ctx.name)
    cache = _PARAMETERS.setdefault(r, {})
    key = (id(q), scale.tobytes(), zero.tobytes(), grid.axis)
    if isinstance(q, Init) and key in cache:
        return cache[key]
    charge(ints.size * (20 if ints.dtype.itemsize > 2 else 12), f"the dequantized {name!r}", r.where)  # at peak
    param = Init(name, dequantized(ints, scale, zero if grid.zero_point is not None else None, shape))
    if isinstance(q, Init):
        cache[key] = param
    return param


def _same(r: Reader, a: Any, b: Any) -> bool:
    if a is b:
        return True
    ka, kb = known(r, a), known(r, b)
    if ka is None or kb is None:
        return False
    return ka.size == kb.size and bool(np.array_equal(ka.reshape(-1), kb.reshape(-1)))


def _pairs(r: Reader, q: Quantized, grid: Grid) -> bool:
    """Whether a DequantizeLinear reads a QuantizeLinear's integers back on the same grid."""
    g = q.grid
    assert g is not None
    zero_a = g.zero_point if g.zero_point is not None else np.zeros((), dtype=g.dtype)
    zero_b = grid.zero_point if grid.zero_point is not None else np.zeros((), dtype=grid.dtype)
    return g.axis == grid.axis and _same(r, g.scale, grid.scale) and _same(r, zero_a, zero_b)


@onnx_op("QuantizeLinear")
def _quantize_linear(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    grid = grid_of(r, ins, ctx, r.shape(x))
    return Quantized(lazily(lambda: grid_op(r, "quantize", x, grid, ctx, original_op="QuantizeLinear")), source=x,
                     grid=grid, ctx=ctx)


@onnx_op("DequantizeLinear")
def _dequantize_linear(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    q = ins[0]
    if isinstance(q, Quantized) and q.grid is not None and q.ctx is not None:
        grid = grid_of(r, ins, ctx, r.shape(q.source), data=q)
        if _pairs(r, q, grid):
            qctx = q.ctx
            return grid_op(r, "fake_quantize", q.source, q.grid, qctx, name=qctx.name,
                           original_op="QuantizeLinear+DequantizeLinear")
    else:
        grid = grid_of(r, ins, ctx, r.shape(q), data=q)
    param = parameter_of(r, q, grid, ctx)
    if param is not None:
        return param
    return grid_op(r, "dequantize", q, grid, ctx, original_op="DequantizeLinear")


# -- quantize_dynamic: the grid chosen from the batch, products of integers --------------------------------
@onnx_op("DynamicQuantizeLinear")
def _dynamic_quantize_linear(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = r.node(ins[0], ctx)
    qmin, qmax = RANGES["uint8"]
    attrs = {"qmin": qmin, "qmax": qmax}
    scale = r.b.op("choose_qparams", x, name=f"{ctx.name}.scale", module=ctx.module, attrs={"part": "scale", **attrs},
                   original_op="DynamicQuantizeLinear")
    zero = r.b.op("choose_qparams", x, name=f"{ctx.name}.zero_point", module=ctx.module,
                  attrs={"part": "zero_point", **attrs}, original_op="DynamicQuantizeLinear")
    grid = Grid(scale, zero, None, "uint8")
    y = Quantized(lazily(lambda: r.b.op("quantize", x, scale, zero, name=ctx.name, module=ctx.module,
                                        attrs={**attrs, **_ONNX_GRID}, original_op="DynamicQuantizeLinear")),
                  source=x, grid=grid, ctx=ctx)
    return [y, scale, zero]


def _less_zero_point(r: Reader, value: Any, zero: Any, ctx: Ctx, axis: int | None, role: str) -> Node:
    """Integers less their zero point, as floats: a constant integer initializer becomes a parameter of those
    differences (in integer units) named after it; a computed one a `sub` step (none where there is no zero
    point)."""
    ints = known(r, value)
    zp = known(r, zero) if zero is not None else np.zeros((), dtype=np.int64)
    if ints is not None and zp is not None and ints.dtype.kind in "iu":
        along = None if zp.size == 1 else axis
        unit = np.ones(() if along is None else (zp.size,), dtype=np.float32)  # a grid of step 1: the integers
        param = parameter_of(r, value, Grid(unit, zero, along, ints.dtype.name), ctx)
        assert param is not None
        return r.node(param, ctx)
    node = r.node(value, ctx, hint=role)
    if zero is None or (zp is not None and not zp.any()):
        return node
    zp_shape = () if r.shape(zero) in ((), (1,)) else (-1, *(1,) * (len(node.shape) - 1 - (axis or 0)))
    return r.b.op("sub", node, _leaf(r, zero, ctx, f"{role}_zero_point", zp_shape, "float32"),
                  name=f"{ctx.name}.{role}_centred", module=ctx.module)


@onnx_op("MatMulInteger")
def _matmul_integer(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """(A − a_zp) @ (B − b_zp), exact in floats as long as the sums stay below 2²⁴ (float32) or 2⁵³ (float64);
    a_zp is per row of A, b_zp per column of B."""
    a_ndim = len(r.shape(ins[0]))
    b_ndim = len(r.shape(ins[1]))
    a = _less_zero_point(r, ins[0], ins[2] if len(ins) > 2 else None, ctx, a_ndim - 2, "A")
    b = _less_zero_point(r, ins[1], ins[3] if len(ins) > 3 else None, ctx, b_ndim - 1, "B")
    return r.b.op("matmul", a, b, name=ctx.name, module=ctx.module, original_op="MatMulInteger")


@onnx_op("ConvInteger")
def _conv_integer(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """Conv of (x − x_zp) with (w − w_zp) (w_zp per output channel), no bias: ONNX's Conv of the differences."""
    x = _less_zero_point(r, ins[0], ins[2] if len(ins) > 2 else None, ctx, None, "x")
    w = _less_zero_point(r, ins[1], ins[3] if len(ins) > 3 else None, ctx, 0, "w")
    return HANDLERS["Conv"](r, [x, w], ctx)


@onnx_op("com.microsoft.DynamicQuantizeLSTM")
def _dynamic_quantize_lstm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    raise Unmapped("onnxruntime's DynamicQuantizeLSTM (quantize_dynamic's LSTM with int8 weights and its own "
                   "integer kernels) is not read; quantize_dynamic(..., op_types_to_quantize=['MatMul', 'Gemm']) "
                   "leaves the LSTM in float")


# -- QOperator: an integer op is dequantize, the float op, quantize --------------------------------------
def _dequantized_input(r: Reader, value: Any, scale: Any, zero: Any, ctx: Ctx, axis: int, role: str) -> Any:
    """What DequantizeLinear(value, scale, zero) would read into: a float parameter for constant integers,
    `fake_quantize` where value is a QuantizeLinear's output on the same grid, else `dequantize`."""
    sub = Ctx("DequantizeLinear", f"{ctx.name}.{role}", ctx.module, None, {"axis": axis}, ctx.opset,
              (f"{ctx.outputs[0]}.{role}" if ctx.outputs else "",), r)
    return HANDLERS["DequantizeLinear"](r, [value, scale, zero], sub)


def _requantized(r: Reader, y: Node, scale: Any, zero: Any, ctx: Ctx) -> Quantized:
    sub = Ctx("QuantizeLinear", ctx.name, ctx.module, None, {}, ctx.opset, ctx.outputs, r)
    grid = grid_of(r, [y, scale, zero], sub, y.shape)
    return Quantized(lazily(lambda: grid_op(r, "quantize", y, grid, sub, name=f"{ctx.name}.quantized",
                                            original_op=ctx.op)), source=y, grid=grid, ctx=sub)


@onnx_op("QLinearConv")
def _qlinear_conv(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """QLinearConv(x, x_s, x_zp, w, w_s, w_zp, y_s, y_zp, B): the int32 bias on the grid x_s·w_s."""
    x = _dequantized_input(r, ins[0], ins[1], ins[2], ctx, 1, "x")
    w = _dequantized_input(r, ins[3], ins[4], ins[5], ctx, 0, "w")
    inputs = [x, w]
    if len(ins) > 8 and ins[8] is not None:
        xs, ws = known(r, ins[1]), known(r, ins[4])
        if xs is None or ws is None:
            raise Unmapped("QLinearConv whose scales are computed at run time")
        bias_scale = (np.asarray(xs, dtype=np.float32).reshape(-1) * np.asarray(ws, dtype=np.float32).reshape(-1))
        inputs.append(_dequantized_input(r, ins[8], bias_scale, None, ctx, 0, "bias"))
    conv = HANDLERS["Conv"](r, inputs, Ctx("Conv", f"{ctx.name}.conv", ctx.module, None, ctx.attrs, ctx.opset,
                                           (), r))
    return _requantized(r, conv, ins[6], ins[7], ctx)


@onnx_op("QLinearMatMul")
def _qlinear_matmul(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """QLinearMatMul(a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp): a per row, b per column."""
    a = _dequantized_input(r, ins[0], ins[1], ins[2], ctx, 0, "a")
    b = _dequantized_input(r, ins[3], ins[4], ins[5], ctx, -1, "b")
    product = HANDLERS["MatMul"](r, [a, b], Ctx("MatMul", f"{ctx.name}.matmul", ctx.module, None, {}, ctx.opset,
                                                (), r))
    return _requantized(r, product, ins[6], ins[7], ctx)


@onnx_op("com.microsoft.QGemm")
def _qgemm(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """onnxruntime's QGemm (what quantize_static's QOperator format writes for a Linear): Gemm of the dequantized
    A and B plus the int32 bias C on the grid a_s·b_s; requantized where y_scale is given, else float."""
    a = _dequantized_input(r, ins[0], ins[1], ins[2], ctx, 0, "A")
    b = _dequantized_input(r, ins[3], ins[4], ins[5], ctx, 0 if ctx.attrs.get("transB", 0) else 1, "B")
    inputs = [a, b]
    if len(ins) > 6 and ins[6] is not None:
        a_s, b_s = known(r, ins[1]), known(r, ins[4])
        if a_s is None or b_s is None:
            raise Unmapped("QGemm whose scales are computed at run time")
        bias_scale = np.asarray(a_s, dtype=np.float32).reshape(-1) * np.asarray(b_s, dtype=np.float32).reshape(-1)
        inputs.append(_dequantized_input(r, ins[6], bias_scale, None, ctx, 0, "C"))
    gemm = HANDLERS["Gemm"](r, inputs, Ctx("Gemm", f"{ctx.name}.gemm" if len(ins) > 7 else ctx.name, ctx.module,
                                           None, {k: v for k, v in ctx.attrs.items() if k != "beta"}, ctx.opset,
                                           () if len(ins) > 7 else ctx.outputs, r))
    if len(ins) > 7 and ins[7] is not None:
        return _requantized(r, gemm, ins[7], ins[8] if len(ins) > 8 else None, ctx)
    return gemm


@onnx_op("com.microsoft.MatMulNBits")
def _matmul_nbits(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    """A · Wᵀ, W (N, K) held as blocks of `block_size` `bits`-bit integers along K, packed into bytes (the first
    integer in the low bits), one scale per block and a zero point per block (packed the same way, or floats; by
    default the middle of the range): W = (q − zp)·s."""
    from .core import LinearProduct
    from .naming import parameter

    a = ctx.attrs
    k, n, bits, block = int(a["K"]), int(a["N"]), int(a.get("bits", 4)), int(a["block_size"])
    if bits not in (2, 4, 8) or block < 16 or block & (block - 1):
        raise Unmapped(f"{bits}-bit blocks of {block}")
    if len(ins) > 4 and ins[4] is not None:
        raise Unmapped("a g_idx (blocks in another order than K's)")
    packed, scales = known(r, ins[1]), known(r, ins[2])
    zero = known(r, ins[3]) if len(ins) > 3 and ins[3] is not None else None
    if packed is None or scales is None or (len(ins) > 3 and ins[3] is not None and zero is None):
        raise Unmapped("weights, scales or zero points computed at run time")
    blocks = -(-k // block)
    if packed.dtype != np.uint8 or packed.size != n * blocks * block * bits // 8 or scales.size != n * blocks:
        raise Unmapped(f"B of {packed.shape} and {scales.size} scales for K={k}, N={n} in blocks of {block}")
    charge(n * blocks * block * 24, f"the dequantized weight of {ctx.name!r}", r.where)
    q = _unpacked(packed.reshape(n, -1), bits)[:, :blocks * block].reshape(n, blocks, block)
    if zero is None:
        zp: np.ndarray = np.full((n, blocks, 1), 2 ** (bits - 1), dtype=np.float32)
    elif zero.dtype == np.uint8:
        zp = _unpacked(zero.reshape(n, -1), bits)[:, :blocks].astype(np.float32).reshape(n, blocks, 1)
    else:  # zero points as floats, in the input's type
        zp = zero.astype(np.float32).reshape(n, blocks, 1)
    weight = ((q.astype(np.float32) - zp) * scales.astype(np.float32).reshape(n, blocks, 1)).reshape(n, -1)[:, :k]
    name = ins[1].name if isinstance(ins[1], Init) else f"{ctx.name}.weight"
    w = parameter(r, Init(name, np.ascontiguousarray(weight)), ctx, "weight")
    w.meta["holds"] = f"{bits}-bit integers in blocks of {block}, dequantized as onnxruntime computes them"
    x = r.node(ins[0], ctx)
    if len(ins) > 5 and ins[5] is not None:
        return r.b.op("linear", x, w, parameter(r, ins[5], ctx, "bias", hint="bias"), name=ctx.name,
                      module=ctx.module, attrs={"transpose_weight": True})
    return LinearProduct(r, x, w, ctx)


def _unpacked(packed: np.ndarray, bits: int) -> np.ndarray:
    """Each row's bytes as the `bits`-bit integers they hold, the first in the low bits."""
    per = 8 // bits
    shifts = np.arange(per, dtype=np.uint8) * bits
    values = (packed[..., None] >> shifts) & np.uint8(2 ** bits - 1)
    return values.reshape(*packed.shape[:-1], packed.shape[-1] * per)

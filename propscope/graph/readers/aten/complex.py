"""Complex numbers, as rotary position embeddings use them (Meta's reference Llama and Llama 4, DeepSeek-V2, many
hand-written transformers): `view_as_complex` pairs a tensor's last axis into complex numbers, a product with
`polar(1, θ)` turns each pair by its angle, `view_as_real` makes the pairs real again.

propscope's graph holds real numbers only, so a complex tensor computed from the data is carried as its real pairs
(`Pairs`: a node whose last axis of 2 holds the real and imaginary parts, exactly what `view_as_real` gives) and a
complex product is written out as the real arithmetic it is: (a + bi)(c + di) = (ac − bd) + (ad + bc)i. Complex
values known when the model is read (the angles of the positions, a complex buffer) are NumPy's complex arrays,
folded as other constants are. Views and copies of a computed complex tensor (unsqueeze, slice, reshape, `.to`)
are the same views of its pairs, the pairs' axis kept last; any other use is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...ir import Node
from .._aten import (
    HANDLERS,
    PAIRS_HANDLERS,
    SCALAR_TYPES,
    Ctx,
    Missing,
    Translator,
    Unmapped,
    aten,
    op_key,
    self_arg,
)
from .._budget import fold_room

COMPLEX_USE = ("complex numbers computed from the data (read through view_as_complex, views and copies, a "
               "product with a complex or real constant or another such tensor, and view_as_real)")


@dataclass
class Pairs(Missing):
    """A complex tensor computed from the data, as the node of its real pairs (shape (..., 2)); any use other than
    a product or view_as_real is Missing's (refused with `reason`)."""

    node: Node | None = None


def complex_operand(t: Translator, value: Any) -> bool:
    """Whether `value` is a complex tensor: one computed (`Pairs`) or a complex constant."""
    if isinstance(value, Pairs):
        return True
    known = t.known(value)
    return known is not None and np.iscomplexobj(known)


def _parts(t: Translator, value: Any, ctx: Ctx, role: str) -> tuple[Any, Any]:
    """The real and imaginary parts of a complex operand: constants (arrays) or nodes of shape (..., 1)."""
    if isinstance(value, Pairs):
        assert value.node is not None
        return tuple(t.b.op("index", value.node, t.b.const(np.array([k]), ctx.module, f"{role}.{part}"),
                            name=f"{ctx.name}.{role}.{part}", module=ctx.module, attrs={"axis": -1})
                     for k, part in enumerate(("re", "im")))  # type: ignore[return-value]
    known = np.asarray(t.known(value))
    return known.real[..., None].astype(np.float64), known.imag[..., None].astype(np.float64)


def _product(t: Translator, u: Any, v: Any, ctx: Ctx, name: str) -> Node:
    """u·v of one node and one constant, or of two nodes."""
    if isinstance(u, np.ndarray) and isinstance(v, np.ndarray):
        return t.b.const(u * v, ctx.module, name)
    if isinstance(u, np.ndarray):
        u, v = v, u
    other = t.b.const(v, ctx.module, name) if isinstance(v, np.ndarray) else v
    return t.b.op("mul", u, other, name=f"{ctx.name}.{name}", module=ctx.module)


def complex_mul(t: Translator, x: Any, y: Any, ctx: Ctx) -> Any:
    """(a + bi)(c + di) = (ac − bd) + (ad + bc)i, of computed pairs and complex (or real) constants."""
    kx, ky = t.known(x), t.known(y)
    if kx is not None and ky is not None:
        fold_room((kx, ky), f"mul {ctx.name!r} of constants", t.where)
        return np.multiply(kx, ky)
    if (not isinstance(x, Pairs) and kx is None) or (not isinstance(y, Pairs) and ky is None):
        raise Unmapped("a product of a complex tensor and a real one computed from the data")
    a, b = _parts(t, x, ctx, "self")
    c, d = _parts(t, y, ctx, "other")
    real = t.b.op("sub", _product(t, a, c, ctx, "ac"), _product(t, b, d, ctx, "bd"), name=f"{ctx.name}.re",
                  module=ctx.module)
    imag = t.b.op("add", _product(t, a, d, ctx, "ad"), _product(t, b, c, ctx, "bc"), name=f"{ctx.name}.im",
                  module=ctx.module)
    return Pairs(COMPLEX_USE, t.b.op("concat", real, imag, name=ctx.name, module=ctx.module, attrs={"axis": -1}))


@aten("view_as_complex")
def _view_as_complex(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    shape = tuple(t.shape(x))
    if not shape or shape[-1] != 2:
        raise Unmapped(f"view_as_complex of a tensor whose last axis is not 2 long ({shape})")
    known = t.known(x)
    if known is not None:
        return known[..., 0] + 1j * known[..., 1]
    return Pairs(COMPLEX_USE, t.node(x, ctx))


@aten("view_as_real")
def _view_as_real(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    x = self_arg(a)
    if isinstance(x, Pairs):
        assert x.node is not None
        return x.node
    known = t.known(x)
    if known is None:
        raise Unmapped("view_as_real of a tensor that is not complex")
    return np.stack([known.real, known.imag], axis=-1)


@aten("polar", "complex")
def _polar(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    """polar(r, θ) = r·(cos θ + i sin θ); complex(re, im) = re + i·im: folded where both are known (a rotary
    embedding's angles of the positions), else the real pairs of the two parts."""
    op = op_key(ctx.target)
    u, v = (a["abs"], a["angle"]) if op == "polar" else (a["real"], a["imag"])
    ku, kv = t.known(u), t.known(v)
    if ku is not None and kv is not None:
        fold_room((ku, kv), f"{op} {ctx.name!r} of constants", t.where)
        return ku * np.exp(1j * kv) if op == "polar" else ku + 1j * kv
    if op == "polar":
        angle = t.node(v, ctx, "angle")
        u = t.node(u, ctx, "abs")
        parts = [t.b.op("mul", u, t.b.op(fn, angle, name=f"{ctx.name}.{fn}", module=ctx.module),
                        name=f"{ctx.name}.{part}", module=ctx.module) for fn, part in (("cos", "re"), ("sin", "im"))]
    else:
        parts = [t.node(u, ctx, "real"), t.node(v, ctx, "imag")]
    columns = [t.b.op("reshape", p, name=f"{ctx.name}.{k}", module=ctx.module, attrs={"shape": (*p.shape, 1)})
               for k, p in zip(("re", "im"), parts, strict=True)]
    return Pairs(COMPLEX_USE, t.b.op("concat", *columns, name=ctx.name, module=ctx.module, attrs={"axis": -1}))


# -- views of a computed complex tensor: the same view of its pairs, the pairs' axis kept last ---------------------
_SAME = ("clone", "contiguous", "alias", "lift_fresh_copy", "_to_copy", "to", "type_as")
_DIMS = {"unsqueeze": ("dim",), "slice": ("dim",), "select": ("dim",), "transpose": ("dim0", "dim1"),
         "squeeze": ("dim",)}
_SIZES = ("view", "reshape", "_unsafe_view", "expand")


def _pairs_view(t: Translator, a: dict[str, Any], ctx: Ctx) -> Any:
    op = op_key(ctx.target)
    x = self_arg(a)
    if not isinstance(x, Pairs):
        handler = HANDLERS.get(op)
        if handler is None:
            raise Unmapped("")
        return handler(t, a, ctx)
    assert x.node is not None
    if op in _SAME:
        if a.get("dtype") in SCALAR_TYPES:  # torch's real types (its complex ones, 9 to 11, keep the pairs)
            raise Unmapped("a cast of complex numbers to a real dtype")
        return x
    n = len(x.node.shape) - 1  # the complex tensor's own axes
    args = {**{k: v for k, v in a.items() if k not in ("self", "input")}, "self": x.node}
    if op in ("detach", "detach_copy"):
        pass  # the same cut of the gradient, on the pairs
    elif op in _DIMS:
        for key in _DIMS[op]:
            if isinstance(args.get(key), int):
                args[key] = args[key] % (n + 1 if op == "unsqueeze" else max(n, 1))
            elif isinstance(args.get(key), list | tuple):
                args[key] = [int(d) % max(n, 1) for d in args[key]]
    elif op in _SIZES:
        args["size" if "size" in args else "shape"] = [*args.get("size", args.get("shape", [])), 2]
    else:  # permute: the pairs' axis stays last
        args["dims"] = [*(int(d) % n for d in args["dims"]), n]
    shapes = [None if s is None else (*s, 2) for s in ctx.shapes]
    return Pairs(COMPLEX_USE, HANDLERS[op](t, args, Ctx(ctx.name, ctx.module, shapes, ctx.target)))


for _op in (*_SAME, *_DIMS, *_SIZES, "permute", "detach", "detach_copy"):
    PAIRS_HANDLERS[_op] = _pairs_view

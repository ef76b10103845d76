"""The ATen handlers, one module per op family (named as in `graph/ops/`); importing this package
registers them all in `_aten.HANDLERS`."""

from . import activations, attention, constants, conv, core, nn, norm, recurrent, shape  # noqa: F401

"""The ATen handlers, one module per op family (named as in `graph/ops/`); importing this package
registers them all in `_aten.HANDLERS`."""

from . import (  # noqa: F401  (each module registers its handlers)
    activations,
    attention,
    complex,
    constants,
    conv,
    core,
    distance,
    elementwise,
    higher_order,
    nn,
    norm,
    quantize,
    recurrent,
    reduce,
    resize,
    shape,
    symbolic,
)

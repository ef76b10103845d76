"""The ONNX operator handlers, one module per op family (named as in `graph/ops/`); importing this
package registers them all in `onnx_reader.HANDLERS`."""

# registration order: a later module overrides an earlier one; elementwise (Where) and nn (Dropout) extend
# constants, which they import first
from . import (  # noqa: F401
    activations,
    attention,
    constants,
    control,
    conv,
    core,
    elementwise,
    indexing,
    losses,
    naming,
    nn,
    norm,
    quantize,
    recurrent,
    reduce,
    resize,
    shape,
)

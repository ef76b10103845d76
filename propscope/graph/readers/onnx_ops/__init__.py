"""The ONNX operator handlers, one module per op family (named as in `graph/ops/`); importing this
package registers them all in `onnx_reader.HANDLERS`."""

from . import activations, attention, constants, conv, core, norm, recurrent, shape  # noqa: F401

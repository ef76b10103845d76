"""ONNX Dropout: the identity in inference, with its mask (all kept) when a model asks for it.

Training-mode Dropout draws a random mask; only ratio 0 (nothing dropped) is deterministic and maps. Inference is
training_mode false (opset 12 on), any Dropout of opsets 7 to 11, and is_test=1 before opset 7.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._aten import Unmapped
from ..onnx_reader import Ctx, Reader, onnx_op


@onnx_op("Dropout")
def _dropout(r: Reader, ins: list[Any], ctx: Ctx) -> Any:
    x = ins[0]
    training = r.folded(ins[2]) if len(ins) > 2 and ins[2] is not None else np.asarray(False)
    if ctx.opset < 7:  # Dropout-1 and -6: `is_test` says inference; its default, 0, is training
        training = np.asarray(not ctx.attrs.get("is_test", 0))
    if training is None:
        raise Unmapped("Dropout whose training flag is computed at run time")
    ratio = r.folded(ins[1]) if len(ins) > 1 and ins[1] is not None else np.asarray(ctx.attrs.get("ratio", 0.5))
    if bool(training) and (ratio is None or float(ratio) != 0.0):
        raise Unmapped("Dropout in training mode (a random mask; propscope's dropout op draws its own)")
    return [x, np.ones(r.shape(x), dtype=bool)]

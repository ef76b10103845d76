"""The quantize family's op table, where the catalog-wide checks look for one (`test_ops.py` and
`test_torch_backend.py` read `CASES` from every `tests/test_ops_*.py`). The cases, their checks and the quantized
files end to end are in `test_quantize.py`."""

from __future__ import annotations

from test_quantize import CASES

__all__ = ["CASES"]

"""Regression tests for the defects a review of the readers, the op families and the backends found.

Each test failed before its fix; the docstring says what a user met.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from opcheck import one_op

from propscope.backends.numpy import NumpyBackend
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import open_model
from propscope.graph.readers._pickle import load_weights_only


# -- a pickle whose memo spells out a tree of 2^depth values ------------------------------------------------
def _shared_reference_zip(depth: int, extra: object = None) -> bytes:
    """A torch.save zip whose pickle is a few hundred bytes but whose object, read as a tree, has 2^depth leaves."""
    value: object = [0.0]
    for _ in range(depth):
        value = (value, value)  # pickle's memo writes the second reference as one GET
    body = pickle.dumps({"laughs": value, "extra": extra}, protocol=2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", body)
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_a_pickle_of_shared_references_is_refused_in_one_line(tmp_path: Path) -> None:
    """A 150-byte state dict made the reader expand 2^depth copies: depth 22 took 25 s, depth 40 never ended."""
    data = _shared_reference_zip(23)
    assert len(data) < 1000
    with pytest.raises(ModelFormatError, match="nested values"):
        load_weights_only(data, "evil.pt", "the file")
    path = tmp_path / "evil.pt"
    path.write_bytes(_shared_reference_zip(60))
    with pytest.raises(ModelFormatError, match="nested values") as err:
        open_model(path, arch="xor")
    assert "\n" not in str(err.value)


def test_shared_and_long_plain_values_still_load() -> None:
    """The guard counts the tree, not the file: a long list and a little sharing are fine, and stay equal."""
    history = [float(i) for i in range(200_000)]
    value = load_weights_only(_shared_reference_zip(12, extra=history), "ok.pt", "the file")
    assert value["extra"] == history
    leaf = value["laughs"]
    for _ in range(12):
        assert isinstance(leaf, tuple) and leaf[0] == leaf[1]
        leaf = leaf[0]
    assert leaf == [0.0]


# -- triu / tril keep the other triangle at 0 even where x is infinite -------------------------------------------
@pytest.mark.parametrize(("op", "diagonal"), [("triu", 1), ("tril", -1), ("triu", 0)])
def test_a_causal_mask_of_minus_infinity_keeps_zeros(op: str, diagonal: int) -> None:
    """torch.full((T, T), -inf).triu(1), every causal attention mask, gave NaN below the diagonal on NumPy."""
    import torch

    x = np.full((2, 4, 4), -np.inf, dtype=np.float32)
    x[0, 1, 2] = np.nan
    node = one_op(op, [x], {"diagonal": diagonal})
    backend = NumpyBackend("float32")
    out = backend.forward(node, [backend.asarray(x)])
    expected = getattr(torch, op)(torch.tensor(x), diagonal).numpy()
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32

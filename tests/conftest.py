"""Test configuration: headless Qt, and markers that skip cleanly where torch or CUDA is missing."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

HAS_TORCH = importlib.util.find_spec("torch") is not None
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def _has_cuda() -> bool:
    if not HAS_TORCH:
        return False
    import torch

    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_torch = pytest.mark.skip(reason="PyTorch is not installed")
    skip_cuda = pytest.mark.skip(reason="no CUDA device")
    cuda = None
    for item in items:
        if "torch" in item.keywords and not HAS_TORCH:
            item.add_marker(skip_torch)
        if "cuda" in item.keywords:
            cuda = _has_cuda() if cuda is None else cuda
            if not cuda:
                item.add_marker(skip_cuda)


@pytest.fixture
def reference_dir() -> Path:
    """`../shared/reference`: the tutorial's programs, the truth for the examples."""
    if not REFERENCE.is_dir():
        pytest.skip(f"the shared reference programs are not at {REFERENCE}")
    return REFERENCE

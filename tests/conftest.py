"""Test configuration: headless Qt, and markers that skip cleanly where torch or CUDA is missing."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

HAS_TORCH = importlib.util.find_spec("torch") is not None
REFERENCE = Path(__file__).resolve().parent / "reference"


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
    """`tests/reference`: the tutorial's programs reproduced for the tests, the truth for the examples."""
    return REFERENCE


@pytest.fixture(scope="session")
def tutorial() -> ModuleType:
    """`tests/reference/tutorial.py`, imported by path (tests/ is not a package)."""
    name = "propscope_tests_tutorial"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REFERENCE / "tutorial.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]

"""`torchvision.models` for the readers that build architectures (torchvision's own, and transformers', which
imports torchvision when it is installed).

torchvision's wheels come per torch build, and a CUDA torchvision beside a CPU torch (what pip may resolve) fails in
its package `__init__`, registering its C operators (`torchvision::nms`). The model constructors are pure Python and
need none of them: when the ordinary import fails, the package is entered without running its `__init__` (a module
that only knows where its files are), and `torchvision.models` imports from there. Detection models, which call the
C operators, then fail when run, with torchvision's own message.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from typing import Any


def models() -> Any:
    """`torchvision.models`, or None when torchvision is not installed or cannot be imported even so."""
    if "torchvision.models" in sys.modules:
        return sys.modules["torchvision.models"]
    spec = importlib.util.find_spec("torchvision") if sys.modules.get("torchvision", True) is not None else None
    if spec is None or spec.origin is None:
        return None
    try:
        import torchvision  # noqa: F401  (a build whose extension loads: the ordinary way)
    except Exception:  # its extension failed (RuntimeError from the operator registration, or ImportError)
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        shell = types.ModuleType("torchvision")
        shell.__path__ = [os.path.dirname(spec.origin)]
        shell.__spec__ = spec  # transformers asks importlib about torchvision
        shell.__version__ = "unknown"  # type: ignore[attr-defined]
        sys.modules["torchvision"] = shell
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    try:
        import torchvision.models as found
    except Exception:
        return None
    return found

"""Spare every later import PySide6's source scan (what makes `import torch` in the app 0.5 s slower).

Once `PySide6.QtCore` is imported, shiboken replaces `__import__` and, after each module imported from then
on, reads that module's whole source file to see whether it mentions "PySide6" (`_mod_uses_pyside` in
shiboken's embedded `shibokensupport/feature.py`, PySide 6.2 and later). The answer only serves PySide's
opt-in `from __feature__ import snake_case, true_property`: 0 marks a module that uses Qt (no feature
selected), -1 one to ignore; a module that does select a feature records its choice itself, whatever the scan
said. The scan costs ~16 ms of the app's start (120 modules) and, measured here, 0.56 s on top of torch's 1.6 s
import when the PyTorch backend is first chosen in the window (some 1,500 files read).

`skip_known_modules` answers for the modules whose answer is known without reading them: the standard library
and the scientific packages propscope loads (none of them imports Qt), propscope's own headless packages (no
module outside `propscope.gui` mentions Qt: `tests/test_imports.py` checks it), and `propscope.gui` (Qt by
design; a helper module there that does not mention Qt is marked 0 rather than -1, which differs only for a
module that selects a `__feature__`, which propscope never does). Every other module is scanned as before.
Where shiboken's internals differ (another PySide6 version), nothing is changed.
"""

from __future__ import annotations

import sys
from types import ModuleType

import PySide6.QtCore  # noqa: F401  (shiboken's import hook is in place once QtCore is loaded)

# top-level packages that never import Qt, whose modules the scan would read one by one
HEADLESS_PACKAGES = frozenset({
    "numpy", "torch", "torchvision", "functorch", "onnx", "onnxscript", "onnx_ir", "onnxruntime", "google",
    "ml_dtypes", "transformers", "tokenizers", "safetensors", "huggingface_hub", "scipy", "sympy", "mpmath",
    "networkx", "psygnal", "jinja2", "markupsafe", "yaml", "fsspec", "filelock", "packaging", "tqdm", "regex",
    "requests", "urllib3", "certifi", "charset_normalizer", "idna", "typing_extensions", "opt_einsum",
})


def uses_qt_by_name(name: str) -> bool | None:
    """Whether module `name` uses Qt, where its name says so; None where only its source can tell."""
    top = name.partition(".")[0]
    if top == "propscope":
        return name == "propscope.gui" or name.startswith("propscope.gui.")
    if top in HEADLESS_PACKAGES or top in sys.stdlib_module_names:
        return False
    return None


def skip_known_modules() -> bool:
    """Answer shiboken's per-import question from the module's name where it can; True where installed."""
    feature = sys.modules.get("shibokensupport.feature")
    scan = getattr(feature, "_mod_uses_pyside", None)
    if feature is None or scan is None or getattr(scan, "propscope_skips_known", False):
        return scan is not None and getattr(scan, "propscope_skips_known", False)

    def uses_pyside(module: ModuleType) -> bool:
        known = uses_qt_by_name(getattr(module, "__name__", "") or "")
        return scan(module) if known is None else known

    uses_pyside.propscope_skips_known = True  # type: ignore[attr-defined]
    feature._mod_uses_pyside = uses_pyside  # type: ignore[union-attr]
    return True


skip_known_modules()

"""Model readers, one module per format, registered in one table (as Netron registers its formats).

Each reader has `match(path) -> bool` and `open(path) -> Model`, and reports problems as
`ModelFormatError` with a sentence a user can act on.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from ..errors import ModelFormatError
from ..examples import EXAMPLES, UnknownExampleError, load_example
from ..model import Model
from . import native

READERS: list[tuple[str, ModuleType]] = [
    ("propscope", native),
]


def open_model(path: str | Path) -> Model:
    path = Path(path)
    if not path.exists():
        raise ModelFormatError(f"{path}: no such file")
    if not path.is_file():
        raise ModelFormatError(f"{path}: not a file")
    for _, reader in READERS:
        if reader.match(path):
            return reader.open(path)
    known = ", ".join(name for name, _ in READERS)
    raise ModelFormatError(f"{path}: not a model format propscope reads (known: {known})")


def load_target(target: str | Path, seed: int = 0) -> Model:
    """An example by name, or a model file by path."""
    text = str(target)
    if text in EXAMPLES:
        return load_example(text, seed)
    path = Path(text)
    if path.exists() or path.suffix or "/" in text:
        return open_model(path)
    raise UnknownExampleError(f"unknown example {text!r} and no such file; known examples: {', '.join(EXAMPLES)}")


save_model = native.save

__all__ = ["READERS", "load_target", "open_model", "save_model"]

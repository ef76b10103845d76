"""File ▸ Open of a TorchScript archive in the app: a traced one opens at the shapes it records; a scripted one, which
records none, first asks for its inputs' shapes in a small dialog (prefilled from its first layer), then opens at
them; Cancel leaves the window as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import propscope
from propscope.gui.input_shape import InputShapeDialog, asks_input_shapes, parse_shape
from propscope.gui.main_window import MainWindow
from propscope.gui.opening import is_state_dict

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
              pytest.mark.qt_log_level_fail("WARNING")]


class _Convolutional(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class _Tokens(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(20, 8)
        self.head = torch.nn.Linear(8, 20)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embed(ids)))


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scripted")
    torch.manual_seed(0)
    paths = {"conv": folder / "conv.pt", "tokens": folder / "tokens.pt", "traced": folder / "traced.pt"}
    torch.jit.script(_Convolutional()).save(str(paths["conv"]))
    torch.jit.script(_Tokens()).save(str(paths["tokens"]))
    torch.jit.trace(_Convolutional(), torch.randn(2, 3, 12, 12)).save(str(paths["traced"]))
    return paths


@pytest.fixture
def window(qtbot: Any, tmp_path: Path) -> Any:
    from PySide6.QtCore import QSettings

    settings = QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat)
    w = MainWindow(propscope.open_session("xor"), settings=settings)
    qtbot.addWidget(w)
    w.resize(1000, 700)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def _asked(window: Any, path: Path) -> InputShapeDialog:
    assert window.open_path(path) is None  # first the question: at which shape?
    dialog = window.open_dialog
    assert isinstance(dialog, InputShapeDialog) and dialog.isVisible()
    return dialog


def test_a_scripted_archive_asks_its_input_shape_then_opens_at_it(qtbot: Any, window: Any,
                                                                  archives: dict[str, Path]) -> None:
    dialog = _asked(window, archives["conv"])
    field = dialog.fields["x"]
    assert field.text() == "1,3,224,224"  # 3 channels: the first convolution's weight says so
    field.setText("2, 3, 16, 16")
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=60000):
        dialog.accept()
    graph = window.bridge.session.graph
    assert graph.inputs[0].shape == (2, 3, 16, 16) and graph.output.shape == (2, 2)
    assert "interpreted, never run" in window.bridge.session.model.description


def test_token_ids_are_offered_as_integers(qtbot: Any, window: Any, archives: dict[str, Path]) -> None:
    dialog = _asked(window, archives["tokens"])
    assert dialog.fields["ids"].text() == "1,16" and "token ids" in dialog.intro.text()
    dialog.fields["ids"].setText("3,5")
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=60000):
        dialog.accept()
    ids = window.bridge.session.graph.inputs[0]
    assert ids.shape == (3, 5) and ids.meta["dtype"] == "int64"
    assert window.bridge.session.graph.output.shape == (3, 5, 20)


def test_cancel_and_a_wrong_shape_leave_the_window_as_it_was(qtbot: Any, window: Any,
                                                             archives: dict[str, Path]) -> None:
    before = window.bridge.session
    dialog = _asked(window, archives["conv"])
    dialog.fields["x"].setText("1,3,two")
    dialog.accept()
    assert dialog.isVisible() and "x: sizes are whole numbers" in dialog.error.text()
    dialog.reject()
    qtbot.wait(50)
    assert window.bridge.session is before and not window.jobs


def test_a_traced_archive_opens_without_a_question(qtbot: Any, window: Any, archives: dict[str, Path]) -> None:
    assert not is_state_dict(archives["traced"]) and not is_state_dict(archives["conv"])  # their own graphs
    assert not asks_input_shapes(archives["traced"]) and asks_input_shapes(archives["conv"])
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=60000):
        job = window.open_path(archives["traced"])
    assert job is not None and window.bridge.session.graph.inputs[0].shape == (2, 3, 12, 12)


def test_a_shape_is_read_as_typed_or_refused() -> None:
    assert parse_shape("1x3x32x32") == parse_shape(" 1, 3, 32, 32") == (1, 3, 32, 32)
    for wrong in ("", "1,,3", "1,-3", "1," * 9 + "1", "0,3"):
        with pytest.raises(ValueError):
            parse_shape(wrong)

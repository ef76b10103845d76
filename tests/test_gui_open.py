"""Opening models in the app: File > Open for every reader, drag and drop, recent files, state dicts with their
architecture and report, unsupported ops, data, and failures that leave the session untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QLabel

import propscope
from propscope.graph.ir import Graph
from propscope.graph.model import Model
from propscope.graph.readers import READERS, save_model
from propscope.graph.readers.state_dict import write_safetensors
from propscope.gui import main_window
from propscope.gui.canvas.folding import BOX_PREFIX
from propscope.gui.main_window import MainWindow
from propscope.gui.opening import ArchDialog, is_model_file, model_suffixes, open_filter

pytestmark = [pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints"),
              pytest.mark.qt_log_level_fail("WARNING")]


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def window(qtbot, settings):
    w = MainWindow(propscope.open_session("xor"), settings=settings)
    qtbot.addWidget(w)
    w.resize(1200, 800)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def wait_opened(qtbot, window, job):
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=60000):
        pass
    assert job is None or not job.running


def test_the_open_dialog_offers_every_reader():
    suffixes = model_suffixes()
    for suffix in (".propscope", ".pt2", ".onnx", ".pt", ".pth", ".safetensors"):
        assert suffix in suffixes and f"*{suffix}" in open_filter()
    assert open_filter().count(";;") == len(READERS) + 1  # all models, one line per reader, all files
    assert is_model_file("a/b.ONNX") and not is_model_file("notes.txt")


@pytest.mark.parametrize("name, data", [
    ("broken.pt2", b"PK\x03\x04 not really a zip"),
    ("broken.onnx", b"\x08\x07\x12\x04junk" * 3),
    ("empty.propscope", b""),
    ("random.safetensors", bytes(range(256)) * 4),
])
def test_a_corrupt_file_shows_what_is_wrong_and_leaves_the_session(qtbot, window, tmp_path, name, data):
    bad = tmp_path / name
    bad.write_bytes(data)
    s = window.bridge.session
    s.seek(5)
    title = window.windowTitle()
    job = window.open_path(bad, arch="xor") if name.endswith(".safetensors") else window.open_path(bad)
    with qtbot.waitSignal(job.failed, timeout=60000):
        pass
    assert window.bridge.session is s and s.cursor == 5 and window.windowTitle() == title
    assert name in window.last_error and "Traceback" not in window.last_error
    assert window.error_box.isVisible()
    assert window.recent.paths() == []
    window.error_box.close()


def test_drag_and_drop_opens_a_model_and_updates_recent_files(qtbot, window, tmp_path):
    path = tmp_path / "dropped.propscope"
    save_model(propscope.open_session("cnn").model, path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPoint(400, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(400, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=60000):
        QApplication.sendEvent(window, drop)
    s = window.bridge.session
    assert s.name == "dropped" and "conv1" in s.graph
    assert window.recent.paths() == [str(path.resolve())]
    # a text file is refused at the door
    other = QMimeData()
    other.setUrls([QUrl.fromLocalFile(str(tmp_path / "notes.txt"))])
    refused = QDragEnterEvent(QPoint(1, 1), Qt.DropAction.CopyAction, other, Qt.MouseButton.LeftButton,
                              Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, refused)
    assert not refused.isAccepted()


def test_recent_files_menu_lists_newest_first_and_reopens(qtbot, window, settings, tmp_path):
    paths = []
    for name in ("first", "second"):
        path = tmp_path / f"{name}.propscope"
        save_model(propscope.open_session("xor").model, path)
        wait_opened(qtbot, window, window.open_path(path))
        paths.append(str(path.resolve()))
    assert window.recent.paths() == paths[::-1]
    assert settings.value("recent/files") == paths[::-1]  # kept in QSettings for the next start
    window.recent.fill(window.recent_menu, window.open_path)
    entries = [a for a in window.recent_menu.actions() if a.data()]
    assert [a.data() for a in entries] == paths[::-1] and "first.propscope" in entries[1].text()
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=60000):
        entries[1].trigger()
    assert window.bridge.session.name == "first"
    assert window.recent.paths() == paths


def test_a_state_dict_asks_for_its_architecture_and_reports_what_matched(qtbot, window, tmp_path):
    xor = propscope.open_session("xor")
    weights = {k: v + 1.0 for k, v in xor.parameters_numpy().items() if k != "b2"}
    weights["extra.weight"] = np.zeros(3)
    weights["W1"] = np.asarray(weights["W1"], dtype=np.float32)
    path = write_safetensors(weights, tmp_path / "xor.safetensors")
    assert window.open_path(path) is None  # first the question: which network?
    dialog = window.open_dialog
    assert isinstance(dialog, ArchDialog) and dialog.isVisible()
    dialog.example.setCurrentIndex(dialog.example.findData("xor"))
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=60000):
        dialog.accept()
    s = window.bridge.session
    np.testing.assert_allclose(s.parameters_numpy()["W1"], weights["W1"])
    np.testing.assert_allclose(s.parameters_numpy()["b2"], xor.parameters_numpy()["b2"])  # missing: kept
    report = window.last_report
    assert "b2" in report.missing and report.unexpected == ["extra.weight"] and "W1" in report.matched
    text = window.report_dialog.text.toPlainText()
    assert "Missing" in text and "extra.weight" in text and "Matched: 3" in text
    window.report_dialog.close()


def test_a_state_dict_of_another_network_is_refused(qtbot, window, tmp_path):
    path = write_safetensors({"nothing.like.this": np.zeros(2)}, tmp_path / "other.safetensors")
    before = window.bridge.session
    job = window.open_path(path, arch="xor")
    with qtbot.waitSignal(job.failed, timeout=60000):
        pass
    assert window.bridge.session is before and "right architecture" in window.last_error
    window.error_box.close()


def unsupported_model() -> Model:
    g = Graph("odd")
    x = g.input("x", (4, 3))
    w, b = g.parameter("fc.weight", (3, 3), module="fc"), g.parameter("fc.bias", (3,), module="fc")
    h = g.add("linear", x, w, b, name="fc", module="fc")
    odd = g.add("unsupported", h, name="cumsum_1", attrs={"original_op": "aten.cumsum", "shape": (4, 3)},
                original_op="aten.cumsum", reason="no catalog op for it")
    g.set_outputs(g.add("relu", odd, name="out"))
    rng = np.random.default_rng(0)
    return Model(g, {"fc.weight": rng.standard_normal((3, 3)), "fc.bias": np.zeros(3)},
                 batch={"x": rng.standard_normal((4, 3))})


def test_unsupported_ops_are_marked_listed_and_stop_stepping(qtbot, window, tmp_path):
    path = save_model(unsupported_model(), tmp_path / "odd.propscope")
    wait_opened(qtbot, window, window.open_path(path))
    assert "aten.cumsum" in window.last_warning and "cumsum_1" in window.last_warning
    window.warning_box.close()
    scene = window.canvas.graph_scene
    assert scene.nodes["cumsum_1"].kind == "unsupported" and "aten.cumsum" in scene.nodes["cumsum_1"].subtitle
    s = window.bridge.session
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert s.cursor == s.node_phase_index("cumsum_1", "forward")  # stopped just before it
    assert "aten.cumsum" in window.status_message.text() and "not supported" in window.status_message.text()
    qtbot.keyClick(window, Qt.Key.Key_F10)
    assert s.cursor == s.node_phase_index("cumsum_1", "forward")


def test_data_from_a_file_or_generated_and_bad_data_leaves_the_session(qtbot, window, tmp_path):
    s = window.bridge.session
    data = tmp_path / "more.npz"
    rng = np.random.default_rng(1)
    np.savez(data, x=rng.standard_normal((7, 2)), y=rng.integers(0, 2, (7, 1)).astype(float))
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=10000):
        assert window.load_data_path(data)
    assert s.batch["X"].shape == (7, 2) and s.graph["X"].shape == (7, 2)
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert s.grad("W1") is not None
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3,4\n5,6,7,8\n")  # three features where the model reads two
    s.seek(3)
    assert not window.load_data_path(bad)
    assert s.batch["X"].shape == (7, 2) and s.cursor == 3
    assert "expected shape" in window.last_error
    window.error_box.close()
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=10000):
        assert window.generate_batch(seed=4)
    assert s.batch["X"].shape == s.model.graph["X"].shape and s.batch["y"].shape == (4, 1)


def test_the_data_dialog_shows_the_inputs(qtbot, window):
    window._data_dialog()
    dialog = window.data_dialog
    assert dialog.isVisible()
    text = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert "<code>X</code>: 4×2" in text and "sse loss" in text
    dialog.generate.setChecked(True)
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=10000):
        dialog.accept()
    assert "Generated data" in window.status_message.text()


def test_cuda_is_offered_only_when_torch_finds_it(qtbot, window, monkeypatch):
    keys = [window.backend_box.itemData(i) for i in range(window.backend_box.count())]
    assert keys == ["numpy", "torch"]
    monkeypatch.setattr(main_window, "backend_devices", lambda name: ["cpu"])
    window._offer_devices()
    assert window.backend_box.count() == 2
    monkeypatch.setattr(main_window, "backend_devices", lambda name: ["cpu", "cuda:0"])
    window._offer_devices()
    assert window.backend_box.itemData(2) == "torch:cuda:0" and "CUDA" in window.backend_box.itemText(2)


def test_without_torch_compare_is_shown_unavailable_with_the_install_command(qtbot, settings, monkeypatch):
    monkeypatch.setattr(main_window, "torch_available", lambda: False)
    w = MainWindow(propscope.open_session("xor"), settings=settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    assert not w.compare_action.isEnabled() and "pip install" in w.compare_action.toolTip()
    assert not w.diff_view.backends.isEnabled()  # the Diff dock's NumPy vs PyTorch is the same action
    w.close()


@pytest.mark.torch
def test_a_pt2_export_opens_folded_by_module(qtbot, window, tmp_path):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh())
            self.head = nn.Linear(6, 1)

        def forward(self, x):
            return torch.sigmoid(self.head(self.encoder(x)))

    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(Net(), (torch.randn(4, 2),)), str(path))
    wait_opened(qtbot, window, window.open_path(path))
    s = window.bridge.session
    assert s.name == "net" and "encoder.0.weight" in s.graph
    assert BOX_PREFIX + "encoder" in window.canvas.folding.units
    window.canvas.toggle_fold(BOX_PREFIX + "encoder")
    assert BOX_PREFIX + "encoder" in window.canvas.graph_scene.nodes
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert s.at_end


def test_a_cancelled_open_keeps_the_session(qtbot, window, tmp_path):
    path = Path(save_model(propscope.open_session("cnn").model, tmp_path / "cnn.propscope"))
    before = window.bridge.session
    job = window.open_path(path)
    job.cancel()
    qtbot.waitUntil(lambda: not job.running, timeout=30000)
    qtbot.wait(50)
    assert window.bridge.session is before and window.recent.paths() == []


@pytest.fixture
def default_budget_after():
    from propscope.graph.readers._budget import set_max_memory

    yield
    set_max_memory(None)  # the budget is process-wide: the next test starts from the default


def test_the_memory_budget_set_in_the_app_bounds_the_next_open_and_is_remembered(
        qtbot, window, settings, tmp_path, default_budget_after, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from propscope.graph.readers._budget import current_limit, default_budget, max_memory_override, set_max_memory

    path = tmp_path / "cnn.propscope"
    save_model(propscope.open_session("cnn").model, path)
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("2K", True)))  # File ▸ Memory budget…
    window.memory_action.trigger()
    assert current_limit() == 2048 and settings.value(main_window.MEMORY_KEY) == "2K"
    s = window.bridge.session
    job = window.open_path(path)
    with qtbot.waitSignal(job.failed, timeout=60000):
        pass
    assert window.bridge.session is s and "memory" in window.last_error and "cnn.propscope" in window.last_error
    window.error_box.close()
    assert not window.set_memory_budget("lots")  # not a size: said, and the budget stays
    assert "512M" in window.last_error and current_limit() == 2048
    window.error_box.close()
    window.close()  # the next start (the process-wide budget back to the default): the setting comes back
    set_max_memory(None)
    again = MainWindow(propscope.open_session("xor"), settings=settings)
    qtbot.addWidget(again)
    assert current_limit() == 2048
    assert again.set_memory_budget("")  # empty: back to the default, half the available memory
    assert max_memory_override() is None and current_limit() == default_budget()
    wait_opened(qtbot, again, again.open_path(path))
    assert again.bridge.session.graph.name == propscope.open_session("cnn").graph.name
    again.close()


def test_a_loss_chosen_in_the_debug_menu_gives_an_opened_model_its_backward_pass(qtbot, window, tmp_path):
    """A model file comes without a loss (forward only), and the chain-rule dock says where to attach one. Debug >
    Loss attaches it, with a target drawn until File > Load data gives the user's; "None" takes it away again."""
    import torch
    from torch import nn

    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 4))
    path = tmp_path / "classifier.pt2"
    torch.export.save(torch.export.export(net, (torch.randn(5, 3),)), str(path))
    wait_opened(qtbot, window, window.open_path(path))
    s = window.bridge.session
    checked = {a.data(): a for a in window.loss_actions.actions()}
    assert s.loss_name is None and checked["none"].isChecked() and "Debug ▸ Loss" in window.chain.html()
    window.selection.select(s.graph.ops[0].name)
    assert "no loss" in window.inspector.grad_panel.empty.text()  # not "it arrives during the backward pass"

    def choose(loss):
        with qtbot.waitSignal(window.bridge.sessionChanged, timeout=30000):
            checked[loss].trigger()
        assert checked[loss].isChecked()
        return window.bridge.session

    s = choose("cross_entropy")
    assert s.loss_name == "cross_entropy" and s.loss_node is not None
    assert "drawn at random" in window.status_message.text()
    assert s.batch["y"].shape == (5,) and set(np.unique(s.batch["y"])) <= set(range(4))
    assert "Debug ▸ Loss" not in window.chain.html()
    window.selection.select(s.graph.ops[0].name)
    assert "arrives during the backward pass" in window.inspector.grad_panel.empty.text()
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert s.at_end and s.grad("0.weight") is not None and window.position.text() == s.position_text()
    x = s.batch[s.graph.inputs[0].name]
    s = choose("mse")  # class ids do not fit mse: a target of the logits' shape is drawn; the inputs stay
    assert s.batch["y"].shape == (5, 4) and np.array_equal(s.batch[s.graph.inputs[0].name], x)
    s = choose("none")
    assert s.loss_node is None
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert s.at_end and s.cursor == len(s.graph.ops)


def test_a_file_named_like_an_example_is_shown_as_a_file(qtbot, window, tmp_path):
    """`cnn.propscope` is not the built-in `cnn`: the title names the file's stem, the example box says (file),
    whether it was opened with File ▸ Open or given to `propscope open`."""
    path = tmp_path / "cnn.propscope"
    save_model(propscope.open_session("cnn").model, path)
    wait_opened(qtbot, window, window.open_path(path))
    assert window.example_box.currentText() == "(file)" and "propscope — cnn (" in window.windowTitle()
    from_cli = MainWindow(propscope.open_session(str(path)), settings=None)
    qtbot.addWidget(from_cli)
    assert from_cli.example_box.currentText() == "(file)" and from_cli.windowTitle() == window.windowTitle()
    window.open_example("cnn")
    qtbot.waitUntil(lambda: window.example_box.currentText() == "cnn", timeout=60000)

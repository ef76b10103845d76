"""A photo as data for a vision model (`--data photo.jpg`, File ▸ Load data): read with Pillow, its pixels / 255,
RGB or grey as the model's image input takes, resized to that input's height and width, a batch of one. A file that
is not an image, or claims more pixels than propscope reads, is one line."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import propscope
from propscope.graph.datasets import DataError, image_batch, is_image, load_data, load_image


def _photo(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    """A width × height RGB image: the left half pure red, the right half pure blue, a green bar along the top."""
    width, height = size
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2, 0] = 255
    pixels[:, width // 2:, 2] = 255
    pixels[:2, :, 1] = 255
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small convolutional network on (N, 3, 16, 24) images, exported with torch.export."""
    torch = pytest.importorskip("torch")

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2))
    path = tmp_path_factory.mktemp("image-model") / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.rand(2, 3, 16, 24),)), str(path))
    return path


def test_an_image_becomes_the_models_image_input_rgb_in_order(rgb_model: Path, tmp_path: Path) -> None:
    photo = _photo(tmp_path / "photo.png")
    s = propscope.open_session(rgb_model, data=photo, loss="none")
    x = s.batch[s.graph.inputs[0].name]
    assert x.shape == (1, 3, 16, 24) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x[0, 0, 8, 2] == 1.0 and x[0, 2, 8, 2] == 0.0  # left: red
    assert x[0, 2, 8, 21] == 1.0 and x[0, 0, 8, 21] == 0.0  # right: blue
    assert x[0, 1, 0, 12] > 0.5 and x[0, 1, 12, 12] == 0.0  # the green bar stays on top
    s.run_to_end()
    assert s.at_end


def test_a_grey_model_gets_grey_pixels_and_a_label_file_still_gives_the_target(tmp_path: Path) -> None:
    photo = _photo(tmp_path / "photo.jpg", (64, 48))
    s = propscope.open_session("cnn", data=photo, loss="none")  # the CNN lesson reads (N, 1, 8, 8) digits
    assert s.batch["x"].shape == (1, 1, 8, 8)
    with pytest.raises(DataError, match="no target array 'y' for the cross_entropy loss"):
        propscope.open_session("cnn", data=photo)  # a photo has no label: the loss needs one


def test_load_data_reads_an_image_at_its_own_size(tmp_path: Path) -> None:
    photo = _photo(tmp_path / "photo.bmp", (20, 10))
    assert is_image(photo) and not is_image(tmp_path / "data.npz")
    assert load_data(photo)["x"].shape == (1, 3, 10, 20)
    assert load_image(photo, (5, 7), channels=1).shape == (1, 1, 5, 7)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width × height pixels, with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("make", [
    lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40) and p,  # a PNG cut short
    lambda p: p.write_bytes(np.random.default_rng(0).bytes(300)) and p,  # not an image at all
    lambda p: _png_header_only(p, 30_000, 30_000),  # 900M pixels claimed
], ids=["truncated", "noise", "too-many-pixels"])
def test_a_bad_image_is_one_line(rgb_model: Path, tmp_path: Path, make: Any) -> None:
    path = make(tmp_path / "bad.png")
    with pytest.raises(DataError) as caught:
        propscope.open_session(rgb_model, data=path, loss="none")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_model_without_an_image_input_says_what_it_takes(tmp_path: Path) -> None:
    photo = _photo(tmp_path / "photo.png")
    with pytest.raises(DataError, match=r"no \(batch, 1 or 3 channels, height, width\) input \(its inputs: X \(4, 2\)"):
        image_batch(photo, propscope.open_session("xor").graph.inputs)


@pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")
def test_the_app_loads_a_photo_as_data(qtbot: Any, rgb_model: Path, tmp_path: Path) -> None:
    from PySide6.QtCore import QSettings

    from propscope.gui.main_window import MainWindow

    window = MainWindow(propscope.open_session(rgb_model, loss="none"),
                        settings=QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    assert window.load_data_path(_photo(tmp_path / "photo.png"))
    s = window.bridge.session
    assert s.batch[s.graph.inputs[0].name].shape == (1, 3, 16, 24)
    assert "Data from photo.png" in window.status_message.text()
    assert not window.load_data_path(tmp_path / "missing.png")  # said in a dialog; the session stays
    assert window.bridge.session.batch[s.graph.inputs[0].name].shape == (1, 3, 16, 24)
    window.close()

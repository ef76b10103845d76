"""A photo as data for a vision model (`--data photo.jpg`, File ▸ Load data): read with Pillow, its pixels / 255,
RGB or grey as the model's image input takes, resized to that input's height and width, a batch of one. A file that
is not an image, or claims more pixels than propscope reads, is one line."""

from __future__ import annotations

import importlib
import importlib.util
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import propscope
from propscope.graph.datasets import (
    DataError,
    fit_text,
    image_batch,
    image_note,
    is_image,
    load_data,
    load_image,
    pixel_scale_text,
)


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


def test_a_grey_model_gets_grey_pixels_and_a_photo_without_a_label_gets_one_drawn(tmp_path: Path) -> None:
    """A photo has no label, and a jpg cannot be given one: the loss's target is drawn (seeded), as for a model opened
    without data, and marked drawn (not the user's: a save says so, another loss draws its own)."""
    photo = _photo(tmp_path / "photo.jpg", (64, 48))
    s = propscope.open_session("cnn", data=photo, loss="none")  # the CNN lesson reads (N, 1, 8, 8) digits
    assert s.batch["x"].shape == (1, 1, 8, 8) and not s.target_drawn
    s = propscope.open_session("cnn", data=photo)  # its own loss, cross-entropy over 10 digits
    y = s.batch["y"]
    assert s.loss_name == "cross_entropy" and s.target_drawn and s.user_labels is None
    assert y.shape == (1,) and 0 <= int(y[0]) < 10
    assert "drawn at random (seed 0): class " + str(int(y[0])) in s.drawn_target_note()
    labels = {int(propscope.open_session("cnn", data=photo, seed=seed).batch["y"][0]) for seed in range(8)}
    assert len(labels) > 1  # drawn, not a fixed class
    s.run_to_end()
    assert all(np.isfinite(np.asarray(g)).all() for g in s.trace.final_grads().values())
    assert s.saved_model().target_drawn
    mse = propscope.open_session("cnn", data=photo, loss="mse")
    assert mse.target_drawn and mse.batch["y"].shape == mse.prediction_node.shape


def test_the_command_line_says_the_label_was_drawn_and_both_backends_agree(rgb_model: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from propscope import cli

    photo = _photo(tmp_path / "photo.png")
    assert cli.main(["compare", str(rgb_model), "--data", str(photo), "--loss", "cross_entropy",
                     "--dtype", "float64"]) == 0
    said = capsys.readouterr()
    assert "photo.png carries no label: the cross_entropy target y is drawn at random (seed 0): class " in said.err
    assert cli.main(["grads", str(rgb_model), "--data", str(photo), "--loss", "none"]) != 0  # forward only: no note
    assert "carries no label" not in capsys.readouterr().err


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
    window, _ = _window_and_data_dialog(qtbot, rgb_model, tmp_path, "none")
    assert window.load_data_path(_photo(tmp_path / "photo.png"))
    s = window.bridge.session
    assert s.batch[s.graph.inputs[0].name].shape == (1, 3, 16, 24)
    assert "Data from photo.png" in window.status_message.text()
    assert not window.load_data_path(tmp_path / "missing.png")  # said in a dialog; the session stays
    assert window.bridge.session.batch[s.graph.inputs[0].name].shape == (1, 3, 16, 24)
    window.close()


@pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")
def test_the_app_draws_a_label_for_a_photo_under_a_loss(qtbot: Any, rgb_model: Path, tmp_path: Path) -> None:
    """File ▸ Load data with a photo while the model has a loss: the target is drawn, the status bar says so and
    which class, and the backward pass runs; data with labels of their own makes them the user's again."""
    window, _ = _window_and_data_dialog(qtbot, rgb_model, tmp_path, "cross_entropy")
    assert window.load_data_path(_photo(tmp_path / "photo.png"))
    s = window.bridge.session
    label = int(s.batch["y"][0])
    assert s.target_drawn and s.user_labels is None and s.batch["y"].shape == (1,) and label in (0, 1)
    said, whole = window.status_message.text(), window.status_message.toolTip()
    assert said.startswith("Data from photo.png") and f"no label: class {label} drawn at random (seed 0)" in said
    assert "pixels / 255, not normalized (the model does not say how)" in said  # a .pt2 does not say
    assert f"photo.png carries no label: the cross_entropy target y is drawn at random (seed 0): class {label}" \
        in whole and "photo.png: 16×24, pixels / 255, not normalized" in whole
    s.run_to_end()
    assert s.at_end and all(np.isfinite(np.asarray(g)).all() for g in s.trace.final_grads().values())
    data = tmp_path / "labelled.npz"
    np.savez(data, x=np.random.default_rng(1).random((3, 3, 16, 24)), y=np.array([1, 0, 1]))
    assert window.load_data_path(data)
    assert not s.target_drawn and s.user_labels is not None and "carries no label" not in window.status_message.text()
    window.close()


# -- normalized as the model's own images were ---------------------------------------------------------------------
def test_image_normalization_takes_one_or_three_finite_numbers_each() -> None:
    from propscope.graph.model import image_normalization

    assert image_normalization([0.5, 0.5, 0.5], [0.5, 0.5, 0.5], "here") == ((0.5,) * 3, (0.5,) * 3, "here")
    assert image_normalization(0.5, 0.25, "here") == ((0.5,), (0.25,), "here")
    for mean, std in (([0.5, 0.5], [0.5, 0.5]), ([0.5] * 3, [0.5, 0.0, 0.5]), ([float("nan")] * 3, [1.0] * 3),
                      (["0.5"] * 3, [0.5] * 3), ([0.5] * 3, [1.0]), (None, None), ([True] * 3, [1.0] * 3),
                      ([1e308] * 3, [1.0] * 3), ([0.5] * 3, [1e-308] * 3)):  # the pixels would be infinite
        assert image_normalization(mean, std, "here") is None, (mean, std)


def _vit_folder(folder: Path, processor: dict[str, Any] | str | None) -> Path:
    """A tiny ViT classifier saved as transformers saves one, with the image processor's settings beside it."""
    zoo = pytest.importorskip("zoo")
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    image_size=32, patch_size=8, num_labels=3)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    if isinstance(processor, dict):
        transformers.ViTImageProcessor(size={"height": 32, "width": 32}, **processor).save_pretrained(folder)
    elif isinstance(processor, str):
        (folder / "preprocessor_config.json").write_text(processor)
    return folder


def test_a_transformers_folder_gets_a_photo_as_its_image_processor_makes_it(tmp_path: Path) -> None:
    """A ViT folder with its `preprocessor_config.json` (ViTImageProcessor's: resize, rescale by 1/255, normalize by
    its mean and std): the photo given as data is the processor's own pixel_values, to float32 rounding."""
    mean, std = [0.3, 0.4, 0.5], [0.2, 0.25, 0.3]
    folder = _vit_folder(tmp_path / "vit", {"image_mean": mean, "image_std": std})
    photo = _photo(tmp_path / "photo.png", (64, 48))
    s = propscope.open_session(folder, data=photo, loss="none")
    assert s.model.image_normalization == (tuple(mean), tuple(std), "preprocessor_config.json")
    import transformers

    made = transformers.ViTImageProcessor.from_pretrained(folder)(Image.open(photo), return_tensors="np")
    np.testing.assert_allclose(s.batch["pixel_values"], made["pixel_values"], rtol=0, atol=2e-6)
    from propscope.graph.datasets import image_note

    assert image_note(photo, s.model) == ("photo.png: 32×32, pixels / 255, normalized by the mean (0.3, 0.4, 0.5) "
                                          "and std (0.2, 0.25, 0.3) of preprocessor_config.json")


@pytest.mark.parametrize("settings", [
    '{"image_mean": [NaN, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}',  # not finite
    '{"image_mean": "imagenet", "image_std": [0.5, 0.5, 0.5]}',  # not numbers
    '{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0, 0.5]}',  # a division by 0
    '{"do_normalize": false, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}',  # not asked
    '{"rescale_factor": 0.00784313725490196, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}',  # ±1
    '{"image_mean": [0.5, 0.5, 0.5], ',  # damaged
    " " * (2 << 20),  # larger than any processor's settings
], ids=["nan", "words", "zero-std", "not-asked", "other-rescale", "damaged", "huge"])
def test_image_processor_settings_that_do_not_say_leave_the_pixels_as_they_are(tmp_path: Path, settings: str) -> None:
    folder = _vit_folder(tmp_path / "vit", settings)
    photo = _photo(tmp_path / "photo.png", (32, 32))
    s = propscope.open_session(folder, data=photo, loss="none")  # the weights open all the same
    assert s.model.image_normalization is None
    np.testing.assert_array_equal(s.batch["pixel_values"], load_image(photo, (32, 32)))


def test_torchvision_and_timm_normalize_as_their_weights_were(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    photo = _photo(tmp_path / "photo.png", (40, 40))
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    s = propscope.open_session("torchvision:resnet18@32", data=photo, loss="none")
    assert s.model.image_normalization == (*imagenet, "torchvision's weights")
    assert s.model.image_fit == ("crop", 224 / 256, "bilinear", "torchvision's weights")
    mean, std = (np.array(v, dtype=np.float32).reshape(1, 3, 1, 1) for v in imagenet)
    np.testing.assert_allclose(s.batch["x"], (load_image(photo, (32, 32), fit=s.model.image_fit) - mean) / std,
                               rtol=1e-6)
    if importlib.util.find_spec("timm") is not None:
        t = propscope.open_session("timm:resnet18@32", data=photo, loss="none")
        assert t.model.image_normalization == (*imagenet, "timm's pretrained_cfg")


def test_normalize_asks_for_imagenets_none_or_given_numbers(rgb_model: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A `.pt2` does not say how its images were normalized: --normalize (open_session's normalize=) says instead,
    ImageNet's mean and std, none, or the numbers given (one for every channel, or one each)."""
    from propscope import cli
    from propscope.graph.datasets import IMAGENET, normalization_for

    photo = _photo(tmp_path / "photo.png")
    pixels = load_image(photo, (16, 24))
    s = propscope.open_session(rgb_model, data=photo, loss="none")
    assert s.model.image_normalization is None  # the file does not say
    assert normalization_for("model", s.model) is None and normalization_for(None, s.model) is None
    for asked, mean, std in (("imagenet", IMAGENET[0], IMAGENET[1]), ("none", (0.0,), (1.0,)),
                             ("0.5/0.25", (0.5,), (0.25,)), ("0.1,0.2,0.3/1,2,4", (0.1, 0.2, 0.3), (1.0, 2.0, 4.0))):
        s = propscope.open_session(rgb_model, data=photo, loss="none", normalize=asked)
        want = (pixels - np.float32(mean).reshape(1, -1, 1, 1)) / np.float32(std).reshape(1, -1, 1, 1)
        np.testing.assert_allclose(s.batch[s.graph.inputs[0].name], want, rtol=1e-6, err_msg=asked)
    for bad in ("imagenett", "0.5", "0.5/0", "1,2/3,4,5", "a/b", "0.5,0.5/0.5,0.5"):
        with pytest.raises(DataError, match=r"expected model \(its own, where it says\), imagenet, none, or MEAN/STD"):
            normalization_for(bad, s.model)
    assert cli.main(["grads", str(rgb_model), "--data", str(photo), "--loss", "none", "--normalize", "none"]) != 0
    assert "photo.png: 16×24, pixels / 255, not normalized (none asked for)" in capsys.readouterr().err
    assert cli.main(["compare", str(rgb_model), "--data", str(photo), "--normalize", "imagenet"]) == 0
    assert "normalized by the mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) of ImageNet (asked for)" \
        in capsys.readouterr().err


def _window_and_data_dialog(qtbot: Any, model: Path, tmp_path: Path, loss: str) -> tuple[Any, Any]:
    """The app's window on `model` under `loss`, shown, and a File ▸ Load data dialog on its session."""
    from PySide6.QtCore import QSettings

    from propscope.gui.main_window import MainWindow
    from propscope.gui.opening import DataDialog

    window = MainWindow(propscope.open_session(model, loss=loss),
                        settings=QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    dialog = DataDialog(window.bridge.session, window)
    qtbot.addWidget(dialog)
    return window, dialog


@pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")
def test_the_data_dialog_chooses_how_a_photo_is_normalized(qtbot: Any, rgb_model: Path, tmp_path: Path) -> None:
    window, dialog = _window_and_data_dialog(qtbot, rgb_model, tmp_path, "none")
    choices = [dialog.normalize.itemData(i) for i in range(dialog.normalize.count())]
    assert choices == ["model", "imagenet", "none"]
    assert "it does not say" in dialog.normalize.itemText(0)
    photo = _photo(tmp_path / "photo.png")
    assert window.load_data_path(photo, dialog.normalize.itemData(1))
    s = window.bridge.session
    mean, std = (np.float32(v).reshape(1, 3, 1, 1) for v in ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    np.testing.assert_allclose(s.batch[s.graph.inputs[0].name], (load_image(photo, (16, 24)) - mean) / std,
                               rtol=1e-6)
    assert "(normalized: mean and std of ImageNet (asked for))" in window.status_message.text()
    window.close()


@pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")
def test_a_photo_after_data_of_another_batch_is_read_at_its_own(qtbot: Any, tmp_path: Path) -> None:
    """A ViT folder (its class token expanded to the batch, so its graph is made for one batch size) given data of 3
    images, then a photo under its loss: the label is drawn on the model read at the photo's batch of one (it was
    drawn on the graph of 3 and refused), and the normalization asked for stays through the folder's reading again,
    and through File ▸ Save."""
    from PySide6.QtCore import QSettings

    from propscope.graph.datasets import IMAGENET
    from propscope.graph.readers import open_model
    from propscope.gui.main_window import MainWindow

    folder = _vit_folder(tmp_path / "vit", None)
    photo = _photo(tmp_path / "photo.png", (32, 32))
    s = propscope.open_session(folder, data=photo, normalize="imagenet")
    assert s.target_drawn and s.model.image_normalization == IMAGENET
    window = MainWindow(s, settings=QSettings(str(tmp_path / "propscope.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    rng = np.random.default_rng(0)
    three = tmp_path / "three.npz"
    np.savez(three, pixel_values=rng.random((3, 3, 32, 32)).astype(np.float32), y=np.array([0, 1, 2]))
    assert window.load_data_path(three)
    qtbot.waitUntil(lambda: window.bridge.session.graph["pixel_values"].shape[0] == 3 and not window.jobs,
                    timeout=60_000)
    assert window.bridge.session.model.image_normalization == IMAGENET  # read again at 3: still asked for
    assert window.load_data_path(photo)
    qtbot.waitUntil(lambda: window.bridge.session.graph["pixel_values"].shape[0] == 1 and not window.jobs,
                    timeout=60_000)
    s = window.bridge.session
    assert s.target_drawn and s.batch["y"].shape == (1,) and "no label: class" in window.status_message.text()
    mean, std = (np.float32(v).reshape(1, 3, 1, 1) for v in IMAGENET[:2])
    np.testing.assert_allclose(s.batch["pixel_values"], (load_image(photo, (32, 32)) - mean) / std, rtol=1e-6)
    saved = s.save(tmp_path / "vit.propscope")
    assert open_model(saved).image_normalization == IMAGENET
    window.close()


def test_train_takes_no_photo_and_a_misspelt_normalize_is_said(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from propscope import cli

    photo = _photo(tmp_path / "photo.png")
    assert cli.main(["train", "cnn", "--data", str(photo)]) != 0
    assert "train takes an .npz or .csv with labels, or a data set; a photo is one sample" in capsys.readouterr().err
    assert cli.main(["grads", "cnn", "--normalize", "imagenett"]) != 0
    assert "normalize 'imagenett': expected model" in capsys.readouterr().err


def test_label_gives_a_photo_its_class(rgb_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--label (open_session's label=) is the photo's class for the cross-entropy loss: the user's label, not drawn
    (nothing said about drawing); out of range, for another loss, or without a photo, one line."""
    from propscope import cli

    photo = _photo(tmp_path / "photo.png")
    s = propscope.open_session(rgb_model, data=photo, loss="cross_entropy", label=1)
    assert s.batch["y"].tolist() == [1] and not s.target_drawn and s.user_labels is not None
    assert cli.main(["compare", str(rgb_model), "--data", str(photo), "--loss", "cross_entropy", "--label", "0"]) == 0
    assert "carries no label" not in capsys.readouterr().err
    for kwargs, said in (({"data": photo, "loss": "cross_entropy", "label": 2}, "class ids must lie in 0..1"),
                         ({"data": photo, "loss": "mse", "label": 0}, "--label is a class for the cross_entropy"),
                         ({"loss": "cross_entropy", "label": 0}, r"label= \(--label\) is the class of an image")):
        with pytest.raises(DataError, match=said):
            propscope.open_session(rgb_model, **kwargs)


@pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")
def test_the_data_dialog_gives_a_photo_its_class(qtbot: Any, rgb_model: Path, tmp_path: Path) -> None:
    from propscope.gui.opening import DataDialog

    window, dialog = _window_and_data_dialog(qtbot, rgb_model, tmp_path, "cross_entropy")
    assert dialog.label.isEnabled() and (dialog.label.minimum(), dialog.label.maximum()) == (-1, 1)
    assert dialog.label.text() == "drawn at random"
    window._data_dialog()  # File ▸ Load data, as the menu opens it, then OK with the dialog's choices
    opened = window.data_dialog
    opened.path.setText(str(_photo(tmp_path / "photo.png")))
    opened.label.setValue(1)
    opened.accept()
    s = window.bridge.session
    assert s.batch["y"].tolist() == [1] and not s.target_drawn
    assert "its class: 1" in window.status_message.text()
    forward_only = DataDialog(propscope.open_session(rgb_model, loss="none"), window)
    qtbot.addWidget(forward_only)
    assert not forward_only.label.isEnabled()
    window.close()


@pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")
def test_the_window_opened_on_a_photo_says_it_in_the_status_bar(qapp: Any, rgb_model: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`propscope open net.pt2 --data photo.jpg` said how the photo became the input and which class was drawn on
    stderr only: the window's status bar said "ready", where an app's user looks."""
    from propscope import cli
    from propscope.gui.main_window import MainWindow

    said: list[tuple[str, str]] = []
    original = MainWindow.message

    def recorded(self: MainWindow, text: str, details: str = "") -> None:
        said.append((text, details))
        original(self, text, details)

    monkeypatch.setattr(MainWindow, "message", recorded)
    photo = _photo(tmp_path / "photo.png")
    shot = tmp_path / "shot.png"
    assert cli.main(["open", str(rgb_model), "--data", str(photo), "--loss", "cross_entropy", "--normalize",
                     "imagenet", "--screenshot", str(shot)]) == 0
    text, details = said[-1]
    assert text.startswith("Data from photo.png: normalized: mean and std of ImageNet (asked for); no label: class ")
    assert "drawn at random (seed 0)" in text and "--label C or File ▸ Load data's class gives yours" in details
    assert "normalized by the mean (0.485, 0.456, 0.406)" in details
    said.clear()
    assert cli.main(["open", str(rgb_model), "--data", str(photo), "--loss", "cross_entropy", "--label", "1",
                     "--step", "2", "--screenshot", str(shot)]) == 0
    assert said[-1][0] == "Data from photo.png: pixels / 255, not normalized (the model does not say how); its class: 1"
    said.clear()
    assert cli.main(["open", "xor", "--screenshot", str(shot)]) == 0
    assert not any(text.startswith("Data from") for text, _ in said)


def test_a_16_bit_or_floating_point_image_is_read_at_its_depth(tmp_path: Path) -> None:
    """A 16-bit grey PNG (an X-ray, a depth map) was cut to 8 bits by Pillow's convert(): everything above 255 of
    65535 white, the mean 0.998 where the image's is 0.5; a floating-point TIFF's values in [0, 1] were divided by
    255 again. Now / 65535 and as stored, resized in floating point; 32-bit integers past 16 bits are one line."""
    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64)
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "xray.png")
    assert Image.open(tmp_path / "xray.png").mode.startswith("I")
    grey = load_image(tmp_path / "xray.png", channels=1)
    np.testing.assert_allclose(grey[0, 0], (ramp.astype(np.uint16) / 65535).astype(np.float32), atol=1e-7)
    rgb = load_image(tmp_path / "xray.png", (24, 32), channels=3)
    assert rgb.shape == (1, 3, 24, 32) and abs(float(rgb.mean()) - 0.5) < 0.01
    assert np.array_equal(rgb[0, 0], rgb[0, 2])  # grey in every channel
    assert pixel_scale_text(tmp_path / "xray.png") == "16-bit pixels / 65535"
    depth = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    Image.fromarray(depth).save(tmp_path / "depth.tif")
    np.testing.assert_array_equal(load_image(tmp_path / "depth.tif", channels=1)[0, 0], depth)
    assert pixel_scale_text(tmp_path / "depth.tif") == "pixels as stored (floating point)"
    wide = np.full((4, 4), 70000, dtype=np.int32)
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    with pytest.raises(DataError, match="32-bit integer pixels from 70000 to 70000; propscope reads 8- and 16-bit"):
        load_image(tmp_path / "wide.tif", channels=1)
    assert pixel_scale_text(_photo(tmp_path / "photo.png")) == "pixels / 255"


def test_the_note_of_a_16_bit_image_says_its_scale(rgb_model: Path, tmp_path: Path) -> None:
    Image.fromarray(np.full((30, 40), 30000, dtype=np.uint16)).save(tmp_path / "scan.png")
    s = propscope.open_session(rgb_model, data=tmp_path / "scan.png", loss="none")
    np.testing.assert_allclose(s.batch[s.graph.inputs[0].name], np.float32(30000 / 65535), rtol=1e-6)
    assert image_note(tmp_path / "scan.png", s.model).startswith("scan.png: 16×24, 16-bit pixels / 65535, not ")


def test_a_phone_photo_is_read_upright_as_its_exif_orientation_says(tmp_path: Path) -> None:
    """A phone stores a portrait photo as the sensor read it, landscape, with an EXIF orientation tag; it was read
    sideways. Now turned as a viewer (and transformers' load_image) shows it."""
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20, 0] = 255  # the stored image's left half red
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # "turn 90° clockwise to view"
    image.save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    x = load_image(tmp_path / "portrait.jpg")
    assert x.shape == (1, 3, 40, 20)  # upright: 20 wide, 40 high
    assert x[0, 0, :15].mean() > 0.9 and x[0, 0, 25:].mean() < 0.1  # the left half is the top after the turn
    assert load_image(tmp_path / "portrait.jpg", (20, 40)).shape == (1, 3, 20, 40)  # at the stored size: resized
    broken = Image.fromarray(stored)
    exif = broken.getexif()
    exif[0x0112] = 99  # no such orientation: read as stored
    broken.save(tmp_path / "odd.jpg", exif=exif)
    assert load_image(tmp_path / "odd.jpg").shape == (1, 3, 20, 40)


def _scene(path: Path, size: tuple[int, int] = (120, 90)) -> Path:
    """A width × height RGB picture with detail at every scale (smooth ramps, a disc, fine stripes), not square: what a
    crop or a letterbox changes, and what resampling rounds."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255 * xx / (width - 1)
    g = 255 * (0.5 + 0.5 * np.sin(xx / 3.0) * np.cos(yy / 5.0))
    b = np.where((xx - width * 0.6) ** 2 + (yy - height * 0.4) ** 2 < (height / 4) ** 2, 230.0, 255 * yy / (height - 1))
    Image.fromarray(np.stack([r, g, b], axis=2).round().astype(np.uint8)).save(path)
    return path


def _square_input(side: int) -> list[Any]:
    from propscope.graph.ir import Graph

    return [Graph().add("input", name="x", shape=(1, 3, side, side))]


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "efficientnet_b0", "inception_v3"])
def test_a_photo_is_cropped_as_torchvisions_weights_transforms_crop_it(tmp_path: Path, name: str) -> None:
    """torchvision's weights are evaluated on the centre crop_size of the image resized to resize_size on its shorter
    side (224 of 256 for resnet18, of 232 for resnet50's V2 weights, bicubic for EfficientNet): a photo stretched to
    224×224 instead was another picture (4.3 off in normalized units on a portrait photo). Now the transforms' own
    pixels, to the last bit."""
    zoo = pytest.importorskip("zoo")
    models = zoo.torchvision_models()
    from propscope.graph.readers.torchvision_arch import _weights_fit, _weights_normalization

    transforms = models.get_model_weights(name).DEFAULT.transforms()
    fit, norm = _weights_fit(models, name), _weights_normalization(models, name)
    assert fit is not None and fit[0] == "crop" and norm is not None
    crop = int(transforms.crop_size[0])
    for size in ((120, 90), (70, 160)):  # landscape and portrait, up- and downscaled
        photo = _scene(tmp_path / f"scene{size[0]}.png", size)
        theirs = transforms(Image.open(photo).convert("RGB")).numpy()[None]
        ours = image_batch(photo, _square_input(crop), norm, fit)["x"]
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", ["resnet18", "deit_tiny_patch16_224", "convnext_atto"])
def test_a_photo_is_cropped_as_timms_pretrained_cfg_says(tmp_path: Path, name: str) -> None:
    zoo = pytest.importorskip("zoo")
    zoo.torchvision_models()  # timm imports torchvision
    timm = pytest.importorskip("timm")
    timm_data = importlib.import_module("timm.data")

    from propscope.graph.readers.timm_arch import pretrained_fit

    model = timm.create_model(name, pretrained=False)
    config = timm_data.resolve_data_config({}, model=model)
    transforms = timm_data.create_transform(**config)
    fit = pretrained_fit(model.pretrained_cfg)
    assert fit is not None and fit[1] == config["crop_pct"] and fit[2] == config["interpolation"] == "bicubic"
    photo = _scene(tmp_path / "scene.png", (300, 200))
    theirs = transforms(Image.open(photo).convert("RGB")).numpy()[None]
    norm = (tuple(config["mean"]), tuple(config["std"]), "timm")
    np.testing.assert_array_equal(image_batch(photo, _square_input(224), norm, fit)["x"], theirs)


@pytest.mark.parametrize("kind", ["clip", "convnext", "deit", "vit"])
def test_a_transformers_folder_crops_a_photo_as_its_image_processor_does(tmp_path: Path, kind: str) -> None:
    """CLIP's processor resizes the shorter side and cuts the centre out, ConvNeXt's to shortest_edge / crop_pct, DeiT's
    stretches then cuts; ViT's only stretches. The photo given as data is the processor's own pixel_values, to a grey
    level of its resampling's rounding (it was stretched whatever the processor did)."""
    _vit_folder(tmp_path / "vit", None)
    import transformers

    processor = {
        "clip": lambda: transformers.CLIPImageProcessor(size={"shortest_edge": 40},
                                                        crop_size={"height": 32, "width": 32}),
        "convnext": lambda: transformers.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875),
        "deit": lambda: transformers.DeiTImageProcessor(size={"height": 40, "width": 40},
                                                        crop_size={"height": 32, "width": 32}),
        "vit": lambda: transformers.ViTImageProcessor(size={"height": 32, "width": 32}),
    }[kind]()
    processor.save_pretrained(tmp_path / "vit")
    photo = _scene(tmp_path / "scene.png")
    s = propscope.open_session(tmp_path / "vit", data=photo, loss="none")
    expected = {"clip": ("crop", 0.8), "convnext": ("crop", 0.875), "deit": ("squash-crop", 0.8), "vit": None}[kind]
    assert (s.model.image_fit and s.model.image_fit[:2]) == expected
    theirs = processor(Image.open(photo), return_tensors="np")["pixel_values"]
    std = np.asarray(processor.image_std, dtype=np.float32).reshape(1, 3, 1, 1)
    assert np.abs((s.batch["pixel_values"] - theirs) * std).max() <= 2.5 / 255  # a grey level or two
    stretched = image_batch(photo, _square_input(32), s.model.image_normalization)["x"]
    if expected is not None:  # the crop is what made them agree
        assert np.abs((stretched - theirs) * std).max() > 20 / 255
    from propscope.graph.readers import open_model

    assert open_model(s.save(tmp_path / "saved.propscope")).image_fit == s.model.image_fit  # File ▸ Save keeps it


def test_a_yolo_detectors_photo_is_letterboxed_as_ultralytics_predicts(tmp_path: Path) -> None:
    """ultralytics letterboxes an image into its square input (its shape kept, grey 114 bars); stretched, a portrait
    photo's people were squashed to half their width. The bars fall where ultralytics' LetterBox puts them."""
    augment = pytest.importorskip("ultralytics.data.augment")
    for size, shape in (((120, 90), (64, 64)), ((70, 160), (64, 96)), ((300, 200), (320, 320))):
        photo = _scene(tmp_path / f"scene{size[0]}.png", size)
        pixels = np.asarray(Image.open(photo).convert("RGB"))
        theirs = augment.LetterBox(new_shape=shape, auto=False, center=True)(image=pixels[..., ::-1].copy())
        theirs = theirs[..., ::-1].transpose(2, 0, 1)[None] / 255.0
        ours = load_image(photo, shape, 3, ("letterbox", 1.0, "bilinear", "as ultralytics predicts"))
        grey = np.float32(114 / 255)
        for axis in (2, 3):  # the same rows and columns are bars
            theirs_bars = np.all(np.abs(theirs - grey) < 1e-6, axis=(1, 5 - axis))
            ours_bars = np.all(np.abs(ours - grey) < 1e-6, axis=(1, 5 - axis))
            np.testing.assert_array_equal(ours_bars, theirs_bars)
        assert float(np.abs(ours - theirs).mean()) < 0.03  # OpenCV's bilinear without antialiasing, Pillow's with
        assert fit_text(("letterbox", 1.0, "bilinear", "as ultralytics predicts"), shape) == \
            f"letterboxed into {shape[0]}×{shape[1]}: its shape kept, the rest grey (as ultralytics predicts)"


def test_image_fit_takes_a_known_kind_and_a_fraction_of_a_quarter_or_more(tmp_path: Path) -> None:
    from propscope.graph.model import image_fit

    assert image_fit("crop", 0.875, "here") == ("crop", 0.875, "bilinear", "here")
    assert image_fit("squash-crop", 1, "here", "bicubic") == ("squash-crop", 1.0, "bicubic", "here")
    for kind, fraction in (("zoom", 0.875), ("crop", 0.1), ("crop", 1.5), ("crop", float("nan")), ("crop", True),
                           ("crop", "0.875"), (None, None)):
        assert image_fit(kind, fraction, "here") is None, (kind, fraction)
    photo = _scene(tmp_path / "scene.png")
    assert load_image(photo, (7, 5), 3, ("crop", 0.25, "bilinear", "x")).shape == (1, 3, 7, 5)
    assert fit_text(("crop", 0.875, "bilinear", "torchvision's weights"), (224, 224)) == \
        "resized to 256 on its shorter side, its centre 224×224 cut out (torchvision's weights)"
    assert fit_text(("crop", 0.875, "bilinear", "x"), (224, 224), brief=True) == "centre 224×224 of 256"
    assert fit_text(None, (224, 224)) == ""

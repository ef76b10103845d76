"""Small data sets for 2-D teaching (as TensorFlow Playground offers them) and loading user data.

Pure NumPy and seeded, so a data set is the same on every machine. Classification labels are
integer class indices; regression targets are float columns.
"""

from __future__ import annotations

import contextlib
import csv
import math
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PropscopeError

Array = np.ndarray


class DataError(PropscopeError):
    """Data that cannot be used: says which file, which row or which array, and what is wrong."""


@dataclass
class Dataset:
    name: str
    x: Array
    y: Array
    x_test: Array | None = None
    y_test: Array | None = None
    task: str = "classification"

    @property
    def classes(self) -> int:
        return int(self.y.max()) + 1 if self.task == "classification" and self.y.size else 0

    def batch(self) -> dict[str, Array]:
        return {"x": self.x, "y": self.y}

    def test_batch(self) -> dict[str, Array] | None:
        return None if self.x_test is None else {"x": self.x_test, "y": self.y_test}  # type: ignore[dict-item]


def _xor(n: int, noise: float, rng: np.random.Generator, classes: int) -> tuple[Array, Array]:
    if n == 4 and noise == 0:
        x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
        return x, np.array([0, 1, 1, 0])
    x = rng.uniform(-1, 1, size=(n, 2))
    y = ((x[:, 0] > 0) != (x[:, 1] > 0)).astype(int)
    return x + rng.normal(0, noise, size=x.shape), y


def _circles(n: int, noise: float, rng: np.random.Generator, classes: int) -> tuple[Array, Array]:
    y = np.arange(n) % 2
    radius = np.where(y == 0, 1.0, 0.5)
    angle = rng.uniform(0, 2 * np.pi, n)
    x = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return x + rng.normal(0, noise, size=x.shape), y


def _moons(n: int, noise: float, rng: np.random.Generator, classes: int) -> tuple[Array, Array]:
    y = np.arange(n) % 2
    t = rng.uniform(0, np.pi, n)
    x = np.where(
        (y == 0)[:, None],
        np.stack([np.cos(t), np.sin(t)], axis=1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], axis=1),
    )
    return x + rng.normal(0, noise, size=x.shape), y


def _spiral(n: int, noise: float, rng: np.random.Generator, classes: int) -> tuple[Array, Array]:
    y = np.arange(n) % classes
    r = rng.uniform(0.05, 1.0, n)
    angle = 2 * np.pi * y / classes + 4.0 * r
    x = np.stack([r * np.sin(angle), r * np.cos(angle)], axis=1)
    return x + rng.normal(0, noise, size=x.shape), y


def _blobs(n: int, noise: float, rng: np.random.Generator, classes: int) -> tuple[Array, Array]:
    y = np.arange(n) % classes
    angle = 2 * np.pi * np.arange(classes) / classes
    centres = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres[y] + rng.normal(0, max(noise, 1e-6), size=(n, 2)), y


def _sine(n: int, noise: float, rng: np.random.Generator, classes: int) -> tuple[Array, Array]:
    x = np.sort(rng.uniform(-np.pi, np.pi, n))[:, None]
    return x, np.sin(x) + rng.normal(0, noise, size=x.shape)


GENERATORS: dict[str, tuple[Callable[..., tuple[Array, Array]], str, str]] = {
    "xor": (_xor, "classification", "the four XOR points (n = 4, noise 0) or a noisy XOR cloud"),
    "circles": (_circles, "classification", "a ring around a disc"),
    "moons": (_moons, "classification", "two interleaving half circles"),
    "spiral": (_spiral, "classification", "interleaved spiral arms, one per class"),
    "blobs": (_blobs, "classification", "Gaussian blobs, one per class"),
    "sine": (_sine, "regression", "a noisy sine wave (1-D regression)"),
}


def make_dataset(
    name: str, n: int = 200, noise: float = 0.1, seed: int = 0, test_fraction: float = 0.0, classes: int = 3
) -> Dataset:
    """A seeded data set by name, split into train and test when `test_fraction` > 0."""
    if name not in GENERATORS:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(GENERATORS)}")
    if n < 1:
        raise DataError(f"a data set needs at least one sample, got n={n}")
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"test_fraction must be in [0, 1), got {test_fraction}")
    generate, task, _ = GENERATORS[name]
    rng = np.random.default_rng(seed)
    x, y = generate(n, noise, rng, classes)
    if task == "regression":
        y = y.astype(float)
    n_test = round(len(x) * test_fraction)
    if n_test == 0:
        return Dataset(name, x, y, task=task)
    order = rng.permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return Dataset(name, x[train], y[train], x[test], y[test], task=task)


def load_data(path: str | Path) -> dict[str, Array]:
    """Arrays from `.npz` (named after the model's inputs, or `x`, and `y`) or `.csv` (last column is y), or an image
    as `x` at its own size (`image_batch` fits one to a model's image input)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    if path.suffix.lower() == ".csv":
        return _load_csv(path)
    if is_image(path):
        return {"x": load_image(path)}
    if not zipfile.is_zipfile(path):  # np.load would take any other bytes for a pickle and say so
        raise DataError(f"{path}: not a .npz data file (not a zip archive); use .npz or .csv")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: np.array(npz[k]) for k in npz.files}
    except Exception as exc:  # zip, npy header and pickle refusals all mean the same to the user
        raise DataError(f"{path}: not a readable .npz data file ({exc})") from None
    if not arrays:
        raise DataError(f"{path}: the file holds no arrays")
    return arrays


def nonfinite_arrays(arrays: Mapping[str, Any]) -> list[str]:
    """The data arrays that hold NaN or ±inf, each with how many: `x holds 1 NaN of 24,576 values`."""
    found = []
    for name, value in arrays.items():
        x = np.asarray(value)
        if x.dtype.kind not in "fc" or x.size == 0:
            continue
        nan = int(np.count_nonzero(np.isnan(x)))
        inf = int(x.size - np.count_nonzero(np.isfinite(x))) - nan
        if nan or inf:
            counts = ", ".join(f"{n:,} {what}" for n, what in ((nan, "NaN"), (inf, "inf")) if n)
            found.append(f"{name} holds {counts} of {x.size:,} values")
    return found


def nonfinite_note(arrays: Mapping[str, Any]) -> str:
    """One line naming the data arrays that hold NaN or ±inf and how many ("" where none does): said when data is
    loaded, since the values computed from such an array are non-finite too, and would otherwise be blamed on the
    first op that meets it."""
    found = nonfinite_arrays(arrays)
    if not found:
        return ""
    return f"the data is not all finite: {'; '.join(found)}; it spreads to the values computed from it"


def _load_csv(path: Path) -> dict[str, Array]:
    try:
        with path.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if rows and not _numeric(rows[0][0]):
        rows = rows[1:]  # a header row
    if not rows:
        raise DataError(f"{path}: no data rows")
    width = len(rows[0])
    if width < 2:
        raise DataError(f"{path}: need at least two columns (features, then the target), got {width}")
    values = np.empty((len(rows), width))
    for i, row in enumerate(rows, start=1):
        if len(row) != width:
            raise DataError(f"{path}: row {i} has {len(row)} columns, expected {width} (ragged rows)")
        for j, cell in enumerate(row, start=1):
            if not _numeric(cell):
                raise DataError(f"{path}: row {i}, column {j}: {cell.strip()!r} is not a number")
            values[i - 1, j - 1] = float(cell)
    return {"x": values[:, :-1], "y": values[:, -1:]}


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# -- an image as a model's input -----------------------------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif")
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # a photo is a few tens of millions; a header may claim anything
# how an image's pixels / 255 are normalized: per-channel mean, std, and whose they are (`Model.image_normalization`)
Normalization = tuple[tuple[float, ...], tuple[float, ...], str]
IMAGENET: Normalization = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "ImageNet (asked for)")
NORMALIZE_CHOICES = "model (its own, where it says), imagenet, none, or MEAN/STD (0.5,0.5,0.5/0.5,0.5,0.5)"
# how an image is brought to the model's input size H × W (`Model.image_fit`): (kind, fraction, resampling, whose it
# is). "crop": resized keeping its shape, its shorter side to ⌊min(H, W) / fraction⌋, and its centre H × W cut out
# (torchvision's and timm's ImageNet evaluation: 224 of 256, fraction 0.875); "squash-crop": stretched to
# ⌊H / fraction⌋ × ⌊W / fraction⌋, then its centre cut out (DeiT's processor); "letterbox": resized whole to fit
# inside, keeping its shape, the rest grey (114 of 255: ultralytics' predictions). Resampling "bilinear" or
# "bicubic", as that library's. None: stretched to H × W, bilinear.
ImageFit = tuple[str, float, str, str]
LETTERBOX_GREY = 114  # of 255: the colour ultralytics pads an image with


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def load_image(path: str | Path, size: tuple[int, int] | None = None, channels: int = 3,
               fit: ImageFit | None = None) -> Array:
    """An image file as a (1, channels, H, W) float32 batch with values in [0, 1] (the pixel / 255: what YOLO's and
    most vision models' own preprocessing starts from; a 16-bit grey image's / 65535, floating-point pixels as they
    are), RGB for 3 channels and grey for 1, brought to `size` (H, W) where given: with bilinear filtering, stretched,
    or as `fit` says (`ImageFit`: cropped at its centre, letterboxed). Its declared size is checked before it is
    decoded."""
    path = Path(path)
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise DataError(f"{path}: reading images needs Pillow (pip install pillow)") from None
    if channels not in (1, 3):
        raise DataError(f"{path}: an image has 1 or 3 channels; the model's image input takes {channels}")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: a {width}×{height} image, more than propscope reads "
                                f"({MAX_IMAGE_PIXELS // 2**20}M pixels)")
            image.seek(0)  # an animation's first frame
            # upright as a viewer shows it: a phone stores its photos as the sensor read them, with an EXIF
            # orientation tag (transformers' load_image turns them so too)
            upright: Image.Image = image
            with contextlib.suppress(Exception):  # a damaged EXIF block (struct.error...): the pixels as stored
                upright = ImageOps.exif_transpose(image)
            width, height = upright.size  # turned a quarter: the other way round
            scale = _deep_pixels_scale(upright, path)
            if scale is None:  # 8 bits a channel (RGB, grey, a palette, CMYK...): Pillow converts it
                pixels = upright.convert("RGB" if channels == 3 else "L")
                if size is not None:
                    pixels = _fitted(pixels, (int(size[0]), int(size[1])), fit, LETTERBOX_GREY)
                array = np.asarray(pixels, dtype=np.float32) / 255.0
            else:  # one grey channel of 16 or 32 bits, or floats: read whole, not cut to 8 bits by convert()
                plane = Image.fromarray(np.asarray(upright, dtype=np.float32) / np.float32(scale))  # mode F
                if size is not None:
                    plane = _fitted(plane, (int(size[0]), int(size[1])), fit, LETTERBOX_GREY / 255)
                array = np.asarray(plane, dtype=np.float32)
                if channels == 3:  # grey as RGB, as convert("RGB") makes it
                    array = np.repeat(array[..., None], 3, axis=2)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        said = str(exc).splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable image ({said})") from None
    array = array[None, None] if array.ndim == 2 else array.transpose(2, 0, 1)[None]
    return np.ascontiguousarray(array)


def _fitted(image: Any, size: tuple[int, int], fit: ImageFit | None, grey: float) -> Any:
    """`image` (a Pillow image) brought to `size` (H, W) as `fit` says (`ImageFit`): the sizes and offsets rounded as
    torchvision's Resize and CenterCrop and ultralytics' LetterBox do."""
    from PIL import Image

    out_h, out_w = size
    w, h = image.size
    kind, fraction, resampling = (fit[0], fit[1], fit[2]) if fit is not None else ("stretch", 1.0, "bilinear")
    bilinear = Image.Resampling.BICUBIC if resampling == "bicubic" else Image.Resampling.BILINEAR
    if kind == "letterbox":
        r = min(out_h / h, out_w / w)
        new_w, new_h = round(w * r), round(h * r)
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), bilinear)
        dw, dh = (out_w - new_w) / 2, (out_h - new_h) / 2
        canvas = Image.new(image.mode, (out_w, out_h), grey if image.mode in ("L", "F") else (int(grey),) * 3)
        canvas.paste(image, (round(dw - 0.1), round(dh - 0.1)))
        return canvas
    if kind in ("crop", "squash-crop"):
        # the size cut from, as an integer the way timm (⌊224 / 0.875⌋ = 256) and torchvision (resize_size) give it
        big_h, big_w = (math.floor(out_h / fraction + 1e-6), math.floor(out_w / fraction + 1e-6))
        if kind == "crop":  # the shorter side (relative to the wanted shape) to its size, the other in proportion
            if big_h / h >= big_w / w:
                big_w = max(big_w, int(big_h * w / h))
            else:
                big_h = max(big_h, int(big_w * h / w))
        if (big_w, big_h) != (w, h):
            image = image.resize((big_w, big_h), bilinear)
        top, left = round((big_h - out_h) / 2.0), round((big_w - out_w) / 2.0)
        return image.crop((left, top, left + out_w, top + out_h))
    return image if (h, w) == (out_h, out_w) else image.resize((out_w, out_h), bilinear)


def fit_text(fit: ImageFit | None, size: tuple[int, int], brief: bool = False) -> str:
    """How an image was brought to the input's `size` (H, W), in words, "" where stretched to it (the default):
    "resized to 256 on its shorter side, its centre 224×224 cut out (torchvision's weights)"; `brief`: "centre 224×224
    of 256"."""
    if fit is None:
        return ""
    kind, fraction, _, source = fit
    at = f"{size[0]}×{size[1]}"
    if kind == "letterbox":
        return f"letterboxed into {at}" if brief else f"letterboxed into {at}: its shape kept, the rest grey ({source})"
    big = (math.floor(size[0] / fraction + 1e-6), math.floor(size[1] / fraction + 1e-6))
    if kind == "crop":
        return f"centre {at} of {min(big)}" if brief else \
            f"resized to {min(big)} on its shorter side, its centre {at} cut out ({source})"
    return f"centre {at} of {big[0]}×{big[1]}" if brief else \
        f"stretched to {big[0]}×{big[1]}, its centre {at} cut out ({source})"


_DEEP_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1}


def _deep_pixels_scale(image: Any, path: Path) -> int | None:
    """What an image of more than 8 bits a channel is divided by to lie in [0, 1] (65535 for 16-bit grey, a PNG's or
    TIFF's; 1 for floating-point pixels, taken as they are), or None for an 8-bit image. Pillow's convert() would
    clip a 16-bit image to white above 255 and round floats to 0 or 1: a depth map or an X-ray read as blank."""
    scale = _DEEP_MODES.get(image.mode)
    if image.mode == "I":  # 32-bit integers: Pillow's mode for a 16-bit grey PNG in some versions; wider is refused
        low, high = image.getextrema()
        if low < 0 or high > 65535:
            raise DataError(f"{path}: 32-bit integer pixels from {low} to {high}; propscope reads 8- and 16-bit "
                            "images and floating-point ones")
    return scale


def pixel_scale_text(path: str | Path) -> str:
    """How an image's pixels were brought to [0, 1], in words ("pixels / 255"; "16-bit pixels / 65535"; "pixels as
    stored (floating point)"), read from its header."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            mode = image.mode
    except Exception:  # said by load_image where it matters; here only the words for a note
        return "pixels / 255"
    scale = _DEEP_MODES.get(mode)
    return "pixels / 255" if scale is None else "16-bit pixels / 65535" if scale == 65535 else \
        "pixels as stored (floating point)"


def image_input_of(inputs: Any) -> Any:
    """The first of a graph's input nodes an image can be: (N, C, H, W) with C of 1 or 3; None where none is."""
    return next((n for n in inputs if len(n.shape) == 4 and n.shape[1] in (1, 3)), None)


def image_batch(path: str | Path, inputs: Any, normalization: Normalization | None = None,
                fit: ImageFit | None = None) -> dict[str, Array]:
    """An image as data for a model: its first (N, C, H, W) input with C of 1 or 3, the image brought to that H × W
    as `fit` says (`Model.image_fit`: its centre cut out, letterboxed; else stretched), a batch of one. `inputs`: the
    model graph's input nodes; `normalization`: the model's per-channel mean and std (`Model.image_normalization`),
    applied to the pixels / 255 where it has one number per channel."""
    image_input = image_input_of(inputs)
    if image_input is None:
        shapes = ", ".join(f"{n.name} {tuple(n.shape)}" for n in inputs) or "none"
        raise DataError(f"{path}: an image, but the model has no (batch, 1 or 3 channels, height, width) input "
                        f"(its inputs: {shapes})")
    _, channels, height, width = image_input.shape
    pixels = load_image(path, (int(height), int(width)), int(channels), fit)
    if normalization is not None and len(normalization[0]) in (1, int(channels)):  # one number: every channel
        mean, std = (np.asarray(v, dtype=np.float32).reshape(1, -1, 1, 1) for v in normalization[:2])
        pixels = (pixels - mean) / std
    return {image_input.name: pixels}


def normalization_for(asked: str | None, model: Any) -> Normalization | None:
    """How to normalize an image's pixels / 255 for `model`: `asked` None or "model" takes the model's own
    (`Model.image_normalization`), "imagenet" ImageNet's mean and std, "none" the pixels as they are, "MEAN/STD" those
    numbers (one or three each, comma-separated)."""
    from .model import image_normalization

    text = (asked or "model").strip().lower()
    if text == "model":
        return model.image_normalization
    if text == "imagenet":
        return IMAGENET
    if text == "none":
        return (0.0,) * 3, (1.0,) * 3, "none asked for"
    mean, slash, std = text.partition("/")
    try:
        chosen = image_normalization([float(v) for v in mean.split(",")], [float(v) for v in std.split(",")],
                                     f"--normalize {text}") if slash else None
    except ValueError:
        chosen = None
    if chosen is None:
        raise DataError(f"normalize {asked!r}: expected {NORMALIZE_CHOICES}; |mean| ≤ 255, each std in 1e-6..255")
    return chosen


def image_note(path: str | Path, model: Any, brief: bool = False, normalization: Any = "model") -> str:
    """How an image became `model`'s input, in words: "photo.jpg: 224×224, pixels / 255, normalized by the mean
    (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) of torchvision's weights"; `brief`, for a status bar:
    "normalized: mean and std of torchvision's weights". `normalization`: the one used, where not the model's."""
    image_input = image_input_of(model.graph.inputs)
    size = f"{image_input.shape[2]}×{image_input.shape[3]}, " if image_input is not None else ""
    fitted = fit_text(model.image_fit, tuple(image_input.shape[2:]), brief) if image_input is not None else ""
    if fitted:  # cut or letterboxed, not stretched: said first
        size = f"{fitted}, "
    scaled = pixel_scale_text(path)
    said = f"{Path(path).name}: {size}{scaled}"
    if brief and fitted:
        scaled = f"{fitted}, {scaled}"
    norm = model.image_normalization if normalization == "model" else normalization
    if norm is None or image_input is None:
        if brief:
            return f"{scaled}, not normalized (the model does not say how)"
        return f"{said}, not normalized (the model does not say how its images were)"
    if len(norm[0]) not in (1, image_input.shape[1]):
        why = f"{len(norm[0])} numbers of {norm[2]} for {image_input.shape[1]} channel(s)"
        return f"{scaled}, not normalized ({why})" if brief else f"{said}, not normalized ({why})"
    if not any(norm[0]) and all(s == 1 for s in norm[1]):  # YOLO's: the pixels / 255 themselves
        return f"{scaled}, not normalized ({norm[2]})" if brief else f"{said}, not normalized ({norm[2]})"
    if brief:
        return f"{fitted + ', ' if fitted else ''}normalized: mean and std of {norm[2]}"

    def numbers(v: tuple[float, ...]) -> str:
        return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
    return f"{said}, normalized by the mean {numbers(norm[0])} and std {numbers(norm[1])} of {norm[2]}"

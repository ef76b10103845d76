"""Writing the frames: an animated GIF (Pillow), an MP4 (imageio-ffmpeg's ffmpeg), or numbered PNGs.

Each writer takes frames one at a time (`add`) and finishes with `close`, so a long pass is never held
twice in memory and a cancelled export leaves nothing half-written behind (`abort`).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtGui import QImage

from ...graph.errors import PropscopeError

VIDEO_INSTALL = "pip install 'propscope[video]'"


class ExportError(PropscopeError):
    pass


class FrameWriter(Protocol):
    def add(self, image: QImage) -> None: ...
    def close(self) -> Path: ...
    def abort(self) -> None: ...


def rgb_bytes(image: QImage) -> tuple[bytes, int]:
    """The image's pixels as packed RGB rows (no row padding) and its bytes per row."""
    rgb = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = rgb.width(), rgb.height(), rgb.bytesPerLine()
    data = bytes(rgb.constBits())[: stride * height]
    if stride == width * 3:
        return data, stride
    return b"".join(data[r * stride: r * stride + width * 3] for r in range(height)), width * 3


def to_pil(image: QImage) -> Any:
    from PIL import Image

    data, _ = rgb_bytes(image)
    return Image.frombytes("RGB", (image.width(), image.height()), data)


class GifWriter:
    """An animated GIF, one frame per step, looping; each frame gets its own palette (Pillow's)."""

    def __init__(self, path: Path, seconds_per_frame: float) -> None:
        self.path = path
        self.ms = max(20, round(seconds_per_frame * 1000))
        self.frames: list[Any] = []

    def add(self, image: QImage) -> None:
        from PIL import Image

        # A fast octree palette per frame: the graph has few colours, and this keeps the xor pass at
        # 1280×720 well under a second to encode.
        self.frames.append(to_pil(image).quantize(colors=255, method=Image.Quantize.FASTOCTREE))

    def close(self) -> Path:
        if not self.frames:
            raise ExportError("no frames to write")
        first, *rest = self.frames
        # optimize=False and disposal 1: every step stays its own frame, even where two look alike
        first.save(self.path, save_all=True, append_images=rest, duration=self.ms, loop=0, optimize=False,
                   disposal=1)
        return self.path

    def abort(self) -> None:
        self.frames.clear()


class PngFolderWriter:
    """frame-000.png, frame-001.png, ... in a folder (made if missing)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.written: list[Path] = []
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, image: QImage) -> None:
        path = self.folder / f"frame-{len(self.written):03d}.png"
        if not image.save(str(path), "PNG"):
            raise ExportError(f"{path}: could not write the image")
        self.written.append(path)

    def close(self) -> Path:
        return self.folder

    def abort(self) -> None:
        for path in self.written:
            path.unlink(missing_ok=True)


def video_available() -> bool:
    return importlib.util.find_spec("imageio_ffmpeg") is not None


class Mp4Writer:
    """H.264 through the ffmpeg binary that imageio-ffmpeg ships (an optional extra)."""

    def __init__(self, path: Path, size: tuple[int, int], seconds_per_frame: float) -> None:
        if not video_available():
            raise ExportError(f"MP4 needs an encoder: {VIDEO_INSTALL} (or export a .gif or a folder of PNGs)")
        import imageio_ffmpeg

        if size[0] % 2 or size[1] % 2:
            raise ExportError(f"MP4 needs an even width and height, got {size[0]}x{size[1]}")
        self.path = path
        self.partial = path.with_name(path.name + ".part.mp4")
        self.writer = imageio_ffmpeg.write_frames(str(self.partial), size, fps=1.0 / seconds_per_frame,
                                                  macro_block_size=2, codec="libx264", pix_fmt_out="yuv420p",
                                                  ffmpeg_log_level="error")
        self.writer.send(None)  # start ffmpeg

    def add(self, image: QImage) -> None:
        data, _ = rgb_bytes(image)
        self.writer.send(data)

    def close(self) -> Path:
        self.writer.close()
        shutil.move(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        self.writer.close()
        self.partial.unlink(missing_ok=True)


def pass_writer(out: Path, size: tuple[int, int], seconds_per_frame: float) -> FrameWriter:
    """The writer for `out`: .gif, .mp4, or (no suffix, or an existing folder) numbered PNGs."""
    suffix = out.suffix.lower()
    if suffix == ".gif":
        return GifWriter(out, seconds_per_frame)
    if suffix == ".mp4":
        return Mp4Writer(out, size, seconds_per_frame)
    if suffix == "" or out.is_dir():
        return PngFolderWriter(out)
    raise ExportError(f"{out}: a pass is exported as .gif, .mp4 or a folder of PNGs (no suffix)")

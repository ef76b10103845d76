"""Opening models and data in the app: the file filter, recent files, and the dialogs a state dict or a
data set needs (its architecture, the report of what matched, the data for the model's inputs).

The loading itself happens in `load_file`, which the window runs in a `Job` off the GUI thread; it
touches no widget and no live session, so a failure or a cancel leaves the current session as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ..backends import get_backend
from ..debugger import Session
from ..graph.datasets import IMAGE_SUFFIXES
from ..graph.errors import ModelFormatError
from ..graph.examples import EXAMPLES
from ..graph.gc_pause import paused_gc
from ..graph.model import Model, class_axis
from ..graph.readers import (
    READERS,
    architecture_library,
    display_name,
    open_model,
    reading_at,
    torchscript,
    transformers_checkpoint,
    ultralytics_checkpoint,
)
from ..graph.readers import state_dict as state_dict_reader
from ..graph.readers._budget import memory_budget
from ..graph.readers._failure import capture_warnings, one_line
from .canvas.folding import Folding
from .format import fmt_shape
from .guard import guarded

MAX_RECENT = 8
TORCHVISION_NAMES = ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                     "efficientnet_b0", "convnext_tiny", "vit_b_16", "swin_t", "densenet121", "regnet_y_400mf",
                     "deeplabv3_resnet50", "fcn_resnet50", "lraspp_mobilenet_v3_large", "r3d_18")
TIMM_NAMES = ("resnet50", "efficientnet_b0", "convnext_tiny", "convnextv2_atto", "mobilenetv3_large_100",
              "vit_small_patch16_224", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224",
              "eva02_tiny_patch14_224", "regnety_002", "efficientformer_l1", "levit_128s", "mixer_s16_224",
              "caformer_s18", "fastvit_t8", "maxvit_tiny_tf_224")
LIBRARIES = {"torchvision": TORCHVISION_NAMES, "timm": TIMM_NAMES}  # the names offered; any other can be typed
RECENT_KEY = "recent/files"


def model_suffixes() -> list[str]:
    """Every file suffix a registered reader opens, in the table's order."""
    out: list[str] = []
    for _, reader in READERS:
        for suffix in getattr(reader, "SUFFIXES", None) or (getattr(reader, "SUFFIX", ""),):
            if suffix and suffix not in out:
                out.append(suffix)
    return out


def _pattern(suffix: str) -> str:
    """A suffix as a file-name pattern (`.onnx` → `*.onnx`); a whole name (`config.json`) as itself."""
    return f"*{suffix}" if suffix.startswith(".") else suffix


def open_filter() -> str:
    """The Open dialog's filter: all models first, then one line per reader."""
    lines = ["All models (" + " ".join(_pattern(s) for s in model_suffixes()) + ")"]
    for name, reader in READERS:
        suffixes = getattr(reader, "SUFFIXES", None) or (getattr(reader, "SUFFIX", ""),)
        lines.append(f"{name} (" + " ".join(_pattern(s) for s in suffixes if s) + ")")
    lines.append("All files (*)")
    return ";;".join(lines)


def is_state_dict(path: str | Path) -> bool:
    """Whether a file holds weights only, so that it opens into an architecture (`ArchDialog` asks which); a
    TorchScript archive or a YOLO checkpoint, which look like one, open as their own graph (a scripted archive asks
    its inputs' shapes first, `input_shape.asks_input_shapes`)."""
    path = Path(path)
    return bool(state_dict_reader.match(path)) and not (path.is_file() and has_own_graph(path))


def has_own_graph(path: Path) -> bool:
    """A `.pt` that opens as a network by itself: a TorchScript archive (from its code) or an Ultralytics YOLO
    checkpoint (from its config, built by ultralytics)."""
    return torchscript.is_archive(path) or ultralytics_checkpoint.match(path)


def is_model_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in model_suffixes() or transformers_checkpoint.match(Path(path))


@dataclass
class Loaded:
    """What a loading job hands back to the GUI thread."""

    session: Session
    layout: Any
    folding: Folding
    report: Any = None  # a StateDictReport when weights were put into an architecture
    path: str = ""


def load_file(path: str | Path, backend: str, dtype: str, device: str = "cpu", arch: str | None = None,
              seed: int = 0, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> Loaded:
    """Read a model file (a state dict into `arch`; a file that records no input shape at `input_shapes`, by input
    name) and prepare its session, folds and layout. Worker-safe.

    Any failure is the command line's one sentence (`FILE: what is wrong`), as a ModelFormatError; all the
    reading counts against one memory budget."""
    try:
        # input_shapes: a scripted TorchScript archive's, as its dialog asked
        with memory_budget(), capture_warnings(), reading_at(input_shapes):
            return _load_file(Path(path), backend, dtype, device, arch, seed)
    except Exception as exc:  # MemoryError and a reader's bug too: the dialog says one line, the session stays
        raise ModelFormatError(one_line(exc, str(path))) from exc


def _load_file(path: Path, backend: str, dtype: str, device: str, arch: str | None, seed: int) -> Loaded:
    model: Model
    report = None
    if not arch and path.is_file() and has_own_graph(path):  # its own graph (with `arch`: its weights)
        model = open_model(path)
    elif state_dict_reader.match(path):
        if not arch:
            raise ModelFormatError(f"{path}: a state dict holds weights only; choose the architecture it belongs to")
        if not path.is_file():
            raise ModelFormatError(f"{path}: no such file")
        model, report = state_dict_reader.open_reported(path, arch, seed)
    elif (library := architecture_library(str(path))) is not None:
        model = library.open_spec(str(path))
    else:
        model = open_model(path)
    with paused_gc():  # the schedule and the layout: 10⁴-10⁵ objects that all live on (graph/gc_pause.py)
        session = Session(model, get_backend(backend, dtype, device), name=display_name(path), seed=seed)
        session.source = str(path)
        folding = Folding.of(session.graph)
        layout = folding.layout()
    return Loaded(session, layout, folding, report, str(path))


# -- recent files ------------------------------------------------------------------------------
class RecentFiles:
    """The last files opened, newest first, kept in QSettings (in memory when there are none)."""

    def __init__(self, settings: QSettings | None) -> None:
        self.settings = settings
        self._memory: list[str] = []

    def paths(self) -> list[str]:
        if self.settings is None:
            return list(self._memory)
        value = self.settings.value(RECENT_KEY, [])
        if isinstance(value, str):  # QSettings hands a one-item list back as a string
            value = [value]
        return [str(v) for v in value][:MAX_RECENT] if isinstance(value, list) else []

    def add(self, path: str | Path) -> None:
        text = str(path) if architecture_library(path) else str(Path(path).resolve())  # a name is no path
        paths = [text, *(p for p in self.paths() if p != text)][:MAX_RECENT]
        self._store(paths)

    def remove(self, path: str) -> None:
        self._store([p for p in self.paths() if p != path])

    def clear(self) -> None:
        self._store([])

    def _store(self, paths: list[str]) -> None:
        if self.settings is None:
            self._memory = paths
        else:
            self.settings.setValue(RECENT_KEY, paths)
            self.settings.sync()

    def fill(self, menu: QMenu, open_path: Any) -> None:
        """Rebuild `menu`: one entry per file (Ctrl+1…), then Clear."""
        menu.clear()
        paths = self.paths()
        for k, p in enumerate(paths):
            label = f"{Path(p).parent.name}/config.json" if Path(p).name == "config.json" else Path(p).name
            act = QAction(f"&{k + 1}  {label}", menu)  # a checkpoint by its folder: every one is a config.json
            act.setToolTip(p)
            act.setStatusTip(p)
            act.setData(p)
            act.triggered.connect(lambda _c=False, p=p: open_path(p))
            menu.addAction(act)
        if not paths:
            none = menu.addAction("No recent files")
            none.setEnabled(False)
        menu.addSeparator()
        clear = menu.addAction("Clear the list")
        clear.setEnabled(bool(paths))
        clear.triggered.connect(self.clear)


# -- torchvision's and timm's architectures by name (graph/readers/torchvision_arch.py, timm_arch.py) -------------
def architecture_fields() -> tuple[QComboBox, QComboBox, QSpinBox]:
    """The library, a name (its common ones listed, any other typed) and the side of the images the network is
    traced on."""
    library = QComboBox()
    library.setObjectName("architectureLibrary")
    library.addItems(list(LIBRARIES))
    library.setToolTip("whose constructor builds the network: torchvision's or timm's (pip install timm)")
    name = QComboBox()
    name.setObjectName("architectureName")
    name.setEditable(True)
    name.addItems(LIBRARIES["torchvision"])
    size = QSpinBox()
    size.setObjectName("architectureSize")
    size.setRange(16, 1024)
    size.setValue(224)
    size.setSuffix(" px")
    size.setToolTip("the side of the images the network is traced on (and steps through)")

    def switched(chosen: str) -> None:
        name.clear()
        name.addItems(LIBRARIES.get(chosen, ()))

    library.currentTextChanged.connect(switched)
    return library, name, size


def architecture_spec(library: QComboBox, name: QComboBox, size: QSpinBox) -> str:
    text = name.currentText().strip()
    return f"{library.currentText()}:{text}@{size.value()}" if text else ""


class ArchitectureDialog(QDialog):
    """File ▸ Open architecture by name: one of torchvision's or timm's networks, with random weights."""

    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Open an architecture by name")
        self.setObjectName("architectureDialog")
        intro = QLabel("A network from torchvision (classification, segmentation, video) or timm (image models), "
                       "built by its library with random weights (nothing is downloaded) and traced on one image of "
                       "this size.")
        intro.setWordWrap(True)
        self.library, self.name, self.size = architecture_fields()
        self.name.setCurrentText("resnet18")
        row = QHBoxLayout()
        row.addWidget(self.library)
        row.addWidget(self.name, 1)
        row.addWidget(self.size)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(row)
        lay.addWidget(buttons)
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance("x") * 64)  # the intro in three lines, not six

    @guarded
    def accept(self) -> None:
        spec = architecture_spec(self.library, self.name, self.size)
        if not spec:
            self.name.setFocus()
            return
        super().accept()
        self.chosen.emit(spec)


# -- the architecture of a state dict --------------------------------------------------------------
class ArchDialog(QDialog):
    """Which network a state dict's weights belong to: a built-in example or a model file."""

    chosen = Signal(str)

    def __init__(self, weights: str, current: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Architecture for the weights")
        self.setObjectName("archDialog")
        intro = QLabel(f"<b>{escape(Path(weights).name)}</b> holds weights only. Which network do they belong to?")
        intro.setWordWrap(True)
        self.use_example = QRadioButton("A built-in example")
        self.use_file = QRadioButton("A model file (.pt2, .onnx, .propscope)")
        group = QButtonGroup(self)
        group.addButton(self.use_example)
        group.addButton(self.use_file)
        self.example = QComboBox()
        for name, ex in EXAMPLES.items():
            self.example.addItem(f"{name} — {ex.summary}", name)
        i = self.example.findData(current)
        self.example.setCurrentIndex(max(i, 0))
        self.file = QLineEdit()
        self.file.setPlaceholderText("path to the model file")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.file.textEdited.connect(lambda _t: self.use_file.setChecked(True))
        self.example.activated.connect(lambda _i: self.use_example.setChecked(True))
        # torchvision's and timm's constructors by name: any name the library has can be typed
        self.use_library = QRadioButton("An architecture by name")
        group.addButton(self.use_library)
        self.library, self.library_name, self.image_size = architecture_fields()
        self.library_name.setToolTip("a torchvision or timm model name; its classifier gets as many classes as the "
                                     "weights")
        for edited in (self.library.activated, self.library_name.activated, self.library_name.editTextChanged,
                       self.image_size.valueChanged):
            edited.connect(lambda *_: self.use_library.setChecked(True))
        self.use_example.setChecked(True)
        grid = QGridLayout()
        grid.addWidget(self.use_example, 0, 0)
        grid.addWidget(self.example, 0, 1, 1, 2)
        grid.addWidget(self.use_file, 1, 0)
        grid.addWidget(self.file, 1, 1)
        grid.addWidget(browse, 1, 2)
        grid.addWidget(self.use_library, 2, 0)
        names = QHBoxLayout()
        names.addWidget(self.library)
        names.addWidget(self.library_name, 1)
        grid.addLayout(names, 2, 1)
        grid.addWidget(self.image_size, 2, 2)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(grid)
        lay.addWidget(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Architecture", "", open_filter())
        if path:
            self.file.setText(path)
            self.use_file.setChecked(True)

    def architecture(self) -> str:
        if self.use_library.isChecked():
            return architecture_spec(self.library, self.library_name, self.image_size)
        return self.file.text().strip() if self.use_file.isChecked() else str(self.example.currentData())

    @guarded
    def accept(self) -> None:
        arch = self.architecture()
        if not arch:
            (self.library_name if self.use_library.isChecked() else self.file).setFocus()
            return
        super().accept()
        self.chosen.emit(arch)


def report_html(report: Any) -> str:
    """A state dict's report: matched, missing, unexpected and wrong-shape tensors, each listed."""
    def section(title: str, names: Sequence[str], color: str) -> str:
        if not names:
            return f"<p><b>{title}: none</b></p>"
        items = "".join(f"<li>{escape(n)}</li>" for n in names)
        return f"<p><b style='color:{color}'>{title}: {len(names)}</b></p><ul>{items}</ul>"

    wrong = [f"{n}: file has {fmt_shape(got)}, the network needs {fmt_shape(want)}"
             for n, want, got in report.wrong_shape]
    prefix = f"<p>The prefix <code>{escape(report.prefix)}</code> was stripped from every name.</p>" \
        if report.prefix else ""
    verdict = ("All of the network's tensors came from the file." if report.ok else
               "Missing tensors keep the architecture's own values; wrong-shaped ones are ignored.")
    return (f"<h3>Weights from {escape(report.source)}</h3><p>{verdict}</p>{prefix}"
            + section("Matched", report.matched, "#2e7d32")
            + section("Missing (kept the architecture's)", report.missing, "#b35c00")
            + section("Unexpected (in the file, not in the network; ignored)", report.unexpected, "#57606a")
            + section("Wrong shape (ignored)", wrong, "#c62828"))


class ReportDialog(QDialog):
    def __init__(self, report: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("State dict report")
        self.setObjectName("stateDictReport")
        self.text = QTextBrowser()
        self.text.setHtml(report_html(report))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        buttons.accepted.connect(self.close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text)
        lay.addWidget(buttons)
        self.resize(560, 480)


# -- data for the current model ----------------------------------------------------------------------
class DataDialog(QDialog):
    """Data for the model's inputs: a `.npz`/`.csv` file, or a generated batch of the declared shapes."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Data for the model")
        self.setObjectName("dataDialog")
        g = session.model.graph
        rows = "".join(f"<li><code>{escape(n.name)}</code>: {fmt_shape(n.shape)}</li>" for n in g.inputs)
        target = ""
        if session.loss_name:
            target = f"<li><code>y</code>: the target of the {escape(session.loss_name)} loss</li>"
        intro = QLabel(f"The model reads:<ul>{rows}{target}</ul>A <code>.npz</code> holds arrays named after the "
                       "inputs (or <code>x</code>) and <code>y</code>; a <code>.csv</code> holds the features, "
                       "then the target in the last column. Only the batch size may differ. An image "
                       "(<code>.png</code>, <code>.jpg</code>...) is resized to the model's image input, its "
                       "pixels / 255 normalized as chosen below.")
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.RichText)
        self.from_file = QRadioButton("Load a file")
        self.generate = QRadioButton("Generate a random batch of these shapes")
        group = QButtonGroup(self)
        group.addButton(self.from_file)
        group.addButton(self.generate)
        self.path = QLineEdit()
        self.path.setPlaceholderText("data.npz, data.csv or an image")
        self.path.textEdited.connect(lambda _t: self.from_file.setChecked(True))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setPrefix("seed ")
        self.seed.valueChanged.connect(lambda _v: self.generate.setChecked(True))
        self.from_file.setChecked(True)
        file_row = QHBoxLayout()
        file_row.addWidget(self.path, 1)
        file_row.addWidget(browse)
        # an image's pixels / 255: as the model's own images were (where it says), ImageNet's, or as they are
        own = session.model.image_normalization
        self.normalize = QComboBox()
        self.normalize.setObjectName("imageNormalization")
        self.normalize.addItem(f"as the model's images were ({own[2]})" if own else
                               "as the model's images were (it does not say: not normalized)", "model")
        self.normalize.addItem("ImageNet's mean and std", "imagenet")
        self.normalize.addItem("not normalized", "none")
        norm_row = QHBoxLayout()
        norm_row.addWidget(QLabel("An image's pixels / 255:"))
        norm_row.addWidget(self.normalize, 1)
        # and its class, for a cross-entropy loss (a photo carries none): drawn at random unless chosen
        scores = session.prediction_node.shape
        classes = int(scores[class_axis(scores)]) if session.loss_name == "cross_entropy" and scores else 0
        self.label = QSpinBox()
        self.label.setObjectName("imageLabel")
        self.label.setRange(-1, max(classes - 1, -1))
        self.label.setSpecialValueText("drawn at random")
        self.label.setValue(-1)
        self.label.setEnabled(classes > 0)
        self.label.setToolTip(f"The class of the image, 0 to {classes - 1}, for the cross-entropy loss" if classes
                              else "The loss is not a cross-entropy: a target of its own kind is drawn")
        label_row = QHBoxLayout()
        label_row.addWidget(QLabel("An image's class:"))
        label_row.addWidget(self.label)
        label_row.addStretch(1)
        gen_row = QHBoxLayout()
        gen_row.addWidget(self.seed)
        gen_row.addStretch(1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._ok)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addWidget(self.from_file)
        lay.addLayout(file_row)
        lay.addLayout(norm_row)
        lay.addLayout(label_row)
        lay.addWidget(self.generate)
        lay.addLayout(gen_row)
        lay.addWidget(buttons)

    def _browse(self) -> None:
        images = " ".join(f"*{suffix}" for suffix in IMAGE_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Data", "", f"Data (*.npz *.csv {images});;Images ({images});;"
                                                                "All files (*)")
        if path:
            self.path.setText(path)
            self.from_file.setChecked(True)

    def _ok(self) -> None:
        if self.from_file.isChecked() and not self.path.text().strip():
            self.path.setFocus()
            return
        self.accept()

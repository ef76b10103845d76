"""Hostile and broken model files: each gives its one-line error, and nothing in them ever runs.

The corpus is built here from a real export (truncated, empty, wrong magic, invalid JSON inside a
.pt2, pickles that would run a command, random bytes, absurd shapes, paths out of the folder), in
the style of Netron's table of files with their expected result.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from propscope.cli import main
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import load_target

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
HAS_ONNX = importlib.util.find_spec("onnx") is not None
MARKER = "PROPSCOPE_PWNED"


class RunsACommand:
    """Unpickling this calls os.system: a reader that unpickles fully creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("good") / "good.pt2"
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (torch.randn(5, 3),)), str(path))
    return path


def _rewrite(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None],
             extra: dict[str, bytes] | None = None) -> Path:
    """A copy of a zip with members changed (None drops one) and members added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            data = change(info.filename, zin.read(info))
            if data is not None:
                zout.writestr(info.filename, data)
        for name, data in (extra or {}).items():
            zout.writestr(f"{root}/{name}", data)
    return dst


def _evil_pickle(marker: Path) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"w": RunsACommand(marker)}, buf)
    return buf.getvalue()


def _weights_config(change: Callable[[dict], None]) -> Callable[[str, bytes], bytes | None]:
    def edit(name: str, data: bytes) -> bytes | None:
        if name.endswith("model_weights_config.json"):
            spec = json.loads(data)
            change(spec["config"])
            return json.dumps(spec).encode()
        return data

    return edit


def _program(change: Callable[[dict], None]) -> Callable[[str, bytes], bytes | None]:
    def edit(name: str, data: bytes) -> bytes | None:
        if name.endswith("models/model.json"):
            spec = json.loads(data)
            change(spec)
            return json.dumps(spec).encode()
        return data

    return edit


def _first_weight(config: dict) -> dict:
    return config[next(iter(config))]


def _set_sizes(config: dict, sizes: list[int]) -> None:
    meta = _first_weight(config)["tensor_meta"]
    meta["sizes"] = [{"as_int": s} for s in sizes]
    meta["strides"] = [{"as_int": 1} for _ in sizes]


def _undefined_input(spec: dict) -> None:
    spec["graph_module"]["graph"]["nodes"][0]["inputs"][0]["arg"] = {"as_tensor": {"name": "nowhere"}}


def _huge_input(spec: dict) -> None:
    values = spec["graph_module"]["graph"]["tensor_values"]
    values["input"]["sizes"] = [{"as_int": 10**6}, {"as_int": 10**6}]


# name -> (builder(good_pt2, folder, marker) -> path, expected fragment of the one-line error)
PT2_CASES: dict[str, tuple[Callable[[Path, Path, Path], Path], str]] = {
    "empty": (lambda g, d, m: _write(d / "e.pt2", b""), "not a zip file"),
    "truncated": (lambda g, d, m: _write(d / "t.pt2", g.read_bytes()[: g.stat().st_size * 2 // 3]), "not a zip file"),
    "wrong magic": (lambda g, d, m: _write(d / "png.pt2", b"\x89PNG\r\n\x1a\n" + bytes(64)), "not a zip file"),
    "random bytes": (lambda g, d, m: _write(d / "r.pt2", np.random.default_rng(0).bytes(4096)), "not a zip file"),
    "no program": (lambda g, d, m: _rewrite(g, d / "np.pt2", lambda n, b: None if n.endswith("model.json") else b),
                   "no models/*.json program"),
    "invalid json": (lambda g, d, m: _rewrite(g, d / "j.pt2", lambda n, b: b"{not json" if n.endswith("model.json")
                                              else b), "models/model.json is not valid JSON"),
    "json not a program": (lambda g, d, m: _rewrite(g, d / "p.pt2", lambda n, b: b'{"hello": 1}'
                                                    if n.endswith("model.json") else b), "lacks 'graph_module'"),
    "undefined value": (lambda g, d, m: _rewrite(g, d / "u.pt2", _program(_undefined_input)),
                        "uses value 'nowhere' before defining it"),
    "pickled weight that runs a command": (lambda g, d, m: _evil_weight(g, d, m), "calls posix.system"),
    "legacy pickled weights that run a command": (
        lambda g, d, m: _rewrite(g, d / "l.pt2", lambda n, b: None if n.endswith("weights_config.json") else b,
                                 {"data/weights/model.pt": _evil_pickle(m)}), "calls posix.system"),
    "absurd shape": (lambda g, d, m: _rewrite(g, d / "a.pt2", _weights_config(lambda c: _set_sizes(c, [10**6] * 2))),
                     "more than propscope will load"),
    "shape larger than its bytes": (lambda g, d, m: _rewrite(g, d / "s.pt2",
                                                            _weights_config(lambda c: _set_sizes(c, [1000, 1000]))),
                                    "but its data holds"),
    "path out of the archive": (lambda g, d, m: _rewrite(g, d / "o.pt2", _weights_config(
        lambda c: _first_weight(c).update(path_name="../../../etc/passwd"))), "points outside its folder"),
    "absurd input shape": (lambda g, d, m: _rewrite(g, d / "i.pt2", _program(_huge_input)),
                           "more than propscope will load"),
}


def _evil_weight(good: Path, folder: Path, marker: Path) -> Path:
    def change(config: dict) -> None:
        _first_weight(config).update(use_pickle=True, path_name="evil")

    return _rewrite(good, folder / "w.pt2", _weights_config(change), {"data/weights/evil": _evil_pickle(marker)})


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    out = capsys.readouterr()
    assert code == 2, f"expected a refusal, got exit {code}: {out.out[-300:]}"
    err = out.err.rstrip("\n")
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("propscope: error: "), err
    return err


@pytest.mark.parametrize("case", list(PT2_CASES))
def test_hostile_pt2(case: str, good_pt2: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / MARKER
    build, expected = PT2_CASES[case]
    path = build(good_pt2, tmp_path, marker)
    err = _one_line_error(capsys, ["inspect", str(path)])
    assert expected in err and str(path) in err, err
    assert not marker.exists(), "code from the file ran"


def test_a_pickled_sample_input_that_runs_a_command_is_skipped_not_run(good_pt2: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / MARKER
    path = _rewrite(good_pt2, tmp_path / "s.pt2",
                    lambda n, b: _evil_pickle(marker) if "sample_inputs" in n else b)
    assert main(["inspect", str(path)]) == 0
    assert not marker.exists()


def test_the_command_line_refuses_a_crafted_pt2_in_a_fresh_interpreter(good_pt2: Path, tmp_path: Path) -> None:
    """The real entry point, as a user runs it: one line on stderr, exit 2, and the command never runs."""
    marker = tmp_path / MARKER
    path = _evil_weight(good_pt2, tmp_path, marker)
    done = subprocess.run([sys.executable, "-m", "propscope.cli", "inspect", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "calls posix.system" in done.stderr
    assert not marker.exists()


# -- state dicts ----------------------------------------------------------------------------------------
def _safetensors(header: object, data: bytes = b"", length: int | None = None) -> bytes:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return (len(head) if length is None else length).to_bytes(8, "little") + head + data


STATE_CASES: dict[str, tuple[str, Callable[[Path], bytes], str]] = {
    "empty pt": (".pt", lambda m: b"", "the file is empty"),
    "random pt": (".pt", lambda m: np.random.default_rng(1).bytes(2048), "not a PyTorch file"),
    "torch.save of a command": (".pt", _evil_pickle, "calls posix.system"),
    "plain pickle of a command": (".pth", lambda m: pickle.dumps(RunsACommand(m), protocol=2), "calls posix.system"),
    "truncated torch zip": (".pt", lambda m: _torch_bytes()[:300], "truncated"),
    "not a dict": (".pt", lambda m: _torch_bytes([torch.zeros(2)]), "not a state dict"),
    "empty safetensors": (".safetensors", lambda m: b"", "the file is empty"),
    "random safetensors": (".safetensors", lambda m: np.random.default_rng(2).bytes(512), "not a safetensors file"),
    "header longer than file": (".safetensors", lambda m: _safetensors({}, length=10**6), "does not fit"),
    "header not json": (".safetensors", lambda m: _safetensors(b"{oops"), "header is not valid JSON"),
    "absurd shape": (".safetensors", lambda m: _safetensors({"w": {"dtype": "F32", "shape": [10**7, 10**7],
                                                                   "data_offsets": [0, 4]}}, bytes(4)),
                     "more than propscope will load"),
    "offsets past the end": (".safetensors", lambda m: _safetensors({"w": {"dtype": "F32", "shape": [4],
                                                                           "data_offsets": [0, 16]}}, bytes(8)),
                             "may be truncated"),
    "size and span disagree": (".safetensors", lambda m: _safetensors({"w": {"dtype": "F32", "shape": [3],
                                                                             "data_offsets": [0, 8]}}, bytes(8)),
                               "but spans 8 bytes"),
    "unknown dtype": (".safetensors", lambda m: _safetensors({"w": {"dtype": "C64", "shape": [1],
                                                                    "data_offsets": [0, 8]}}, bytes(8)),
                      "cannot use"),
}


def _torch_bytes(value: object = None) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(64, 64)} if value is None else value, buf)
    return buf.getvalue()


@pytest.mark.parametrize("case", list(STATE_CASES))
def test_hostile_state_dict(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / MARKER
    suffix, build, expected = STATE_CASES[case]
    path = _write(tmp_path / f"weights{suffix}", build(marker))
    err = _one_line_error(capsys, ["inspect", str(path), "--arch", "xor"])
    assert expected in err, err
    assert not marker.exists(), "code from the file ran"


def test_a_torchscript_archive_gives_its_weights_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployed model is often only a TorchScript `.pt`: its data.pkl (the module tree) is read with stand-ins for
    the weights; its code is never compiled or run (torch.jit.load is not called)."""
    path = tmp_path / "scripted.pt"
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated, and still what many .pt files are
        torch.jit.save(torch.jit.script(net), str(path))
    arch = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(),
                                                              torch.nn.Linear(3, 2)), (torch.randn(4, 2),)), str(arch))

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.jit.load ran")

    monkeypatch.setattr(torch.jit, "load", never)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0.weight" in out and "2.bias" in out and "a TorchScript archive, whose graph opens with" in out
    assert "its graph from its code, interpreted, never run" in out
    model = load_target(path, arch=arch)
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(model.arrays[name], value.numpy())
    from propscope.graph.readers.state_dict import read_tensors

    with pytest.raises(ModelFormatError, match="TorchScript"):  # the strict reader still refuses it
        read_tensors(path)


# -- ONNX ----------------------------------------------------------------------------------------------
def _onnx_model(initializer: object = None, input_dims: tuple[int, ...] = (2, 3)) -> bytes:
    from onnx import TensorProto, helper

    w = initializer or helper.make_tensor("w", TensorProto.FLOAT, (3, 2), np.ones(6, dtype=np.float32).tobytes(),
                                          raw=True)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="/fc/MatMul")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _tensor(dims: tuple[int, ...], raw: bytes) -> object:
    """A TensorProto built by hand: onnx.helper would refuse the lies these tests need."""
    from onnx import TensorProto

    t = TensorProto()
    t.name, t.data_type = "w", TensorProto.FLOAT
    t.dims.extend(dims)
    t.raw_data = raw
    return t


def _external(location: str, offset: int = 0, length: int = 24) -> object:
    from onnx import TensorProto

    t = _tensor((3, 2), b"")
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def _absurd_initializer() -> object:
    return _tensor((10**6, 10**6), b"")


def _short_initializer() -> object:
    return _tensor((3, 2), bytes(8))


ONNX_CASES: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "empty": (lambda d: b"", "the file is empty"),
    "truncated": (lambda d: _onnx_model()[:40], "not a valid ONNX file"),
    "wrong magic": (lambda d: b"\x89PNG\r\n\x1a\n" + bytes(200), "not"),
    "random bytes": (lambda d: np.random.default_rng(3).bytes(4096), "not"),
    "absurd initializer": (lambda d: _onnx_model(_absurd_initializer()), "more than propscope will load"),
    "initializer shorter than its shape": (lambda d: _onnx_model(_short_initializer()), "but holds 8 bytes"),
    "absurd input": (lambda d: _onnx_model(input_dims=(10**7, 10**7)), "more than propscope will load"),
    "external data outside the folder": (lambda d: _onnx_model(_external("../secret.bin")), "own folder"),
    "external data at an absolute path": (lambda d: _onnx_model(_external("/etc/passwd")), "own folder"),
    "external data past its file": (lambda d: _write(d / "w.bin", bytes(8)) and _onnx_model(_external("w.bin")),
                                    "may be truncated"),
    "external data missing": (lambda d: _onnx_model(_external("gone.bin")), "missing beside the model"),
}


@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")
@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_hostile_onnx(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build, expected = ONNX_CASES[case]
    path = _write(tmp_path / "model.onnx", build(tmp_path))
    err = _one_line_error(capsys, ["inspect", str(path)])
    assert expected in err and str(path) in err, err


@pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")
def test_external_data_beside_the_model_is_read(tmp_path: Path) -> None:
    from propscope.graph.readers import open_model

    _write(tmp_path / "w.bin", bytes(16) + np.arange(6, dtype="<f4").tobytes())
    path = _write(tmp_path / "model.onnx", _onnx_model(_external("w.bin", offset=16)))
    model = open_model(path)
    np.testing.assert_array_equal(model.arrays["w"], np.arange(6, dtype=np.float32).reshape(3, 2))
    assert [n.module for n in model.graph.ops] == ["fc"]


# -- the torch-free unpickler (readers/_pickle.py) --------------------------------------------------------
SEEDS = Path(__file__).parent / "corpus" / "seeds"


def test_opening_a_pt2_and_a_state_dict_imports_no_torch(tmp_path: Path) -> None:
    """`inspect` and a NumPy trace of a .pt2 (its sample inputs included) and a .pt state dict, in a fresh
    interpreter: torch is never imported."""
    code = f"""
import sys
from propscope.cli import main
from propscope.graph.readers import open_model
model = open_model({str(SEEDS / 'small.pt2')!r})
assert model.batch, "the sample inputs were read"
assert main(["inspect", {str(SEEDS / 'small.pt2')!r}]) == 0
assert main(["trace", {str(SEEDS / 'small.pt2')!r}, "--backend", "numpy", "--loss", "none",
             "--out", {str(tmp_path / 't.npz')!r}]) == 0
assert main(["inspect", {str(SEEDS / 'small.pt')!r}, "--arch", "xor"]) == 0
print("TORCH" if "torch" in sys.modules else "NO TORCH")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("NO TORCH"), out.stdout[-500:]


def _saved(value: object) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(value, buf)
    return buf.getvalue()


def _same(mine: object, ref: object, where: str = "") -> None:
    if isinstance(ref, torch.Tensor):
        expected = ref.detach()
        expected = expected.float() if expected.dtype in (torch.bfloat16, torch.float16) else expected
        assert isinstance(mine, np.ndarray), where
        assert mine.shape == tuple(expected.shape) and mine.dtype == expected.numpy().dtype, where
        np.testing.assert_array_equal(mine, expected.numpy(), err_msg=where)
    elif isinstance(ref, dict):
        assert isinstance(mine, dict) and list(mine) == list(ref), where
        for k in ref:
            _same(mine[k], ref[k], f"{where}/{k}")
    elif isinstance(ref, list | tuple):
        assert len(mine) == len(ref), where  # type: ignore[arg-type]
        for i, (a, b) in enumerate(zip(mine, ref, strict=True)):  # type: ignore[call-overload]
            _same(a, b, f"{where}[{i}]")
    else:
        assert mine == ref, where


PARITY = {
    "state dict with buffers": lambda: torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).state_dict(),
    "views, broadcasts and dtypes": lambda: {
        "slice": torch.arange(24.0).reshape(4, 6)[:, 1::2], "expand": torch.arange(6).expand(3, 6),
        "bf16": torch.randn(3, 2).bfloat16(), "half": torch.randn(5).half(), "bool": torch.tensor([True, False]),
        "transposed": torch.randn(3, 4).t(), "empty": torch.zeros(0, 3), "scalar": torch.tensor(3.5),
        "int8": torch.tensor([-1, 2], dtype=torch.int8), "parameter": torch.nn.Parameter(torch.randn(2)),
        "double": torch.randn(2, 2, dtype=torch.float64)},
    "nested sample inputs": lambda: ((torch.randn(2, 3),), {"x": [torch.randn(1)], "n": 3}),
}


@pytest.mark.parametrize("case", list(PARITY))
def test_the_torch_free_reader_gives_what_torch_load_gives(case: str) -> None:
    import io

    from propscope.graph.readers._pickle import load_weights_only

    data = _saved(PARITY[case]())
    _same(load_weights_only(data, "f", case), torch.load(io.BytesIO(data), weights_only=True), case)


def test_a_state_dict_reads_the_same_with_and_without_torch(tmp_path: Path) -> None:
    from propscope.graph.readers.state_dict import read_tensors

    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Sigmoid(), torch.nn.Linear(4, 1))
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    tensors = read_tensors(path)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(tensors[name], value.numpy())

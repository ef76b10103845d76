"""propscope's own model format: every example survives a round trip; bad files get one clear sentence.

The corpus of bad files is a table (as Netron keeps one): how to make the file, and what the error must say.
Loading never executes code: a pickle inside a model is refused without being unpickled.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.examples import EXAMPLES, load_example
from propscope.graph.model import Model
from propscope.graph.readers import load_target, open_model
from propscope.graph.readers.native import FORMAT, MANIFEST, VERSION, save
from propscope.graph.readers.native import open as open_native


def graph_spec(model: Model) -> list[tuple[Any, ...]]:
    return [(n.name, n.op.name, tuple(a.name for a in n.inputs), dict(n.attrs), n.shape,
             {k: v for k, v in n.meta.items() if k != "shape"}) for n in model.graph]


# -- round trip -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_round_trip(tmp_path: Path, name: str) -> None:
    model = load_example(name, seed=2)
    path = save(model, tmp_path / f"{name}.propscope")
    assert path.is_file() and not list(tmp_path.glob("*.part"))
    back = open_native(path)

    assert back.graph.name == model.graph.name
    assert graph_spec(back) == graph_spec(model)
    assert [o.name for o in back.graph.outputs] == [o.name for o in model.graph.outputs]
    assert back.arrays.keys() == model.arrays.keys() and back.batch.keys() == model.batch.keys()
    for saved, loaded in ((model.arrays, back.arrays), (model.batch, back.batch)):
        for key, value in saved.items():
            assert loaded[key].dtype == np.asarray(value).dtype, key
            np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    assert back.loss == model.loss and back.metrics == model.metrics
    assert asdict(back.training) == asdict(model.training)
    assert back.description == model.description
    assert back.dataset == model.dataset

    before, after = open_session(model, dtype="float64"), open_session(path, dtype="float64")
    before.run_to_end()
    after.run_to_end()
    assert float(after.value("loss")) == float(before.value("loss"))
    for p in model.graph.parameters:
        np.testing.assert_array_equal(after.grad(p.name), before.grad(p.name))


def test_round_trip_keeps_attrs_of_every_kind(tmp_path: Path) -> None:
    """Tuples, None, bools, strings and floats in attrs come back as they went in."""
    from propscope.graph.ir import Graph

    g = Graph("attrs")
    x = g.input("x", (2, 3, 4))
    t = g.add("transpose", x, attrs={"axes": (2, 0, 1)})
    s = g.add("sum", t, attrs={"axis": (0, -1), "keepdims": True})
    r = g.add("reshape", s, attrs={"shape": (-1,)})
    a = g.add("gelu", r, attrs={"approximate": "tanh"})
    g.set_outputs(g.add("leaky_relu", a, attrs={"negative_slope": 0.25}))
    model = Model(g, {}, batch={"x": np.arange(24.0).reshape(2, 3, 4)})
    back = open_native(save(model, tmp_path / "attrs.propscope"))
    assert graph_spec(back) == graph_spec(model)
    for node in back.graph.ops:
        for key, value in node.attrs.items():
            assert type(value) is type(model.graph[node.name].attrs[key]), (node.name, key)


def test_saved_file_is_a_zip_with_a_json_manifest(tmp_path: Path) -> None:
    path = save(load_example("xor"), tmp_path / "xor.propscope")
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        assert manifest["format"] == FORMAT and manifest["version"] == VERSION
        assert all(name == MANIFEST or name.endswith(".npy") for name in zf.namelist())
    assert open_model(path).graph.name == "xor" and load_target(str(path)).graph.name == "xor"


def test_a_zip_with_a_manifest_opens_under_any_name(tmp_path: Path) -> None:
    path = save(load_example("neuron"), tmp_path / "neuron.zip")
    assert open_model(path).graph.name == "neuron"


# -- the corpus of bad files ---------------------------------------------------------------------
def _npy(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _xor_members() -> dict[str, bytes]:
    """The members of a good xor file, to be spoiled one at a time."""
    model = load_example("xor")
    members: dict[str, bytes] = {}
    manifest: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "graph": {"name": "xor", "nodes": [], "outputs": []},
        "arrays": {}, "batch": {}, "loss": model.loss, "metrics": list(model.metrics),
        "training": asdict(model.training), "description": model.description,
    }
    for n in model.graph:
        node: dict[str, Any] = {"name": n.name, "op": n.op.name, "inputs": [a.name for a in n.inputs],
                                "attrs": dict(n.attrs), "meta": {k: v for k, v in n.meta.items() if k != "shape"}}
        if n.is_leaf:
            node["meta"]["shape"] = list(n.shape)
        manifest["graph"]["nodes"].append(node)
    manifest["graph"]["outputs"] = [o.name for o in model.graph.outputs]
    for key, value in model.arrays.items():
        manifest["arrays"][key] = f"arrays/{key}.npy"
        members[f"arrays/{key}.npy"] = _npy(value)
    for key, value in model.batch.items():
        manifest["batch"][key] = f"batch/{key}.npy"
        members[f"batch/{key}.npy"] = _npy(value)
    members[MANIFEST] = json.dumps(manifest).encode()
    return members


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def _with_manifest(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        members = _xor_members()
        manifest = json.loads(members[MANIFEST])
        change(manifest)
        members[MANIFEST] = json.dumps(manifest).encode()
        _zip(path, members)

    return make


def _with_member(name: str, data: bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        _zip(path, {**_xor_members(), name: data})

    return make


def _huge_npy_header() -> bytes:
    """A valid .npy header declaring 10**12 float64 values, followed by eight bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    return buf.getvalue() + b"\0" * 8


def _truncated(path: Path) -> None:
    save(load_example("xor"), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _set_node_op(manifest: dict[str, Any], name: str, op: str) -> None:
    for node in manifest["graph"]["nodes"]:
        if node["name"] == name:
            node["op"] = op


def _pop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m.pop(key)


BAD_FILES: list[tuple[str, Callable[[Path], None], tuple[str, ...]]] = [
    ("empty", lambda p: p.write_bytes(b""), ("not a propscope model file", "not a zip archive")),
    ("truncated-zip", _truncated, ("not a propscope model file", "not a zip archive")),
    ("random-bytes", lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), ("not a zip archive",)),
    ("no-manifest", lambda p: _zip(p, {"arrays/W1.npy": _npy(np.zeros((2, 4)))}), ("model.json is missing",)),
    ("invalid-json", _with_member(MANIFEST, b'{"format": "propscope-model", "version": 1,'),
     ("model.json is not valid JSON",)),
    ("json-not-an-object", _with_member(MANIFEST, b"[1, 2, 3]"), ("does not describe a propscope model",)),
    ("other-format", _with_manifest(lambda m: m.update(format="keras")), ("does not describe a propscope model",)),
    ("future-version", _with_manifest(lambda m: m.update(version=VERSION + 1)),
     (f"format version {VERSION + 1} is newer", "upgrade propscope")),
    ("version-not-a-number", _with_manifest(lambda m: m.update(version="one")), ("format version 'one'",)),
    ("unknown-op", _with_manifest(lambda m: _set_node_op(m, "hidden_output", "frobnicate")),
     ("'hidden_output'", "'frobnicate'", "not in propscope's catalog")),
    ("no-graph", _with_manifest(_pop("graph")), ("malformed model", "graph")),
    ("input-not-in-graph", _with_manifest(lambda m: m["graph"]["nodes"].pop(0)), ("'X'",)),
    ("missing-array-member", _with_manifest(lambda m: m["arrays"].update(W1="arrays/nowhere.npy")),
     ("no member", "arrays/nowhere.npy")),
    ("array-missing", _with_manifest(lambda m: m["arrays"].pop("W1")), ("'W1'", "no value")),
    ("wrong-shape-array", _with_member("arrays/W1.npy", _npy(np.zeros((3, 4)))),
     ("'W1'", "(3, 4)", "(2, 4)")),
    ("huge-declared-shape", _with_member("arrays/W1.npy", _huge_npy_header()),
     ("arrays/W1.npy", "declares shape (1000000000000,)")),
    ("not-npy", _with_member("arrays/W1.npy", b"just some bytes"), ("arrays/W1.npy", "not a valid .npy")),
    ("string-array", _with_member("arrays/W1.npy", _npy(np.array(["a", "b"]))),
     ("arrays/W1.npy", "only numbers are allowed")),
    ("bad-training", _with_manifest(lambda m: m["training"].update(momentum=0.9)), ("malformed model",)),
]


@pytest.mark.parametrize(("make", "expected"), [(m, e) for _, m, e in BAD_FILES], ids=[i for i, _, _ in BAD_FILES])
def test_bad_file(tmp_path: Path, make: Callable[[Path], None], expected: tuple[str, ...]) -> None:
    path = tmp_path / "bad.propscope"
    make(path)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError) as info:
            open_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert peak < 50 * 2**20, f"opening a bad file allocated {peak / 2**20:.0f} MiB"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="no such file"):
        open_model(tmp_path / "nowhere.propscope")
    with pytest.raises(ModelFormatError, match="no such file"):
        open_native(tmp_path / "nowhere.propscope")


def test_a_directory_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "dir.propscope").mkdir()
    with pytest.raises(ModelFormatError, match="not a file"):
        open_model(tmp_path / "dir.propscope")


# -- loading never executes code --------------------------------------------------------------------
class _Payload:
    """Unpickling this writes the marker file: proof that someone ran code from the model."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_pickled_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload(marker)
    data = _npy(evil, allow_pickle=True)

    # the payload is live: unpickling it does write the marker (so the test below can fail)
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()

    path = tmp_path / "evil.propscope"
    _with_member("arrays/W1.npy", data)(path)
    with pytest.raises(ModelFormatError) as info:
        open_model(path)
    assert "arrays/W1.npy" in str(info.value) and "only numbers are allowed" in str(info.value)
    assert not marker.exists(), "loading a model unpickled its contents"

    _with_member("batch/X.npy", data)(path)
    with pytest.raises(ModelFormatError, match=r"batch/X\.npy"):
        open_model(path)
    assert not marker.exists()


def _open_paths() -> set[str]:
    fds = Path("/proc/self/fd")
    paths = set()
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):  # the directory's own descriptor is gone by now
            paths.add(os.readlink(fd))
    return paths


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to list open files")
@pytest.mark.parametrize("make", [m for _, m, _ in BAD_FILES], ids=[i for i, _, _ in BAD_FILES])
def test_bad_files_are_closed(tmp_path: Path, make: Callable[[Path], None]) -> None:
    path = tmp_path / "bad.propscope"
    make(path)
    with pytest.raises(ModelFormatError):
        open_model(path)
    assert str(path) not in _open_paths()

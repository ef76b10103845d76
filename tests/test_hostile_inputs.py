"""Inputs a review found that once ended in a traceback: each now gets one clear line."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from propscope.cli import main
from propscope.graph.errors import ModelFormatError
from propscope.graph.examples import load_example
from propscope.graph.readers import open_model, save_model


def rewrite_manifest(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(members["model.json"])
    members["model.json"] = edit(manifest)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.fixture
def xor_file(tmp_path: Path) -> Path:
    return save_model(load_example("xor"), tmp_path / "xor.propscope")


def test_an_unknown_attribute_is_refused_when_the_file_opens(xor_file: Path) -> None:
    def edit(m):  # type: ignore[no-untyped-def]
        m["graph"]["nodes"][5]["attrs"]["axis"] = "zz"
        return json.dumps(m)

    rewrite_manifest(xor_file, edit)
    with pytest.raises(ModelFormatError, match="has no attribute 'axis'"):
        open_model(xor_file)


def test_deeply_nested_json_is_a_format_error_not_a_crash(xor_file: Path) -> None:
    rewrite_manifest(xor_file, lambda m: "[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        open_model(xor_file)


def test_an_infinite_shape_is_a_format_error(xor_file: Path) -> None:
    def edit(m):  # type: ignore[no-untyped-def]
        m["graph"]["nodes"][1]["meta"]["shape"] = [1e400, 4]
        return json.dumps(m).replace("Infinity", "1e400")

    rewrite_manifest(xor_file, edit)
    with pytest.raises(ModelFormatError):
        open_model(xor_file)


def test_a_nan_tolerance_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["gradcheck", "xor", "--tol", "nan"])
    assert exc.value.code == 2
    assert "finite number" in capsys.readouterr().err

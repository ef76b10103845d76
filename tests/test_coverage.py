"""`propscope ops --coverage`: the Core ATen figures, at least 90% covered, and the README's line kept true."""

from __future__ import annotations

from pathlib import Path

import pytest

from propscope.cli import main
from propscope.graph.readers import coverage

torch = pytest.importorskip("torch")
README = Path(__file__).resolve().parents[1] / "README.md"


def test_core_aten_is_at_least_ninety_percent_mapped_or_folded() -> None:
    cov = coverage.aten_coverage()
    assert len(cov.status) >= 150, "torch tags about 160 ops core"
    assert cov.percent >= 90, coverage.report(cov)
    for name in ("relu", "convolution", "native_group_norm", "hardtanh", "upsample_bilinear2d", "gather",
                 "constant_pad_nd", "amax", "var", "clamp", "where", "slice_scatter"):
        assert cov.status.get(name) == coverage.MAPPED, f"{name}: {cov.status.get(name)}"


def test_readme_shows_todays_core_aten_figures() -> None:
    """As a user runs it: a fresh process (torch tags a few more ops core once some of its modules are loaded)."""
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "propscope.cli", "ops", "--coverage"], capture_output=True,
                         text=True, timeout=300, check=True)
    line = run.stdout.splitlines()[0]
    assert line in README.read_text(), f"README's coverage line is stale; today: {line}"


def test_ops_command_lists_the_catalog_and_the_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ops"]) == 0
    out = capsys.readouterr().out
    assert "conv_transpose2d" in out and "group_norm" in out and out.strip().endswith("ops")
    assert main(["ops", "--coverage", "-v"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Core ATen (torch.Tag.core):") and "unsupported (" in out


def test_classification_names_a_reason_for_everything_not_mapped() -> None:
    cov = coverage.aten_coverage(["relu", "randperm", "convolution_backward", "lgamma_made_up", "arange", "rand"])
    assert cov.status == {"relu": coverage.MAPPED, "randperm": coverage.OUT_OF_SCOPE,
                          "convolution_backward": coverage.OUT_OF_SCOPE, "lgamma_made_up": coverage.UNSUPPORTED,
                          "arange": coverage.FOLDED, "rand": coverage.FOLDED}
    assert all(cov.reasons[n] for n in cov.status if cov.status[n] != coverage.MAPPED)

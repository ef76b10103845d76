"""The torch backend on a CUDA device, against the NumPy backend and against the same run on the CPU.

Marked `cuda`: skipped where torch sees no GPU (tests/conftest.py). Run them with `pytest -m cuda` on a machine that
has one. What runs on the GPU must give the numbers the CPU gives: the architectures engineers bring (torchvision and
transformers constructors, exported with torch.export) node by node against the hand-written derivatives in float64,
float32 without TF32 (cuDNN allows it by default, which would differ from NumPy in the 4th digit), training with every
optimizer step for step against torch on the CPU, and the CLI's trace on `--device cuda`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.backends import get_backend
from propscope.debugger import open_session
from propscope.debugger.compare import compare_backends
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.cuda]


def exported(name: str, folder: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """`name` from the zoo exported as users export (torch.export.save), and its batch by the graph's input names."""
    model, inputs, y = zoo.built(name)
    path = folder / f"{name}.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, tuple(torch.from_numpy(a) for a in inputs))
        torch.export.save(program, str(path))
    names = [n.name for n in open_model(path).graph.inputs]
    return path, {**dict(zip(names, inputs, strict=True)), "y": y}


@pytest.mark.slow
@pytest.mark.parametrize("name", zoo.params())
def test_architecture_on_cuda_agrees_with_numpy_on_every_node(name: str, tmp_path: Path) -> None:
    path, data = exported(name, tmp_path)
    s = open_session(path, dtype="float64", data=data, loss="cross_entropy")
    s.run_to_end()
    # torch's CUDA kernels of hardswish and hardsigmoid multiply by 1/6 rounded to float32 (`1.0f / 6.0f`) in every
    # dtype, so in float64 they are off by a relative 3e-8 (the CPU's are exact), and the layers after carry it on
    sixth_in_float32 = any(n.op.name in ("hardswish", "hardsigmoid") for n in s.graph)
    result = compare_backends(s, get_backend("torch", "float64", "cuda"), tolerance=1e-6 if sixth_in_float32 else None)
    assert "on cuda" in result.other
    assert result.passed, [(d.name, d.value_diff, d.grad_diff) for d in result.failures][:5]


@pytest.mark.parametrize("name", ["resnet18", "gpt2"])
def test_float32_on_cuda_is_plain_float32(name: str, tmp_path: Path) -> None:
    """cuDNN convolutions and cuBLAS products in float32, not TF32 (10-bit mantissa): every value of the forward pass
    within float32 rounding of NumPy's. (The backward pass of a deep network in float32 is compared in float64
    above: batch statistics over two images amplify rounding past any fixed tolerance.)"""
    if not zoo.NEEDS[zoo.ARCHITECTURES[name][1]]():
        pytest.skip(f"{name} needs a constructor library that is not installed")
    path, data = exported(name, tmp_path)
    s = open_session(path, dtype="float32", data=data, loss="cross_entropy")
    s.seek(s.n_forward)
    result = compare_backends(s, get_backend("torch", "float32", "cuda"))
    assert result.passed, [(d.name, d.value_diff, d.value_scale) for d in result.failures][:5]


def test_compare_on_cuda_names_torchs_hardswish_as_the_origin(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """MobileNetV3 compared at float64's own tolerance: the first node beyond it is a hardswish, and both the
    comparison and `propscope compare` say why."""
    if not zoo.has_torchvision():
        pytest.skip("torchvision is not installed")
    from propscope.cli import main

    path, data = exported("mobilenet_v3_small", tmp_path)
    s = open_session(path, dtype="float64", data=data, loss="cross_entropy")
    s.run_to_end()
    result = compare_backends(s, get_backend("torch", "float64", "cuda"))
    assert not result.passed and result.failures[0].op in ("hardswish", "hardsigmoid")
    assert result.explanation is not None and "1/6 rounded to float32" in result.explanation
    np.savez(tmp_path / "batch.npz", **data)
    assert main(["compare", str(path), "--device", "cuda", "--data", str(tmp_path / "batch.npz"),
                 "--loss", "cross_entropy"]) == 1
    assert "note: the first difference is at" in capsys.readouterr().out


def test_torch_cuda_hardswish_in_float64_is_off_by_a_float32_sixth() -> None:
    """What the tolerance above allows for, measured: if torch computes 1/6 in float64 one day, this says so."""
    x = torch.linspace(-2.9, 2.9, 10_001, dtype=torch.float64)
    for f in (torch.nn.functional.hardswish, torch.nn.functional.hardsigmoid):
        cpu, gpu = f(x), f(x.cuda()).cpu()
        relative = float(((gpu - cpu).abs() / cpu.abs().clamp_min(1e-12)).max())
        assert relative < 1e-7, (f.__name__, relative)
        print(f.__name__, "float64 on CUDA against the CPU, largest relative difference", relative)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam", "adamw"])
def test_training_on_cuda_follows_training_on_the_cpu(optimizer: str) -> None:
    runs = {}
    for device in ("cpu", "cuda"):
        s = open_session("classifier", backend="torch", dtype="float64", device=device, seed=0)
        history = s.train(25, optimizer=optimizer, lr=0.05, batch_size=16)
        runs[device] = (np.asarray(history.loss), s.parameters_numpy())
    np.testing.assert_allclose(runs["cuda"][0], runs["cpu"][0], rtol=1e-10)
    assert runs["cuda"][0][-1] < runs["cuda"][0][0]
    for name, value in runs["cpu"][1].items():
        np.testing.assert_allclose(runs["cuda"][1][name], value, rtol=1e-9, atol=1e-12, err_msg=name)


def test_cli_traces_a_saved_model_on_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from propscope.cli import main

    path, data = exported("resnet18" if zoo.has_torchvision() else "unet", tmp_path)
    np.savez(tmp_path / "batch.npz", **data)
    out = tmp_path / "trace.npz"
    code = main(["trace", str(path), "--backend", "torch", "--device", "cuda", "--dtype", "float64",
                 "--data", str(tmp_path / "batch.npz"), "--loss", "cross_entropy", "--out", str(out)])
    assert code == 0, capsys.readouterr()
    s = open_session(path, dtype="float64", data=data, loss="cross_entropy")
    s.run_to_end()
    with np.load(out) as saved:
        grads = [k for k in saved.files if k.startswith("grad/")]
        assert len(grads) > 10
        for key in grads:  # the GPU's trace, written by the CLI, against the hand-written derivatives
            want = s.grad(key.removeprefix("grad/"))
            assert want is not None and zoo.relative(saved[key], want) <= 1e-9, key


def test_cli_trains_on_cuda_with_snapshots_and_diffs_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`propscope train --backend torch --device cuda --snapshots`, saved, then `diff FILE@EPOCH`: the recorded
    parameters come off the GPU as the CPU run's, to the last digits."""
    from propscope.cli import main

    saved = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.propscope"
        code = main(["train", "classifier", "--backend", "torch", "--device", device, "--epochs", "30",
                     "--optimizer", "adam", "--lr", "0.05", "--data", "moons", "--snapshots", "8", "--out", str(out)])
        assert code == 0, capsys.readouterr()
        saved[device] = out
    capsys.readouterr()
    assert main(["diff", f"{saved['cpu']}@30", f"{saved['cuda']}@30"]) == 0
    table = capsys.readouterr().out
    assert "classifier" in table or "param" in table, table
    from propscope.graph.readers.snapshots import attached

    cpu, gpu = attached(open_model(saved["cpu"])), attached(open_model(saved["cuda"]))
    assert cpu is not None and gpu is not None and cpu.epochs == gpu.epochs and len(cpu.epochs) >= 8
    for epoch in cpu.epochs:
        for name, value in cpu[epoch].params.items():
            np.testing.assert_allclose(gpu[epoch].params[name], value, rtol=1e-9, atol=1e-12, err_msg=f"{name}@{epoch}")


def _every_op_case() -> list[Any]:
    """Every row of every op family's table (test_ops*.py, test_nn_ops.py), as the CPU checks run them."""
    import importlib

    cases: list[Any] = []
    for path in sorted(Path(__file__).parent.glob("test_*ops*.py")):
        cases += [c for c in getattr(importlib.import_module(path.stem), "CASES", []) if hasattr(c, "arrays")]
    return cases


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_op_on_cuda_agrees_with_numpy(dtype: str) -> None:
    """The catalog's ops one by one on the GPU (torch's CUDA kernels, autograd) against the NumPy backend by hand:
    forward, VJP and elementwise partials, to the same tolerances as on the CPU."""
    from opcheck import check_backends_agree

    failures = []
    for case in _every_op_case():
        try:
            check_backends_agree(case, dtype, device="cuda")
        except AssertionError as exc:
            failures.append(f"{case.id}: {str(exc).splitlines()[0]}")
    assert not failures, f"{len(failures)} ops differ on CUDA:\n" + "\n".join(failures)

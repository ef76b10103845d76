"""Training checkpoints as people save them, opened for their weights without running anything in them: Lightning's
`.ckpt`, torchvision's `checkpoint.pth.tar`, a dict with an `argparse.Namespace` and NumPy scalars beside the weights,
a whole `torch.save(model)`, and YOLOv5's `{"model": model, ...}`."""

from __future__ import annotations

import argparse
import json
import pathlib
import pickle
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.cli import main
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import load_target
from propscope.graph.readers.state_dict import read_checkpoint, read_tensors

torch = pytest.importorskip("torch")

MARKER: list[Path] = []  # where Net.__setstate__ would write, were it ever called


class Net(torch.nn.Module):
    """A small classifier whose unpickling leaves a trace: reading its checkpoint must not call it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU())
        self.head = torch.nn.Linear(8, 3)
        self.register_buffer("scratch", torch.zeros(2), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def __setstate__(self, state: dict[str, Any]) -> None:
        for path in MARKER:
            path.write_text("ran")
        super().__setstate__(state)


@pytest.fixture
def net(tmp_path: Path) -> tuple[Any, Path]:
    """A trained-looking Net (non-default weights and running statistics) and its architecture as a .pt2."""
    torch.manual_seed(0)
    model = Net()
    model.train()
    model(torch.randn(16, 6))  # running statistics move
    model.eval()
    arch = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(4, 6),)), str(arch))
    MARKER[:] = [tmp_path / "ran.txt"]
    return model, arch


def weights_of(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def check_opened(path: Path, arch: Path, model: Any) -> Any:
    """The checkpoint opens against the architecture with every weight the model had, and nothing of it ran."""
    opened = load_target(str(path), arch=str(arch))
    for name, value in weights_of(model).items():
        np.testing.assert_array_equal(opened.arrays[name], value, err_msg=name)
    assert not MARKER[0].exists(), "unpickling called the model's own code"
    return opened


def test_a_lightning_checkpoint_opens_with_its_hyperparameters_stood_in_for(tmp_path: Path, net: Any) -> None:
    model, arch = net
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 6)).sum().backward()
    optimizer.step()
    checkpoint = {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": OrderedDict(("model." + k, v) for k, v in model.state_dict().items()),
        "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [], "callbacks": {},
        "hyper_parameters": {"lr": 1e-3, "args": argparse.Namespace(lr=0.1, data=pathlib.PurePosixPath("/data"))},
    }
    path = tmp_path / "epoch=3-step=120.ckpt"
    torch.save(checkpoint, path)
    opened = check_opened(path, arch, model)
    assert "prefix 'model.' stripped" in " ".join(opened.warnings)
    assert any("also pickles argparse.Namespace, pathlib.PurePosixPath: read as inert stand-ins" in w
               for w in opened.warnings), opened.warnings


def test_a_pth_tar_with_numpy_scalars_and_a_best_score(tmp_path: Path, net: Any) -> None:
    """torchvision's ImageNet script saves `checkpoint.pth.tar` with the epoch, the arch, best_acc1 and the
    optimizer; many scripts keep NumPy scalars there."""
    model, arch = net
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 90, "arch": "net", "state_dict": model.state_dict(), "best_acc1": np.float64(76.1),
                "history": np.arange(3), "optimizer": torch.optim.SGD(model.parameters(), lr=0.1).state_dict()}, path)
    check_opened(path, arch, model)
    # torchvision's own script keeps best_acc1 as a tensor beside the state dict: the nested weights still win
    torch.save({"epoch": 90, "arch": "net", "state_dict": model.state_dict(), "best_acc1": torch.tensor(76.1)}, path)
    check_opened(path, arch, model)


@pytest.mark.parametrize("how", ["whole", "yolo", "data_parallel"])
def test_a_whole_pickled_model_gives_its_weights_without_being_called(tmp_path: Path, net: Any, how: str) -> None:
    model, arch = net
    path = tmp_path / "model.pth"
    if how == "whole":
        torch.save(model, path)
    elif how == "yolo":  # YOLOv5 and ultralytics keep the model object itself, in half precision, beside its EMA
        torch.save({"epoch": 5, "model": model, "optimizer": None, "date": "2026-11-30"}, path)
    else:
        torch.save(torch.nn.DataParallel(model), path)
    opened = check_opened(path, arch, model)
    assert "scratch" not in read_checkpoint(path).tensors  # a non-persistent buffer is not a weight
    note = next(w for w in opened.warnings if "also pickles" in w)
    assert "test_checkpoints.Net" in note and "torch.nn.modules" in note


def test_the_strict_reader_still_refuses_anything_but_tensors(tmp_path: Path, net: Any) -> None:
    """Before transformers' torch.load sees a pytorch_model.bin, propscope's reader vouches that it holds tensor
    rebuilds only: there a stand-in is not good enough."""
    model, _ = net
    path = tmp_path / "pytorch_model.bin"
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(ModelFormatError, match=r"calls argparse\.Namespace"):
        read_tensors(path)
    assert read_checkpoint(path).tensors.keys() >= {"head.weight"}


class RunsACommand:
    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("payload", [
    lambda: {"state_dict": {"w": torch.zeros(2)}, "hook": RunsACommand()},
    lambda: {"state_dict": {"w": torch.zeros(2)}, "x": pickle.loads},
    lambda: {"state_dict": {"w": torch.zeros(2)}, "x": eval},
])
def test_a_checkpoint_that_would_run_something_is_refused_in_one_line(
    tmp_path: Path, payload: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save(payload(), path)
    assert main(["inspect", str(path), "--arch", "xor"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "refused, since loading it could run code" in err, err


def test_a_whole_model_without_an_architecture_says_what_it_holds(tmp_path: Path, net: Any) -> None:
    model, _ = net
    path = tmp_path / "model.pt"
    torch.save(model, path)
    with pytest.raises(ModelFormatError, match="pass the architecture"):
        load_target(str(path))


def test_inspect_without_an_architecture_lists_the_tensors_and_names_the_non_finite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training blew up: which layer's weights hold NaN? `propscope inspect` answers before any architecture."""
    from propscope.graph.readers.state_dict import write_safetensors

    weight = np.arange(12, dtype=np.float32).reshape(3, 4)
    broken = np.ones(5, dtype=np.float32)
    broken[[1, 3]] = np.nan
    broken[4] = np.inf
    for path in (tmp_path / "w.safetensors", tmp_path / "w.ckpt"):
        tensors = {"layer.weight": weight, "head.bias": broken}
        if path.suffix == ".ckpt":
            torch.save({"state_dict": {k: torch.from_numpy(v) for k, v in tensors.items()},
                        "args": argparse.Namespace(lr=1.0)}, path)
        else:
            write_safetensors(tensors, path)
        assert main(["inspect", str(path)]) == 0
        out = capsys.readouterr().out
        assert "layer.weight" in out and "(3, 4)" in out and "5.500e+00" in out  # the mean of 0..11
        assert out.splitlines()[-1 if path.suffix != ".ckpt" else -2] == \
            "2 tensors, 17 values: 1 holds non-finite values: head.bias (2 NaN, 1 inf)"
        assert main(["inspect", str(path), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        rows = {r["name"]: r for r in info["tensors"]}
        assert rows["head.bias"]["nan"] == 2 and rows["head.bias"]["inf"] == 1 and rows["head.bias"]["max"] == 1.0
        assert rows["layer.weight"]["mean"] == 5.5 and rows["layer.weight"]["shape"] == [3, 4]
        assert bool(info["warnings"]) == (path.suffix == ".ckpt")


def test_every_command_says_what_the_weights_lacked_and_which_hold_nan(
    tmp_path: Path, net: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gradient table over weights that never loaded is about random numbers: grads, trace and the rest say so
    on stderr, as inspect does, and name a parameter that is NaN before any step."""
    model, arch = net
    weights = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head.")}
    weights["features.0.weight"][0, 0] = float("nan")
    path = tmp_path / "partial.pth"
    torch.save(weights, path)
    assert main(["grads", str(path), "--arch", str(arch), "--loss", "cross_entropy"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("propscope: warning: state dict partial.pth:") and "2 missing" in line
               and "head.weight" in line for line in err), err
    assert "propscope: warning: 1 parameter holds non-finite values before any step: features.0.weight (1 NaN)" \
        in err
    assert main(["trace", str(path), "--arch", str(arch), "--loss", "cross_entropy", "--out",
                 str(tmp_path / "t.npz")]) == 0
    out = capsys.readouterr().out
    assert "warning: first non-finite value at forward step 1: linear linear in features.0, from non-finite input " \
           "features.0.weight (1 NaN)" in out, out


class _Alloc:
    def __init__(self, arg: Any) -> None:
        self.arg = arg

    def __reduce__(self) -> tuple[Any, ...]:
        return (bytearray, (self.arg,))


SHARED = list(range(1000))


class _Copy:
    def __reduce__(self) -> tuple[Any, ...]:
        return (list, (SHARED,))  # the same memoised list copied once per instance


@pytest.mark.parametrize("extra, says", [
    (lambda: _Alloc(400 * 2**20), "bytearray of something other than a container"),  # 20 bytes asking for 400 MB
    (lambda: [_Copy() for _ in range(5000)], "makes more than"),  # 5M elements from a 30 kB pickle
])
def test_a_checkpoint_cannot_make_memory_the_budget_does_not_see(tmp_path: Path, extra: Any, says: str) -> None:
    path = tmp_path / "bomb.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": extra()}, path)
    assert path.stat().st_size < 100_000
    with pytest.raises(ModelFormatError, match=says):
        read_checkpoint(path)


def test_a_pickle_cannot_write_onto_the_readers_own_functions() -> None:
    """BUILD on what find_class returned (a function has a __dict__ that outlives the load) is refused."""
    from propscope.graph.readers._pickle import _Unpickler

    # GLOBAL collections defaultdict, then BUILD with {"plant": 1}: what a crafted file would write
    crafted = b"\x80\x02ccollections\ndefaultdict\n}X\x05\x00\x00\x00plantK\x01sb."
    with pytest.raises(pickle.UnpicklingError, match="BUILD on a function"):
        _Unpickler(crafted, lambda *a: None, "here", stand_ins=set()).load()  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["fc.weight\nFAKE LINE: all tensors finite\x1b[2K", "fc.weight\n", "a b"])
def test_a_tensor_name_that_is_not_a_parameter_name_is_refused_escaped(tmp_path: Path, name: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Names are printed on the terminal: a pickle's could forge lines or send escape codes."""
    path = tmp_path / "odd.pt"
    torch.save({name: torch.zeros(2)}, path)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "is not a parameter name" in err and "\x1b" not in err


def test_inspect_names_the_dtype_a_tensor_was_stored_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fp16 overflows to inf at 65,504: the column says float16, not the float32 it is read as, and a row with no
    finite entry has no numbers rather than a norm of 0."""
    path = tmp_path / "half.pt"
    torch.save({"w": torch.tensor([70000.0, -70000.0, 1e6]).half(), "b": torch.ones(2, dtype=torch.bfloat16)}, path)
    assert main(["inspect", str(path)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:4]}
    assert rows["w"][2] == "float16" and rows["w"][3:8] == ["—"] * 5 and rows["w"][-2:] == ["3", "inf"]
    assert rows["b"][2] == "bfloat16"
    assert main(["inspect", str(path), "--json"]) == 0
    w = json.loads(capsys.readouterr().out)["tensors"][0]
    assert w["dtype"] == "float16" and w["norm"] is None and w["inf"] == 3


def test_a_float8_tensor_is_refused_by_name(tmp_path: Path) -> None:
    """It was a TypeError from torch's .numpy() ("Got unsupported ScalarType Float8_e5m2")."""
    path = tmp_path / "f8.pth"
    torch.save({"w": torch.randn(3, 3).to(torch.float8_e5m2)}, path)
    with pytest.raises(ModelFormatError, match=r"tensor 'w' holds float8_e5m2 values, which propscope cannot use"):
        read_tensors(path)

"""The headless CLI: `propscope examples | inspect | trace | gradcheck`, run in-process, and once for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propscope.cli import main
from propscope.graph.examples import EXAMPLES


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("propscope: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def load_trace(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


# -- examples and inspect ---------------------------------------------------------------------
def test_examples_lists_every_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "examples")
    assert code == 0 and not err
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(EXAMPLES)
    for line, example in zip(lines, EXAMPLES.values(), strict=True):
        assert example.summary in line


def test_inspect_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", "xor", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["parameters"] == {"W1": [2, 4], "b1": [1, 4], "W2": [4, 1], "b2": [1, 1]}
    assert info["inputs"] == {"X": [4, 2]}
    assert info["outputs"] == {"final_output": [4, 1]}
    assert info["parameter_count"] == 8 + 4 + 4 + 1
    assert info["ops"] == {"linear": 2, "sigmoid": 2}
    assert info["loss"] == "sse"


def test_inspect_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", "xor-torch")
    assert code == 0
    assert "layer1.weight" in out and "(4, 2)" in out and "mse" in out


@pytest.mark.parametrize("command", ["examples", "inspect", "trace", "gradcheck"])
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert command in capsys.readouterr().out


# -- trace ---------------------------------------------------------------------------------------
def test_trace_writes_every_value_and_gradient(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from propscope import open_session

    out_path = tmp_path / "T.npz"
    code, out, err = run(capsys, "trace", "xor", "--out", str(out_path))
    assert code == 0 and not err
    assert str(out_path) in out and "loss (sse)" in out and "mse =" in out
    trace = load_trace(out_path)
    graph = open_session("xor").graph
    for node in graph:
        assert f"value/{node.name}" in trace, node.name
        assert trace[f"value/{node.name}"].shape == node.shape
        if node.meta.get("role") != "target":  # the target is data: no gradient flows into it
            assert f"grad/{node.name}" in trace, node.name
            assert trace[f"grad/{node.name}"].shape == node.shape
    assert trace["value/W1"].dtype == np.float32
    assert trace["loss"].shape == ()
    assert float(trace["loss"]) == pytest.approx(float(trace["value/loss"]))
    steps = json.loads(str(trace["steps"]))
    assert [s["phase"] for s in steps] == ["forward"] * 5 + ["backward"] * 5
    assert [s["node"] for s in steps[:5]] == [n.name for n in graph.ops]
    assert steps[-1]["node"] == "hidden_input" and {t["input"] for t in steps[-1]["terms"]} == {"X", "W1", "b1"}


def test_trace_xor_torch_keeps_parameter_names(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = run(capsys, "trace", "xor-torch", "--out", str(tmp_path / "T.npz"))
    assert code == 0
    trace = load_trace(tmp_path / "T.npz")
    for name in ("layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias"):
        assert trace[f"grad/{name}"].shape == trace[f"value/{name}"].shape
    assert trace["grad/layer1.weight"].shape == (4, 2)


def test_trace_dtype_and_seed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = run(capsys, "trace", "xor", "--dtype", "float64", "--seed", "3", "--out", str(tmp_path / "T.npz"))
    assert code == 0
    trace = load_trace(tmp_path / "T.npz")
    assert trace["value/W1"].dtype == np.float64 and trace["grad/W1"].dtype == np.float64
    np.testing.assert_array_equal(trace["value/W1"], np.random.RandomState(3).randn(2, 4))


def test_trace_forward_only(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "trace", "xor", "--loss", "none", "--out", str(tmp_path / "T.npz"))
    assert code == 0 and "loss" not in out
    trace = load_trace(tmp_path / "T.npz")
    assert "loss" not in trace and "value/loss" not in trace
    assert not [k for k in trace if k.startswith("grad/")]
    assert trace["value/final_output"].shape == (4, 1)
    assert {s["phase"] for s in json.loads(str(trace["steps"]))} == {"forward"}


def test_trace_other_loss(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "trace", "xor", "--loss", "mse", "--dtype", "float64", "--out", str(tmp_path / "T.npz"))
    assert code == 0 and "loss (mse)" in out
    trace = load_trace(tmp_path / "T.npz")
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    assert float(trace["loss"]) == pytest.approx(np.mean((trace["value/final_output"] - y) ** 2), rel=1e-12)


@pytest.mark.parametrize("input_name", ["x", "X"])
def test_trace_with_data_of_another_batch_size(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                               input_name: str) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 1, (8, 2)), rng.integers(0, 2, (8, 1)).astype(float)
    np.savez(tmp_path / "D.npz", **{input_name: x, "y": y})
    code, _, err = run(capsys, "trace", "xor", "--dtype", "float64", "--data", str(tmp_path / "D.npz"),
                       "--out", str(tmp_path / "T.npz"))
    assert code == 0, err
    trace = load_trace(tmp_path / "T.npz")
    np.testing.assert_array_equal(trace["value/X"], x)
    assert trace["value/final_output"].shape == (8, 1) and trace["grad/W1"].shape == (2, 4)


def test_trace_with_csv_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "D.csv").write_text("a,b,label\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n0.5,0.5,1\n")
    code, _, err = run(capsys, "trace", "xor", "--data", str(tmp_path / "D.csv"), "--out", str(tmp_path / "T.npz"))
    assert code == 0, err
    assert load_trace(tmp_path / "T.npz")["value/final_output"].shape == (5, 1)


def test_nan_in_the_data_still_writes_the_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    x = np.array([[0.0, 0.0], [0.0, np.nan], [1.0, 0.0], [1.0, 1.0]])
    np.savez(tmp_path / "D.npz", x=x, y=np.array([[0.0], [1.0], [1.0], [0.0]]))
    code, out, _ = run(capsys, "trace", "xor", "--data", str(tmp_path / "D.npz"), "--out", str(tmp_path / "T.npz"))
    assert code == 0
    trace = load_trace(tmp_path / "T.npz")
    assert np.isnan(trace["value/hidden_input"][1]).all() and np.isfinite(trace["value/hidden_input"][0]).all()
    warning = [line for line in out.splitlines() if "non-finite" in line]
    assert len(warning) == 1 and "hidden_input" in warning[0] and "forward step 1" in warning[0]


def test_nan_in_a_parameter_names_the_first_node(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from propscope.graph.examples import load_example
    from propscope.graph.readers.native import save

    model = load_example("xor")
    model.arrays["W2"] = model.arrays["W2"].copy()
    model.arrays["W2"][0, 0] = np.inf
    save(model, tmp_path / "bad-weights.propscope")
    code, out, _ = run(capsys, "trace", str(tmp_path / "bad-weights.propscope"), "--out", str(tmp_path / "T.npz"))
    assert code == 0 and (tmp_path / "T.npz").is_file()
    warning = [line for line in out.splitlines() if "non-finite" in line]
    assert len(warning) == 1 and "final_input" in warning[0] and "hidden" not in warning[0]


# -- bad input: one line on stderr, a non-zero exit, no traceback ---------------------------------------
def test_unknown_example(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "trace", "xorr", "--out", str(tmp_path / "T.npz"))
    assert_one_line_error(code, err, "xorr", *EXAMPLES)
    assert not (tmp_path / "T.npz").exists()


@pytest.mark.parametrize("command", [["inspect"], ["gradcheck"]])
def test_unknown_example_in_other_commands(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, _, err = run(capsys, *command, "no-such-net")
    assert_one_line_error(code, err, "no-such-net", "xor")


def test_data_that_does_not_fit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    np.savez(tmp_path / "D.npz", x=np.zeros((4, 3)), y=np.zeros((4, 1)))
    code, _, err = run(capsys, "trace", "xor", "--data", str(tmp_path / "D.npz"), "--out", str(tmp_path / "T.npz"))
    assert_one_line_error(code, err, "expected", "(4, 2)", "got", "(4, 3)")


def test_target_that_does_not_fit(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    np.savez(tmp_path / "D.npz", x=np.zeros((4, 2)), y=np.zeros((4, 3)))
    code, _, err = run(capsys, "trace", "xor", "--data", str(tmp_path / "D.npz"), "--out", str(tmp_path / "T.npz"))
    assert_one_line_error(code, err, "(4, 3)", "(4, 1)")


def test_data_without_a_target(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    np.savez(tmp_path / "D.npz", x=np.zeros((4, 2)))
    code, _, err = run(capsys, "trace", "xor", "--data", str(tmp_path / "D.npz"), "--out", str(tmp_path / "T.npz"))
    assert_one_line_error(code, err, "'y'")


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: None, "no such"),
        (lambda p: p.write_bytes(os.urandom(256)), "not a"),
        (lambda p: p.write_bytes(b""), "not a"),
    ],
    ids=["missing", "random-bytes", "empty"],
)
def test_bad_model_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, make: Any, fragment: str) -> None:
    path = tmp_path / "model.propscope"
    make(path)
    code, _, err = run(capsys, "trace", str(path), "--out", str(tmp_path / "T.npz"))
    assert_one_line_error(code, err, str(path), fragment)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: None, "no such"),
        (lambda p: p.write_bytes(b"this is not a zip archive\n"), "not a zip"),
        (lambda p: p.write_bytes(os.urandom(300)), "not a zip"),
        (lambda p: p.write_bytes(b""), "not a zip"),
    ],
    ids=["missing", "text", "random-bytes", "empty"],
)
def test_bad_data_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, make: Any, fragment: str) -> None:
    path = tmp_path / "D.npz"
    make(path)
    code, _, err = run(capsys, "trace", "xor", "--data", str(path), "--out", str(tmp_path / "T.npz"))
    assert_one_line_error(code, err, str(path), fragment)
    assert "pickle" not in err


def test_npz_that_is_not_a_zip_as_target(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(b"\x93NUMPY nonsense")
    code, _, err = run(capsys, "inspect", str(path))
    assert_one_line_error(code, err, str(path))


def test_npz_data_with_objects_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    np.savez(tmp_path / "D.npz", x=np.array([[None, 1], [2, 3], [4, 5], [6, 7]], dtype=object),
             y=np.zeros((4, 1)))
    code, _, err = run(capsys, "trace", "xor", "--data", str(tmp_path / "D.npz"), "--out", str(tmp_path / "T.npz"))
    assert_one_line_error(code, err, str(tmp_path / "D.npz"))


def test_unknown_loss(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "trace", "xor", "--loss", "hinge", "--out", str(tmp_path / "T.npz"))
    assert_one_line_error(code, err, "hinge", "mse")


def test_unwritable_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "trace", "xor", "--out", str(tmp_path / "no-such-dir" / "T.npz"))
    assert_one_line_error(code, err, "no-such-dir")


# -- gradcheck -----------------------------------------------------------------------------------------
def test_gradcheck_passes_on_xor(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "gradcheck", "xor")
    assert code == 0 and not err
    for name in ("W1", "b1", "W2", "b2", "X"):
        assert any(line.split()[0] == name and line.rstrip().endswith("ok") for line in out.splitlines()[1:]), name


def test_gradcheck_claims_nothing_finer_than_the_losss_rounding(capsys: pytest.CaptureFixture[str]) -> None:
    # finite differences never match to the last bit on the classifier (its errors are ~1e-11): with a tolerance
    # below that, what agrees to the rounding of the loss itself is said to, and no more
    code, out, _ = run(capsys, "gradcheck", "classifier", "--tol", "1e-300")
    assert code == 0 and "ok, to rounding" in out and "agree only to the loss's own rounding" in out


# -- the real console script ----------------------------------------------------------------------------
def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "propscope"
    exe = str(script) if script.exists() else shutil.which("propscope")
    if exe is None:
        pytest.skip("the propscope console script is not installed")
    ok = subprocess.run([exe, "trace", "xor", "--out", str(tmp_path / "T.npz")], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "grad/W1" in load_trace(tmp_path / "T.npz")


def test_trace_writes_exactly_the_path_given(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "trace", "neuron", "--out", str(tmp_path / "trace.out"))
    assert code == 0 and str(tmp_path / "trace.out") in out
    assert [p.name for p in tmp_path.iterdir()] == ["trace.out"]
    assert "grad/weights" in load_trace(tmp_path / "trace.out")


def test_a_model_naming_an_unknown_metric_still_traces(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from propscope.graph.examples import load_example
    from propscope.graph.readers.native import save

    model = load_example("xor")
    model.metrics = ("f1", "mse")
    save(model, tmp_path / "m.propscope")
    code, out, err = run(capsys, "trace", str(tmp_path / "m.propscope"), "--out", str(tmp_path / "T.npz"))
    assert code == 0, err
    assert "f1: unknown metric" in out and "mse = " in out


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_out_of_range(capsys: pytest.CaptureFixture[str], tmp_path: Path, seed: str) -> None:
    code, _, err = run(capsys, "trace", "xor", "--seed", seed, "--out", str(tmp_path / "T.npz"))
    assert_one_line_error(code, err, "seed", seed)


def test_data_that_the_ops_cannot_take(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The perceptron's input (3,) has no batch axis: five values are not a batch of it."""
    np.savez(tmp_path / "D.npz", x=np.ones(5), y=np.array(1.0))
    code, _, err = run(capsys, "trace", "perceptron", "--data", str(tmp_path / "D.npz"),
                       "--out", str(tmp_path / "T.npz"))
    assert_one_line_error(code, err, "'x'", "expected shape (3,)", "got (5,)")


# -- the console script's exit ------------------------------------------------------------------
def test_console_script_runs_exit_handlers_and_flushes_before_its_quick_exit(tmp_path: Path) -> None:
    """`cli.entry` skips the interpreter's teardown (os._exit): what a user would miss must still happen."""
    script = ("import atexit, sys, tempfile, weakref\n"
              "keep = tempfile.TemporaryDirectory(dir=sys.argv[1])\n"  # cleaned by weakref.finalize at exit
              "atexit.register(lambda: print('exit handler ran'))\n"
              "sys.argv = ['propscope', 'examples']\n"
              "from propscope.cli import entry\n"
              "entry()\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "xor" in done.stdout and done.stdout.rstrip().endswith("exit handler ran")  # buffered output flushed
    assert list(tmp_path.iterdir()) == []  # the temporary folder was removed


def test_console_script_holds_the_collector_off_only_while_it_starts() -> None:
    """console.main turns the cyclic GC off before NumPy and the app are imported; a command turns it back on."""
    script = ("import atexit, gc, sys\n"
              "import propscope.console\n"
              "print('numpy imported first:', 'numpy' in sys.modules)\n"
              "atexit.register(lambda: print('collector on:', gc.isenabled()))\n"
              "sys.argv = ['propscope', 'examples']\n"
              "propscope.console.main()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "numpy imported first: False" in done.stdout and "collector on: True" in done.stdout


def test_console_script_is_entry() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["propscope"] == "propscope.console:main"


def test_a_closed_pipe_ends_quietly(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`propscope ops | head -1`: the reader went away; no 'error: Broken pipe' line."""

    class ClosedPipe:
        def write(self, _text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["ops"]) == 141
    assert capsys.readouterr().err == ""


def test_training_a_model_file_without_data_says_its_batch_is_generated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`propscope train torchvision:resnet18` without --data fits one generated image to a random label: the user is
    told, and a head of 100 scores is not printed as 'predictions'."""
    from propscope.graph import Graph, Model
    from propscope.graph.readers import save_model

    rng = np.random.default_rng(0)
    g = Graph("head")
    w = g.parameter("W", (8, 100))
    g.set_outputs(g.add("matmul", g.input("x", (1, 8)), w, name="scores"))
    path = tmp_path / "head.propscope"
    save_model(Model(g, {"W": rng.normal(size=(8, 100))}, batch={"x": rng.normal(size=(1, 8))}, loss="cross_entropy"),
               path)
    code, out, err = run(capsys, "train", str(path), "--epochs", "2")
    assert code == 0 and "no --data: training on a generated batch of 1 sample" in err
    assert "predictions" not in out


def test_labels_read_in_the_outputs_shape_are_noted_where_torch_would_broadcast(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """y (N,) against an (N, 1) output: read as (N, 1), and said, since torch's mse_loss would make (N, N) of it."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    flat = np.array([0, 1, 1, 0], dtype=np.float32)
    for y, noted in ((flat, True), (flat[:, None], False)):
        np.savez(tmp_path / "d.npz", x=x, y=y)
        assert main(["trace", "xor", "--data", str(tmp_path / "d.npz"), "--loss", "mse", "--out",
                     str(tmp_path / "t.npz")]) == 0
        err = capsys.readouterr().err
        assert ("the labels y (4,) are read in the output's shape (4, 1); torch's mse loss given the two as they are "
                "would broadcast them to (4, 4)" in err) is noted


def test_class_ids_counted_from_one_are_said_so() -> None:
    from propscope.debugger.data_checks import class_count_error

    said = class_count_error(np.array([1.0, 2.0, 5.0, 3.0]), (4, 5), (4,))
    assert said.startswith("target 'y' (4,) holds class ids 1..5, but the logits (4, 5) have 5 classes; class ids "
                           "must lie in 0..4")
    assert said.endswith("counted from 1? class ids start at 0 (subtract 1)")
    assert "counted from 1" not in class_count_error(np.array([0.0, 7.0]), (2, 5), (2,))


def test_train_out_keeps_a_loss_taken_from_the_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`propscope train --out` writes what File ▸ Save does: a loss the data's labels chose is in the file."""
    from propscope.graph import Graph, Model
    from propscope.graph.readers import open_model, save_model

    g = Graph("line")
    x = g.input("x", (4, 2))
    g.set_outputs(g.add("matmul", x, g.parameter("W", (2, 1)), name="out"))
    save_model(Model(g, {"W": np.ones((2, 1))}, batch={"x": np.ones((4, 2))}), tmp_path / "line.propscope")
    np.savez(tmp_path / "d.npz", x=np.arange(8.0).reshape(4, 2), y=np.arange(4.0).reshape(4, 1))
    assert main(["train", str(tmp_path / "line.propscope"), "--data", str(tmp_path / "d.npz"), "--epochs", "2",
                 "--out", str(tmp_path / "trained.propscope")]) == 0
    assert "take mse" in capsys.readouterr().err
    trained = open_model(tmp_path / "trained.propscope")
    assert trained.loss == "mse" and trained.training.epochs == 2
    np.testing.assert_array_equal(trained.batch["y"], np.arange(4.0).reshape(4, 1))

"""The corpus of hostile and broken files a review found (issue 15): each one, opened from the command line in
a child process under a 4 GiB address-space limit, gives its one expected line; nothing runs, nothing hangs.

The files are made at test time from the committed seeds in tests/corpus/seeds/ (torch is not needed).
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from corpus.builders import (
    MARKER,
    claim_size,
    edit_json_member,
    evil_torch_zip,
    npy_bytes,
    patch_zip,
    read_zip,
    seed,
    torch_save_zip,
    utf8_flagged_junk_name,
    write_zip,
    write_zip_with_bomb,
)
from corpus.runner import run_jobs

HAS_ONNX = importlib.util.find_spec("onnx") is not None
MAX_LINE = 200


# -- .pt2 -----------------------------------------------------------------------------------------------
def program(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], bytes]:
    return lambda folder: edit_json_member(seed("small.pt2"), "models/model.json", edit)


def _gm(p: dict[str, Any]) -> dict[str, Any]:
    return p["graph_module"]


def _first_arg(value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(p: dict[str, Any]) -> None:
        _gm(p)["graph"]["nodes"][0]["inputs"][0]["arg"] = value

    return edit


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(p: dict[str, Any]) -> None:
        target = p
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _arange_2_40(p: dict[str, Any]) -> None:
    _gm(p)["graph"]["nodes"].insert(0, {
        "target": "torch.ops.aten.arange.start",
        "inputs": [{"name": "start", "arg": {"as_int": 0}}, {"name": "end", "arg": {"as_int": 2**40}}],
        "outputs": [{"as_tensor": {"name": "huge"}}], "metadata": {}})


def _weights_config(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], bytes]:
    def build(folder: Path) -> bytes:
        def change(spec: dict[str, Any]) -> None:
            edit(spec["config"])

        return edit_json_member(seed("small.pt2"), "model_weights_config.json", change)

    return build


def _zero_strides(config: dict[str, Any]) -> None:
    for entry in config.values():  # each weight a 256 MiB broadcast of its few bytes
        entry["tensor_meta"]["sizes"] = [{"as_int": 8192}, {"as_int": 8192}]
        entry["tensor_meta"]["strides"] = [{"as_int": 0}, {"as_int": 0}]


def _pt2_deflate_bomb(folder: Path) -> bytes:
    members = {k: v for k, v in read_zip(seed("small.pt2")).items() if not k.endswith("weights/weight_0")}
    return write_zip_with_bomb(members, "small/data/weights/weight_0", 300 * 2**20)


def _pt2_evil_samples(folder: Path) -> bytes:
    evil = evil_torch_zip(f"touch {folder / MARKER}")
    return patch_zip(seed("small.pt2"), lambda n, b: evil if n.endswith("sample_inputs/model.pt") else b)


# -- .propscope -----------------------------------------------------------------------------------------
def manifest(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Path], bytes]:
    return lambda folder: edit_json_member(seed("small.propscope"), "model.json", edit)


def _huge_npy(folder: Path) -> bytes:
    count = (3 * 2**30) // 8
    header = npy_bytes(np.zeros(0))  # a real header, then its shape rewritten
    header = header.replace(b"(0,)", f"({count},)".encode()).replace(b" " * len(str(count)), b"", 1)
    header = header[:8] + len(header[10:]).to_bytes(2, "little") + header[10:]
    members = read_zip(seed("small.propscope"))
    members["arrays/W1.npy"] = header + bytes(64)
    data = write_zip(members)
    return claim_size(data, "arrays/W1.npy", len(header) + count * 8)


def _aliased_members(folder: Path) -> bytes:
    members = read_zip(seed("small.propscope"))
    members["arrays/big.npy"] = npy_bytes(np.zeros(2**17))  # 1 MiB, named 3,000 times
    spec = json.loads(members["model.json"])
    spec["arrays"].update({f"alias{i}": "arrays/big.npy" for i in range(3000)})
    members["model.json"] = json.dumps(spec).encode()
    return write_zip(members)


def _oversize_npy_header(folder: Path) -> bytes:
    members = read_zip(seed("small.propscope"))
    head = b"{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }" + b" " * 20000 + b"\n"
    members["arrays/W1.npy"] = b"\x93NUMPY\x02\x00" + len(head).to_bytes(4, "little") + head + bytes(32)
    return write_zip(members)


def _long_node_name(m: dict[str, Any]) -> None:
    m["graph"]["nodes"][0]["name"] = "n" * 10_000_000


# -- state dicts -----------------------------------------------------------------------------------------
def _pt_broadcast_view(folder: Path) -> bytes:
    return torch_save_zip({"a": np.ones(4, dtype=np.float32)}, views={"w": ("a", (2**20, 2**20), (0, 0), 0)})


def _pt_deflate_bomb(folder: Path) -> bytes:
    members = read_zip(torch_save_zip({"W1": np.ones((2, 4), dtype=np.float32)}))
    members.pop("archive/data/0")
    return write_zip_with_bomb(members, "archive/data/0", 300 * 2**20)


def _safetensors_aliases(folder: Path) -> bytes:
    header = {f"t{i}": {"dtype": "F32", "shape": [2**18], "data_offsets": [0, 2**20]} for i in range(3000)}
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + bytes(2**20)


# -- ONNX -------------------------------------------------------------------------------------------------
def _onnx(nodes: list[Any], inits: list[Any] | None = None, out_shape: list[int] | None = None) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _onnx_constant_of_shape(folder: Path) -> bytes:
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([46340, 46340], dtype=np.int64), "shape")
    return _onnx([helper.make_node("ConstantOfShape", ["shape"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])],
                 [shape])


def _onnx_expand(folder: Path) -> bytes:
    from onnx import helper, numpy_helper

    shape = numpy_helper.from_array(np.array([2**14, 2**16, 2], dtype=np.int64), "shape")
    return _onnx([helper.make_node("Expand", ["x", "shape"], ["y"])], [shape])


def _onnx_ref_attr(folder: Path) -> bytes:
    from onnx import AttributeProto, helper

    node = helper.make_node("LeakyRelu", ["x"], ["y"])
    attr = AttributeProto(name="alpha", ref_attr_name="outer_alpha", type=AttributeProto.FLOAT)
    node.attribute.append(attr)
    return _onnx([node], out_shape=[2])


def _onnx_traversal(folder: Path) -> bytes:
    from onnx import TensorProto, helper

    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../etc/passwd"), ("offset", "0"), ("length", "8")):
        tensor.external_data.add(key=key, value=value)
    return _onnx([helper.make_node("Add", ["x", "w"], ["y"])], [tensor], out_shape=[2])


def _onnx_long_op(folder: Path) -> bytes:
    from onnx import helper

    return _onnx([helper.make_node("X" * 10_000_000, ["x"], ["y"])], out_shape=[2])


ONE_OF_BUDGET = "over the memory budget|more than propscope will load"

# name -> (file name, builder, extra argv, expected: a regex of the one line, or "opens")
CASES: dict[str, tuple[str, Callable[[Path], bytes], list[str], str]] = {
    "pt2 nodes as an object": ("a.pt2", program(_set(["graph_module", "graph", "nodes"], {})), [],
                               "graph.nodes should be a list"),
    "pt2 empty input spec": ("b.pt2", program(_set(["graph_module", "signature", "input_specs", 0], {})), [],
                             "input spec #0 should have one kind"),
    "pt2 output as_tensor a string": (
        "c.pt2", program(lambda p: _gm(p)["signature"]["output_specs"][0]["user_output"]["arg"].update(
            as_tensor="x")), [], "as_tensor should be an object"),
    "pt2 as_float a list": ("d.pt2", program(_first_arg({"as_float": [1.0]})), [], r"\(as_float\) should be"),
    "pt2 as_floats not a list": ("e.pt2", program(_first_arg({"as_floats": "x"})), [],
                                 r"\(as_floats\) should be a list"),
    "pt2 as_sym_ints not a list": ("f.pt2", program(_first_arg({"as_sym_ints": 3})), [],
                                   r"\(as_sym_ints\) should be a list"),
    "pt2 as_tensors not a list": ("g.pt2", program(_first_arg({"as_tensors": {"a": 1}})), [],
                                  r"\(as_tensors\) should be a list"),
    "pt2 signature a string": ("h.pt2", program(_set(["graph_module", "signature"], "sig")), [],
                               "signature should be an object"),
    "pt2 parameter spec a string": ("i.pt2", program(_set(["graph_module", "signature", "input_specs", 1],
                                                          {"parameter": "x"})), [], "should be an object"),
    "pt2 arange to 2^40": ("j.pt2", program(_arange_2_40), [], "more than propscope will load"),
    "pt2 zero-stride weights": ("k.pt2", _weights_config(_zero_strides), ["--max-memory", "200M"],
                                "over the memory budget"),
    "pt2 deflate bomb": ("l.pt2", _pt2_deflate_bomb, ["--max-memory", "256M"], "over the memory budget"),
    "pt2 member claims 3.9 GiB": ("m.pt2", lambda d: claim_size(seed("small.pt2"), "weights/weight_0",
                                                               3_900_000_000), [], ONE_OF_BUDGET + "|declares"),
    "pt2 10 MB op name": ("n.pt2", program(lambda p: _gm(p)["graph"]["nodes"][0].update(target="t" * 10_000_000)),
                          [], "a name of 10000000 characters"),
    "pt2 sample inputs run a command": ("o.pt2", _pt2_evil_samples, [], "opens"),
    "pt2 member name not UTF-8": ("p.pt2", lambda d: utf8_flagged_junk_name(seed("small.pt2"), "archive_format"),
                                  [], "opens|not a zip file|not a torch.export"),
    "propscope npy of 3 GiB": ("a.propscope", _huge_npy, [], ONE_OF_BUDGET + "|declares"),
    "propscope one member aliased 3,000 times": ("b.propscope", _aliased_members, ["--max-memory", "1G"],
                                                 "over the memory budget"),
    "propscope oversize npy header": ("c.propscope", _oversize_npy_header, [], "is not a valid .npy array"),
    "propscope 1e12 epochs": ("d.propscope", manifest(lambda m: m["training"].update(epochs=10**12)), [],
                              "training.epochs should be a whole number"),
    "propscope 1e10 samples": ("e.propscope", manifest(lambda m: m.update(dataset=["xor", {"n": 10**10}])), [],
                               "dataset setting n should be"),
    "propscope 10 MB node name": ("f.propscope", manifest(_long_node_name), [], "needs a name of 1 to 1024"),
    "propscope member name not UTF-8": ("g.propscope",
                                        lambda d: utf8_flagged_junk_name(seed("small.propscope"), "W1.npy"), [],
                                        "opens|."),
    "pt view 2^20 x 2^20 of stride 0": ("a.pt", _pt_broadcast_view, ["--arch", "xor"], ONE_OF_BUDGET),
    "pt pickle runs a command": ("b.pt", lambda d: evil_torch_zip(f"touch {d / MARKER}"), ["--arch", "xor"],
                                 "calls posix.system"),
    "pt deflate bomb": ("c.pt", _pt_deflate_bomb, ["--arch", "xor", "--max-memory", "256M"],
                        "over the memory budget"),
    "safetensors region aliased 3,000 times": ("a.safetensors", _safetensors_aliases,
                                               ["--arch", "xor", "--max-memory", "1G"], "over the memory budget"),
}
if HAS_ONNX:
    CASES.update({
        "onnx ConstantOfShape 46340^2": ("a.onnx", _onnx_constant_of_shape, [], ONE_OF_BUDGET),
        "onnx Expand to 2^31": ("b.onnx", _onnx_expand, [], ONE_OF_BUDGET),
        "onnx ref_attr_name": ("c.onnx", _onnx_ref_attr, [], "opens"),
        "onnx external data out of the folder": ("d.onnx", _onnx_traversal, [], "only from a file in the model's"),
        "onnx 10 MB op type": ("e.onnx", _onnx_long_op, [], "opens"),
    })


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("corpus")
    jobs, names = [], []
    for name, (file_name, build, argv, _) in CASES.items():
        path = folder / file_name
        path.write_bytes(build(folder))
        jobs.append({"path": str(path), "kind": "cli", "argv": ["inspect", str(path), *argv]})
        names.append(name)
    results, code, err = run_jobs(jobs, folder)
    assert code == 0, f"the child crashed (exit {code}): {err[-2000:]}"
    assert len(results) == len(jobs), err[-2000:]
    assert not (folder / MARKER).exists(), "a file ran a command"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*(c[0] for c in CASES.values()), "jobs.json"]), \
        "a file was written"
    return dict(zip(names, results, strict=True))


@pytest.mark.parametrize("name", list(CASES))
def test_each_hostile_file_gives_its_one_line(name: str, outcomes: dict[str, dict[str, Any]]) -> None:
    result = outcomes[name]
    expected = CASES[name][3]
    assert result["outcome"] in ("opened", "refused"), result
    assert result["stdout_chars"] < 100_000, "a string from the file was echoed whole"
    if result["rc"] == 0 and "opens" in expected.split("|"):
        return
    assert result["rc"] == 2, result
    line = result["stderr"].rstrip("\n")
    assert "\n" not in line and "Traceback" not in line, line
    assert line.startswith("propscope: error: "), line
    message = line.removeprefix("propscope: error: ").removeprefix(result["path"]).lstrip(": ")
    assert len(message) <= MAX_LINE, line
    assert "--debug shows where" not in message and "not enough memory" not in message, line
    assert re.search(expected, message), f"{expected!r} not in {line!r}"


def test_a_reading_thread_keeps_its_output_to_itself(capfd: pytest.CaptureFixture[str]) -> None:
    """The app reads models on worker threads: what one prints to stderr or warns while reading (torch.export's
    partial graphs) is held back, while another thread's output passes, and the hooks go when the last reader is
    done (two overlapping reads, as a Cancel then another Open makes, leave nothing behind)."""
    import sys
    import threading
    import time
    import warnings

    from propscope.graph.readers._failure import capture_warnings, quiet_torch

    stderr, showwarning = sys.stderr, warnings.showwarning
    caught: list[int] = []
    started = threading.Barrier(3)

    def reader(tag: str, hold: float) -> None:
        with capture_warnings() as warned, quiet_torch():
            started.wait()
            print(f"{tag}: a partial graph", file=sys.stderr)
            warnings.warn(f"{tag}: a loader's note", stacklevel=1)
            time.sleep(hold)
        caught.append(len(warned))

    threads = [threading.Thread(target=reader, args=(tag, hold)) for tag, hold in (("first", 0.3), ("second", 0.1))]
    for t in threads:
        t.start()
    started.wait()
    print("the window's own report", file=sys.stderr)
    for t in threads:
        t.join()
    err = capfd.readouterr().err
    assert "the window's own report" in err and "partial graph" not in err
    assert caught == [1, 1]  # each reader's warning in its own list
    assert sys.stderr is stderr and warnings.showwarning is showwarning


def test_the_budget_refusal_says_a_size_once() -> None:
    """"parameters (2 GiB) needs 2 GiB more, ... (0 bytes used)" said the size twice and a use there was none of."""
    from propscope.graph.errors import ModelFormatError
    from propscope.graph.readers._budget import MemoryBudget

    with pytest.raises(ModelFormatError) as caught:
        MemoryBudget(limit=2**30).charge(3 * 2**30, "Net's parameters and buffers (3.0 GiB)", "folder")
    assert str(caught.value) == ("folder: Net's parameters and buffers (3.0 GiB) would go over the memory budget of "
                                 "1.0 GiB; refused (--max-memory raises the budget)")
    budget = MemoryBudget(limit=2**30, used=2**29)
    with pytest.raises(ModelFormatError, match=r"tensor 'w' needs 1.0 GiB more, over the memory budget of 1.0 GiB, "
                                               r"512.0 MiB of it used by this file already"):
        budget.charge(2**30, "tensor 'w'", "file")

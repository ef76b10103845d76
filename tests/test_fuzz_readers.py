"""A seeded structured fuzzer over every format's reader: mutated copies of the valid seeds in tests/corpus/seeds/
are opened in a child process under a 4 GiB address-space limit (60 s each); any traceback, crash, hang, memory
error or command run fails the test.

Mutations: truncation, bit flips, zip member edits (dropped, duplicated, truncated, flipped), JSON type swaps and
extreme numbers inside the zip's JSON members, protobuf field edits (ONNX dims, data types, attributes, op
types, raw data), and pickles whose opcodes would run code. CI runs a fixed seed and a small count per format
(about a minute); `PROPSCOPE_FUZZ_ITERATIONS=500 pytest tests/test_fuzz_readers.py -m slow` runs the long one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from corpus.builders import MARKER, evil_pickle, evil_torch_zip, read_zip, seed, write_zip
from corpus.runner import run_jobs

HAS_ONNX = importlib.util.find_spec("onnx") is not None
CI_ITERATIONS = 600  # per format: 5 formats x 600 files, about 20 s on 2 cores
SLOW_ITERATIONS = int(os.environ.get("PROPSCOPE_FUZZ_ITERATIONS", "300"))
SEED = int(os.environ.get("PROPSCOPE_FUZZ_SEED", "15"))

EXTREMES: list[Any] = [None, True, -1, 0, 2**31, 2**63, -(2**63) - 1, 10**30, 1e308, -1e308, float("inf"), "x",
                       "x" * 100_000, [], {}, [[[[]]]], {"as_int": 2**40}, [2**20] * 8, "Infinity"]


# -- mutators: bytes -> bytes ------------------------------------------------------------------------------
def truncate(rng: random.Random, data: bytes, ctx: dict[str, Any]) -> bytes:
    return data[: rng.randrange(len(data))]


def flip_bits(rng: random.Random, data: bytes, ctx: dict[str, Any]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice([1, 2, 8, 64])):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _swap_json(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """The JSON value with one place (chosen by a random walk) replaced by an extreme or wrongly typed value."""
    if depth > 0 and (rng.random() < 0.25 or not isinstance(value, dict | list) or not value):
        return rng.choice(EXTREMES)
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        return {**value, key: _swap_json(rng, value[key], depth + 1)}
    if isinstance(value, list) and value:
        i = rng.randrange(len(value))
        return [*value[:i], _swap_json(rng, value[i], depth + 1), *value[i + 1:]]
    return rng.choice(EXTREMES)


def zip_member_edit(rng: random.Random, data: bytes, ctx: dict[str, Any]) -> bytes:
    members = read_zip(data)
    name = rng.choice(list(members))
    body = members[name]
    action = rng.choice(["json", "json", "json", "drop", "truncate", "flip", "duplicate", "pickle"])
    if action == "json" or (name.endswith(".json") and action in ("truncate", "flip")):
        json_names = [n for n in members if n.endswith(".json")]
        if json_names:
            name = rng.choice(json_names)
            swapped = _swap_json(rng, json.loads(members[name]))
            for _ in range(rng.choice([0, 0, 1, 3])):
                swapped = _swap_json(rng, swapped)
            members[name] = json.dumps(swapped).encode()
    elif action == "drop":
        members.pop(name)
    elif action == "truncate" and body:
        members[name] = body[: rng.randrange(len(body))]
    elif action == "flip" and body:
        members[name] = flip_bits(rng, body, ctx)
    elif action == "duplicate":
        members[name + "_copy"] = body
    elif action == "pickle":
        return pickle_that_runs_code(rng, data, ctx)
    return write_zip(members)


def pickle_that_runs_code(rng: random.Random, data: bytes, ctx: dict[str, Any]) -> bytes:
    """Every pickle inside the file (and, for a torch.save zip, its data.pkl) replaced by one calling os.system."""
    command = f"touch {ctx['folder'] / MARKER}"
    members = read_zip(data)
    for name in members:
        if name.endswith("data.pkl"):
            members[name] = evil_pickle(command)
        elif name.endswith(".pt") or "sample_inputs" in name:
            members[name] = evil_torch_zip(command)
    if not any(n.endswith(("data.pkl", ".pt")) for n in members):  # a format without pickles: smuggle one in
        members[rng.choice(list(members))] = evil_torch_zip(command)
    return write_zip(members)


def protobuf_edit(rng: random.Random, data: bytes, ctx: dict[str, Any]) -> bytes:
    """One field of the ONNX model changed to an extreme or mistyped value."""
    import onnx

    model = onnx.load_from_string(data)
    g = model.graph
    choice = rng.randrange(8)
    if choice == 0 and g.initializer:
        t = rng.choice(g.initializer)
        t.dims[rng.randrange(len(t.dims))] = rng.choice([0, -1, 2**31, 2**40, 46340])
    elif choice == 1 and g.initializer:
        rng.choice(g.initializer).data_type = rng.choice([0, 8, 14, 15, 17, 99])
    elif choice == 2 and g.initializer:
        t = rng.choice(g.initializer)
        t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data) + 1)]
    elif choice == 3:
        rng.choice(g.node).op_type = rng.choice(["", "X" * 100_000, "Loop", "If", "Scan"])
    elif choice == 4:
        node = rng.choice(g.node)
        attr = node.attribute.add()
        attr.name = rng.choice(["axis", "value", "to", "perm"])
        attr.ref_attr_name = rng.choice(["", "outer"])
        attr.type = rng.choice([0, 1, 2, 3, 4, 7, 99])
        attr.i = rng.choice([2**62, -1])
    elif choice == 5:
        node = rng.choice(g.node)
        node.input.append(rng.choice(["nowhere", "x", ""]))
    elif choice == 6 and g.initializer:
        t = rng.choice(g.initializer)
        t.data_location = 1
        t.external_data.add(key="location", value=rng.choice(["../../etc/passwd", "/etc/passwd", "x.bin", "."]))
    else:
        dims = g.output[0].type.tensor_type.shape.dim
        if dims:
            dims[0].dim_value = rng.choice([0, 2**40])
    return model.SerializeToString()


FORMATS: dict[str, tuple[str, str, list[Callable[..., bytes]]]] = {
    "pt2": ("small.pt2", "open", [truncate, flip_bits, zip_member_edit, zip_member_edit, zip_member_edit,
                                  pickle_that_runs_code]),
    "propscope": ("small.propscope", "open", [truncate, flip_bits, zip_member_edit, zip_member_edit,
                                              pickle_that_runs_code]),
    "pt": ("small.pt", "tensors", [truncate, flip_bits, zip_member_edit, zip_member_edit, pickle_that_runs_code]),
    "safetensors": ("small.safetensors", "tensors", [truncate, flip_bits, flip_bits]),
}
if HAS_ONNX:
    FORMATS["onnx"] = ("small.onnx", "open", [truncate, flip_bits, protobuf_edit, protobuf_edit, protobuf_edit])


def mutants(fmt: str, count: int, folder: Path, rng: random.Random) -> list[dict[str, Any]]:
    seed_name, kind, mutators = FORMATS[fmt]
    original = seed(seed_name)
    jobs = []
    for i in range(count):
        data = original
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            mutate = rng.choice(mutators)
            try:
                data = mutate(rng, data, {"folder": folder}) or data
            except Exception:  # a mutant that no longer parses as the outer container: mutate its bytes instead
                data = flip_bits(rng, data, {})
        path = folder / f"m{i:04d}{Path(seed_name).suffix}"
        path.write_bytes(data)
        jobs.append({"path": str(path), "kind": kind})
    return jobs


def fuzz(fmt: str, count: int, folder: Path) -> dict[str, int]:
    rng = random.Random(f"{SEED}-{fmt}")
    jobs = mutants(fmt, count, folder, rng)
    results, code, err = run_jobs(jobs, folder, timeout=60 * count + 120)
    assert code == 0, f"the child crashed (exit {code}) after {len(results)} files: {err[-2000:]}"
    assert len(results) == len(jobs), err[-2000:]
    bugs = [r for r in results if r["outcome"] not in ("opened", "refused")]
    assert not bugs, "\n\n".join(f"{r['path']}: {r['outcome']} {r.get('message', '')}\n{r.get('traceback', '')}"
                                 for r in bugs[:3])
    for r in results:
        if r["outcome"] == "refused":
            assert "\n" not in r["message"].strip(), r["message"]
    assert not (folder / MARKER).exists(), "a mutated file ran a command"
    written = {p.name for p in folder.iterdir()} - {Path(j["path"]).name for j in jobs} - {"jobs.json"}
    assert not written, f"opening files wrote {written}"
    return {o: sum(r["outcome"] == o for r in results) for o in ("opened", "refused")}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_fuzzed_files_open_or_are_refused_in_one_line(fmt: str, tmp_path: Path) -> None:
    counts = fuzz(fmt, CI_ITERATIONS, tmp_path)
    assert counts["refused"] > 0, f"the mutations never broke a {fmt} file: the fuzzer is not fuzzing"


if "PROPSCOPE_FUZZ_ITERATIONS" in os.environ:  # the long run, by hand: PROPSCOPE_FUZZ_ITERATIONS=4000 pytest ...

    @pytest.mark.slow
    @pytest.mark.parametrize("fmt", list(FORMATS))
    def test_long_fuzz_run(fmt: str, tmp_path: Path) -> None:
        fuzz(fmt, SLOW_ITERATIONS, tmp_path)

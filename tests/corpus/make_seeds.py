"""Write the fuzzer's valid seed files into tests/corpus/seeds/ (run by hand when a format changes).

`python tests/corpus/make_seeds.py` needs torch (for the .pt2) and onnx; the seeds are committed, so the
corpus and the fuzzer run without either.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.builders import SEEDS, torch_save_zip
from propscope.graph.examples import load_example
from propscope.graph.readers import save_model
from propscope.graph.readers.state_dict import write_safetensors


def small_onnx() -> bytes:
    """Gemm -> Relu, plus the plumbing exporters add: Shape -> ConstantOfShape -> Expand, folded at load."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "fc.weight")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "fc.bias")
    shape = numpy_helper.from_array(np.array([2, 4], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["h"], name="/fc/Gemm", transB=1),
        helper.make_node("ConstantOfShape", ["shape"], ["zeros"], name="/ConstantOfShape",
                         value=numpy_helper.from_array(np.array([0.5], dtype=np.float32))),
        helper.make_node("Expand", ["zeros", "shape"], ["bias2"], name="/Expand"),
        helper.make_node("Add", ["h", "bias2"], ["s"], name="/Add"),
        helper.make_node("Relu", ["s"], ["y"], name="/act/Relu"),
    ]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w, b, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def small_pt2(path: Path) -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (torch.randn(5, 3),)), str(path))


def main() -> None:
    SEEDS.mkdir(exist_ok=True)
    small_pt2(SEEDS / "small.pt2")
    (SEEDS / "small.onnx").write_bytes(small_onnx())
    save_model(load_example("xor"), SEEDS / "small.propscope")
    xor = load_example("xor")
    (SEEDS / "small.pt").write_bytes(torch_save_zip({k: np.asarray(v, dtype=np.float32) for k, v in
                                                     xor.arrays.items()}))
    write_safetensors({k: np.asarray(v, dtype=np.float32) for k, v in xor.arrays.items()},
                      SEEDS / "small.safetensors")
    for p in sorted(SEEDS.iterdir()):
        print(p.name, p.stat().st_size)


if __name__ == "__main__":
    main()

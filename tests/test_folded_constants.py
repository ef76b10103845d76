"""What a reader makes at load time stays the size of what the model computes from, not of what it computes.

torchvision's MViT adds its relative positions to the attention scores through a slice, `attn[:, :, 1:, 1:] += rel`.
A .pt2 records that as in-place writes through two slices; the reader rebuilt the scores as x · mask + pad(src) with
a constant mask as large as the scores, four per block, and mvit_v2_s opened holding 325M mask elements (2.6 GB in
float64) beside 35M parameters. Exported to ONNX the same line is a ScatterND whose indices list every position of
the slice (four columns, each the size of the slice) and an Expand that the reader wrote as x + zeros(out). The
module below is that pattern in small: every form must open with folded constants no larger than its input, and
step to torch autograd's loss and gradients on both backends (float64). A slice write over −∞ gives torch's values
too: the mask multiplied them by 0, which made them NaN.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
nn = torch.nn
pytestmark = pytest.mark.torch

SIDE, HEADS, DIM = 6, 2, 8  # a 6 × 6 grid of tokens and a class token: scores of 2 × 2 × 37 × 37 for a batch of 2


class RelativePositionAttention(nn.Module):
    """MViT's attention in small: a class token, and a relative-position term (a learned table gathered by offsets
    of aranges, contracted with the queries, broadcast over the key rows) added to the grid's scores in place."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, DIM)
        self.cls = nn.Parameter(torch.randn(1, 1, DIM))
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.rel_pos = nn.Parameter(torch.randn(2 * SIDE - 1, DIM // HEADS))
        self.head = nn.Linear(DIM, 5)

    def forward(self, x: Any) -> Any:
        b = x.shape[0]
        tokens = torch.cat([self.cls.expand(b, -1, -1), self.embed(x.flatten(2).transpose(1, 2))], dim=1)
        q, k, v = self.qkv(tokens).reshape(b, -1, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
        attn = q @ k.transpose(-1, -2) * (DIM // HEADS) ** -0.5
        offsets = torch.arange(SIDE)[:, None] - torch.arange(SIDE)[None, :] + (SIDE - 1)
        table = self.rel_pos[offsets.long()]
        rel = torch.einsum("bnhwc,hkc->bnhwk", q[:, :, 1:].reshape(b, HEADS, SIDE, SIDE, -1), table)
        rel = rel[:, :, :, :, None, :].expand(-1, -1, -1, -1, SIDE, -1).reshape(b, HEADS, SIDE**2, SIDE**2)
        attn[:, :, 1:, 1:] += rel
        out = (attn.softmax(-1) @ v).transpose(1, 2).flatten(2)
        return self.head(out[:, 0])


FORMS = ("pt2-as-is", "pt2-decomposed", "onnx-torchscript", "onnx-dynamo")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, np.ndarray, np.ndarray, Path]:
    torch.manual_seed(0)
    model = zoo._jitter(RelativePositionAttention()).double().eval()
    x = np.random.default_rng(0).standard_normal((2, 3, SIDE, SIDE))
    y = np.array([1, 4])
    return model, x, y, tmp_path_factory.mktemp("folded")


def exported(form: str, model: Any, x: np.ndarray, folder: Path) -> Path:
    path = folder / (f"{form}.pt2" if form.startswith("pt2") else f"{form}.onnx")
    if path.exists():
        return path
    if form.startswith("pt2"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(model, (torch.from_numpy(x),))
            if form.endswith("decomposed"):
                program = program.run_decompositions()
            torch.export.save(program, str(path))
        return path
    if form.endswith("dynamo"):
        pytest.importorskip("onnxscript")
    return zoo.export_onnx(model, (x,), path, dynamo=form.endswith("dynamo"))


@pytest.mark.parametrize("form", FORMS)
def test_folded_constants_stay_within_the_size_of_the_input(form: str, case: Any) -> None:
    model, x, _, folder = case
    opened = open_model(exported(form, model, x, folder))
    assert not [n for n in opened.graph if n.op.name == "unsupported"], opened.warnings
    constants = {n.name: opened.arrays[n.name] for n in opened.graph if n.op.name == "constant"}
    largest = sorted(((a.size, name, a.shape) for name, a in constants.items()), reverse=True)[:3]
    # a mask or an index list of the scores' size would be 2 · 2 · 37 · 37 = 5,476 elements each; a Linear the
    # exporter wrote as MatMul then Add reads as `linear` with a zero bias of its width (the Add adds the real one)
    zero_biases = sum(a.size for name, a in constants.items() if name.endswith("no_bias") and not a.any())
    assert zero_biases <= 2 * 3 * DIM
    assert sum(a.size for a in constants.values()) - zero_biases <= x.size, largest


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("form", FORMS)
def test_steps_with_autograds_gradients(form: str, backend: str, case: Any) -> None:
    model, x, y, folder = case
    path = exported(form, model, x, folder)
    graph = open_model(path).graph
    s = open_session(path, backend=backend, dtype="float64", data={graph.inputs[0].name: x, "y": y},
                     loss="cross_entropy")
    s.run_to_end()
    loss, grads, (input_grad,) = zoo.autograd_reference(model, (x,), y)
    assert abs(float(s.backend.to_numpy(s.value(s.loss_node.name))) - loss) <= 1e-12 * max(1.0, abs(loss))
    assert zoo.relative(s.backend.to_numpy(s.grad(graph.inputs[0].name)), input_grad) <= 1e-10
    if form.startswith("pt2"):  # the ONNX exporters rename or fold some parameters
        for name, grad in grads.items():
            assert zoo.relative(s.backend.to_numpy(s.grad(name)), grad) <= 1e-10, name


class OverwriteInfinities(nn.Module):
    """A slice write over values that are −∞ (a log of a ReLU that is 0 there): the mask rule multiplied them by 0,
    and every written value came out NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 5)

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        out = torch.log(torch.relu(h))
        out[:, :3] = torch.tanh(h[:, :3])
        return out[:, :3] * 2


def test_a_slice_write_over_infinities_gives_torchs_values(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = OverwriteInfinities().double()
    with torch.no_grad():
        model.fc.bias[:3] = -100.0  # the ReLU is 0 where the write goes: log gives −∞ there
    x = np.random.default_rng(0).standard_normal((2, 4))
    path = tmp_path / "inf.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (torch.from_numpy(x),)), str(path))
    s = open_session(path, dtype="float64", data={"x": x}, loss="none")
    s.run_to_end()
    np.testing.assert_allclose(s.value(s.prediction_node.name), model(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-12)

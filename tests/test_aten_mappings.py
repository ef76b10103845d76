"""The .pt2 reader's mappings, op family by op family: small modules that use each ATen pattern, exported as is
and after `run_decompositions()`, traced on the NumPy backend and compared with torch autograd (float64).

Covers the in-place rule (`relu_`, `add_`, `x.mul_()` used as a statement), computed masks (`where`,
`masked_fill`), scatters into slices (`x[:, 0] = y`), `diagonal`, `copy`, constant folding of scatters, sorts
and `nonzero` on buffers, and what an unsupported op looks like (named, with the reader's reason).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opcheck import chained_vjps

from propscope.debugger import open_session
from propscope.graph.readers import open_model

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
pytestmark = pytest.mark.torch


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x: Any) -> Any:
        h = self.fc1(x)
        h.add_(0.25)  # statements: later uses of h must see their results
        h.relu_()
        g = h * 2.0
        g.add_(self.fc1.bias.sum())
        return self.fc2(F.hardtanh(g, -1.5, 1.5))


class Masks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        h = torch.where(h > 0.1, h, 0.5 * h)  # a condition computed from the data
        return h.masked_fill(h < -0.8, -0.8) + torch.maximum(h, torch.zeros_like(h)).amax(-1, keepdim=True)


class SliceAssign(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 5)

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        out = torch.zeros_like(h)
        out[:, 1:3] = torch.tanh(h[:, 1:3])
        out[:, 0] = h[:, 4] * 2
        return out


class Diagonal(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 12)

    def forward(self, x: Any) -> Any:
        m = self.fc(x).reshape(-1, 3, 4)
        return torch.cat([torch.diagonal(m, 0, 1, 2), torch.diagonal(m, 1, 2, 1)], dim=-1)


class Buffers(nn.Module):
    """Scatters, sorts and nonzero on buffers: folded at load time, the network around them steps."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 5)
        self.register_buffer("order", torch.tensor([3.0, 1.0, 4.0, 1.5, 9.0]))
        self.register_buffer("ids", torch.tensor([[0, 2], [1, 4]]))

    def forward(self, x: Any) -> Any:
        ranks = torch.sort(self.order).indices
        weights = torch.zeros(2, 5, dtype=x.dtype).scatter_add(1, self.ids, torch.ones(2, 2, dtype=x.dtype))
        keep = torch.nonzero(self.order > 2.0).reshape(-1)
        h = self.fc(x)[:, ranks] * weights.sum(0)
        return h[:, keep]


class Sequence1d(nn.Module):
    """Conv1d, adaptive average pooling to a length that does not divide, and a 1-D average pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 3, 2, padding=1)

    def forward(self, x: Any) -> Any:
        h = torch.relu(self.conv(x.reshape(-1, 1, 4)))
        return torch.cat([F.adaptive_avg_pool1d(h, 3).flatten(1), F.avg_pool1d(h, 2).flatten(1)], dim=1)


class Einsums(nn.Module):
    """torch.einsum as models write it: MaxViT's spaced capitals, "...", implicit output, three operands, an outer
    product and a sum; read as sums, transposes, reshapes and batched products."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 24)
        self.w = nn.Parameter(torch.linspace(-1.0, 1.0, 6, dtype=torch.float64).reshape(3, 2))

    def forward(self, x: Any) -> Any:
        h = torch.tanh(self.fc(x))  # (2, 24)
        q, k = h[:, :12].reshape(-1, 1, 2, 3, 2), h[:, 12:].reshape(-1, 1, 2, 3, 2)  # B G H I D
        att = torch.einsum("B G H I D, B G H J D -> B G H I J", q, k)
        out = torch.einsum("BGHIJ,BGHJD->BGHID", att.softmax(-1), k)
        parts = [out.flatten(1), torch.einsum("...id,dk->...ik", q, self.w.T).flatten(1),
                 torch.einsum("bi,bj", h[:, :3], h[:, 3:5]).reshape(1, -1).expand(2, -1),  # implicit: "ij"
                 torch.einsum("bi,bj->bij", h[:, :2], h[:, 2:4]).flatten(1),  # outer product
                 torch.einsum("bi,ij,bj->b", h[:, :3], self.w @ self.w.T, h[:, 3:6]).reshape(-1, 1),
                 torch.einsum("bij->b", h.reshape(-1, 4, 6)).reshape(-1, 1)]
        return torch.cat(parts, dim=1)


class Outers(nn.Module):
    """torch.outer of computed vectors (a column times a row) and of constants (a FIR filter's 2-D taps from its 1-D
    ones, as diffusers' up- and downsamplers make them: folded)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 5)

    def forward(self, x: Any) -> Any:
        h = torch.tanh(self.fc(x))  # (2, 5)
        taps = torch.outer(torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=x.dtype), torch.tensor([1.0, 2.0, 1.0],
                                                                                          dtype=x.dtype))
        return torch.cat([torch.outer(h[0], h[1, :3]).reshape(1, -1).expand(2, -1), h[:, :4] @ taps], dim=1)


class Rolls(nn.Module):
    """torch.roll (Swin's shifted windows) on one and two dims, negative, past the size, and flat; swapaxes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 24)

    def forward(self, x: Any) -> Any:
        h = self.fc(x).reshape(-1, 4, 6)
        parts = [torch.roll(h, shifts=(-1, 2), dims=(1, 2)), torch.roll(h, 7, 2), torch.roll(h, 3),
                 torch.swapaxes(torch.tanh(h), 1, 2), h.swapdims(0, 2)]
        return torch.cat([p.reshape(2, -1) for p in parts], dim=1)


class FillFromTensor(nn.Module):
    """`fill_` with a 0-d tensor, as Swin builds its shifted-window mask: folded at load time."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.register_buffer("count", torch.tensor(3.0, dtype=torch.float64))

    def forward(self, x: Any) -> Any:
        mask = torch.zeros(6, dtype=x.dtype)
        mask[2:4].fill_(self.count)
        return self.fc(x) * mask


class Volumes(nn.Module):
    """3-D layers as a video or medical-volume model has them: Conv3d (strided, grouped), BatchNorm3d, MaxPool3d,
    AvgPool3d and adaptive average pooling to one value per channel and to a coarser volume."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_in = nn.Linear(4, 2 * 4 * 6 * 6)
        self.conv1, self.bn = nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4)
        self.conv2 = nn.Conv3d(4, 4, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), groups=2)
        self.fc = nn.Linear(4 + 4 * 2 * 2 * 2, 3)

    def forward(self, x: Any) -> Any:
        v = self.fc_in(x).reshape(-1, 2, 4, 6, 6)
        h = F.max_pool3d(torch.relu(self.bn(self.conv1(v))), (1, 2, 2))
        h = F.avg_pool3d(self.conv2(h), (2, 1, 1), count_include_pad=False)
        pooled = [F.adaptive_avg_pool3d(h, 1).flatten(1), F.adaptive_avg_pool3d(h, (2, 2, 2)).flatten(1)]
        return self.fc(torch.cat(pooled, dim=1))


class Sampling(nn.Module):
    """A spatial transformer's sampling (image and grid both computed) in every padding mode, and bicubic resizes
    (ViT position embeddings resized to another image size)."""

    def __init__(self) -> None:
        super().__init__()
        self.image, self.points = nn.Linear(4, 18), nn.Linear(4, 12)

    def forward(self, x: Any) -> Any:
        image = torch.tanh(self.image(x)).reshape(2, 2, 3, 3)
        grid = 1.4 * torch.tanh(self.points(x)).reshape(2, 2, 3, 2)  # some points outside the image
        sampled = [F.grid_sample(image, grid, align_corners=False),
                   F.grid_sample(image, grid, mode="nearest", padding_mode="border", align_corners=True),
                   F.grid_sample(image, grid, padding_mode="reflection", align_corners=False),
                   F.grid_sample(image, grid, mode="bicubic", padding_mode="border", align_corners=False),
                   F.interpolate(image, size=(5, 4), mode="bicubic", align_corners=False),
                   F.interpolate(image, scale_factor=1.5, mode="bicubic", align_corners=True)]
        return torch.cat([s.flatten(1) for s in sampled], dim=1)


class SpatialTransformer(nn.Module):
    """A spatial transformer: θ computed from the input, its affine grid (images both ways of align_corners, and a
    volume's grid), and the image (and a volume) sampled there."""

    def __init__(self) -> None:
        super().__init__()
        self.image, self.loc, self.loc3d = nn.Linear(4, 24), nn.Linear(4, 6), nn.Linear(4, 12)

    def forward(self, x: Any) -> Any:
        image = torch.tanh(self.image(x)).reshape(2, 2, 3, 4)
        theta = self.loc(x).reshape(2, 2, 3)
        moved = [F.grid_sample(image, F.affine_grid(theta, size, align_corners=align), align_corners=align)
                 for size, align in (([2, 2, 3, 5], False), ([2, 2, 2, 5], True))]  # (torch's decompositions fail
        # on an axis of one pixel; test_ops_resize checks the base grid's unit axes against torch)
        volume_grid = F.affine_grid(self.loc3d(x).reshape(2, 3, 4), [2, 1, 2, 3, 2], align_corners=False)
        volume = image.reshape(2, 2, 2, 3, 2)  # and a volume warped by it (VoxelMorph's spatial transformer)
        warped = [F.grid_sample(volume, volume_grid, mode=mode, padding_mode=padding, align_corners=False)
                  for mode, padding in (("bilinear", "zeros"), ("bilinear", "reflection"), ("nearest", "border"))]
        return torch.cat([m.flatten(1) for m in moved + warped] + [volume_grid.flatten(1)], dim=1)


class Distances(nn.Module):
    """cdist to learned prototypes: p = 2 by row differences and by the matrix product torch switches to past 25
    rows, p = 1, 3 and ∞; a set against itself (zero distances, where torch's gradient is 0); pdist."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 12)
        self.prototypes, self.many = nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(30, 3))

    def forward(self, x: Any) -> Any:
        h = torch.tanh(self.fc(x)).reshape(-1, 4, 3)
        parts = [torch.cdist(h, self.prototypes), torch.cdist(h, self.many), torch.cdist(h, self.prototypes, p=1.0),
                 torch.cdist(h, self.prototypes, p=3.0), torch.cdist(h, self.prototypes, p=float("inf")),
                 torch.cdist(h, h), F.pdist(h.reshape(-1, 3)), F.pdist(h[0], p=1.0)]
        return torch.cat([part.reshape(2, -1) for part in parts], dim=1)


class RelativePositions(nn.Module):
    """A relative-position bias as BEiT and Swin V2 index it: torch.meshgrid of aranges (ij and xy), the pairwise
    offsets, a learned table gathered by them (folded indices, a computed table)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.table = nn.Linear(4, 6), nn.Parameter(torch.linspace(-1, 1, 25).reshape(25, 1))

    def forward(self, x: Any) -> Any:
        rows, cols = torch.meshgrid(torch.arange(3), torch.arange(3), indexing="ij")
        coords = torch.stack([rows.flatten(), cols.flatten()])  # 2 × 9
        offset = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + 2  # 9 × 9 × 2, in 0..4
        index = offset[..., 0] * 5 + offset[..., 1]
        xs, ys = torch.meshgrid(torch.arange(2), torch.arange(3), indexing="xy")
        bias = self.table[index.flatten()].reshape(9, 9)[:6, :6] + (xs + ys).flatten()[:6]
        return self.fc(x) @ torch.tanh(bias)


class TensorSplits(nn.Module):
    """torch.tensor_split into sections (uneven) and at indices (negative, and one past a smaller one: an empty
    piece skipped), as MViT splits its class token off; and x.zero_() on a clone of a computed tensor (Swin V2's key
    bias), a constant whatever x is."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 14)

    def forward(self, x: Any) -> Any:
        h = torch.tanh(self.fc(x))
        a, b, c = torch.tensor_split(h, 3, dim=1)  # 5, 5, 4
        d, e, f = torch.tensor_split(h, [2, -3], dim=1)  # 2, 9, 3
        k = h[:, :4].clone()
        k[:, 1:3].zero_()
        return torch.cat([a * 2, b, c.flip(1), d, e * e, f, k, k.clone().zero_() + 1], dim=1)


class ZeroNorms(nn.Module):
    """F.normalize of a vector of zeros, as Swin V2's cosine attention meets the zero keys of padded windows: torch's
    norm gives it a zero gradient (the steps of √(Σ x²) gave NaN); and a vector norm of order 3 over two axes."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x: Any) -> Any:
        h = self.fc(x).reshape(-1, 2, 3)
        padded = torch.cat([h, torch.zeros_like(h[:, :1]) * h[:, :1]], dim=1)  # a zero row (that depends on h)
        unit = F.normalize(padded, dim=-1)
        return torch.cat([unit.flatten(1), torch.linalg.vector_norm(h, ord=3, dim=(1, 2), keepdim=True)[:, :, 0]],
                         dim=1)


class Windows(nn.Module):
    """Tensor.unfold(dim, size, step) as HaloNet blocks its neighbourhoods: overlapping windows (step < size), ones
    that skip entries (step > size), a window the size of the axis, and unfold of the last axis."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 24)

    def forward(self, x: Any) -> Any:
        h = self.fc(x).reshape(-1, 2, 3, 4)
        overlapping = h.unfold(3, 3, 1)  # (n, 2, 3, 2, 3)
        skipping = h.unfold(2, 1, 2) * 2  # (n, 2, 2, 4, 1)
        whole = h.unfold(1, 2, 5)  # (n, 1, 3, 4, 2)
        return torch.cat([overlapping.flatten(1), skipping.flatten(1), whole.tanh().flatten(1)], dim=1)


class Antialiased(nn.Module):
    """F.interpolate(antialias=True), as timm resamples a position embedding and torchvision's Resize shrinks:
    bilinear and bicubic, shrinking (the filter stretched over several pixels), growing, the same size, a given
    scale factor, and align_corners."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2 * 6 * 7)

    def forward(self, x: Any) -> Any:
        image = self.fc(x).reshape(-1, 2, 6, 7)
        parts = [F.interpolate(image, size=(2, 3), mode="bilinear", antialias=True),
                 F.interpolate(image, size=(4, 9), mode="bicubic", antialias=True),
                 F.interpolate(image, size=(6, 7), mode="bicubic", antialias=True),
                 F.interpolate(image, scale_factor=0.4, mode="bicubic", antialias=True),
                 F.interpolate(image, size=(3, 5), mode="bilinear", align_corners=True, antialias=True)]
        return torch.cat([p.flatten(1) for p in parts], dim=1)


class Contexts(nn.Module):
    """Blocks torch.export keeps as higher-order ops, read in place: an autocast block turned off (EfficientViT's
    attention), a no_grad block whose result scales the output but takes no gradient, and x.detach()."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        with torch.autocast(device_type="cpu", enabled=False):
            a = torch.tanh(h) * 2
        with torch.no_grad():
            scale = h.abs().mean(-1, keepdim=True) + 1
        with torch.no_grad(), torch.enable_grad():
            b = h.sigmoid()
        return a * scale + h * h.detach() + b


class OneHot(nn.Module):
    """F.one_hot of ids the data computes (a mask, no gradient) and of constant ids (folded), times a table as Gemma
    4's vision tower looks up its position embeddings; decomposed, one_hot checks its ids with any() of masks."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.table = nn.Parameter(torch.randn(5, 3, dtype=torch.float64))

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        picked = F.one_hot(h.argmax(-1), num_classes=6).to(h.dtype) * h
        rows = F.one_hot(torch.tensor([0, 4, 2, 4]), 5).to(h.dtype) @ self.table
        some = (h > 0.3).any(-1, keepdim=True).to(h.dtype) * h[:, 1:2]  # any and all of masks the data computes
        every = (h > -0.5).all(1, keepdim=True).to(h.dtype) * h[:, 2:3] + (h > 0).any().to(h.dtype)
        return torch.cat([picked, rows.flatten()[None].expand(x.shape[0], -1) * h[:, :1], some, every], dim=1)


class Resize1d(nn.Module):
    """F.interpolate of sequences (N, C, L), as NaFlexViT resamples its factorized position embeddings: linear both
    ways of align_corners, by a scale factor, and nearest."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2 * 7)

    def forward(self, x: Any) -> Any:
        seq = self.fc(x).reshape(-1, 2, 7)
        parts = [F.interpolate(seq, size=11, mode="linear"), F.interpolate(seq, size=3, mode="linear"),
                 F.interpolate(seq, size=5, mode="linear", align_corners=True),
                 F.interpolate(seq, scale_factor=1.6, mode="linear"), F.interpolate(seq, size=10, mode="nearest")]
        return torch.cat([p.flatten(1) for p in parts], dim=1)


class Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Any) -> Any:
        return torch.i0(torch.tanh(self.fc(x))) * x  # a Bessel function: outside the catalog


MODELS = {"in_place": InPlace, "masks": Masks, "slice_assign": SliceAssign, "diagonal": Diagonal,
          "buffers": Buffers, "sequence_1d": Sequence1d, "einsums": Einsums, "outers": Outers, "rolls": Rolls,
          "fill_from_tensor": FillFromTensor, "volumes": Volumes, "sampling": Sampling,
          "spatial_transformer": SpatialTransformer, "distances": Distances,
          "relative_positions": RelativePositions, "tensor_splits": TensorSplits,
          "zero_norms": ZeroNorms, "windows": Windows,
          "antialiased": Antialiased, "contexts": Contexts, "one_hot": OneHot,
          "resize_1d": Resize1d}


def export(cls: type, x: np.ndarray, path: Path, decompose: bool) -> Any:
    torch.manual_seed(0)
    model = cls().double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (torch.from_numpy(x),))
        if decompose:
            program = program.run_decompositions()
        torch.export.save(program, str(path))
    return model  # the reference: autograd on the module itself (a decomposed program's aten.copy has none)


@pytest.mark.parametrize("decompose", [False, True], ids=["as_is", "decomposed"])
@pytest.mark.parametrize("name", list(MODELS))
def test_mapping_matches_autograd(name: str, decompose: bool, tmp_path: Path) -> None:
    if decompose and name == "contexts":
        pytest.skip("run_decompositions() makes detach an alias and drops no_grad: the program forgot the cut")
    x = np.random.default_rng(0).standard_normal((2, 4))
    reference = export(MODELS[name], x, tmp_path / f"{name}.pt2", decompose)
    model = open_model(tmp_path / f"{name}.pt2")
    unsupported = [n.meta.get("original_op") for n in model.graph if n.op.name == "unsupported"]
    assert not unsupported, f"unsupported: {unsupported} ({model.warnings})"

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out = reference(xt)
    weights = torch.from_numpy(np.random.default_rng(1).standard_normal(tuple(out.shape)))
    (out * weights).sum().backward()

    s = open_session(model, dtype="float64", data={"x": x}, loss="none")
    s.run_to_end()
    np.testing.assert_allclose(s.value(s.prediction_node.name), out.detach().numpy(), rtol=1e-12, atol=1e-12)
    grads = chained_vjps(s, weights.numpy())  # through the whole graph, with the same upstream weights
    np.testing.assert_allclose(grads["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for pname, p in reference.named_parameters():
        np.testing.assert_allclose(grads[pname], p.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=pname)


def test_unsupported_op_is_named_with_the_readers_reason(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((2, 4))
    export(Unsupported, x, tmp_path / "i0.pt2", decompose=False)
    model = open_model(tmp_path / "i0.pt2")
    placeholders = [n for n in model.graph if n.op.name == "unsupported"]
    assert len(placeholders) == 1 and placeholders[0].meta["original_op"].startswith("aten.i0")
    assert any("i0" in w for w in model.warnings)

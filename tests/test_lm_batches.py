"""A language model takes the user's batch as it comes: a transformers folder is traced at the data's batch and
sequence length (it was refused: "expected shape (1, 8), got (2, 8)"), read again at other sizes (File ▸ Load data),
and trains in mini-batches, each traced at its own size with its own constants (a position table), where a
mini-batch of a model with constants was a KeyError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session

pytestmark = [pytest.mark.torch, pytest.mark.skipif(not zoo.has_transformers(), reason="needs transformers")]
VOCAB = 40


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("lm") / "gpt2"
    config = GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def torch_loss(folder: Path, ids: np.ndarray, labels: np.ndarray) -> tuple[float, Any]:
    import torch
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel.from_pretrained(folder).double().eval()
    logits = model(torch.tensor(ids)).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), torch.tensor(labels).reshape(-1))
    loss.backward()
    return float(loss.detach()), model


def test_a_folder_is_traced_at_the_datas_batch_and_length_and_again_at_others(gpt2: Path) -> None:
    rng = np.random.default_rng(0)
    ids, labels = rng.integers(0, VOCAB, (3, 12)), rng.integers(0, VOCAB, (3, 12))
    s = open_session(gpt2, data={"input_ids": ids, "y": labels}, dtype="float64")
    assert s.graph["input_ids"].shape == (3, 12)
    s.run_to_end()
    loss, model = torch_loss(gpt2, ids, labels)
    assert float(s.value("loss")) == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(s.grad("transformer.h.0.attn.c_attn.weight"),
                               model.transformer.h[0].attn.c_attn.weight.grad.numpy(), rtol=1e-9, atol=1e-14)
    s.set_batch({"input_ids": ids[:2, :5], "y": labels[:2, :5]})  # File ▸ Load data with other sizes
    assert s.graph["input_ids"].shape == (2, 5)
    s.run_to_end()
    assert float(s.value("loss")) == pytest.approx(torch_loss(gpt2, ids[:2, :5], labels[:2, :5])[0], rel=1e-12)


def test_mini_batches_are_traced_at_their_own_size(gpt2: Path) -> None:
    """Five sequences in batches of 2: two programs (2 and the remainder 1), each with its own constants; the loss of
    the first epoch is torch's mean over the batches, batch for batch, at the first epoch's weights (lr 0)."""
    rng = np.random.default_rng(1)
    ids, labels = rng.integers(0, VOCAB, (5, 6)), rng.integers(0, VOCAB, (5, 6))
    s = open_session(gpt2, data={"input_ids": ids, "y": labels}, dtype="float64", seed=3)
    history = s.train(epochs=1, optimizer="sgd", lr=0.0, batch_size=2)
    order = np.random.default_rng(3).permutation(5)
    expected = sum(torch_loss(gpt2, ids[rows], labels[rows])[0] * len(rows)
                   for rows in (order[0:2], order[2:4], order[4:5])) / 5
    assert history.loss[0] == pytest.approx(expected, rel=1e-10)
    # and the updates: SGD batch for batch, the weights equal torch's same loop
    import torch

    s.train(epochs=1, optimizer="sgd", lr=0.5, batch_size=2)
    _, model = torch_loss(gpt2, ids[:1], labels[:1])
    order = np.random.default_rng(3).permutation(5)
    for rows in (order[0:2], order[2:4], order[4:5]):
        model.zero_grad()
        logits = model(torch.tensor(ids[rows])).logits
        torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), torch.tensor(labels[rows]).reshape(-1)).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    trained = s.parameters_numpy()
    for name in ("transformer.h.0.attn.c_attn.weight", "transformer.wte.weight", "transformer.ln_f.bias"):
        kept = s.model.aliases.get(name, name)  # the tied embedding is kept under the head's name
        np.testing.assert_allclose(trained[kept], model.get_parameter(name).detach().numpy(), rtol=1e-9, atol=1e-12)


def test_a_folder_refuses_more_tokens_than_it_has_positions(gpt2: Path) -> None:
    from propscope.graph.errors import ModelFormatError

    with pytest.raises(ModelFormatError, match="the data's input_ids hold 40 tokens a row; the model has 32 positions"):
        open_session(gpt2, data={"input_ids": np.zeros((2, 40), dtype=np.int64)})
    with pytest.raises(ModelFormatError, match="the data holds no samples"):
        open_session(gpt2, data={"input_ids": np.zeros((0, 8), dtype=np.int64)})


def test_a_static_export_with_constants_trains_in_mini_batches(tmp_path: Path) -> None:
    """A .pt2 exported at a fixed size keeps its constants (a position table) in every mini-batch's program: SGD in
    batches of 2 gives torch's weights, batch for batch (a KeyError before)."""
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb, self.pos = torch.nn.Embedding(VOCAB, 8), torch.nn.Embedding(6, 8)
            self.head = torch.nn.Linear(8, VOCAB)

        def forward(self, ids: Any) -> Any:
            return self.head(torch.tanh(self.emb(ids) + self.pos(torch.arange(ids.shape[1]))))

    torch.manual_seed(0)
    module = Tiny()
    path = tmp_path / "tiny.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(2, 6, dtype=torch.long),)), path)
    rng = np.random.default_rng(2)
    ids, labels = rng.integers(0, VOCAB, (6, 6)), rng.integers(0, VOCAB, (6, 6))
    s = open_session(path, data={"ids": ids, "y": labels}, loss="cross_entropy", dtype="float64", seed=4)
    s.train(epochs=1, optimizer="sgd", lr=0.5, batch_size=2)
    module = module.double()
    for rows in np.split(np.random.default_rng(4).permutation(6), 3):
        module.zero_grad()
        logits = module(torch.tensor(ids[rows]))
        torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), torch.tensor(labels[rows]).reshape(-1)).backward()
        with torch.no_grad():
            for p in module.parameters():
                p -= 0.5 * p.grad
    trained = s.parameters_numpy()
    for name, p in module.named_parameters():
        np.testing.assert_allclose(trained[name], p.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_the_app_reads_the_folder_again_off_its_thread_for_new_data(gpt2: Path, tmp_path: Path, qtbot) -> None:
    """File ▸ Load data of another sequence length: the folder is traced again in a job (seconds, the window stays
    responsive), then the data is used; data of the same sizes is used at once."""
    from propscope.gui.main_window import MainWindow

    w = MainWindow(open_session(gpt2), settings=None)
    qtbot.addWidget(w)
    w.show()
    rng = np.random.default_rng(5)
    data = tmp_path / "longer.npz"
    np.savez(data, input_ids=rng.integers(0, VOCAB, (2, 12)), y=rng.integers(0, VOCAB, (2, 12)))
    assert w.load_data_path(data)
    assert w.jobs  # traced again in a job, not on the GUI thread
    qtbot.waitUntil(lambda: w.bridge.session.graph["input_ids"].shape == (2, 12), timeout=60_000)
    assert "Data from longer.npz" in w.status_message.text()
    same = tmp_path / "same.npz"
    np.savez(same, input_ids=rng.integers(0, VOCAB, (2, 12)), y=rng.integers(0, VOCAB, (2, 12)))
    assert w.load_data_path(same) and not w.jobs and "Data from same.npz" in w.status_message.text()
    w.close()

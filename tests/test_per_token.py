"""Cross-entropy per token: a language model's (batch, tokens, vocabulary) logits read as a row per token against
(batch, tokens) labels, as its own loss reads them (`logits.view(-1, V)`), where torch's cross-entropy would take
the classes on axis 1. Asked for with `per_token` (--per-token, Debug ▸ Loss ▸ Cross-entropy per token), or read so
from labels of shape (batch, tokens), which the classes-on-axis-1 reading cannot take."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from propscope.cli import main
from propscope.debugger import open_session
from propscope.graph import Graph, GraphError, Model

B, T, V, D = 2, 5, 11, 4  # T < V, as in every language model


def tiny_lm() -> Model:
    """ids (B, T) -> embedding (V, D) -> tanh -> linear (D -> V) -> logits (B, T, V), and a second output."""
    rng = np.random.default_rng(0)
    g = Graph("tiny_lm")
    ids = g.input("ids", (B, T))
    emb, w, b = g.parameter("emb", (V, D)), g.parameter("head.weight", (D, V)), g.parameter("head.bias", (V,))
    h = g.add("tanh", g.add("embedding", ids, emb, name="embedded"), name="hidden")
    g.set_outputs(g.add("linear", h, w, b, name="logits"), h)
    arrays = {"emb": rng.normal(size=(V, D)), "head.weight": rng.normal(size=(D, V)), "head.bias": rng.normal(size=V)}
    return Model(g, arrays, batch={"ids": rng.integers(0, V, (B, T))})


def reference(model: Model, ids: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """The loss a language model computes, F.cross_entropy(logits.view(-1, V), labels.view(-1)), and its gradients,
    by torch autograd in float64."""
    torch = pytest.importorskip("torch")
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in model.arrays.items()}
    logits = torch.tanh(p["emb"][torch.tensor(ids)]) @ p["head.weight"] + p["head.bias"]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(labels).reshape(-1))
    loss.backward()
    return float(loss.detach()), {k: v.grad.numpy() for k, v in p.items()}


def check_against_torch(s, ids: np.ndarray, labels: np.ndarray) -> None:
    s.run_to_end()
    loss, grads = reference(s.model, ids, labels)
    assert float(s.value("loss")) == pytest.approx(loss, rel=1e-12)
    for name, g in grads.items():
        np.testing.assert_allclose(s.grad(name), g, rtol=1e-10, atol=1e-13)


def test_per_token_reads_a_row_per_token_and_matches_torch() -> None:
    model = tiny_lm()
    labels = np.random.default_rng(1).integers(0, V, (B, T))
    for backend in ("numpy", "torch"):
        if backend == "torch":
            pytest.importorskip("torch")
        s = open_session(model, data={"ids": model.batch["ids"], "y": labels}, per_token=True, dtype="float64",
                         backend=backend)
        assert s.loss_name == "cross_entropy"  # per_token asks for it
        assert s.prediction_node.shape == (B * T, V) and s.prediction_node.inputs[0].name == "logits"
        assert [o.name for o in s.graph.outputs][1:] == ["hidden"]  # the other output stays
        check_against_torch(s, model.batch["ids"], labels)


def test_token_labels_read_the_logits_a_row_per_token_without_being_asked() -> None:
    """(B, T) labels for (B, T, V) logits: torch's reading (classes on axis 1) would want (B, V) labels."""
    model = tiny_lm()
    labels = np.random.default_rng(2).integers(0, V, (B, T))
    s = open_session(model, data={"ids": model.batch["ids"], "y": labels}, loss="cross_entropy", dtype="float64")
    assert s.prediction_node.meta.get("per_token")
    check_against_torch(s, model.batch["ids"], labels)


def test_classes_stay_on_axis_1_unless_asked_or_the_labels_say_otherwise() -> None:
    torch = pytest.importorskip("torch")
    model = tiny_lm()
    s = open_session(model, loss="cross_entropy", dtype="float64")  # drawn labels: torch's reading, (B, V)
    assert s.prediction_node.name == "logits" and s.batch["y"].shape == (B, V)
    labels = np.random.default_rng(3).integers(0, T, (B, V))
    s = open_session(model, data={"ids": model.batch["ids"], "y": labels}, loss="cross_entropy", dtype="float64")
    s.run_to_end()
    logits = torch.tensor(np.asarray(s.value("logits")))
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))  # (N, C, d1) against (N, d1)
    assert s.prediction_node.name == "logits" and float(s.value("loss")) == pytest.approx(float(expected), rel=1e-12)


def test_per_token_and_back() -> None:
    model = tiny_lm()
    rows = model.per_token()
    assert rows.per_token() is rows and rows.graph.output.shape == (B * T, V)
    back = rows.per_token(False)
    assert [n.name for n in back.graph] == [n.name for n in model.graph]
    assert [o.name for o in back.graph.outputs] == ["logits", "hidden"]
    s = open_session(model, loss="cross_entropy", per_token=True, dtype="float64")
    assert s.batch["y"].shape == (B * T,)  # drawn: a label per token
    plain, _ = s.with_loss("cross_entropy")
    assert plain.prediction_node.name == "logits"
    again, _ = plain.with_per_token()
    assert again.prediction_node.meta.get("per_token") and again.loss_name == "cross_entropy"
    flat = Graph("flat")
    x = flat.input("x", (3, 4))
    flat.set_outputs(flat.add("tanh", x, name="out"))
    with pytest.raises(GraphError, match=r"needs \(batch, tokens, vocabulary\) logits"):
        Model(flat, {}).per_token()


def test_the_command_takes_per_token_and_says_how(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from propscope.graph.readers import save_model

    path = tmp_path / "lm.propscope"
    save_model(tiny_lm(), path)
    assert main(["grads", str(path), "--loss", "cross_entropy"]) == 0
    assert "--per-token reads a row per token" in capsys.readouterr().err
    assert main(["grads", str(path), "--per-token"]) == 0
    captured = capsys.readouterr()
    assert "loss cross_entropy" in captured.out and "axis 1" not in captured.err
    data = tmp_path / "tokens.npz"
    np.savez(data, ids=tiny_lm().batch["ids"], y=np.zeros((B, T), dtype=np.int64))
    assert main(["grads", str(path), "--data", str(data), "--loss", "cross_entropy"]) == 0
    assert f"labels read the logits ({B}, {T}, {V}) a row per token, as ({B * T}, {V})" in capsys.readouterr().err


def test_the_app_offers_cross_entropy_per_token(qtbot) -> None:
    from propscope.gui.main_window import PER_TOKEN, MainWindow

    w = MainWindow(open_session(tiny_lm(), loss="cross_entropy", dtype="float64"), settings=None)
    qtbot.addWidget(w)
    w.show()
    assert w.per_token_action.isEnabled() and not w.per_token_action.isChecked()
    w.per_token_action.trigger()
    qtbot.waitUntil(lambda: w.bridge.session.prediction_node.meta.get("per_token") is True, timeout=20_000)
    assert w.per_token_action.isChecked() and w.bridge.session.loss_name == "cross_entropy"
    assert w.bridge.session.batch["y"].shape == (B * T,)
    plain = next(a for a in w.loss_actions.actions() if a.data() == "cross_entropy")
    plain.trigger()
    qtbot.waitUntil(lambda: w.bridge.session.prediction_node.name == "logits", timeout=20_000)
    assert plain.isChecked() and not w.per_token_action.isChecked()
    assert "classes on axis 1" in w.status_message.text() and "Cross-entropy per token" in w.status_message.text()
    assert w.per_token_action.data() == PER_TOKEN
    w.close()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_mini_batches_of_a_language_model_take_each_sample_with_its_tokens(backend: str) -> None:
    """Mini-batch SGD over 6 sequences of T tokens, 2 a batch: the trainer takes each sequence's T label rows with it
    (the data holds 6 samples of ids and 6·T labels); the weights equal torch's same loop, batch for batch."""
    torch = pytest.importorskip("torch")
    model = tiny_lm()
    rng = np.random.default_rng(4)
    ids, labels = rng.integers(0, V, (6, T)), rng.integers(0, V, (6, T))
    s = open_session(model, data={"ids": ids, "y": labels}, loss="cross_entropy", dtype="float64", backend=backend,
                     seed=7)
    history = s.train(epochs=2, optimizer="sgd", lr=0.5, batch_size=2)
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in model.arrays.items()}
    shuffle = np.random.default_rng(7)  # the trainer's order: the session's seed
    losses = []
    for _ in range(2):
        order, total = shuffle.permutation(6), 0.0
        for first in range(0, 6, 2):
            rows = order[first:first + 2]
            logits = torch.tanh(p["emb"][torch.tensor(ids[rows])]) @ p["head.weight"] + p["head.bias"]
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.tensor(labels[rows]).reshape(-1))
            grads = torch.autograd.grad(loss, list(p.values()))
            with torch.no_grad():
                for weight, g in zip(p.values(), grads, strict=True):
                    weight -= 0.5 * g
            total += float(loss.detach()) * len(rows)
        losses.append(total / 6)
    np.testing.assert_allclose(history.loss, losses, rtol=1e-12)
    trained = s.parameters_numpy()
    for name, weight in p.items():
        np.testing.assert_allclose(trained[name], weight.detach().numpy(), rtol=1e-11, atol=1e-13)


def test_train_and_compare_take_per_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from propscope.graph.readers import save_model

    path = tmp_path / "lm.propscope"
    save_model(tiny_lm(), path)
    assert main(["train", str(path), "--per-token", "--epochs", "3", "--optimizer", "adam", "--lr", "0.05"]) == 0
    assert "epoch 3/3" in capsys.readouterr().out
    pytest.importorskip("torch")
    assert main(["compare", str(path), "--per-token"]) == 0
    assert "per_token" in capsys.readouterr().out


def test_loading_token_labels_into_an_open_session_reads_per_token(tmp_path: Path, qtbot) -> None:
    """File ▸ Load data with (batch, tokens) labels on a session opened with torch's reading: the logits are read a
    row per token from then on, and the status bar says so."""
    from propscope.gui.main_window import PER_TOKEN, MainWindow

    model = tiny_lm()
    data = tmp_path / "tokens.npz"
    np.savez(data, ids=model.batch["ids"], y=np.random.default_rng(5).integers(0, V, (B, T)))
    w = MainWindow(open_session(model, loss="cross_entropy", dtype="float64"), settings=None)
    qtbot.addWidget(w)
    w.show()
    assert w.bridge.session.prediction_node.name == "logits"
    assert w.load_data_path(data)
    s = w.bridge.session
    assert s.prediction_node.meta.get("per_token") and s.batch["y"].shape == (B * T,)
    assert f"labels read the logits ({B}, {T}, {V}) a row per token" in w.status_message.text()
    assert w.per_token_action.isChecked() and w.per_token_action.data() == PER_TOKEN
    check_against_torch(s, model.batch["ids"], np.load(data)["y"])
    w.close()


def test_padding_labels_of_minus_100_count_nothing_as_in_torch() -> None:
    """transformers pads labels with -100, torch's ignore_index: the loss, its gradients and the accuracy leave those
    tokens out (they were refused as class ids outside 0..V-1)."""
    model = tiny_lm()
    forward = open_session(model, loss="none", dtype="float64")
    forward.run_to_end()
    labels = np.argmax(np.asarray(forward.value("logits")), axis=-1)  # right everywhere ...
    labels[:, ::2] = (labels[:, ::2] + 1) % V  # ... but at every other token
    labels[0, 3:] = -100
    labels[1, 4:] = -100
    s = open_session(model, data={"ids": model.batch["ids"], "y": labels}, loss="cross_entropy", dtype="float64")
    check_against_torch(s, model.batch["ids"], labels)  # torch's cross_entropy ignores -100 by default
    logits = np.asarray(s.value("logits")).reshape(-1, V)
    history = s.train(epochs=1, optimizer="sgd", lr=0.0)
    kept = labels.reshape(-1) != -100
    expected = np.mean(np.argmax(logits, axis=-1)[kept] == labels.reshape(-1)[kept])
    assert history.metric_values["accuracy"][-1] == pytest.approx(expected) and expected == pytest.approx(3 / 7)
    with pytest.raises(Exception, match=r"-100: ignored, as torch's"):
        open_session(model, data={"ids": model.batch["ids"], "y": labels - 1000}, loss="cross_entropy")


def test_moving_the_loss_between_outputs_keeps_per_token_where_it_belongs() -> None:
    model = tiny_lm()
    s = open_session(model, loss="cross_entropy", per_token=True, dtype="float64")
    hidden, _ = s.with_output("hidden")
    assert hidden.prediction_node.name == "hidden"  # as the model returns it
    back, _ = hidden.with_output("logits")
    assert back.prediction_node.name == "logits"  # the output as returned: Loss ▸ per token reads it by rows again
    again, _ = s.with_output("logits_per_token")  # the current prediction, by the name the menu lists it under
    assert again.prediction_node.meta.get("per_token")
    same, _ = s.with_output("logits")
    assert same.prediction_node.meta.get("per_token")

"""Opening a transformers checkpoint folder (config.json + model.safetensors, as save_pretrained writes it).

Tiny random GPT-2 (tied LM head), BERT and ViT classifiers, and BART (encoder-decoder) are saved with
`save_pretrained`, opened by folder or by config.json, and stepped to autograd's loss and gradients (float64) on
both backends; the app names the session after the folder. Refused with one line: an architecture shipped as code
(auto_map), a class transformers lacks, a folder without weights, a config too large for the memory budget (refused
before anything is allocated), invalid JSON. Weights missing from the checkpoint are named in a warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.debugger import open_session
from propscope.graph.errors import ModelFormatError
from propscope.graph.readers import display_name, open_model

pytestmark = [pytest.mark.torch, pytest.mark.skipif(not zoo.has_transformers(), reason="needs transformers")]


def _transformers() -> Any:
    zoo.torchvision_models()  # transformers imports torchvision when it is installed
    import transformers

    return transformers


def _gpt2() -> Any:
    t = _transformers()
    return t.GPT2LMHeadModel(t.GPT2Config(vocab_size=40, n_positions=16, n_embd=16, n_layer=2, n_head=2))


def _bert() -> Any:
    t = _transformers()
    return t.BertForSequenceClassification(t.BertConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=3))


def _vit() -> Any:
    t = _transformers()
    return t.ViTForImageClassification(t.ViTConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, image_size=16,
        patch_size=8, num_labels=4))


def _bart() -> Any:
    t = _transformers()
    return t.BartForConditionalGeneration(t.BartConfig(
        vocab_size=40, d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=16,
        forced_eos_token_id=None))


BUILDERS = {"gpt2": _gpt2, "bert": _bert, "vit": _vit, "bart": _bart}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    folders = {}
    for name, build in BUILDERS.items():
        torch.manual_seed(0)
        model = zoo._jitter(build())  # no zero biases or unit norms: every gradient is its own
        folders[name] = tmp_path_factory.mktemp(name) / name
        model.save_pretrained(folders[name])
    return folders


def _reference(folder: Path, batch: dict[str, np.ndarray]) -> tuple[float, dict[tuple[str, ...], np.ndarray]]:
    """torch autograd on the checkpoint loaded by transformers itself, in float64: the loss, and each parameter's
    gradient keyed by all of its names."""
    import torch

    t = _transformers()
    cls = getattr(t, json.loads((folder / "config.json").read_text())["architectures"][0])
    model = cls.from_pretrained(folder, attn_implementation="eager").double().eval()
    inputs = {k: torch.from_numpy(v).long() if k.endswith("_ids") else torch.from_numpy(v).double()
              for k, v in batch.items() if k != "y"}
    # the steps transformers keeps in float32 whatever the model's dtype (ViT's softmax) in float64, as propscope's
    # float64 session computes them
    logits = zoo._Float64.wrap(model, tuple(inputs), flatten=True)(*inputs.values())
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(batch["y"]).long())
    loss.backward()
    groups: dict[int, list[str]] = {}  # a tied weight (GPT-2's head and token embedding) under each of its names
    for n, p in model.named_parameters(remove_duplicate=False):
        if p.grad is not None:
            groups.setdefault(id(p), []).append(n)
    params = dict(model.named_parameters(remove_duplicate=False))
    return float(loss), {tuple(names): params[names[0]].grad.numpy() for names in groups.values()}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_a_checkpoint_steps_to_autograds_gradients(name: str, backend: str, checkpoints: dict[str, Path]) -> None:
    folder = checkpoints[name]
    s = open_session(folder, backend=backend, dtype="float64")
    assert s.name == name and s.loss_name == "cross_entropy"
    assert not s.model.unsupported_ops, s.model.warnings
    s.run_to_end()
    loss, grads = _reference(folder, {k: np.asarray(v) for k, v in s.batch.items()})
    assert abs(float(s.value(s.loss_node.name)) - loss) < 1e-12 * max(1.0, abs(loss))
    largest = max(float(np.max(np.abs(g))) for g in grads.values())
    for names, want in grads.items():  # every trainable tensor, under whichever of its names the export kept
        (pname,) = [n for n in names if n in s.params]
        # a true zero (an attention key's bias, which softmax cancels) is rounding noise on both sides
        scale = max(float(np.max(np.abs(want))), 1e-6 * largest)
        assert float(np.max(np.abs(s.grad(pname) - want))) / scale < 1e-9, pname


def test_config_json_opens_the_folder_and_names_it(checkpoints: dict[str, Path]) -> None:
    config = checkpoints["bert"] / "config.json"
    assert display_name(config) == display_name(checkpoints["bert"]) == "bert"
    model = open_model(config)
    assert "BertForSequenceClassification from bert" in model.description
    assert [n.name for n in model.graph.inputs] == ["input_ids"]


def _copy(folder: Path, into: Path, **config_changes: Any) -> Path:
    into.mkdir()
    for f in folder.iterdir():
        (into / f.name).write_bytes(f.read_bytes())
    config = json.loads((into / "config.json").read_text())
    config.update(config_changes)
    (into / "config.json").write_text(json.dumps(config))
    return into


@pytest.mark.parametrize(("changes", "says"), [
    ({"auto_map": {"AutoModel": "modeling_evil.Evil"}}, "code shipped with the checkpoint"),
    ({"architectures": ["NotAModelAnywhere"]}, "has no model class 'NotAModelAnywhere'"),
    ({"architectures": ["os.system"]}, "names no architecture"),
    ({"n_embd": 1 << 19, "n_layer": 16}, "over the memory budget"),  # 5·10¹³ parameters: refused, not allocated
])
def test_what_cannot_open_says_why_in_one_line(changes: dict[str, Any], says: str, checkpoints: dict[str, Path],
                                              tmp_path: Path) -> None:
    folder = _copy(checkpoints["gpt2"], tmp_path / "bad", **changes)
    with pytest.raises(ModelFormatError) as info:
        open_model(folder)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_a_folder_without_weights_or_with_broken_json_says_so(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy(checkpoints["gpt2"], tmp_path / "light")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="without weights"):
        open_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        open_model(folder)


def test_a_config_naming_no_architecture_opens_its_base_model(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    t = _transformers()
    t.BertModel.from_pretrained(checkpoints["bert"]).save_pretrained(tmp_path / "base")
    folder = _copy(tmp_path / "base", tmp_path / "older")
    config = json.loads((folder / "config.json").read_text())
    del config["architectures"]
    (folder / "config.json").write_text(json.dumps(config))
    model = open_model(folder)
    assert model.description.startswith("BertModel from older") and model.loss is None  # hidden states: no loss
    assert not model.warnings or not any("not in the checkpoint" in w for w in model.warnings)


def test_weights_missing_from_the_checkpoint_are_named(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """A base model's weights under a classifier's architecture: the classifier head keeps its initial values."""
    t = _transformers()
    base = t.BertModel.from_pretrained(checkpoints["bert"])
    folder = tmp_path / "base"
    base.save_pretrained(folder)
    _copy(folder, tmp_path / "as_classifier", architectures=["BertForSequenceClassification"], num_labels=3)
    model = open_model(tmp_path / "as_classifier")
    assert any("not in the checkpoint" in w and "classifier." in w for w in model.warnings), model.warnings


def test_the_command_line_opens_a_checkpoint_folder(checkpoints: dict[str, Path]) -> None:
    """As a user runs it: a fresh process, where torchvision (a CUDA build beside a CPU torch on this machine) may
    fail to import; transformers' text models must open all the same."""
    exe = Path(sys.executable).with_name("propscope")
    done = subprocess.run([str(exe), "inspect", str(checkpoints["gpt2"])], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
    assert "GPT2LMHeadModel from gpt2" in done.stdout and "input_ids" in done.stdout


def test_the_app_opens_a_checkpoint_by_its_config(qtbot: Any, checkpoints: dict[str, Path]) -> None:
    from propscope.gui.main_window import MainWindow

    window = MainWindow(open_session("xor"))
    qtbot.addWidget(window)
    job = window.open_path(checkpoints["vit"] / "config.json")
    assert job is not None
    with qtbot.waitSignal(window.bridge.sessionChanged, timeout=120_000):
        pass
    assert window.bridge.session.name == "vit"
    assert "vit" in window.windowTitle()


def test_a_pickled_checkpoint_is_read_by_the_restricted_unpickler_first(checkpoints: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    """An older checkpoint's pytorch_model.bin (a torch.save'd state dict) opens; one whose pickle calls a function
    is refused by propscope's unpickler before torch.load sees it."""
    import pickle

    import torch

    t = _transformers()
    model = t.BertForSequenceClassification.from_pretrained(checkpoints["bert"])
    folder = _copy(checkpoints["bert"], tmp_path / "pickled")
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    opened = open_model(folder)
    assert len(opened.graph.ops) == len(open_model(checkpoints["bert"]).graph.ops)

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(ModelFormatError):
        open_model(folder)
    assert not (tmp_path / "pwned").exists()

"""Opening a transformers checkpoint folder (config.json + model.safetensors, as save_pretrained writes it).

Tiny random checkpoints are saved with `save_pretrained`, opened by folder or by config.json, and stepped to
autograd's loss and gradients (float64) on both backends: GPT-2 (tied LM head), BERT and ViT classifiers, BART and
T5 (encoder-decoders), Llama, BERT token classification, Whisper (a spectrogram and decoder ids), wav2vec2 (a
waveform), CLIPModel (text and images, scored against each other) and SegFormer (a segmentation map, no default
loss); the app names the session after the folder. Refused with one line: an architecture shipped as code
(auto_map), a class transformers lacks, a folder without weights, a config too large for the memory budget (refused
before anything is allocated), invalid JSON. Weights missing from the checkpoint are named in a warning.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import zoo

from propscope.cli import main
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


def _tiny(config: str, arch: str, **settings: Any) -> Any:
    def build() -> Any:
        t = _transformers()
        return getattr(t, arch)(getattr(t, config)(**settings))

    return build


_TEXT = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
             max_position_embeddings=16)


def _clip() -> Any:
    """CLIPModel: text and images in, each image scored against each text (logits_per_image) out."""
    t = _transformers()
    return t.CLIPModel(t.CLIPConfig(
        text_config=dict(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=2,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=16, patch_size=8),
        projection_dim=8))


BUILDERS = {
    "gpt2": _gpt2, "bert": _bert, "vit": _vit, "bart": _bart,
    # rotary positions, RMSNorm, a gated MLP, 2 query heads sharing one key/value head
    "llama": _tiny("LlamaConfig", "LlamaForCausalLM", **_TEXT, num_key_value_heads=1),
    "t5": _tiny("T5Config", "T5ForConditionalGeneration", vocab_size=40, d_model=16, d_kv=8, d_ff=32, num_layers=2,
                num_heads=2, relative_attention_num_buckets=8, relative_attention_max_distance=16,
                decoder_start_token_id=0),
    "bert_tokens": _tiny("BertConfig", "BertForTokenClassification", **_TEXT, num_labels=5),  # one row per token
    "whisper": _tiny("WhisperConfig", "WhisperForConditionalGeneration", vocab_size=40, num_mel_bins=8,
                     encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                     encoder_ffn_dim=32, decoder_ffn_dim=32, d_model=16, max_source_positions=8,
                     max_target_positions=16, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                     decoder_start_token_id=1, suppress_tokens=None, begin_suppress_tokens=None),
    "wav2vec2": _tiny("Wav2Vec2Config", "Wav2Vec2ForCTC", vocab_size=12, hidden_size=16, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 2),
                      conv_kernel=(10, 3), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2),
    "clip": _clip,
    "segformer": _tiny("SegformerConfig", "SegformerForSemanticSegmentation", image_size=32, num_encoder_blocks=2,
                       depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], num_attention_heads=[1, 2],
                       patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=3),
}
LOSSES = {"segformer": "mse"}  # a segmentation map (N, C, H, W) has no default loss
INPUTS = {  # the sample inputs built from the forward's signature and the config (nested configs too)
    "whisper": [("input_features", (1, 8, 16)), ("decoder_input_ids", (1, 4))],  # 2 frames per source position
    "wav2vec2": [("input_values", (1, 90))],  # the samples the convolutions turn into 8 frames
    "clip": [("input_ids", (2, 8)), ("pixel_values", (2, 3, 16, 16))],  # two of each: a contrastive loss
}


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


class _Scores:
    """CLIPModel's image-to-text scores as the logits zoo._Float64 reads (propscope's output for it)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, **inputs: Any) -> Any:
        return SimpleNamespace(logits=self.model(**inputs).logits_per_image)


def _reference(folder: Path, batch: dict[str, np.ndarray],
               loss_name: str) -> tuple[float, dict[tuple[str, ...], np.ndarray]]:
    """torch autograd on the checkpoint loaded by transformers itself, in float64: the loss, and each parameter's
    gradient keyed by all of its names."""
    import torch

    t = _transformers()
    cls = getattr(t, json.loads((folder / "config.json").read_text())["architectures"][0])
    model = cls.from_pretrained(folder, attn_implementation="eager").double().eval()
    inputs = {k: torch.from_numpy(v).long() if k.endswith("_ids") else torch.from_numpy(v).double()
              for k, v in batch.items() if k != "y"}
    # the steps transformers keeps in float32 whatever the model's dtype (ViT's softmax) in float64, as propscope's
    # float64 session computes them; token logits one row per token, a segmentation map as it is
    scores = _Scores(model) if cls.__name__ == "CLIPModel" else model
    y = torch.from_numpy(batch["y"])
    if loss_name == "cross_entropy":
        logits = zoo._Float64.wrap(scores, tuple(inputs), flatten=True)(*inputs.values())
        loss = torch.nn.functional.cross_entropy(logits, y.long())
    else:
        logits = zoo._Float64.wrap(scores, tuple(inputs), flatten=False)(*inputs.values())
        loss = torch.nn.functional.mse_loss(logits, y.double())
    loss.backward()
    groups: dict[int, list[str]] = {}  # a tied weight (GPT-2's head and token embedding) under each of its names
    for n, p in model.named_parameters(remove_duplicate=False):
        if p.grad is not None:
            groups.setdefault(id(p), []).append(n)
    params = dict(model.named_parameters(remove_duplicate=False))
    return float(loss.detach()), {tuple(names): params[names[0]].grad.numpy() for names in groups.values()}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_a_checkpoint_steps_to_autograds_gradients(name: str, backend: str, checkpoints: dict[str, Path]) -> None:
    folder = checkpoints[name]
    loss_name = LOSSES.get(name, "cross_entropy")
    s = open_session(folder, backend=backend, dtype="float64", loss=LOSSES.get(name))
    assert s.name == name and s.loss_name == loss_name
    assert s.model.loss == (None if name in LOSSES else "cross_entropy")
    if name in INPUTS:
        assert [(n.name, tuple(n.shape)) for n in s.model.graph.inputs] == INPUTS[name]
    assert not s.model.unsupported_ops, s.model.warnings
    s.run_to_end()
    loss, grads = _reference(folder, {k: np.asarray(v) for k, v in s.batch.items()}, loss_name)
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


def test_weights_that_fit_none_of_the_architecture_are_refused(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """GPT-2's weights under a config naming BERT: transformers would build BERT with every weight random, and warn;
    nobody opening that folder wants those numbers."""
    bert = json.loads((checkpoints["bert"] / "config.json").read_text())
    folder = _copy(checkpoints["gpt2"], tmp_path / "mixed")
    (folder / "config.json").write_text(json.dumps(bert))
    with pytest.raises(ModelFormatError, match=r"none of BertForSequenceClassification's .* parameters is in the "
                                               r"checkpoint's weights"):
        open_model(folder)


def test_damaged_or_mismatched_weights_are_said_by_file_and_tensor(tmp_path: Path) -> None:
    """transformers' own report of a failed load goes to its log ("For details look at the above report!"): the
    error names the truncated shard, or the tensors whose shapes config.json does not make."""
    model = _gpt2()
    folder = tmp_path / "sharded"
    model.save_pretrained(folder, max_shard_size="20KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "n_embd": 32}))
    said = r"28 tensor\(s\) do not fit the config: transformer\.h\.0\.attn\.c_attn\.bias is \(48,\) in model-00001"
    with pytest.raises(ModelFormatError, match=said + r"-of-\d+\.safetensors, \(96,\) for config\.json"):
        open_model(folder)
    (folder / "config.json").write_text(json.dumps(config))
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[:len(data) - 100])
    with pytest.raises(ModelFormatError, match=rf"{shards[1].name}: tensor '\S+' claims bytes .* the file may be "
                                               "truncated"):
        open_model(folder)


def test_tied_weights_are_named_together_and_the_logits_by_their_name(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "gpt2"
    _gpt2().save_pretrained(folder)
    assert "logits" in [o.meta.get("returns") for o in open_model(folder).graph.outputs]
    assert main(["grads", str(folder)]) == 0
    out = capsys.readouterr().out
    tied = ("transformer.wte.weight is also lm_head.weight", "lm_head.weight is also transformer.wte.weight")
    assert any(f"{pair} (tied: one tensor, its gradient summed over every use)" in out for pair in tied)

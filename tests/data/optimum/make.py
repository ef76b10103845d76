"""Makes the optimum exports tests/test_onnx_optimum.py opens, and the torch autograd numbers they are checked against.

Run by hand, in a side environment with optimum-onnx (it pins transformers<4.58; the project's .venv has 5.x):

    pip install --target SIDE optimum-onnx==0.1.0 'optimum~=2.1.0' 'transformers==4.57.*' 'huggingface_hub<1.0' \\
        'tokenizers<0.23' accelerate --no-deps
    PYTHONPATH=SIDE .venv/bin/python tests/data/optimum/make.py

Tiny random models (seeded; every weight nudged off its initial value, so that no two parameters are equal and no
exporter ties them) are exported as `optimum-cli export onnx` does (`onnx_export_from_model`), in float64 so that
the file's constants carry no float32 rounding and propscope's numbers can be held to 1e-9 of autograd's (a float32
export differs from autograd by its float32 constants, the GELU's 0.044715, the attention scale: 1e-8..1e-7). The
merged decoder is made as transformers.js folders were (`decoder_model.onnx` and `decoder_with_past_model.onnx`
merged by `optimum.onnx.merge_decoders`). `model_quantized.onnx` is onnxruntime's `quantize_dynamic` of the
float32 export, as `optimum-cli onnxruntime quantize --avx2` makes it, and `model_q4.onnx` its 4-bit
MatMulNBits (as transformers.js's q4 files); their numbers are onnxruntime's forward.
Each case's .npz holds the data, the target `y`, the loss, and autograd's loss, parameter gradients (`grad/NAME`,
every name of a tied one) and input gradients (`input_grad/NAME`), computed in float64 with transformers' float32
steps (rotary angles, RMSNorm) run in float64, as propscope's float64 session computes them.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FLOAT32: list = []  # optimum's own dtype mapping of its dummy inputs, before `setup` made fp32 float64
B, S = 2, 4


def setup() -> None:
    sys.path.insert(0, str(HERE.parents[2]))
    from propscope.graph.readers import _torchvision

    _torchvision.models()  # torchvision's C extension does not load on the CPU torch
    import optimum.utils.import_utils as iu

    iu._diffusers_available = False  # the .venv's diffusers wants a newer huggingface_hub
    import optimum.utils.input_generators as ig
    import torch

    pt, np_ = ig.DTYPE_MAPPER.pt.__func__, ig.DTYPE_MAPPER.np.__func__  # the dummy inputs in float64 too
    FLOAT32.extend([ig.DTYPE_MAPPER.pt, ig.DTYPE_MAPPER.np])
    ig.DTYPE_MAPPER.pt = classmethod(lambda cls, d: torch.float64 if d == "fp32" else pt(cls, d))
    ig.DTYPE_MAPPER.np = classmethod(lambda cls, d: np.float64 if d == "fp32" else np_(cls, d))
    logging.disable(logging.WARNING)


def jittered(model):
    import torch

    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def float64_mode():
    import torch
    from torch.overrides import TorchFunctionMode

    class Float64(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.Tensor.float:
                func, args = torch.Tensor.double, args[:1]
            args = tuple(torch.float64 if a is torch.float32 else a for a in args)
            kwargs = {k: torch.float64 if v is torch.float32 else v for k, v in (kwargs or {}).items()}
            return func(*args, **kwargs)

    return Float64()


def reference(model, data, y, loss_name, forward, out: Path) -> None:
    import torch

    model.zero_grad()
    t = {k: torch.from_numpy(v.copy()) for k, v in data.items()}
    for v in t.values():
        if v.is_floating_point():
            v.requires_grad_(True)
    with float64_mode():
        pred = forward(t)
    if loss_name == "cross_entropy":
        loss = torch.nn.functional.cross_entropy(pred.reshape(-1, pred.shape[-1]), torch.from_numpy(y).reshape(-1))
    else:
        loss = torch.nn.functional.mse_loss(pred, torch.from_numpy(y))
    loss.backward()
    arrays = {f"data/{k}": v for k, v in data.items()}
    arrays.update({"y": y, "loss_name": np.array(loss_name), "loss": np.array(float(loss))})
    arrays.update({f"grad/{n}": p.grad.numpy() for n, p in model.named_parameters(remove_duplicate=False)
                   if p.grad is not None})
    arrays.update({f"input_grad/{k}": v.grad.numpy() for k, v in t.items() if v.grad is not None})
    np.savez_compressed(out, **arrays)
    print(out.name, float(loss))


def tokens(vocab: int, n: int = B, s: int = S, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, vocab, (n, s))


def mask(n: int, s: int) -> np.ndarray:
    m = np.ones((n, s), dtype=np.int64)
    m[-1, -1] = 0  # one padded position
    return m


def pasts(names, shape_of, seed: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(shape_of(n)) for n in names}


def gpt2(tmp: Path) -> None:
    from optimum.exporters.onnx.convert import export, onnx_export_from_model
    from optimum.exporters.onnx.model_configs import GPT2OnnxConfig
    from optimum.onnx import merge_decoders
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.cache_utils import DynamicCache

    config = AutoConfig.for_model("gpt2", n_layer=2, n_embd=8, n_head=2, vocab_size=24, n_positions=16)
    model = jittered(AutoModelForCausalLM.from_config(config).double())
    out = HERE / "gpt2"
    out.mkdir(exist_ok=True)
    onnx_export_from_model(model, tmp / "gpt2", task="text-generation-with-past", do_validation=False)
    shutil.copy(tmp / "gpt2" / "model.onnx", out / "model.onnx")
    for name, past in (("decoder_model.onnx", False), ("decoder_with_past_model.onnx", True)):
        export(model, GPT2OnnxConfig(config, task="text-generation", use_past=True, use_past_in_inputs=past),
               tmp / name)
    merge_decoders(tmp / "decoder_model.onnx", tmp / "decoder_with_past_model.onnx",
                   save_path=out / "decoder_model_merged.onnx", strict=False)
    names = [f"past_key_values.{i}.{kv}" for i in range(2) for kv in ("key", "value")]
    y = np.random.default_rng(3).integers(0, 24, (B, S))
    for case, past, branch in (("with_past_0", 0, None), ("with_past_3", 3, None), ("merged_first", 0, False),
                               ("merged_next", 3, True)):
        data = {"input_ids": tokens(24), "attention_mask": mask(B, past + S),
                "position_ids": np.tile(np.arange(past, past + S), (B, 1)),
                **pasts(names, lambda n, p=past: (B, 2, p, 4))}
        if branch is not None:
            data["use_cache_branch"] = np.array([branch])

        def forward(t, branch=branch):
            cache = DynamicCache.from_legacy_cache(tuple((t[names[2 * i]], t[names[2 * i + 1]]) for i in range(2)))
            return model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], position_ids=t["position_ids"],
                         past_key_values=cache if branch is not False else None, use_cache=True).logits

        reference(model, data, y, "cross_entropy", forward, out / f"{case}.npz")


def bart(tmp: Path) -> None:
    """BART's decoder as `--no-post-process` leaves it (so do exports whose deduplication does not apply): the tied
    output layer a transposed copy of the token table, `onnx::MatMul_N`, beside `model.shared.weight`."""
    from optimum.exporters.onnx.convert import onnx_export_from_model
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    config = AutoConfig.for_model("bart", d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                  decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16, vocab_size=24,
                                  max_position_embeddings=16)
    # eager attention: the SDPA path's mask is refused by the exporter in a float64 model
    model = jittered(AutoModelForSeq2SeqLM.from_config(config, attn_implementation="eager").double())
    out = HERE / "bart"
    out.mkdir(exist_ok=True)
    from optimum.exporters.onnx.base import OnnxConfig

    fix = OnnxConfig.fix_dynamic_axes  # runs the file on onnxruntime, which has no float64 Erf: names only
    OnnxConfig.fix_dynamic_axes = lambda *args, **kwargs: None
    try:
        onnx_export_from_model(model, tmp / "bart", task="text2text-generation", do_validation=False,
                               no_post_process=True)
    finally:
        OnnxConfig.fix_dynamic_axes = fix
    shutil.copy(tmp / "bart" / "decoder_model.onnx", out / "decoder_model.onnx")
    rng = np.random.default_rng(6)
    data = {"encoder_attention_mask": mask(B, 5), "input_ids": tokens(24, s=3, seed=5),
            "encoder_hidden_states": rng.standard_normal((B, 5, 8))}
    y = np.random.default_rng(3).integers(0, 24, (B, 3))

    def forward(t):
        return model(encoder_outputs=(t["encoder_hidden_states"],), attention_mask=t["encoder_attention_mask"],
                     decoder_input_ids=t["input_ids"]).logits

    reference(model, data, y, "cross_entropy", forward, out / "decoder.npz")


def t5(tmp: Path) -> None:
    from optimum.exporters.onnx.convert import onnx_export_from_model
    from transformers import AutoConfig, AutoModelForSeq2SeqLM
    from transformers.cache_utils import EncoderDecoderCache

    config = AutoConfig.for_model("t5", d_model=8, d_kv=4, d_ff=16, num_layers=1, num_decoder_layers=1, num_heads=2,
                                  vocab_size=24, relative_attention_num_buckets=4, decoder_start_token_id=0)
    model = jittered(AutoModelForSeq2SeqLM.from_config(config).double())
    out = HERE / "t5"
    out.mkdir(exist_ok=True)
    onnx_export_from_model(model, tmp / "t5", task="text2text-generation-with-past", do_validation=False)
    shutil.copy(tmp / "t5" / "decoder_model_merged.onnx", out / "decoder_model_merged.onnx")
    names = [f"past_key_values.0.{p}.{kv}" for p in ("decoder", "encoder") for kv in ("key", "value")]
    for case, past, branch, length in (("merged_first", 0, False, 3), ("merged_next", 2, True, 1)):
        rng = np.random.default_rng(6)
        data = {"encoder_attention_mask": mask(B, 5), "input_ids": tokens(24, s=length, seed=5),
                "encoder_hidden_states": rng.standard_normal((B, 5, 8)),
                **pasts(names, lambda n, p=past: (B, 2, p if ".decoder." in n else 5, 4)),
                "use_cache_branch": np.array([branch])}
        y = np.random.default_rng(3).integers(0, 24, (B, length))

        def forward(t, branch=branch):
            cache = EncoderDecoderCache.from_legacy_cache((tuple(t[n] for n in names),)) if branch else None
            return model(encoder_outputs=(t["encoder_hidden_states"],), attention_mask=t["encoder_attention_mask"],
                         decoder_input_ids=t["input_ids"], past_key_values=cache, use_cache=True).logits

        reference(model, data, y, "cross_entropy", forward, out / f"{case}.npz")


def quantized(tmp: Path) -> None:
    """onnxruntime's dynamic quantization of GPT-2's float32 export (MatMulInteger, DynamicQuantizeLinear), its
    logits by onnxruntime with graph optimizations off (the file's ops as written)."""
    import onnxruntime as ort
    import optimum.utils.input_generators as ig
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from optimum.exporters.onnx.convert import onnx_export_from_model
    from transformers import AutoConfig, AutoModelForCausalLM

    ig.DTYPE_MAPPER.pt, ig.DTYPE_MAPPER.np = FLOAT32  # float32 again
    config = AutoConfig.for_model("gpt2", n_layer=1, n_embd=8, n_head=2, vocab_size=24, n_positions=16)
    model = jittered(AutoModelForCausalLM.from_config(config))
    onnx_export_from_model(model, tmp / "gpt2_32", task="text-generation-with-past", do_validation=False)
    out = HERE / "gpt2_int8"
    out.mkdir(exist_ok=True)
    quantize_dynamic(tmp / "gpt2_32" / "model.onnx", out / "model_quantized.onnx", weight_type=QuantType.QUInt8)
    data = {"input_ids": tokens(24), "attention_mask": mask(B, 2 + S),
            "position_ids": np.tile(np.arange(2, 2 + S), (B, 1)),
            **pasts([f"past_key_values.0.{kv}" for kv in ("key", "value")], lambda n: (B, 2, 2, 4))}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(out / "model_quantized.onnx"), options)
    feeds = {i.name: data[i.name].astype(np.float32) if data[i.name].dtype.kind == "f" else data[i.name]
             for i in session.get_inputs()}
    logits = session.run(None, feeds)[0]
    np.savez_compressed(out / "onnxruntime.npz", **{f"data/{k}": v.astype(np.float32) if v.dtype.kind == "f" else v
                                                   for k, v in data.items()}, logits=logits)


def q4(tmp: Path) -> None:
    """onnxruntime's 4-bit weights (com.microsoft.MatMulNBits, as transformers.js's `model_q4.onnx`) of BERT's
    float32 export, symmetric (no zero points) and not (packed zero points), with onnxruntime's logits."""
    import onnx
    import onnxruntime as ort
    import optimum.utils.input_generators as ig
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    from optimum.exporters.onnx.convert import onnx_export_from_model
    from transformers import AutoConfig, AutoModelForSequenceClassification

    ig.DTYPE_MAPPER.pt, ig.DTYPE_MAPPER.np = FLOAT32
    config = AutoConfig.for_model("bert", hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, vocab_size=24, max_position_embeddings=16, num_labels=3)
    model = jittered(AutoModelForSequenceClassification.from_config(config))
    onnx_export_from_model(model, tmp / "bert_32", task="text-classification", do_validation=False)
    out = HERE / "bert_q4"
    out.mkdir(exist_ok=True)
    data = {"input_ids": tokens(24), "attention_mask": mask(B, S), "token_type_ids": np.array([[0, 0, 1, 1]] * B)}
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    logits = {}
    for name, symmetric in (("model_q4.onnx", True), ("model_q4_zero_points.onnx", False)):
        quantizer = MatMulNBitsQuantizer(onnx.load(tmp / "bert_32" / "model.onnx"), block_size=16,
                                         is_symmetric=symmetric)
        quantizer.process()
        quantizer.model.save_model_to_file(str(out / name))
        logits[name] = ort.InferenceSession(str(out / name), options).run(None, data)[0]
    np.savez_compressed(out / "onnxruntime.npz", **{f"data/{k}": v for k, v in data.items()},
                        **{f"logits/{k}": v for k, v in logits.items()})


if __name__ == "__main__":
    setup()
    with tempfile.TemporaryDirectory() as folder:
        for make in (gpt2, bart, t5, quantized, q4):
            if len(sys.argv) < 2 or make.__name__ in sys.argv[1:]:
                make(Path(folder))

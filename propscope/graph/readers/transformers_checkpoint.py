"""A transformers checkpoint folder (`config.json` beside `model.safetensors`, as `save_pretrained` writes it and the
Hugging Face hub serves it): the architecture the config names, built by the installed transformers library, filled
with the folder's weights by transformers' own loading (its renames of older checkpoints' keys, shards, tied
weights), exported with torch.export and read as any `.pt2`.

Nothing in the folder is run: the config is JSON, the code is transformers' own, picked by the class name the config
gives (`architectures`), which must be one transformers exports; a config whose architecture ships with the
checkpoint (`auto_map`, transformers' `trust_remote_code`) is refused. Weights are safetensors, or a
`pytorch_model.bin` that propscope's restricted unpickler reads first (refusing every global but tensor rebuilds)
before transformers' weights-only `torch.load` does. transformers loads with `local_files_only`: nothing is fetched.
The model's size is counted against the open's memory budget before any of it is allocated.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ModelFormatError
from ..model import FINITE_CLASSES, Model, image_fit, image_normalization
from ..ops.shapes import fmt
from . import _torchvision, decisions, state_dict, torch_export
from ._build import charge_built, checkpoint_files, file_size, missing_weights_warning, read_json
from ._failure import first_line, quiet_library, quiet_torch
from .sizes import read_again_at, reading_at, requested_shapes, sized

SUFFIXES = ("config.json",)  # the Open dialog's pattern: a checkpoint is opened by its config (or its folder)
MAX_CONFIG_BYTES = 1 << 20
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENS = 8  # the sample sequence a text model is exported with (the graph is the same for any length)
_CLASS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,99}$")
_TYPE_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")  # model types: gpt2, xlm-roberta


def folder_of(path: Path) -> Path | None:
    """The checkpoint folder `path` names (the folder itself, or its config.json), else None."""
    if path.is_dir():
        return path if (path / "config.json").is_file() else None
    return path.parent if path.name == "config.json" and path.is_file() else None


def match(path: Path) -> bool:
    return folder_of(path) is not None


def name_of(path: Path) -> str:
    """What a checkpoint is called in the app: its folder's name (`gpt2`, not `config`)."""
    folder = folder_of(path)
    return (folder or path).resolve().name or "checkpoint"


def read_config(folder: Path) -> dict[str, Any]:
    where = str(folder / "config.json")
    config = read_json(folder / "config.json", MAX_CONFIG_BYTES, "more than a model config holds")
    if not isinstance(config, dict):
        raise ModelFormatError(f"{where}: not a model config (a JSON object)")
    if config.get("auto_map"):
        raise ModelFormatError(f"{where}: the architecture is code shipped with the checkpoint (auto_map, "
                               "transformers' trust_remote_code); propscope runs no code from a file")
    names = config.get("architectures")
    if names is not None and (not isinstance(names, list) or not names or not isinstance(names[0], str)
                              or not _CLASS_NAME.match(names[0])):
        raise ModelFormatError(f"{where}: names no architecture (\"architectures\": [\"GPT2LMHeadModel\"], as "
                               "save_pretrained writes it)")
    if not isinstance(config.get("model_type"), str) or not _TYPE_NAME.match(config["model_type"]):
        raise ModelFormatError(f"{where}: has no model_type")
    return config


def weight_files(folder: Path) -> list[Path]:
    """The files holding the weights: one file, or the shards an index lists (all inside the folder)."""
    return checkpoint_files(folder, WEIGHTS, "a transformers checkpoint")


def _libraries(where: str) -> tuple[Any, Any]:
    try:
        import torch

        _torchvision.models()  # transformers imports torchvision where installed: one whose C extension fails too
        import transformers
    except ImportError as exc:
        raise ModelFormatError(f"{where}: opening a transformers checkpoint needs torch and transformers "
                               f"(pip install torch transformers): {exc}") from None
    return torch, transformers


def _setting(config: Any, name: str, decoder: bool = False) -> Any:
    """A config value, from the config itself or else from its first nested config that has it (CLIP's vocab_size
    in text_config, its image_size in vision_config; a vision encoder-decoder's decoder vocabulary, looked for in
    the decoder's config first for decoder ids)."""
    value = getattr(config, name, None)
    if value is not None:
        return value
    for sub in (*(("decoder",) if decoder else ()), *dict(getattr(config, "sub_configs", None) or {}),
                "text_config", "vision_config", "audio_config", "encoder", "decoder"):
        value = getattr(getattr(config, sub, None), name, None)
        if value is not None:
            return value
    return None


def _token_ids(torch: Any, config: Any, where: str, generator: Any, batch: int, decoder: bool = False) -> Any:
    vocab = int(_setting(config, "vocab_size", decoder) or 0)
    if vocab < 1:
        raise ModelFormatError(f"{where}: a text model without a vocab_size")
    limit = _positions(config, decoder)
    length = min(TOKENS, limit) if limit else TOKENS
    return torch.randint(0, vocab, (batch, max(length // 2, 1) if decoder else length), generator=generator)


def _positions(config: Any, decoder: bool = False) -> int | None:
    """How many positions a text model (or its decoder) has, where its config says (None: no limit said)."""
    names = ("max_target_positions", "max_position_embeddings") if decoder else ("max_position_embeddings",
                                                                                   "n_positions")
    return next((int(v) for v in (_setting(config, n, decoder) for n in names) if isinstance(v, int) and v > 0), None)


def _image(torch: Any, config: Any, generator: Any, batch: int) -> Any:
    size = _setting(config, "image_size")
    size = tuple(size) if isinstance(size, list | tuple) else (size, size) if isinstance(size, int) else (224, 224)
    channels = int(_setting(config, "num_channels") or 3)
    return torch.randn((batch, channels, *size), generator=generator)


def _audio_features(torch: Any, config: Any, where: str, generator: Any, batch: int) -> Any:
    """A log-mel spectrogram (batch, mel bins, frames); Whisper's encoder takes exactly 2 frames per position."""
    mels = _setting(config, "num_mel_bins")
    if not isinstance(mels, int) or mels < 1:
        raise ModelFormatError(f"{where}: audio features without num_mel_bins in the config")
    positions = _setting(config, "max_source_positions")
    frames = 2 * int(positions) if isinstance(positions, int) and positions > 0 else 2 * TOKENS
    return torch.randn((batch, mels, frames), generator=generator)


def _waveform(torch: Any, config: Any, generator: Any, batch: int) -> Any:
    """Raw audio (batch, samples): as many samples as the feature encoder's convolutions turn into TOKENS frames."""
    kernels, strides = _setting(config, "conv_kernel"), _setting(config, "conv_stride")
    samples = 400 * TOKENS  # 25 ms of 16 kHz audio a frame, where the config does not describe the convolutions
    if isinstance(kernels, list | tuple) and isinstance(strides, list | tuple) and len(kernels) == len(strides):
        samples = TOKENS
        for k, s in zip(reversed(kernels), reversed(strides), strict=True):
            samples = (samples - 1) * int(s) + int(k)
    return torch.randn((batch, samples), generator=generator)


_INPUT_KINDS = ("input_ids", "pixel_values", "input_features", "input_values")  # what a sample can be built for


def _sample_inputs(torch: Any, model: Any, config: Any, where: str, batch: int = 1,
                   companions: bool = False) -> dict[str, Any]:
    """What the model is exported with: its main input (token ids, an image, a spectrogram or a waveform), decoder
    ids for an encoder-decoder, and with `companions` every other kind its forward takes (CLIPModel's images
    beside its text)."""
    generator = torch.Generator().manual_seed(0)
    main = getattr(model, "main_input_name", "input_ids")
    if main not in _INPUT_KINDS:
        raise ModelFormatError(f"{where}: {type(model).__name__} takes {main}; propscope builds sample inputs for "
                               "token ids, images and audio only (export it yourself with torch.export.save)")
    takes = set(inspect.signature(model.forward).parameters)
    names = [main, *(k for k in _INPUT_KINDS if companions and k != main and k in takes)]
    inputs: dict[str, Any] = {}
    for name in names:
        if name == "input_ids":
            inputs[name] = _token_ids(torch, config, where, generator, batch)
        elif name == "pixel_values":
            inputs[name] = _image(torch, config, generator, batch)
        elif name == "input_features":
            inputs[name] = _audio_features(torch, config, where, generator, batch)
        else:
            inputs[name] = _waveform(torch, config, generator, batch)
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in takes:
        inputs["decoder_input_ids"] = _token_ids(torch, config, where, generator, batch, decoder=True)
    if main == "input_ids" and "pixel_values" in takes and "pixel_values" not in inputs:
        if "image_grid_thw" in takes:
            if _with_grid(torch, model, config, inputs, generator, takes):
                return inputs  # the grid's values decide its path (decisions.py): traced on this sample only
        else:
            _with_image(torch, model, config, inputs, generator)
    return _at_requested_sizes(torch, inputs, generator, config, where)


def image_token(config: Any) -> int | None:
    """The id a vision-language model's ids hold where an image's features go (LLaVA's `image_token_id`, older
    configs' `image_token_index`), else None."""
    for name in ("image_token_id", "image_token_index"):
        value = _setting(config, name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _with_image(torch: Any, model: Any, config: Any, inputs: dict[str, Any], generator: Any) -> None:
    """A vision-language model's sample as its processor makes one: an image of the config's size, and in the ids
    as many image tokens as the vision tower gives features for it (counted by running the model's own
    `get_image_features`), after the first token. Left text-only where the model needs more than pixel_values to
    see an image (image_sizes, tiles, a patch grid): its text path is still a language model."""
    token, features = image_token(config), getattr(model, "get_image_features", None)
    ids = inputs.get("input_ids")
    if token is None or features is None or ids is None or not 0 <= token < _vocabulary(config):
        return
    pixels = _image(torch, config, generator, ids.shape[0])
    try:
        with torch.no_grad():
            out = features(pixel_values=pixels.to(next(model.parameters()).dtype))
    except Exception:  # it needs more than pixel_values to see an image
        return
    pooled = getattr(out, "pooler_output", out)
    pooled = list(pooled) if isinstance(pooled, list | tuple) else [pooled]
    width = _setting(config.get_text_config() if hasattr(config, "get_text_config") else config, "hidden_size")
    if not pooled or not all(hasattr(t, "numel") for t in pooled) or not isinstance(width, int) or width < 1:
        return
    count, left = divmod(sum(int(t.numel()) for t in pooled), width * ids.shape[0])
    if count < 1 or left:
        return
    inputs["input_ids"] = _placed(torch, ids.new_zeros((ids.shape[0], ids.shape[1] + count)), token, count, generator,
                                  _vocabulary(config))
    inputs["pixel_values"] = pixels


def _with_grid(torch: Any, model: Any, config: Any, inputs: dict[str, Any], generator: Any,
               takes: set[str]) -> bool:
    """Qwen2-VL's family (Qwen2.5-VL, Qwen3-VL, GLM-4V): an image is its patches flattened, a row per patch of
    `temporal_patch_size` frames, pixel_values (patches, channels · frames · patch²), and image_grid_thw the
    (frames, rows, columns) grid they came from, here 2·merge patches a side; the ids hold as many image tokens as
    the vision tower gives features (counted by running its `get_image_features`), and mm_token_type_ids marks
    them where the forward takes it. False (text alone) where the config does not describe such a tower."""
    token, features, vision = image_token(config), getattr(model, "get_image_features", None), \
        getattr(config, "vision_config", None)
    ids = inputs.get("input_ids")
    if token is None or features is None or vision is None or ids is None or not 0 <= token < _vocabulary(config):
        return False
    sizes: tuple[Any, ...] = (getattr(vision, "patch_size", None), getattr(vision, "spatial_merge_size", None),
             getattr(vision, "temporal_patch_size", 1) or 1,
             getattr(vision, "in_channels", None) or getattr(vision, "num_channels", None) or 3)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
        return False
    patch, merge, frames, channels = (int(v) for v in sizes)
    side, batch = 2 * merge, ids.shape[0]
    pixels = torch.randn((batch * side * side, channels * frames * patch * patch), generator=generator)
    grid = torch.tensor([[1, side, side]] * batch)
    try:
        with torch.no_grad():
            out = features(pixel_values=pixels.to(next(model.parameters()).dtype), image_grid_thw=grid)
    except Exception:  # a tower this does not describe
        return False
    pooled = getattr(out, "pooler_output", out)
    pooled = list(pooled) if isinstance(pooled, list | tuple) else [pooled]
    width = _setting(config.get_text_config() if hasattr(config, "get_text_config") else config, "hidden_size")
    if not pooled or not all(hasattr(t, "numel") for t in pooled) or not isinstance(width, int) or width < 1:
        return False
    count, left = divmod(sum(int(t.numel()) for t in pooled), width * batch)
    if count < 1 or left:
        return False
    inputs["input_ids"] = _placed(torch, ids.new_zeros((batch, ids.shape[1] + count)), token, count, generator,
                                  _vocabulary(config))
    inputs["pixel_values"], inputs["image_grid_thw"] = pixels, grid
    if "mm_token_type_ids" in takes:
        inputs["mm_token_type_ids"] = (inputs["input_ids"] == token).long()
    return True


def _vocabulary(config: Any) -> int:
    return int(_setting(config, "vocab_size") or 0)


def _placed(torch: Any, ids: Any, token: int, count: int, generator: Any, vocab: int) -> Any:
    """Token ids of `ids`' shape: `count` image tokens after the first, the rest text drawn from the vocabulary
    without the image token."""
    drawn = torch.randint(0, max(vocab - 1, 1), tuple(ids.shape), generator=generator, dtype=ids.dtype)
    drawn = drawn + (drawn >= token).to(drawn.dtype)  # skip the image token's id
    drawn[:, 1:1 + count] = token
    return drawn


# the sizes of each sample input that the data may set (`SizedModel`): the batch always, a text's length, an image's
# height and width, an audio clip's length. A model that cannot take a size (a ViT's position embeddings are made for
# one image size) is refused in one line naming the size it takes (`_size_refusal`). A spectrogram's frames stay:
# Whisper's encoder takes exactly twice its positions.
RESIZABLE = {"input_ids": ("batch", "tokens"), "decoder_input_ids": ("batch", "decoder_tokens"),
             "pixel_values": ("batch", None, "height", "width"), "input_features": ("batch", None, None),
             "input_values": ("batch", "samples")}


def _at_requested_sizes(torch: Any, inputs: dict[str, Any], generator: Any, config: Any,
                        where: str) -> dict[str, Any]:
    """The sample inputs at the data's sizes where they were asked for (`reading_at`): the data's batch for every
    input, and the sizes `RESIZABLE` names (a text's length, an image's size, an audio clip's length); the values are
    drawn again (they only trace the model: the data replaces them). Where the data gives every input, each keeps
    its own leading size: OWL-ViT's rows of input_ids are its text queries, not the images' batch."""
    wanted = requested_shapes()
    batches = {shape[0] for name, shape in wanted.items() if name in inputs and shape}
    own_rows = len(batches) > 1 and all(len(wanted.get(name, ())) == value.dim() for name, value in inputs.items())
    if not wanted or (len(batches) > 1 and not own_rows):
        return inputs
    if 0 in batches:
        raise ModelFormatError(f"{where}: the data holds no samples")
    for name in ("input_ids", "decoder_input_ids"):
        asked, limit = wanted.get(name), _positions(config, decoder=name == "decoder_input_ids")
        if name in inputs and asked is not None and len(asked) == 2 and limit is not None and asked[1] > limit:
            raise ModelFormatError(f"{where}: the data's {name} hold {asked[1]} tokens a row; the model has "
                                   f"{limit} positions")
    out = {}
    for name, value in inputs.items():
        shape = list(value.shape)
        if batches:
            shape[0] = wanted[name][0] if own_rows else next(iter(batches))
        asked = wanted.get(name)
        if asked is not None and len(asked) == len(shape):
            shape = [a if axis is not None else s for a, s, axis in zip(asked, shape, RESIZABLE[name], strict=True)]
        if value.dtype.is_floating_point:
            out[name] = torch.randn(shape, generator=generator, dtype=value.dtype)
        else:  # ids: within the values the model's own sample used
            out[name] = torch.randint(0, int(value.max()) + 1, shape, generator=generator, dtype=value.dtype)
    token = image_token(config)
    if "pixel_values" in inputs and token is not None and "input_ids" in inputs:  # the image's tokens, as many again
        count = int((inputs["input_ids"][0] == token).sum())
        if count and out["input_ids"].shape[1] <= count:
            raise ModelFormatError(f"{where}: the data's input_ids hold {out['input_ids'].shape[1]} tokens a row; "
                                   f"an image takes {count} of them, and the text at least one")
        if count:
            out["input_ids"] = _placed(torch, out["input_ids"], token, count, generator, _vocabulary(config))
    return out


_OUTPUTS = ("logits", "logits_per_image")  # scores a classification loss applies to, in the order looked for


def _run_sample(torch: Any, model: Any, config: Any, where: str) -> tuple[dict[str, Any], Any]:
    """The sample inputs the model is exported with, tried on it first, and which of its class scores are not −∞
    (see `_tried_sample`); where the data's sizes are what the model cannot take, refused in one line naming the size
    it takes."""
    try:
        return _tried_sample(torch, model, config, where)
    except ModelFormatError:
        raise
    except Exception as exc:
        refusal = _size_refusal(torch, model, config, where, exc)
        if refusal is None:
            raise
        raise refusal from None


_SIZE_WORDS = {"pixel_values": "images", "input_values": "audio clips"}


def _size_refusal(torch: Any, model: Any, config: Any, where: str, exc: Exception) -> ModelFormatError | None:
    """Why the model failed on a sample at the data's sizes, where those sizes are the reason: it runs on its own
    sample, and the data asked an image or audio size other than that. None where the failure is another one."""
    wanted = requested_shapes()
    with reading_at(None):
        try:
            own, _ = _tried_sample(torch, model, config, where)
        except Exception:  # it fails at its own sizes too: not the data's sizes
            return None
    changed = []
    for name, shape in wanted.items():
        if name in _SIZE_WORDS and name in own and len(shape) == own[name].dim():
            axes = 2 if name == "pixel_values" else 1  # an image's height and width, a clip's length
            takes, asked = tuple(own[name].shape[-axes:]), tuple(shape[-axes:])
            if takes != asked:
                changed.append((name, takes, asked))
    if not changed:
        return None
    name, takes, asked = changed[0]
    fixed = "interpolate_pos_encoding" in inspect.signature(model.forward).parameters
    why = "its position embeddings are made for that size" if fixed else first_line(exc)
    return ModelFormatError(f"{where}: {type(model).__name__} takes {_SIZE_WORDS[name]} of {_size_text(takes)}, not "
                            f"the data's {_size_text(asked)} ({why})")


def _size_text(size: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in size) if len(size) > 1 else f"{size[0]} samples"


def _tried_sample(torch: Any, model: Any, config: Any, where: str) -> tuple[dict[str, Any], Any]:
    """The sample inputs the model is exported with, tried on it first. A model that needs more than its main input
    (CLIPModel: text and images) gets every input kind its forward takes; one that scores each image against each
    text gets two of each, so that its contrastive loss is not a sum over one pair. Second, where the scores it gave
    on that sample hold −∞ (classes masked: Grounding DINO's past the text), which are finite, a row per query (the
    rows `scores_only` gives), as a NumPy array; else None."""
    sample = _sample_inputs(torch, model, config, where)
    with torch.no_grad():
        try:
            out = model(**sample)
        except Exception:
            wider = _sample_inputs(torch, model, config, where, companions=True)
            if len(wider) == len(sample):
                raise
            sample, out = wider, model(**wider)
        if getattr(out, "logits_per_image", None) is not None and getattr(out, "logits", None) is None:
            sample = _sample_inputs(torch, model, config, where, batch=2, companions=len(sample) > 1)
        elif _one_query(out, sample) and "input_ids" not in requested_shapes():
            # OWL-ViT: each image region scored against each text query, a class each (the data's rows are its own)
            ids = sample["input_ids"]
            sample["input_ids"] = _token_ids(torch, config, where, torch.Generator().manual_seed(1),
                                             2 * ids.shape[0])[:, :ids.shape[1]]
            return sample, None
        else:
            logits = getattr(out, "logits", None)
            if isinstance(logits, torch.Tensor) and logits.dim() in (2, 3) and bool(torch.isneginf(logits).any()):
                return sample, torch.isfinite(logits.reshape(-1, logits.shape[-1])).numpy()
    return sample, None


def _one_query(out: Any, sample: dict[str, Any]) -> bool:
    """Whether the model scored an image's regions against a single text query (OWL-ViT and OWLv2 take the queries
    as rows of input_ids): its logits have one class, and a cross-entropy over one class is 0 whatever the weights."""
    logits = getattr(out, "logits", None)
    return getattr(out, "pred_boxes", None) is not None and logits is not None and logits.dim() == 3 \
        and logits.shape[-1] == 1 and "input_ids" in sample and "pixel_values" in sample


@contextmanager
def scores_only(model: Any) -> Iterator[dict[str, str]]:
    """While open, `model` returns one tensor for torch.export to trace, and the dict it yields says which, once the
    model has run: "logits" (a classifier's (N, C) scores, CLIPModel's image-to-text scores, or a language model's
    token logits as one row per token, so a cross-entropy loss applies; a detector's boxes follow as a second output,
    `pred_boxes`), "map" (scores of more dimensions, a
    segmentation's (N, C, H, W): kept as they are, no default loss) or "hidden" (no scores: the outputs as the model
    gives them, a base model's hidden states first). The instance gets a subclass of its own class, named as it,
    whose forward picks and reshapes (a wrapping module would prefix every parameter's name); its class is given
    back on leaving."""
    cls = type(model)
    picked = {"gives": "hidden"}

    @functools.wraps(cls.forward)  # its signature: torch.export names the inputs after it (input_ids, not args_0)
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = cls.forward(self, *args, **kwargs)
        key = next((k for k in _OUTPUTS if getattr(out, k, None) is not None), None)
        if key is None:
            span = getattr(out, "start_logits", None), getattr(out, "end_logits", None)
            if all(t is not None for t in span):  # question answering: a class per position, for the start and end
                picked["gives"] = "logits"
                return {"start_logits": span[0], "end_logits": span[1]}  # the outputs' names (`output=`)
            return out
        scores = getattr(out, key)
        picked["gives"] = "logits" if scores.dim() <= 3 else "map"
        rows = scores.reshape(-1, scores.shape[-1]) if scores.dim() == 3 else scores  # a row per token
        boxes = getattr(out, "pred_boxes", None)
        if key == "logits" and boxes is not None and boxes.dim() == 3:
            # a detector (DETR, OWL-ViT, Grounding DINO): its boxes are a second output, for a loss of their own
            return {"logits": rows, "pred_boxes": boxes}
        return rows

    model.__class__ = type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__})
    try:
        yield picked
    finally:
        model.__class__ = cls


def open(path: str | Path) -> Model:
    path = Path(path)
    folder = folder_of(path)
    if folder is None:
        raise ModelFormatError(f"{path}: not a transformers checkpoint (no config.json)")
    where = str(path)  # as the user named it: the folder or its config.json
    config_json = read_config(folder)
    files = weight_files(folder)
    for file in files:
        file_size(file, str(file), state_dict.MAX_FILE_BYTES, "more than propscope will load")
        if file.suffix == ".bin":  # a pickle: propscope's restricted unpickler reads it first, refusing any global
            state_dict.read_tensors(file)  # but the tensor rebuilds, before torch.load (weights-only) sees it
    torch, transformers = _libraries(where)
    arch = _architecture(transformers, config_json, where)
    found = getattr(transformers, arch, None)
    if not isinstance(found, type) or not issubclass(found, transformers.PreTrainedModel):
        raise ModelFormatError(f"{where}: transformers {transformers.__version__} has no model class {arch!r}")
    cls: Any = found
    with quiet_library(transformers):
        config = _config(transformers, config_json, where)
        _charge_size(torch, cls, config, where)
        try:  # transformers' own loading: its renames of older checkpoints' keys, shards, tied weights
            model, info = cls.from_pretrained(folder, config=config, local_files_only=True, trust_remote_code=False,
                                              attn_implementation="eager", dtype=torch.float32,
                                              output_loading_info=True)
        except Exception as exc:  # a missing shard tensor, a wrong shape, a damaged file: transformers says which
            said = _weights_problem(torch, cls, config, files) or first_line(exc)  # its own report went to its log
            raise ModelFormatError(f"{where}: transformers could not load the weights into {arch} ({said})") from None
        model.eval()
        own = {name for name, _ in model.named_parameters()}
        if own and own <= set(info.get("missing_keys") or ()):  # random weights: not what the folder's user has
            raise ModelFormatError(f"{where}: none of {arch}'s {len(own)} parameters is in the checkpoint's weights "
                                   f"(e.g. {sorted(own)[0]}); do config.json and the weights belong together?")
        decided: list[decisions.Decision] = []
        try:
            sample, finite = _run_sample(torch, model, config, where)
            with torch.no_grad(), scores_only(model) as picked:
                from .torch_module import along_its_path, kept_attributes, sized_by_values

                try:
                    with quiet_torch(), kept_attributes(model):
                        program = torch.export.export(model, (), sample)
                except Exception as exc:  # a forward that decides by values (Qwen2-VL's image_grid_thw): its path
                    refusal = (f"{where}: {arch} could not be run and traced on a sample "
                               f"{getattr(model, 'main_input_name', 'input')} ({first_line(exc)})")
                    program, decided = along_its_path(torch, model, (), sample, refusal)
                else:
                    program, decided = sized_by_values(torch, model, (), sample, program)
        except ModelFormatError:
            raise
        except Exception as exc:  # torch.export's messages run to pages: their first line says which
            raise ModelFormatError(f"{where}: {arch} could not be run and traced on a sample "
                                   f"{getattr(model, 'main_input_name', 'input')} ({first_line(exc)})") from None
    opened = torch_export.open_program(program, name_of(path))  # the graph is named after the folder
    del program
    opened.aliases = torch_export.tied_names(model, opened)  # GPT-2's embedding is its head: answered to by both names
    del model
    opened.description = (f"{arch} from {folder.name} (transformers {transformers.__version__}, weights in "
                          f"{len(files)} file(s)), exported with torch.export: {len(opened.graph.ops)} ops")
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        opened.warnings = [*opened.warnings, missing_weights_warning(missing, arch, "random initial values")]
    opened.loss = "cross_entropy" if picked["gives"] == "logits" else None  # hidden states, a segmentation map: none
    if picked["gives"] == "logits" and len(opened.graph.outputs) == 1:  # shown by the name the model returns it under
        opened.graph.output.meta.setdefault("returns", "logits")
    opened.image_normalization, opened.image_fit = _image_normalization(folder), _image_fit(folder)
    scores = opened.graph.outputs[0]
    if opened.loss and finite is not None and tuple(finite.shape) == tuple(scores.shape):
        scores.meta[FINITE_CLASSES] = finite  # a target drawn for them takes a class each row leaves finite
    if decided:  # the path its sample takes: other data is refused (decisions.py), so no other sizes either
        decisions.mark(opened, decided)
        return opened
    # traced at the data's sizes when asked (a batch of 4, 32 tokens), and again at others (File ▸ Load data)
    resizable = {node.name: RESIZABLE[node.name] for node in opened.graph.inputs if node.name in RESIZABLE}
    return sized(opened, resizable, read_again_at(open, path))



def _processor_settings(folder: Path) -> dict[str, Any] | None:
    """The folder's image processor settings (`preprocessor_config.json`: what `AutoImageProcessor` reads), or None
    where it has none or they cannot be read (the weights open all the same: an image is then given as it is)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return None
    try:
        settings = read_json(path, MAX_CONFIG_BYTES, "more than an image processor's settings hold")
    except ModelFormatError:
        return None
    return settings if isinstance(settings, dict) else None


def _image_fit(folder: Path) -> tuple[str, float, str, str] | None:
    """How the folder's image processor brings an image to its size, where it cuts the centre out: resized on the
    shorter side to `size.shortest_edge` (CLIP, BiT, MobileNet...; ConvNeXt's to shortest_edge / crop_pct) or stretched
    to `size`'s height and width (DeiT), then `crop_size` from the centre; None where it only resizes (stretched)."""
    settings = _processor_settings(folder)
    if settings is None or not settings.get("do_resize", True):
        return None

    def side(value: Any, key: str) -> Any:
        return value.get(key) if isinstance(value, dict) else value

    size, crop = settings.get("size"), settings.get("crop_size")
    shortest = side(size, "shortest_edge")
    resampling = "bicubic" if settings.get("resample") == 3 else "bilinear"  # PIL's numbering, as transformers keeps
    if isinstance(settings.get("crop_pct"), float) and isinstance(shortest, int) and shortest < 384:
        return image_fit("crop", settings["crop_pct"], "preprocessor_config.json", resampling)  # ConvNeXt's
    if not settings.get("do_center_crop"):
        return None
    cut = side(crop, "height")
    if isinstance(crop, dict) and crop.get("width") != cut:
        return None
    if isinstance(shortest, int) and isinstance(cut, int) and 0 < cut <= shortest:
        return image_fit("crop", cut / shortest, "preprocessor_config.json", resampling)
    high = side(size, "height")
    if isinstance(size, dict) and size.get("width") == high and isinstance(high, int) and isinstance(cut, int) and \
            0 < cut <= high:
        return image_fit("squash-crop", cut / high, "preprocessor_config.json", resampling)
    return None


def _image_normalization(folder: Path) -> tuple[tuple[float, ...], tuple[float, ...], str] | None:
    """The mean and std the folder's image processor normalizes pixels / 255 by (`preprocessor_config.json`: what
    `AutoImageProcessor` reads), or None where it has none, does not normalize, or rescales otherwise."""
    settings = _processor_settings(folder)
    if settings is None or not settings.get("do_normalize", True):
        return None
    scale = settings.get("rescale_factor", 1 / 255)
    if not settings.get("do_rescale", True) or not isinstance(scale, float) or abs(scale * 255 - 1) > 1e-6:
        return None
    return image_normalization(settings.get("image_mean"), settings.get("image_std"), "preprocessor_config.json")


def _architecture(transformers: Any, config_json: dict[str, Any], where: str) -> str:
    """The class the config names; an older config that names none gets its model type's base model (BertModel)."""
    if config_json.get("architectures"):
        return str(config_json["architectures"][0])
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    base = MODEL_MAPPING_NAMES.get(config_json["model_type"])
    if not isinstance(base, str):
        raise ModelFormatError(f"{where}: names no architecture, and transformers {transformers.__version__} has no "
                               f"model for model_type {config_json['model_type']!r}")
    return base


def _config(transformers: Any, config_json: dict[str, Any], where: str) -> Any:
    """The config object, built from the JSON by the config class transformers has for its model_type."""
    skip = ("architectures", "model_type", "transformers_version")
    settings = {k: v for k, v in config_json.items() if k not in skip}
    try:
        config = transformers.AutoConfig.for_model(config_json["model_type"], **settings)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFormatError(f"{where}: transformers cannot read this config ({str(exc)[:160]})") from None
    config.use_cache = False  # one pass over the whole sequence: no key/value cache to return
    config._attn_implementation = "eager"  # attention as its products and softmax, to step through
    return config


def _weights_problem(torch: Any, cls: Any, config: Any, files: list[Path]) -> str:
    """What is wrong with the weight files when transformers could not load them, in words ("" when propscope does
    not see it): a damaged or truncated file by name, or tensors whose shape is not the one config.json makes."""
    shapes: dict[str, tuple[tuple[int, ...], str]] = {}
    for file in files:
        if file.suffix != ".safetensors":
            continue
        try:
            shapes.update({k: (v, file.name) for k, v in state_dict.safetensors_shapes(file).items()})
        except ModelFormatError as exc:
            return str(exc).replace(str(file), file.name)
    try:
        with torch.device("meta"):
            wanted = {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}
    except Exception:
        return ""
    wrong = [f"{k} is {fmt(shape)} in {file}, {fmt(wanted[k])} for config.json"
             for k, (shape, file) in shapes.items() if k in wanted and tuple(shape) != wanted[k]]
    if not wrong:
        return ""
    more = f", and {len(wrong) - 3} more" if len(wrong) > 3 else ""
    return f"{len(wrong)} tensor(s) do not fit the config: {'; '.join(wrong[:3])}{more}"


def _charge_size(torch: Any, cls: Any, config: Any, where: str) -> None:
    """Count the model's parameters and buffers against the open's memory budget before they exist (built first on
    torch's meta device)."""
    charge_built(torch, lambda: cls(config), cls.__name__, where)

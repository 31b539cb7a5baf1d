"""The one model factory: every component gets its CLIP / VLM / LLM here, tiny or real, through the same code path.

`build_model(kind, "tiny", tokenizer=...)` builds the real transformers architecture from a small config
(`tiny_configs.TINY`), randomly initialised with a fixed seed, around a tokenizer trained on the data set's text.
`build_model(kind, path_or_hub_id)` loads real weights with `from_pretrained`, offline by default. Both return a
`Built`; after construction nothing downstream needs to know which it was. Checkpoints of kind "qwen2-lm" load
through `AutoModelForCausalLM`, so any causal-LM architecture serves (a Llama-type SmolLM2 from a GGUF file too).

transformers 5 without torchvision: the image processors are the `…ImageProcessorPil` classes, and the processors
of the two VLMs are subclassed to drop their video slot (loading it needs torchvision); the subclasses keep the
parent's class name, so what they save is an ordinary checkpoint.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import Tokenizer
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
)
from transformers.models.auto.tokenization_auto import get_tokenizer_config

from ireid.core import tokenizer as tok
from ireid.core.nf4 import keep_portable, nf4_loading_kwargs
from ireid.core.tiny_configs import TINY

Kind = Literal["clip", "llava-onevision", "qwen2-vl", "qwen2-lm"]
KINDS: tuple[str, ...] = ("clip", "llava-onevision", "qwen2-vl", "qwen2-lm")


class ModelNotAvailableError(FileNotFoundError):
    """A checkpoint that is neither a local directory nor in the local Hugging Face cache."""


@dataclass
class Built:
    """A model with what feeds it. `forward_kwargs` go into every forward/feature call of the model."""

    kind: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    processor: ProcessorMixin | None
    config: PretrainedConfig
    forward_kwargs: dict[str, Any] = field(default_factory=dict)


def _without_video(processor_cls: type[ProcessorMixin]) -> type[ProcessorMixin]:
    """The processor with only image processor and tokenizer: its video slot would need torchvision to build or load.

    Same class name as the parent, so the saved `processor_class` is the standard one.
    """
    return type(
        processor_cls.__name__,
        (processor_cls,),
        {
            "get_attributes": classmethod(lambda cls: ["image_processor", "tokenizer"]),
            "__module__": __name__,
            "__doc__": f"{processor_cls.__name__} without its video processor.",
        },
    )


LlavaOnevisionImageOnlyProcessor = _without_video(LlavaOnevisionProcessor)
Qwen2VLImageOnlyProcessor = _without_video(Qwen2VLProcessor)


@dataclass(frozen=True)
class _Spec:
    """`model_cls` builds tiny models; `checkpoint_cls` loads checkpoints, whose `model_type` must match unless None."""

    model_cls: type[PreTrainedModel]
    config_cls: type[PretrainedConfig]
    model_type: str | None
    processor_cls: type[ProcessorMixin] | None
    checkpoint_cls: type[PreTrainedModel] | type[AutoModelForCausalLM] | None = None

    @property
    def loader(self) -> type[PreTrainedModel] | type[AutoModelForCausalLM]:
        return self.checkpoint_cls or self.model_cls


_SPECS: dict[str, _Spec] = {
    "clip": _Spec(CLIPModel, CLIPConfig, "clip", CLIPProcessor),
    "llava-onevision": _Spec(
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionConfig,
        "llava_onevision",
        LlavaOnevisionImageOnlyProcessor,
    ),
    "qwen2-vl": _Spec(Qwen2VLForConditionalGeneration, Qwen2VLConfig, "qwen2_vl", Qwen2VLImageOnlyProcessor),
    "qwen2-lm": _Spec(Qwen2ForCausalLM, Qwen2Config, None, None, checkpoint_cls=AutoModelForCausalLM),
}

# What an image / video content item renders to in each VLM's chat template.
_QWEN2VL_IMAGE = tok.VISION_START + tok.IMAGE_PAD + tok.VISION_END
_QWEN2VL_VIDEO = tok.VISION_START + tok.VIDEO_PAD + tok.VISION_END


def build_model(
    kind: Kind,
    source: str | Path = "tiny",
    *,
    tokenizer: PreTrainedTokenizerBase | str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    dtype: torch.dtype | str | None = None,
    quantization: Literal["nf4"] | None = None,
    local_files_only: bool = True,
    trust_remote_code: bool = False,
    device_map: str | dict[str, Any] | None = None,
    seed: int = 0,
    gguf_file: str | None = None,
) -> Built:
    """Build `kind` from `source`: "tiny", a local directory, or a hub id already in the local HF cache.

    `overrides` merge into the config (nested dicts for `text_config` / `vision_config`; for tiny models a
    `processor` dict merges into the image-processor settings). `tokenizer` (object or directory) is required for
    tiny models and refused for checkpoints, which carry their own. `quantization="nf4"` loads 4-bit NF4 with double
    quantisation through bitsandbytes (tiny models too, via a temporary checkpoint). `local_files_only=False`
    allows downloading; `trust_remote_code` is passed on, never switched on here. `gguf_file` names a GGUF file in
    `source` to load a "qwen2-lm" checkpoint from (transformers de-quantises it; needs the `gguf` package).
    """
    if kind not in _SPECS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(KINDS)}")
    if quantization not in (None, "nf4"):
        raise ValueError(f"unknown quantization {quantization!r}; expected 'nf4' or None")
    if gguf_file is not None and (kind != "qwen2-lm" or str(source) == "tiny"):
        raise ValueError("gguf_file= applies to checkpoints of kind 'qwen2-lm' only")
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    if str(source) == "tiny":
        if tokenizer is None:
            raise ValueError(
                "tiny models need a tokenizer trained on the data set's text: "
                "pass tokenizer=train_bpe_tokenizer(texts, dir) or its directory"
            )
        built = _build_tiny(kind, tokenizer, overrides or {}, seed)
        if quantization:
            return _requantize_tiny(built, dtype, device_map)
        if dtype is not None:
            built.model.to(dtype)
        return built
    if tokenizer is not None:
        raise ValueError("tokenizer= applies to tiny models only; a checkpoint is loaded with its own tokenizer")
    return _load_pretrained(
        kind,
        str(source),
        overrides=overrides or {},
        dtype=dtype,
        quantization=quantization,
        local_files_only=local_files_only,
        trust_remote_code=trust_remote_code,
        device_map=device_map,
        gguf_file=gguf_file,
    )


def save_built(built: Built, out_dir: str | Path) -> Path:
    """Save model, tokenizer and processor side by side, so `build_model(built.kind, out_dir)` restores them."""
    out = Path(out_dir)
    built.model.save_pretrained(out)
    (built.processor or built.tokenizer).save_pretrained(out)
    return out


# ---------------------------------------------------------------------------------------------------------- tiny


def _build_tiny(
    kind: str, tokenizer: PreTrainedTokenizerBase | str | Path, overrides: dict[str, Any], seed: int
) -> Built:
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        base = tokenizer
    else:
        base = _load_tokenizer(str(tokenizer), local_files_only=True, trust_remote_code=False)
    settings = _merge(copy.deepcopy(TINY[kind]), copy.deepcopy(overrides))
    processor_settings = settings.pop("processor", {})
    text_settings = settings if kind == "qwen2-lm" else settings["text_config"]
    kind_tokenizer = _kind_tokenizer(kind, base, text_settings["max_position_embeddings"])
    config = _tiny_config(kind, settings, kind_tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _SPECS[kind].model_cls(config).eval()
    processor = _tiny_processor(kind, config, kind_tokenizer, processor_settings)
    return Built(kind, model, kind_tokenizer, processor, model.config, _forward_kwargs(kind))


def _kind_tokenizer(kind: str, base: PreTrainedTokenizerBase, max_length: int) -> PreTrainedTokenizerFast:
    """A copy of the data set tokenizer with the special-token roles, image tokens and template this kind uses.

    CLIP pools at its end token, so CLIP text gets start and end tokens added; the chat models get none (the chat
    template marks turns) and end generation at `<|im_end|>`. Special tokens the base lacks are added.
    """
    backend = Tokenizer.from_str(base.backend_tokenizer.to_str())
    backend.add_special_tokens([t for t in tok.SPECIAL_TOKENS if backend.token_to_id(t) is None])
    common = {
        "tokenizer_object": backend,
        "bos_token": tok.STARTOFTEXT,
        "pad_token": tok.ENDOFTEXT,
        "unk_token": tok.UNK,
        "mask_token": tok.MASK,
        "model_max_length": max_length,
    }
    if kind == "clip":
        return PreTrainedTokenizerFast(**common, eos_token=tok.ENDOFTEXT, add_bos_token=True, add_eos_token=True)
    image, video = (tok.IMAGE, tok.VIDEO) if kind != "qwen2-vl" else (tok.IMAGE_PAD, tok.VIDEO_PAD)
    template_image, template_video = (tok.IMAGE, tok.VIDEO) if kind != "qwen2-vl" else (_QWEN2VL_IMAGE, _QWEN2VL_VIDEO)
    extra = {} if kind == "qwen2-lm" else {"image_token": image, "video_token": video}
    return PreTrainedTokenizerFast(
        **common,
        eos_token=tok.IM_END,
        add_bos_token=False,
        add_eos_token=False,
        extra_special_tokens=extra,
        chat_template=tok.chatml_template(template_image, template_video),
    )


def _tiny_config(kind: str, settings: dict[str, Any], tokenizer: PreTrainedTokenizerFast) -> PretrainedConfig:
    """Fill in what the tokenizer and the vision tower decide, unless `overrides` set it explicitly."""
    ids = tokenizer.convert_tokens_to_ids
    text = settings if kind == "qwen2-lm" else settings["text_config"]
    text.setdefault("vocab_size", len(tokenizer))
    text.setdefault("pad_token_id", tokenizer.pad_token_id)
    text.setdefault("eos_token_id", tokenizer.eos_token_id)
    text.setdefault("bos_token_id", tokenizer.bos_token_id)
    if kind == "llava-onevision":
        side = settings["vision_config"]["image_size"]
        settings.setdefault("image_grid_pinpoints", [[side * h, side * w] for h in (1, 2) for w in (1, 2)])
        settings.setdefault("image_token_index", ids(tok.IMAGE))
        settings.setdefault("video_token_index", ids(tok.VIDEO))
    if kind == "qwen2-vl":
        settings["vision_config"].setdefault("hidden_size", text["hidden_size"])
        half_head = text["hidden_size"] // text["num_attention_heads"] // 2
        rope = text.setdefault("rope_parameters", {"rope_type": "default", "rope_theta": 1_000_000.0})
        rope.setdefault("mrope_section", [half_head - 2 * (3 * half_head // 8), 3 * half_head // 8, 3 * half_head // 8])
        if sum(rope["mrope_section"]) != half_head:
            raise ValueError(f"mrope_section {rope['mrope_section']} must sum to head_dim / 2 = {half_head}")
        settings.setdefault("image_token_id", ids(tok.IMAGE_PAD))
        settings.setdefault("video_token_id", ids(tok.VIDEO_PAD))
        settings.setdefault("vision_start_token_id", ids(tok.VISION_START))
        settings.setdefault("vision_end_token_id", ids(tok.VISION_END))
    return _SPECS[kind].config_cls(**settings)


def _tiny_processor(
    kind: str, config: PretrainedConfig, tokenizer: PreTrainedTokenizerFast, settings: dict[str, Any]
) -> ProcessorMixin | None:
    """The kind's processor around the tiny tokenizer; patch and tile sizes follow the vision config."""
    if kind == "clip":
        return CLIPProcessor(image_processor=CLIPImageProcessorPil(**settings), tokenizer=tokenizer)
    if kind == "llava-onevision":
        vision = config.vision_config
        image_processor = LlavaOnevisionImageProcessorPil(
            **{
                "size": {"height": vision.image_size, "width": vision.image_size},
                "image_grid_pinpoints": config.image_grid_pinpoints,
                **settings,
            }
        )
        return LlavaOnevisionImageOnlyProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            num_image_tokens=(vision.image_size // vision.patch_size) ** 2,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            vision_aspect_ratio=config.vision_aspect_ratio,
            chat_template=tokenizer.chat_template,
        )
    if kind == "qwen2-vl":
        vision = config.vision_config
        image_processor = Qwen2VLImageProcessorPil(
            **{
                "patch_size": vision.patch_size,
                "merge_size": vision.spatial_merge_size,
                "temporal_patch_size": vision.temporal_patch_size,
                **settings,
            }
        )
        return Qwen2VLImageOnlyProcessor(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template
        )
    return None


def _requantize_tiny(built: Built, dtype: torch.dtype | None, device_map: str | dict[str, Any] | None) -> Built:
    """Round-trip through a temporary checkpoint so tiny models get exactly the Linear4bit layers real ones get."""
    with tempfile.TemporaryDirectory(prefix="ireid-tiny-") as tmp:
        save_built(built, tmp)
        model = _SPECS[built.kind].model_cls.from_pretrained(
            tmp, local_files_only=True, **nf4_loading_kwargs(dtype, device_map)
        )
    keep_portable(model)
    return Built(built.kind, model.eval(), built.tokenizer, built.processor, model.config, built.forward_kwargs)


# ---------------------------------------------------------------------------------------------------- checkpoints


def _load_pretrained(
    kind: str,
    source: str,
    *,
    overrides: dict[str, Any],
    dtype: torch.dtype | None,
    quantization: str | None,
    local_files_only: bool,
    trust_remote_code: bool,
    device_map: str | dict[str, Any] | None,
    gguf_file: str | None,
) -> Built:
    spec = _SPECS[kind]
    if "processor" in overrides:
        raise ValueError("processor overrides apply to tiny models; set attributes on built.processor instead")
    common: dict[str, Any] = {"local_files_only": local_files_only, "trust_remote_code": trust_remote_code}
    if gguf_file is not None:
        common["gguf_file"] = gguf_file
    config = _load_config(source, common)
    if spec.model_type is not None and config.model_type != spec.model_type:
        raise ValueError(f"{source!r} holds a {config.model_type!r} model, not {kind!r} ({spec.model_type!r})")
    _override_config(config, overrides)
    loading: dict[str, Any] = {"config": config, **common}
    if quantization:
        loading.update(nf4_loading_kwargs(dtype, device_map))
    else:
        loading.update({"dtype": dtype, "device_map": device_map})
    model = spec.loader.from_pretrained(source, **loading).eval()
    if quantization:
        keep_portable(model)
    processor = spec.processor_cls.from_pretrained(source, **common) if spec.processor_cls else None
    tokenizer = processor.tokenizer if processor is not None else _load_tokenizer(source, **common)
    return Built(kind, model, tokenizer, processor, model.config, _forward_kwargs(kind))


def _load_tokenizer(
    source: str, local_files_only: bool, trust_remote_code: bool, gguf_file: str | None = None
) -> PreTrainedTokenizerBase:
    """AutoTokenizer, except that a tokenizer saved as a plain `tokenizers` one is loaded as one.

    Beside a qwen2 config.json, AutoTokenizer rebuilds any tokenizer as Qwen2Tokenizer, whose own pre-tokenizer and
    normaliser change the ids of a tiny data-set tokenizer (digits, accents). A GGUF file carries its tokenizer.
    """
    if gguf_file is not None:
        return AutoTokenizer.from_pretrained(
            source, gguf_file=gguf_file, local_files_only=local_files_only, trust_remote_code=trust_remote_code
        )
    declared = get_tokenizer_config(source, local_files_only=local_files_only).get("tokenizer_class")
    if declared in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        return PreTrainedTokenizerFast.from_pretrained(source, local_files_only=local_files_only)
    return AutoTokenizer.from_pretrained(source, local_files_only=local_files_only, trust_remote_code=trust_remote_code)


def _load_config(source: str, common: dict[str, Any]) -> PretrainedConfig:
    """Load the config, turning "not a directory and not in the cache" into a message that says what to do."""
    if Path(source).expanduser().is_dir():
        return AutoConfig.from_pretrained(Path(source).expanduser(), **common)
    try:
        return AutoConfig.from_pretrained(source, **common)
    except (OSError, ValueError) as error:
        offline = " (offline: local_files_only=True)" if common["local_files_only"] else ""
        raise ModelNotAvailableError(
            f"{source!r} was not found locally: it is not a directory and not in the Hugging Face cache{offline}. "
            f"To provide it, download it on a machine with hub access (`hf download {source} --local-dir DIR`), "
            "copy DIR here and pass source=DIR; or point HF_HOME at a cache that holds it; "
            "or pass local_files_only=False to allow downloading."
        ) from error


def _override_config(config: PretrainedConfig, overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        current = getattr(config, key, None)
        if isinstance(value, dict) and isinstance(current, PretrainedConfig):
            _override_config(current, value)
        else:
            setattr(config, key, value)


# -------------------------------------------------------------------------------------------------------- shared


def _forward_kwargs(kind: str) -> dict[str, Any]:
    """CLIP's position grid is square; interpolating it lets tall person crops in (a no-op for square input)."""
    return {"interpolate_pos_encoding": True} if kind == "clip" else {}


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base

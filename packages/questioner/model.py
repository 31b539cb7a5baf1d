"""The multi-image questioner around `LlavaOnevisionForConditionalGeneration`, tiny or real, optionally QLoRA.

The input embeddings are assembled here rather than by transformers' anyres packing: text embeddings, with each
image's pooled tokens (`vision.py`) scattered over its placeholder positions and multiplied by a per-image weight.
The weight is 1.0 unless joint training passes the selector's straight-through k-hot, whose gradient then reaches
the selector through the questioner's NLL. The loss is the mean NLL of the target question's tokens and the
end-of-turn token; logits are only computed where a label is, which matters with a 150k vocabulary.

`build_network` turns a checkpoint's architecture settings into the networks (`QuestionerNetwork`) and
`check_weights` tells whether a state dict fits them; training (`module.py`) and inference (`inference.py`) both use
them, so a checkpoint rebuilds the same way with or without Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from transformers import DynamicCache, LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerBase

from ireid.core.factory import Built, build_model
from ireid.core.lora import LoraSettings
from ireid.core.person_vision import VisionTowerFile, resize_vision_positions, vision_transformer
from ireid.core.pixels import PixelSpec, to_pixels
from ireid.core.protocols import Dialogue
from ireid.core.vocabulary.asking import open_questions
from ireid.core.vocabulary.parse import covered_attributes, parse_question
from ireid.questioner.encoding import IGNORE, Encoded, PromptEncoder, pad_batch
from ireid.questioner.prompt import build_prompt, system_message
from ireid.questioner.tower_cache import TowerCache
from ireid.questioner.vision import pool_patches, pooled_tokens
from ireid.selector.model import Selector

ImageInput = bytes | Image.Image
TOWER_CACHE_MB = 512  # a frozen tower's states by image: ~7,900 images of the demo's tower (129 × 128 fp32)

# The settings of `build_network` a checkpoint's hyper-parameters hold (besides the tokenizer and the selector).
NETWORK_SETTINGS = (
    "source",
    "overrides",
    "quantization",
    "dtype",
    "lora",
    "gradient_checkpointing",
    "pool",
    "system_prompt",
    "person_vision",
    "class_token",
)
SELECTOR_PREFIX = "selector."  # the joint selector's weights in a questioner state dict


def build_questioner_model(
    source: str = "tiny",
    tokenizer: PreTrainedTokenizerBase | None = None,
    overrides: dict[str, Any] | None = None,
    quantization: Literal["nf4"] | None = None,
    dtype: str | None = None,
    lora: LoraSettings | None = None,
    gradient_checkpointing: bool = False,
    person_vision: dict[str, Any] | None = None,
) -> Built:
    """The LLaVA-OneVision model from the factory; with `quantization="nf4"` prepared for k-bit training, with
    `lora` wrapped by peft (base weights frozen). `built.model` is then the `PeftModel`.

    `person_vision` (`VisionTowerFile.architecture()`) makes the vision tower a frozen CLIP tower on person crops,
    as a trained retriever's image encoder is (tiny models; its weights are loaded by the caller)."""
    if person_vision is not None:
        if source != "tiny":
            raise ValueError("person_vision replaces the vision tower of tiny models only")
        overrides = person_vision_overrides(overrides or {}, person_vision)
    built = build_model(
        "llava-onevision",
        source,
        tokenizer=tokenizer if source == "tiny" else None,
        overrides=overrides,
        quantization=quantization,
        dtype=dtype,
    )
    model = built.model
    newline = getattr(getattr(model, "model", None), "image_newline", None)
    if isinstance(newline, nn.Parameter):
        # LLaVA-OneVision appends it to an "anyres" image's rows; the questioner shows pooled multi-image grids, which
        # never use it, and DDP refuses a trainable parameter that no loss reaches
        newline.requires_grad_(False)
    if person_vision is not None:
        tower = model.model.vision_tower
        resize_vision_positions(tower, tuple(person_vision["image_hw"]))
        tower.requires_grad_(False)  # LLaVA's recipe: the pretrained tower stays as it is, the projector learns
    checkpointing = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
    if quantization:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing, **checkpointing
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(**checkpointing)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules
        )
        model = get_peft_model(model, config)
    elif quantization:
        raise ValueError("quantization='nf4' freezes the base weights: it needs lora settings to train anything")
    built.model = model
    return built


def person_vision_overrides(overrides: dict[str, Any], person_vision: dict[str, Any]) -> dict[str, Any]:
    """`overrides` with the person tower's CLIP vision config and its patch tokens (no class token) as features."""
    config = dict(person_vision["config"])
    config["model_type"] = "clip_vision_model"
    return {**overrides, "vision_config": config, "vision_feature_select_strategy": "default"}


def load_person_tower(model: nn.Module, tower: VisionTowerFile, where: str) -> None:
    """Copy a vision tower file's weights into the person tower `build_questioner_model` made (strict)."""
    tower.copy_into(model.model.vision_tower, where, "the questioner's vision tower")


class QuestionerModel(nn.Module):
    """Prompts + candidate images -> NLL of the target question, or greedy questions.

    Args:
        built: from `build_questioner_model` (tiny or real, plain or peft-wrapped).
        pool: the side of the average-pooling window over the projected patch grid (2 in LLaVA-ReID).
        system: the system message of the chat (None: no system turn).
        tower_cache_mb: memory for the states of a frozen vision tower by encoded image (`tower_cache.py`; 0: off).
    """

    def __init__(
        self,
        built: Built,
        pool: int = 2,
        system: str | None = None,
        person_vision: dict[str, Any] | None = None,
        class_token: bool = False,
        tower_cache_mb: int = TOWER_CACHE_MB,
    ):
        super().__init__()
        if built.processor is None:
            raise ValueError("the questioner needs the model's image processor (mean, std, resampling)")
        self.model = built.model
        self.tokenizer = built.tokenizer
        self.system = system
        self.pool = pool
        self.tower_cache = TowerCache(tower_cache_mb << 20)
        config = self.hf.config
        vision = config.vision_config
        if vision.image_size % vision.patch_size:
            raise ValueError(
                f"vision image_size {vision.image_size} is not a multiple of patch_size {vision.patch_size}"
            )
        if person_vision is not None:  # a person tower: the crop's grid and the tower's own normalisation
            embeddings = vision_transformer(self.hf.model.vision_tower).embeddings
            self.grid_hw: tuple[int, int] = embeddings.grid_hw
            mean, std = tuple(person_vision["mean"]), tuple(person_vision["std"])
            self.pixel_spec = PixelSpec(embeddings.size_hw, mean, std)  # type: ignore[arg-type]
        else:
            side = vision.image_size // vision.patch_size
            self.grid_hw = (side, side)
            self.pixel_spec = PixelSpec.from_processor(built.processor.image_processor, vision.image_size)
        if class_token and config.vision_feature_select_strategy != "default":
            raise ValueError("class_token needs vision_feature_select_strategy 'default' (the class token apart)")
        self.class_token = class_token
        self.tokens_per_image = pooled_tokens(self.grid_hw, pool) + int(class_token)
        self.encoder = PromptEncoder(self.tokenizer, config.image_token_id, self.tokens_per_image)

    @property
    def hf(self) -> LlavaOnevisionForConditionalGeneration:
        """The transformers model (inside the peft wrapper when there is one; its LoRA layers are in place)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    @property
    def device(self) -> torch.device:
        return self.hf.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.hf.get_input_embeddings().weight.dtype

    # ------------------------------------------------------------------------------------------------- images

    def tower_states(self, pixels: Tensor) -> Tensor:
        """[N, 3, H, W] pixels -> [N, tokens, D] the vision tower's states at `vision_feature_layer`."""
        config, tower = self.hf.config, self.hf.model.vision_tower
        pixels = pixels.to(self.device, next(tower.parameters()).dtype if pixels.is_floating_point() else None)
        states = tower(pixels, output_hidden_states=True).hidden_states
        layer = config.vision_feature_layer
        return states[layer] if isinstance(layer, int) else torch.cat([states[i] for i in layer], dim=-1)

    def image_features(self, hidden: Tensor) -> Tensor:
        """The tower's states -> [N, tokens_per_image, hidden]: projector, average pooling.

        With `class_token` the tower's class token, projected, comes first: for a retriever's tower it is the one
        state its losses trained (the image embedding is read from it, after the tower's final norm, which it gets
        here too when the last layer is read), while its last patch states never met a loss.
        """
        config, inner = self.hf.config, self.hf.model
        projector = inner.multi_modal_projector
        if config.vision_feature_select_strategy != "default":
            return pool_patches(projector(hidden), self.pool, self.grid_hw)
        patches = pool_patches(projector(hidden[:, 1:]), self.pool, self.grid_hw)  # the class token dropped
        if not self.class_token:
            return patches
        cls = hidden[:, :1]
        norm = getattr(vision_transformer(inner.vision_tower), "post_layernorm", None)
        if config.vision_feature_layer == -1 and norm is not None:
            cls = norm(cls)
        return torch.cat([projector(cls), patches], dim=1)

    def tower_is_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.hf.model.vision_tower.parameters())

    def encode_images(self, images: Sequence[Sequence[ImageInput]], weights: Sequence[Tensor] | None = None) -> Tensor:
        """Tokens of every image of every example, in order, [sum n_i, tokens_per_image, hidden], each × its weight."""
        flat = [image for row in images for image in row]

        def run_tower(todo: list[ImageInput]) -> Tensor:
            return self.tower_states(to_pixels(todo, self.pixel_spec))

        # a tower that trains changes its states at every step: only a frozen one's are kept
        hidden = self.tower_cache.states(flat, run_tower) if self.tower_is_frozen() else run_tower(flat)
        features = self.image_features(hidden)
        if weights is not None:
            scale = torch.cat([w.reshape(-1) for w in weights]).to(features.device, features.dtype)
            if len(scale) != len(flat):
                raise ValueError(f"{len(scale)} image weights for {len(flat)} images")
            features = features * scale.view(-1, 1, 1)
        return features

    # ------------------------------------------------------------------------------------------------- prompts

    def encode(
        self,
        dialogues: Sequence[Dialogue],
        num_images: Sequence[int],
        variants: Sequence[int],
        targets: Sequence[str] | None = None,
    ) -> list[Encoded]:
        targets = targets if targets is not None else [None] * len(dialogues)
        return [
            self.encoder.encode(build_prompt(d, n, v, self.system), t)
            for d, n, v, t in zip(dialogues, num_images, variants, targets, strict=True)
        ]

    def embed(self, encoded: Sequence[Encoded], image_tokens: Tensor, side: str = "right") -> tuple[Tensor, ...]:
        """inputs_embeds, attention_mask and labels: text embeddings with the image tokens in their positions."""
        ids, mask, labels = pad_batch(encoded, self.encoder.pad_id, side)
        ids, mask, labels = ids.to(self.device), mask.to(self.device), labels.to(self.device)
        embeds = self.hf.get_input_embeddings()(ids)
        slots = (ids == self.encoder.image_token_id) & mask.bool()
        if int(slots.sum()) != image_tokens.shape[0] * image_tokens.shape[1]:
            raise ValueError(
                f"{int(slots.sum())} image-token positions for {image_tokens.shape[0]} images of "
                f"{image_tokens.shape[1]} tokens"
            )
        embeds = embeds.masked_scatter(slots.unsqueeze(-1), image_tokens.to(embeds.dtype))
        return embeds, mask, labels

    # ------------------------------------------------------------------------------------------------ training

    def nll(
        self,
        dialogues: Sequence[Dialogue],
        images: Sequence[Sequence[ImageInput]],
        targets: Sequence[str],
        variants: Sequence[int],
        weights: Sequence[Tensor] | None = None,
    ) -> tuple[Tensor, int]:
        """Mean NLL over the target tokens of the batch, and how many target tokens there were."""
        losses, scored = self._target_losses(dialogues, images, targets, variants, weights)
        return losses.sum() / scored.sum(), int(scored.sum())

    def _target_losses(
        self,
        dialogues: Sequence[Dialogue],
        images: Sequence[Sequence[ImageInput]],
        targets: Sequence[str],
        variants: Sequence[int],
        weights: Sequence[Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Per-token NLL [B, L - 1] (0 off the targets) and the mask of target tokens [B, L - 1]."""
        encoded = self.encode(dialogues, [len(row) for row in images], variants, targets)
        embeds, mask, labels = self.embed(encoded, self.encode_images(images, weights))
        hidden = self.hf.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        targets_next = labels[:, 1:]
        scored = targets_next != IGNORE
        losses = torch.zeros(scored.shape, device=hidden.device)
        losses[scored] = F.cross_entropy(
            self.hf.lm_head(hidden[:, :-1][scored]).float(), targets_next[scored], reduction="none"
        )
        return losses, scored

    @torch.no_grad()
    def question_nll(
        self,
        dialogues: Sequence[Dialogue],
        images: Sequence[Sequence[ImageInput]],
        questions: Sequence[str],
        variant: int = 0,
    ) -> Tensor:
        """[B] mean NLL per token of `questions[i]` as dialogue i's next question: how likely the model finds it."""
        losses, scored = self._target_losses(dialogues, images, questions, [variant] * len(dialogues))
        return losses.sum(1) / scored.sum(1)

    # ---------------------------------------------------------------------------------------------- generation

    @torch.no_grad()
    def generate(
        self,
        dialogues: Sequence[Dialogue],
        images: Sequence[Sequence[ImageInput]],
        variant: int = 0,
        max_new_tokens: int = 96,
        candidates: int = 1,
        retry_candidates: int = 0,
        open_fallback: bool = False,
    ) -> list[str]:
        """Next question of every dialogue, the batch left-padded; stops at end-of-turn or max_new_tokens.

        `candidates=1` decodes greedily. With n > 1 a beam search keeps the n best questions and
        `choose_question` picks one, so the questioner neither asks the same thing twice nor asks what the
        dialogue already says. A dialogue none of whose n questions is new is searched again with
        `retry_candidates` beams when that is more than n: a small model's beams are often one question in
        several phrasings, and a wider search reaches the next attribute instead of wasting the round. With
        `open_fallback`, a dialogue still without a new question that reads as an attribute of the vocabulary
        (`answerable`) asks the open question (one per attribute the dialogue has not covered,
        `ireid.core.vocabulary.asking.open_questions`) the model itself finds most likely (`question_nll`): the
        round goes to the questioner's best guess among what is left to ask, not to a repeat or a garbled question.
        """
        rows = self.generate_ids(dialogues, images, variant, max_new_tokens, candidates)
        texts = [self._decode(row) for row in rows]
        options = [texts[i * candidates : (i + 1) * candidates] for i in range(len(dialogues))]
        questions = [choose_question(o, d) for o, d in zip(options, dialogues, strict=True)]
        stuck = [i for i, (o, d) in enumerate(zip(options, dialogues, strict=True)) if not any(is_new(q, d) for q in o)]
        if stuck and retry_candidates > candidates:
            wider = self.generate(
                [dialogues[i] for i in stuck], [images[i] for i in stuck], variant, max_new_tokens, retry_candidates
            )
            for i, question in zip(stuck, wider, strict=True):
                questions[i] = question
        if open_fallback:
            for i in [i for i, (q, d) in enumerate(zip(questions, dialogues, strict=True)) if not answerable(q, d)]:
                questions[i] = (
                    self.likeliest(dialogues[i], images[i], open_questions(dialogues[i]), variant) or questions[i]
                )
        return questions

    def likeliest(
        self, dialogue: Dialogue, images: Sequence[ImageInput], questions: Sequence[str], variant: int = 0
    ) -> str | None:
        """The one of `questions` the model finds most likely as the dialogue's next question (None if none)."""
        if not questions:
            return None
        nll = self.question_nll([dialogue] * len(questions), [images] * len(questions), questions, variant)
        return questions[int(nll.argmin())]

    @torch.no_grad()
    def generate_ids(
        self,
        dialogues: Sequence[Dialogue],
        images: Sequence[Sequence[ImageInput]],
        variant: int = 0,
        max_new_tokens: int = 96,
        candidates: int = 1,
    ) -> list[list[int]]:
        """The generated token ids (end-of-turn and padding included): `candidates` rows per dialogue, best first."""
        if len(dialogues) != len(images):
            raise ValueError(f"{len(dialogues)} dialogues but {len(images)} image lists")
        if candidates < 1:
            raise ValueError(f"candidates must be at least 1, got {candidates}")
        if not dialogues:
            return []
        encoded = self.encode(dialogues, [len(row) for row in images], [variant] * len(dialogues))
        embeds, mask, _ = self.embed(encoded, self.encode_images(images), side="left")
        out = self.hf.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            past_key_values=self.prompt_cache(embeds, mask, candidates),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=candidates,
            num_return_sequences=candidates,
            eos_token_id=self.encoder.end_id,
            pad_token_id=self.encoder.pad_id,
        )
        return out.tolist()

    @torch.no_grad()
    def prompt_cache(self, embeds: Tensor, mask: Tensor, beams: int) -> DynamicCache:
        """Keys and values of every prompt but its last position, computed once and repeated for each of `beams`.

        `generate` repeats its inputs once per beam before it reads the prompt, so a beam search of n beams would
        run each prompt (about 250 positions with four images) through the language model n times; given this
        cache it runs only the last position, per beam. Positions follow the left padding as `generate` numbers
        them, so the questions are the same as without the cache.
        """
        cache = DynamicCache(config=self.hf.config.get_text_config())
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
        self.hf(
            inputs_embeds=embeds[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, :-1],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache.batch_repeat_interleave(beams)
        return cache

    def _decode(self, ids: list[int]) -> str:
        if self.encoder.end_id in ids:
            ids = ids[: ids.index(self.encoder.end_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def _normalised(question: str) -> str:
    return " ".join(question.lower().split())


def choose_question(options: Sequence[str], dialogue: Dialogue) -> str:
    """The best of `options` (best first) that is new (`is_new`), preferring one that reads as an attribute of
    the pedestrian vocabulary over one that reads as none (a question a small model garbled, which a witness
    cannot answer); with no new option, the best."""
    new = [q for q in options if is_new(q, dialogue)]
    return next((q for q in new if parse_question(q) is not None), new[0] if new else options[0])


def answerable(question: str, dialogue: Dialogue) -> bool:
    """New to the dialogue (`is_new`) and about an attribute of the pedestrian vocabulary: a question whose answer
    can add something."""
    return is_new(question, dialogue) and parse_question(question) is not None


def is_new(question: str, dialogue: Dialogue) -> bool:
    """Not asked before (case- and space-insensitively) and, when the question reads as one of the pedestrian
    vocabulary's attributes, not about one the dialogue states or asked about: a wasted round otherwise."""
    if _normalised(question) in {_normalised(q) for q in dialogue.asked}:
        return False
    parsed = parse_question(question)
    return parsed is None or parsed.attribute not in covered_attributes(dialogue.retrieval_text(), dialogue.asked)


class QuestionerNetwork(nn.Module):
    """The networks a questioner checkpoint's weights belong to, under the names of its state dict: `questioner`
    and, after joint training, `selector` (None before). `QuestionerModule` has the same two as its children."""

    def __init__(self, questioner: QuestionerModel, selector: Selector | None = None):
        super().__init__()
        self.questioner = questioner
        self.selector = selector


def build_network(
    tokenizer: PreTrainedTokenizerBase | None = None,
    source: str = "tiny",
    overrides: dict[str, Any] | None = None,
    quantization: Literal["nf4"] | None = None,
    dtype: str | None = None,
    lora: dict[str, Any] | None = None,
    gradient_checkpointing: bool = False,
    pool: int = 2,
    system_prompt: bool = True,
    person_vision: dict[str, Any] | None = None,
    class_token: bool = False,
    selector: dict[str, Any] | None = None,
) -> QuestionerNetwork:
    """The questioner (and, given its `Selector` arguments, an untrained selector) from the settings a checkpoint
    stores; `tokenizer` is the tiny model's (None for a real checkpoint, which brings its own).

    One builder for training and inference, so both get the same parameter names and the same trainable set.
    """
    built = build_questioner_model(
        source,
        tokenizer,
        overrides,
        quantization,
        dtype,
        LoraSettings.from_dict(lora) if lora is not None else None,
        gradient_checkpointing,
        person_vision,
    )
    questioner = QuestionerModel(built, pool, system_message() if system_prompt else None, person_vision, class_token)
    return QuestionerNetwork(questioner, Selector(**selector) if selector is not None else None)


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def check_weights(
    model: nn.Module, state: Mapping[str, Tensor], where: str, lora: bool, questioner_only: bool = False
) -> None:
    """Saved names must be `model`'s, and every weight that trains (with `lora`; else every weight) saved.

    A LoRA checkpoint holds the adapters only, so a mismatch means another `source`, `overrides` or `lora`; the
    error says which names differ. `questioner_only`: a warm-up checkpoint, which has no selector weights.
    """
    own = set(model.state_dict())
    unknown = sorted(set(state) - own)
    needed = trainable_names(model) if lora else own
    if questioner_only:
        needed = {name for name in needed if not name.startswith(SELECTOR_PREFIX)}
    missing = sorted(needed - set(state))
    if unknown or missing:
        raise ValueError(
            f"{where}: field 'state_dict' does not fit this questioner: unknown {unknown[:3]}, missing "
            f"{missing[:3]} ({len(unknown)} unknown, {len(missing)} missing; do source, overrides and lora match?)"
        )


def load_weights(
    model: nn.Module, state: Mapping[str, Tensor], where: str, lora: bool, questioner_only: bool = False
) -> None:
    """`check_weights`, then load what is there (the frozen base of a LoRA model stays as built)."""
    check_weights(model, state, where, lora, questioner_only)
    model.load_state_dict(state, strict=False)

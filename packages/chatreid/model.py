"""The ChatReID network apart from its training: Qwen2-VL with its processor, built for a stage or read back.

`build_network` assembles one stage's network (source model, weights carried over from the previous stage's
checkpoint, frozen parts, gradient checkpointing; the rules are in `stages.py`). `load_network` restores a trained
one from a checkpoint file alone. The LightningModule (`module.py`) trains the first, `inference.py` answers with
the second. This module imports no Lightning, so inference needs neither the training stack nor its CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import ProcessorMixin, Qwen2VLForConditionalGeneration

from ireid.chatreid.checkpoint import checkpoint_meta, processor_files, read_checkpoint
from ireid.chatreid.stages import carry_vision, check_stage, freeze_vision, set_vision_eval
from ireid.chatreid.towers import eyes_architecture, eyes_overrides, install_eyes, load_eyes, read_eyes
from ireid.core.factory import build_model
from ireid.core.lora import LoraSettings, inject_lora
from ireid.core.tokenizer import dataset_tokenizer


@dataclass
class ChatReIDNetwork:
    """Qwen2-VL, its processor, and the stage rule saying which parts train.

    A plain holder, not an `nn.Module`: the LightningModule registers `model` as its own `model` attribute, so
    checkpoint keys stay `model.<HF parameter name>` (what `checkpoint.py` reads) and no weight is registered twice.
    """

    model: Qwen2VLForConditionalGeneration
    processor: ProcessorMixin
    stage: int
    merger_in_encoder: bool = True
    processor_files: dict[str, str] | None = None  # the processor's saved files, taken once when built
    person_vision: dict[str, Any] | None = None  # the eyes' architecture in place of the own encoder (`towers.py`)
    lora: dict[str, Any] | None = None  # adapters on the decoder (`LoraSettings.to_dict`): only they train

    @property
    def vision_frozen(self) -> bool:
        """Stage 3 tunes the decoder only; its vision encoder (with or without the merger) stays as stage 2 made it."""
        return self.stage == 3

    def keep_frozen_in_eval(self) -> None:
        """Put the frozen encoder back in eval mode; needed after every `train()`, which switches it back."""
        if self.vision_frozen:
            set_vision_eval(self.model, self.merger_in_encoder)

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """The optimiser's groups of trainable parameters: matrices decay, norms and biases do not; empty groups
        are left out (AdamW refuses them)."""
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for parameter in self.model.parameters():
            if parameter.requires_grad:
                (decay if parameter.dim() >= 2 else no_decay).append(parameter)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]

    def checkpoint_meta(self) -> dict[str, Any]:
        """What a checkpoint carries besides weights so that `load_network` needs the file alone."""
        if self.processor_files is None:
            self.processor_files = processor_files(self.processor)
        return checkpoint_meta(
            self.stage, self.model, self.processor_files, self.merger_in_encoder, self.person_vision, self.lora
        )


def _torch_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def load_network(
    path: Path | str, *, expect_stage: int | None = None, dtype: torch.dtype | str | None = None
) -> ChatReIDNetwork:
    """A trained network from a ChatReID checkpoint (read with `weights_only=True`), in eval mode.

    Stage and encoder rule are the checkpoint's; a checkpoint of another stage than `expect_stage` is refused.
    """
    stored = read_checkpoint(path, expect_stage=expect_stage)
    return ChatReIDNetwork(
        stored.model(_torch_dtype(dtype)),
        stored.processor(),
        stored.stage,
        stored.merger_in_encoder,
        dict(stored.processor_files),
        stored.person_vision,
    )


def build_source(
    source: str = "tiny",
    *,
    data_dir: str | None = None,
    vocab_size: int = 2048,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    dtype: torch.dtype | str | None = None,
) -> tuple[Qwen2VLForConditionalGeneration, ProcessorMixin]:
    """The pre-trained source: real weights from a local path or cache, or a seeded tiny model whose tokenizer is
    trained on `data_dir`'s train split (the same seed gives stage 2 the decoder stage 1 started from)."""
    tokenizer = None
    if source == "tiny":
        if data_dir is None:
            raise ValueError("a tiny model needs data_dir: its train split trains the tokenizer")
        tokenizer = dataset_tokenizer(data_dir, vocab_size)
    built = build_model(
        "qwen2-vl", source, tokenizer=tokenizer, overrides=overrides, dtype=_torch_dtype(dtype), seed=seed
    )
    return built.model, built.processor


def build_network(
    stage: int,
    source: str = "tiny",
    *,
    data_dir: str | None = None,
    vocab_size: int = 2048,
    overrides: dict[str, Any] | None = None,
    init_from: str | Path | None = None,
    merger_in_encoder: bool = True,
    seed: int = 0,
    dtype: torch.dtype | str | None = None,
    gradient_checkpointing: bool = False,
    vision_checkpoint: str | Path | None = None,
    lora: LoraSettings | None = None,
) -> ChatReIDNetwork:
    """One stage's network, in train mode, ready to tune (arguments as `ChatReIDModule`'s).

    Stage 1 starts from `source`. Stage 2 takes the vision encoder of `init_from` (a stage-1 checkpoint) into a
    fresh source model, or the whole model of a stage-2 `init_from` (stage 2 continued on other data: a
    curriculum); stage 3 takes the whole `init_from` model (a stage-2 checkpoint) and freezes its vision
    encoder; a stage-3 `init_from` continues a stage-3 model (ICL's SFT of a ChatReID model). Without `init_from`,
    stages 2 and 3 start from `source` (the paper's ablations). `vision_checkpoint` (a vision tower file or an
    attribute net) puts frozen eyes in place of a tiny source's encoder (`towers.py`); a stage-2 or stage-3
    `init_from` brings its own. `lora` puts adapters on the decoder's linear layers and trains only them (ICL Eq. 3).
    """
    check_stage(stage)
    if stage == 1 and init_from:
        raise ValueError("stage 1 starts from the pre-trained source (`model`); init_from is for stages 2 and 3")
    stored = read_checkpoint(init_from, expect_stage=(2, 3) if stage == 3 else (1, 2)) if init_from else None
    if stored is not None and stored.stage >= 2:
        model, processor = stored.model(_torch_dtype(dtype)), stored.processor()
        person_vision = stored.person_vision
    else:
        person_vision = stored.person_vision if stored is not None else None
        eyes = None  # read only where nothing carries them: the stage-1 checkpoint's weights would replace them
        if person_vision is None and vision_checkpoint:
            eyes = read_eyes(vision_checkpoint)
            person_vision = eyes_architecture(eyes)
        if person_vision is not None and source != "tiny":
            raise ValueError("a vision checkpoint replaces the vision encoder of tiny models only")
        model, processor = build_source(
            source,
            data_dir=data_dir,
            vocab_size=vocab_size,
            overrides=eyes_overrides(overrides, person_vision),
            seed=seed,
            dtype=dtype,
        )
        if person_vision is not None:
            visual = install_eyes(model, person_vision)
            if eyes is not None:
                load_eyes(model, processor.tokenizer, visual, eyes, str(vision_checkpoint))
        if stored is not None:
            carry_vision(model, stored.state, merger_in_encoder, str(init_from))
    network = ChatReIDNetwork(
        model.train(), processor, stage, merger_in_encoder, processor_files(processor), person_vision,
        lora.to_dict() if lora is not None else None,
    )  # fmt: skip
    if network.vision_frozen:
        freeze_vision(network.model, merger_in_encoder)
    if lora is not None:
        inject_lora(network.model, lora)
    if gradient_checkpointing:
        network.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        network.model.config.use_cache = False
    return network

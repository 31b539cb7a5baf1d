"""Hierarchical progressive tuning (paper §3.1, §3.3): how each stage's model is assembled and what it trains.

- Stage 1 (person attribute understanding): the pre-trained VLM, encoder and decoder fully fine-tuned.
- Stage 2 (fine-grained retrieval): the stage-1 vision encoder with a fresh pre-trained decoder (the source's own
  decoder weights; for tiny models, the seeded initialisation stage 1 also started from), fully fine-tuned. The
  stage-1 decoder's captioning habit would hinder retrieval, so it is dropped.
- Stage 3 (multi-modal task reasoning): the whole stage-2 model, vision encoder frozen (no gradients, eval mode).

"Vision encoder" is Qwen2-VL's `model.visual`: patch embedding, ViT blocks and, by default, the merger (the MLP
projector into the decoder's width), which Qwen2-VL builds as part of the vision tower. The paper names no
projector. Carrying the stage-1 merger keeps it matched to the fine-tuned ViT it was trained on, and the fresh
decoder starts from the very weights stage 1 started from, whose input space that merger was trained towards;
a pre-trained merger would meet ViT features it has never seen. `merger_in_encoder=False` moves the merger to
the decoder's side instead: fresh in stage 2, trained in stage 3.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ireid.chatreid.checkpoint import CheckpointError, is_vision_parameter

STAGES = (1, 2, 3)


def check_stage(stage: int) -> int:
    """The stage, if it is one of `STAGES`; a clear error otherwise (configs and CLI pass it through)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    return stage


def vision_names(model: nn.Module, merger_in_encoder: bool) -> list[str]:
    """The vision-encoder entries of the model's state dict."""
    return [name for name in model.state_dict() if is_vision_parameter(name, merger_in_encoder)]


def carry_vision(model: nn.Module, state: dict[str, Tensor], merger_in_encoder: bool, where: str) -> int:
    """Copy the vision encoder's weights from `state` (another model's state dict) into `model`; returns the count.

    Every vision entry must be present with the same shape: a checkpoint of another architecture is an error
    naming `where`, never a partial copy.
    """
    own = model.state_dict()
    names = vision_names(model, merger_in_encoder)
    missing = [n for n in names if n not in state]
    if missing:
        raise CheckpointError(f"{where}: no vision weights {missing[:3]} ({len(missing)} missing)")
    mismatched = [n for n in names if state[n].shape != own[n].shape]
    if mismatched:
        n = mismatched[0]
        raise CheckpointError(
            f"{where}: vision weight {n} has shape {list(state[n].shape)}, the model {list(own[n].shape)} "
            "(build stage 2 with the same model source and overrides as stage 1)"
        )
    with torch.no_grad():
        for n in names:
            own[n].copy_(state[n])
    return len(names)


def freeze_vision(model: nn.Module, merger_in_encoder: bool) -> int:
    """Stop gradients to the vision encoder and put it in eval mode; returns the number of frozen tensors."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if is_vision_parameter(name, merger_in_encoder):
            parameter.requires_grad_(False)
            frozen += 1
    set_vision_eval(model, merger_in_encoder)
    return frozen


def set_vision_eval(model: nn.Module, merger_in_encoder: bool) -> None:
    """Eval mode for the frozen encoder; called again after every `train()`, which would switch it back."""
    visual = model.model.visual
    training = model.training
    visual.eval()
    if not merger_in_encoder:
        visual.merger.train(training)

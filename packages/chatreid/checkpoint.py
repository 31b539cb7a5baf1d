"""What a ChatReID checkpoint carries besides weights, so that the checkpoint alone restores the model.

Lightning checkpoints hold the state dict; the module adds, under `CHECKPOINT_KEY`, the HF model config (JSON) and
the processor's saved files (tokenizer, chat template, image-processor settings) as text, plus the stage and the
encoder rule (`ChatReIDNetwork.checkpoint_meta` in `model.py`). Everything is plain strings, ints and tensors, so
`torch.load(..., weights_only=True)` reads it, and restoring needs neither the original model source nor the data
set the tiny tokenizer was trained on. Reading needs no Lightning: `model.load_network` builds on `read_checkpoint`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from torch import Tensor, nn
from transformers import ProcessorMixin, Qwen2VLConfig, Qwen2VLForConditionalGeneration

from ireid.chatreid.towers import install_eyes
from ireid.core.checkpoints import read_checkpoint_file
from ireid.core.factory import Qwen2VLImageOnlyProcessor
from ireid.core.lora import LoraSettings, merge_lora_state

CHECKPOINT_KEY = "chat_reid"
STATE_PREFIX = "model."  # the LightningModule's attribute holding the HF model
VISION_PREFIX = "model.visual."  # Qwen2-VL's vision tower: patch embedding, ViT blocks and the merger
MERGER_PREFIX = "model.visual.merger."  # the 2-layer MLP projecting merged patches into the decoder's width


class CheckpointError(ValueError):
    """A file that is not a ChatReID checkpoint of the expected stage or shape; the message names the file."""


def is_vision_parameter(name: str, merger_in_encoder: bool) -> bool:
    """Whether a (HF model) parameter belongs to the vision encoder, with or without the merger."""
    return name.startswith(VISION_PREFIX) and (merger_in_encoder or not name.startswith(MERGER_PREFIX))


def processor_files(processor: ProcessorMixin) -> dict[str, str]:
    """The processor's `save_pretrained` output, file name → text."""
    with tempfile.TemporaryDirectory(prefix="ireid-processor-") as tmp:
        processor.save_pretrained(tmp)
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def restore_processor(files: dict[str, str]) -> ProcessorMixin:
    """The processor from its saved files (written to a temporary folder, read back locally only)."""
    with tempfile.TemporaryDirectory(prefix="ireid-processor-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        return Qwen2VLImageOnlyProcessor.from_pretrained(tmp, local_files_only=True)


def checkpoint_meta(
    stage: int,
    model: nn.Module,
    files: dict[str, str],
    merger_in_encoder: bool,
    person_vision: dict[str, Any] | None = None,
    lora: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `CHECKPOINT_KEY` entry: plain types only, so `weights_only=True` reads it. `person_vision` is the
    architecture of the eyes in place of Qwen2-VL's own encoder (`towers.py`); `lora` the settings of
    adapters the state dict holds beside the frozen weights (merged in when read)."""
    return {
        "stage": stage,
        "config": model.config.to_json_string(),
        "processor_files": files,
        "merger_in_encoder": merger_in_encoder,
        "person_vision": person_vision,
        "lora": lora,
    }


@dataclass
class StoredModel:
    """A checkpoint's metadata and its HF model state dict (keys without the module prefix; LoRA adapters, where
    the checkpoint has them, already merged into the weights they adapt)."""

    path: Path
    stage: int
    config_json: str
    processor_files: dict[str, str]
    merger_in_encoder: bool
    state: dict[str, Tensor]
    person_vision: dict[str, Any] | None = None

    def processor(self) -> ProcessorMixin:
        return restore_processor(self.processor_files)

    def model(self, dtype: torch.dtype | None = None) -> Qwen2VLForConditionalGeneration:
        """The model with these weights, built without a random initialisation (parameters assigned directly)."""
        config = Qwen2VLConfig.from_dict(json.loads(self.config_json))
        with init_empty_weights():
            model = Qwen2VLForConditionalGeneration(config)
        if self.person_vision is not None:
            install_eyes(model, self.person_vision)
        try:
            model.load_state_dict(self.state, strict=True, assign=True)
        except RuntimeError as error:
            raise CheckpointError(f"{self.path}: weights do not fit the stored config ({error})") from error
        model.tie_weights()
        if dtype is not None:
            model = model.to(dtype)
        return model.eval()


def read_checkpoint(path: Path | str, expect_stage: int | tuple[int, ...] | None = None) -> StoredModel:
    """Read a ChatReID Lightning checkpoint safely (tensors and plain types only, memory-mapped); a checkpoint of
    a stage other than `expect_stage` (one stage or several) is refused."""
    path = Path(path)
    checkpoint = read_checkpoint_file(path, "ChatReID checkpoint", mmap=True)
    meta = checkpoint.get(CHECKPOINT_KEY)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a ChatReID checkpoint (no '{CHECKPOINT_KEY}' entry)")
    expected = (expect_stage,) if isinstance(expect_stage, int) else expect_stage
    if expected is not None and meta["stage"] not in expected:
        wanted = " or ".join(str(stage) for stage in expected)
        raise CheckpointError(f"{path}: a stage-{meta['stage']} checkpoint, expected stage {wanted}")
    state = {
        name[len(STATE_PREFIX) :]: tensor
        for name, tensor in checkpoint["state_dict"].items()
        if name.startswith(STATE_PREFIX)
    }
    if meta.get("lora"):
        state = merge_lora_state(state, LoraSettings.from_dict(meta["lora"]).scale)
    return StoredModel(
        path,
        meta["stage"],
        meta["config"],
        meta["processor_files"],
        bool(meta["merger_in_encoder"]),
        state,
        meta.get("person_vision"),
    )

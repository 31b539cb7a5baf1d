"""The ChatReID LightningModule: Qwen2-VL tuned on instruction conversations, one stage at a time.

The loss is the model's next-token cross-entropy on assistant tokens only (the data module's labels). Validation
reports the same loss on held-out conversations, weighted by their assistant tokens. Checkpoints carry the model
config and the processor files (see `checkpoint.py`), so `ChatReID.from_checkpoint` restores a model from the
file alone.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn
from transformers import ProcessorMixin, Qwen2VLForConditionalGeneration

from ireid.core.factory import build_model
from ireid.core.tokenizer import dataset_tokenizer
from ireid.chatreid.checkpoint import CHECKPOINT_KEY, checkpoint_meta, processor_files, read_checkpoint
from ireid.chatreid.encoding import IGNORE_INDEX
from ireid.chatreid.stages import carry_vision, check_stage, freeze_vision, set_vision_eval


class ChatReIDModule(L.LightningModule):
    """One stage of hierarchical progressive tuning.

    Args:
        stage: 1, 2 or 3 (see `stages.py` for what each builds and trains).
        model: `tiny` or a local path / cached hub id of Qwen2-VL weights (e.g. Qwen/Qwen2-VL-2B-Instruct).
        data_dir: the image data set; for tiny models its train split trains the tokenizer (linked from the data).
        vocab_size, model_overrides: the tiny tokenizer's size and config overrides (`ireid.core.tiny_configs`).
        init_from: the previous stage's checkpoint. Stage 2 takes its vision encoder, stage 3 the whole model
            (then `model` and `model_overrides` are not used). Without it, stage 2 or 3 starts from `model`
            (the paper's ablations without stage 1, or without stages 1 and 2). Stage 1 always starts from `model`.
        merger_in_encoder: whether the merger (projector) counts as part of the vision encoder (carried in
            stage 2, frozen in stage 3) or of the decoder.
        seed: the tiny model's initialisation; stage 2's fresh tiny decoder uses it again.
        dtype: weights dtype when loading (`bfloat16` for `bf16-true` training; None keeps float32 for
            `bf16-mixed`).
        gradient_checkpointing: recompute activations in the backward pass (real models on GPUs).
        lr, weight_decay, warmup_fraction, min_lr_factor: AdamW, linear warm-up over that share of the steps,
            then cosine decay to `lr * min_lr_factor`. Norms and biases get no weight decay.
    """

    def __init__(
        self,
        stage: int,
        model: str = "tiny",
        data_dir: str | None = None,
        vocab_size: int = 2048,
        model_overrides: dict[str, Any] | None = None,
        init_from: str | None = None,
        merger_in_encoder: bool = True,
        seed: int = 0,
        dtype: str | None = None,
        gradient_checkpointing: bool = False,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.03,
        min_lr_factor: float = 0.0,
    ):
        super().__init__()
        check_stage(stage)
        if stage == 1 and init_from:
            raise ValueError("stage 1 starts from the pre-trained source (`model`); init_from is for stages 2 and 3")
        self.save_hyperparameters()
        torch_dtype = getattr(torch, dtype) if dtype else None
        if stage == 3 and init_from:
            stored = read_checkpoint(init_from, expect_stage=2)
            hf_model, processor = stored.model(torch_dtype), stored.processor()
        else:
            hf_model, processor = self._build_source(torch_dtype)
            if stage == 2 and init_from:
                stored = read_checkpoint(init_from, expect_stage=1)
                carry_vision(hf_model, stored.state, merger_in_encoder, str(init_from))
        self.model: Qwen2VLForConditionalGeneration = hf_model.train()
        self.processor: ProcessorMixin = processor
        self._processor_files = processor_files(processor)
        if stage == 3:
            freeze_vision(self.model, merger_in_encoder)
        if gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            self.model.config.use_cache = False

    def _build_source(self, dtype: torch.dtype | None) -> tuple[nn.Module, ProcessorMixin]:
        hp = self.hparams
        tokenizer = None
        if hp.model == "tiny":
            if hp.data_dir is None:
                raise ValueError("a tiny model needs data_dir: its train split trains the tokenizer")
            tokenizer = dataset_tokenizer(hp.data_dir, hp.vocab_size)
        built = build_model(
            "qwen2-vl", hp.model, tokenizer=tokenizer, overrides=hp.model_overrides, dtype=dtype, seed=hp.seed
        )
        return built.model, built.processor

    @property
    def vision_frozen(self) -> bool:
        return self.hparams.stage == 3

    def train(self, mode: bool = True) -> ChatReIDModule:
        super().train(mode)
        if self.vision_frozen:
            set_vision_eval(self.model, self.hparams.merger_in_encoder)
        return self

    # --- steps ------------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.model(**batch).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self.model(**batch).loss
        targets = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # the loss is their mean
        self.log("val/loss", loss, prog_bar=True, batch_size=max(1, targets))

    def on_validation_epoch_end(self) -> None:
        skips = getattr(getattr(self.trainer, "datamodule", None), "skips", None)
        if skips is not None:  # refused conversations are skipped by the loader, never silently
            self.log("data/skipped_samples", float(skips.value))

    # --- checkpoints ------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = checkpoint_meta(
            self.hparams.stage, self.model, self._processor_files, self.hparams.merger_in_encoder
        )

    # --- optimisation -----------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        decay, no_decay = [], []
        for parameter in self.model.parameters():
            if parameter.requires_grad:
                (decay if parameter.dim() >= 2 else no_decay).append(parameter)
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=hp.lr)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("the learning-rate schedule needs a known length: set trainer.max_steps")
        warmup = max(1, int(total * hp.warmup_fraction))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return hp.min_lr_factor + (1 - hp.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

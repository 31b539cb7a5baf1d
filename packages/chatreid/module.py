"""The ChatReID LightningModule: one stage of tuning Qwen2-VL on instruction conversations.

The network itself (source model, carried-over weights, frozen parts) is built by `model.build_network`; this
module adds what training needs: the loss, logging, the optimiser and schedule, and the checkpoint's metadata.
The loss is the model's next-token cross-entropy on assistant tokens only (the data module's labels). Validation
reports the same loss on held-out conversations, weighted by their assistant tokens. Checkpoints carry the model
config and the processor files (see `checkpoint.py`), so `model.load_network` (and `ChatReID.from_checkpoint`)
restores a model from the file alone, without this module.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from transformers import ProcessorMixin, Qwen2VLForConditionalGeneration

from ireid.chatreid.checkpoint import CHECKPOINT_KEY
from ireid.chatreid.encoding import IGNORE_INDEX
from ireid.chatreid.inference import first_token
from ireid.chatreid.model import ChatReIDNetwork, build_network
from ireid.core.callbacks import YES_NO_ACCURACY
from ireid.core.lora import LoraSettings

LOSS_AVERAGES = ("token", "sample")


def sample_mean_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy averaged within each conversation, then over the conversations that have targets."""
    targets = labels[:, 1:]
    tokens = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )
    counts = (targets != IGNORE_INDEX).sum(1)
    has = counts > 0
    return (tokens.sum(1)[has] / counts[has]).mean()


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
        vision_checkpoint: a vision tower file (a trained retriever's image encoder, written by
            `ireid.retriever.inference.export_vision_tower`) or an attribute net file (`ireid attribute-net fit`):
            frozen in place of a tiny model's vision encoder, with a merger that learns to read it
            (`person_tower.py`, `net_tower.py`). A stage-2 or stage-3 `init_from` carries its own eyes.
        loss_average: "token" (every assistant token weighs the same, the usual causal-LM loss) or "sample" (each
            conversation's mean token loss, averaged over the batch): a one-token Yes/No answer then weighs as
            much as a gallery answer of twenty tokens. Validation reports the token mean either way.
        lora: LoRA adapters on the decoder's linear layers (`r`, `alpha`, `dropout`, `target_modules`; ICL's SFT:
            r 8, α 16); only they train, and checkpoints hold them beside the frozen weights.
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
        vision_checkpoint: str | None = None,
        loss_average: str = "token",
        lora: dict[str, Any] | None = None,
    ):
        super().__init__()
        if loss_average not in LOSS_AVERAGES:
            raise ValueError(f"loss_average must be one of {LOSS_AVERAGES}, got {loss_average!r}")
        self.save_hyperparameters()
        self.network: ChatReIDNetwork = build_network(
            stage,
            model,
            data_dir=data_dir,
            vocab_size=vocab_size,
            overrides=model_overrides,
            init_from=init_from,
            merger_in_encoder=merger_in_encoder,
            seed=seed,
            dtype=dtype,
            gradient_checkpointing=gradient_checkpointing,
            vision_checkpoint=vision_checkpoint,
            lora=LoraSettings.from_dict(lora) if lora is not None else None,
        )
        # registered here, not inside a wrapper module, so the state-dict keys stay `model.<HF parameter name>`
        self.model: Qwen2VLForConditionalGeneration = self.network.model

    @property
    def processor(self) -> ProcessorMixin:
        """The network's processor; `ConversationData.setup` takes it from here."""
        return self.network.processor

    @property
    def vision_frozen(self) -> bool:
        return self.network.vision_frozen

    def train(self, mode: bool = True) -> ChatReIDModule:
        """Switch modes, but keep a frozen vision encoder in eval mode (no dropout, fixed statistics)."""
        super().train(mode)
        network = getattr(self, "network", None)  # nn.Module.__init__ has not set it yet
        if network is not None:
            network.keep_frozen_in_eval()
        return self

    # --- steps ------------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.hparams.loss_average == "sample":
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            loss = sample_mean_loss(self.model(**inputs).logits, batch["labels"])
        else:
            loss = self.model(**batch).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        out = self.model(**batch)
        targets = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # the loss is their mean
        self.log("val/loss", out.loss, prog_bar=True, batch_size=max(1, targets), sync_dist=True)
        right, asked = yes_no_right(out.logits, batch["labels"], self._yes_no_ids())
        if asked:
            self.log(YES_NO_ACCURACY, right / asked, batch_size=asked, sync_dist=True)

    def _yes_no_ids(self) -> tuple[int, int]:
        """The first tokens of "Yes" and "No" in this model's tokenizer."""
        if not hasattr(self, "_yes_no"):
            self._yes_no = (first_token(self.processor, "Yes"), first_token(self.processor, "No"))
        return self._yes_no

    def on_validation_epoch_end(self) -> None:
        skips = getattr(getattr(self.trainer, "datamodule", None), "skips", None)
        if skips is not None:  # refused conversations are skipped by the loader, never silently
            self.log("data/skipped_samples", float(skips.value))

    # --- checkpoints ------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = self.network.checkpoint_meta()

    # --- optimisation -----------------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.network.parameter_groups(hp.weight_decay), lr=hp.lr)
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


def yes_no_right(logits: torch.Tensor, labels: torch.Tensor, yes_no: tuple[int, int]) -> tuple[int, int]:
    """(right, asked) over the conversations whose answer starts with Yes or No: right where the first answer
    token's logit for the true word is above the other's, as a Yes/No reader of P(Yes) / (P(Yes) + P(No)) decides.

    val/loss hides this: a model can learn every VQA answer and still give one answer to every Yes/No question.
    """
    answered = labels[:, 1:] != IGNORE_INDEX
    has = answered.any(1)
    first = answered.int().argmax(1)  # the first answer token's position, shifted: predicted from the one before
    rows = has.nonzero().flatten()
    truth = labels[rows, first[rows] + 1]
    yes, no = yes_no
    asked = (truth == yes) | (truth == no)
    rows, truth = rows[asked], truth[asked]
    pair = logits[rows, first[rows]][:, [yes, no]]
    said_yes = pair[:, 0] > pair[:, 1]
    return int((said_yes == (truth == yes)).sum()), int(rows.numel())

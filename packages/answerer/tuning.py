"""Tuning the LLM witness on a data set's own annotated Q&A: LoRA over a chat LLM, as a LightningModule.

The model learns the replies of the chats `LLMWitness` sends (`tuning_data`), so after tuning it answers the same
prompt the way the data set's annotators did: one short sentence that states the asked attribute from memory.
Validation asks held-out questions of the validation split through `LLMWitness` and scores the answers with
`ireid.answerer.consistency`, the benchmark's measure.

Checkpoints hold the LoRA weights, the optimiser, the schedule and the step (the frozen base is loaded from
`source` again) and are written through a temporary file and a rename. Training data is a deterministic function
of the step, so `--ckpt_path last` resumes exactly where the run stopped. At the end of fit the adapter and
`witness.json` go to `out_dir`, which `build_witness("tuned:<out_dir>")` loads.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from torch import Tensor
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ireid.answerer.consistency import QUOTAS, sample_questions, score
from ireid.answerer.llm_witness import LLMWitness
from ireid.answerer.tuned import load_base, save_tuned_witness
from ireid.answerer.tuning_data import (
    IGNORE,
    Packed,
    PackedBatches,
    attention_mask,
    encode_example,
    pack,
    witness_examples,
)
from ireid.core.llm import LocalChatLLM
from ireid.core.loader import load_records
from ireid.core.records import QA, Record

LORA_DEFAULTS: dict[str, Any] = {
    "r": 16,
    "alpha": 32,
    "dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def reply_loss(lm: PreTrainedModel, batch: dict[str, Tensor]) -> Tensor:
    """Mean cross-entropy over the reply tokens of packed sequences; logits are computed at those positions only."""
    hidden = lm.base_model(
        input_ids=batch["input_ids"],
        attention_mask=attention_mask(batch["segments"], lm.dtype),
        position_ids=batch["positions"],
        use_cache=False,
    ).last_hidden_state
    scored = batch["targets"] != IGNORE
    logits = lm.get_output_embeddings()(hidden[scored]).float()
    return F.cross_entropy(logits, batch["targets"][scored])


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    """The learning-rate factor: linear from 0 over `warmup` steps, then cosine down to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class QuestionBatch:
    """Validation questions with their records; a plain class, so Lightning moves nothing in it to a device."""

    def __init__(self, items: list[tuple[Record, QA]]) -> None:
        self.items = items


class WitnessTuner(L.LightningModule):
    """LoRA over a chat LLM, trained on the witness's replies.

    Args:
        source: the base chat LLM: "tiny" (with `tokenizer`), "smollm2", or a local model directory.
        tokenizer: tiny only: the data set's tokenizer directory.
        lora: {r, alpha, dropout, target_modules}; missing keys take LORA_DEFAULTS.
        lr, weight_decay, warmup_ratio: AdamW, linear warm-up over that share of the steps, then cosine to 0.
        max_new_tokens: cap of validation answers (the witness's, 40).
        out_dir: where fit writes the adapter and witness.json at its end; None writes nothing.
        seed: of the adapter's random initialisation (the same seed, the same starting adapter).
    """

    def __init__(
        self,
        source: str = "smollm2",
        tokenizer: str | None = None,
        lora: dict[str, Any] | None = None,
        lr: float = 2e-4,
        weight_decay: float = 0.0,
        warmup_ratio: float = 0.05,
        max_new_tokens: int = 40,
        out_dir: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        unknown = set(lora or {}) - set(LORA_DEFAULTS)
        if unknown:
            raise ValueError(f"field 'lora': unknown keys {sorted(unknown)}; expected {sorted(LORA_DEFAULTS)}")
        self.save_hyperparameters()
        settings = {**LORA_DEFAULTS, **(lora or {})}
        base = load_base(source, tokenizer_dir=tokenizer)
        self.tokenizer: PreTrainedTokenizerBase = base.tokenizer
        config = LoraConfig(
            r=settings["r"],
            lora_alpha=settings["alpha"],
            lora_dropout=settings["dropout"],
            target_modules=list(settings["target_modules"]),
            task_type="CAUSAL_LM",
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = get_peft_model(base.model, config)
        self.val_consistent = torch.nn.ModuleDict({name: MeanMetric() for name in ("all", *QUOTAS)})
        self.strict_loading = False  # checkpoints hold the LoRA weights only
        self.train()  # the loader returns an eval-mode model; Lightning keeps the modes it finds at fit start

    # ------------------------------------------------------------------------------------------ checkpoints

    def _trainable_names(self) -> set[str]:
        return {name for name, p in self.named_parameters() if p.requires_grad}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self._trainable_names()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved, needed = set(checkpoint["state_dict"]), self._trainable_names()
        if saved != needed:
            raise ValueError(
                f"checkpoint field 'state_dict' does not fit this adapter: {len(needed - saved)} weights missing "
                f"(e.g. {sorted(needed - saved)[:2]}), {len(saved - needed)} unknown "
                f"(e.g. {sorted(saved - needed)[:2]}); do source and lora match the run that wrote it?"
            )

    # --------------------------------------------------------------------------------------------- training

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = reply_loss(self.model.get_base_model(), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=batch["input_ids"].shape[0])
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        total = int(self.trainer.estimated_stepping_batches)
        if total < 1 or total == math.inf:
            raise ValueError("set trainer.max_steps: the training stream has no end")
        warmup = round(self.hparams.warmup_ratio * total)
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine(step, total, warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # ------------------------------------------------------------------------------------------- validation

    def witness(self, batch_size: int = 16) -> LLMWitness:
        """The model being tuned as the witness it becomes (the paper's prompt, greedy, `max_new_tokens`)."""
        llm = LocalChatLLM(self.model, self.tokenizer, batch_size=batch_size)
        return LLMWitness(llm, max_new_tokens=self.hparams.max_new_tokens)

    def validation_step(self, batch: QuestionBatch, batch_idx: int) -> None:
        items = batch.items
        questions, memories = [qa.question for _, qa in items], [record.fine_description for record, _ in items]
        answers = self.witness(len(items)).answer(questions, memories)
        for answer, (record, qa) in zip(answers, items, strict=True):
            consistent = float(score(answer, record, qa)["consistent"])
            self.val_consistent["all"].update(consistent)
            self.val_consistent[qa.qtype].update(consistent)

    def on_validation_epoch_end(self) -> None:
        for name, metric in self.val_consistent.items():
            if metric.update_count:
                key = "val/consistent" if name == "all" else f"val/consistent_{name}"
                self.log(key, metric.compute(), prog_bar=name == "all")  # compute() syncs across processes
            metric.reset()

    # ----------------------------------------------------------------------------------------------- export

    def on_fit_end(self) -> None:
        if self.hparams.out_dir is None or not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        data = getattr(self.trainer.datamodule, "summary", {})
        training = {"steps": self.trainer.global_step, "lora": {**LORA_DEFAULTS, **(self.hparams.lora or {})}}
        training.update(lr=self.hparams.lr, data=data, validation=metrics)
        save_tuned_witness(self.hparams.out_dir, self.model, self.tokenizer, self.hparams.source, training)


class WitnessTuningData(L.LightningDataModule):
    """Packed witness chats of a shard folder's training split and scored questions of its validation split.

    Args:
        data: a shard folder written by ireid (the synthetic world or a converted data set with Q&A pairs).
        tokenizer: the model's tokenizer (the CLI links it from the model).
        pairs: Q&A pairs to train on, drawn record by record with `seed`.
        pairs_per_record: at most this many pairs per record (None: all; they share one packed sequence).
        batch_size: packed sequences (records) per micro-batch.
        val_questions: validation questions (0: no validation); they need records with `attributes`.
        val_batch_size: questions answered per generation batch.
    """

    def __init__(
        self,
        data: str,
        tokenizer: PreTrainedTokenizerBase | None = None,
        pairs: int = 2000,
        pairs_per_record: int | None = None,
        batch_size: int = 2,
        val_questions: int = 50,
        val_batch_size: int = 16,
        train_split: str = "train",
        val_split: str = "val",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = tokenizer
        self.sequences: list[Packed] = []
        self.val_items: list[tuple[Record, QA]] = []
        self.summary: dict[str, Any] = {}

    def setup(self, stage: str) -> None:
        if self.tokenizer is None:
            raise ValueError("WitnessTuningData needs the model's tokenizer (field 'tokenizer')")
        h = self.hparams
        if not self.sequences:
            groups = witness_examples(load_records(h.data, h.train_split), h.pairs, h.seed, h.pairs_per_record)
            self.sequences = [pack([encode_example(self.tokenizer, e) for e in group]) for group in groups]
            tokens = sum(len(s.input_ids) for s in self.sequences)
            self.summary = {"data": h.data, "pairs": sum(len(g) for g in groups), "sequences": len(groups)}
            self.summary["tokens"] = tokens
        if h.val_questions and not self.val_items:
            self.val_items = sample_questions(load_records(h.data, h.val_split), h.val_questions, h.seed)

    def train_dataloader(self) -> PackedBatches:
        trainer = self.trainer
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        return PackedBatches(
            self.sequences,
            self.hparams.batch_size,
            pad_id,
            seed=self.hparams.seed,
            start=trainer.global_step * trainer.accumulate_grad_batches,  # restored before this is called
            reader=trainer.global_rank,
            readers=trainer.world_size,
        )

    def val_dataloader(self) -> DataLoader | list:
        if not self.val_items:
            return []
        return DataLoader(self.val_items, batch_size=self.hparams.val_batch_size, collate_fn=QuestionBatch)

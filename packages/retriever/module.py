"""The retriever LightningModule: CLIP trained with IRRA's objectives (SDM, ID, IRR/MLM).

Validation and test report R@1/5/10, mAP and mINP three times: with the fine-grained descriptions, with
the initial descriptions (the vague start of a dialogue) and with partial descriptions (initial + half of
the sub-captions, a dialogue half-way through).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch import nn

from ireid.core.metrics import RetrievalMetrics
from ireid.retriever.data import EVAL_VIEWS
from ireid.retriever.losses import gathered_sdm_loss, id_loss
from ireid.retriever.mlm import mask_tokens, mlm_loss
from ireid.retriever.model import RetrieverEncoding, RetrieverSettings, build_retriever_net, parse_losses

NEW_MODULES = ("classifier", "mlm", "attribute_heads")


class RetrieverModule(L.LightningModule, RetrieverEncoding):
    """CLIP dual encoder with IRRA losses; the network is `model.RetrieverNet`, its parts held here.

    The parts are attributes of this module under the network's names (`features`, `classifier`, `mlm`,
    `attribute_heads`), so checkpoint keys are the network's and `inference.py` loads them without Lightning.
    Encoding (`tokenize`, `encode_text`, `encode_images`) is the network's, through `RetrieverEncoding`.

    Args:
        data_dir: shard folder; its train split sizes the ID classifier and trains the tiny tokenizer.
        model: `tiny`, a local path or a hub id of CLIP weights (offline).
        model_overrides: merged into the tiny config (see `ireid.core.tiny_configs`).
        losses: `sdm` plus any of `id`, `mlm`, `attr` joined by `+` (e.g. `sdm+id+mlm`, `sdm+attr`).
        image_size: (H, W) of the person crops; the visual position grid is resized to it.
        text_length: text positions are interpolated to this many (192 for real CLIP in LLaVA-ReID).
        temperature: SDM temperature τ (logit scale 1/τ).
        lr, new_module_lr_factor, bias_lr_factor, weight_decay, weight_decay_bias, adam_eps: IRRA's
            parameter groups: new modules (ID classifier, cross-modal MLM, attribute heads) get lr × factor, biases
            lr × bias factor and their own weight decay; Adam with eps 1e-3.
        warmup_fraction, warmup_start_factor: linear warm-up over this share of steps, then cosine to 0.
        attr_weight: weight of the `attr` term (per-attribute classifiers on image and full-text features).
        attr_lr_factor: lr × this for the attribute heads' weights (None: the new-module factor). A from-scratch
            model needs them fast: at IRRA's 5× the heads barely leave the attributes' priors in the demo's 500
            steps, so they cannot pull the two towers into the shared space they define.
        attribute_values: the attribute vocabulary {name: values}; read from the train split's records
            when `attr` is requested and it is not given (then stored with the checkpoint).
    """

    def __init__(
        self,
        data_dir: str,
        model: str = "tiny",
        vocab_size: int = 2048,
        model_overrides: dict[str, Any] | None = None,
        losses: str = "sdm+id+mlm",
        num_ids: int | None = None,
        image_size: tuple[int, int] = (128, 64),
        text_length: int = 128,
        temperature: float = 0.02,
        mlm_layers: int = 4,
        mlm_heads: int | None = None,
        mlm_prob: float = 0.15,
        lr: float = 1e-5,
        new_module_lr_factor: float = 5.0,
        bias_lr_factor: float = 2.0,
        weight_decay: float = 4e-5,
        weight_decay_bias: float = 0.0,
        adam_eps: float = 1e-3,
        warmup_fraction: float = 0.1,
        warmup_start_factor: float = 0.1,
        attr_weight: float = 1.0,
        attr_lr_factor: float | None = None,
        attribute_values: dict[str, list[str]] | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if attr_lr_factor is not None and attr_lr_factor <= 0:
            raise ValueError(f"model.attr_lr_factor must be positive (or null), got {attr_lr_factor}")
        terms = parse_losses(losses)
        self.use_id = "id" in terms
        self.use_mlm = "mlm" in terms
        self.use_attr = "attr" in terms
        self.save_hyperparameters()
        settings = RetrieverSettings.from_hparams(self.hparams).resolved()
        # Stored with every checkpoint, also under LightningCLI (which saves the arguments as given: None here).
        self.hparams.num_ids, self.hparams.attribute_values = settings.num_ids, settings.attribute_values
        net = build_retriever_net(settings)
        self.tokenizer = net.tokenizer
        self.features = net.features
        if self.use_id:
            self.classifier = net.classifier
        if self.use_mlm:
            self.mlm = net.mlm
            self.mlm_generator = torch.Generator().manual_seed(seed)
        if self.use_attr:
            self.attribute_heads = net.attribute_heads
        self.metrics = nn.ModuleDict({name: RetrievalMetrics() for name in EVAL_VIEWS})

    @property
    def text_length(self) -> int:
        """Token budget of a text (RetrieverEncoding reads it)."""
        return self.hparams.text_length

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) the crops must have: the vision tower's position grid was resized to it."""
        return tuple(self.hparams.image_size)

    # --- training -----------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, pids = batch["images"], batch["pids"]
        texts, partial = batch["texts"], batch.get("partial_texts") or []
        if self.use_mlm:  # the MLM head reads every token of both towers
            text = self.tokenize(texts)
            image_tokens = self.features.image_tokens(images)
            image_feats = image_tokens[:, 0]
        else:
            image_feats = self.features.image_pooled(images)
        # fine and partial texts in one call, so that its length buckets mix both
        all_feats = self.features.text_pooled(**self.tokenize(texts + partial)).float()
        image_feats, text_feats, partial_feats = image_feats.float(), all_feats[: len(texts)], all_feats[len(texts) :]
        # all-gathered across processes: every rank scores its texts against every rank's images
        scale = 1.0 / self.hparams.temperature
        terms = {"sdm": gathered_sdm_loss(image_feats, text_feats, pids, logit_scale=scale)}
        if partial:  # `partial_pairs`: the same images against a partial description each
            terms["sdm_partial"] = gathered_sdm_loss(image_feats, partial_feats, pids, scale)
        if self.use_id:
            terms["id"] = id_loss(self.classifier, image_feats, text_feats, pids)
        if self.use_mlm:
            terms["mlm"] = self._mlm_loss(text, image_tokens)
        if self.use_attr:
            terms["attr"] = self.hparams.attr_weight * self._attr_loss(batch, image_feats, text_feats)
        loss = sum(terms.values())
        batch_size = len(pids)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        return loss

    def _mlm_loss(self, text: dict[str, torch.Tensor], image_tokens: torch.Tensor) -> torch.Tensor:
        special = set(self.tokenizer.all_special_ids)
        masked, labels = mask_tokens(
            text["input_ids"].cpu(),
            text["attention_mask"].cpu(),
            special_ids=special,
            mask_id=self.tokenizer.mask_token_id,
            vocab_size=len(self.tokenizer),
            generator=self.mlm_generator,
            prob=self.hparams.mlm_prob,
        )
        masked_tokens, _ = self.features.text_tokens(masked.to(self.device), text["attention_mask"])
        labels = labels.to(self.device)
        chosen = labels != -100  # logits only where a token was masked: full-vocabulary logits everywhere are large
        logits = self.mlm(masked_tokens, image_tokens, text_padding_mask=text["attention_mask"] == 0, positions=chosen)
        return mlm_loss(logits, labels[chosen])

    def _attr_loss(self, batch: dict[str, Any], image_feats: torch.Tensor, text_feats: torch.Tensor) -> torch.Tensor:
        """Attribute CE on every image and on the texts that state every attribute: a partial description
        does not say whether the person wore a hat, so its features are not asked to."""
        labels = self.attribute_heads.labels(batch["attributes"], batch["keys"]).to(self.device)
        image = self.attribute_heads.loss(image_feats, labels)
        full = batch["full_text"].to(self.device)
        if not full.any():
            return image
        return (image + self.attribute_heads.loss(text_feats[full], labels[full])) / 2

    # --- evaluation ---------------------------------------------------------------------------------
    def _eval_step(self, batch: dict[str, Any]) -> None:
        gallery = self.encode_images(batch["images"])
        for name in EVAL_VIEWS:
            self.metrics[name].update_gallery(gallery, batch["pids"])
            texts = batch[f"{name}_texts"]
            if texts:
                self.metrics[name].update(self.encode_text(texts), batch[f"{name}_pids"].to(self.device))

    def _eval_epoch_end(self, stage: str) -> None:
        skips = getattr(getattr(self.trainer, "datamodule", None), "skips", None)
        if skips is not None:  # undecodable samples are skipped by the loader, never silently
            self.log("data/skipped_samples", float(skips.value))
        for name, metric in self.metrics.items():
            if metric.query_pids:
                for key, value in metric.compute().items():
                    self.log(f"{stage}/{name}/{key}", value, prog_bar=(name == "fine" and key == "R1"), sync_dist=False)
            metric.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # --- optimisation -------------------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """IRRA's learning rates: new modules (ID classifier, cross-modal MLM, attribute heads) × factor, the
        attribute heads' weights × their own factor; biases × bias factor with their own weight decay. Grouped by
        rule, so there are at most five groups to log."""
        hp = self.hparams
        attr_factor = hp.new_module_lr_factor if hp.attr_lr_factor is None else hp.attr_lr_factor
        rules = {
            "clip": (hp.lr, hp.weight_decay),
            "clip-bias": (hp.lr * hp.bias_lr_factor, hp.weight_decay_bias),
            "new": (hp.lr * hp.new_module_lr_factor, hp.weight_decay),
            "new-bias": (hp.lr * hp.bias_lr_factor, hp.weight_decay_bias),
            "attr": (hp.lr * attr_factor, hp.weight_decay),
        }
        params: dict[str, list[nn.Parameter]] = {name: [] for name in rules}
        for name, param in self.named_parameters():
            if param.requires_grad:
                module = name.split(".")[0]
                group = "new" if module in NEW_MODULES else "clip"
                if name.endswith("bias"):
                    group += "-bias"
                elif module == "attribute_heads":
                    group = "attr"
                params[group].append(param)
        return [
            {"params": ps, "lr": rules[name][0], "weight_decay": rules[name][1], "name": name}
            for name, ps in params.items()
            if ps
        ]

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer = torch.optim.Adam(self.param_groups(), lr=hp.lr, betas=(0.9, 0.999), eps=hp.adam_eps)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("the cosine schedule needs a known length: set trainer.max_steps")
        warmup = max(1, int(total * hp.warmup_fraction))

        def factor(step: int) -> float:
            if step < warmup:
                return hp.warmup_start_factor + (1 - hp.warmup_start_factor) * step / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

"""Selector warm-up (LLaVA-ReID Appendix C.2): BCE towards the retriever's own top-c before joint training.

Each training list arrives in retriever rank order, so the targets are 1 on its first c candidates and 0 on
the other real ones. The loss is BCE between those targets and the selector's relaxed top-c k-hot: the
relaxation joint training samples through, here without the Gumbel noise. With the noise, each list's
gradient is dominated by its sample (and relaxed entries above 1 get no BCE gradient): on the synthetic
lists a small selector trained that way stayed at chance while the noise-free relaxation learned.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from ireid.selector.inference import CONFIG_KEY
from ireid.selector.model import Selector

EPS = 1e-6  # BCE needs the relaxed k-hot inside (0, 1); an entry can exceed 1 when one weight dominates


def rank_targets(mask: Tensor, num_select: int) -> Tensor:
    """1.0 on the first `num_select` slots of every list (the retriever's top-c), 0.0 elsewhere."""
    return (torch.arange(mask.shape[1], device=mask.device) < num_select).expand_as(mask).float()


class SelectorWarmup(L.LightningModule):
    """Trains a `Selector` to reproduce the retriever's top-c.

    Args:
        net: the `Selector` to train (in a config: `net: {class_path: ireid.selector.model.Selector, init_args:
            {...}}`); handed in rather than built here, so its arguments are stated once, where the network is.
        num_select: c, the candidates chosen per list (4 in LLaVA-ReID).
        temperature: τ of the relaxed top-c the loss is taken on.
        lr, weight_decay: AdamW.
    Logs `train/loss`, `val/top_c_recall` (share of the targets the selector's top-c contains; with
    `keep_first` only the c − 1 slots the model chooses count) and `val/chance_recall` (its value for a
    uniformly random choice). The hyper-parameters hold `net.config` as `selector_config`, which is what
    `ireid.selector.inference.load_selector` rebuilds the network from; the network's weights are `selector.*`.
    """

    def __init__(
        self,
        net: Selector,
        num_select: int = 4,
        temperature: float = 1.0,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
    ):
        super().__init__()
        if num_select <= int(net.keep_first):
            raise ValueError(
                f"num_select={num_select} leaves the selector nothing to choose (keep_first={net.keep_first})"
            )
        self.save_hyperparameters(ignore=["net"])  # the network's weights are in the state dict, not here
        self.save_hyperparameters({CONFIG_KEY: net.config})
        self.selector = net

    def forward(self, dialogue: Tensor, candidates: Tensor, mask: Tensor) -> Tensor:
        return self.selector(dialogue, candidates, mask)

    def _free_slots(self, mask: Tensor) -> Tensor:
        """The slots the model decides: real ones, less the always-kept rank-1 slot."""
        free = mask.clone()
        if self.selector.keep_first:
            free[:, 0] = False
        return free

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        hp = self.hparams
        mask = batch["mask"]
        khot = self.selector.sample(
            batch["dialogue"], batch["candidates"], mask, hp.num_select, hp.temperature, mode="soft", noise=False
        )
        free = self._free_slots(mask)
        loss = F.binary_cross_entropy(khot[free].float().clamp(EPS, 1 - EPS), rank_targets(mask, hp.num_select)[free])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(mask))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        c, offset = self.hparams.num_select, int(self.selector.keep_first)
        mask = batch["mask"]
        picked = self.selector.select(batch["dialogue"], batch["candidates"], mask, c)[:, offset:]
        recall = (picked < c).float().mean()
        chance = ((c - offset) / (mask.sum(dim=1) - offset).float()).mean()
        self.log("val/top_c_recall", recall, prog_bar=True, batch_size=len(mask), sync_dist=True)
        self.log("val/chance_recall", chance, batch_size=len(mask), sync_dist=True)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        return torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)

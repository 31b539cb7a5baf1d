"""Training the attribute net (`ireid.core.attribute_net`) with Lightning: its data module and its training module.

`AttributeImages` keeps a split's annotated images as compact uint8 crops (decoded once, about 200 MB for the
default world's 8,000) with one label per attribute; `AttributeNetModule` trains the network on them with AdamW, a
cosine schedule and horizontal flips, and reports the validation split's loss and mean accuracy per attribute.
The vocabulary comes from the training annotations, so the CLI links it from the data module into the model
(`configs/attribute_net/synthetic.yaml`; the steps that run it: `ireid.app.attribute_net_pipeline`).
`fit_attribute_net` trains one in memory, without logs or checkpoints, for callers that hold images already.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer, seed_everything
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ireid.core.attribute_labels import IGNORE, attribute_labels, attribute_loss
from ireid.core.attribute_net import AttributeNet, annotated_images, crops, normalise
from ireid.core.checkpoints import read_checkpoint_file
from ireid.core.records import attribute_values


class CropLabels(Dataset):
    """uint8 crops [N, 3, H, W] and their labels [N, A]; a batch is gathered in one indexing."""

    def __init__(self, pixels: Tensor, targets: Tensor) -> None:
        self.pixels, self.targets = pixels, targets

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.pixels[index], self.targets[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        return self.pixels[indices], self.targets[indices]


def _as_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    return batch


class AttributeImages(LightningDataModule):
    """A shard folder's annotated images for the attribute net: `split` to train on, `val_split` to validate on.

    Args:
        data_dir: a shard folder whose records annotate `attributes`.
        split / val_split: the splits read (`val_split` None: no validation).
        batch_size: crops per training step.
    """

    def __init__(self, data_dir: str, split: str = "train", val_split: str | None = "val", batch_size: int = 64):
        super().__init__()
        self.data_dir, self.split, self.val_split, self.batch_size = data_dir, split, val_split, batch_size
        self._train: tuple[Sequence[bytes | Image.Image], Sequence[Mapping[str, str]]] | None = None
        self.train_set: CropLabels | None = None
        self.val_set: CropLabels | None = None

    @classmethod
    def from_memory(
        cls,
        images: Sequence[bytes | Image.Image],
        attributes: Sequence[Mapping[str, str]],
        batch_size: int = 64,
    ) -> AttributeImages:
        """Training images already in hand (no validation split)."""
        if len(images) != len(attributes) or not images:
            raise ValueError(f"{len(images)} images for {len(attributes)} annotations")
        data = cls("", val_split=None, batch_size=batch_size)
        data._train = (images, attributes)
        return data

    def _training_images(self) -> tuple[Sequence[bytes | Image.Image], Sequence[Mapping[str, str]]]:
        if self._train is None:
            self._train = annotated_images(self.data_dir, self.split)
        return self._train

    @property
    def vocabulary(self) -> dict[str, list[str]]:
        """Each annotated attribute's values in the training split, sorted (the network's head order)."""
        vocabulary = attribute_values(self._training_images()[1])
        if not vocabulary:
            raise ValueError(f"{self.data_dir or 'the images'} ({self.split}): no annotated attributes to learn from")
        return vocabulary

    def setup(self, stage: str) -> None:
        vocabulary = self.vocabulary
        if self.train_set is None:
            images, attributes = self._training_images()
            self.train_set = CropLabels(crops(images), attribute_labels(vocabulary, attributes))
        if self.val_split and self.val_set is None:
            images, attributes = annotated_images(self.data_dir, self.val_split)
            self.val_set = CropLabels(crops(images), attribute_labels(vocabulary, attributes))

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, collate_fn=_as_batch)

    def val_dataloader(self) -> DataLoader | list:
        if self.val_set is None:
            return []
        return DataLoader(self.val_set, batch_size=256, collate_fn=_as_batch)


class AttributeNetModule(LightningModule):
    """Trains an `AttributeNet` to name each annotated attribute: cross-entropy averaged over the attributes a batch
    annotates, AdamW with a cosine decay over `trainer.max_steps`, each crop mirrored with probability `flip`."""

    def __init__(
        self,
        vocabulary: dict[str, list[str]],
        width: int = 16,
        hidden: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        flip: float = 0.5,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = AttributeNet(vocabulary, width=width, hidden=hidden)
        self._val_right: Tensor | None = None
        self._val_known: Tensor | None = None

    def losses(self, pixels: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The mean cross-entropy over the annotated attributes, and the logits it came from."""
        logits = self.net(pixels)
        return attribute_loss([logits[name] for name in self.net.vocabulary], targets), logits

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        crops_uint8, targets = batch
        pixels = normalise(crops_uint8)
        mirrored = torch.rand(len(pixels)) < self.hparams.flip
        pixels[mirrored] = pixels[mirrored].flip(3)
        loss, _ = self.losses(pixels, targets)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(pixels))
        return loss

    def on_validation_epoch_start(self) -> None:
        attributes = len(self.net.vocabulary)
        self._val_right, self._val_known = torch.zeros(attributes), torch.zeros(attributes)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        crops_uint8, targets = batch
        loss, logits = self.losses(normalise(crops_uint8), targets)
        self.log("val/loss", loss, batch_size=len(targets))
        assert self._val_right is not None and self._val_known is not None
        for a, name in enumerate(self.net.vocabulary):
            known = targets[:, a] != IGNORE
            self._val_right[a] += (logits[name].argmax(-1)[known] == targets[known, a]).sum().cpu()
            self._val_known[a] += known.sum().cpu()

    def on_validation_epoch_end(self) -> None:
        assert self._val_right is not None and self._val_known is not None
        seen = self._val_known > 0
        if seen.any():
            self.log("val/accuracy", (self._val_right[seen] / self._val_known[seen]).mean(), prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimiser = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        steps = int(self.trainer.max_steps)
        if steps <= 0:
            raise ValueError("the attribute net's cosine schedule needs trainer.max_steps")
        cosine = torch.optim.lr_scheduler.LambdaLR(
            optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1)))
        )
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


def net_from_checkpoint(path: str | Path) -> AttributeNet:
    """The network of an `AttributeNetModule` checkpoint (read weights-only), in eval mode."""
    checkpoint = read_checkpoint_file(path, "attribute net checkpoint")
    settings = checkpoint.get("hyper_parameters", {})
    if "vocabulary" not in settings:
        raise ValueError(f"{path}: field 'hyper_parameters.vocabulary' missing (not an attribute net checkpoint)")
    net = AttributeNet(settings["vocabulary"], width=settings.get("width", 16), hidden=settings.get("hidden", 256))
    prefix = "net."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"{path}: field 'state_dict' does not fit the network: {str(error).splitlines()[0]}") from None
    return net.eval()


def fit_attribute_net(
    images: Sequence[bytes | Image.Image],
    attributes: Sequence[Mapping[str, str]],
    steps: int = 1200,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> AttributeNet:
    """An `AttributeNet` trained in memory for `steps` batches (no logs, checkpoints or validation)."""
    seed_everything(seed, verbose=False)
    data = AttributeImages.from_memory(images, attributes, batch_size)
    module = AttributeNetModule(data.vocabulary, lr=lr)
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                      enable_progress_bar=progress, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, data)
    return module.net.eval()

"""Text-image pairs from ireid shards for retriever training and evaluation.

Batches carry raw text; the LightningModule tokenises (it owns the tokenizer), so this module needs no
model. Evaluation batches hold each image once for the gallery and its query texts twice over: the
fine-grained texts and the initial (coarse) description, so both R@1 figures come from one pass.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from ireid.core.loader import Sample, ShardDataset, SkipCounter, split_urls
from ireid.core.records import Record
from ireid.retriever.rda import rda_text
from ireid.retriever.transforms import ImageTransform

TextField = Literal["fine", "captions", "initial"]


def record_texts(record: Record, field: TextField) -> list[str]:
    """The texts of one kind; `fine` falls back to captions and `captions` to the fine description."""
    if field == "initial":
        return [record.initial_description] if record.initial_description else []
    fine = [record.fine_description] if record.fine_description else []
    if field == "fine":
        return fine or record.captions
    return record.captions or fine


@dataclass
class TrainPair:
    image: torch.Tensor
    text: str
    pid: int


@dataclass
class EvalItem:
    image: torch.Tensor
    pid: int
    fine: list[str]
    initial: list[str]


class TrainSampleTransform:
    """Sample → one augmented image and one of its texts (an RDA recombination when enabled)."""

    def __init__(self, size_hw: tuple[int, int], text_field: TextField, rda: bool, seed: int):
        self.image = ImageTransform(size_hw, train=True, seed=seed)
        self.text_field = text_field
        self.rda = rda
        self.rng = random.Random(seed)

    def __call__(self, sample: Sample) -> TrainPair | None:
        record = sample.record
        if self.rda and record.rda_groups:
            text = rda_text(record.rda_groups, self.rng)
        else:
            texts = record_texts(record, self.text_field)
            if not texts:
                return None
            text = self.rng.choice(texts)
        return TrainPair(self.image(sample.image), text, record.pid)


class EvalSampleTransform:
    def __init__(self, size_hw: tuple[int, int], text_field: TextField):
        self.image = ImageTransform(size_hw, train=False)
        self.text_field = text_field

    def __call__(self, sample: Sample) -> EvalItem:
        record = sample.record
        return EvalItem(
            self.image(sample.image),
            record.pid,
            record_texts(record, self.text_field),
            record_texts(record, "initial"),
        )


def collate_train(items: list[TrainPair | None]) -> dict[str, Any]:
    items = [it for it in items if it is not None]
    return {
        "images": torch.stack([it.image for it in items]),
        "texts": [it.text for it in items],
        "pids": torch.tensor([it.pid for it in items]),
    }


def collate_eval(items: list[EvalItem]) -> dict[str, Any]:
    def flat(name: str) -> tuple[list[str], torch.Tensor]:
        texts = [(t, it.pid) for it in items for t in getattr(it, name)]
        return [t for t, _ in texts], torch.tensor([p for _, p in texts], dtype=torch.long)

    fine_texts, fine_pids = flat("fine")
    initial_texts, initial_pids = flat("initial")
    return {
        "images": torch.stack([it.image for it in items]),
        "pids": torch.tensor([it.pid for it in items]),
        "fine_texts": fine_texts,
        "fine_pids": fine_pids,
        "initial_texts": initial_texts,
        "initial_pids": initial_pids,
    }


class RetrievalDataModule(L.LightningDataModule):
    """Training pairs from `train`, evaluation on `val` (validate) and `test` (test) of a shard folder."""

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        num_workers: int = 2,
        image_size: tuple[int, int] = (128, 64),
        text_field: TextField = "fine",
        rda: bool = False,
        shuffle_buffer: int = 2000,
        samples_per_epoch: int | None = None,
        val_split: str = "val",
        test_split: str = "test",
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.skips = SkipCounter()

    def _loader(self, dataset: ShardDataset, batch_size: int, collate: Any) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.hparams.num_workers,
            collate_fn=collate,
            persistent_workers=False,
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        hp = self.hparams
        dataset = ShardDataset(
            split_urls(self.data_dir, "train"),
            transform=TrainSampleTransform(tuple(hp.image_size), hp.text_field, hp.rda, hp.seed),
            shuffle=True,
            shuffle_buffer=hp.shuffle_buffer,
            seed=hp.seed,
            samples_per_epoch=hp.samples_per_epoch,
            skip_counter=self.skips,
        )
        return self._loader(dataset, hp.batch_size, collate_train)

    def _eval_loader(self, split: str) -> torch.utils.data.DataLoader:
        hp = self.hparams
        dataset = ShardDataset(
            split_urls(self.data_dir, split),
            transform=EvalSampleTransform(tuple(hp.image_size), hp.text_field),
            skip_counter=self.skips,
        )
        return self._loader(dataset, hp.eval_batch_size, collate_eval)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._eval_loader(self.hparams.val_split)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._eval_loader(self.hparams.test_split)

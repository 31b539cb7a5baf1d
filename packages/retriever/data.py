"""Text-image pairs from ireid shards for retriever training and evaluation.

Batches carry raw text; the LightningModule tokenises (it owns the tokenizer), so this module needs no
model. Evaluation batches hold each image once for the gallery and its query texts three times over: the
fine-grained texts, the initial (coarse) description and a partial description (initial + half of the
sub-captions, what a dialogue half-way through knows), so all R@1 figures come from one pass.

Partial training texts (`partial_text_prob`) put the interactive loop's queries in distribution: the
initial description followed by a random subset of the witness's answers, in random order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from ireid.core.loader import Sample, ShardDataset, SkipCounter, split_urls
from ireid.core.records import Record
from ireid.retriever.rda import rda_text
from ireid.retriever.transforms import ImageTransform

TextField = Literal["fine", "captions", "initial"]
PartialSource = Literal["answers", "sub_captions"]


def record_texts(record: Record, field: TextField) -> list[str]:
    """The texts of one kind; `fine` falls back to captions and `captions` to the fine description."""
    if field == "initial":
        return [record.initial_description] if record.initial_description else []
    fine = [record.fine_description] if record.fine_description else []
    if field == "fine":
        return fine or record.captions
    return record.captions or fine


def partial_statements(record: Record, source: PartialSource) -> list[str]:
    """What a dialogue adds to the initial description: the witness's answers as the loop receives them
    ("No, she wore black sneakers."), or the sub-captions (the same facts as plain statements). Records
    without a Q&A bank fall back to their sub-captions."""
    if source == "answers" and record.qas:
        return [qa.answer for qa in record.qas]
    return list(record.sub_captions)


def partial_text(initial: str, statements: Sequence[str], rng: random.Random, count: int | None = None) -> str:
    """The initial description, then `count` of the statements (uniformly 0..all when None), a random
    subset in random order: any point of a dialogue, answers arriving in any order."""
    if count is None:
        count = rng.randint(0, len(statements))
    return " ".join([initial, *rng.sample(list(statements), count)])


def eval_partial_texts(record: Record, seed: int) -> list[str]:
    """The fixed partial query of an evaluation record: initial + a seeded random half of its sub-captions.

    Seeded by the record's key, so the query does not depend on loading order; empty without an initial
    description or sub-captions (nothing partial to say)."""
    if not record.initial_description or not record.sub_captions:
        return []
    rng = random.Random(f"{seed}/{record.key}")
    half = len(record.sub_captions) // 2
    return [partial_text(record.initial_description, record.sub_captions, rng, half)]


@dataclass
class TrainPair:
    image: torch.Tensor
    text: str
    pid: int
    key: str = ""
    full_text: bool = True  # the text states every attribute (fine, captions, RDA), not part of them
    attributes: dict[str, str] = field(default_factory=dict)
    partial: str | None = None  # a second, partial text of the same image (`partial_pairs`)


@dataclass
class EvalItem:
    image: torch.Tensor
    pid: int
    fine: list[str]
    initial: list[str]
    partial: list[str]


class TrainSampleTransform:
    """Sample → one augmented image and one of its texts: with probability `partial_text_prob` a partial
    description (records with an initial description), else an RDA recombination when enabled, else a
    text of `text_field`. With `partial_pairs` the image also gets a partial description as a second text."""

    def __init__(
        self,
        size_hw: tuple[int, int],
        text_field: TextField,
        rda: bool,
        seed: int,
        partial_text_prob: float = 0.0,
        partial_source: PartialSource = "answers",
        erase_prob: float = 0.5,
        crop_pad: int = 10,
        partial_pairs: bool = False,
        rda_share: float = 1.0,
    ):
        if not 0.0 <= partial_text_prob <= 1.0:
            raise ValueError(f"partial_text_prob must be in [0, 1], got {partial_text_prob}")
        self.partial_pairs = partial_pairs
        self.image = ImageTransform(size_hw, train=True, pad=crop_pad, erase_p=erase_prob, seed=seed)
        self.text_field = text_field
        if not 0.0 <= rda_share <= 1.0:
            raise ValueError(f"rda_share must be in [0, 1], got {rda_share}")
        self.rda = rda
        self.rda_share = rda_share
        self.partial_text_prob = partial_text_prob
        self.partial_source = partial_source
        self.rng = random.Random(seed)

    def _partial(self, record: Record) -> bool:
        # no draw at probability 0, so runs without partial texts keep their random stream
        if not (self.partial_text_prob and record.initial_description):
            return False
        return self.rng.random() < self.partial_text_prob

    def _rda(self, record: Record) -> bool:
        """ICL §3.3 mixes augmented texts with the originals: `rda_share` of the draws recombine the RDA groups."""
        if not (self.rda and record.rda_groups):
            return False
        # no draw at share 1, so runs that always recombine keep their random stream
        return self.rda_share >= 1.0 or self.rng.random() < self.rda_share

    def __call__(self, sample: Sample) -> TrainPair | None:
        record = sample.record
        full_text = True
        if self._partial(record):
            text = partial_text(record.initial_description, partial_statements(record, self.partial_source), self.rng)
            full_text = False
        elif self._rda(record):
            text = rda_text(record.rda_groups, self.rng)
        else:
            texts = record_texts(record, self.text_field)
            if not texts:
                return None
            text = self.rng.choice(texts)
        partial = None
        if self.partial_pairs and record.initial_description:
            partial = partial_text(
                record.initial_description, partial_statements(record, self.partial_source), self.rng
            )
        return TrainPair(self.image(sample.image), text, record.pid, record.key, full_text, record.attributes, partial)


EVAL_VIEWS = ("fine", "initial", "partial")


class EvalSampleTransform:
    def __init__(self, size_hw: tuple[int, int], text_field: TextField, seed: int = 0):
        self.image = ImageTransform(size_hw, train=False)
        self.text_field = text_field
        self.seed = seed

    def __call__(self, sample: Sample) -> EvalItem:
        record = sample.record
        return EvalItem(
            self.image(sample.image),
            record.pid,
            record_texts(record, self.text_field),
            record_texts(record, "initial"),
            eval_partial_texts(record, self.seed),
        )


def collate_train(items: list[TrainPair | None]) -> dict[str, Any]:
    items = [it for it in items if it is not None]
    return {
        "images": torch.stack([it.image for it in items]),
        "texts": [it.text for it in items],
        "pids": torch.tensor([it.pid for it in items]),
        "keys": [it.key for it in items],
        "full_text": torch.tensor([it.full_text for it in items], dtype=torch.bool),
        "attributes": [it.attributes for it in items],
        # a record without an initial description pairs its own text again, so every rank has a full batch
        "partial_texts": [it.partial or it.text for it in items] if any(it.partial for it in items) else None,
    }


def collate_eval(items: list[EvalItem]) -> dict[str, Any]:
    def flat(name: str) -> tuple[list[str], torch.Tensor]:
        texts = [(t, it.pid) for it in items for t in getattr(it, name)]
        return [t for t, _ in texts], torch.tensor([p for _, p in texts], dtype=torch.long)

    batch: dict[str, Any] = {
        "images": torch.stack([it.image for it in items]),
        "pids": torch.tensor([it.pid for it in items]),
    }
    for view in EVAL_VIEWS:
        batch[f"{view}_texts"], batch[f"{view}_pids"] = flat(view)
    return batch


class RetrievalDataModule(L.LightningDataModule):
    """Training pairs from `train`, evaluation on `val` (validate) and `test` (test) of a shard folder.

    `partial_text_prob`: share of training texts that are partial descriptions (initial + a random subset
    of `partial_source`: the Q&A answers or the sub-captions); the rest stay `text_field` (or RDA).
    `partial_pairs`: every training image also pairs with a partial description, matched by a second SDM term,
    so dialogue-shaped queries are learnt without taking fine texts away (which partial_text_prob does).
    `rda`, `rda_share`: ICL's RDA (§3.3): that share of training texts recombine the record's `rda_groups`, the rest
    stay `text_field`; the paper mixes the two (1.0: every text recombined).
    `cache_in_memory`: keep the decoded samples after the first epoch (about 25 kB per 128×64 image), so
    that later epochs only augment; with `num_workers > 0` the workers are kept alive to keep their caches.
    `erase_prob`, `crop_pad`: IRRA's random erasing probability and the padding of its random crop.
    """

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        num_workers: int = 2,
        image_size: tuple[int, int] = (128, 64),
        text_field: TextField = "fine",
        rda: bool = False,
        partial_text_prob: float = 0.0,
        partial_source: PartialSource = "answers",
        shuffle_buffer: int = 2000,
        samples_per_epoch: int | None = None,
        val_split: str = "val",
        test_split: str = "test",
        seed: int = 0,
        cache_in_memory: bool = False,
        erase_prob: float = 0.5,
        crop_pad: int = 10,
        partial_pairs: bool = False,
        rda_share: float = 1.0,
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
            persistent_workers=self.hparams.cache_in_memory and self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        hp = self.hparams
        dataset = ShardDataset(
            split_urls(self.data_dir, "train"),
            transform=TrainSampleTransform(
                tuple(hp.image_size),
                hp.text_field,
                hp.rda,
                hp.seed,
                hp.partial_text_prob,
                hp.partial_source,
                hp.erase_prob,
                hp.crop_pad,
                hp.partial_pairs,
                hp.rda_share,
            ),
            shuffle=True,
            shuffle_buffer=hp.shuffle_buffer,
            seed=hp.seed,
            samples_per_epoch=hp.samples_per_epoch,
            skip_counter=self.skips,
            cache_in_memory=hp.cache_in_memory,
        )
        return self._loader(dataset, hp.batch_size, collate_train)

    def _eval_loader(self, split: str) -> torch.utils.data.DataLoader:
        hp = self.hparams
        dataset = ShardDataset(
            split_urls(self.data_dir, split),
            transform=EvalSampleTransform(tuple(hp.image_size), hp.text_field, hp.seed),
            skip_counter=self.skips,
            cache_in_memory=hp.cache_in_memory,
        )
        return self._loader(dataset, hp.eval_batch_size, collate_eval)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._eval_loader(self.hparams.val_split)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        return self._eval_loader(self.hparams.test_split)

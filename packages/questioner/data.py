"""Questioner training data: `ireid lookforward` targets joined with the images of the data set they were built on.

A look-forward folder holds `<split>-NNNNNN.tar` shards with one sample per record: `json` = {key, pid, initial,
rounds: [{round, dialogue: [{question, answer}], question, answer, rank_before, rank_after, candidates}]},
`dialogue.npy` [T, D] (the dialogue embedding before each round's question) and `r{t}.npy` [k_t, D] (round t's
candidate embeddings, in the rank order of `candidates`). One training example per (record, round): the dialogue so
far, the target question, and the round's candidates, whose images come from the data set folder by key (encoded
bytes kept in memory, decoded only when shown to the model). Embeddings are read from the shards on demand.

`warmup` examples carry the top `num_images` candidates; `joint` examples carry every candidate of the round with
the embeddings, and the selector chooses which images the questioner sees.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ireid.core.images import ImageStore
from ireid.core.protocols import Dialogue, Turn
from ireid.core.shards import shard_paths

Stage = Literal["warmup", "joint"]
MEMBER_NAME = re.compile(r"^(.+)\.(json|dialogue\.npy|r\d+\.npy)$")  # keys may contain dots


@dataclass(frozen=True)
class Member:
    """Where one tar member's bytes lie, so arrays are read when needed instead of held in memory."""

    path: str
    offset: int
    size: int

    def read(self) -> bytes:
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            return fh.read(self.size)

    def array(self) -> np.ndarray:
        return np.load(io.BytesIO(self.read()), allow_pickle=False)


@dataclass(frozen=True)
class RoundExample:
    """One round of one look-forward record: what the questioner saw and the question it should ask."""

    source: str  # shard path, for error messages
    key: str
    round: int
    initial: str
    turns: tuple[Turn, ...]
    question: str
    candidates: tuple[str, ...]  # gallery keys in retriever rank order
    dialogue_row: int
    dialogue_member: Member | None
    candidates_member: Member | None

    @property
    def where(self) -> str:
        return f"{self.source}: record {self.key!r} round {self.round}"

    def dialogue(self) -> Dialogue:
        return Dialogue(self.initial, list(self.turns))


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if name not in obj:
        raise ValueError(f"{where}: missing field {name!r}")
    if not isinstance(obj[name], kind):
        raise ValueError(f"{where}: field {name!r} has type {type(obj[name]).__name__}")
    return obj[name]


def _shard_members(path: Path) -> Iterator[tuple[str, dict[str, Member], bytes]]:
    """(sample key, {extension: member}, json bytes) per sample of a look-forward shard."""
    samples: dict[str, dict[str, Member]] = {}
    texts: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for info in tar.getmembers():
            named = MEMBER_NAME.match(info.name)
            if named is None:
                raise ValueError(f"{path}: member {info.name!r} is not KEY.json, KEY.dialogue.npy or KEY.r<t>.npy")
            key, extension = named.groups()
            samples.setdefault(key, {})[extension] = Member(str(path), info.offset_data, info.size)
            if extension == "json":
                texts[key] = tar.extractfile(info).read()  # type: ignore[union-attr]
    for key, members in samples.items():
        if key not in texts:
            raise ValueError(f"{path}: sample {key!r} has no json member")
        yield key, members, texts[key]


def _record_rounds(meta: dict[str, Any], members: dict[str, Member], path: Path, where: str) -> list[RoundExample]:
    key = _field(meta, "key", str, where)
    initial = _field(meta, "initial", str, where)
    rounds = _field(meta, "rounds", list, where)
    if rounds and "dialogue.npy" not in members:
        raise ValueError(f"{where}: record {key!r} has rounds but no dialogue.npy")
    out = []
    for i, r in enumerate(rounds):
        here = f"{where}: field 'rounds[{i}]'"
        t = _field(r, "round", int, here)
        dialogue = _field(r, "dialogue", list, here)
        candidates = _field(r, "candidates", list, here)
        if not candidates or not all(isinstance(c, str) for c in candidates):
            raise ValueError(f"{here}: field 'candidates' must be a non-empty list of image keys")
        turns = tuple(
            Turn(_field(turn, "question", str, f"{here}.dialogue"), _field(turn, "answer", str, f"{here}.dialogue"))
            for turn in dialogue
        )
        if f"r{t}.npy" not in members:
            raise ValueError(f"{where}: record {key!r} round {t} has no r{t}.npy")
        out.append(
            RoundExample(
                str(path),
                key,
                t,
                initial,
                turns,
                _field(r, "question", str, here),
                tuple(candidates),
                i,
                members["dialogue.npy"],
                members[f"r{t}.npy"],
            )
        )
    return out


def read_rounds(folder: Path | str, split: str, max_records: int | None = None) -> list[RoundExample]:
    """Every (record, round) of a look-forward split, in written order; `max_records` keeps that many records,
    spread evenly over the split."""
    records: list[list[RoundExample]] = []
    for path in shard_paths(folder, split):
        for key, members, text in _shard_members(path):
            where = f"{path}: sample {key!r}"
            try:
                meta = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: malformed json ({error})") from error
            records.append(_record_rounds(meta, members, path, where))
    if max_records is not None and max_records < len(records):
        keep = np.linspace(0, len(records) - 1, max_records).round().astype(int)
        records = [records[i] for i in sorted(set(keep.tolist()))]
    return [example for rounds in records for example in rounds]


def check_images(examples: Sequence[RoundExample], images: ImageStore) -> None:
    """Every candidate of every example has an image; otherwise name the first shard, record and key."""
    for example in examples:
        for key in example.candidates:
            if key not in images:
                raise KeyError(
                    f"{example.where}: field 'candidates' names {key!r}, which has no image in {images.where} "
                    "(was the look-forward folder built from this data set and split?)"
                )


class QuestionerDataset(Dataset):
    """Examples as dicts: `dialogue`, `question`, `images` (encoded bytes, rank order), and in `joint` the
    embeddings `dialogue_embedding` [D] and `candidate_embeddings` [K, D]."""

    def __init__(
        self, examples: Sequence[RoundExample], images: ImageStore, stage: Stage = "warmup", num_images: int = 4
    ):
        if stage not in ("warmup", "joint"):
            raise ValueError(f"stage must be 'warmup' or 'joint', got {stage!r}")
        check_images(examples, images)
        self.examples, self.images, self.stage, self.num_images = list(examples), images, stage, num_images

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self.examples[index]
        keys = example.candidates if self.stage == "joint" else example.candidates[: self.num_images]
        item: dict[str, Any] = {
            "dialogue": example.dialogue(),
            "question": example.question,
            "images": [self.images.encoded(k) for k in keys],
        }
        if self.stage == "joint":
            item["dialogue_embedding"], item["candidate_embeddings"] = self._embeddings(example)
        return item

    @staticmethod
    def _embeddings(example: RoundExample) -> tuple[Tensor, Tensor]:
        dialogue = example.dialogue_member.array()  # type: ignore[union-attr]
        candidates = example.candidates_member.array()  # type: ignore[union-attr]
        if dialogue.ndim != 2 or dialogue.shape[0] <= example.dialogue_row:
            raise ValueError(
                f"{example.where}: dialogue.npy has shape {dialogue.shape}, needs row {example.dialogue_row}"
            )
        if candidates.shape != (len(example.candidates), dialogue.shape[1]):
            raise ValueError(
                f"{example.where}: r{example.round}.npy has shape {candidates.shape}, expected "
                f"({len(example.candidates)}, {dialogue.shape[1]}) for field 'candidates'"
            )
        return torch.from_numpy(dialogue[example.dialogue_row].astype(np.float32)), torch.from_numpy(
            candidates.astype(np.float32)
        )


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Lists for the text and image bytes; joint batches add `dialogue` [B, D], `candidates` [B, K, D] (zero
    padded) and `mask` [B, K] (True = real candidate)."""
    batch: dict[str, Any] = {name: [item[name] for item in items] for name in ("dialogue", "question", "images")}
    batch["dialogues"] = batch.pop("dialogue")
    batch["questions"] = batch.pop("question")
    if "candidate_embeddings" in items[0]:
        pools = [item["candidate_embeddings"] for item in items]
        width, dim = max(len(p) for p in pools), pools[0].shape[1]
        candidates = torch.zeros(len(items), width, dim)
        mask = torch.zeros(len(items), width, dtype=torch.bool)
        for row, pool in enumerate(pools):
            candidates[row, : len(pool)] = pool
            mask[row, : len(pool)] = True
        batch["dialogue"] = torch.stack([item["dialogue_embedding"] for item in items])
        batch["candidates"], batch["mask"] = candidates, mask
    return batch


class QuestionerData(L.LightningDataModule):
    """Train and validation examples from a look-forward folder and the data set folder it was built on.

    Args:
        lookforward: the `ireid lookforward --out` folder.
        data: the data set folder (`--data` of that command); images are looked up by key in the same split.
        stage: `warmup` (top `num_images` candidates) or `joint` (all candidates and their embeddings).
        val_split: the look-forward split validated on; None holds out `holdout` of the training records.
        max_records, max_val_records: keep that many records (spread evenly) of each split; None keeps all.
    """

    def __init__(
        self,
        lookforward: str,
        data: str,
        stage: Stage = "warmup",
        num_images: int = 4,
        train_split: str = "train",
        val_split: str | None = "val",
        holdout: float = 0.05,
        max_records: int | None = None,
        max_val_records: int | None = None,
        batch_size: int = 4,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if val_split is None and not 0 < holdout < 1:
            raise ValueError(f"holdout must be in (0, 1) when there is no val_split, got {holdout}")
        self.lookforward, self.data = Path(lookforward), Path(data)
        self.stage, self.num_images = stage, num_images
        self.train_split, self.val_split, self.holdout = train_split, val_split, holdout
        self.max_records, self.max_val_records = max_records, max_val_records
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.train_set: QuestionerDataset | None = None
        self.val_set: QuestionerDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train = read_rounds(self.lookforward, self.train_split, self.max_records)
        images = ImageStore.from_shards(self.data, self.train_split)
        if self.val_split is None:
            train, val = self._hold_out(train)
            val_images = images
        else:
            val = read_rounds(self.lookforward, self.val_split, self.max_val_records)
            val_images = ImageStore.from_shards(self.data, self.val_split)
        self.train_set = QuestionerDataset(train, images, self.stage, self.num_images)
        self.val_set = QuestionerDataset(val, val_images, self.stage, self.num_images)

    def _hold_out(self, examples: list[RoundExample]) -> tuple[list[RoundExample], list[RoundExample]]:
        """Whole records go to validation, chosen with `seed`, so no dialogue is in both parts."""
        keys = sorted({e.key for e in examples})
        generator = torch.Generator().manual_seed(self.seed)
        count = max(1, round(self.holdout * len(keys)))
        held = {keys[i] for i in torch.randperm(len(keys), generator=generator)[:count].tolist()}
        if self.max_val_records is not None:
            held = set(sorted(held)[: self.max_val_records])
        return [e for e in examples if e.key not in held], [e for e in examples if e.key in held]

    def transfer_batch_to_device(self, batch: dict[str, Any], device: torch.device, dataloader_idx: int) -> Any:
        """Only the tensors move; dialogues and encoded images stay Python objects (Lightning's default walk
        refuses the frozen `Turn` dataclasses)."""
        return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            self.batch_size,
            shuffle=True,
            num_workers=self.num_workers,
            collate_fn=collate,
            drop_last=len(self.train_set) > self.batch_size,  # a set smaller than one batch still trains
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, self.batch_size, num_workers=self.num_workers, collate_fn=collate)

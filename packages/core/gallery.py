"""The searchable side of an evaluation: gallery embeddings with their keys, person ids and records.

Records stay with the embeddings because some baselines read the gallery's captions (PlugIR describes its
candidate clusters from them, as it would from a captioner's output).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from ireid.core.loader import iter_samples
from ireid.core.protocols import TextImageRetriever
from ireid.core.records import Record


@dataclass
class Gallery:
    keys: list[str]
    pids: Tensor  # int64 [N]
    embeddings: Tensor  # float32 [N, D], L2-normalised
    records: list[Record]

    def __post_init__(self) -> None:
        n = len(self.keys)
        if self.pids.shape != (n,) or self.embeddings.dim() != 2 or self.embeddings.shape[0] != n:
            raise ValueError(
                f"gallery of {n} keys needs pids [{n}] and embeddings [{n}, D], "
                f"got {list(self.pids.shape)} and {list(self.embeddings.shape)}"
            )
        if len(self.records) != n:
            raise ValueError(f"gallery of {n} keys has {len(self.records)} records")

    def __len__(self) -> int:
        return len(self.keys)

    def scores(self, text_embeddings: Tensor) -> Tensor:
        """Cosine similarities [B, N] of normalised query embeddings against the gallery (float32)."""
        return text_embeddings.float() @ self.embeddings.T

    def subset(self, indices: Sequence[int]) -> Gallery:
        """The gallery of the images at `indices`, in that order."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return Gallery(
            [self.keys[i] for i in indices],
            self.pids[index],
            self.embeddings[index],
            [self.records[i] for i in indices],
        )


def closest_other_people(scores: Tensor, query_pids: Tensor, gallery_pids: Tensor, k: int) -> list[list[int]]:
    """Per query row of `scores` [B, N], the gallery indices of its `k` most similar images of other people, most
    similar first (fewer where the gallery has fewer): the hard negatives and look-alikes a retriever mines."""
    masked = scores.float().masked_fill(query_pids[:, None] == gallery_pids[None, :], float("-inf"))
    top = torch.topk(masked, min(k, scores.shape[1]), dim=1)
    return [
        [j for j, s in zip(row, value, strict=True) if s > float("-inf")]
        for row, value in zip(top.indices.tolist(), top.values.tolist(), strict=True)
    ]


def _batched(items: Iterable[tuple[Record, Image.Image]], size: int) -> Iterable[list[tuple[Record, Image.Image]]]:
    batch: list[tuple[Record, Image.Image]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@torch.no_grad()
def encode_gallery(
    retriever: TextImageRetriever,
    items: Iterable[tuple[Record, Image.Image]],
    batch_size: int = 128,
    total: int | None = None,
) -> Gallery:
    """Embed (record, image) pairs in batches, with a progress bar."""
    records: list[Record] = []
    parts: list[Tensor] = []
    with tqdm(total=total, desc="encode gallery", unit="img", leave=False) as bar:
        for batch in _batched(items, batch_size):
            parts.append(retriever.encode_images([image for _, image in batch]).float())
            records.extend(record for record, _ in batch)
            bar.update(len(batch))
    if not records:
        raise ValueError("the gallery is empty: no images to encode")
    return Gallery(
        keys=[r.key for r in records],
        pids=torch.tensor([r.pid for r in records], dtype=torch.long),
        embeddings=torch.cat(parts),
        records=records,
    )


def encode_split(retriever: TextImageRetriever, data_dir: Path | str, split: str, batch_size: int = 128) -> Gallery:
    """Every image of one split of a shard folder (the test split is the interactive gallery)."""
    items = ((sample.record, sample.image) for sample in iter_samples(data_dir, split))
    return encode_gallery(retriever, items, batch_size)

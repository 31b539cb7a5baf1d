"""Gallery encoding shared among forked processes of one thread each.

The items are a list known up front (a folder's listing, a split's samples); the batches are decoded and encoded by
`ireid.core.processes.ordered_map` and come back in order, so the index is written as one process writes it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ireid.core.loader import SkipCounter, undecoded_samples
from ireid.core.processes import ordered_map
from ireid.retriever.gallery_folder import list_image_folder, read_image
from ireid.retriever.gallery_rows import rows_float32
from ireid.retriever.index import EncodedBatch, Item

Loader = Callable[[int, int], list[Item]]  # items [start, end) decoded (undecodable ones left out and counted)


@dataclass
class _Encoding:
    embed_fn: Callable[[list[Image.Image]], Tensor]
    load: Loader
    count: int
    batch_size: int

    def __call__(self, start: int) -> EncodedBatch:
        items = self.load(start, min(start + self.batch_size, self.count))
        if not items:
            return EncodedBatch([], np.zeros((0, 0), dtype=np.float32), [])
        with torch.no_grad():
            rows = rows_float32(self.embed_fn([item[1] for item in items]), "embed_fn output")
        return EncodedBatch([item[0] for item in items], rows, [item[2] if len(item) > 2 else None for item in items])


def encoded_batches(
    embed_fn: Callable[[list[Image.Image]], Tensor], load: Loader, count: int, batch_size: int = 64, processes: int = 1
) -> Iterator[EncodedBatch]:
    """Batches of `batch_size` consecutive items, encoded here (`processes` 1) or by forked processes, in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return ordered_map(_Encoding(embed_fn, load, count, batch_size), range(0, count, batch_size), processes)


def shard_loader(root: Path, split: str, skips: SkipCounter) -> tuple[Loader, int]:
    """Items [start, end) of a shard split as (key, image, pid): gallery items with person ids for evaluation."""
    samples = undecoded_samples(root, split)

    def load(start: int, end: int) -> list[Item]:
        items: list[Item] = []
        for sample in samples[start:end]:
            try:
                with Image.open(io.BytesIO(sample.image)) as image:  # type: ignore[arg-type]
                    items.append((sample.key, image.convert("RGB"), sample.record.pid))
            except Exception as exc:  # PIL raises several types for corrupt data
                skips.add(f"{sample.key}: {exc}")
        return items

    return load, len(samples)


def folder_loader(folder: Path, skips: SkipCounter) -> tuple[Loader, int]:
    """Items [start, end) of an image folder's listing as (key, image); undecodable images are counted."""
    listing = list_image_folder(folder)

    def load(start: int, end: int) -> list[Item]:
        return [(key, image) for key, path in listing[start:end] if (image := read_image(key, path, skips)) is not None]

    return load, len(listing)

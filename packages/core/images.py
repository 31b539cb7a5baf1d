"""Images of a data set by key: the encoded bytes held in memory, decoded when asked for.

Multi-image models (the questioner, ChatReID) are shown gallery images chosen per round; keeping the JPEG bytes
(a few KB each) rather than decoded arrays lets a whole split stay in memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

from PIL import Image

from ireid.core.loader import undecoded_samples


class ImageSource(Protocol):
    """Gallery images by key: a data set's (`ImageStore`) or a folder's (the investigator's)."""

    def encoded(self, key: str) -> bytes: ...

    def load(self, keys: Sequence[str]) -> list[Image.Image]: ...


class ImageStore:
    """Encoded images by record key; `load(keys)` decodes them to RGB."""

    def __init__(self, encoded: dict[str, bytes], where: str = "image store"):
        self._encoded = encoded
        self.where = where

    @classmethod
    def from_shards(cls, data_dir: Path | str, splits: str | Iterable[str]) -> ImageStore:
        """Every image of the given splits of a shard folder."""
        splits = [splits] if isinstance(splits, str) else list(splits)
        encoded: dict[str, bytes] = {}
        for split in splits:
            for sample in undecoded_samples(data_dir, split):
                encoded[sample.key] = sample.image  # type: ignore[assignment]
        return cls(encoded, where=f"{data_dir} ({', '.join(splits)})")

    def __len__(self) -> int:
        return len(self._encoded)

    def __contains__(self, key: object) -> bool:
        return key in self._encoded

    def encoded(self, key: str) -> bytes:
        """The image's file bytes (JPEG or PNG), for decoding later or in another process."""
        if key not in self._encoded:
            raise KeyError(f"{self.where}: no image with key {key!r}")
        return self._encoded[key]

    def load(self, keys: Sequence[str]) -> list[Image.Image]:
        """Decoded RGB images, in the order of `keys`; a key without an image is an error naming the store."""
        images = []
        for key in keys:
            data = self.encoded(key)
            try:
                with Image.open(io.BytesIO(data)) as image:
                    images.append(image.convert("RGB"))
            except Exception as exc:  # PIL raises several types for corrupt data
                raise ValueError(f"{self.where}: image {key!r} does not decode ({exc})") from exc
        return images

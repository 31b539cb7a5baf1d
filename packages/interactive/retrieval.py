"""A retriever module (trained checkpoint or fresh) behind the core `TextImageRetriever` protocol."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from ireid.retriever.index_cli import image_embedder, load_retriever
from ireid.retriever.module import RetrieverModule


class ModuleRetriever:
    """Encodes texts and PIL images with a `RetrieverModule`, in batches, without gradients."""

    def __init__(self, module: RetrieverModule, text_batch_size: int = 256):
        self.module = module.eval()
        self._embed_images = image_embedder(self.module)
        self.text_batch_size = text_batch_size

    @classmethod
    def from_checkpoint(cls, ckpt: Path | str, text_batch_size: int = 256) -> ModuleRetriever:
        return cls(load_retriever(Path(ckpt)), text_batch_size)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> Tensor:
        if not texts:
            raise ValueError("encode_text needs at least one text")
        chunks = [
            self.module.encode_text(list(texts[i : i + self.text_batch_size]))
            for i in range(0, len(texts), self.text_batch_size)
        ]
        return torch.cat(chunks).float()

    def encode_images(self, images: Sequence[Image.Image]) -> Tensor:
        return self._embed_images(list(images)).float()

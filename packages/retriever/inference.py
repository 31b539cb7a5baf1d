"""The retriever's inference surface: a trained checkpoint in, text and image embeddings out, without Lightning.

A checkpoint is read with `torch.load(..., weights_only=True)` (tensors and plain types only, so a checkpoint
cannot run code) and the network is rebuilt by `model.build_retriever_net` from its saved hyper-parameters, then
given its state dict. Neither `RetrieverModule` nor `lightning` is imported: library code that only searches
(the interactive loop, the gallery CLI) does not pay for, or depend on, the training stack.

The functions taking an `encoder` accept a loaded `RetrieverNet` or a `RetrieverModule` alike (both are
`RetrieverEncoding`s and expose `image_size`), so a model fresh from training encodes through the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ireid.core.checkpoints import read_checkpoint_file
from ireid.core.loader import SkipCounter
from ireid.core.person_vision import VisionTowerFile, vision_transformer
from ireid.retriever.continuations import encode_continuations
from ireid.retriever.gallery_folder import iter_image_folder
from ireid.retriever.model import RetrieverEncoding, RetrieverNet, RetrieverSettings, build_retriever_net
from ireid.retriever.transforms import CLIP_MEAN, CLIP_STD, ImageTransform

__all__ = [
    "ModuleRetriever",
    "RetrieverNet",
    "embed_image_folder",
    "encode_images",
    "encode_text",
    "ensure_vision_tower",
    "export_vision_tower",
    "image_embedder",
    "load_checkpoint",
    "load_retriever",
    "retriever_from_checkpoint",
]


def load_checkpoint(ckpt: Path | str) -> dict[str, Any]:
    """A Lightning checkpoint's contents on CPU, loaded safely (weights_only=True)."""
    return read_checkpoint_file(ckpt, "retriever checkpoint")


def retriever_from_checkpoint(checkpoint: dict[str, Any]) -> RetrieverNet:
    """The network of loaded checkpoint contents (`hyper_parameters` and `state_dict`), in eval mode.

    The state dict must match exactly (strict loading): a checkpoint of another model is an error, not a
    half-initialised network. A tiny model's tokenizer is read from the checkpoint's `data_dir`, as in training.
    """
    for key in ("hyper_parameters", "state_dict"):
        if key not in checkpoint:
            raise ValueError(f"not a retriever checkpoint: no {key!r}")
    net = build_retriever_net(RetrieverSettings.from_hparams(checkpoint["hyper_parameters"]))
    net.load_state_dict(checkpoint["state_dict"], strict=True)
    return net.eval()


def load_retriever(ckpt: Path | str) -> RetrieverNet:
    """A trained retriever in eval mode on CPU (safe loading: tensors and plain types only)."""
    return retriever_from_checkpoint(load_checkpoint(ckpt))


def image_embedder(encoder: RetrieverEncoding) -> Callable[[list[Image.Image]], torch.Tensor]:
    """PIL images → [B, E] normalised embeddings with the evaluation transform at the encoder's image size.

    The shape `GalleryIndex.build` takes as `embed_fn`; images are not moved to the encoder's device.
    """
    transform = ImageTransform(tuple(encoder.image_size), train=False)

    @torch.no_grad()
    def embed(images: list[Image.Image]) -> torch.Tensor:
        return encoder.encode_images(torch.stack([transform(im) for im in images]))

    return embed


@torch.no_grad()
def encode_text(encoder: RetrieverEncoding, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """[N, E] normalised float32 embeddings of `texts`, encoded `batch_size` at a time without gradients."""
    _check_batch_size(batch_size)
    if not texts:
        raise ValueError("encode_text needs at least one text")
    chunks = [encoder.encode_text(list(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
    return torch.cat(chunks).float()


def encode_images(encoder: RetrieverEncoding, images: Sequence[Image.Image], batch_size: int = 64) -> torch.Tensor:
    """[N, E] normalised float32 embeddings of PIL images, `batch_size` at a time (see `image_embedder`)."""
    _check_batch_size(batch_size)
    if not images:
        raise ValueError("encode_images needs at least one image")
    embed = image_embedder(encoder)
    chunks = [embed(list(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    return torch.cat(chunks).float()


def embed_image_folder(
    encoder: RetrieverEncoding, folder: Path | str, batch_size: int = 64, skips: SkipCounter | None = None
) -> tuple[list[str], torch.Tensor]:
    """(keys, [N, E] embeddings) of every image under `folder`, read by `gallery_folder.iter_image_folder`.

    Keys are paths relative to the folder; undecodable images are skipped and counted in `skips`. Images are
    decoded and encoded a batch at a time; to write a large gallery to disk instead of returning it, pass
    `image_embedder(encoder)` and `iter_image_folder(folder)` to `GalleryIndex.build`.
    """
    _check_batch_size(batch_size)
    embed = image_embedder(encoder)
    items = iter_image_folder(folder, skips)
    keys: list[str] = []
    chunks: list[torch.Tensor] = []
    while batch := list(islice(items, batch_size)):
        keys.extend(key for key, _ in batch)
        chunks.append(embed([image for _, image in batch]))
    if not keys:
        raise ValueError(f"{folder}: no readable .jpg/.jpeg/.png image")
    return keys, torch.cat(chunks).float()


class ModuleRetriever:
    """A retriever network (loaded, or a `RetrieverModule`) behind the core `TextImageRetriever` protocol.

    Texts are encoded `text_batch_size` at a time, images in one batch, both without gradients; outputs are
    L2-normalised float32 [N, E]. The interactive loop, the look-forward
    builder and the app get a trained retriever through it without importing Lightning.
    """

    def __init__(self, module: RetrieverEncoding, text_batch_size: int = 256):
        self.module = module.eval()
        self._embed_images = image_embedder(self.module)
        self.text_batch_size = text_batch_size

    @classmethod
    def from_checkpoint(cls, ckpt: Path | str, text_batch_size: int = 256) -> ModuleRetriever:
        return cls(load_retriever(ckpt), text_batch_size)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return encode_text(self.module, texts, self.text_batch_size)

    def encode_continuations(self, prefixes: Sequence[str], endings: Sequence[Sequence[str]]) -> torch.Tensor:
        """The core `ContinuationEncoder`: each prefix run once (`ireid.retriever.continuations`)."""
        return encode_continuations(self.module, prefixes, endings, self.text_batch_size)

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self._embed_images(list(images)).float()


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def export_vision_tower(ckpt: Path | str, out: Path | str) -> Path:
    """The checkpoint's image encoder as a vision tower file (`ireid.core.person_vision`): a VLM can then see
    gallery images through the trained retriever's eyes (its CLIP vision model, the crop size, the normalisation)."""
    net = load_retriever(ckpt)
    vision = vision_transformer(net.features.clip)
    return VisionTowerFile(
        config=net.features.clip.config.vision_config.to_dict(),
        image_hw=tuple(net.image_size),
        mean=CLIP_MEAN,
        std=CLIP_STD,
        state={name: tensor.detach().clone() for name, tensor in vision.state_dict().items()},
        projection=net.features.clip.visual_projection.weight.detach().clone(),
    ).save(out)


def ensure_vision_tower(ckpt: Path | str, out: Path | str) -> Path:
    """`out` as a vision tower file of `ckpt`, exported unless it already holds one that reads: a pipeline's
    tower derives from its retriever alone, so a file of an older format (or a damaged one) is written again
    instead of stopping a resumed run."""
    out = Path(out)
    return out if out.is_file() and _tower_file_reads(out) else export_vision_tower(ckpt, out)


def _tower_file_reads(path: Path) -> bool:
    """Whether `path` loads as a vision tower file of the current format."""
    try:
        VisionTowerFile.load(path)
    except ValueError:
        return False
    return True

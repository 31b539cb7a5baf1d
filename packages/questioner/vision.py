"""Candidate images to tokens: square resize, normalise, vision tower, projector, 2×2 average pooling.

LLaVA-ReID shows the questioner several candidates, each reduced by 2×2 mean pooling of its patch grid, instead of
LLaVA-OneVision's anyres tiling (which would cost thousands of tokens per image). So each image is resized to the
vision tower's square input (no tiles), and its projected patch grid is average-pooled; odd grids keep the partial
windows at the edge (ceil), each averaged over the patches it covers.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


@dataclass(frozen=True)
class PixelSpec:
    """How an image becomes the vision tower's input: `size`² pixels, per-channel mean/std, PIL resampling."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = Image.Resampling.BICUBIC

    @classmethod
    def from_processor(cls, image_processor: object, size: int) -> PixelSpec:
        """Mean, std and resampling of the model's image processor; `size` is the vision config's image_size."""
        resample = getattr(image_processor, "resample", None)
        return cls(
            size,
            tuple(float(v) for v in image_processor.image_mean),  # type: ignore[attr-defined]
            tuple(float(v) for v in image_processor.image_std),  # type: ignore[attr-defined]
            int(resample) if resample is not None else Image.Resampling.BICUBIC,
        )


def decode_image(data: bytes | Image.Image) -> Image.Image:
    if isinstance(data, Image.Image):
        return data.convert("RGB")
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def to_pixels(images: Sequence[bytes | Image.Image], spec: PixelSpec) -> Tensor:
    """[N, 3, size, size] float32: each image resized to the square input, rescaled to [0, 1] and normalised."""
    if not images:
        return torch.zeros(0, 3, spec.size, spec.size)
    arrays = [
        np.asarray(decode_image(im).resize((spec.size, spec.size), spec.resample), dtype=np.float32) for im in images
    ]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return (pixels - mean) / std


def pooled_tokens(grid: int, pool: int) -> int:
    """Tokens left of a grid × grid patch map after pool × pool average pooling (ceil for odd grids)."""
    return math.ceil(grid / pool) ** 2


def pool_patches(features: Tensor, pool: int) -> Tensor:
    """[N, g·g, H] patch features -> [N, ceil(g/pool)², H], each window averaged over the patches it covers."""
    n, tokens, hidden = features.shape
    grid = math.isqrt(tokens)
    if grid * grid != tokens:
        raise ValueError(f"patch features must form a square grid, got {tokens} tokens")
    if pool == 1:
        return features
    maps = features.transpose(1, 2).reshape(n, hidden, grid, grid)
    pooled = F.avg_pool2d(maps, pool, stride=pool, ceil_mode=True)
    return pooled.flatten(2).transpose(1, 2)

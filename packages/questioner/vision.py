"""Candidate images to tokens: resize, normalise, vision tower, projector, average pooling.

LLaVA-ReID shows the questioner several candidates, each reduced by 2×2 mean pooling of its patch grid, instead of
LLaVA-OneVision's anyres tiling (which would cost thousands of tokens per image). So each image is resized to the
vision tower's input (no tiles: a square, or the person crop of a person vision tower), and its projected patch grid
is average-pooled; odd grids keep the partial windows at the edge (ceil), each averaged over the patches it covers.
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
    """How an image becomes the vision tower's input: `size` (a square side, or (height, width)) in pixels,
    per-channel mean/std, PIL resampling."""

    size: int | tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int = Image.Resampling.BICUBIC

    @property
    def size_hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else (int(self.size[0]), int(self.size[1]))

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
    """[N, 3, height, width] float32: each image resized to the tower's input, rescaled to [0, 1] and normalised."""
    height, width = spec.size_hw
    if not images:
        return torch.zeros(0, 3, height, width)
    arrays = [np.asarray(decode_image(im).resize((width, height), spec.resample), dtype=np.float32) for im in images]
    pixels = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return (pixels - mean) / std


def pooled_tokens(grid: int | tuple[int, int], pool: int) -> int:
    """Tokens left of a grid × grid (or height × width) patch map after pool × pool average pooling (ceil for odd
    grids)."""
    height, width = (grid, grid) if isinstance(grid, int) else grid
    return math.ceil(height / pool) * math.ceil(width / pool)


def pool_patches(features: Tensor, pool: int, grid_hw: tuple[int, int] | None = None) -> Tensor:
    """[N, h·w, H] patch features -> [N, ceil(h/pool)·ceil(w/pool), H], each window averaged over the patches it
    covers; the grid is square unless `grid_hw` gives its shape."""
    n, tokens, hidden = features.shape
    if grid_hw is None:
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"patch features must form a square grid, got {tokens} tokens")
        grid_hw = (side, side)
    if grid_hw[0] * grid_hw[1] != tokens:
        raise ValueError(f"{tokens} patch features do not form a {grid_hw[0]}x{grid_hw[1]} grid")
    if pool == 1:
        return features
    maps = features.transpose(1, 2).reshape(n, hidden, *grid_hw)
    pooled = F.avg_pool2d(maps, pool, stride=pool, ceil_mode=True)
    return pooled.flatten(2).transpose(1, 2)

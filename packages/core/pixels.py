"""An image as a vision tower's input: resized to the tower's size, rescaled to [0, 1] and normalised, for every
model that reads images through a CLIP-style tower (the questioner's candidates, the attribute-reading witness).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
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

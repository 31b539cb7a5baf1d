"""IRRA's image transforms, written with PIL and torch (torchvision is not a dependency).

Training: bicubic resize, horizontal flip, pad 10 + random crop, normalise, random erasing.
Evaluation: resize and normalise. Randomness comes from a `torch.Generator` so runs are repeatable.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_tensor(image: Image.Image, size_hw: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize to (H, W) and scale to [0, 1], channels first."""
    h, w = size_hw
    if image.size != (w, h):
        image = image.resize((w, h), Image.Resampling.BICUBIC)
    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def normalize(x: torch.Tensor, mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x - m) / s


def random_erase(
    x: torch.Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: tuple[float, ...] = CLIP_MEAN,
) -> torch.Tensor:
    """Erase one random rectangle (area fraction in `scale`, aspect in `ratio`), as torchvision does."""
    if torch.rand((), generator=generator).item() >= p:
        return x
    _, h, w = x.shape
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        area = h * w * (scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator).item())
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * torch.rand((), generator=generator).item())
        eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < eh < h and 0 < ew < w:
            top = int(torch.randint(0, h - eh + 1, (), generator=generator))
            left = int(torch.randint(0, w - ew + 1, (), generator=generator))
            x = x.clone()
            x[:, top : top + eh, left : left + ew] = torch.tensor(value, dtype=x.dtype).view(-1, 1, 1)
            return x
    return x


@dataclass
class ImageTransform:
    """PIL image → normalised [3, H, W] tensor; `train=True` adds IRRA's augmentations."""

    size_hw: tuple[int, int]
    train: bool = False
    pad: int = 10
    flip_p: float = 0.5
    erase_p: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        self.generator = torch.Generator().manual_seed(self.seed)
        self._pid = os.getpid()

    def _reseed_in_worker(self) -> None:
        # A DataLoader worker holds a copy of this object: without reseeding, every worker (and every
        # epoch) would replay the same augmentations. torch seeds each worker differently per epoch.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self.generator.manual_seed(torch.initial_seed() + self.seed)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        self._reseed_in_worker()
        x = to_tensor(image, self.size_hw)
        if self.train:
            x = self.augment(x)
        x = normalize(x)
        if self.train:
            x = random_erase(x, self.generator, p=self.erase_p)
        return x

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Flip, then zero-pad by `pad` and crop back to size at a random offset."""
        g = self.generator
        if torch.rand((), generator=g).item() < self.flip_p:
            x = x.flip(-1)
        if self.pad > 0:
            _, h, w = x.shape
            x = F.pad(x, (self.pad,) * 4)
            top = int(torch.randint(0, 2 * self.pad + 1, (), generator=g))
            left = int(torch.randint(0, 2 * self.pad + 1, (), generator=g))
            x = x[:, top : top + h, left : left + w]
        return x

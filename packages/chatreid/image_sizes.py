"""The per-stage image size rules of ChatReID's hierarchical progressive tuning (paper §3.3).

Stage 1 standardises small crops: an image whose height or width is below the minimum (256×128) is resized to
exactly that size; larger images are left alone. Stage 2 fits many gallery images into one prompt: an image whose
height or width exceeds the maximum (384×192) is scaled down, aspect ratio kept, until it fits; smaller ones are
left alone. Stage 3 and inference keep the resolution. The Qwen2-VL image processor then rounds every side to its
patch grid and bounds the pixel count, as it does for any input. A model whose eyes are a person tower reads one
input size only, so at inference every image is resized to it (`exact_hw`).
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

HW = tuple[int, int]


def _check(name: str, hw: HW | None) -> HW | None:
    if hw is None:
        return None
    if len(hw) != 2 or any(not isinstance(v, int) or v < 1 for v in hw):
        raise ValueError(f"{name} must be (height, width) of positive integers, got {hw!r}")
    return (int(hw[0]), int(hw[1]))


@dataclass(frozen=True)
class SizeRule:
    """`min_hw`: images below it on either side become exactly `min_hw`; `max_hw`: images above it on either side
    are scaled down, keeping their aspect ratio, to fit inside it; `exact_hw`: every image becomes that size."""

    min_hw: HW | None = None
    max_hw: HW | None = None
    exact_hw: HW | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_hw", _check("min_hw", self.min_hw))
        object.__setattr__(self, "max_hw", _check("max_hw", self.max_hw))
        object.__setattr__(self, "exact_hw", _check("exact_hw", self.exact_hw))
        if self.min_hw and self.max_hw and (self.min_hw[0] > self.max_hw[0] or self.min_hw[1] > self.max_hw[1]):
            raise ValueError(f"min_hw {self.min_hw} exceeds max_hw {self.max_hw}")

    def size(self, hw: HW) -> HW:
        """The (height, width) an image of size `hw` gets."""
        if self.exact_hw:
            return self.exact_hw
        height, width = hw
        if self.min_hw and (height < self.min_hw[0] or width < self.min_hw[1]):
            height, width = self.min_hw
        if self.max_hw and (height > self.max_hw[0] or width > self.max_hw[1]):
            scale = min(self.max_hw[0] / height, self.max_hw[1] / width)
            height, width = max(1, round(height * scale)), max(1, round(width * scale))
        return height, width

    def __call__(self, image: Image.Image) -> Image.Image:
        target = self.size((image.height, image.width))
        if target == (image.height, image.width):
            return image
        return image.resize((target[1], target[0]), Image.Resampling.BICUBIC)

"""A CLIP vision tower on person crops, shared by the retriever that trains it and the VLMs that reuse it.

CLIP's position table is a square grid; person crops are tall. `PersonVisionEmbeddings` replaces the grid once,
bilinearly, with one of the crop's shape (IRRA's 14×14 → 24×8 for 384×128 at patch 16), after which the table
is an ordinary parameter.

A trained retriever's image encoder can serve as the frozen vision tower of a LLaVA-style model (LLaVA uses CLIP
the same way). A *vision tower file* carries what that needs, without the retriever's code: the CLIP vision
config, the person-crop size, the pixel normalisation, the vision model's weights and the visual projection into
the retriever's embedding space (where its identity embedding lives).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ireid.core.checkpoints import read_format_file, save_torch_file
from ireid.core.pixels import PixelSpec, to_pixels

VISION_TOWER_FORMAT = "ireid.person-vision-tower/2"


class PersonVisionEmbeddings(nn.Module):
    """CLIP's patch + class embeddings with a position grid of the person crop's shape (H/p × W/p)."""

    def __init__(self, original: nn.Module, size_hw: tuple[int, int]):
        super().__init__()
        self.patch_embedding = original.patch_embedding
        self.class_embedding = original.class_embedding
        self.patch_size = original.patch_size
        self.size_hw = tuple(size_hw)
        height, width = self.size_hw
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {self.patch_size}")
        grid_hw = (height // self.patch_size, width // self.patch_size)
        old = original.position_embedding.weight.data  # [1 + g*g, D]
        side = round((old.shape[0] - 1) ** 0.5)
        if side * side != old.shape[0] - 1:
            raise ValueError(f"expected a square position grid, got {old.shape[0] - 1} positions")
        grid = old[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        if (side, side) != grid_hw:
            grid = F.interpolate(grid.float(), size=grid_hw, mode="bilinear", align_corners=False).to(old.dtype)
        table = torch.cat([old[:1], grid.permute(0, 2, 3, 1).reshape(grid_hw[0] * grid_hw[1], -1)])
        self.position_embedding = nn.Embedding(table.shape[0], table.shape[1]).to(old.device, old.dtype)
        self.position_embedding.weight.data.copy_(table)
        self.register_buffer("position_ids", torch.arange(table.shape[0], device=old.device)[None], persistent=False)

    @property
    def grid_hw(self) -> tuple[int, int]:
        return self.size_hw[0] // self.patch_size, self.size_hw[1] // self.patch_size

    def forward(self, pixel_values: Tensor, interpolate_pos_encoding: bool = False) -> Tensor:
        if tuple(pixel_values.shape[-2:]) != self.size_hw:
            raise ValueError(f"expected images of {self.size_hw}, got {tuple(pixel_values.shape[-2:])}")
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        patches = patches.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding(self.position_ids)


def vision_transformer(model: nn.Module) -> nn.Module:
    """The module holding CLIP's vision `embeddings`: a CLIPModel's `vision_model`, or a CLIPVisionModel itself."""
    return getattr(model, "vision_model", model)


def resize_vision_positions(model: nn.Module, size_hw: tuple[int, int]) -> None:
    """Give a CLIPModel's or a CLIPVisionModel's vision tower a person-shaped position grid; inputs must then be
    exactly `size_hw`."""
    vision = vision_transformer(model)
    if not isinstance(vision.embeddings, PersonVisionEmbeddings) or vision.embeddings.size_hw != tuple(size_hw):
        vision.embeddings = PersonVisionEmbeddings(vision.embeddings, size_hw)


@dataclass
class VisionTowerFile:
    """A trained person vision tower: `config` (a CLIPVisionConfig dict), `image_hw`, pixel `mean`/`std`, `state`,
    the weights of the vision transformer (`vision_transformer`) with person-shaped positions, and `projection`,
    the retriever's visual projection [embedding dim, hidden size] (no bias, as CLIP's)."""

    config: dict[str, Any]
    image_hw: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    state: dict[str, Tensor]
    projection: Tensor

    def architecture(self) -> dict[str, Any]:
        """What rebuilding the tower needs, weights aside (plain types: it goes into hyper-parameters)."""
        return {
            "config": self.config,
            "image_hw": list(self.image_hw),
            "mean": list(self.mean),
            "std": list(self.std),
            "projection_dim": int(self.projection.shape[0]),
        }

    def save(self, path: str | Path) -> Path:
        weights = {"state": self.state, "projection": self.projection}
        return save_torch_file(path, {"format": VISION_TOWER_FORMAT, **self.architecture(), **weights})

    def copy_into(self, model: nn.Module, where: str, what: str) -> None:
        """These weights into `model`'s CLIP vision transformer (`vision_transformer`), strictly: another
        architecture is an error naming `where` (the file) and `what` (the tower it was meant for)."""
        try:
            vision_transformer(model).load_state_dict(self.state, strict=True)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise ValueError(f"{where}: field 'state' does not fit {what}: {first}") from None

    def copy_projection_into(self, linear: nn.Linear, where: str) -> None:
        """The visual projection into `linear`; another shape is an error naming `where` (the file)."""
        if linear.weight.shape != self.projection.shape:
            shapes = f"{tuple(self.projection.shape)} against {tuple(linear.weight.shape)}"
            raise ValueError(f"{where}: field 'projection' does not fit the person tower: {shapes}")
        linear.weight.data.copy_(self.projection)

    @classmethod
    def load(cls, path: str | Path) -> VisionTowerFile:
        """Read with `weights_only=True`; errors name the file and the field."""
        path = Path(path)
        data = read_format_file(path, "vision tower file", VISION_TOWER_FORMAT,
                                ("config", "image_hw", "mean", "std", "state", "projection"),
                                hint=" (export it again from the retriever checkpoint)")  # fmt: skip
        fields = (data["config"], tuple(data["image_hw"]), tuple(data["mean"]), tuple(data["std"]), data["state"])
        return cls(*fields, data["projection"])


def person_tower_modules(architecture: dict[str, Any]) -> tuple[nn.Module, nn.Linear]:
    """An untrained CLIP vision model with the person-shaped position grid of `architecture`
    (`VisionTowerFile.architecture()`), and its visual projection (no bias): what a tower file's weights go into."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig.from_dict(dict(architecture["config"]))
    clip = CLIPVisionModel(config)
    resize_vision_positions(clip, tuple(int(s) for s in architecture["image_hw"]))
    return clip, nn.Linear(config.hidden_size, int(architecture["projection_dim"]), bias=False)


class PersonEncoder(nn.Module):
    """A vision tower file as a frozen image encoder: images → the retriever's L2-normalised identity embedding
    (the class token through the final LayerNorm and the visual projection), for models that read a person from it."""

    def __init__(self, tower: VisionTowerFile, where: str = "vision tower file") -> None:
        super().__init__()
        self.clip, self.projection = person_tower_modules(tower.architecture())
        tower.copy_into(self.clip, where, "a person encoder")
        tower.copy_projection_into(self.projection, where)
        self.pixels = PixelSpec(tuple(tower.image_hw), tuple(tower.mean), tuple(tower.std))  # type: ignore[arg-type]
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def forward(self, images: Sequence[bytes | Image.Image], batch_size: int = 64) -> Tensor:
        """[N, projection dim] float32, one row per image."""
        rows = []
        for start in range(0, len(images), batch_size):
            pixels = to_pixels(images[start : start + batch_size], self.pixels)
            pooled = self.clip(pixel_values=pixels).pooler_output
            rows.append(F.normalize(self.projection(pooled), dim=-1))
        return torch.cat(rows) if rows else torch.zeros(0, self.projection.out_features)

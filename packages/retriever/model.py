"""CLIP as IRRA uses it: person-shaped position grid, longer text positions, token-level features.

IRRA resizes CLIP's positional embeddings once, before fine-tuning: the text table linearly (77 → 192
for long descriptions) and the square visual grid bilinearly to the person crop's grid (14×14 → 24×8 for
384×128 at patch 16). The resized tables are then ordinary parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPModel


def resize_text_positions(model: CLIPModel, length: int) -> None:
    """Interpolate the text position table linearly to `length` positions."""
    embeddings = model.text_model.embeddings
    old = embeddings.position_embedding.weight.data  # [L, D]
    if old.shape[0] == length:
        return
    new = F.interpolate(old.T.unsqueeze(0), size=length, mode="linear", align_corners=False)[0].T
    embeddings.position_embedding = nn.Embedding(length, old.shape[1]).to(old.device, old.dtype)
    embeddings.position_embedding.weight.data.copy_(new)
    embeddings.register_buffer("position_ids", torch.arange(length, device=old.device)[None], persistent=False)
    model.config.text_config.max_position_embeddings = length


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

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        if tuple(pixel_values.shape[-2:]) != self.size_hw:
            raise ValueError(f"expected images of {self.size_hw}, got {tuple(pixel_values.shape[-2:])}")
        patches = self.patch_embedding(pixel_values.to(self.patch_embedding.weight.dtype))
        patches = patches.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding(self.position_ids)


def resize_vision_positions(model: CLIPModel, size_hw: tuple[int, int]) -> None:
    """Give the vision tower a person-shaped position grid; inputs must then be exactly `size_hw`."""
    vision = model.vision_model
    if not isinstance(vision.embeddings, PersonVisionEmbeddings) or vision.embeddings.size_hw != tuple(size_hw):
        vision.embeddings = PersonVisionEmbeddings(vision.embeddings, size_hw)


class ClipFeatures(nn.Module):
    """Image CLS and text EOT features (projected), plus every token projected, as IRRA's heads need."""

    def __init__(self, clip: CLIPModel):
        super().__init__()
        self.clip = clip

    @property
    def embed_dim(self) -> int:
        return self.clip.config.projection_dim

    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 1 + patches, E]: post-LayerNorm and projection applied to every token; token 0 is CLS."""
        vision = self.clip.vision_model
        hidden = vision(pixel_values=pixel_values).last_hidden_state
        return self.clip.visual_projection(vision.post_layernorm(hidden))

    def text_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, L, E] every token projected, [B, E] the pooled EOT token projected)."""
        out = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.clip.text_projection(out.last_hidden_state), self.clip.text_projection(out.pooler_output)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Only the CLS token is normalised and projected: what retrieval needs, without the MLM's token work."""
        pooled = self.clip.vision_model(pixel_values=pixel_values).pooler_output  # post-LayerNorm CLS
        return F.normalize(self.clip.visual_projection(pooled).float(), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_tokens(input_ids, attention_mask)[1].float(), dim=-1)

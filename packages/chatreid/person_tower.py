"""A trained retriever's eyes as Qwen2-VL's vision encoder: LLaVA's recipe of a pretrained CLIP tower, frozen.

A tiny Qwen2-VL trained from scratch learns captions but not identity: its own 32-wide ViT never separates two
people in the same colours. A trained retriever's image encoder (a vision tower file, `ireid.core.person_vision`)
was trained for exactly that. `PersonTowerVisual` takes the place of `model.model.visual`:

1. it rebuilds each image from the processor's flat patches (Qwen2-VL's layout: merge windows of 2×2 patches,
   each patch channels × temporal copies × pixels), so the processor, the chat template and the image-token
   counts stay Qwen2-VL's own;
2. runs the frozen CLIP tower on it (its learned position grid needs the crop size it was trained at) and maps
   every token into the retriever's embedding space as the retriever does (final LayerNorm, visual projection);
3. gives every merge window of 2×2 patch features to a `merger` MLP that projects them into the decoder's width,
   and adds to each image token a projection of the image's *identity embedding*, the unit class feature the
   retriever ranks people by. Two images of one person then share a component in every image token, so the
   decoder can compare people token by token.

Why the projected features and a separate identity path: a merger fed the tower's raw last states, the class state
among them, gave image tokens dominated by a part common to every image (cosine ≈ 0.97 between different people in
the synthetic world, norm ≈ 150), and the decoder never learned to compare people. Through the final LayerNorm
and the projection, two people's identity embeddings are nearly orthogonal (mean cosine ≈ 0.1), as retrieval
trained them.

The tower and its projection never train; the merger trains as Qwen2-VL's merger does (stages 1 and 2, and it is
carried and frozen with the encoder in stage 3). A checkpoint records the tower's architecture (`person_vision`),
so restoring needs the checkpoint alone.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ireid.chatreid.tower_images import patches_to_images
from ireid.core.person_vision import VisionTowerFile, person_tower_modules, vision_transformer


class PersonTowerMerger(nn.Module):
    """A merge window's 2×2 patch features → one decoder embedding (Qwen2-VL's PatchMerger), plus a projection of
    the image's identity embedding added to every window's embedding."""

    def __init__(self, context_dim: int, dim: int, merge_size: int):
        super().__init__()
        self.ln_q = nn.LayerNorm(context_dim, eps=1e-6)
        width = context_dim * merge_size**2
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, dim))
        self.ln_identity = nn.LayerNorm(context_dim, eps=1e-6)
        self.identity = nn.Linear(context_dim, dim)

    def forward(self, windows: Tensor, identity: Tensor) -> Tensor:
        """`windows` [images, windows, merge², E], `identity` [images, E] → [images × windows, dim]."""
        merged = self.mlp(self.ln_q(windows).flatten(2))
        return (merged + self.identity(self.ln_identity(identity))[:, None]).flatten(0, 1)


class PersonTowerVisual(nn.Module):
    """Qwen2-VL's `visual` with a frozen person CLIP tower inside (module docstring)."""

    def __init__(self, architecture: dict[str, Any], dim: int, merge_size: int, temporal_patch_size: int):
        super().__init__()
        self.tower, self.projection = person_tower_modules(architecture)
        self.image_hw = tuple(int(s) for s in architecture["image_hw"])
        self.patch_size = self.tower.config.patch_size
        self.spatial_merge_size = merge_size
        self.temporal_patch_size = temporal_patch_size
        grid = (self.image_hw[0] // self.patch_size, self.image_hw[1] // self.patch_size)
        if grid[0] % merge_size or grid[1] % merge_size:
            raise ValueError(f"the tower's {grid[0]}x{grid[1]} patch grid does not split into {merge_size}² windows")
        self.grid_hw = grid
        self.tower.requires_grad_(False)
        self.projection.requires_grad_(False)
        self.merger = PersonTowerMerger(self.projection.out_features, dim, merge_size)

    @property
    def dtype(self) -> torch.dtype:
        """What Qwen2-VL casts pixel values to before calling its visual module."""
        return self.merger.mlp[0].weight.dtype

    def load_tower(self, tower: VisionTowerFile, where: str) -> None:
        """The tower file's weights and projection (strict: another architecture is an error naming `where`)."""
        tower.copy_into(self.tower, where, "the person tower")
        tower.copy_projection_into(self.projection, where)

    def train(self, mode: bool = True) -> PersonTowerVisual:
        """The tower stays in eval mode: it is frozen whatever the stage."""
        super().train(mode)
        self.tower.eval()
        return self

    def images(self, patches: Tensor, grid_thw: Tensor) -> Tensor:
        """The processor's flat patches back to images [N, C, H, W] (the first temporal copy of each)."""
        return patches_to_images(patches, grid_thw, self.grid_hw, self.patch_size, self.spatial_merge_size,
                                 self.temporal_patch_size, "the person tower")  # fmt: skip

    def features(self, images: Tensor) -> Tensor:
        """[N, 1 + patches, E]: every token in the retriever's embedding space (final LayerNorm, projection)."""
        with torch.no_grad():
            states = self.tower(pixel_values=images.to(self.tower.dtype)).last_hidden_state
            return self.projection(vision_transformer(self.tower).post_layernorm(states))

    def forward(self, hidden_states: Tensor, grid_thw: Tensor, **kwargs: Any) -> BaseModelOutputWithPooling:
        images = self.images(hidden_states, grid_thw)
        features = self.features(images).to(self.dtype)
        m = self.spatial_merge_size
        gh, gw = self.grid_hw
        patches = features[:, 1:].reshape(len(images), gh // m, m, gw // m, m, -1)
        windows = patches.permute(0, 1, 3, 2, 4, 5).reshape(len(images), (gh // m) * (gw // m), m * m, -1)
        merged = self.merger(windows, F.normalize(features[:, 0], dim=-1))
        return BaseModelOutputWithPooling(last_hidden_state=features, pooler_output=merged)


def install_person_tower(model: nn.Module, architecture: dict[str, Any]) -> PersonTowerVisual:
    """Replace a Qwen2-VL model's vision encoder by a person tower of `architecture`
    (`VisionTowerFile.architecture()`); the tower's weights are loaded separately (or come with a checkpoint)."""
    vision = model.config.vision_config
    if "projection_dim" not in architecture:
        raise ValueError("the person tower's architecture has no 'projection_dim': export the tower file again")
    patch = architecture["config"].get("patch_size")
    if vision.patch_size != patch:
        raise ValueError(
            f"the model's vision_config.patch_size is {vision.patch_size}, the person tower's {patch}: the processor "
            "must cut the tower's patches"
        )
    reference = model.model.visual.merger.mlp[0].weight
    visual = PersonTowerVisual(
        architecture, model.config.text_config.hidden_size, vision.spatial_merge_size, vision.temporal_patch_size
    ).to(dtype=reference.dtype)
    if reference.device.type != "meta":  # a model restored without initialisation gets its weights assigned
        visual.to(reference.device)
    model.model.visual = visual
    return visual

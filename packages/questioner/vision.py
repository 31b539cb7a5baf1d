"""Candidate images to tokens: vision tower, projector, average pooling (the pixels: `ireid.core.pixels`).

LLaVA-ReID shows the questioner several candidates, each reduced by 2×2 mean pooling of its patch grid, instead of
LLaVA-OneVision's anyres tiling (which would cost thousands of tokens per image). So each image is resized to the
vision tower's input (no tiles: a square, or the person crop of a person vision tower), and its projected patch grid
is average-pooled; odd grids keep the partial windows at the edge (ceil), each averaged over the patches it covers.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor


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

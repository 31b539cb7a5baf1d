"""Image path: square resize and normalisation, and 2×2 average pooling against hand-computed means."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from ireid.core.pixels import PixelSpec, to_pixels
from ireid.questioner.vision import pool_patches, pooled_tokens


def test_even_grid_pools_to_the_mean_of_each_window() -> None:
    grid = torch.arange(16.0).view(1, 16, 1)  # 4×4 grid, value = 4·row + col
    pooled = pool_patches(grid, 2)
    # windows: (0,1,4,5) (2,3,6,7) (8,9,12,13) (10,11,14,15)
    assert pooled.flatten().tolist() == [2.5, 4.5, 10.5, 12.5]


def test_odd_grid_keeps_edge_windows_averaged_over_the_patches_they_cover() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    features = torch.stack([values.flatten(), 10 * values.flatten()], dim=-1).unsqueeze(0)  # [1, 9, 2]
    pooled = pool_patches(features, 2)
    expected = [(1 + 2 + 4 + 5) / 4, (3 + 6) / 2, (7 + 8) / 2, 9.0]
    assert pooled.shape == (1, pooled_tokens(3, 2), 2) == (1, 4, 2)
    assert pooled[0, :, 0].tolist() == pytest.approx(expected)
    assert pooled[0, :, 1].tolist() == pytest.approx([10 * v for v in expected])


def test_real_size_grid_gives_the_expected_token_count() -> None:
    assert pooled_tokens(27, 2) == 196 and pooled_tokens(4, 2) == 4 and pooled_tokens(27, 4) == 49
    with pytest.raises(ValueError, match="square grid"):
        pool_patches(torch.zeros(1, 10, 3), 2)


def test_pixels_are_square_and_normalised_with_the_processor_statistics() -> None:
    spec = PixelSpec(size=8, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    buffer = io.BytesIO()
    Image.new("RGB", (4, 12), (255, 51, 0)).save(buffer, format="PNG")  # tall, lossless
    pixels = to_pixels([buffer.getvalue(), Image.new("RGB", (20, 20), (0, 0, 255))], spec)
    assert pixels.shape == (2, 3, 8, 8)
    assert pixels[0, 0].unique().tolist() == pytest.approx([1.0])  # (1 - 0.5) / 0.5
    assert pixels[0, 1].unique().tolist() == pytest.approx([(0.2 - 0.25) / 0.25])
    assert pixels[1, 2].unique().tolist() == pytest.approx([1.0]) and pixels[1, 0].unique().tolist() == [-1.0]

"""Qwen2-VL's flat patches back to images, for the vision towers that take a model's encoder's place.

The processor cuts each image into merge windows of 2×2 patches, each patch channels × temporal copies × pixels.
A tower that reads whole images (a person CLIP tower, an attribute net) undoes that, so the processor, the chat
template and the image-token counts stay Qwen2-VL's own.
"""

from __future__ import annotations

from torch import Tensor


def patches_to_images(
    patches: Tensor, grid_thw: Tensor, grid_hw: tuple[int, int], patch: int, merge: int, temporal: int, tower: str
) -> Tensor:
    """[N, C, H, W] (the first temporal copy of each image); an image of another grid than `grid_hw` is an error
    naming `tower` and both sizes."""
    sizes = grid_thw.tolist()
    gh, gw = grid_hw
    for t, h, w in sizes:
        if t != 1 or (h, w) != grid_hw:
            raise ValueError(
                f"an image reaches {tower} as {t} frame(s) of {h * patch}x{w * patch}; the tower reads one "
                f"{gh * patch}x{gw * patch} image (set the data's image sizes to that)"
            )
    x = patches.reshape(len(sizes), gh // merge, gw // merge, merge, merge, -1, temporal, patch, patch)[..., 0, :, :]
    # (n, bh, bw, mh, mw, C, ph, pw) → (n, C, bh, mh, ph, bw, mw, pw)
    return x.permute(0, 5, 1, 3, 6, 2, 4, 7).reshape(len(sizes), -1, gh * patch, gw * patch)

"""The synthetic world's colours: garment, hair, skin and accessory RGB, and what an infrared sensor sees instead.

Infrared intensities follow an emissivity-like value per dye, not visible lightness, so colour cannot be read
back from an infrared image (`paint`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ireid.core.vocabulary.attributes import ATTRIBUTES

if TYPE_CHECKING:
    from ireid.core.synthetic.figure import Look

RGB = tuple[int, int, int]
COLOUR_RGB: dict[str, RGB] = {
    "black": (28, 28, 32),
    "white": (236, 236, 232),
    "grey": (128, 128, 132),
    "red": (205, 30, 36),
    "orange": (240, 128, 24),
    "yellow": (244, 212, 40),
    "green": (36, 140, 62),
    "blue": (36, 82, 205),
    "purple": (122, 48, 156),
    "pink": (244, 146, 186),
    "brown": (112, 70, 38),
    "beige": (214, 192, 148),
}
HAIR_RGB: dict[str, RGB] = {
    "black": (22, 20, 20),
    "brown": (104, 62, 30),
    "blonde": (226, 196, 110),
    "red": (176, 66, 26),
    "grey": (172, 172, 176),
}
SKIN_TONES: tuple[RGB, ...] = ((246, 214, 188), (232, 190, 152), (200, 150, 110), (160, 110, 74), (112, 76, 52))
ACCESSORY_RGB: tuple[RGB, ...] = (
    (30, 30, 34),
    (96, 60, 34),
    (150, 30, 40),
    (40, 60, 120),
    (70, 90, 50),
    (180, 150, 90),
)

# Infrared intensities (0-255). Fabric: an emissivity/reflectance-like value per dye, deliberately unrelated to
# visible lightness (black dye dark, most others bright and hard to tell apart), so colour cannot be read back.
INFRARED_FABRIC: dict[str, int] = {
    "black": 78,
    "white": 196,
    "grey": 150,
    "red": 188,
    "orange": 192,
    "yellow": 200,
    "green": 132,
    "blue": 104,
    "purple": 168,
    "pink": 204,
    "brown": 146,
    "beige": 184,
}
INFRARED_LAYER = {"coat": 0.82, "jacket": 0.88}  # thick outer layers are cooler at the surface
INFRARED_SHOES = 0.55  # footwear is far from body heat
INFRARED_SKIN = 236
INFRARED_HAIR = 70  # the same for every hair colour
INFRARED_BACKGROUND = (18.0, 0.35)  # offset + factor × visible luminance: a dim, low-contrast scene
if set(COLOUR_RGB) - set(INFRARED_FABRIC):
    raise RuntimeError(f"colours without infrared intensities: {sorted(set(COLOUR_RGB) - set(INFRARED_FABRIC))}")

_UNPAINTED = {v for n in ("upper_colour", "lower_colour", "shoes_colour") for v in ATTRIBUTES[n].values} - set(
    COLOUR_RGB
)
if _UNPAINTED or set(ATTRIBUTES["hair_colour"].values) - set(HAIR_RGB):
    raise RuntimeError(f"colours without RGB values: {sorted(_UNPAINTED)} or hair colours missing from HAIR_RGB")


def luminance(pixels: np.ndarray) -> np.ndarray:
    return pixels @ np.asarray((0.299, 0.587, 0.114), dtype=np.float32)


def grey(value: float) -> RGB:
    v = max(0, min(255, round(value)))
    return (v, v, v)


@dataclass(frozen=True)
class Paint:
    """The colours garments and hair are drawn in: their visible colours, or infrared intensities."""

    upper: RGB
    lower: RGB
    shoes: RGB
    hair: RGB


def paint(attributes: Mapping[str, str], look: Look, infrared: bool) -> tuple[Paint, Look]:
    """Garment and hair colours, and `look` with skin and accessory colours, as the camera's sensor sees them."""
    if not infrared:
        return (
            Paint(
                upper=COLOUR_RGB[attributes["upper_colour"]],
                lower=COLOUR_RGB[attributes["lower_colour"]],
                shoes=COLOUR_RGB[attributes["shoes_colour"]],
                hair=HAIR_RGB[attributes["hair_colour"]],
            ),
            look,
        )
    upper = INFRARED_FABRIC[attributes["upper_colour"]] * INFRARED_LAYER.get(attributes["upper_type"], 1.0)
    colours = Paint(
        upper=grey(upper),
        lower=grey(INFRARED_FABRIC[attributes["lower_colour"]]),
        shoes=grey(INFRARED_FABRIC[attributes["shoes_colour"]] * INFRARED_SHOES),
        hair=grey(INFRARED_HAIR),
    )

    def carried(colour: RGB) -> RGB:  # bags, hats and held items: unheated, dim
        return grey(30 + 0.4 * float(luminance(np.asarray(colour, dtype=np.float32))))

    return colours, replace(
        look, skin=grey(INFRARED_SKIN), hat=carried(look.hat), bag=carried(look.bag), item=carried(look.item)
    )

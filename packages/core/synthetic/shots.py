"""Cameras and shots: which camera sees a person, how it frames them, and what an image cannot show.

Randomness comes only from seeds derived from (seed, identity, image), so an image never depends on what was
drawn before it. Cameras 0 to `NUM_CAMERAS - 1` see colour; the cameras after them are infrared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ireid.core.seeding import derive_rng, derive_seed
from ireid.core.synthetic.figure import SHOE_TOP, Look, height_factor
from ireid.core.synthetic.palette import ACCESSORY_RGB, SKIN_TONES
from ireid.core.vocabulary.attributes import COLOUR_ATTRIBUTES

NUM_CAMERAS = 6
OCCLUDERS = ("pole", "bin", "car", "passer-by")
_CAR_TOP = 0.8  # share of the frame height where a car occluder starts
_VISIBLE_SHARE = 0.01  # a part shows when this share of the frame height of it is uncovered


@dataclass(frozen=True)
class Camera:
    """A fixed viewpoint: its lighting, colour cast, sensor noise, sharpness and typical framing."""

    camid: int
    brightness: float
    cast: tuple[float, float, float]
    contrast: float
    noise: float
    blur: float
    scale: float  # person height as a share of the frame height
    infrared: bool = False


@dataclass(frozen=True)
class Shot:
    """One image: which camera, how the person is framed, what may hide part of them."""

    camera: Camera
    scale: float
    dx: float  # horizontal offset, share of frame width
    dy: float  # vertical offset, share of frame height
    flip: bool
    occluder: str | None
    layout_seed: int  # background layout
    noise_seed: int


def is_infrared(camid: int) -> bool:
    """Cameras after the `NUM_CAMERAS` colour cameras are infrared."""
    return camid >= NUM_CAMERAS


def camera(seed: int, camid: int) -> Camera:
    rng = derive_rng(seed, "camera", camid)
    if is_infrared(camid):
        return Camera(
            camid=camid,
            brightness=rng.uniform(0.85, 1.1),
            cast=(1.0, 1.0, 1.0),
            contrast=rng.uniform(0.9, 1.2),
            noise=rng.uniform(2.0, 5.0),
            blur=rng.choice((0.0, 0.45, 0.6)),
            scale=rng.uniform(0.76, 0.86),
            infrared=True,
        )
    return Camera(
        camid=camid,
        brightness=rng.uniform(0.78, 1.18),
        cast=(rng.uniform(0.9, 1.1), rng.uniform(0.93, 1.07), rng.uniform(0.9, 1.1)),
        contrast=rng.uniform(0.85, 1.1),
        noise=rng.uniform(1.5, 6.0),
        blur=rng.choice((0.0, 0.0, 0.45)),
        scale=rng.uniform(0.76, 0.86),
    )


def identity_look(seed: int, identity: int, outfit: int = 0) -> Look:
    """Skin and build belong to the person; another outfit (`outfit` > 0) brings other accessory colours."""
    rng = derive_rng(seed, "look", identity)
    look = Look(
        skin=rng.choice(SKIN_TONES),
        hat=rng.choice(ACCESSORY_RGB),
        bag=rng.choice(ACCESSORY_RGB),
        item=rng.choice(ACCESSORY_RGB),
        build=rng.uniform(0.94, 1.08),
    )
    if outfit == 0:
        return look
    rng = derive_rng(seed, "look", identity, "outfit", outfit)
    return replace(look, hat=rng.choice(ACCESSORY_RGB), bag=rng.choice(ACCESSORY_RGB), item=rng.choice(ACCESSORY_RGB))


def plan_shot(seed: int, identity: int, image: int, camid: int) -> Shot:
    rng = derive_rng(seed, "shot", identity, image)
    cam = camera(seed, camid)
    return Shot(
        camera=cam,
        scale=cam.scale * rng.uniform(0.94, 1.05),
        dx=rng.uniform(-0.08, 0.08),
        dy=rng.uniform(-0.025, 0.02),
        flip=rng.random() < 0.5,
        occluder=rng.choice(OCCLUDERS) if rng.random() < 0.15 else None,
        layout_seed=derive_seed(seed, "layout", identity, image),
        noise_seed=derive_seed(seed, "noise", identity, image),
    )


def hidden_attributes(attributes: Mapping[str, str], shot: Shot) -> frozenset[str]:
    """Attributes that this image does not show: colours under an infrared camera, shorts under a coat, and
    shoes behind a car (unless boot shafts rise above its roof). The geometry is the one `render` draws."""
    hidden = set(COLOUR_ATTRIBUTES) if shot.camera.infrared else set()
    if attributes["upper_type"] == "coat" and attributes["lower_type"] == "shorts":
        hidden |= {"lower_type", "lower_colour"}
    if shot.occluder == "car":
        feet = 0.965 + shot.dy
        shoe_top = feet - (1 - SHOE_TOP[attributes["shoes_type"]]) * shot.scale * height_factor(attributes)
        if shoe_top > _CAR_TOP - _VISIBLE_SHARE:
            hidden |= {"shoes_type", "shoes_colour"}
    return frozenset(hidden)

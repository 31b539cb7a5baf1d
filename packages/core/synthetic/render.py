"""Procedural drawing of a stylised pedestrian from attributes, as one of several cameras sees it.

Shapes are drawn at twice the output size and downsampled with a Lanczos filter, which anti-aliases
every edge at once. Sizes are fractions of the person's height, so any output size works. Randomness
comes only from seeds derived from (seed, identity, image), so an image never depends on what was drawn
before it: resumed runs match uninterrupted ones byte for byte.

Cameras 0 to `NUM_CAMERAS - 1` see colour; the cameras after them are infrared: one intensity channel in
which fabric brightness follows an emissivity-like value per dye rather than its visible lightness, warm skin
is bright, hair is dark whatever its colour, and the background is dim (`INFRARED_*` tables).
"""

from __future__ import annotations

import io
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from ireid.core.seeding import derive_rng, derive_seed
from ireid.core.vocabulary.attributes import ATTRIBUTES, COLOUR_ATTRIBUTES

NUM_CAMERAS = 6
SUPERSAMPLE = 2
JPEG_QUALITY = 90

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
OCCLUDERS = ("pole", "bin", "car", "passer-by")

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


_SHOE_TOP = {"boots": 0.83, "sneakers": 0.935, "sandals": 0.94, "leather shoes": 0.945}  # in person heights
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
class Look:
    """Per-identity details the attributes do not fix (skin, accessory colours, build)."""

    skin: RGB
    hat: RGB
    bag: RGB
    item: RGB
    build: float  # body width factor


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
        shoe_top = feet - (1 - _SHOE_TOP[attributes["shoes_type"]]) * shot.scale * _height_factor(attributes)
        if shoe_top > _CAR_TOP - _VISIBLE_SHARE:
            hidden |= {"shoes_type", "shoes_colour"}
    return frozenset(hidden)


def _shade(colour: RGB, factor: float) -> RGB:
    return tuple(max(0, min(255, round(c * factor))) for c in colour)  # type: ignore[return-value]


def _contrast(colour: RGB) -> RGB:
    """A pattern/detail colour that stands out on `colour`."""
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (32, 32, 36) if luminance > 150 else (238, 238, 232)


class _Painter:
    """Draws in person coordinates: u across (0 = body axis), v down from the top of the head, both in heights."""

    def __init__(self, image: Image.Image, cx: float, top: float, height: float):
        self.image = image
        self.draw = ImageDraw.Draw(image)
        self.cx, self.top, self.h = cx, top, height

    def xy(self, u: float, v: float) -> tuple[float, float]:
        return (self.cx + u * self.h, self.top + v * self.h)

    def box(self, u0: float, v0: float, u1: float, v1: float) -> tuple[float, float, float, float]:
        (x0, y0), (x1, y1) = self.xy(u0, v0), self.xy(u1, v1)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def poly(self, points: Sequence[tuple[float, float]], fill: RGB | int, draw: ImageDraw.ImageDraw | None = None):
        (draw or self.draw).polygon([self.xy(u, v) for u, v in points], fill=fill)

    def ellipse(
        self, u0: float, v0: float, u1: float, v1: float, fill: RGB | int | None, draw=None, outline=None, width=0.0
    ):
        (draw or self.draw).ellipse(self.box(u0, v0, u1, v1), fill=fill, outline=outline, width=self.px(width))

    def rect(self, u0: float, v0: float, u1: float, v1: float, fill: RGB | int, draw=None, radius: float = 0):
        (draw or self.draw).rounded_rectangle(self.box(u0, v0, u1, v1), radius=self.px(radius), fill=fill)

    def chord(self, u0: float, v0: float, u1: float, v1: float, start: float, end: float, fill: RGB | int, draw=None):
        (draw or self.draw).chord(self.box(u0, v0, u1, v1), start, end, fill=fill)

    def line(self, points: Sequence[tuple[float, float]], width: float, fill: RGB | int, draw=None):
        (draw or self.draw).line([self.xy(u, v) for u, v in points], fill=fill, width=self.px(width), joint="curve")

    def limb(self, points: Sequence[tuple[float, float]], width: float, fill: RGB | int, draw=None):
        """A thick line with round ends and joints."""
        self.line(points, width, fill, draw)
        r = width / 2
        for u, v in points:
            self.ellipse(u - r, v - r, u + r, v + r, fill, draw)

    def px(self, length: float) -> int:
        return max(1, round(length * self.h)) if length > 0 else 0


@dataclass(frozen=True)
class _Body:
    """Proportions from gender, age and build (in person heights)."""

    shoulders: float
    waist: float
    hips: float
    neck_v: float


def _body(attributes: Mapping[str, str], look: Look) -> _Body:
    woman = attributes["gender"] == "woman"
    shoulders = (0.235 if woman else 0.27) * look.build
    waist = (0.2 if woman else 0.215) * look.build
    age = attributes["age"]
    if age == "middle-aged":
        waist *= 1.12
    elif age == "elderly":
        shoulders *= 0.94
    hips = waist * (1.12 if woman else 1.0)
    return _Body(shoulders, waist, hips, 0.125 if age == "elderly" else 0.13)


def _height_factor(attributes: Mapping[str, str]) -> float:
    base = 0.95 if attributes["gender"] == "woman" else 1.0
    return base * {"young": 1.0, "middle-aged": 0.98, "elderly": 0.93}[attributes["age"]]


# ---------------------------------------------------------------------------------------------- scenes


def _sky(draw: ImageDraw.ImageDraw, w: int, h: int, until: float, rng: random.Random) -> None:
    top, bottom = (rng.randint(120, 160), rng.randint(170, 200), 235), (210, 225, 238)
    rows = int(h * until)
    for y in range(rows):
        t = y / max(1, rows - 1)
        draw.line([(0, y), (w, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))


def _street(draw: ImageDraw.ImageDraw, w: int, h: int, rng: random.Random) -> None:
    _sky(draw, w, h, 0.45, rng)
    x = -rng.randint(0, w // 3)
    while x < w:
        bw, top = rng.randint(w // 3, w // 2), rng.uniform(0.05, 0.3) * h
        colour = rng.choice(((170, 150, 130), (140, 140, 150), (190, 170, 140), (120, 100, 90), (200, 190, 180)))
        draw.rectangle((x, top, x + bw, 0.62 * h), fill=colour)
        for wy in np.arange(top + 0.04 * h, 0.55 * h, 0.08 * h):
            for wx in range(x + 6, x + bw - 10, 18):
                draw.rectangle((wx, wy, wx + 9, wy + 0.04 * h), fill=(90, 110, 130))
        x += bw
    draw.rectangle((0, 0.62 * h, w, h), fill=(150, 150, 148))
    draw.rectangle((0, 0.62 * h, w, 0.64 * h), fill=(110, 110, 110))
    for y in np.arange(0.7 * h, h, 0.09 * h):
        draw.line([(0, y), (w, y)], fill=(132, 132, 130), width=2)


def _park(draw: ImageDraw.ImageDraw, w: int, h: int, rng: random.Random) -> None:
    _sky(draw, w, h, 0.5, rng)
    draw.rectangle((0, 0.5 * h, w, h), fill=(88, 150, 64))
    for _ in range(rng.randint(2, 4)):
        x, r = rng.uniform(0, w), rng.uniform(0.12, 0.2) * w
        draw.rectangle((x - 0.03 * w, 0.38 * h, x + 0.03 * w, 0.54 * h), fill=(96, 66, 40))
        draw.ellipse((x - r, 0.38 * h - 2 * r, x + r, 0.42 * h), fill=(rng.randint(40, 70), rng.randint(110, 140), 50))
    draw.polygon([(0.3 * w, 0.55 * h), (0.7 * w, 0.55 * h), (w, h), (0, h)], fill=(196, 178, 140))


def _mall(draw: ImageDraw.ImageDraw, w: int, h: int, rng: random.Random) -> None:
    draw.rectangle((0, 0, w, 0.58 * h), fill=(232, 222, 200))
    x = -rng.randint(0, w // 4)
    while x < w:
        sw = rng.randint(w // 3, w // 2)
        draw.rectangle((x + 3, 0.12 * h, x + sw - 3, 0.56 * h), fill=(170, 200, 215), outline=(120, 120, 120), width=3)
        sign = rng.choice(((200, 40, 40), (40, 90, 180), (230, 160, 30), (60, 140, 80)))
        draw.rectangle((x + 3, 0.05 * h, x + sw - 3, 0.1 * h), fill=sign)
        x += sw
    draw.rectangle((0, 0.58 * h, w, h), fill=(214, 210, 204))
    for y in np.arange(0.62 * h, h, 0.07 * h):
        draw.line([(0, y), (w, y)], fill=(190, 186, 180), width=2)
    for i in range(-4, 9):
        draw.line([(w / 2 + i * 0.08 * w, 0.58 * h), (w / 2 + i * 0.3 * w, h)], fill=(190, 186, 180), width=2)


def _station(draw: ImageDraw.ImageDraw, w: int, h: int, rng: random.Random) -> None:
    draw.rectangle((0, 0, w, 0.6 * h), fill=(96, 100, 108))
    draw.rectangle((0, 0.18 * h, w, 0.5 * h), fill=(190, 194, 200))  # a train alongside
    for x in range(-rng.randint(0, 30), w, 34):
        draw.rectangle((x + 4, 0.23 * h, x + 26, 0.34 * h), fill=(60, 80, 100))
    draw.rectangle((0, 0.4 * h, w, 0.43 * h), fill=rng.choice(((200, 40, 40), (40, 90, 180), (40, 140, 80))))
    for x in np.arange(rng.uniform(0, 0.5) * w, w, 0.6 * w):
        draw.rectangle((x, 0, x + 0.07 * w, 0.6 * h), fill=(150, 150, 156))
    draw.rectangle((0, 0.6 * h, w, h), fill=(170, 168, 162))
    draw.rectangle((0, 0.64 * h, w, 0.66 * h), fill=(236, 200, 30))


SCENES = {"street": _street, "park": _park, "shopping mall": _mall, "train station": _station}
if set(SCENES) != set(ATTRIBUTES["scene"].values):
    raise RuntimeError("every scene value needs a background painter")


# ---------------------------------------------------------------------------------------------- person


def _legs(p: _Painter, a: Mapping[str, str], b: _Body, skin: RGB, colour: RGB) -> None:
    hem = {"trousers": 0.93, "shorts": 0.66}.get(a["lower_type"], 0.0)
    half = b.hips / 2
    for side in (-1, 1):
        leg = [(side * 0.006, 0.5), (side * half, 0.5), (side * 0.1, 0.94), (side * 0.028, 0.94)]
        p.poly(leg, skin)
        if hem:
            t = (hem - 0.5) / 0.44
            out_u, in_u = side * (half + (0.1 - half) * t), side * (0.006 + 0.022 * t)
            p.poly([leg[0], leg[1], (out_u, hem), (in_u, hem)], colour)
    if hem:
        p.rect(-half, 0.47, half, 0.56, colour)
    else:  # skirts
        length, flare = (0.66, 0.045) if a["lower_type"] == "short skirt" else (0.9, 0.08)
        p.poly([(-half, 0.47), (half, 0.47), (half + flare, length), (-half - flare, length)], colour)
        p.line([(-half - flare, length), (half + flare, length)], 0.008, _shade(colour, 0.75))


def _shoes(p: _Painter, a: Mapping[str, str], skin: RGB, colour: RGB) -> None:
    kind = a["shoes_type"]
    for side in (-1, 1):
        inner, outer = side * 0.02, side * 0.118
        if kind == "boots":
            p.rect(side * 0.025, 0.83, side * 0.105, 0.96, colour)
            p.rect(inner, 0.935, outer, 0.99, colour, radius=0.02)
            p.line([(side * 0.025, 0.835), (side * 0.105, 0.835)], 0.008, _shade(colour, 0.7))
        elif kind == "sandals":
            p.rect(inner, 0.94, outer, 0.985, skin, radius=0.015)
            p.rect(inner, 0.978, outer, 0.992, _shade(colour, 0.8))
            for v in (0.948, 0.966):
                p.line([(inner, v), (outer, v)], 0.01, colour)
        elif kind == "leather shoes":
            p.ellipse(inner, 0.945, outer + side * 0.01, 0.992, colour)
            p.ellipse(
                side * 0.06, 0.952, side * 0.085, 0.962, _shade(colour, 1.6) if colour[0] < 60 else (250, 250, 250)
            )
        else:  # sneakers
            p.rect(inner, 0.935, outer, 0.99, colour, radius=0.02)
            p.rect(inner, 0.974, outer, 0.992, (245, 245, 240) if a["shoes_colour"] != "white" else (150, 150, 150))
            p.line([(side * 0.04, 0.95), (side * 0.07, 0.95)], 0.006, _contrast(colour))


def _sleeve_end(kind: str) -> float:
    return 0.38 if kind == "t-shirt" else 1.0


def _arm_points(a: Mapping[str, str], b: _Body, side: int) -> list[tuple[float, float]]:
    s = b.shoulders / 2
    shoulder = (side * (s - 0.02), 0.175)
    item = a["held_item"]
    if side == 1 and item == "umbrella":
        return [shoulder, (s + 0.05, 0.3), (s + 0.02, 0.2)]
    if side == 1 and item == "phone":
        return [shoulder, (s + 0.03, 0.3), (0.07, 0.11)]
    if side == 1 and item == "cup":
        return [shoulder, (s + 0.035, 0.33), (s - 0.005, 0.37)]
    if side == 1 and item == "book":
        return [shoulder, (s + 0.03, 0.36), (0.03, 0.45)]
    return [shoulder, (side * (s + 0.025), 0.33), (side * (s + 0.035), 0.48)]


def _split_path(points: list[tuple[float, float]], share: float) -> list[tuple[float, float]]:
    """The first `share` of a polyline's length."""
    lengths = [np.hypot(u1 - u0, v1 - v0) for (u0, v0), (u1, v1) in itertools.pairwise(points)]
    budget = share * sum(lengths)
    out = [points[0]]
    for ((u0, v0), (u1, v1)), length in zip(itertools.pairwise(points), lengths, strict=True):
        if budget >= length:
            out.append((u1, v1))
            budget -= length
            continue
        t = budget / length
        out.append((u0 + (u1 - u0) * t, v0 + (v1 - v0) * t))
        break
    return out


def _upper(p: _Painter, a: Mapping[str, str], b: _Body, look: Look, colour: RGB, mask: ImageDraw.ImageDraw) -> None:
    """Torso and arms; the garment parts also go into `mask`, through which the pattern is painted."""
    kind = a["upper_type"]
    s, w = b.shoulders / 2, b.waist / 2
    hem, flare = {"coat": (0.7, 0.035), "jacket": (0.48, 0.0)}.get(kind, (0.5, 0.0))
    torso = [(-s + 0.02, 0.155), (s - 0.02, 0.155), (s, 0.18), (w + flare, hem), (-w - flare, hem), (-s, 0.18)]
    p.poly(torso, colour)
    p.poly(torso, 255, mask)
    arm_width = 0.062 * look.build
    for side in (-1, 1):
        points = _arm_points(a, b, side)
        p.limb(points, arm_width * 0.85, look.skin)
        sleeve = _split_path(points, _sleeve_end(kind))
        sleeve_width = arm_width if kind != "t-shirt" else arm_width * 1.1
        p.limb(sleeve, sleeve_width, colour)
        p.limb(sleeve, sleeve_width, 255, mask)
        hand = points[-1]
        r = arm_width * 0.55
        p.ellipse(hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r, look.skin)


def _pattern(p: _Painter, a: Mapping[str, str], colour: RGB, mask: Image.Image) -> None:
    kind = a["upper_pattern"]
    if kind == "plain":
        return
    ink = Image.new("L", mask.size, 0)
    draw = ImageDraw.Draw(ink)
    step = max(4, p.px(0.036))
    width, height = mask.size
    if kind in ("striped", "checked"):
        for y in range(round(p.top) % step, height, step):
            draw.rectangle((0, y, width, y + step // 2 - 1), fill=255 if kind == "striped" else 150)
    if kind == "checked":
        for x in range(round(p.cx) % step, width, step):
            draw.rectangle((x, 0, x + step // 2 - 1, height), fill=150)
    if kind == "dotted":
        r = max(1, step // 4)
        for row, y in enumerate(range(round(p.top) % step, height, step)):
            for x in range(round(p.cx) % step + (step // 2) * (row % 2), width, step):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    p.image.paste(_contrast(colour), (0, 0), ImageChops.multiply(ink, mask))


def _upper_details(p: _Painter, a: Mapping[str, str], b: _Body, colour: RGB) -> None:
    kind, dark, detail = a["upper_type"], _shade(colour, 0.7), _contrast(colour)
    w = b.waist / 2
    if kind == "t-shirt":
        p.chord(-0.03, 0.12, 0.03, 0.18, 0, 180, _shade(colour, 0.8))
    elif kind == "button-up shirt":
        p.poly([(-0.035, 0.15), (0.0, 0.19), (-0.01, 0.2), (-0.04, 0.17)], detail)
        p.poly([(0.035, 0.15), (0.0, 0.19), (0.01, 0.2), (0.04, 0.17)], detail)
        for v in (0.24, 0.3, 0.36, 0.42):
            p.ellipse(-0.006, v - 0.006, 0.006, v + 0.006, detail)
    elif kind == "sweater":
        p.rect(-w, 0.465, w, 0.5, dark)
        p.chord(-0.035, 0.125, 0.035, 0.185, 0, 180, dark)
    elif kind == "hoodie":
        p.ellipse(-0.085, 0.12, 0.085, 0.215, _shade(colour, 0.8))  # the hood, lying around the neck
        p.poly([(-0.06, 0.36), (0.06, 0.36), (0.075, 0.45), (-0.075, 0.45)], dark)
        for u in (-0.02, 0.02):
            p.line([(u, 0.17), (u, 0.25)], 0.006, detail)
    elif kind == "jacket":
        p.poly([(-0.035, 0.16), (0.035, 0.16), (0.025, 0.48), (-0.025, 0.48)], detail)
        p.line([(-0.035, 0.16), (-0.02, 0.3)], 0.01, dark)
        p.line([(0.035, 0.16), (0.02, 0.3)], 0.01, dark)
    else:  # coat
        p.poly([(-0.03, 0.155), (0.03, 0.155), (0.0, 0.24)], (236, 236, 232) if colour[0] < 200 else (60, 60, 60))
        for v in (0.28, 0.36, 0.44, 0.52):
            for u in (-0.03, 0.03):
                p.ellipse(u - 0.007, v - 0.007, u + 0.007, v + 0.007, detail)
        p.rect(-w - 0.01, 0.47, w + 0.01, 0.49, dark)


def _logo(p: _Painter, a: Mapping[str, str], garment: RGB) -> None:
    if a["upper_logo"] != "yes":
        return
    candidates = ((250, 250, 250), (250, 210, 0), (220, 20, 30), (20, 20, 20), (0, 170, 220))
    colour = max(candidates, key=lambda c: sum(abs(x - y) for x, y in zip(c, garment, strict=True)))
    u, v = 0.058, 0.3
    p.ellipse(u - 0.032, v - 0.032, u + 0.032, v + 0.032, colour)
    p.ellipse(u - 0.009, v - 0.009, u + 0.009, v + 0.009, garment)


def _bag_behind(p: _Painter, a: Mapping[str, str], b: _Body, look: Look) -> None:
    if a["bag"] == "backpack":
        s = b.shoulders / 2
        p.rect(-s - 0.03, 0.13, s + 0.03, 0.44, look.bag, radius=0.04)


def _bag_front(p: _Painter, a: Mapping[str, str], b: _Body, look: Look) -> None:
    s, w = b.shoulders / 2, b.hips / 2
    kind, dark = a["bag"], _shade(look.bag, 0.7)
    if kind == "backpack":
        for side in (-1, 1):
            p.line([(side * (s - 0.03), 0.16), (side * (s - 0.04), 0.42)], 0.024, dark)
    elif kind == "shoulder bag":
        p.line([(s - 0.04, 0.16), (-w + 0.01, 0.46)], 0.014, dark)
        p.rect(-w - 0.06, 0.43, -w + 0.05, 0.55, look.bag, radius=0.012)
        p.line([(-w - 0.06, 0.46), (-w + 0.05, 0.46)], 0.008, dark)
    elif kind == "handbag":
        hu = -(b.shoulders / 2 + 0.035)
        p.ellipse(hu - 0.03, 0.45, hu + 0.03, 0.52, None, outline=dark, width=0.01)
        p.poly([(hu - 0.055, 0.49), (hu + 0.055, 0.49), (hu + 0.065, 0.6), (hu - 0.065, 0.6)], look.bag)


def _hair_behind(p: _Painter, a: Mapping[str, str], hair: RGB) -> None:
    """Hair hanging down the back, seen beside the neck above the shoulders (drawn before the torso)."""
    if a["hair_length"] != "short":
        bottom = 0.2 if a["hair_length"] == "shoulder-length" else 0.36
        p.rect(-0.068, 0.03, 0.068, bottom, hair, radius=0.04)


def _head(p: _Painter, a: Mapping[str, str], b: _Body, look: Look, hair: RGB) -> None:
    length = a["hair_length"]
    p.rect(-0.022, 0.1, 0.022, b.neck_v + 0.05, _shade(look.skin, 0.9))
    p.ellipse(-0.05, 0.015, 0.05, 0.14, look.skin)
    for u in (-0.02, 0.02):
        p.ellipse(u - 0.0065, 0.072, u + 0.0065, 0.085, (40, 30, 30))
    p.line([(-0.012, 0.112), (0.012, 0.112)], 0.005, _shade(look.skin, 0.7))
    p.chord(-0.058, -0.002, 0.058, 0.12, 180, 360, hair)
    if length == "short":
        p.rect(-0.056, 0.05, -0.044, 0.085, hair)
        p.rect(0.044, 0.05, 0.056, 0.085, hair)
    else:
        bottom = 0.2 if length == "shoulder-length" else 0.28
        p.rect(-0.068, 0.045, -0.042, bottom, hair, radius=0.012)
        p.rect(0.042, 0.045, 0.068, bottom, hair, radius=0.012)
    p.chord(-0.05, 0.02, 0.05, 0.07, 180, 360, hair)  # fringe


def _glasses(p: _Painter, a: Mapping[str, str]) -> None:
    kind = a["glasses"]
    if kind == "sunglasses":  # one dark band across the eyes
        p.rect(-0.048, 0.064, 0.048, 0.092, (10, 10, 12), radius=0.01)
    elif kind == "eyeglasses":  # light rims around still-visible eyes
        for u in (-0.021, 0.021):
            p.ellipse(u - 0.018, 0.065, u + 0.018, 0.092, None, outline=(196, 198, 210), width=0.006)
        p.line([(-0.005, 0.075), (0.005, 0.075)], 0.006, (196, 198, 210))


def _hat(p: _Painter, a: Mapping[str, str], look: Look) -> None:
    kind, colour = a["hat"], look.hat
    if kind == "cap":
        p.chord(-0.06, -0.012, 0.06, 0.1, 180, 360, colour)
        p.ellipse(-0.075, 0.035, 0.075, 0.062, _shade(colour, 0.75))
    elif kind == "beanie":
        p.chord(-0.062, -0.03, 0.062, 0.13, 180, 360, colour)
        p.rect(-0.063, 0.035, 0.063, 0.06, _shade(colour, 0.8))
        p.ellipse(-0.016, -0.05, 0.016, -0.018, _shade(colour, 1.3))
    elif kind == "sun hat":
        straw = (222, 196, 128)
        p.ellipse(-0.12, 0.018, 0.12, 0.06, straw)
        p.chord(-0.058, -0.035, 0.058, 0.09, 180, 360, straw)
        p.rect(-0.058, 0.018, 0.058, 0.032, colour)


def _held(p: _Painter, a: Mapping[str, str], b: _Body, look: Look) -> None:
    kind = a["held_item"]
    hand = _arm_points(a, b, 1)[-1]
    if kind == "umbrella":
        p.line([hand, (0.03, -0.07)], 0.01, (40, 40, 40))
        p.chord(-0.2, -0.19, 0.26, 0.05, 180, 360, look.item)
        for u in (-0.06, 0.03, 0.12):
            p.line([(0.03, -0.19), (u, -0.07)], 0.005, _shade(look.item, 0.7))
    elif kind == "phone":
        p.rect(hand[0] - 0.012, hand[1] - 0.04, hand[0] + 0.012, hand[1] + 0.015, (20, 20, 24))
    elif kind == "cup":
        p.rect(hand[0] - 0.02, hand[1] - 0.06, hand[0] + 0.02, hand[1] + 0.01, (245, 245, 240))
        p.rect(hand[0] - 0.02, hand[1] - 0.035, hand[0] + 0.02, hand[1] - 0.015, (120, 80, 50))
        p.rect(hand[0] - 0.022, hand[1] - 0.068, hand[0] + 0.022, hand[1] - 0.056, (60, 60, 60))
    elif kind == "book":
        p.rect(hand[0] - 0.07, hand[1] - 0.12, hand[0] + 0.04, hand[1] + 0.01, look.item)
        p.rect(hand[0] + 0.03, hand[1] - 0.115, hand[0] + 0.04, hand[1] + 0.005, (240, 236, 220))
        r = 0.033
        p.ellipse(hand[0] - r, hand[1] - r, hand[0] + r, hand[1] + r, look.skin)


def _occlude(draw: ImageDraw.ImageDraw, kind: str, w: int, h: int, rng: random.Random) -> None:
    """Something between camera and person, hiding at most about a third of them."""
    side = rng.choice((-1, 1))
    if kind == "pole":
        x = w / 2 + side * rng.uniform(0.05, 0.25) * w
        draw.rectangle((x, 0, x + 0.09 * w, h), fill=rng.choice(((90, 96, 100), (40, 80, 50), (150, 150, 150))))
    elif kind == "bin":
        x0 = w / 2 + (0.0 if side > 0 else -0.55 * w)
        draw.rounded_rectangle((x0, 0.72 * h, x0 + 0.55 * w, h), radius=6, fill=(50, 80, 60))
    elif kind == "car":
        colour = rng.choice(((200, 200, 205), (30, 30, 35), (160, 30, 30), (40, 70, 140)))
        draw.rounded_rectangle((-0.1 * w, 0.8 * h, 1.1 * w, 1.1 * h), radius=20, fill=colour)
    else:  # passer-by at the frame edge, out of focus
        x = 0 if side < 0 else w
        colour = rng.choice(((60, 60, 70), (120, 90, 70), (90, 110, 140)))
        draw.ellipse((x - 0.3 * w, 0.12 * h, x + 0.3 * w, 1.2 * h), fill=colour)


def _camera_effects(image: Image.Image, shot: Shot) -> Image.Image:
    cam = shot.camera
    if cam.blur:
        image = image.filter(ImageFilter.GaussianBlur(cam.blur))
    pixels = np.asarray(image, dtype=np.float32)
    if cam.infrared:  # one intensity channel; details drawn in colour (eyes, cup, occluders) keep their luminance
        pixels = _luminance(pixels)[..., None]
    pixels = (pixels - 128.0) * cam.contrast + 128.0
    pixels *= cam.brightness * np.asarray(cam.cast[: pixels.shape[2]], dtype=np.float32)
    rng = np.random.default_rng(shot.noise_seed)
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(cam.noise)
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(pixels, 3, axis=2) if cam.infrared else pixels, "RGB")


def _luminance(pixels: np.ndarray) -> np.ndarray:
    return pixels @ np.asarray((0.299, 0.587, 0.114), dtype=np.float32)


def _grey(value: float) -> RGB:
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
        upper=_grey(upper),
        lower=_grey(INFRARED_FABRIC[attributes["lower_colour"]]),
        shoes=_grey(INFRARED_FABRIC[attributes["shoes_colour"]] * INFRARED_SHOES),
        hair=_grey(INFRARED_HAIR),
    )

    def carried(colour: RGB) -> RGB:  # bags, hats and held items: unheated, dim
        return _grey(30 + 0.4 * float(_luminance(np.asarray(colour, dtype=np.float32))))

    return colours, replace(
        look, skin=_grey(INFRARED_SKIN), hat=carried(look.hat), bag=carried(look.bag), item=carried(look.item)
    )


def _infrared_background(image: Image.Image) -> Image.Image:
    offset, factor = INFRARED_BACKGROUND
    grey = offset + factor * _luminance(np.asarray(image, dtype=np.float32))
    return Image.fromarray(np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2), "RGB")


def render(attributes: Mapping[str, str], look: Look, shot: Shot, size: tuple[int, int] = (128, 64)) -> Image.Image:
    """Draw one image (`size` is height x width) of a person with `attributes` as `shot` frames them."""
    height, width = size
    H, W = height * SUPERSAMPLE, width * SUPERSAMPLE
    layout = random.Random(shot.layout_seed)
    image = Image.new("RGB", (W, H))
    SCENES[attributes["scene"]](ImageDraw.Draw(image), W, H, layout)
    infrared = shot.camera.infrared
    if infrared:
        image = _infrared_background(image)
    colours, look = paint(attributes, look, infrared)

    person_h = H * shot.scale * _height_factor(attributes)
    feet = H * (0.965 + shot.dy)
    p = _Painter(image, W * (0.5 + shot.dx), feet - person_h, person_h)
    body = _body(attributes, look)
    mask = Image.new("L", image.size, 0)
    _bag_behind(p, attributes, body, look)
    _hair_behind(p, attributes, colours.hair)
    _legs(p, attributes, body, look.skin, colours.lower)
    _shoes(p, attributes, look.skin, colours.shoes)
    _upper(p, attributes, body, look, colours.upper, ImageDraw.Draw(mask))
    _pattern(p, attributes, colours.upper, mask)
    _upper_details(p, attributes, body, colours.upper)
    _logo(p, attributes, colours.upper)
    _bag_front(p, attributes, body, look)
    _head(p, attributes, body, look, colours.hair)
    _glasses(p, attributes)
    _hat(p, attributes, look)
    _held(p, attributes, body, look)
    if shot.occluder:
        _occlude(p.draw, shot.occluder, W, H, layout)

    if shot.flip:
        image = ImageOps.mirror(image)
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    return _camera_effects(image, shot)


def encode_jpeg(image: Image.Image) -> bytes:
    """Fixed quality and chroma sampling: same pixels, same bytes (4:4:4 keeps small garments' colours)."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    return buffer.getvalue()


def render_image(
    attributes: Mapping[str, str],
    *,
    seed: int,
    identity: int,
    image: int,
    camid: int,
    size: tuple[int, int],
    outfit: int = 0,
) -> Image.Image:
    """Image `image` of identity `identity` (wearing outfit `outfit`, whose values `attributes` are) through
    camera `camid`, from seeds alone."""
    return render(attributes, identity_look(seed, identity, outfit), plan_shot(seed, identity, image, camid), size)

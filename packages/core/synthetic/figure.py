"""Drawing the person: body proportions, garments, hair, accessories, in coordinates of the person's height.

Sizes are fractions of the person's height, so any output size works; `render` places and frames the figure.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from ireid.core.synthetic.palette import RGB, Paint

SHOE_TOP = {"boots": 0.83, "sneakers": 0.935, "sandals": 0.94, "leather shoes": 0.945}  # in person heights


@dataclass(frozen=True)
class Look:
    """Per-identity details the attributes do not fix (skin, accessory colours, build)."""

    skin: RGB
    hat: RGB
    bag: RGB
    item: RGB
    build: float  # body width factor


def _shade(colour: RGB, factor: float) -> RGB:
    return tuple(max(0, min(255, round(c * factor))) for c in colour)  # type: ignore[return-value]


def _contrast(colour: RGB) -> RGB:
    """A pattern/detail colour that stands out on `colour`."""
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    return (32, 32, 36) if luminance > 150 else (238, 238, 232)


class Painter:
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


def height_factor(attributes: Mapping[str, str]) -> float:
    base = 0.95 if attributes["gender"] == "woman" else 1.0
    return base * {"young": 1.0, "middle-aged": 0.98, "elderly": 0.93}[attributes["age"]]


# ---------------------------------------------------------------------------------------------- person


def _legs(p: Painter, a: Mapping[str, str], b: _Body, skin: RGB, colour: RGB) -> None:
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


def _shoes(p: Painter, a: Mapping[str, str], skin: RGB, colour: RGB) -> None:
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


def _upper(p: Painter, a: Mapping[str, str], b: _Body, look: Look, colour: RGB, mask: ImageDraw.ImageDraw) -> None:
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


def _pattern(p: Painter, a: Mapping[str, str], colour: RGB, mask: Image.Image) -> None:
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


def _upper_details(p: Painter, a: Mapping[str, str], b: _Body, colour: RGB) -> None:
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


def _logo(p: Painter, a: Mapping[str, str], garment: RGB) -> None:
    if a["upper_logo"] != "yes":
        return
    candidates = ((250, 250, 250), (250, 210, 0), (220, 20, 30), (20, 20, 20), (0, 170, 220))
    colour = max(candidates, key=lambda c: sum(abs(x - y) for x, y in zip(c, garment, strict=True)))
    u, v = 0.058, 0.3
    p.ellipse(u - 0.032, v - 0.032, u + 0.032, v + 0.032, colour)
    p.ellipse(u - 0.009, v - 0.009, u + 0.009, v + 0.009, garment)


def _bag_behind(p: Painter, a: Mapping[str, str], b: _Body, look: Look) -> None:
    if a["bag"] == "backpack":
        s = b.shoulders / 2
        p.rect(-s - 0.03, 0.13, s + 0.03, 0.44, look.bag, radius=0.04)


def _bag_front(p: Painter, a: Mapping[str, str], b: _Body, look: Look) -> None:
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


def _hair_behind(p: Painter, a: Mapping[str, str], hair: RGB) -> None:
    """Hair hanging down the back, seen beside the neck above the shoulders (drawn before the torso)."""
    if a["hair_length"] != "short":
        bottom = 0.2 if a["hair_length"] == "shoulder-length" else 0.36
        p.rect(-0.068, 0.03, 0.068, bottom, hair, radius=0.04)


def _head(p: Painter, a: Mapping[str, str], b: _Body, look: Look, hair: RGB) -> None:
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


def _glasses(p: Painter, a: Mapping[str, str]) -> None:
    kind = a["glasses"]
    if kind == "sunglasses":  # one dark band across the eyes
        p.rect(-0.048, 0.064, 0.048, 0.092, (10, 10, 12), radius=0.01)
    elif kind == "eyeglasses":  # light rims around still-visible eyes
        for u in (-0.021, 0.021):
            p.ellipse(u - 0.018, 0.065, u + 0.018, 0.092, None, outline=(196, 198, 210), width=0.006)
        p.line([(-0.005, 0.075), (0.005, 0.075)], 0.006, (196, 198, 210))


def _hat(p: Painter, a: Mapping[str, str], look: Look) -> None:
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


def _held(p: Painter, a: Mapping[str, str], b: _Body, look: Look) -> None:
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


def draw_person(p: Painter, attributes: Mapping[str, str], look: Look, colours: Paint) -> None:
    """Every part in drawing order, back to front."""
    body = _body(attributes, look)
    mask = Image.new("L", p.image.size, 0)
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

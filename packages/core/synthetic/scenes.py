"""Backgrounds the person stands in front of: street, park, shopping mall, train station."""

from __future__ import annotations

import random

import numpy as np
from PIL import ImageDraw

from ireid.core.vocabulary.attributes import ATTRIBUTES


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

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
import random
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from ireid.core.synthetic.figure import Look, Painter, draw_person, height_factor
from ireid.core.synthetic.palette import INFRARED_BACKGROUND, luminance, paint
from ireid.core.synthetic.scenes import SCENES
from ireid.core.synthetic.shots import Shot, identity_look, plan_shot

SUPERSAMPLE = 2
JPEG_QUALITY = 90


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
        pixels = luminance(pixels)[..., None]
    pixels = (pixels - 128.0) * cam.contrast + 128.0
    pixels *= cam.brightness * np.asarray(cam.cast[: pixels.shape[2]], dtype=np.float32)
    rng = np.random.default_rng(shot.noise_seed)
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(cam.noise)
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(pixels, 3, axis=2) if cam.infrared else pixels, "RGB")


def _infrared_background(image: Image.Image) -> Image.Image:
    offset, factor = INFRARED_BACKGROUND
    grey = offset + factor * luminance(np.asarray(image, dtype=np.float32))
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

    person_h = H * shot.scale * height_factor(attributes)
    feet = H * (0.965 + shot.dy)
    p = Painter(image, W * (0.5 + shot.dx), feet - person_h, person_h)
    draw_person(p, attributes, look, colours)
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

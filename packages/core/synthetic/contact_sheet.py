"""A contact sheet of a world: the first identities, every camera, captioned with their initial descriptions.

A picture to look at before training on a world: whether the people, the cameras and the texts fit together.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ireid.core.loader import iter_samples
from ireid.core.records import Record
from ireid.core.shards import atomic_write_bytes

# ---------------------------------------------------------------------------------------------- contact sheet
SHEET_SCALE = 2
SHEET_PAD = 6
SHEET_GROUP_GAP = 18
CAPTION_LINES = 6
CAPTION_LINE_HEIGHT = 12


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=10)


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to a pixel width; the last line is cut with an ellipsis when text overflows."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > CAPTION_LINES:
        lines = lines[:CAPTION_LINES]
        while lines[-1] and font.getlength(lines[-1] + " …") > width:
            lines[-1] = lines[-1][:-1]
        lines[-1] += " …"
    return lines


def contact_sheet_size(n_ids: int, images_per_id: int, image_size: tuple[int, int], per_row: int) -> tuple[int, int]:
    """(width, height) of the sheet `write_contact_sheet` draws for these counts."""
    cell_w = image_size[1] * SHEET_SCALE + SHEET_PAD
    cell_h = image_size[0] * SHEET_SCALE + CAPTION_LINES * CAPTION_LINE_HEIGHT + SHEET_PAD
    columns = min(per_row, n_ids)
    rows = -(-n_ids // per_row)
    width = columns * images_per_id * cell_w + (columns - 1) * SHEET_GROUP_GAP + SHEET_PAD
    return width, rows * cell_h + SHEET_PAD


def _first_identities(source: Iterable[tuple[Record, Image.Image]], n: int) -> list[list[tuple[Record, Image.Image]]]:
    groups: dict[str, list[tuple[Record, Image.Image]]] = {}
    for record, image in source:
        person = record.orig_pid or record.key
        if person not in groups and len(groups) == n:
            break
        groups.setdefault(person, []).append((record, image))
    return list(groups.values())


def write_contact_sheet(
    source: Path | str | Iterable[tuple[Record, Image.Image]],
    path: Path | str,
    *,
    n: int = 8,
    split: str = "test",
    per_row: int = 2,
) -> Path:
    """A PNG grid of the first `n` identities (every image, captioned with its initial description).

    `source` is a shard folder (its `split` is read) or (record, image) pairs. For eyeballing that the
    people look like people and differ visibly.
    """
    if isinstance(source, str | Path):
        source = ((s.record, s.image) for s in iter_samples(source, split))
    groups = _first_identities(source, n)
    if not groups:
        raise ValueError(f"no samples to put on a contact sheet ({path})")
    first = groups[0][0][1]
    image_size = (first.height, first.width)
    per_id = max(len(g) for g in groups)
    sheet = Image.new("RGB", contact_sheet_size(len(groups), per_id, image_size, per_row), "white")
    draw, font = ImageDraw.Draw(sheet), _font()
    tile_w, tile_h = image_size[1] * SHEET_SCALE, image_size[0] * SHEET_SCALE
    cell_h = tile_h + CAPTION_LINES * CAPTION_LINE_HEIGHT + SHEET_PAD
    for g, group in enumerate(groups):
        x0 = SHEET_PAD + (g % per_row) * (per_id * (tile_w + SHEET_PAD) + SHEET_GROUP_GAP)
        y0 = SHEET_PAD + (g // per_row) * cell_h
        for i, (record, image) in enumerate(group):
            x = x0 + i * (tile_w + SHEET_PAD)
            sheet.paste(image.convert("RGB").resize((tile_w, tile_h), Image.Resampling.NEAREST), (x, y0))
            caption = f"{record.orig_pid} cam {record.camid}: {record.initial_description}"
            for line_no, line in enumerate(_wrap(caption, font, tile_w)):
                draw.text((x, y0 + tile_h + 2 + line_no * CAPTION_LINE_HEIGHT), line, fill=(20, 20, 20), font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)

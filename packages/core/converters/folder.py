"""Your own camera crops: `ROOT/<split>/<person>/<image>`, one folder per person, no annotation file.

`<split>` is `train`, `val` or `test` (at least one of them); a person folder's name is its source id. Images are
`.jpg`, `.jpeg`, `.png` or `.bmp` (re-encoded to PNG). Records come out without text: `ireid data build-interactive`
writes the descriptions and dialogues, and the questioner trains on those.
"""

from __future__ import annotations

from pathlib import Path

from ireid.core.converters.common import ConversionError, SourceItem, is_junk

SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
LAYOUT = "ROOT/train|val|test/<person>/<image>: one folder per person in each split folder"


def read_folder(root: Path) -> tuple[list[SourceItem], int]:
    """Items of every image in a person folder (files of other types are not images: none is junk, count 0)."""
    splits = [s for s in SPLITS if (root / s).is_dir()]
    if not splits:
        raise ConversionError(f"{root}: no train/, val/ or test/ folder (expected {LAYOUT})")
    items = []
    for split in splits:
        people = sorted(p for p in (root / split).iterdir() if not is_junk(p))
        loose = [p for p in people if not p.is_dir()]
        if loose:
            raise ConversionError(f"{loose[0]}: a file directly in a split folder (expected {LAYOUT})")
        for person in people:
            images = sorted(p for p in person.iterdir() if not is_junk(p) and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ConversionError(f"{person}: a person folder without images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            items += [
                SourceItem(image=image, orig_pid=person.name, split=split, where=f"{person}: {image.name}")
                for image in images
            ]
    return items, 0

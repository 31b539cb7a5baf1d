"""PRCC (Yang et al., TPAMI 2021), as distributed: `rgb/train/<id>/`, `rgb/val/<id>/`, `rgb/test/{A,B,C}/<id>/`.

Three cameras see each person: A and B in the same clothes, C in other clothes. In train and val the camera
is the file name's first letter (`A_cropped_rgb001.jpg`); in test it is the folder. `camid` is A=1, B=2, C=3,
and `clothes_id` numbers each person's two outfits (A and B share one, C has the other). Test follows the
benchmark: camera A is the gallery, B and C the queries; B's queries are its same-clothes setting and C's its
cloth-changing one (a query's `clothes_id` equals its person's gallery `clothes_id` only for B). Sampling one
gallery image per person (the benchmark's single-shot runs) is left to the evaluation. `sketch/` is not read.
"""

from __future__ import annotations

import re
from pathlib import Path

from ireid.core.converters.common import ConversionError, SourceItem, is_junk, number_outfits, require_dir

CAMERAS = {"A": 1, "B": 2, "C": 3}
OUTFITS = {"A": "AB", "B": "AB", "C": "C"}
TEST_ROLES = {"A": "gallery", "B": "query", "C": "query"}
LAYOUT = "the PRCC layout: rgb/train/<id>/, rgb/val/<id>/ and rgb/test/A/<id>/, rgb/test/B/<id>/, rgb/test/C/<id>/"
_TRAIN_NAME_RE = re.compile(r"^([ABC])_.*\.(jpg|jpeg|png)$", re.I)
_TEST_NAME_RE = re.compile(r"^.+\.(jpg|jpeg|png)$", re.I)


def _people(directory: Path) -> list[tuple[str, list[Path]]]:
    """(person id, its images) of each `<id>/` folder; anything else there is an error."""
    people = []
    for person in sorted(p for p in directory.iterdir() if not is_junk(p)):
        if not person.is_dir() or not person.name.isdigit():
            raise ConversionError(f"{person}: not a person folder named by its id (expected {LAYOUT})")
        people.append((str(int(person.name)), sorted(p for p in person.iterdir() if not is_junk(p))))
    return people


def _item(path: Path, pid: str, split: str, camera: str) -> tuple[SourceItem, str]:
    role = TEST_ROLES[camera] if split == "test" else None
    item = SourceItem(
        image=path, orig_pid=pid, split=split, where=f"{path.parent}: {path.name}", camid=CAMERAS[camera], role=role
    )
    return item, OUTFITS[camera]


def read_prcc(root: Path) -> tuple[list[SourceItem], int]:
    """Items of every image with its camera and outfit (PRCC marks no junk, so the count is 0)."""
    # every folder of the layout is checked before any file name
    train_val = {split: require_dir(root / "rgb" / split, LAYOUT) for split in ("train", "val")}
    tests = {camera: require_dir(root / "rgb" / "test" / camera, LAYOUT) for camera in CAMERAS}
    pairs: list[tuple[SourceItem, str]] = []
    for split, folder in train_val.items():
        for pid, images in _people(folder):
            for path in images:
                match = _TRAIN_NAME_RE.match(path.name)
                if match is None:
                    raise ConversionError(
                        f"{path}: file name does not start with its camera A_, B_ or C_ (e.g. A_cropped_rgb001.jpg)"
                    )
                pairs.append(_item(path, pid, split, match.group(1).upper()))
    for camera, folder in tests.items():
        for pid, images in _people(folder):
            for path in images:
                if _TEST_NAME_RE.match(path.name) is None:
                    raise ConversionError(f"{path}: not a .jpg or .png image")
                pairs.append(_item(path, pid, "test", camera))
    return number_outfits(pairs), 0

"""SYSU-MM01 (visible-infrared Re-ID), as distributed: `cam1/` … `cam6/`, each `PPPP/NNNN.jpg`, and `exp/`.

`exp/train_id.txt`, `exp/val_id.txt` and `exp/test_id.txt` each list person ids, comma-separated (on one line),
and give the train, val and test splits; a person's images are every file of its `PPPP/` folder (the id,
zero-padded to four digits) in any camera. Cameras 3 and 6 are infrared, the others visible; `camid` is the
camera's number. The test split follows the all-search protocol: every infrared image is a query and every
visible image (cameras 1, 2, 4, 5) is in the gallery, so evaluate it infrared-to-visible. The protocol's
single-shot gallery sampling and its rule that camera 2 does not count for camera 3's queries (same room) are
left to the evaluation; `camid` keeps what they need.
"""

from __future__ import annotations

from pathlib import Path

from ireid.core.converters.common import ConversionError, SourceItem, is_junk, list_lines, require_dir

CAMERAS = {1: "rgb", 2: "rgb", 3: "infrared", 4: "rgb", 5: "rgb", 6: "infrared"}
ID_LISTS = {"train": "exp/train_id.txt", "val": "exp/val_id.txt", "test": "exp/test_id.txt"}
TEST_ROLES = {"infrared": "query", "rgb": "gallery"}
LAYOUT = "the SYSU-MM01 layout: cam1/ ... cam6/ with PPPP/NNNN.jpg, exp/train_id.txt, exp/val_id.txt, exp/test_id.txt"


def _ids(path: Path) -> list[int]:
    """The person ids of an id list, in file order; malformed or repeated ids stop the conversion."""
    ids: list[int] = []
    for number, line in list_lines(path, LAYOUT):
        for token in line.split(","):
            token = token.strip()
            if not token.isdigit():
                raise ConversionError(f"{path}: line {number}: {token!r} is not a person id (expected e.g. 1,2,4)")
            if int(token) in ids:
                raise ConversionError(f"{path}: line {number}: person {token} listed twice")
            ids.append(int(token))
    if not ids:
        raise ConversionError(f"{path}: no person ids (expected a comma-separated list)")
    return ids


def read_sysu_mm01(root: Path) -> tuple[list[SourceItem], int]:
    """Items of every image of a listed person (no image is junk in SYSU-MM01, so the count is 0)."""
    cameras = {cam: require_dir(root / f"cam{cam}", LAYOUT) for cam in CAMERAS}
    listed: dict[int, Path] = {}
    items = []
    for split, rel in ID_LISTS.items():
        path = root / rel
        for pid in _ids(path):
            if pid in listed:
                raise ConversionError(f"{path}: person {pid} is also listed in {listed[pid]}")
            listed[pid] = path
            found = len(items)
            for cam, folder in cameras.items():
                person = folder / f"{pid:04d}"
                if not person.is_dir():
                    continue
                for image in sorted(p for p in person.iterdir() if not is_junk(p)):
                    modality = CAMERAS[cam]
                    items.append(
                        SourceItem(
                            image=image,
                            orig_pid=str(pid),
                            split=split,
                            where=f"{path}: person {pid}",
                            camid=cam,
                            role=TEST_ROLES[modality] if split == "test" else None,
                            modality=modality,
                        )
                    )
            if len(items) == found:
                raise ConversionError(f"{path}: person {pid} has no images (folder {pid:04d}/ in cam1/ ... cam6/)")
    return items, 0

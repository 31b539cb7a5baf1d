"""MSMT17 (Wei et al., CVPR 2018), as distributed: image folders and four list files.

V1 (`MSMT17_V1/`) keeps its images in `train/` and `test/`; V2 (`MSMT17_V2/`, faces blurred) in
`mask_train_v2/` and `mask_test_v2/`. Both have `list_train.txt`, `list_val.txt`, `list_query.txt` and
`list_gallery.txt`, whose lines are `<path relative to the image folder> <label>`, e.g.
`0000/0000_000_01_0303morning_0015_0.jpg 0`; the label is the person id and the file name's third `_` field
the camera (1-15). The benchmark's training set is train and val together (32,621 images of 1,041 people; the
val list holds more images of the same people), so both lists go to split train. Test keeps the benchmark's
query and gallery lists as roles.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from ireid.core.converters.common import ConversionError, SourceItem, labelled_paths

# (train image folder, test image folder) of V1, then V2
VERSIONS = (("train", "test"), ("mask_train_v2", "mask_test_v2"))
# list file -> (its image folder: 0 train, 1 test; split; role)
LISTS = {
    "list_train.txt": (0, "train", None),
    "list_val.txt": (0, "train", None),
    "list_query.txt": (1, "test", "query"),
    "list_gallery.txt": (1, "test", "gallery"),
}
CAMERAS = range(1, 16)
LAYOUT = (
    "the MSMT17 layout: train/ and test/ (V1) or mask_train_v2/ and mask_test_v2/ (V2), "
    "with list_train.txt, list_val.txt, list_query.txt, list_gallery.txt"
)
_NAME_RE = re.compile(r"^\d+_\d+_(\d+)_.+\.(jpg|jpeg|png)$", re.I)


def _image_folders(root: Path) -> tuple[Path, Path]:
    for train, test in VERSIONS:
        if (root / train).is_dir() and (root / test).is_dir():
            return root / train, root / test
    raise ConversionError(f"{root}: no image folders found (expected {LAYOUT})")


def _camera(rel: str, where: str) -> int:
    """The camera from the file name; the lists carry only the person."""
    name = PurePosixPath(rel).name
    match = _NAME_RE.match(name)
    if match is None:
        raise ConversionError(
            f"{where}: file name {name!r} does not follow PPPP_NNN_CC_*.jpg "
            "(person, image, camera; e.g. 0000_000_01_0303morning_0015_0.jpg)"
        )
    camera = int(match.group(1))
    if camera not in CAMERAS:
        raise ConversionError(f"{where}: camera {camera} in {name!r} is not one of MSMT17's cameras 1-15")
    return camera


def read_msmt17(root: Path) -> tuple[list[SourceItem], int]:
    """Items of every listed image (the lists name no junk, so the count is 0)."""
    folders = _image_folders(root)
    items: list[SourceItem] = []
    listed: dict[Path, str] = {}  # image -> where it was listed, so a repeat is reported before any writing
    for name, (folder, split, role) in LISTS.items():
        path = root / name
        for number, rel, label in labelled_paths(path, LAYOUT, f"the image folder {folders[folder].name}/"):
            where = f"{path}: line {number}"
            camera = _camera(rel, where)
            image = folders[folder] / rel
            if image in listed:
                raise ConversionError(f"{where}: {rel!r} is listed twice (also at {listed[image]})")
            listed[image] = where
            items.append(SourceItem(image=image, orig_pid=label, split=split, where=where, camid=camera, role=role))
    return items, 0

"""Market-1501-style folders: `bounding_box_train/`, `bounding_box_test/`, `query/`.

File names are `PPPP_cCsS_FFFFFF_NN.jpg` (person id, camera, sequence, frame). Id -1 marks distractors,
which stay in the gallery with pid -1 so they can never match; id 0000 marks junk, skipped and counted,
as in the benchmark's protocol. CUHK03-NP's `labeled/` and `detected/` folders have this layout with names
`PPPP_cC_N.png` (person id, camera, image number), which the same pattern reads.
"""

from __future__ import annotations

import re
from pathlib import Path

from ireid.core.converters.common import ConversionError, SourceItem, is_junk

_NAME_RE = re.compile(r"^(-?\d+)_c(\d+)s?\d*_.*\.(jpg|jpeg|png)$", re.I)
FOLDERS = {"bounding_box_train": ("train", None), "bounding_box_test": ("test", "gallery"), "query": ("test", "query")}


def read_market1501(root: Path) -> tuple[list[SourceItem], int]:
    """Items of every image, and the number of junk images skipped."""
    if not any((root / folder).is_dir() for folder in FOLDERS):
        raise ConversionError(f"{root}: none of {sorted(FOLDERS)} found (is this a Market-1501-style folder?)")
    items, junk = [], 0
    for folder, (split, role) in FOLDERS.items():
        directory = root / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if is_junk(path):
                continue
            match = _NAME_RE.match(path.name)
            if match is None:
                raise ConversionError(
                    f"{path}: file name does not follow PPPP_cC..._*.jpg (person id, camera; "
                    "e.g. 0002_c1s1_000451_03.jpg, 0001_c1_1.png)"
                )
            pid, cam = int(match.group(1)), int(match.group(2))
            if pid == 0:
                junk += 1
                continue
            if pid == -1 and role != "gallery":
                raise ConversionError(f"{path}: distractor id -1 outside bounding_box_test")
            items.append(
                SourceItem(
                    image=path,
                    orig_pid=str(pid),
                    split=split,
                    where=f"{directory}: {path.name}",
                    camid=cam,
                    role=role,
                    distractor=pid == -1,
                )
            )
    return items, junk

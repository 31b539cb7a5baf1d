"""LTCC (Long-Term Cloth-Changing; Qian et al., ACCV 2020), as distributed: `train/`, `query/`, `test/`.

File names are `PPP_O_cC_FFFFFF.png`, e.g. `094_1_c9_015923.png`: person, the person's outfit number, camera,
frame. `test/` is the gallery. Outfit numbers count within a person, so `clothes_id` numbers each (person,
outfit) pair. The benchmark scores the same query and gallery twice: the standard setting, and the
cloth-changing one, which leaves out gallery images of the query's person in the query's outfit; `pid`,
`clothes_id` and `camid` carry what both need. The `info/` folder (lists derived from the names) is not read.
"""

from __future__ import annotations

import re
from pathlib import Path

from ireid.core.converters.common import ConversionError, SourceItem, is_junk, number_outfits, require_dir

FOLDERS = {"train": ("train", None), "query": ("test", "query"), "test": ("test", "gallery")}
LAYOUT = "the LTCC layout: train/, query/ and test/ with images named PPP_O_cC_FFFFFF.png"
_NAME_RE = re.compile(r"^(\d+)_(\d+)_c(\d+)_\w+\.(png|jpg|jpeg)$", re.I)


def read_ltcc(root: Path) -> tuple[list[SourceItem], int]:
    """Items of every image with its outfit (LTCC marks no junk, so the count is 0)."""
    directories = {folder: require_dir(root / folder, LAYOUT) for folder in FOLDERS}  # the layout before any name
    pairs: list[tuple[SourceItem, str]] = []
    for folder, (split, role) in FOLDERS.items():
        directory = directories[folder]
        for path in sorted(p for p in directory.iterdir() if not is_junk(p)):
            match = _NAME_RE.match(path.name)
            if match is None:
                raise ConversionError(
                    f"{path}: file name does not follow PPP_O_cC_FFFFFF.png "
                    "(person, outfit, camera, frame; e.g. 094_1_c9_015923.png)"
                )
            pid, outfit, camera = (int(g) for g in match.group(1, 2, 3))
            item = SourceItem(
                image=path, orig_pid=str(pid), split=split, where=f"{directory}: {path.name}", camid=camera, role=role
            )
            pairs.append((item, str(outfit)))
    return number_outfits(pairs), 0

"""RegDB (visible-thermal Re-ID), as distributed: `Visible/<id>/*.bmp`, `Thermal/<id>/*.bmp` and `idx/`.

A trial's splits are four list files, `idx/{train,test}_{visible,thermal}_<trial>.txt`, with lines
`<path relative to the data set folder> <label>`; the label names the person within the split, and pairs a
person's visible and thermal images. The ten trials are random halves of the 412 people (papers average over
them); format `regdb` reads trial 1. Visible images have camid 1, thermal ones camid 2 and `modality="infrared"`.
In test, visible images are the queries and thermal ones the gallery (visible-to-thermal, the direction reported
first), so evaluate it visible-to-infrared.
"""

from __future__ import annotations

from pathlib import Path

from ireid.core.converters.common import ConversionError, SourceItem, labelled_paths, require_dir

# the list files' name -> (modality, camid, role in test)
CAMERAS = {"visible": ("rgb", 1, "query"), "thermal": ("infrared", 2, "gallery")}
SPLITS = ("train", "test")
LAYOUT = "the RegDB layout: Visible/<id>/*.bmp, Thermal/<id>/*.bmp, idx/{train,test}_{visible,thermal}_<trial>.txt"


def read_regdb(root: Path, trial: int = 1) -> tuple[list[SourceItem], int]:
    """Items of every listed image of the trial (RegDB has no junk images, so the count is 0)."""
    for folder in ("Visible", "Thermal"):
        require_dir(root / folder, LAYOUT)
    items = []
    for split in SPLITS:
        lists = {name: root / "idx" / f"{split}_{name}_{trial}.txt" for name in CAMERAS}
        entries = {name: labelled_paths(path, LAYOUT, "the data set folder") for name, path in lists.items()}
        labels = {name: {label for _, _, label in rows} for name, rows in entries.items()}
        for name, other in (("visible", "thermal"), ("thermal", "visible")):
            if unpaired := labels[name] - labels[other]:
                label = min(unpaired, key=int)
                raise ConversionError(f"{lists[other]}: no image of person {label}, who is listed in {lists[name]}")
        for name, rows in entries.items():
            modality, camid, role = CAMERAS[name]
            items += [
                SourceItem(
                    image=root / rel,
                    orig_pid=label,
                    split=split,
                    where=f"{lists[name]}: line {number}",
                    camid=camid,
                    role=role if split == "test" else None,
                    modality=modality,
                )
                for number, rel, label in rows
            ]
    return items, 0

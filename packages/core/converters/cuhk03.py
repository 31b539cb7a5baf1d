"""CUHK03 under the new protocol (CUHK03-NP; Zhong et al., CVPR 2017), as distributed: `labeled/` and `detected/`.

The protocol trains on 767 people and tests on the other 700, with one query image per camera and test person
and the rest of the test images in the gallery. Each folder holds the same people and split with other boxes
(`labeled/` drawn by hand, `detected/` by a person detector) in the Market-1501 layout (`bounding_box_train/`,
`bounding_box_test/`, `query/`; names `PPPP_cC_N.png`: person, camera 1 or 2, image number), so the two are
separate formats, `cuhk03-labeled` and `cuhk03-detected`, each read by the Market-1501 reader.
"""

from __future__ import annotations

from pathlib import Path

from ireid.core.converters.common import SourceItem, require_dir
from ireid.core.converters.market1501 import read_market1501

LAYOUT = "the CUHK03-NP layout: labeled/ and detected/, each with bounding_box_train/, bounding_box_test/, query/"


def read_cuhk03(root: Path, subset: str) -> tuple[list[SourceItem], int]:
    """Items of the `subset` folder's images (`labeled` or `detected`), and the junk count."""
    return read_market1501(require_dir(root / subset, LAYOUT))

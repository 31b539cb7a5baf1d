"""What a visual witness remembers: one image of the target person from the gallery, never the query's own.

For each query the witness is shown another gallery image of the same person, the one most like what a witness
would have seen of that person on the day: the same outfit (`clothes_id`) and modality first, then another
camera, then the first key. A query whose person has no other gallery image, or whose chosen image does not
decode, is skipped and counted by reason before the evaluation starts, so one bad image never loses a run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from ireid.core.images import ImageSource
from ireid.core.records import Record

NO_OTHER_IMAGE = "no other gallery image of the person"
UNDECODABLE = "the witness's image does not decode"


@dataclass
class WitnessViews:
    """The gallery image each kept query's witness remembers (`chosen`: query key → image key), decoded when asked
    for, and the skipped query keys by reason."""

    images: ImageSource
    chosen: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def memory(self, record: Record) -> Image.Image:
        (image,) = self.images.load([self.chosen[record.key]])
        return image

    def summary(self) -> str:
        """One line: how many queries were skipped, why, and the first of each."""
        return "; ".join(f"{len(keys)} skipped, {reason} (first: {keys[0]})" for reason, keys in self.skipped.items())


def _preference(query: Record, other: Record) -> tuple[bool, bool, bool, str]:
    return (other.clothes_id != query.clothes_id, other.modality != query.modality, other.camid == query.camid,
            other.key)  # fmt: skip


def witness_views(queries: Sequence[Record], gallery: Sequence[Record], images: ImageSource) -> WitnessViews:
    """Each query's witness image from `gallery` (see the module's rule), checked to decode; the rest skipped by
    reason."""
    by_pid: dict[int, list[Record]] = defaultdict(list)
    for record in gallery:
        by_pid[record.pid].append(record)
    views = WitnessViews(images)
    for query in queries:
        others = [r for r in by_pid.get(query.pid, []) if r.key != query.key]
        if not others:
            views.skipped.setdefault(NO_OTHER_IMAGE, []).append(query.key)
            continue
        chosen = min(others, key=lambda other: _preference(query, other))
        try:
            images.load([chosen.key])  # decoded once here, so a bad image is a counted skip, not a lost run
        except (KeyError, ValueError):
            views.skipped.setdefault(UNDECODABLE, []).append(query.key)
            continue
        views.chosen[query.key] = chosen.key
    return views

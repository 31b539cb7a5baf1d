"""The four Re-ID evaluation tasks of ChatReID (paper Tables 1, 2, 3, 5): who queries, who is in the gallery.

| task | query | gallery | not counted for a query |
|---|---|---|---|
| standard | a visible image | visible images | same person seen by the same camera |
| cloth-changing | a visible image | visible images | same person in the same outfit (or camera) |
| visible-infrared | a visible (infrared) image | infrared (visible) images | nothing |
| text-to-image | a record's text (caption, else fine description) | visible images | nothing |

Where the data set marks query and gallery images (`role`), the image tasks use those; otherwise each person's
first image of the query modality is the query and the rest form the gallery. Queries whose person has no
counted gallery image are dropped (and reported). Records carry a `modality` ("rgb" or "infrared"; visible when absent)
and an outfit id (`clothes_id`; `outfit_id` / `outfit` are read too); both are read defensively, and a task the
data cannot pose (no infrared image, nobody seen in two outfits) is an error that says which field is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ireid.core.records import Record

TASKS = ("standard", "cloth-changing", "visible-infrared", "text-to-image")
VISIBLE, INFRARED = "visible", "infrared"
MODALITIES = {
    "visible": VISIBLE,
    "rgb": VISIBLE,
    "vis": VISIBLE,
    "infrared": INFRARED,
    "ir": INFRARED,
    "nir": INFRARED,
    "thermal": INFRARED,
}
OUTFIT_FIELDS = ("clothes_id", "outfit_id", "outfit")
Direction = Literal["visible-to-infrared", "infrared-to-visible"]


class TaskDataError(ValueError):
    """The data set cannot pose this task (a field it needs is missing); the message says what to provide."""


def record_modality(record: Record) -> str:
    value = getattr(record, "modality", None)
    if value is None or value == "":
        return VISIBLE
    modality = MODALITIES.get(str(value).lower())
    if modality is None:
        raise TaskDataError(f"record {record.key!r}: field 'modality': {value!r} is not one of {sorted(MODALITIES)}")
    return modality


def record_outfit(record: Record) -> str | None:
    for name in OUTFIT_FIELDS:
        value = getattr(record, name, None)
        if value is not None and value != "":
            return str(value)
    return None


def record_text(record: Record) -> str | None:
    texts = record.texts
    return texts[0] if texts else None


@dataclass(frozen=True)
class Query:
    key: str  # the record the query comes from
    pid: int
    camid: int
    outfit: str | None = None
    text: str | None = None  # text-to-image queries

    @property
    def is_text(self) -> bool:
        return self.text is not None


@dataclass
class TaskData:
    """The queries and the gallery of one task, and which gallery images count for each query."""

    task: str
    queries: list[Query]
    gallery: list[Record]
    dropped_queries: int = 0  # queries whose person has no counted gallery image

    def __post_init__(self) -> None:
        self.gallery_pids = torch.tensor([r.pid for r in self.gallery], dtype=torch.long)
        self._camids = torch.tensor([r.camid for r in self.gallery], dtype=torch.long)
        outfits = [record_outfit(r) for r in self.gallery]
        self._outfit_codes = {name: code for code, name in enumerate(sorted({o for o in outfits if o is not None}))}
        self._outfits = torch.tensor([self._outfit_code(o) for o in outfits], dtype=torch.long)

    def _outfit_code(self, outfit: str | None) -> int:
        """-1 for an unknown outfit, which counts as the same outfit as any (never a clothes change)."""
        return -1 if outfit is None else self._outfit_codes.get(outfit, len(self._outfit_codes))

    def counted(self, query: Query) -> Tensor:
        """Bool [G]: the gallery images ranked for this query (same-camera or same-outfit views excluded)."""
        same_person = self.gallery_pids == query.pid
        if self.task == "standard":
            return ~(same_person & (self._camids == query.camid))
        if self.task == "cloth-changing":
            code = self._outfit_code(query.outfit)
            same_outfit = (self._outfits == code) | (self._outfits < 0) | (code < 0)
            return ~(same_person & (same_outfit | (self._camids == query.camid)))
        return torch.ones(len(self.gallery), dtype=torch.bool)


def _spread(items: list[Query], count: int | None) -> list[Query]:
    """`count` items evenly spaced over the list (all when None): a subset that still covers every person."""
    if count is None or count >= len(items):
        return items
    if count < 1:
        raise ValueError(f"max_queries must be at least 1, got {count}")
    return [items[i * len(items) // count] for i in range(count)]


def _changes_clothes(records: Sequence[Record]) -> bool:
    """Whether some person appears in two different recorded outfits."""
    outfits: dict[int, set[str]] = {}
    for record in records:
        outfit = record_outfit(record)
        if outfit is not None:
            outfits.setdefault(record.pid, set()).add(outfit)
    return any(len(seen) > 1 for seen in outfits.values())


def _first_per_person(records: Sequence[Record]) -> tuple[list[Record], list[Record]]:
    queries, rest, seen = [], [], set()
    for record in records:
        if record.pid >= 0 and record.pid not in seen:
            seen.add(record.pid)
            queries.append(record)
        else:
            rest.append(record)
    return queries, rest


def _image_query(record: Record) -> Query:
    return Query(record.key, record.pid, record.camid, record_outfit(record))


def build_task(
    task: str,
    records: Sequence[Record],
    *,
    direction: Direction = "visible-to-infrared",
    max_queries: int | None = None,
    where: str = "the data set",
) -> TaskData:
    """The task's queries and gallery from one split's records (`where` names it in errors)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    modality = {r.key: record_modality(r) for r in records}
    visible = [r for r in records if modality[r.key] == VISIBLE]
    with_roles = any(r.role is not None for r in records)
    if task == "text-to-image":
        queries = [Query(r.key, r.pid, r.camid, text=t) for r in visible if r.pid >= 0 and (t := record_text(r))]
        if not queries:
            raise TaskDataError(f"text-to-image needs texts: no record of {where} has captions or a fine description")
        gallery = visible
    elif task == "visible-infrared":
        infrared = [r for r in records if modality[r.key] == INFRARED]
        if not infrared or not visible:
            raise TaskDataError(
                f"visible-infrared needs both visible and infrared images (record field 'modality'); {where} has "
                f"{len(visible)} visible and {len(infrared)} infrared. A synthetic world with infrared cameras has "
                "them (ireid data synth --infrared-cameras N)."
            )
        query_side, gallery_side = (visible, infrared) if direction == "visible-to-infrared" else (infrared, visible)
        if with_roles:
            query_records = [r for r in query_side if r.role == "query"]
            gallery = [r for r in gallery_side if r.role != "query"]
        else:
            query_records, gallery = _first_per_person(query_side)[0], gallery_side
        queries = [_image_query(r) for r in query_records]
    else:
        if task == "cloth-changing" and not _changes_clothes(visible):
            raise TaskDataError(
                f"cloth-changing needs people seen in more than one outfit (record field "
                f"{' / '.join(OUTFIT_FIELDS)}); in {where} every person wears one outfit or none is recorded. "
                "A synthetic world with several outfits per person has them (ireid data synth --outfits-per-id 2)."
            )
        if with_roles:
            query_records = [r for r in visible if r.role == "query"]
            gallery = [r for r in visible if r.role != "query"]
        else:
            query_records, gallery = _first_per_person(visible)
        queries = [_image_query(r) for r in query_records]
    data = TaskData(task, [], list(gallery))
    answerable = [q for q in queries if bool((data.counted(q) & (data.gallery_pids == q.pid)).any())]
    data.queries = _spread(answerable, max_queries)
    data.dropped_queries = len(queries) - len(answerable)
    if not data.queries:
        raise TaskDataError(f"{task}: no query of {where} has a counted gallery image of its person")
    return data

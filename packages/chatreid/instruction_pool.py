"""The records an instruction stage draws from, indexed by person, outfit and modality, with the sampling rules.

What counts as a match is decided here once: the same person (`pid`) for image queries; the same person in the
same outfit for a text (whose words describe that outfit); every attribute value shown and equal for an
attribute query. A distractor must be unmistakably not a match: another person, and for text or attribute
queries one whose shown attributes contradict the query where both state a value.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ireid.core.records import Record

Predicate = Callable[[Record], bool]


@dataclass(frozen=True)
class Built:
    """One sample's content: the image keys in order of appearance, the turns, the matching option positions."""

    images: list[str]
    messages: list[dict[str, Any]]
    answer_positions: list[int]


@dataclass(frozen=True)
class Task:
    """How to build one task's samples: `build(pool, rng, slot, gallery)` draws one (None: this draw failed, draw
    again); `unavailable(pool)` says why the data cannot pose the task at all (None when it can). `slot` counts
    the task's samples, `gallery` is the (min, max) gallery size."""

    name: str
    build: Callable[[Pool, random.Random, int, tuple[int, int]], Built | None]
    unavailable: Callable[[Pool], str | None]


def match_count(rng: random.Random, gallery_size: int, available: int) -> int:
    """Number of matches m in a gallery of N: P(m) ∝ 1/m for m = 1 .. N − 1 (the paper's Eq. 1, P(n = k) ∝
    1/(k − 1) with k = m + 1 images of the person counting the query, normalised), over the m the data allow."""
    top = min(gallery_size - 1, available)
    if top < 1:
        raise ValueError(f"a gallery of {gallery_size} with {available} matches available cannot hold one match")
    values = range(1, top + 1)
    return rng.choices(values, weights=[1 / m for m in values])[0]


def contradicts(stated: Mapping[str, str], shown: Mapping[str, str]) -> bool:
    """Some attribute both state with different values."""
    return any(name in shown and shown[name] != value for name, value in stated.items())


def fits(query: Mapping[str, str], shown: Mapping[str, str]) -> bool:
    """Every query value is shown, and equal."""
    return all(shown.get(name) == value for name, value in query.items())


@dataclass
class Pool:
    """One split's records and their indices; `seed` orders what is visited in turn (stage-1 images)."""

    records: list[Record]
    seed: int = 0
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.records:
            raise ValueError("no records to build instructions from")
        self.by_pid: dict[int, list[Record]] = {}
        for record in self.records:
            self.by_pid.setdefault(record.pid, []).append(record)
        self.annotated = all(record.attributes for record in self.records)
        self.rgb = [record for record in self.records if record.modality == "rgb"]

    def memo(self, name: str, make: Callable[[], Any]) -> Any:
        """A value derived from the records, computed once (eligible queries of a task, an order)."""
        if name not in self._memo:
            self._memo[name] = make()
        return self._memo[name]

    def of_person(self, record: Record, predicate: Predicate | None = None) -> list[Record]:
        """The person's other images (optionally filtered), in data-set order."""
        return [r for r in self.by_pid[record.pid] if r.key != record.key and (predicate is None or predicate(r))]

    def not_describing(self, text_record: Record) -> Predicate:
        """Images that the texts of `text_record` cannot describe: another person whose shown attributes
        contradict the text's (without annotations: any other person)."""

        def predicate(image: Record) -> bool:
            if image.pid == text_record.pid:
                return False
            return not self.annotated or contradicts(text_record.attributes, image.attributes)

        return predicate

    def pick(
        self, rng: random.Random, count: int, predicate: Predicate, exclude: Sequence[Record] = ()
    ) -> list[Record]:
        """`count` different records satisfying `predicate` (not in `exclude`), drawn uniformly; fewer when the
        pool has fewer. Random probes first, a full shuffled scan when they do not find enough."""
        excluded = {r.key for r in exclude}
        chosen: dict[str, Record] = {}
        for _ in range(8 * count + 16):
            if len(chosen) == count:
                return list(chosen.values())
            record = self.records[rng.randrange(len(self.records))]
            if record.key not in excluded and record.key not in chosen and predicate(record):
                chosen[record.key] = record
        order = list(range(len(self.records)))
        rng.shuffle(order)
        for i in order:
            if len(chosen) == count:
                break
            record = self.records[i]
            if record.key not in excluded and record.key not in chosen and predicate(record):
                chosen[record.key] = record
        return list(chosen.values())


def shuffle_gallery(
    rng: random.Random, matches: Sequence[Record], others: Sequence[Record]
) -> tuple[list[str], list[int]]:
    """Gallery keys in random order and the 1-based positions of `matches` in it."""
    items = [(record, True) for record in matches] + [(record, False) for record in others]
    rng.shuffle(items)
    return [record.key for record, _ in items], [i for i, (_, match) in enumerate(items, 1) if match]

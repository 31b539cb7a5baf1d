"""The records an instruction stage draws from, indexed by person, outfit and modality, with the sampling rules.

What counts as a match is decided here once: the same person (`pid`) for image queries; the same person in the
same outfit for a text (whose words describe that outfit); every attribute value shown and equal for an
attribute query. A distractor must be unmistakably not a match: another person, and for text or attribute
queries one whose shown attributes contradict the query where both state a value.

Two options change the image-to-image pairs, as departures from the paper offered for small models:
- `image_match="appearance"`: an image query matches only the same person in the same outfit and modality seen by
  another camera, and its distractors share its modality. ChatReID's rule (`"person"`) also counts other outfits
  and infrared views, which an appearance model cannot match, so a small decoder learns nothing from them.
- `look_alikes`: for each image, other people a retriever ranks close to it (`look_alikes.py`); a share
  `look_alike_share` of image distractors is drawn from them instead of from everyone, and of the wrong texts of
  one-to-one text-image pairs, the texts of those people (the filter leaves a text query with the images closest
  to it, so the wrong candidates a decoder must turn down look like the right one).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ireid.core.records import Record

Predicate = Callable[[Record], bool]
IMAGE_MATCH_RULES = ("person", "appearance")


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
    """One split's records and their indices; `seed` orders what is visited in turn (stage-1 images).

    `image_match`, `look_alikes` and `look_alike_share` set the image-to-image pairs (module docstring)."""

    records: list[Record]
    seed: int = 0
    image_match: str = "person"
    look_alikes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    look_alike_share: float = 0.0
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.records:
            raise ValueError("no records to build instructions from")
        if self.image_match not in IMAGE_MATCH_RULES:
            raise ValueError(f"image_match must be one of {IMAGE_MATCH_RULES}, got {self.image_match!r}")
        if not 0.0 <= self.look_alike_share <= 1.0:
            raise ValueError(f"look_alike_share must be in [0, 1], got {self.look_alike_share}")
        self.by_pid: dict[int, list[Record]] = {}
        self.by_key: dict[str, Record] = {}
        for record in self.records:
            self.by_pid.setdefault(record.pid, []).append(record)
            self.by_key[record.key] = record
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

    def image_matches(self, query: Record) -> list[Record]:
        """The images an image query matches under `image_match`, in data-set order."""
        if self.image_match == "person":
            return self.of_person(query)
        return self.of_person(
            query,
            lambda r: r.clothes_id == query.clothes_id and r.modality == query.modality and r.camid != query.camid,
        )

    def image_distractors(self, rng: random.Random, query: Record, count: int) -> list[Record]:
        """`count` images of other people for an image query (of its modality under the `appearance` rule); each is
        one of the query's look-alikes with probability `look_alike_share`, while unused look-alikes remain."""

        def other(record: Record) -> bool:
            return record.pid != query.pid and (self.image_match == "person" or record.modality == query.modality)

        alikes = [self.by_key[key] for key in self.look_alikes.get(query.key, ()) if key in self.by_key]
        alikes = [record for record in alikes if other(record)]
        hard = sum(rng.random() < self.look_alike_share for _ in range(count)) if alikes else 0
        chosen = rng.sample(alikes, min(hard, len(alikes)))
        return chosen + self.pick(rng, count - len(chosen), other, exclude=chosen)

    def wrong_text(self, rng: random.Random, image: Record) -> Record | None:
        """A record whose text cannot describe `image` (`not_describing`): with probability `look_alike_share` one
        of the image's look-alikes, while one of them qualifies; otherwise anyone's. None when no record qualifies."""
        wrong = self.not_describing(image)

        def usable(record: Record) -> bool:
            return bool(record.texts) and wrong(record)

        if self.look_alike_share > 0 and rng.random() < self.look_alike_share:
            alikes = [self.by_key[key] for key in self.look_alikes.get(image.key, ()) if key in self.by_key]
            alikes = [record for record in alikes if usable(record)]
            if alikes:
                return rng.choice(alikes)
        found = self.pick(rng, 1, usable)
        return found[0] if found else None

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

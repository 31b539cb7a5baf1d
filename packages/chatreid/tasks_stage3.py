"""Stage 3, multi-modal task reasoning: the paper's four Re-ID settings, attribute-based retrieval and adaptive
multi-modal (image + text) retrieval, each over a gallery of varying length with at least one match.

- reid_standard: a visible image; visible gallery; matches: the person in the same outfit.
- reid_clothes_changing: a visible image; visible gallery without the person in the query's outfit; matches:
  the person in other outfits.
- reid_visible_infrared: an image of either modality; gallery of the other one; matches: the person in the
  same outfit.
- reid_text_to_image: a visible image's text; visible gallery; matches: the person in the text's outfit.
- reid_attribute: 1 to 3 attribute values of a visible image; visible gallery of images that each show every
  queried attribute or contradict one; matches: the images showing all values, of any person.
- reid_multimodal: an image and the text of another visible image of the person (in the same or another
  outfit); visible gallery without the person in other outfits; matches: the person in the text's outfit.

Distractors are other people (for text and attribute queries, ones whose shown attributes contradict the query).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ireid.chatreid.instruction_pool import Built, Pool, Task, contradicts, fits, match_count, shuffle_gallery
from ireid.chatreid.instruction_text import Turn, attribute_query, conversation, gallery_answer, prompt
from ireid.core.records import Record
from ireid.core.vocabulary.attributes import ATTRIBUTES

ATTRIBUTE_QUERY_SIZE = (1, 3)  # attribute values in an attribute query, min and max
SAME_PERSON = ("shows the same pedestrian.", "show the same pedestrian.")
Matches = Callable[[Record, Record], bool]  # (query, candidate) -> candidate is a match


def _same_outfit(query: Record, other: Record) -> bool:
    return other.pid == query.pid and other.clothes_id == query.clothes_id


def _other_outfit(query: Record, other: Record) -> bool:
    return other.pid == query.pid and other.clothes_id != query.clothes_id


Side = Callable[[Record], str]  # the gallery's modality for a query


def _visible(query: Record) -> str:
    return "rgb"


def _other_modality(query: Record) -> str:
    return "infrared" if query.modality == "rgb" else "rgb"


def _matches(pool: Pool, query: Record, side: Side, rule: Matches) -> list[Record]:
    modality = side(query)
    return [r for r in pool.by_pid[query.pid] if r.key != query.key and r.modality == modality and rule(query, r)]


def _eligible(pool: Pool, name: str, side: Side, rule: Matches) -> list[Record]:
    """The queries with at least one match in their gallery, computed once per task. Standard and cloth-changing
    queries are visible images; visible-infrared ones either modality (the gallery is the other one)."""
    queries = pool.records if side is _other_modality else pool.rgb
    return pool.memo(name, lambda: [q for q in queries if _matches(pool, q, side, rule)])


def _image_task(
    pool: Pool, rng: random.Random, gallery: tuple[int, int], name: str, side: Side, rule: Matches
) -> Built:
    """An image query over a gallery of modality `side(query)`: matches by `rule`, distractors other people."""
    query = rng.choice(_eligible(pool, name, side, rule))
    candidates = _matches(pool, query, side, rule)
    size = rng.randint(*gallery)
    matches = rng.sample(candidates, match_count(rng, size, len(candidates)))
    modality = side(query)
    others = pool.pick(rng, size - len(matches), lambda r: r.pid != query.pid and r.modality == modality)
    keys, positions = shuffle_gallery(rng, matches, others)
    turn = Turn([])
    turn.render(prompt(f"stage3_{name}"), images=[query.key], gallery=keys)
    return Built(turn.keys, conversation(turn, gallery_answer(positions, *SAME_PERSON)), positions)


IMAGE_TASKS: dict[str, tuple[Side, Matches, str]] = {
    "reid_standard": (_visible, _same_outfit, "no person has two visible images in one outfit"),
    "reid_clothes_changing": (
        _visible,
        _other_outfit,
        "no person has visible images in two outfits (field 'clothes_id'; ireid data synth --outfits-per-id 2)",
    ),
    "reid_visible_infrared": (
        _other_modality,
        _same_outfit,
        "no person has visible and infrared images in one outfit (field 'modality'; "
        "ireid data synth --infrared-cameras 2)",
    ),
}


def _image_builder(name: str) -> Callable[[Pool, random.Random, int, tuple[int, int]], Built | None]:
    side, rule, _ = IMAGE_TASKS[name]
    return lambda pool, rng, slot, gallery: _image_task(pool, rng, gallery, name, side, rule)


def _image_unavailable(name: str) -> Callable[[Pool], str | None]:
    side, rule, need = IMAGE_TASKS[name]

    def check(pool: Pool) -> str | None:
        if len(pool.by_pid) < 2:
            return "the data shows fewer than two people"
        return None if _eligible(pool, name, side, rule) else need

    return check


def _text_queries(pool: Pool) -> list[Record]:
    return pool.memo("rgb-with-text", lambda: [r for r in pool.rgb if r.texts])


def _text_gallery(
    pool: Pool, rng: random.Random, gallery: tuple[int, int], text_record: Record, exclude: list[Record]
) -> tuple[list[str], list[int]] | None:
    """Visible images of the person in the text's outfit (≥ 1) and other people the text cannot describe."""
    candidates = [r for r in pool.by_pid[text_record.pid] if r.modality == "rgb" and _same_outfit(text_record, r)]
    excluded = {r.key for r in exclude}
    candidates = [r for r in candidates if r.key not in excluded]
    if not candidates:
        return None
    size = rng.randint(*gallery)
    matches = rng.sample(candidates, match_count(rng, size, len(candidates)))
    unrelated = pool.not_describing(text_record)
    others = pool.pick(rng, size - len(matches), lambda r: r.modality == "rgb" and unrelated(r))
    return shuffle_gallery(rng, matches, others)


def _text_to_image(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    text_record = rng.choice(_text_queries(pool))
    keys, positions = _text_gallery(pool, rng, gallery, text_record, [])
    turn = Turn([])
    turn.render(prompt("stage3_reid_text_to_image"), gallery=keys, text=text_record.texts[0])
    answer = gallery_answer(positions, "matches the description.", "match the description.")
    return Built(turn.keys, conversation(turn, answer), positions)


def _multimodal_queries(pool: Pool) -> list[Record]:
    """Images whose person has a described visible image besides them."""
    return pool.memo(
        "multimodal",
        lambda: [q for q in pool.records if any(r.texts and r.modality == "rgb" for r in pool.of_person(q))],
    )


def _multimodal(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    query = rng.choice(_multimodal_queries(pool))
    text_record = rng.choice([r for r in pool.of_person(query) if r.texts and r.modality == "rgb"])
    built = _text_gallery(pool, rng, gallery, text_record, [query])
    if built is None:
        return None
    keys, positions = built
    turn = Turn([])
    turn.render(prompt("stage3_reid_multimodal"), images=[query.key], gallery=keys, text=text_record.texts[0])
    return Built(turn.keys, conversation(turn, gallery_answer(positions, *SAME_PERSON)), positions)


def _askable(name: str, value: str) -> bool:
    """Attribute values worth asking for: anything but an absence ("no hat"); other vocabularies have none."""
    spec = ATTRIBUTES.get(name)
    return spec is None or value != spec.absent


def _by_value(records: list[Record]) -> dict[tuple[str, str], list[Record]]:
    """(attribute, value) -> the records showing it, in data-set order."""
    index: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        for item in record.attributes.items():
            index.setdefault(item, []).append(record)
    return index


def _attribute(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    target = rng.choice(pool.rgb)
    names = [name for name, value in target.attributes.items() if _askable(name, value)]
    if not names:
        return None
    count = min(len(names), rng.randint(*ATTRIBUTE_QUERY_SIZE))
    query = {name: target.attributes[name] for name in sorted(rng.sample(names, count))}
    index = pool.memo("rgb-by-value", lambda: _by_value(pool.rgb))
    fitting = [r for r in min((index[item] for item in query.items()), key=len) if fits(query, r.attributes)]
    size = rng.randint(*gallery)
    matches = rng.sample(fitting, match_count(rng, size, len(fitting)))
    others = pool.pick(rng, size - len(matches), lambda r: r.modality == "rgb" and contradicts(query, r.attributes))
    keys, positions = shuffle_gallery(rng, matches, others)
    turn = Turn([])
    turn.render(prompt("stage3_reid_attribute"), gallery=keys, attributes=attribute_query(query, rng))
    answer = gallery_answer(
        positions, "shows a pedestrian with these attributes.", "show pedestrians with these attributes."
    )
    return Built(turn.keys, conversation(turn, answer), positions)


def _unavailable_text(pool: Pool) -> str | None:
    if len(pool.by_pid) < 2:
        return "the data shows fewer than two people"
    return None if _text_queries(pool) else "no visible image has a text (captions or fine description)"


def _unavailable_multimodal(pool: Pool) -> str | None:
    if len(pool.by_pid) < 2:
        return "the data shows fewer than two people"
    return None if _multimodal_queries(pool) else "no person has a second, described visible image"


def _unavailable_attribute(pool: Pool) -> str | None:
    if len(pool.by_pid) < 2:
        return "the data shows fewer than two people"
    if not pool.annotated:
        return "records carry no attribute annotations"
    return None if pool.rgb else "no visible image"


TASKS = (
    *(Task(name, _image_builder(name), _image_unavailable(name)) for name in IMAGE_TASKS),
    Task("reid_text_to_image", _text_to_image, _unavailable_text),
    Task("reid_attribute", _attribute, _unavailable_attribute),
    Task("reid_multimodal", _multimodal, _unavailable_multimodal),
)

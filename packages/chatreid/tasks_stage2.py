"""Stage 2, fine-grained image retrieval: the seven tasks of the paper's Figure 4.

Image queries match the same person in any outfit or modality (the stage mixes Re-ID settings; the pool's
`image_match` and `look_alikes` options change the image pairs, see `instruction_pool.py`); texts are a
record's own text (captions, else fine description) and match the same person in the same outfit, shown by an
image that does not hide what the text states. Yes/no tasks are positive half of the time.
"""

from __future__ import annotations

import random

from ireid.chatreid.instruction_pool import Built, Pool, Task, match_count, shuffle_gallery
from ireid.chatreid.instruction_text import (
    ORDINALS,
    Turn,
    attribute_list,
    conversation,
    gallery_answer,
    ordinal_caption,
    prompt,
)
from ireid.core.records import Record

POSITIVE_SHARE = 0.5  # one-to-one tasks: share of matching pairs (the paper's 0.5)
SAME_PERSON_SHARE = 0.25  # attribute comparison: share of pairs showing one person (twice, or in two outfits)
CAPTION_OPTIONS = (2, 5)  # captions offered by the many-to-one task, min and max
YES, NO = "Yes", "No"
NO_ATTRIBUTES = "records carry no attribute annotations"
if CAPTION_OPTIONS[1] > len(ORDINALS):
    raise RuntimeError(f"CAPTION_OPTIONS allows {CAPTION_OPTIONS[1]} captions; only {len(ORDINALS)} have ordinals")


def _text(record: Record) -> str:
    return record.texts[0]


def _seen_together(pool: Pool) -> list[Record]:
    """Records with another image that an image query of them matches."""
    return pool.memo("seen-together", lambda: [r for r in pool.records if pool.image_matches(r)])


def _with_text(pool: Pool) -> list[Record]:
    return pool.memo("with-text", lambda: [r for r in pool.records if r.texts])


def describes(text_record: Record, image: Record) -> bool:
    """Whether the text of `text_record` describes `image`: the same person in the same outfit, and the text
    states nothing the image hides."""
    return (
        bool(text_record.texts)
        and text_record.pid == image.pid
        and text_record.clothes_id == image.clothes_id
        and set(text_record.attributes) <= set(image.attributes)
    )


def _describing(pool: Pool, image: Record) -> list[Record]:
    return [r for r in pool.by_pid[image.pid] if describes(r, image)]


def _needs(pool: Pool, seen_together: bool = False, texts: bool = False, attributes: bool = False) -> str | None:
    if len(pool.by_pid) < 2:
        return "the data shows fewer than two people"
    if seen_together and not _seen_together(pool):
        return f"no image has another that matches it (image_match={pool.image_match!r})"
    if texts and not _with_text(pool):
        return "no record has a text (captions or fine description)"
    if attributes and not pool.annotated:
        return NO_ATTRIBUTES
    return None


def _i2i_one_to_one(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    first = rng.choice(_seen_together(pool))
    if rng.random() < POSITIVE_SHARE:
        second, answer = rng.choice(pool.image_matches(first)), YES
    else:
        found = pool.image_distractors(rng, first, 1)
        if not found:
            return None
        second, answer = found[0], NO
    pair = [first.key, second.key]
    rng.shuffle(pair)
    turn = Turn([])
    turn.render(prompt("stage2_i2i_one_to_one"), images=pair)
    return Built(turn.keys, conversation(turn, answer), [])


def _i2i_many_to_many(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    query = rng.choice(_seen_together(pool))
    size = rng.randint(*gallery)
    same = pool.image_matches(query)
    matches = rng.sample(same, match_count(rng, size, len(same)))
    others = pool.image_distractors(rng, query, size - len(matches))
    keys, positions = shuffle_gallery(rng, matches, others)
    turn = Turn([])
    turn.render(prompt("stage2_i2i_many_to_many"), images=[query.key], gallery=keys)
    answer = gallery_answer(
        positions,
        "matches the identity of the pedestrian in the query image.",
        "match the identity of the pedestrian in the query image.",
    )
    return Built(turn.keys, conversation(turn, answer), positions)


def _t2i_one_to_one(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    image = rng.choice(pool.records)
    if rng.random() < POSITIVE_SHARE:
        candidates, answer = _describing(pool, image), YES
        if not candidates:
            return None
        text_record = rng.choice(candidates)
    else:
        wrong = pool.wrong_text(rng, image)
        if wrong is None:
            return None
        text_record, answer = wrong, NO
    turn = Turn([])
    turn.render(prompt("stage2_t2i_one_to_one"), images=[image.key], text=_text(text_record))
    return Built(turn.keys, conversation(turn, answer), [])


def _t2i_many_to_one(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    image = rng.choice(pool.records)
    candidates = _describing(pool, image)
    if not candidates:
        return None
    count = rng.randint(*CAPTION_OPTIONS)
    unrelated = pool.not_describing(image)
    wrong = pool.pick(rng, count - 1, lambda r: bool(r.texts) and unrelated(r))
    if not wrong:
        return None
    right = rng.choice(candidates)
    texts = [(_text(right), True)] + [(_text(r), False) for r in wrong]
    rng.shuffle(texts)
    position = next(i for i, (_, correct) in enumerate(texts, 1) if correct)
    listed = " ".join(f'{ordinal_caption(i)}: "{text}"' for i, (text, _) in enumerate(texts, 1))
    turn = Turn([])
    turn.render(prompt("stage2_t2i_many_to_one"), images=[image.key], captions=listed)
    return Built(turn.keys, conversation(turn, f"{ordinal_caption(position)}."), [position])


def _t2i_one_to_many(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    text_record = rng.choice(_with_text(pool))
    shown = [r for r in pool.by_pid[text_record.pid] if describes(text_record, r)]
    others_shown = [r for r in shown if r.key != text_record.key]
    match = rng.choice(others_shown or shown)
    size = rng.randint(*gallery)
    others = pool.pick(rng, size - 1, pool.not_describing(text_record))
    keys, positions = shuffle_gallery(rng, [match], others)
    turn = Turn([])
    turn.render(prompt("stage2_t2i_one_to_many"), gallery=keys, text=_text(text_record))
    answer = gallery_answer(positions, "matches the description.", "match the description.")
    return Built(turn.keys, conversation(turn, answer), positions)


def _attribute_comparison(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    first = rng.choice(pool.records)
    same = pool.of_person(first)
    if same and rng.random() < SAME_PERSON_SHARE:
        second = rng.choice(same)
    else:
        second = pool.pick(rng, 1, lambda r: r.pid != first.pid)[0]
    both = [name for name in first.attributes if name in second.attributes]
    common = [name for name in both if first.attributes[name] == second.attributes[name]]
    differing = [name for name in both if first.attributes[name] != second.attributes[name]]
    answer = (
        f"Common attributes: {attribute_list(first.attributes, common)}. "
        f"Unique attributes of the first image: {attribute_list(first.attributes, differing)}. "
        f"Unique attributes of the second image: {attribute_list(second.attributes, differing)}."
    )
    turn = Turn([])
    turn.render(prompt("stage2_attribute_comparison"), images=[first.key, second.key])
    return Built(turn.keys, conversation(turn, answer), [])


def _attribute_annotation(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    image = rng.choice(pool.records)
    turn = Turn([])
    turn.render(prompt("stage2_attribute_annotation"), images=[image.key])
    answer = f"The pedestrian attributes of this image are: {attribute_list(image.attributes)}."
    return Built(turn.keys, conversation(turn, answer), [])


I2I_ONE_TO_ONE = Task("i2i_one_to_one", _i2i_one_to_one, lambda pool: _needs(pool, seen_together=True))
T2I_ONE_TO_ONE = Task("t2i_one_to_one", _t2i_one_to_one, lambda pool: _needs(pool, texts=True))
TASKS = (
    I2I_ONE_TO_ONE,
    Task("i2i_many_to_many", _i2i_many_to_many, lambda pool: _needs(pool, seen_together=True)),
    T2I_ONE_TO_ONE,
    Task("t2i_many_to_one", _t2i_many_to_one, lambda pool: _needs(pool, texts=True)),
    Task("t2i_one_to_many", _t2i_one_to_many, lambda pool: _needs(pool, texts=True)),
    Task("attribute_comparison", _attribute_comparison, lambda pool: _needs(pool, attributes=True)),
    Task("attribute_annotation", _attribute_annotation, lambda pool: None if pool.annotated else NO_ATTRIBUTES),
)

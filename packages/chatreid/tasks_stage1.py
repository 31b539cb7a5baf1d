"""Stage 1, person attribute understanding: one image and the paper's attribute prompt, answered by a caption.

Images whose clothing cannot be made out are left out, as the paper's data engine removes images whose
clothing GPT-4o could not recognise: here, an image with world-vocabulary annotations that does not show the
type of top, bottoms or shoes (covered by a coat or a car). Every other image is captioned once per pass, in
an order shuffled by the seed.
"""

from __future__ import annotations

import random

from ireid.chatreid.instruction_pool import Built, Pool, Task
from ireid.chatreid.instruction_text import Turn, caption, conversation, is_world_vocabulary, prompt
from ireid.core.records import Record
from ireid.core.seeding import derive_rng

CLOTHING = ("upper_type", "lower_type", "shoes_type")


def clothing_visible(record: Record) -> bool:
    """False for an image whose annotations say a garment is hidden."""
    return not is_world_vocabulary(record.attributes) or all(name in record.attributes for name in CLOTHING)


def captioned(pool: Pool) -> list[Record]:
    """The images stage 1 captions, in the order it visits them."""

    def order() -> list[Record]:
        usable = [r for r in pool.records if clothing_visible(r) and (r.attributes or r.texts)]
        derive_rng(pool.seed, "stage1", "order").shuffle(usable)
        return usable

    return pool.memo("stage1-order", order)


def _unavailable(pool: Pool) -> str | None:
    if not captioned(pool):
        return "no image has a caption (attributes or texts) and visible clothing"
    return None


def _caption(pool: Pool, rng: random.Random, slot: int, gallery: tuple[int, int]) -> Built | None:
    order = captioned(pool)
    record = order[slot % len(order)]
    answer = caption(record, rng)
    if answer is None:
        return None
    turn = Turn([])
    turn.render(prompt("stage1_caption"), images=[record.key])
    return Built(turn.keys, conversation(turn, answer), [])


TASKS = (Task("caption", _caption, _unavailable),)

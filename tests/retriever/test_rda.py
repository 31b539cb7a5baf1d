import random

import pytest

from ireid.retriever.rda import rda_text


def test_rda_uses_every_group_once_in_varying_order_and_words():
    groups = [["He wore a red top.", "His top was red."], ["He had black shoes.", "His shoes were black."], ["No hat."]]
    rng = random.Random(0)
    seen_orders, seen_words = set(), set()
    for _ in range(200):
        text = rda_text(groups, rng)
        picks = [next(i for i, g in enumerate(groups) for p in g if text.startswith(p, pos)) for pos in _starts(text)]
        assert sorted(picks) == [0, 1, 2]
        seen_orders.add(tuple(picks))
        seen_words.add(text.split(" ")[0])
    assert len(seen_orders) == 6, "all orders of three groups appear"
    assert {"He", "His", "No"} <= seen_words


def _starts(text):
    starts, pos = [0], 0
    while (pos := text.find(". ", pos)) != -1:
        pos += 2
        starts.append(pos)
    return starts


def test_rda_is_deterministic_for_a_seed_and_rejects_empty_groups():
    groups = [["a.", "b."], ["c.", "d."]]
    assert [rda_text(groups, random.Random(3)) for _ in range(3)] == [rda_text(groups, random.Random(3))] * 3
    with pytest.raises(ValueError):
        rda_text([["a."], []], random.Random(0))

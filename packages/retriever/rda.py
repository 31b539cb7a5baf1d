"""ICL's reorganisation data augmentation (RDA), the training-time half.

A record's `rda_groups` hold, per attribute sub-sentence of its description, several paraphrases. Each
time the text is drawn, the groups are shuffled and one paraphrase per group is picked, so the model
sees the same facts in new orders and words.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def rda_text(groups: Sequence[Sequence[str]], rng: random.Random) -> str:
    """One recombination: groups in random order, one random paraphrase of each, joined by spaces."""
    if not groups or any(not g for g in groups):
        raise ValueError("RDA needs at least one group and no empty group")
    order = list(range(len(groups)))
    rng.shuffle(order)
    return " ".join(rng.choice(groups[i]).strip() for i in order)

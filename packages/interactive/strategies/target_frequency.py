"""`target-frequency`: a counting twin of the learned questioner, trained on nothing but its training targets.

For each round it asks, of the attributes the dialogue has not covered, the one that was most often the
look-forward target at that round over the training split (counted by `ireid.questioner.lookforward
.target_attribute_counts`), as the world's open question. It reads only the dialogue, never an image or the
gallery's annotations: what a questioner learns if it learns the order of questions and nothing about the person in
front of it. A learned questioner that does not beat it has not learned to use its candidates.
"""

from __future__ import annotations

from collections.abc import Mapping

from ireid.core.protocols import Dialogue
from ireid.core.rounds import RoundContext
from ireid.core.vocabulary.asking import gender_of, uncovered_attributes
from ireid.core.vocabulary.templates import descriptive_question


class TargetFrequency:
    """The uncovered attribute most often the training target at this round (later rounds: the last counted);
    ties go to the vocabulary order."""

    name = "target-frequency"
    uses_ground_truth = False

    def __init__(self, counts: Mapping[int, Mapping[str, int]]):
        if not counts:
            raise ValueError("target-frequency needs the attribute counts of at least one round of training targets")
        self.counts = {int(t): dict(c) for t, c in counts.items()}

    def choose(self, round_: int, dialogue: Dialogue) -> str | None:
        """The attribute to ask about at round `round_` (None when every attribute is covered)."""
        counts = self.counts.get(round_) or self.counts[max(self.counts)]
        open_ = uncovered_attributes(dialogue)
        return max(open_, key=lambda a: (counts.get(a, 0), -open_.index(a))) if open_ else None

    def ask(self, ctx: RoundContext) -> list[str | None]:
        chosen = [self.choose(ctx.round, dialogue) for dialogue in ctx.dialogues]
        return [
            None if attribute is None else descriptive_question(attribute, gender_of(dialogue))
            for attribute, dialogue in zip(chosen, ctx.dialogues, strict=True)
        ]

"""`target-frequency`: a counting twin of the learned questioner, trained on nothing but its training targets.

For each round it asks, of the attributes the dialogue has not covered, the one that was most often the
look-forward target at that round over the training split (counted by `ireid.questioner.lookforward
.target_attribute_counts`), as the world's open question. It reads only the dialogue, never an image or the
gallery's annotations: what a questioner learns if it learns the order of questions and nothing about the person in
front of it. A learned questioner that does not beat it has not learned to use its candidates.
"""

from __future__ import annotations

from collections.abc import Mapping

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

    def ask(self, ctx: RoundContext) -> list[str | None]:
        counts = self.counts.get(ctx.round) or self.counts[max(self.counts)]
        questions: list[str | None] = []
        for dialogue in ctx.dialogues:
            open_ = uncovered_attributes(dialogue)
            if not open_:
                questions.append(None)
                continue
            best = max(open_, key=lambda a: (counts.get(a, 0), -open_.index(a)))
            questions.append(descriptive_question(best, gender_of(dialogue)))
        return questions

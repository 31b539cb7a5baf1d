"""`expected-gain`: the non-learned reference a learned questioner has to beat.

Asks about the attribute the expected-gain rule (`ireid.core.expected_gain`) chooses from what a deployed system
has: the current ranking, the gallery images' embeddings and the retriever's text encoder, never the gallery's
annotations nor the target. `expected-gain:annotated` (uses ground truth) is the same rule with perfect eyes: each
candidate's answer is the value its gallery record annotates, not one guessed from the retriever's scores. It
tells how much of the gap to the oracle is perception and how much is the rule itself.
"""

from __future__ import annotations

from ireid.core.expected_gain import ExpectedGainRule
from ireid.core.rounds import RoundContext
from ireid.core.vocabulary.asking import gender_of
from ireid.core.vocabulary.templates import descriptive_question


class ExpectedGain:
    """The uncovered attribute with the largest expected rank improvement over the current candidates
    (`annotated`: their answers read from the gallery's annotations, which makes it a ground-truth reference)."""

    uses_ground_truth = False

    def __init__(
        self,
        pool: int = 200,
        temperature: float = 0.2,
        answer_temperature: float = 0.02,
        annotated: bool = False,
        contradiction: float = 0.2,
    ):
        self.rule = ExpectedGainRule(pool, temperature, answer_temperature, annotated, contradiction)
        self.uses_ground_truth = annotated
        self.name = "expected-gain:annotated" if annotated else "expected-gain"

    def ask(self, ctx: RoundContext) -> list[str | None]:
        return [
            None if attribute is None else descriptive_question(attribute, gender_of(dialogue))
            for attribute, dialogue in zip(self.rule.choose(ctx), ctx.dialogues, strict=True)
        ]

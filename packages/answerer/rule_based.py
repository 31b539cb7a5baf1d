"""A witness that answers from a text memory by rule, in the synthetic world's own sentences.

It reads the question and the memory back into attribute values (`ireid.core.vocabulary.parse`) and states the
remembered value with the world's statement templates, so on synthetic data its answers always agree with its
memory: the reference an LLM witness is measured against, and a fast deterministic witness for tests and demos.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Literal

from ireid.core.answers import UNKNOWN, answer_for_short_question
from ireid.core.seeding import derive_rng
from ireid.core.vocabulary.attributes import ATTRIBUTES, article
from ireid.core.vocabulary.parse import parse_description, parse_question
from ireid.core.vocabulary.templates import statement, yes_no_answer

MissingPolicy = Literal["unknown", "absent"]
MISSING_POLICIES: tuple[str, ...] = ("unknown", "absent")
NONE_OF_THE_OPTIONS = "None of those."


def state(attribute: str, value: str, gender: str | None, rng: random.Random) -> str:
    """One sentence saying `value` of `attribute` about a man, a woman, or (gender None) "the person"."""
    if attribute == "gender":
        return f"I saw {article(value)} {value}."
    facts = {attribute: value} if gender is None else {"gender": gender, attribute: value}
    return statement(facts, attribute, rng)


class RuleBasedWitness:
    """Answers in full sentences: a statement of the remembered value, "Yes, ..." / "No, <the truth>" to yes/no
    questions, the true value to multiple choice ("None of those. ..." when no option is right).

    "I don't know." when the question is under 15 characters or names no attribute, or the memory does not state
    the attribute. With `missing="absent"`, attributes that can be absent (hat, bag, glasses, held item, logo) and
    are not in memory are answered as absent, as LLaVA-ReID's answerer prompt instructs ("assume the person does not
    possess it"). Deterministic for (seed, question, memory): the sentence template is drawn from a stream derived
    from them.
    """

    def __init__(self, missing: MissingPolicy = "unknown", seed: int = 0) -> None:
        if missing not in MISSING_POLICIES:
            raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
        self.missing = missing
        self.seed = seed

    def answer(self, questions: Sequence[str], memories: Sequence[str]) -> list[str]:
        if len(questions) != len(memories):
            raise ValueError(f"{len(questions)} questions but {len(memories)} memories")
        return [self.answer_one(q, m) for q, m in zip(questions, memories, strict=True)]

    def answer_one(self, question: str, memory: str) -> str:
        return self.answer_values(question, parse_description(memory), memory)

    def answer_values(self, question: str, remembered: Mapping[str, str], memory: str = "") -> str:
        """The answer from attribute values already read (from a text memory, or off an image); `memory` names the
        memory in the seed of the sentence draw."""
        short = answer_for_short_question(question)
        if short is not None:
            return short
        parsed = parse_question(question)
        if parsed is None:
            return UNKNOWN
        value = remembered.get(parsed.attribute)
        if value is None and self.missing == "absent":
            value = ATTRIBUTES[parsed.attribute].absent
        if value is None:
            return UNKNOWN
        rng = derive_rng(self.seed, question, memory or " ".join(f"{k}={v}" for k, v in sorted(remembered.items())))
        said = state(parsed.attribute, value, remembered.get("gender"), rng)
        if parsed.options:
            return said if value in parsed.options else f"{NONE_OF_THE_OPTIONS} {said}"
        if parsed.assumed is not None:
            return yes_no_answer(parsed.assumed == value, said)
        return said

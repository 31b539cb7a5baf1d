"""What is left to ask in a dialogue, in the pedestrian vocabulary: the attributes a question can be about, the ones
a dialogue has not covered yet, and the world's open question about each.

Shared by the rule-based question strategies and the learned questioner's fallback, which ask only what is open.
"""

from __future__ import annotations

from ireid.core.protocols import Dialogue
from ireid.core.vocabulary.attributes import ATTRIBUTE_NAMES
from ireid.core.vocabulary.parse import covered_attributes, parse_description
from ireid.core.vocabulary.templates import descriptive_question

ASKABLE: tuple[str, ...] = tuple(name for name in ATTRIBUTE_NAMES if name != "gender")


def gender_of(dialogue: Dialogue) -> str | None:
    """The gender the initial description states (the questions' pronoun), if any."""
    return parse_description(dialogue.initial).get("gender")


def uncovered_attributes(dialogue: Dialogue, text: str | None = None) -> list[str]:
    """Askable attributes, in vocabulary order, that `text` (default: the dialogue's retrieval text) does not state
    and no question of the dialogue asked about."""
    done = covered_attributes(dialogue.retrieval_text() if text is None else text, dialogue.asked)
    return [a for a in ASKABLE if a not in done]


def open_questions(dialogue: Dialogue) -> list[str]:
    """The world's open question about each uncovered attribute ("What colour were his shoes?")."""
    gender = gender_of(dialogue)
    return [descriptive_question(a, gender) for a in uncovered_attributes(dialogue)]

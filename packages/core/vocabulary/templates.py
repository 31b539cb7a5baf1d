"""Sentence templates of the pedestrian vocabulary: how each attribute is stated and asked about.

Attribute values always appear as their `phrase` (`ireid.core.vocabulary.attributes`), so every sentence made
here can be parsed back (`ireid.core.vocabulary.parse`). Used by the synthetic world's texts, the rule-based
witness, the heuristic question strategies and the ChatReID instruction engine.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from ireid.core.vocabulary.attributes import ATTRIBUTES, article, bare, phrase


@dataclass(frozen=True)
class Templates:
    """How one attribute is stated and asked about.

    Fields: {S}/{s} subject pronoun, {P}/{p} possessive, {o} object pronoun, {n} "man"/"woman",
    {v} the value's phrase, {av} the phrase with its article ("an orange"). `statements` work for every
    value; `yes_no` assume a present value, `yes_no_absent` assume the absent one. `choice` (empty when
    the attribute has fewer than four values) is a multiple-choice question whose answer
    `choice_answer` contains the chosen option verbatim.
    """

    statements: tuple[str, ...]
    descriptive: tuple[str, ...]
    yes_no: tuple[str, ...]
    yes_no_absent: tuple[str, ...] = ()
    choice: str = ""
    choice_answer: str = ""


TEMPLATES: dict[str, Templates] = {
    "age": Templates(
        statements=("{S} looked {v}.", "{S} was {av} {n}."),
        descriptive=("How old did {s} look?", "What age would you guess the {n} was?", "Roughly how old was {s}?"),
        yes_no=("Was the {n} {v}?", "Did the {n} look {v}?", "Would you say {s} was {v}?"),
    ),
    "hair_colour": Templates(
        statements=("{S} had {v} hair.", "{P} hair was {v}."),
        descriptive=(
            "What colour was {p} hair?",
            "Can you tell me about the colour of {p} hair?",
            "What shade of hair did the {n} have?",
        ),
        yes_no=("Did {s} have {v} hair?", "Was {p} hair {v}?"),
        choice="What colour was {p} hair?",
        choice_answer="{P} hair was {v}.",
    ),
    "hair_length": Templates(
        statements=("{S} had {v} hair.", "{P} hair was {v}."),
        descriptive=(
            "How long was {p} hair?",
            "Can you describe the length of {p} hair?",
            "What length was the {n}'s hair?",
        ),
        yes_no=("Was {p} hair {v}?", "Did {s} have {v} hair?"),
    ),
    "upper_type": Templates(
        statements=("{S} was wearing {v} on top.", "{P} top was {v}.", "On {p} upper body {s} wore {v}."),
        descriptive=(
            "What kind of top was {s} wearing?",
            "Can you tell me what {s} wore on {p} upper body?",
            "What type of garment did the {n} have on top?",
        ),
        yes_no=("Was {s} wearing {v}?", "Did {s} have {v} on?"),
        choice="What was {s} wearing on {p} upper body?",
        choice_answer="{S} was wearing {v} on top.",
    ),
    "upper_colour": Templates(
        statements=("{P} top was {v}.", "{S} wore {av} top."),
        descriptive=(
            "What colour was {p} top?",
            "Can you tell me the colour of the {n}'s top?",
            "What colour did {s} wear on {p} upper body?",
        ),
        yes_no=("Was {p} top {v}?", "Did {s} wear {av} top?"),
        choice="What colour was {p} top?",
        choice_answer="{P} top was {v}.",
    ),
    "upper_pattern": Templates(
        statements=("{P} top was {v}.", "The top {s} wore was {v}."),
        descriptive=(
            "What pattern, if any, was on {p} top?",
            "Can you describe the pattern of {p} top?",
            "How was the fabric of the {n}'s top patterned?",
        ),
        yes_no=("Was {p} top {v}?", "Did {s} wear {av} top?"),
        choice="What pattern did {p} top have?",
        choice_answer="{P} top was {v}.",
    ),
    "upper_logo": Templates(
        statements=("{P} top had {v} on the front.", "There was {v} on {p} top."),
        descriptive=(
            "What was on the front of {p} top?",
            "Can you tell me about any logo or print on {p} top?",
            "What, if anything, was printed on the {n}'s top?",
        ),
        yes_no=("Did {p} top have {v} on it?", "Was there {v} on {p} top?"),
        yes_no_absent=("Was {p} top free of any logo?", "Did {p} top have nothing printed on it?"),
    ),
    "lower_type": Templates(
        statements=("{S} wore {v}.", "Below the waist {s} wore {v}.", "{S} was dressed in {v}."),
        descriptive=(
            "What was {s} wearing on {p} lower body?",
            "Can you tell me what {s} wore below the waist?",
            "What kind of bottoms did the {n} have on?",
        ),
        yes_no=("Was {s} wearing {v}?", "Did {s} have {v} on?"),
        choice="What did {s} wear on {p} lower body?",
        choice_answer="{S} wore {v}.",
    ),
    "lower_colour": Templates(
        statements=(
            "{S} wore {v} on {p} lower body.",
            "{P} bottoms were {v}.",
            "The clothes below {p} waist were {v}.",
        ),
        descriptive=(
            "What colour was the clothing on {p} lower body?",
            "What colour were {p} bottoms?",
            "Can you tell me what colour the {n} wore below the waist?",
        ),
        yes_no=("Were {p} bottoms {v}?", "Was {s} wearing {v} on {p} lower body?"),
        choice="What colour were {p} bottoms?",
        choice_answer="{P} bottoms were {v}.",
    ),
    "shoes_type": Templates(
        statements=("{S} wore {v}.", "On {p} feet {s} had {v}.", "{P} footwear consisted of {v}."),
        descriptive=(
            "What kind of shoes was {s} wearing?",
            "What did {s} have on {p} feet?",
            "Can you describe the {n}'s footwear?",
        ),
        yes_no=("Was {s} wearing {v}?", "Did {s} have {v} on {p} feet?"),
        choice="What type of footwear did {s} wear?",
        choice_answer="{S} wore {v}.",
    ),
    "shoes_colour": Templates(
        statements=("{P} shoes were {v}.", "{S} wore {v} footwear."),
        descriptive=(
            "What colour were {p} shoes?",
            "Can you tell me the colour of {p} footwear?",
            "What colour was the {n}'s footwear?",
        ),
        yes_no=("Were {p} shoes {v}?", "Was {s} wearing {v} footwear?"),
        choice="What colour were {p} shoes?",
        choice_answer="{P} shoes were {v}.",
    ),
    "bag": Templates(
        statements=("{S} carried {v}.", "{S} had {v} with {o}."),
        descriptive=(
            "What kind of bag, if any, was {s} carrying?",
            "Can you tell me about any bag {s} had?",
            "What sort of bag did the {n} have with {o}, if any?",
        ),
        yes_no=("Was {s} carrying {v}?", "Did {s} have {v} with {o}?"),
        yes_no_absent=("Was {s} without a bag?", "Did {s} have no bag with {o}?"),
        choice="What kind of bag did {s} have?",
        choice_answer="{S} carried {v}.",
    ),
    "hat": Templates(
        statements=("{S} wore {v}.", "{S} had {v} on {p} head."),
        descriptive=(
            "What, if anything, was {s} wearing on {p} head?",
            "Can you describe {p} headwear?",
            "What did the {n} have on {p} head?",
        ),
        yes_no=("Was {s} wearing {v}?", "Did {s} have {v} on {p} head?"),
        yes_no_absent=("Was {s} bare-headed?", "Was {s} without a hat?"),
        choice="What was {s} wearing on {p} head?",
        choice_answer="{S} wore {v}.",
    ),
    "glasses": Templates(
        statements=("{S} wore {v}.", "{S} had {v} on."),
        descriptive=(
            "What kind of eyewear, if any, did {s} have?",
            "Can you tell me about {p} eyewear?",
            "What, if anything, did the {n} wear over {p} eyes?",
        ),
        yes_no=("Was {s} wearing {v}?", "Did {s} have {v} on?"),
        yes_no_absent=("Was {s} without glasses?", "Did {s} have no glasses on?"),
    ),
    "held_item": Templates(
        statements=("{S} was holding {v}.", "{S} had {v} in {p} hands."),
        descriptive=(
            "What was {s} holding?",
            "Can you tell me what {s} had in {p} hands?",
            "What, if anything, did the {n} carry in {p} hands?",
        ),
        yes_no=("Was {s} holding {v}?", "Did {s} have {v} in {p} hand?"),
        yes_no_absent=("Were {p} hands empty?", "Was {s} holding nothing?"),
        choice="What was {s} holding?",
        choice_answer="{S} was holding {v}.",
    ),
    "scene": Templates(
        statements=("I saw {o} {v}.", "The {n} was {v}.", "{S} was walking {v}."),
        descriptive=(
            "Where did you see {o}?",
            "Can you describe where you saw the {n}?",
            "What kind of place was {s} in?",
        ),
        yes_no=("Did you see {o} {v}?", "Was {s} {v} when you saw {o}?"),
        choice="Where did you see {o}?",
        choice_answer="I saw {o} {v}.",
    ),
}

# Pronoun fields per gender; None (gender unknown, e.g. to a witness whose memory omits it) says "the person".
PERSON_FIELDS: dict[str | None, dict[str, str]] = {
    "man": {"S": "He", "s": "he", "P": "His", "p": "his", "o": "him", "n": "man"},
    "woman": {"S": "She", "s": "she", "P": "Her", "p": "her", "o": "her", "n": "woman"},
    None: {"S": "The person", "s": "the person", "P": "Their", "p": "their", "o": "them", "n": "person"},
}


def fields(attributes: Mapping[str, str], attribute: str | None = None, value: str | None = None) -> dict[str, str]:
    fields = dict(PERSON_FIELDS[attributes.get("gender")])
    if attribute is not None and value is not None:
        words = phrase(attribute, value)
        fields.update(v=words, av=f"{article(words)} {words}")
    return fields


def lower_first(sentence: str) -> str:
    return sentence if sentence.startswith("I ") else sentence[:1].lower() + sentence[1:]


def yes_no_answer(positive: bool, statement: str) -> str:
    """ "Yes, <statement>" when the question's assumption is right, else "No, <statement of the truth>"."""
    return ("Yes, " if positive else "No, ") + lower_first(statement)


def is_present(attribute: str, value: str) -> bool:
    return value != ATTRIBUTES[attribute].absent


def statement(attributes: Mapping[str, str], attribute: str, rng: random.Random) -> str:
    """One sentence stating `attributes[attribute]` (a sub-caption); without a "gender" it speaks of "the person"."""
    template = rng.choice(TEMPLATES[attribute].statements)
    return template.format(**fields(attributes, attribute, attributes[attribute]))


def adorned(noun_phrase: str, *adjectives: str) -> str:
    """Put adjectives after the article: ("a short skirt", "grey") -> "a grey short skirt"."""
    words = " ".join((*adjectives, bare(noun_phrase)))
    return f"{article(words)} {words}" if bare(noun_phrase) != noun_phrase else words


def descriptive_question(attribute: str, gender: str | None = None, variant: int = 0) -> str:
    """The world's open question about `attribute` ("What colour were his shoes?").

    Without a gender it asks about "the person".
    """
    templates = TEMPLATES[attribute].descriptive
    return templates[variant % len(templates)].format(**fields({"gender": gender} if gender else {}))

"""Witness texts for a synthetic identity, in the shape of Interactive-PEDES.

An initial description names the gender and one more attribute (coarse, shared by many people); the
fine description restates it and then states every attribute, including absences ("She wore no hat"),
so it fits one identity only. Each attribute the initial description leaves out gets one sub-caption
and one question-answer pair (descriptive / yes-no with a right or wrong assumption / multiple choice).
Attribute values always appear as their `phrase` from `attributes.py`, so they can be parsed back.
Attributes an image does not show (`hidden`: colours under an infrared camera, occluded garments) are left
out of that image's texts. Needs no images: the whole text side of a world can be generated and checked on
its own.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from ireid.core.records import QA, Record
from ireid.core.synthetic.attributes import ATTRIBUTE_NAMES, ATTRIBUTES, article, bare, phrase

QA_TYPE_SHARES = {"descriptive": 0.5, "yes_no": 0.4, "multiple_choice": 0.1}
CHOICE_OPTIONS = 4
LETTERS = "ABCD"


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

# Which attribute the initial description names besides gender, and how: weights favour clothing
# (what witnesses recall first); absent values ("no hat") and plain patterns are never the one named.
INITIAL_CHOICES: dict[str, tuple[float, tuple[str, ...]]] = {
    "upper_colour": (6, ("in {av} top", "wearing {av} top")),
    "upper_type": (3, ("in {v}", "wearing {v}")),
    "lower_type": (2, ("in {v}", "wearing {v}")),
    "lower_colour": (2, ("in {v} bottoms", "wearing {v} bottoms")),
    "hair_colour": (2, ("with {v} hair",)),
    "hair_length": (1, ("with {v} hair",)),
    "age": (2, ("",)),
    "upper_pattern": (1, ("in {av} top", "wearing {av} top")),
    "bag": (1, ("carrying {v}", "with {v}")),
    "hat": (1, ("wearing {v}", "in {v}")),
    "glasses": (0.5, ("wearing {v}",)),
    "held_item": (1, ("holding {v}",)),
    "scene": (1, ("{v}", "walking {v}")),
}
INITIAL_FRAMES = (
    ("I saw {subject}{clause}.", 6),
    ("I remember {subject}{clause}.", 1),
    ("I noticed {subject}{clause}.", 1),
    ("There was {subject}{clause}.", 1),
    ("It was {subject}{clause}, I think.", 1),
)


@dataclass(frozen=True)
class Texts:
    """Everything a record says about its person; `mentioned` lists what the initial description names."""

    initial: str
    fine: str
    sub_captions: tuple[str, ...]
    qas: tuple[QA, ...]
    mentioned: tuple[str, ...]


# Pronoun fields per gender; None (gender unknown, e.g. to a witness whose memory omits it) says "the person".
_PERSON_FIELDS: dict[str | None, dict[str, str]] = {
    "man": {"S": "He", "s": "he", "P": "His", "p": "his", "o": "him", "n": "man"},
    "woman": {"S": "She", "s": "she", "P": "Her", "p": "her", "o": "her", "n": "woman"},
    None: {"S": "The person", "s": "the person", "P": "Their", "p": "their", "o": "them", "n": "person"},
}


def _fields(attributes: Mapping[str, str], attribute: str | None = None, value: str | None = None) -> dict[str, str]:
    fields = dict(_PERSON_FIELDS[attributes.get("gender")])
    if attribute is not None and value is not None:
        words = phrase(attribute, value)
        fields.update(v=words, av=f"{article(words)} {words}")
    return fields


def _lower_first(sentence: str) -> str:
    return sentence if sentence.startswith("I ") else sentence[:1].lower() + sentence[1:]


def yes_no_answer(positive: bool, statement: str) -> str:
    """ "Yes, <statement>" when the question's assumption is right, else "No, <statement of the truth>"."""
    return ("Yes, " if positive else "No, ") + _lower_first(statement)


def _is_present(attribute: str, value: str) -> bool:
    return value != ATTRIBUTES[attribute].absent


def initial_candidates(attributes: Mapping[str, str]) -> list[str]:
    """Attributes the initial description may name for this identity (never an absence or "plain")."""
    return [
        name
        for name in INITIAL_CHOICES
        if _is_present(name, attributes[name]) and not (name == "upper_pattern" and attributes[name] == "plain")
    ]


def choose_mentioned(
    attributes: Mapping[str, str], rng: random.Random, hidden: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """Gender plus one weighted attribute: about two facts, so many identities fit (ambiguity by design)."""
    candidates = [name for name in initial_candidates(attributes) if name not in hidden]
    extra = rng.choices(candidates, weights=[INITIAL_CHOICES[c][0] for c in candidates])[0]
    return ("gender", extra)


def initial_description(attributes: Mapping[str, str], mentioned: tuple[str, ...], rng: random.Random) -> str:
    extra = mentioned[1]
    gender = attributes["gender"]
    subject = f"{attributes['age']} {gender}" if extra == "age" else gender
    clause = rng.choice(INITIAL_CHOICES[extra][1]).format(**_fields(attributes, extra, attributes[extra]))
    frame = rng.choices([f for f, _ in INITIAL_FRAMES], weights=[w for _, w in INITIAL_FRAMES])[0]
    return frame.format(subject=f"{article(subject)} {subject}", clause=f" {clause}" if clause else "")


def statement(attributes: Mapping[str, str], attribute: str, rng: random.Random) -> str:
    """One sentence stating `attributes[attribute]` (a sub-caption); without a "gender" it speaks of "the person"."""
    template = rng.choice(TEMPLATES[attribute].statements)
    return template.format(**_fields(attributes, attribute, attributes[attribute]))


def adorned(noun_phrase: str, *adjectives: str) -> str:
    """Put adjectives after the article: ("a short skirt", "grey") -> "a grey short skirt"."""
    words = " ".join((*adjectives, bare(noun_phrase)))
    return f"{article(words)} {words}" if bare(noun_phrase) != noun_phrase else words


def _fine_sentences(a: Mapping[str, str], rng: random.Random, hidden: frozenset[str] = frozenset()) -> list[str]:
    """Group sentences that together state every shown attribute except gender (named by the subject)."""
    f = _fields(a)

    def shown(*names: str) -> list[str]:
        return [a[name] for name in names if name not in hidden]

    hair = " ".join([*shown("hair_length", "hair_colour"), "hair"])
    age = a["age"]
    top = adorned(phrase("upper_type", a["upper_type"]), *shown("upper_pattern", "upper_colour"))
    logo = "with a logo on the front" if a["upper_logo"] == "yes" else "with no logo"
    lower = adorned(phrase("lower_type", a["lower_type"]), *shown("lower_colour"))
    shoes = " ".join(shown("shoes_colour", "shoes_type"))
    groups = [
        rng.choice(
            (
                f"{f['S']} looked {age} and had {hair}.",
                f"{f['S']} was {article(age)} {age} {f['n']} with {hair}.",
            )
        ),
        rng.choice((f"{f['S']} was wearing {top} {logo}.", f"{f['P']} top was {top} {logo}.")),
        rng.choice((f"{f['S']} wore {lower}.", f"Below the waist {f['s']} had on {lower}.")),
        rng.choice((f"{f['S']} wore {shoes}.", f"On {f['p']} feet {f['s']} had {shoes}.")),
    ]
    # A group about a hidden garment (shorts under a coat, shoes behind a car) is left out.
    about = (None, None, "lower_type", "shoes_type")
    sentences = [s for s, garment in zip(groups, about, strict=True) if garment not in hidden]
    accessories = [statement(a, name, rng) for name in ("bag", "held_item", "hat", "glasses") if name not in hidden]
    rng.shuffle(accessories)
    return [*sentences, *accessories, statement(a, "scene", rng)]


def qa_type_probabilities(n_total: int, n_choice_eligible: int) -> tuple[dict[str, float], dict[str, float]]:
    """Per-pair type probabilities for attributes that can / cannot be asked as multiple choice.

    Attributes with fewer than four values cannot give four options, so the eligible ones take a larger
    multiple-choice share and the overall mix still comes out at 50/40/10.
    """
    shares = QA_TYPE_SHARES
    open_share = shares["descriptive"] + shares["yes_no"]
    ineligible = {"descriptive": shares["descriptive"] / open_share, "yes_no": shares["yes_no"] / open_share}
    if n_choice_eligible == 0:
        return ineligible, ineligible
    p_choice = min(1.0, shares["multiple_choice"] * n_total / n_choice_eligible)
    eligible = {k: v * (1 - p_choice) for k, v in ineligible.items()} | {"multiple_choice": p_choice}
    return eligible, ineligible


def _can_choose(attribute: str) -> bool:
    return bool(TEMPLATES[attribute].choice) and len(ATTRIBUTES[attribute].values) >= CHOICE_OPTIONS


def _yes_no(a: Mapping[str, str], attribute: str, sub_caption: str, rng: random.Random) -> QA:
    """Half the time the assumption is right ("Yes, ..."), else a wrong value ("No, " + the truth)."""
    spec, templates = ATTRIBUTES[attribute], TEMPLATES[attribute]
    truth = a[attribute]
    positive = rng.random() < 0.5
    assumed = truth if positive else rng.choice([v for v in spec.values if v != truth])
    pool = templates.yes_no if _is_present(attribute, assumed) else templates.yes_no_absent
    question = rng.choice(pool).format(**_fields(a, attribute, assumed))
    return QA(question=question, answer=yes_no_answer(positive, sub_caption), qtype="yes_no", attribute=attribute)


def _choice(a: Mapping[str, str], attribute: str, rng: random.Random) -> QA:
    spec, templates = ATTRIBUTES[attribute], TEMPLATES[attribute]
    truth = a[attribute]
    values = [truth, *rng.sample([v for v in spec.values if v != truth], CHOICE_OPTIONS - 1)]
    rng.shuffle(values)
    options = tuple(spec.phrase(v) for v in values)
    listed = " ".join(f"{letter}) {option}" for letter, option in zip(LETTERS, options, strict=True))
    f = _fields(a, attribute, truth)
    return QA(
        question=f"{templates.choice.format(**f)} {listed}",
        answer=templates.choice_answer.format(**f),
        qtype="multiple_choice",
        options=options,
        attribute=attribute,
    )


def make_qa(a: Mapping[str, str], attribute: str, sub_caption: str, qtype: str, rng: random.Random) -> QA:
    if qtype == "yes_no":
        return _yes_no(a, attribute, sub_caption, rng)
    if qtype == "multiple_choice":
        return _choice(a, attribute, rng)
    question = rng.choice(TEMPLATES[attribute].descriptive).format(**_fields(a, attribute, a[attribute]))
    return QA(question=question, answer=sub_caption, qtype="descriptive", attribute=attribute)


def describe(
    attributes: Mapping[str, str],
    mentioned: tuple[str, ...],
    rng: random.Random,
    hidden: frozenset[str] = frozenset(),
) -> Texts:
    """All texts of one image of an identity; `rng` picks templates, Q&A types and their order.

    Attributes in `hidden` (not shown by this image) are neither stated nor asked about; `mentioned` must
    name shown attributes only.
    """
    if hidden & set(mentioned):
        raise ValueError(f"the initial description cannot name hidden attributes {sorted(hidden & set(mentioned))}")
    initial = initial_description(attributes, mentioned, rng)
    fine = " ".join([initial, *_fine_sentences(attributes, rng, hidden)])
    asked = [name for name in ATTRIBUTE_NAMES if name not in mentioned and name not in hidden]
    sub_captions = [statement(attributes, name, rng) for name in asked]
    eligible, ineligible = qa_type_probabilities(len(asked), sum(_can_choose(n) for n in asked))
    qas = []
    for name, sub_caption in zip(asked, sub_captions, strict=True):
        probabilities = eligible if _can_choose(name) else ineligible
        qtype = rng.choices(list(probabilities), weights=list(probabilities.values()))[0]
        qas.append(make_qa(attributes, name, sub_caption, qtype, rng))
    rng.shuffle(qas)
    return Texts(initial, fine, tuple(sub_captions), tuple(qas), mentioned)


def mentioned_attributes(record: Record) -> tuple[str, ...]:
    """What a synthetic record's initial description names: every attribute the image shows (its `attributes`)
    that its Q&A bank does not ask about."""
    asked = {qa.attribute for qa in record.qas}
    return tuple(name for name in ATTRIBUTE_NAMES if name not in asked and name in record.attributes)


def rda_groups(attributes: Mapping[str, str], initial: str, hidden: frozenset[str] = frozenset()) -> list[list[str]]:
    """ICL's RDA material for one record: the initial description, then per shown attribute every template's
    sentence for it (paraphrases of one fact). Deterministic: all templates, no random choice."""
    groups = [[initial]]
    for name, templates in TEMPLATES.items():
        if name in hidden:
            continue
        fields = _fields(attributes, name, attributes[name])
        groups.append(sorted({template.format(**fields) for template in templates.statements}))
    return groups


def descriptive_question(attribute: str, gender: str | None = None, variant: int = 0) -> str:
    """The world's open question about `attribute` ("What colour were his shoes?").

    Without a gender it asks about "the person".
    """
    templates = TEMPLATES[attribute].descriptive
    return templates[variant % len(templates)].format(**_fields({"gender": gender} if gender else {}))

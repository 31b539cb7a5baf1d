"""Witness texts for a synthetic identity, in the shape of Interactive-PEDES.

An initial description names the gender and one more attribute (coarse, shared by many people); the
fine description restates it and then states every attribute, including absences ("She wore no hat"),
so it fits one identity only. Each attribute the initial description leaves out gets one sub-caption
and one question-answer pair (descriptive / yes-no with a right or wrong assumption / multiple choice).
Attribute values always appear as their `phrase` (`ireid.core.vocabulary`), so they can be parsed back.
Attributes an image does not show (`hidden`: colours under an infrared camera, occluded garments) are left
out of that image's texts. Needs no images: the whole text side of a world can be generated and checked on
its own.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from ireid.core.records import QA, Record
from ireid.core.vocabulary.attributes import ATTRIBUTE_NAMES, ATTRIBUTES, article, phrase
from ireid.core.vocabulary.templates import TEMPLATES, adorned, fields, is_present, statement, yes_no_answer

QA_TYPE_SHARES = {"descriptive": 0.5, "yes_no": 0.4, "multiple_choice": 0.1}
CHOICE_OPTIONS = 4
LETTERS = "ABCD"


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


def initial_candidates(attributes: Mapping[str, str]) -> list[str]:
    """Attributes the initial description may name for this identity (never an absence or "plain")."""
    return [
        name
        for name in INITIAL_CHOICES
        if is_present(name, attributes[name]) and not (name == "upper_pattern" and attributes[name] == "plain")
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
    clause = rng.choice(INITIAL_CHOICES[extra][1]).format(**fields(attributes, extra, attributes[extra]))
    frame = rng.choices([f for f, _ in INITIAL_FRAMES], weights=[w for _, w in INITIAL_FRAMES])[0]
    return frame.format(subject=f"{article(subject)} {subject}", clause=f" {clause}" if clause else "")


def _fine_sentences(a: Mapping[str, str], rng: random.Random, hidden: frozenset[str] = frozenset()) -> list[str]:
    """Group sentences that together state every shown attribute except gender (named by the subject)."""
    f = fields(a)

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
    pool = templates.yes_no if is_present(attribute, assumed) else templates.yes_no_absent
    question = rng.choice(pool).format(**fields(a, attribute, assumed))
    return QA(question=question, answer=yes_no_answer(positive, sub_caption), qtype="yes_no", attribute=attribute)


def _choice(a: Mapping[str, str], attribute: str, rng: random.Random) -> QA:
    spec, templates = ATTRIBUTES[attribute], TEMPLATES[attribute]
    truth = a[attribute]
    values = [truth, *rng.sample([v for v in spec.values if v != truth], CHOICE_OPTIONS - 1)]
    rng.shuffle(values)
    options = tuple(spec.phrase(v) for v in values)
    listed = " ".join(f"{letter}) {option}" for letter, option in zip(LETTERS, options, strict=True))
    f = fields(a, attribute, truth)
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
    question = rng.choice(TEMPLATES[attribute].descriptive).format(**fields(a, attribute, a[attribute]))
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
        said = fields(attributes, name, attributes[name])
        groups.append(sorted({template.format(**said) for template in templates.statements}))
    return groups

"""The pedestrian attribute vocabulary: names, values, their prior weights and how each value is said.

The vocabulary is data, kept in this one place, so the synthetic renderer and text generator, the rule-based
witness, the heuristic baselines and the instruction engines read the same names and values: every value has
one surface phrase (`phrase`) that texts use verbatim, which is what lets questions and answers be parsed back
to attribute values (`ireid.core.vocabulary.parse`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

NONE = "none"
COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")


@dataclass(frozen=True)
class AttributeSpec:
    """One attribute: its values, how often each is drawn, and how each is said.

    `conditions` override `weights` when an earlier attribute has a given value (first match wins),
    e.g. skirts for women only. `absent` is the value meaning "does not have one" (no hat, no logo).
    `phrases` maps a value to the words the texts use for it; values not listed are said as they are.
    """

    name: str
    values: tuple[str, ...]
    weights: tuple[float, ...]
    phrases: Mapping[str, str] = field(default_factory=dict)
    conditions: tuple[tuple[str, str, tuple[float, ...]], ...] = ()
    absent: str | None = None

    def __post_init__(self) -> None:
        for weights in (self.weights, *(w for _, _, w in self.conditions)):
            if len(weights) != len(self.values):
                raise ValueError(f"attribute {self.name!r}: {len(weights)} weights for {len(self.values)} values")
        unknown = set(self.phrases) - set(self.values)
        if unknown:
            raise ValueError(f"attribute {self.name!r}: phrases for unknown values {sorted(unknown)}")

    def phrase(self, value: str) -> str:
        if value not in self.values:
            raise KeyError(f"attribute {self.name!r} has no value {value!r}")
        return self.phrases.get(value, value)

    def weights_for(self, chosen: Mapping[str, str]) -> tuple[float, ...]:
        for other, value, weights in self.conditions:
            if chosen.get(other) == value:
                return weights
        return self.weights


def _uniform(n: int) -> tuple[float, ...]:
    return (1.0,) * n


# Order matters: conditions refer to attributes earlier in this list.
SPECS = (
    AttributeSpec("gender", ("man", "woman"), (1, 1)),
    AttributeSpec("age", ("young", "middle-aged", "elderly"), (5, 4, 2)),
    AttributeSpec(
        "hair_colour",
        ("black", "brown", "blonde", "red", "grey"),
        (4, 4, 2, 1, 1),
        conditions=(("age", "elderly", (1, 1, 1, 0.5, 6)),),
    ),
    AttributeSpec(
        "hair_length",
        ("short", "shoulder-length", "long"),
        (7, 2, 1),
        conditions=(("gender", "woman", (2, 3, 4)),),
    ),
    AttributeSpec(
        "upper_type",
        ("t-shirt", "button-up shirt", "sweater", "hoodie", "jacket", "coat"),
        _uniform(6),
        phrases={
            "t-shirt": "a T-shirt",
            "button-up shirt": "a button-up shirt",
            "sweater": "a sweater",
            "hoodie": "a hoodie",
            "jacket": "a jacket",
            "coat": "a coat",
        },
    ),
    AttributeSpec("upper_colour", COLOURS, _uniform(len(COLOURS))),
    AttributeSpec("upper_pattern", ("plain", "striped", "checked", "dotted"), (5, 2, 2, 1)),
    AttributeSpec("upper_logo", ("no", "yes"), (3, 1), phrases={"no": "no logo", "yes": "a logo"}, absent="no"),
    AttributeSpec(
        "lower_type",
        ("trousers", "shorts", "short skirt", "long skirt"),
        (4, 1, 0, 0),
        phrases={"short skirt": "a short skirt", "long skirt": "a long skirt"},
        conditions=(("gender", "woman", (4, 2, 2, 2)),),
    ),
    AttributeSpec(
        "lower_colour",
        ("black", "white", "grey", "red", "green", "blue", "brown", "beige"),
        (3, 1, 2, 1, 1, 3, 1, 2),
    ),
    AttributeSpec("shoes_type", ("sneakers", "boots", "sandals", "leather shoes"), (4, 2, 1, 2)),
    AttributeSpec("shoes_colour", ("black", "white", "brown", "grey", "red", "blue"), (3, 3, 2, 1, 1, 1)),
    AttributeSpec(
        "bag",
        (NONE, "backpack", "handbag", "shoulder bag"),
        (4, 3, 1, 2),
        phrases={NONE: "no bag", "backpack": "a backpack", "handbag": "a handbag", "shoulder bag": "a shoulder bag"},
        conditions=(("gender", "woman", (3, 2, 3, 2)),),
        absent=NONE,
    ),
    AttributeSpec(
        "hat",
        (NONE, "cap", "beanie", "sun hat"),
        (6, 2, 1, 1),
        phrases={NONE: "no hat", "cap": "a cap", "beanie": "a beanie", "sun hat": "a sun hat"},
        absent=NONE,
    ),
    AttributeSpec("glasses", (NONE, "eyeglasses", "sunglasses"), (6, 3, 1), phrases={NONE: "no glasses"}, absent=NONE),
    AttributeSpec(
        "held_item",
        (NONE, "umbrella", "phone", "cup", "book"),
        (5, 1, 2, 1, 1),
        phrases={NONE: "nothing", "umbrella": "an umbrella", "phone": "a phone", "cup": "a cup", "book": "a book"},
        absent=NONE,
    ),
    AttributeSpec(
        "scene",
        ("street", "park", "shopping mall", "train station"),
        _uniform(4),
        phrases={
            "street": "on a street",
            "park": "in a park",
            "shopping mall": "in a shopping mall",
            "train station": "at a train station",
        },
    ),
)

ATTRIBUTES: dict[str, AttributeSpec] = {spec.name: spec for spec in SPECS}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)

# What a change of clothes re-draws: the person is seen on another occasion, in other clothes, with other
# carried items and headwear, somewhere else. Body, face, hair and glasses stay.
OUTFIT_ATTRIBUTES: tuple[str, ...] = (
    "upper_type",
    "upper_colour",
    "upper_pattern",
    "upper_logo",
    "lower_type",
    "lower_colour",
    "shoes_type",
    "shoes_colour",
    "bag",
    "hat",
    "held_item",
    "scene",
)
# Attributes that are only a colour: an infrared camera cannot show them.
COLOUR_ATTRIBUTES: frozenset[str] = frozenset({"hair_colour", "upper_colour", "lower_colour", "shoes_colour"})


def phrase(attribute: str, value: str) -> str:
    """The words the texts use for `value` of `attribute` ("no hat", "a short skirt", "red")."""
    return ATTRIBUTES[attribute].phrase(value)


def bare(noun_phrase: str) -> str:
    """Drop a leading article: "a short skirt" -> "short skirt" (to put adjectives in front)."""
    for article in ("a ", "an "):
        if noun_phrase.startswith(article):
            return noun_phrase[len(article) :]
    return noun_phrase


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def clothes_differ(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Visibly other clothes: another top (type or colour) and other bottoms (type or colour)."""
    top = a["upper_type"] != b["upper_type"] or a["upper_colour"] != b["upper_colour"]
    bottoms = a["lower_type"] != b["lower_type"] or a["lower_colour"] != b["lower_colour"]
    return top and bottoms


def attribute_tuple(attributes: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(attributes[name] for name in ATTRIBUTE_NAMES)

"""The words of instruction samples: prompts rendered into content parts, captions, attribute lists, answers.

Prompt templates (`prompts/*.txt`) mark where images go: `{image}` takes the next query image, `{gallery}` lists
the gallery as "Gallery image 1: <image>" lines; other `{names}` are text fields. Answers name gallery positions
the same way ("Gallery images 2 and 5 ..."), which `parse_answer_positions` reads back.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from ireid.core.prompts import read_prompt
from ireid.core.records import Record
from ireid.core.vocabulary.attributes import ATTRIBUTE_NAMES, ATTRIBUTES, article, phrase
from ireid.core.vocabulary.templates import adorned, statement

PACKAGE = "ireid.chatreid"
GALLERY_LINE = "Gallery image {position}: "
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
# How attribute annotations are labelled in lists ("top colour: red"); other vocabularies use their own names.
LABELS = {
    "gender": "gender",
    "age": "age",
    "hair_colour": "hair colour",
    "hair_length": "hair length",
    "upper_type": "top",
    "upper_colour": "top colour",
    "upper_pattern": "top pattern",
    "upper_logo": "logo on top",
    "lower_type": "bottoms",
    "lower_colour": "bottoms colour",
    "shoes_type": "shoes",
    "shoes_colour": "shoes colour",
    "bag": "bag",
    "hat": "hat",
    "glasses": "glasses",
    "held_item": "held item",
    "scene": "scene",
}
_PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")
_POSITIONS_RE = re.compile(r"\bgallery images? (\d+(?:(?:, | and )\d+)*)", re.IGNORECASE)
_ORDINAL_RE = re.compile(r"\bthe (" + "|".join(ORDINALS) + r") caption\b", re.IGNORECASE)
_PRONOUNS = {"man": ("He", "he", "his"), "woman": ("She", "she", "her")}


@cache
def prompt(name: str) -> str:
    return read_prompt(PACKAGE, f"{name}.txt")


class Turn:
    """One message's content parts, and the record keys of its images in order of appearance."""

    def __init__(self, keys: list[str]):
        self.keys = keys  # shared by every turn of a sample: image indices count across turns
        self.parts: list[dict[str, Any]] = []

    def text(self, value: str) -> None:
        if not value:
            return
        if self.parts and self.parts[-1]["type"] == "text":
            self.parts[-1]["text"] += value
        else:
            self.parts.append({"type": "text", "text": value})

    def image(self, key: str) -> None:
        self.parts.append({"type": "image", "index": len(self.keys)})
        self.keys.append(key)

    def render(self, template: str, images: Sequence[str] = (), gallery: Sequence[str] = (), **fields: str) -> None:
        """Fill `template`: each `{image}` takes the next of `images`, `{gallery}` lists `gallery`."""
        queue, position = list(images), 0
        for match in _PLACEHOLDER_RE.finditer(template):
            self.text(template[position : match.start()])
            position = match.end()
            name = match.group(1)
            if name == "image":
                if not queue:
                    raise ValueError(f"prompt has more {{image}} places than the {len(images)} images given")
                self.image(queue.pop(0))
            elif name == "gallery":  # one line per image, after the sentence that asks
                if self.parts and self.parts[-1]["type"] == "text":
                    self.parts[-1]["text"] = self.parts[-1]["text"].rstrip()
                for i, key in enumerate(gallery, 1):
                    self.text(("\n" if self.parts else "") + GALLERY_LINE.format(position=i))
                    self.image(key)
            elif name in fields:
                self.text(fields[name])
            else:
                raise ValueError(f"prompt field {{{name}}} has no value (given: {sorted(fields)})")
        self.text(template[position:])
        if queue:
            raise ValueError(f"{len(queue)} image(s) left over: the prompt has too few {{image}} places")
        if self.parts and self.parts[0]["type"] == "text":
            self.parts[0]["text"] = self.parts[0]["text"].lstrip()
        if self.parts and self.parts[-1]["type"] == "text":
            self.parts[-1]["text"] = self.parts[-1]["text"].rstrip()
        self.parts = [p for p in self.parts if p["type"] == "image" or p["text"]]


def conversation(user: Turn, answer: str) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": user.parts},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]


# ---------------------------------------------------------------------------------------------- answers


def positions_phrase(positions: Sequence[int]) -> str:
    """ "Gallery image 3", "Gallery images 2 and 5", "Gallery images 1, 4 and 6"."""
    if not positions:
        raise ValueError("an answer names at least one gallery position")
    if len(positions) == 1:
        return f"Gallery image {positions[0]}"
    head = ", ".join(str(p) for p in positions[:-1])
    return f"Gallery images {head} and {positions[-1]}"


def gallery_answer(positions: Sequence[int], singular: str, plural: str) -> str:
    """The positions as subject of `singular` / `plural` ("matches the description." / "match ...")."""
    return f"{positions_phrase(positions)} {singular if len(positions) == 1 else plural}"


def ordinal_caption(position: int) -> str:
    return f"The {ORDINALS[position - 1]} caption"


def parse_answer_positions(text: str) -> list[int]:
    """The 1-based positions an answer names ("Gallery images 2 and 5 ...", "The second caption"), ascending."""
    match = _POSITIONS_RE.search(text)
    if match:
        return sorted({int(n) for n in re.findall(r"\d+", match.group(1))})
    match = _ORDINAL_RE.search(text)
    if match:
        return [ORDINALS.index(match.group(1).lower()) + 1]
    return []


# ---------------------------------------------------------------------------------------------- attributes


def is_world_vocabulary(attributes: Mapping[str, str]) -> bool:
    """Whether the values come from the synthetic world's vocabulary (then they can be said in sentences)."""
    return bool(attributes) and all(
        name in ATTRIBUTES and value in ATTRIBUTES[name].values for name, value in attributes.items()
    )


def _ordered(attributes: Mapping[str, str]) -> list[str]:
    known = [name for name in ATTRIBUTE_NAMES if name in attributes]
    return known + sorted(name for name in attributes if name not in ATTRIBUTES)


def attribute_list(attributes: Mapping[str, str], names: Sequence[str] | None = None) -> str:
    """ "gender: man; top colour: red; ..." in vocabulary order (`names` restricts it); "none" when empty."""
    chosen = _ordered(attributes) if names is None else [n for n in _ordered(attributes) if n in names]
    if not chosen:
        return "none"
    return "; ".join(f"{LABELS.get(name, name.replace('_', ' '))}: {attributes[name]}" for name in chosen)


def attribute_caption(a: Mapping[str, str], rng: random.Random) -> str:
    """A detailed caption stating exactly the attribute values `a` holds (what one image shows), in the order of
    the attribute prompt: gender, age, hair, clothing, footwear, accessories, then the place."""
    subject, s, p = _PRONOUNS.get(a.get("gender", ""), ("The pedestrian", "the pedestrian", "their"))

    def shown(*names: str) -> list[str]:
        return [a[name] for name in names if name in a]

    who = " ".join([*shown("age"), a.get("gender", "person")])
    hair = " ".join(shown("hair_length", "hair_colour"))
    opening = rng.choice(("The pedestrian is {who}", "This is {who}", "The image shows {who}"))
    sentences = [opening.format(who=f"{article(who)} {who}") + (f" with {hair} hair." if hair else ".")]
    if "upper_type" in a:
        top = adorned(phrase("upper_type", a["upper_type"]), *shown("upper_pattern", "upper_colour"))
        top += {"yes": " with a logo on the front", "no": " with no logo"}.get(a.get("upper_logo", ""), "")
        template = rng.choice(("{S} is wearing {top}.", "On {p} upper body {s} wears {top}."))
        sentences.append(template.format(S=subject, s=s, p=p, top=top))
    if "lower_type" in a:
        lower = adorned(phrase("lower_type", a["lower_type"]), *shown("lower_colour"))
        sentences.append(f"Below the waist {s} wears {lower}.")
    if "shoes_type" in a:
        sentences.append(f"On {p} feet {s} wears {' '.join(shown('shoes_colour', 'shoes_type'))}.")
    accessories = [
        (name, template)
        for name, template in (
            ("bag", "{S} carries {v}."),
            ("held_item", "{S} is holding {v}."),
            ("hat", "{S} wears {v}."),
            ("glasses", "{S} wears {v}."),
        )
        if name in a
    ]
    sentences += [template.format(S=subject, v=phrase(name, a[name])) for name, template in accessories]
    if "scene" in a:
        sentences.append(f"{subject} is {phrase('scene', a['scene'])}.")
    return " ".join(sentences)


def caption(record: Record, rng: random.Random) -> str | None:
    """The stage-1 answer: a caption built from the image's attributes where they use the world's vocabulary,
    else the record's own text (captions, else fine description); None when it has neither."""
    if is_world_vocabulary(record.attributes):
        return attribute_caption(record.attributes, rng)
    texts = record.texts
    return texts[0] if texts else None


def attribute_query(attributes: Mapping[str, str], rng: random.Random) -> str:
    """A partial description from a few attribute values ("Their top was blue. The person carried a backpack.")."""
    if not is_world_vocabulary(attributes):
        return attribute_list(attributes)
    sentences = []
    for name in _ordered(attributes):
        if name == "gender":
            sentences.append(f"The pedestrian is a {attributes[name]}.")
        elif name == "age":
            sentences.append(f"The pedestrian looks {attributes[name]}.")
        else:
            sentences.append(statement({name: attributes[name]}, name, rng))
    return " ".join(sentences)

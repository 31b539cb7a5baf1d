"""What THI asks about gallery images, by key: does a text describe this image (Eq. 2), and what does the image
show (the human-centred VQA of Eq. 4).

`MLLMPerception` asks any `VisionLanguageModel` (the ChatReID model, an OpenAI-compatible server) with the
prompt files. `AnnotatedPerception` reads the images' annotations instead, so it uses ground truth: perfect eyes,
the upper bound of what THI can do with a retriever, as `oracle-lookforward` is for the dialogue strategies.
`NetPerception` reads the images with an attribute net (`ireid.core.attribute_net`) and no language model: learned
eyes that use no annotations of the gallery. `CachedPerception` remembers every answer, so a sweep over ξ and λ asks
each pair once.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Protocol

from ireid.core.answers import clean_answer
from ireid.core.attribute_net import AttributeNet
from ireid.core.images import ImageStore
from ireid.core.prompts import read_prompt
from ireid.core.protocols import VisionLanguageModel
from ireid.core.records import Record
from ireid.core.vocabulary.parse import parse_description
from ireid.core.vocabulary.templates import statement

PROMPTS = "ireid.icl"


class Perception(Protocol):
    """Answers THI's questions about gallery images named by key."""

    name: str
    uses_ground_truth: bool

    def locate(self, texts: Sequence[str], keys: Sequence[str]) -> list[bool | None]:
        """Eq. 2 for each (text, image): Yes (True), No (False), or None for a reply that is neither."""
        ...

    def describe(self, keys: Sequence[str]) -> list[list[str]]:
        """Eq. 4: the answers to the human-centred questions about each image, as sentences worth keeping."""
        ...


def anchor_prompt(text: str) -> str:
    """Eq. 2's question about a query text (`prompts/anchor_localisation.txt`), asked with the image shown first."""
    return read_prompt(PROMPTS, "anchor_localisation.txt").replace("{text}", text)


# Each question's topic in the synthetic vocabulary: the attributes an annotated answer states.
TOPIC_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "gender": ("gender",),
    "hair": ("hair_length", "hair_colour"),
    "upper": ("upper_type", "upper_colour"),
    "pattern": ("upper_pattern", "upper_logo"),
    "lower": ("lower_type", "lower_colour"),
    "shoes": ("shoes_type", "shoes_colour"),
    "glasses": ("glasses",),
    "hat": ("hat",),
    "bag": ("bag",),
    "held": ("held_item",),
    "scene": ("scene",),
}


def vqa_questions() -> list[tuple[str, str]]:
    """The human-centred questions of Eq. 4 with their topics, one "topic: question" per line of
    `prompts/vqa_questions.txt`; an unknown topic is an error naming the line."""
    questions = []
    for number, line in enumerate(read_prompt(PROMPTS, "vqa_questions.txt").splitlines(), start=2):
        if line.strip():
            topic, _, question = line.partition(":")
            if topic.strip() not in TOPIC_ATTRIBUTES or not question.strip():
                raise ValueError(f"prompts/vqa_questions.txt line {number}: expected '<topic>: <question>' with a "
                                 f"topic of {sorted(TOPIC_ATTRIBUTES)}, got {line!r}")  # fmt: skip
            questions.append((topic.strip(), question.strip()))
    return questions


def annotated_answer(attributes: Mapping[str, str], topic: str, rng: random.Random) -> str:
    """The answer perfect eyes give to a topic's question: one templated sentence per attribute the image has."""
    sentences = []
    for attribute in TOPIC_ATTRIBUTES[topic]:
        if attribute not in attributes:
            continue
        if attribute == "gender":
            sentences.append(f"The person is a {attributes['gender']}.")
        else:
            sentences.append(statement(attributes, attribute, rng))
    return " ".join(sentences)


class MLLMPerception:
    """Eq. 2 and Eq. 4 asked of a vision-language model, one image per prompt."""

    uses_ground_truth = False

    def __init__(
        self,
        model: VisionLanguageModel,
        images: ImageStore,
        name: str = "mllm",
        questions: Sequence[str] | None = None,
        max_new_tokens: int = 40,
    ):
        self.model = model
        self.images = images
        self.name = name
        self.questions = list(questions) if questions is not None else [q for _, q in vqa_questions()]
        if not self.questions:
            raise ValueError("THI needs at least one human-centred question")
        self.max_new_tokens = max_new_tokens

    def locate(self, texts: Sequence[str], keys: Sequence[str]) -> list[bool | None]:
        return self.model.judge([anchor_prompt(text) for text in texts], self.images.load(keys))

    def describe(self, keys: Sequence[str]) -> list[list[str]]:
        images = self.images.load(keys)
        per_image = len(self.questions)
        replies = self.model.reply(
            self.questions * len(keys),
            [image for image in images for _ in range(per_image)],
            self.max_new_tokens,
        )
        answers = [clean_answer(r) for r in replies]
        return [[a for a in answers[i * per_image : (i + 1) * per_image] if a] for i in range(len(keys))]


class AnnotatedPerception:
    """Perfect eyes (uses ground truth): answers from each gallery image's annotated attributes.

    A text describes an image when every attribute it states has the image's value (`parse_description` of the
    synthetic vocabulary); the VQA answers are `annotated_answer`s to the questions' topics.
    """

    name = "annotated"
    uses_ground_truth = True

    def __init__(self, records: Mapping[str, Record], seed: int = 0):
        self.records = records
        self.seed = seed
        self.topics = [topic for topic, _ in vqa_questions()]

    def _attributes(self, key: str) -> Mapping[str, str]:
        record = self.records.get(key)
        if record is None:
            raise KeyError(f"annotated perception: no gallery record with key {key!r}")
        if not record.attributes:
            raise ValueError(f"annotated perception: record {key!r} has no 'attributes' to read (synthetic world only)")
        return record.attributes

    def locate(self, texts: Sequence[str], keys: Sequence[str]) -> list[bool | None]:
        out: list[bool | None] = []
        for text, key in zip(texts, keys, strict=True):
            truth = self._attributes(key)
            out.append(all(truth.get(a) == v for a, v in parse_description(text).items()))
        return out

    def describe(self, keys: Sequence[str]) -> list[list[str]]:
        out = []
        for key in keys:
            truth = self._attributes(key)
            rng = random.Random(f"{self.seed}:{key}")
            answers = (annotated_answer(truth, topic, rng) for topic in self.topics)
            out.append([a for a in answers if a])
        return out


class NetPerception:
    """An attribute net as THI's eyes, without a language model.

    Eq. 2: a text describes an image unless the net gives one of the values the text states (`parse_description` of
    the synthetic vocabulary) a probability under `contradiction`: a confident mismatch, where a single misread
    attribute of a right image should not make it a No (a value the net never learnt is not judged). Eq. 4: each
    question's topic is answered with the templated sentences of the values the net reads with at least
    `min_confidence`, as perfect eyes would say them.
    """

    uses_ground_truth = False

    def __init__(
        self,
        net: AttributeNet,
        images: ImageStore,
        name: str = "attribute-net",
        contradiction: float = 0.1,
        min_confidence: float = 0.5,
        seed: int = 0,
    ):
        if not 0.0 <= contradiction < 1.0 or not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"contradiction must be in [0, 1) and min_confidence in [0, 1], got {contradiction}, "
                             f"{min_confidence}")  # fmt: skip
        self.net, self.images, self.name = net, images, name
        self.contradiction, self.min_confidence, self.seed = contradiction, min_confidence, seed
        self.topics = [topic for topic, _ in vqa_questions()]
        self._read: dict[str, dict[str, dict[str, float]]] = {}  # key -> attribute -> value -> probability

    def readings(self, keys: Sequence[str]) -> list[dict[str, dict[str, float]]]:
        """Each image's probability per value of each attribute; every image is read once."""
        missing = list(dict.fromkeys(k for k in keys if k not in self._read))
        if missing:
            tables = self.net.probabilities(self.images.load(missing))
            for i, key in enumerate(missing):
                self._read[key] = {name: dict(zip(values, tables[name][i].tolist(), strict=True))
                                   for name, values in self.net.vocabulary.items()}  # fmt: skip
        return [self._read[k] for k in keys]

    def locate(self, texts: Sequence[str], keys: Sequence[str]) -> list[bool | None]:
        out: list[bool | None] = []
        for text, read in zip(texts, self.readings(keys), strict=True):
            stated = parse_description(text).items()
            out.append(all(read[a][v] >= self.contradiction for a, v in stated if v in read.get(a, {})))
        return out

    def describe(self, keys: Sequence[str]) -> list[list[str]]:
        out = []
        for key, read in zip(keys, self.readings(keys), strict=True):
            seen = {name: max(p, key=p.get) for name, p in read.items() if max(p.values()) >= self.min_confidence}
            rng = random.Random(f"{self.seed}:{key}")
            answers = (annotated_answer(seen, topic, rng) for topic in self.topics)
            out.append([a for a in answers if a])
        return out


class CachedPerception:
    """Remembers every answer of another perception, and counts the questions it passed on."""

    def __init__(self, inner: Perception):
        self.inner = inner
        self.name = inner.name
        self.uses_ground_truth = inner.uses_ground_truth
        self._located: dict[tuple[str, str], bool | None] = {}
        self._described: dict[str, list[str]] = {}

    def locate(self, texts: Sequence[str], keys: Sequence[str]) -> list[bool | None]:
        pairs = list(zip(texts, keys, strict=True))
        missing = list(dict.fromkeys(p for p in pairs if p not in self._located))
        if missing:
            answers = self.inner.locate([t for t, _ in missing], [k for _, k in missing])
            self._located.update(zip(missing, answers, strict=True))
        return [self._located[p] for p in pairs]

    def describe(self, keys: Sequence[str]) -> list[list[str]]:
        missing = list(dict.fromkeys(k for k in keys if k not in self._described))
        if missing:
            self._described.update(zip(missing, self.inner.describe(missing), strict=True))
        return [self._described[k] for k in keys]

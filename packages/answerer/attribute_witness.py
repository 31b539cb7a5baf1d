"""A visual witness that reads the person's attributes off the image and answers in the world's sentences.

Its eyes are a trained retriever's frozen image encoder (a vision tower file, `PersonEncoder`); on top sits one
linear classifier per annotated attribute, fitted on a data set's training images and their `attributes`
(`fit_attribute_reader`: supervised, a minute on a CPU). To answer, it reads the asked attribute from the image and
states the value as the rule-based witness does. Where its most likely value is below `min_confidence` (0.5 by
default, kept in the file), it cannot tell from the image and answers "I don't know.", the visual answerer's third
rule.

Both the encoder and the heads travel in one file (`save` / `load`, weights-only), named as
`build_witness("visual:attributes:<file>")`. `visual:attribute-net:<file>` reads with an attribute net instead
(`NetReader`): a small CNN trained end to end to name attributes, which names them far more often.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image
from torch import Tensor, nn

from ireid.answerer.rule_based import RuleBasedWitness
from ireid.core.answers import UNKNOWN, answer_for_short_question
from ireid.core.attribute_labels import attribute_labels, attribute_loss
from ireid.core.attribute_net import AttributeNet
from ireid.core.checkpoints import read_format_file, save_torch_file
from ireid.core.person_vision import PersonEncoder, VisionTowerFile
from ireid.core.records import attribute_values
from ireid.core.vocabulary.parse import parse_question

FORMAT = "ireid.attribute-witness/1"


class AttributeHeads(nn.Module):
    """One linear classifier per attribute over the encoder's embedding."""

    def __init__(self, dim: int, vocabulary: Mapping[str, Sequence[str]]) -> None:
        super().__init__()
        self.vocabulary = {name: list(values) for name, values in vocabulary.items()}
        self.heads = nn.ModuleDict({name: nn.Linear(dim, len(values)) for name, values in self.vocabulary.items()})

    def forward(self, embeddings: Tensor) -> dict[str, Tensor]:
        return {name: head(embeddings) for name, head in self.heads.items()}


def most_likely(
    vocabulary: Mapping[str, Sequence[str]], probabilities: Mapping[str, Tensor]
) -> list[dict[str, tuple[str, float]]]:
    """Per image, each attribute's most likely value and its probability, from [N, V] probabilities per attribute."""
    readings: list[dict[str, tuple[str, float]]] = []
    for name, table in probabilities.items():
        best_p, best = table.max(-1)
        if not readings:
            readings = [{} for _ in range(len(table))]
        for i, (p, b) in enumerate(zip(best_p.tolist(), best.tolist(), strict=True)):
            readings[i][name] = (vocabulary[name][b], p)
    return readings


class Reader(Protocol):
    """What the witness reads with: each image's (value, probability) per attribute, and its confidence default."""

    min_confidence: float

    def read(self, images: Sequence[bytes | Image.Image]) -> list[dict[str, tuple[str, float]]]: ...


@dataclass
class NetReader:
    """An attribute net (`ireid.core.attribute_net`, `ireid attribute-net fit`) as the witness's eyes: trained end to
    end to name attributes, where the heads of `AttributeReader` sit on an encoder trained to match descriptions."""

    net: AttributeNet
    min_confidence: float = 0.5

    def read(self, images: Sequence[bytes | Image.Image]) -> list[dict[str, tuple[str, float]]]:
        return most_likely(self.net.vocabulary, self.net.probabilities(images))


@dataclass
class AttributeReader:
    """A frozen person encoder and its attribute heads; `read` gives each image's (value, probability) per
    attribute."""

    encoder: PersonEncoder
    heads: AttributeHeads
    tower: VisionTowerFile
    min_confidence: float = 0.5  # the witness's default: below it, "I don't know."

    @torch.no_grad()
    def read(self, images: Sequence[bytes | Image.Image]) -> list[dict[str, tuple[str, float]]]:
        logits = self.heads(self.encoder(images))
        return most_likely(self.heads.vocabulary, {name: scores.softmax(-1) for name, scores in logits.items()})

    def save(self, path: str | Path, details: Mapping[str, Any] | None = None) -> Path:
        tower = {"tower": self.tower.architecture(), "tower_state": self.tower.state,
                 "tower_projection": self.tower.projection}  # fmt: skip
        heads = {"vocabulary": self.heads.vocabulary, "heads": self.heads.state_dict()}
        extra = {"min_confidence": self.min_confidence, "details": dict(details or {})}
        return save_torch_file(path, {"format": FORMAT, **tower, **heads, **extra})

    @classmethod
    def load(cls, path: str | Path) -> AttributeReader:
        fields = ("tower", "tower_state", "tower_projection", "vocabulary", "heads")
        data = read_format_file(path, "file of `ireid witness fit-attributes`", FORMAT, fields)
        architecture = data["tower"]
        tower = VisionTowerFile(architecture["config"], tuple(architecture["image_hw"]), tuple(architecture["mean"]),
                                tuple(architecture["std"]), data["tower_state"], data["tower_projection"])  # fmt: skip
        encoder = PersonEncoder(tower, str(path))
        heads = AttributeHeads(encoder.projection.out_features, data["vocabulary"])
        try:
            heads.load_state_dict(data["heads"])
        except RuntimeError as error:
            raise ValueError(
                f"{path}: field 'heads' does not fit its vocabulary: {str(error).splitlines()[0]}"
            ) from None
        return cls(encoder, heads.eval(), tower, float(data.get("min_confidence", 0.5)))


def fit_attribute_reader(
    tower: VisionTowerFile, images: Sequence[bytes], attributes: Sequence[Mapping[str, str]], steps: int = 400,
    lr: float = 0.05, weight_decay: float = 1e-4, seed: int = 0,
) -> AttributeReader:  # fmt: skip
    """Heads fitted on the frozen encoder's embeddings of `images`, full batch (AdamW, cross-entropy per attribute
    over the images that show it); the vocabulary is every value the annotations use."""
    if len(images) != len(attributes) or not images:
        raise ValueError(f"{len(images)} images for {len(attributes)} annotations")
    vocabulary = attribute_values(attributes)
    if not vocabulary:
        raise ValueError("no image has annotated attributes to learn from")
    encoder = PersonEncoder(tower)
    embeddings = encoder(images)
    targets = attribute_labels(vocabulary, attributes)
    torch.manual_seed(seed)
    heads = AttributeHeads(embeddings.shape[1], vocabulary)
    optimiser = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        logits = heads(embeddings)
        loss = attribute_loss([logits[name] for name in vocabulary], targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return AttributeReader(encoder, heads.eval(), tower)


class AttributeWitness:
    """Answers from the attributes it reads off each image (module docstring). Its memories are images."""

    memory = "image"

    def __init__(self, reader: Reader, min_confidence: float | None = None, seed: int = 0) -> None:
        min_confidence = reader.min_confidence if min_confidence is None else min_confidence
        if not 0.0 <= min_confidence < 1.0:
            raise ValueError(f"min_confidence must lie in [0, 1), got {min_confidence}")
        self.reader = reader
        self.min_confidence = min_confidence
        self.rule = RuleBasedWitness(seed=seed)

    def answer(self, questions: Sequence[str], memories: Sequence[Image.Image]) -> list[str]:
        if len(questions) != len(memories):
            raise ValueError(f"{len(questions)} questions but {len(memories)} images")
        readings = self.reader.read(list(memories)) if questions else []
        answers = []
        for question, reading in zip(questions, readings, strict=True):
            parsed = None if answer_for_short_question(question) else parse_question(question)
            if parsed is None or parsed.attribute not in reading:
                answers.append(UNKNOWN)
                continue
            seen = {name: value for name, (value, p) in reading.items() if p >= self.min_confidence}
            if parsed.attribute not in seen:
                answers.append(UNKNOWN)  # the image cannot tell
                continue
            answers.append(self.rule.answer_values(question, seen))
        return answers

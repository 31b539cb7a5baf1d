"""How the parts meet: the interfaces a retriever, selector, questioner and witness implement.

Components never import each other; the dialogue loop composes whatever objects satisfy these
protocols (a trained model, a baseline heuristic, an HTTP client, a person at a keyboard).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image
from torch import Tensor

from ireid.core.answers import clean_answer


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str


@dataclass
class Dialogue:
    """The context D_t = {T, (Q_1, A_1), ..., (Q_t, A_t)} of one search."""

    initial: str
    turns: list[Turn] = field(default_factory=list)

    def ask(self, question: str, answer: str) -> None:
        self.turns.append(Turn(question, answer))

    def retrieval_text(self, with_questions: bool = False, separator: str = " ", clean: bool = True) -> str:
        """What the retriever reads: the initial description then the answers (and questions, if asked).

        Answers are cleaned by default (no "Yes,"/"No,"/option prefixes, no "I don't know", no cut-off
        sentence), as LLaVA-ReID does before appending them; a turn whose answer cleans to nothing adds
        nothing, not even its question.
        """
        parts = [self.initial]
        for turn in self.turns:
            answer = clean_answer(turn.answer) if clean else turn.answer
            if not answer.strip():
                continue
            if with_questions:
                parts.append(turn.question)
            parts.append(answer)
        return separator.join(p.strip() for p in parts if p.strip())

    @property
    def asked(self) -> list[str]:
        return [t.question for t in self.turns]


@runtime_checkable
class TextImageRetriever(Protocol):
    """Embeds texts and images into one space; outputs are L2-normalised [N, D] float tensors."""

    def encode_text(self, texts: Sequence[str]) -> Tensor: ...

    def encode_images(self, images: Sequence[Image.Image]) -> Tensor: ...


@runtime_checkable
class ContinuationEncoder(Protocol):
    """A retriever that encodes texts sharing a beginning with the beginning's work done once: the rows equal
    `encode_text` of every `f"{prefix} {ending}"`, prefix by prefix, each prefix's endings in order."""

    def encode_continuations(self, prefixes: Sequence[str], endings: Sequence[Sequence[str]]) -> Tensor: ...


@runtime_checkable
class CandidateSelector(Protocol):
    """Chooses which retrieved candidates the questioner looks at.

    `dialogue` is [B, D], `candidates` [B, K, D] with `mask` [B, K] (True = real candidate);
    returns [B, num_select] indices into K.
    """

    def select(self, dialogue: Tensor, candidates: Tensor, mask: Tensor, num_select: int) -> Tensor: ...


@runtime_checkable
class Questioner(Protocol):
    """Asks the next question of each dialogue, given the candidate images it was shown."""

    def ask(self, dialogues: Sequence[Dialogue], candidates: Sequence[Sequence[Image.Image]]) -> list[str]: ...


@runtime_checkable
class Witness(Protocol):
    """Answers questions from memory (the fine-grained description of the person they saw)."""

    def answer(self, questions: Sequence[str], memories: Sequence[str]) -> list[str]: ...


@runtime_checkable
class VisionLanguageModel(Protocol):
    """An MLLM asked about one image at a time (ICL's anchor localisation, VQA and aggregation; RDA's enrichment).

    `judge` answers Yes (True) or No (False) to each (prompt, image); None where the reply is neither, so a caller
    can count it. `reply` answers each prompt freely, about its image or, where the image is None, from text alone.
    """

    def judge(self, prompts: Sequence[str], images: Sequence[Image.Image]) -> list[bool | None]: ...

    def reply(self, prompts: Sequence[str], images: Sequence[Image.Image | None], max_new_tokens: int) -> list[str]: ...

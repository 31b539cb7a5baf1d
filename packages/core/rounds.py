"""One round of the dialogue loop as every part sees it: the context a question strategy gets, the strategy
interface, what the retriever reads of a dialogue, and LLaVA-ReID's candidate-pool schedule.

Shared by the interactive harness, the look-forward supervision of the questioner and the app, which meet here
instead of importing each other.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from ireid.core.gallery import Gallery
from ireid.core.protocols import Dialogue, TextImageRetriever
from ireid.core.records import Record


@dataclass
class RoundContext:
    """One round of a batch of searches.

    `queries` are the searched records: strategies may read their annotated question bank, and only
    strategies marked `uses_ground_truth` may read their answers or person ids. `scores` [B, N] are the
    current similarities of each dialogue to the gallery; `text_of` is what the retriever reads of a dialogue.
    """

    round: int  # 1-based
    queries: list[Record]
    dialogues: list[Dialogue]
    scores: Tensor
    gallery: Gallery
    retriever: TextImageRetriever
    text_of: Callable[[Dialogue], str]
    seed: int = 0

    def rng(self, index: int, salt: str = "") -> random.Random:
        """A stream per (seed, query, round): the same choices whatever the batching or resume point."""
        return random.Random(f"{self.seed}:{self.queries[index].key}:{self.round}:{salt}")


class QuestionStrategy(Protocol):
    """Chooses the next question of each dialogue; None when it has nothing left to ask."""

    name: str
    uses_ground_truth: bool

    def ask(self, ctx: RoundContext) -> list[str | None]: ...


def unused_questions(record: Record, dialogue: Dialogue) -> list[int]:
    """Indices of the record's annotated Q&A pairs whose question has not been asked yet."""
    asked = set(dialogue.asked)
    return [i for i, qa in enumerate(record.qas) if qa.question not in asked]


def retrieval_text_reader(with_questions: bool = False) -> Callable[[Dialogue], str]:
    """What the retriever reads of a dialogue: the initial description and the cleaned answers (and questions)."""

    def text_of(dialogue: Dialogue) -> str:
        return dialogue.retrieval_text(with_questions=with_questions)

    return text_of


def pool_size(round_index: int, budget: int = 200) -> int:
    """LLaVA-ReID's pool of ceil(budget / t) candidates at 1-based round t."""
    if round_index < 1:
        raise ValueError(f"rounds are 1-based, got {round_index}")
    return math.ceil(budget / round_index)

"""What a question strategy sees each round, and the interface every strategy implements."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

from ireid.core.protocols import Dialogue, TextImageRetriever
from ireid.core.records import Record
from ireid.interactive.gallery import Gallery


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

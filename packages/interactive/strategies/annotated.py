"""Strategies that ask from each record's annotated question bank: `random` and `oracle-lookforward`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ireid.core.answers import clean_answer
from ireid.core.metrics import target_ranks_from_scores
from ireid.core.protocols import Dialogue, Turn
from ireid.interactive.strategies.base import RoundContext, unused_questions


class RandomQuestions:
    """A random not-yet-asked question from the record's annotated bank (LLaVA-ReID Table 3, "random")."""

    name = "random"
    uses_ground_truth = False

    def ask(self, ctx: RoundContext) -> list[str | None]:
        questions: list[str | None] = []
        for i, (record, dialogue) in enumerate(zip(ctx.queries, ctx.dialogues, strict=True)):
            unused = unused_questions(record, dialogue)
            questions.append(record.qas[ctx.rng(i).choice(unused)].question if unused else None)
        return questions


@dataclass(frozen=True)
class LookAhead:
    """The best annotated pair for one dialogue: its index in `record.qas` and the target's rank with its answer."""

    qa_index: int
    rank: int


@torch.no_grad()
def look_forward_ranks(ctx: RoundContext, exclude_answers_in_text: bool = True) -> list[dict[int, int]]:
    """Per dialogue, the target's 1-based rank after each unused annotated answer: {qa index: rank}.

    Each candidate answer (cleaned as the retriever will read it) is appended to the dialogue and the text is
    encoded. Answers that clean to nothing, or whose text the dialogue already contains, are not tried. All
    candidates of the batch are encoded together; each dict lists its pairs in bank order.
    """
    texts: list[str] = []
    owners: list[tuple[int, int]] = []  # (dialogue index, qa index)
    for i, (record, dialogue) in enumerate(zip(ctx.queries, ctx.dialogues, strict=True)):
        current = ctx.text_of(dialogue)
        for j in unused_questions(record, dialogue):
            qa = record.qas[j]
            cleaned = clean_answer(qa.answer)
            if not cleaned or (exclude_answers_in_text and cleaned in current):
                continue
            texts.append(ctx.text_of(Dialogue(dialogue.initial, [*dialogue.turns, Turn(qa.question, qa.answer)])))
            owners.append((i, j))
    tried: list[dict[int, int]] = [{} for _ in ctx.queries]
    if not texts:
        return tried
    pids = torch.tensor([ctx.queries[i].pid for i, _ in owners], dtype=torch.long)
    for (i, j), rank in zip(owners, _ranks_in_chunks(ctx, texts, pids).tolist(), strict=True):
        tried[i][j] = rank
    return tried


def look_forward(ctx: RoundContext, exclude_answers_in_text: bool = True) -> list[LookAhead | None]:
    """One-step looking-forward (LLaVA-ReID Eq. 9): the pair whose answer ranks the target best (earliest on ties).

    None where no candidate is left.
    """
    return [
        LookAhead(*min(ranks.items(), key=lambda item: item[1])) if ranks else None
        for ranks in look_forward_ranks(ctx, exclude_answers_in_text)
    ]


def _ranks_in_chunks(ctx: RoundContext, texts: Sequence[str], pids: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    parts = []
    for start in range(0, len(texts), chunk):
        scores = ctx.gallery.scores(ctx.retriever.encode_text(texts[start : start + chunk]))
        parts.append(target_ranks_from_scores(scores, pids[start : start + chunk], ctx.gallery.pids))
    return torch.cat(parts)


class OracleLookForward:
    """Asks the annotated question whose answer most improves the target's rank: an upper bound (uses the target)."""

    name = "oracle-lookforward"
    uses_ground_truth = True

    def ask(self, ctx: RoundContext) -> list[str | None]:
        return [
            None if choice is None else record.qas[choice.qa_index].question
            for record, choice in zip(ctx.queries, look_forward(ctx), strict=True)
        ]

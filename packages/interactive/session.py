"""The dialogue loop: initial description, then rounds of question, answer and re-ranking, for a batch of searches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from ireid.core.gallery import Gallery
from ireid.core.metrics import QueryStats, per_query_stats
from ireid.core.protocols import Dialogue, TextImageRetriever, Witness
from ireid.core.records import Record
from ireid.core.rounds import QuestionStrategy, RoundContext


def witness_memory(record: Record) -> str:
    """What a text witness remembers: the fine-grained description (LLaVA-ReID's answerer memory)."""
    if not record.fine_description:
        raise ValueError(f"record {record.key!r}: {NO_FINE_DESCRIPTION}")
    return record.fine_description


NO_FINE_DESCRIPTION = (
    "no fine description for a text witness to remember; use a witness that looks at the target's image "
    "(--witness visual:<vision model>)"
)


@dataclass
class BatchResult:
    """Per round (0 = initial description) the stats of every query; optionally the T-ReID re-ranked ones."""

    keys: list[str]
    rounds: list[QueryStats]
    reranked: list[QueryStats] | None
    conversations: list[dict[str, Any]]


class Reranker(Protocol):
    """Re-ranks each round's similarities [B, N] of a batch, given what the retriever read of each dialogue: T-ReID
    averaging (LLaVA-ReID §5.3, `BaseModelAveraging`) or ICL's THI (`ireid.icl`). Scored beside the dialogue's own
    ranking, never fed back into the dialogue."""

    def __call__(self, dialogue_scores: Tensor, texts: Sequence[str]) -> Tensor: ...


@dataclass
class BaseModelAveraging:
    """T-ReID integration (LLaVA-ReID §5.3): average a base model's similarity for the initial description with
    the dialogue's similarity; `base_scores` [B, N] are the base model's, computed once per batch."""

    base_scores: Tensor
    weight: float = 0.5

    def __call__(self, dialogue_scores: Tensor, texts: Sequence[str] = ()) -> Tensor:
        return self.weight * self.base_scores + (1 - self.weight) * dialogue_scores


@torch.no_grad()
def run_batch(
    strategy: QuestionStrategy,
    queries: Sequence[Record],
    gallery: Gallery,
    retriever: TextImageRetriever,
    witness: Witness,
    rounds: int,
    text_of: Callable[[Dialogue], str],
    seed: int = 0,
    reranker: Reranker | None = None,
    memory_of: Callable[[Record], Any] = witness_memory,
) -> BatchResult:
    """Run `rounds` rounds for a batch of searches; only dialogues that got a question are re-encoded.

    `memory_of` gives what the witness remembers of each query's person: the fine description for a text witness,
    an image for a visual one (`ireid.interactive.witness_views`)."""
    queries = list(queries)
    dialogues = [Dialogue(initial=q.initial_description) for q in queries]
    memories = [memory_of(q) for q in queries]
    pids = torch.tensor([q.pid for q in queries], dtype=torch.long)
    scores = gallery.scores(retriever.encode_text([text_of(d) for d in dialogues]))
    per_round = [per_query_stats(scores, pids, gallery.pids)]
    reranked = (
        [per_query_stats(reranker(scores, [text_of(d) for d in dialogues]), pids, gallery.pids)] if reranker else None
    )
    logs: list[list[dict[str, Any]]] = [[] for _ in queries]
    for t in range(1, rounds + 1):
        ctx = RoundContext(t, queries, dialogues, scores, gallery, retriever, text_of, seed)
        questions = strategy.ask(ctx)
        asked = [i for i, q in enumerate(questions) if q]
        if asked:
            answers = witness.answer([questions[i] for i in asked], [memories[i] for i in asked])
            for i, answer in zip(asked, answers, strict=True):
                dialogues[i].ask(questions[i], answer)
            scores = scores.clone()
            scores[asked] = gallery.scores(retriever.encode_text([text_of(dialogues[i]) for i in asked]))
        stats = per_query_stats(scores, pids, gallery.pids)
        per_round.append(stats)
        if reranked is not None and reranker is not None:
            reranked.append(per_query_stats(reranker(scores, [text_of(d) for d in dialogues]), pids, gallery.pids))
        for i in asked:
            turn = dialogues[i].turns[-1]
            logs[i].append(
                {"round": t, "question": turn.question, "answer": turn.answer, "rank": int(stats.first_rank[i])}
            )
    conversations = [
        {
            "key": q.key,
            "pid": q.pid,
            "strategy": strategy.name,
            "initial": q.initial_description,
            "turns": logs[i],
            "ranks": [int(s.first_rank[i]) for s in per_round],
        }
        for i, q in enumerate(queries)
    ]
    return BatchResult([q.key for q in queries], per_round, reranked, conversations)

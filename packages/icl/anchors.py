"""ICL's anchor localisation under Algorithm 1's round rules (§3.2, Eq. 2 and "Efficient Re-ranking").

Round k (1-based) asks whether the query describes the k-th candidate of the base ranking. Round 1 accepts the
top-1 as the anchor when the answer is Yes and the top-1 similarity is above ξ. A later round k accepts the k-th
candidate when every earlier answer was No, this one is Yes, and the top-1 similarity is at most ξ. So a query
whose top-1 is similar enough is only ever asked about its top-1, and a query whose top-1 is dissimilar but
judged a match gets no anchor (the retriever's top-1 is then neither trusted nor replaced). Rounds run over all
queries at once, as Algorithm 1's loops are ordered, so each round is one batch of model calls. A reply that is
neither Yes nor No counts as No and is counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ireid.icl.perception import Perception


@dataclass
class AnchorSearch:
    """Per query: the anchor's position in its candidate list (None: no interaction) and the answers asked."""

    anchors: list[int | None]
    answers: list[list[bool | None]]

    @property
    def calls(self) -> int:
        return sum(len(a) for a in self.answers)

    @property
    def unreadable(self) -> int:
        return sum(a is None for row in self.answers for a in row)


def locate_anchors(
    texts: Sequence[str],
    candidates: Sequence[Sequence[str]],
    top1_similarity: Sequence[float],
    perception: Perception,
    xi: float,
    rounds: int = 5,
) -> AnchorSearch:
    """Algorithm 1's anchor per query; `candidates` are each query's gallery keys in rank order (at least one)."""
    if rounds < 1:
        raise ValueError(f"THI needs at least one round, got {rounds}")
    if not len(texts) == len(candidates) == len(top1_similarity):
        raise ValueError(f"{len(texts)} texts, {len(candidates)} candidate lists, {len(top1_similarity)} similarities")
    anchors: list[int | None] = [None] * len(texts)
    answers: list[list[bool | None]] = [[] for _ in texts]
    searching = [i for i in range(len(texts)) if candidates[i]]
    for k in range(rounds):
        asked = [i for i in searching if k < len(candidates[i])]
        if not asked:
            break
        replies = perception.locate([texts[i] for i in asked], [candidates[i][k] for i in asked])
        for i, reply in zip(asked, replies, strict=True):
            answers[i].append(reply)
            similar = top1_similarity[i] > xi
            if reply is True and (k == 0) == similar:
                anchors[i] = k
        # Only dissimilar top-1s whose every answer so far was No go on to the next candidate.
        searching = [i for i in asked if top1_similarity[i] <= xi and answers[i][-1] is not True]
    return AnchorSearch(anchors, answers)

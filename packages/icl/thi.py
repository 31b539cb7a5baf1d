"""ICL's test-time human-centred interaction (THI, §3.2 and Algorithm 1) over any retriever's ranking.

For each text query: find the anchor among the top candidates (`anchors.py`, Eq. 2 under the round rules), ask
the human-centred questions about the anchor image (Eq. 4), merge the query and the answers into one query
(Eq. 5), encode it with the same retriever and blend its similarities with the base ones (`rerank.py`, Eq. 6).
Everything that is asked is counted: the model calls per query, the queries that interacted, and every fallback
to the base ranking (an unreadable Yes/No reply counts as No; an empty or overlong merged query keeps the base
ranking).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ireid.core.answers import clean_answer
from ireid.core.prompts import read_prompt
from ireid.core.protocols import VisionLanguageModel
from ireid.icl.anchors import locate_anchors
from ireid.icl.perception import PROMPTS, Perception
from ireid.icl.rerank import thi_scores

AGGREGATIONS = ("mllm", "join")
XI_SCALES = ("value", "quantile")
Aggregator = Callable[[Sequence[str], Sequence[Sequence[str]]], list[str]]


@dataclass(frozen=True)
class THISettings:
    """The paper's defaults: K = 5 rounds, ξ = 0.5 (0.5-0.6), λ = 0.8."""

    rounds: int = 5
    xi: float = 0.5
    xi_from: str = "value"  # value: ξ is a cosine | quantile: ξ is that quantile of the queries' top-1 similarities
    lam: float = 0.8
    aggregation: str = "mllm"  # mllm: Eq. 5 | join: the query and the new answer sentences, within max_words
    max_words: int = 60  # the merged query must fit the text encoder (CLIP reads 77 tokens)
    max_new_tokens: int = 96  # the merged query's generation limit

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"THI setting 'rounds': must be at least 1, got {self.rounds}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"THI setting 'lam': λ must lie in [0, 1], got {self.lam}")
        if self.xi_from not in XI_SCALES:
            raise ValueError(f"THI setting 'xi_from': {self.xi_from!r} is not one of {XI_SCALES}")
        if self.xi_from == "quantile" and not 0.0 <= self.xi <= 1.0:
            raise ValueError(f"THI setting 'xi': a quantile must lie in [0, 1], got {self.xi}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"THI setting 'aggregation': {self.aggregation!r} is not one of {AGGREGATIONS}")
        if self.max_words < 1:
            raise ValueError(f"THI setting 'max_words': must be at least 1, got {self.max_words}")


def _words(text: str) -> int:
    return len(text.split())


def join_answers(query: str, answers: Sequence[str], max_words: int) -> str:
    """The concatenation Eq. 5 replaces: the query, then each answer sentence it does not already hold, as long as
    the whole stays within `max_words` (for models that cannot write the merged query)."""
    merged = query.strip()
    for answer in answers:
        sentence = clean_answer(answer)
        if sentence and sentence.lower() not in merged.lower() and _words(merged) + _words(sentence) <= max_words:
            merged = f"{merged} {sentence}"
    return merged


class MLLMAggregator:
    """Eq. 5: the model merges the query and the answers (`prompts/aggregation.txt`), from text alone."""

    def __init__(self, model: VisionLanguageModel, max_words: int, max_new_tokens: int):
        self.model = model
        self.max_words = max_words
        self.max_new_tokens = max_new_tokens
        self.template = read_prompt(PROMPTS, "aggregation.txt")
        self._cache: dict[tuple[str, tuple[str, ...]], str] = {}

    def __call__(self, queries: Sequence[str], answers: Sequence[Sequence[str]]) -> list[str]:
        items = [(q, tuple(a)) for q, a in zip(queries, answers, strict=True)]
        missing = list(dict.fromkeys(item for item in items if item not in self._cache))
        if missing:
            prompts = [
                self.template.replace("{max_words}", str(self.max_words))
                .replace("{query}", q)
                .replace("{answers}", "\n".join(a))
                for q, a in missing
            ]
            replies = self.model.reply(prompts, [None] * len(prompts), self.max_new_tokens)
            self._cache.update(zip(missing, (" ".join(r.split()) for r in replies), strict=True))
        return [self._cache[item] for item in items]


@dataclass
class THIResult:
    """The re-ranked similarities and what it took.

    `anchors` [B]: each query's anchor as a gallery index (−1: no interaction); `refined` [M, N]: the merged
    queries' similarities, one row per anchored query in order, so λ can be swept without asking again.
    """

    scores: Tensor
    anchors: Tensor
    refined: Tensor
    merged: list[str | None]
    xi: float = 0.0  # the threshold applied, a cosine
    counts: dict[str, int] = field(default_factory=dict)

    def with_lambda(self, base: Tensor, lam: float) -> Tensor:
        return thi_scores(base, self.refined, self.anchors, lam)


class THI:
    """Re-ranks a retriever's similarities for text queries by talking to a perception (an MLLM or the annotations)."""

    def __init__(
        self,
        perception: Perception,
        encode_text: Callable[[Sequence[str]], Tensor],
        settings: THISettings | None = None,
        aggregator: Aggregator | None = None,
    ):
        self.perception = perception
        self.encode_text = encode_text
        self.settings = settings or THISettings()
        if self.settings.aggregation == "mllm" and aggregator is None:
            raise ValueError("THI aggregation 'mllm' needs a vision-language model to merge the query (Eq. 5)")
        self.aggregator = aggregator

    def _merge(self, queries: list[str], answers: list[list[str]]) -> list[str]:
        s = self.settings
        if s.aggregation == "join" or self.aggregator is None:
            return [join_answers(q, a, s.max_words) for q, a in zip(queries, answers, strict=True)]
        return self.aggregator(queries, answers)

    @torch.no_grad()
    def rerank(self, texts: Sequence[str], base: Tensor, keys: Sequence[str], embeddings: Tensor) -> THIResult:
        """`base` [B, N]: the queries' similarities to the gallery of `keys` and L2-normalised `embeddings` [N, D]."""
        s = self.settings
        texts = list(texts)
        if base.shape != (len(texts), len(keys)):
            shape = list(base.shape)
            raise ValueError(f"base similarities of shape {shape} for {len(texts)} queries and {len(keys)} images")
        depth = min(s.rounds, len(keys))
        top_scores, top = torch.topk(base.float(), depth, dim=1)
        top1 = top_scores[:, 0]
        xi = s.xi if s.xi_from == "value" or not len(texts) else float(top1.quantile(s.xi))
        candidates = [[keys[j] for j in row] for row in top.tolist()]
        search = locate_anchors(texts, candidates, top1.tolist(), self.perception, xi, s.rounds)
        anchored = [i for i, a in enumerate(search.anchors) if a is not None]
        anchor_index = {i: int(top[i, search.anchors[i]]) for i in anchored}  # type: ignore[index]
        descriptions = self.perception.describe([keys[anchor_index[i]] for i in anchored]) if anchored else []
        merged_all = self._merge([texts[i] for i in anchored], descriptions) if anchored else []
        counts = {
            "queries": len(texts),
            "anchored": len(anchored),
            "locate_calls": search.calls,
            "unreadable_replies": search.unreadable,
            "described_images": len(anchored),
            "aggregation_calls": len(anchored) if s.aggregation == "mllm" else 0,
            "empty_merged_queries": 0,
            "overlong_merged_queries": 0,
        }
        kept, merged = [], [None] * len(texts)
        for i, text in zip(anchored, merged_all, strict=True):
            if not text.strip():
                counts["empty_merged_queries"] += 1
            elif _words(text) > s.max_words:
                counts["overlong_merged_queries"] += 1
            else:
                kept.append(i)
                merged[i] = text
        counts["interacted"] = len(kept)
        anchors = torch.full((len(texts),), -1, dtype=torch.long)
        for i in kept:
            anchors[i] = anchor_index[i]
        if kept:
            refined = self.encode_text([merged[i] for i in kept]).float() @ embeddings.float().T  # type: ignore[misc]
        else:
            refined = torch.zeros(0, len(keys))
        return THIResult(thi_scores(base, refined, anchors, s.lam), anchors, refined, merged, xi, counts)


class THIReranker:
    """THI as the interactive harness's re-ranker: each round's dialogue text is the query, the gallery fixed."""

    def __init__(self, thi: THI, keys: Sequence[str], embeddings: Tensor):
        self.thi = thi
        self.keys = list(keys)
        self.embeddings = embeddings

    def __call__(self, dialogue_scores: Tensor, texts: Sequence[str]) -> Tensor:
        return self.thi.rerank(texts, dialogue_scores, self.keys, self.embeddings).scores

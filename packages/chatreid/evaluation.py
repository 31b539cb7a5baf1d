"""ChatReID evaluation (paper §4.1): a baseline retriever filters the gallery, the VLM ranks what is left.

For each query:
1. Filter: a `TextImageRetriever` embeds the query (image or text) and the gallery; the counted gallery images
   whose cosine similarity to the query is above τ are kept, most similar first, at most `max_candidates` of them
   (the cap bounds the model calls per query, since the paper gives no gallery size; the kept count and the share
   of queries whose person survived the filter are reported, so τ can be tuned for a retriever).
2. Best choice, turn by turn: each kept image is paired with the query in a one-to-one matching question
   (non-overlapping: every image is asked about once) and scored by the model's answer confidence, P(Yes) against
   P(No) of its first answer token. Kept images are ranked by that confidence (ties: by similarity).
3. Metrics: the ranked list is the kept images in the model's order, then the remaining counted images in the
   retriever's order; a match the filter dropped still counts, late. The retriever-only baseline ranks the SAME
   kept images in its own order, followed by the same remainder, so the two differ only inside the filtered
   gallery. mAP and Rank-1 (CMC) come from `ireid.core.metrics`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from PIL import Image
from torch import Tensor

from ireid.chatreid.eval_tasks import Query, TaskData
from ireid.core.metrics import QueryStats, per_query_stats
from ireid.core.protocols import TextImageRetriever

REPORTED_KS = (1, 5, 10)


class MatchScorer(Protocol):
    """Confidence in [0, 1] that each candidate image shows the query's person (`ChatReID` is one)."""

    def match_confidence(self, task: str, query: Image.Image | str, candidates: Sequence[Image.Image]) -> Tensor: ...


class ImageSource(Protocol):
    """Decoded images by record key (`ireid.core.images.ImageStore` is one)."""

    def load(self, keys: Sequence[str]) -> list[Image.Image]: ...


def filter_gallery(similarity: Tensor, counted: Tensor, tau: float, max_candidates: int) -> Tensor:
    """Indices of the counted gallery images with similarity > τ, most similar first, at most `max_candidates`."""
    if max_candidates < 1:
        raise ValueError(f"max_candidates must be at least 1, got {max_candidates}")
    keep = (counted & (similarity > tau)).nonzero().flatten()
    order = torch.argsort(similarity[keep], descending=True, stable=True)
    return keep[order][:max_candidates]


def retriever_order(similarity: Tensor, counted: Tensor) -> Tensor:
    """The counted gallery images by descending similarity (ties by gallery order)."""
    indices = counted.nonzero().flatten()
    return indices[torch.argsort(similarity[indices], descending=True, stable=True)]


def model_order(similarity: Tensor, counted: Tensor, candidates: Tensor, confidence: Tensor) -> Tensor:
    """Candidates by descending confidence (ties by similarity, then gallery order), then the other counted
    images in the retriever's order."""
    if confidence.shape != candidates.shape:
        raise ValueError(f"{candidates.numel()} candidates but {confidence.numel()} confidences")
    by_similarity = torch.argsort(similarity[candidates], descending=True, stable=True)
    candidates, confidence = candidates[by_similarity], confidence[by_similarity]
    ranked = candidates[torch.argsort(confidence, descending=True, stable=True)]
    rest = retriever_order(similarity, counted)
    rest = rest[~torch.isin(rest, candidates)]
    return torch.cat([ranked, rest])


def order_stats(order: Tensor, gallery_pids: Tensor, query_pid: int) -> QueryStats:
    """Rank, AP and INP of one query from its ranked list of gallery indices, through `ireid.core.metrics`."""
    scores = torch.arange(order.numel(), 0, -1, dtype=torch.float32)[None]
    return per_query_stats(scores, torch.tensor([query_pid]), gallery_pids[order])


@dataclass
class TaskResult:
    """One task's numbers (percent): the model re-ranking the filtered gallery and the retriever alone."""

    task: str
    queries: int
    dropped_queries: int
    gallery: int
    tau: float
    max_candidates: int
    mean_candidates: float
    filter_recall: float  # % of queries with a match among the kept images
    model: dict[str, float]
    baseline: dict[str, float]
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _encode_images(retriever: TextImageRetriever, images: ImageSource, keys: Sequence[str], batch: int) -> Tensor:
    parts = [retriever.encode_images(images.load(keys[i : i + batch])) for i in range(0, len(keys), batch)]
    return torch.cat(parts).float()


def _encode_queries(retriever: TextImageRetriever, images: ImageSource, queries: Sequence[Query], batch: int) -> Tensor:
    if all(q.is_text for q in queries):
        texts = [q.text or "" for q in queries]
        return torch.cat([retriever.encode_text(texts[i : i + batch]) for i in range(0, len(texts), batch)]).float()
    return _encode_images(retriever, images, [q.key for q in queries], batch)


def evaluate_task(
    data: TaskData,
    images: ImageSource,
    retriever: TextImageRetriever,
    scorer: MatchScorer,
    *,
    tau: float = 0.0,
    max_candidates: int = 20,
    encode_batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> TaskResult:
    """Filter with the retriever, rank the kept images by the scorer's confidence, score both rankings."""
    started = time.perf_counter()
    gallery_feats = _encode_images(retriever, images, [r.key for r in data.gallery], encode_batch)
    query_feats = _encode_queries(retriever, images, data.queries, encode_batch)
    model_stats, baseline_stats, kept, recalled = [], [], [], 0
    for i, query in enumerate(data.queries):
        similarity = gallery_feats @ query_feats[i]
        counted = data.counted(query)
        candidates = filter_gallery(similarity, counted, tau, max_candidates)
        kept.append(candidates.numel())
        recalled += bool((data.gallery_pids[candidates] == query.pid).any())
        if candidates.numel():
            shown = images.load([data.gallery[j].key for j in candidates.tolist()])
            query_input = query.text if query.is_text else images.load([query.key])[0]
            confidence = scorer.match_confidence(data.task, query_input, shown).float().cpu()
        else:
            confidence = torch.zeros(0)
        model_stats.append(
            order_stats(model_order(similarity, counted, candidates, confidence), data.gallery_pids, query.pid)
        )
        baseline_stats.append(order_stats(retriever_order(similarity, counted), data.gallery_pids, query.pid))
        if progress is not None:
            progress(i + 1, len(data.queries))
    return TaskResult(
        task=data.task,
        queries=len(data.queries),
        dropped_queries=data.dropped_queries,
        gallery=len(data.gallery),
        tau=tau,
        max_candidates=max_candidates,
        mean_candidates=sum(kept) / len(kept),
        filter_recall=100.0 * recalled / len(data.queries),
        model=QueryStats.cat(model_stats).summarise(REPORTED_KS),
        baseline=QueryStats.cat(baseline_stats).summarise(REPORTED_KS),
        wall_s=time.perf_counter() - started,
    )


def format_table(result: TaskResult, model_name: str = "ChatReID", baseline_name: str = "retriever only") -> str:
    """A paper-style table (Tables 1–3, 5): mAP and Rank-1 of the model and the baseline on the same galleries."""
    rows = [(model_name, result.model), (f"{baseline_name} (filter)", result.baseline)]
    width = max(len(name) for name, _ in rows) + 2
    lines = [
        f"{result.task}: {result.queries} queries, gallery {result.gallery}, τ = {result.tau:g}, "
        f"{result.mean_candidates:.1f} kept per query (cap {result.max_candidates}), "
        f"person kept for {result.filter_recall:.1f} % of queries",
        f"{'Method':<{width}}{'mAP':>7}{'Rank-1':>9}",
    ]
    lines += [f"{name:<{width}}{m['mAP']:>7.1f}{m['R1']:>9.1f}" for name, m in rows]
    return "\n".join(lines)

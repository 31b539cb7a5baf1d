"""Retrieval metrics (CMC R@k, mAP, mINP) and the interactive Best Rank Integral (BRI).

Conventions shared by every function here:

* Ranks are 1-based. For each query the gallery is ordered by descending score; equal scores keep
  gallery order (the earlier gallery index ranks first). This is a stable descending sort, and the
  counting shortcut in `target_ranks_from_scores` reproduces it exactly.
* The score of a query and a gallery item is their dot product, computed in float32 whatever the
  input dtype. Features are expected to be L2-normalised already; nothing here normalises them,
  so a caller that passes raw features gets dot-product, not cosine, retrieval.
* Every query's person id must have at least one image in the gallery; otherwise AP and the rank
  of the target are undefined and a `ValueError` names the offending queries.
* Query features are processed in chunks of `chunk_size` rows, so at most a chunk_size × G score
  matrix (plus its sort order) exists at any time: a 10k × 100k evaluation never holds 10^9 scores.

CMC, mAP and mINP follow IRRA (utils/metrics.py `rank`); BRI follows LLaVA-ReID (utils/metrics.py
`interactive_metrics`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

DEFAULT_KS = (1, 5, 10)
_MAX_LISTED = 10


@dataclass(frozen=True)
class QueryStats:
    """What each query contributes to the summary metrics: three length-Q vectors, cheap to keep and concatenate."""

    first_rank: Tensor  # int64, 1-based rank of the first gallery item of the query's person
    ap: Tensor  # float64, average precision in [0, 1]
    inp: Tensor  # float64, inverse negative penalty: matches / rank of the last match

    @staticmethod
    def cat(parts: Sequence[QueryStats]) -> QueryStats:
        return QueryStats(
            first_rank=torch.cat([p.first_rank for p in parts]),
            ap=torch.cat([p.ap for p in parts]),
            inp=torch.cat([p.inp for p in parts]),
        )

    def summarise(self, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
        """Means over queries, in percent: `R{k}` for each k, `mAP` and `mINP`."""
        if self.first_rank.numel() == 0:
            raise ValueError("no queries to summarise")
        out = {f"R{k}": 100.0 * (self.first_rank <= k).double().mean().item() for k in _check_ks(ks)}
        out["mAP"] = 100.0 * self.ap.mean().item()
        out["mINP"] = 100.0 * self.inp.mean().item()
        return out


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive integers, got {ks!r}")
    return ks


def _check_pids(query_pids: Tensor, gallery_pids: Tensor, num_queries: int, num_gallery: int) -> None:
    """Shapes, and the rule that every query's person appears in the gallery (else its AP and rank are undefined)."""
    if query_pids.dim() != 1 or query_pids.numel() != num_queries:
        raise ValueError(f"query_pids must have shape [{num_queries}], got {list(query_pids.shape)}")
    if gallery_pids.dim() != 1 or gallery_pids.numel() != num_gallery:
        raise ValueError(f"gallery_pids must have shape [{num_gallery}], got {list(gallery_pids.shape)}")
    absent = (~torch.isin(query_pids, gallery_pids.to(query_pids.device))).nonzero().flatten()
    if absent.numel():
        idx = absent[:_MAX_LISTED].tolist()
        pids = query_pids[absent[:_MAX_LISTED]].tolist()
        more = f" and {absent.numel() - len(idx)} more" if absent.numel() > len(idx) else ""
        if len(idx) == 1 and not more:
            raise ValueError(f"query {idx[0]} (pid {pids[0]}) has no image of its person in the gallery")
        raise ValueError(f"queries {idx}{more} (pids {pids}) have no image of their person in the gallery")


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")


def _check_scores(scores: Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be a [Q, G] matrix, got shape {list(scores.shape)}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN, which has no place in a ranking")


def _check_features(query_feats: Tensor, gallery_feats: Tensor) -> None:
    """Shapes, and finiteness: finite features give NaN-free scores, so the score chunks need no further check."""
    if query_feats.dim() != 2 or gallery_feats.dim() != 2 or query_feats.shape[1] != gallery_feats.shape[1]:
        raise ValueError(
            f"features must be [Q, D] and [G, D], got {list(query_feats.shape)} and {list(gallery_feats.shape)}"
        )
    if not (torch.isfinite(query_feats).all() and torch.isfinite(gallery_feats).all()):
        raise ValueError("features contain NaN or infinity")


def _feature_score_chunks(query_feats: Tensor, gallery_feats: Tensor, chunk_size: int) -> Iterator[Tensor]:
    """Dot-product scores, `chunk_size` queries at a time, in float32 even for fp16/bf16 features."""
    gallery_t = gallery_feats.float().T
    for start in range(0, query_feats.shape[0], chunk_size):
        yield query_feats[start : start + chunk_size].float() @ gallery_t


def _row_chunks(scores: Tensor, chunk_size: int) -> Iterator[Tensor]:
    for start in range(0, scores.shape[0], chunk_size):
        yield scores[start : start + chunk_size].float()


def _stats(scores: Tensor, query_pids: Tensor, gallery_pids: Tensor) -> QueryStats:
    """Sort each row (stable, descending) and keep only the positions of the matches.

    The k-th match at 1-based position p contributes k / p to AP; INP is (number of matches) /
    (position of the last match). No cumulative sum over the whole gallery is materialised.
    """
    num_q = scores.shape[0]
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    is_match = torch.gather(gallery_pids[None, :] == query_pids[:, None], 1, order)
    del order
    rows, cols = is_match.nonzero(as_tuple=True)  # row-major: each query's match positions ascending
    positions = (cols + 1).double()
    num_matches = torch.bincount(rows, minlength=num_q)
    ends = num_matches.cumsum(0)
    starts = ends - num_matches
    hits_so_far = torch.arange(rows.numel(), device=scores.device) - starts[rows] + 1
    ap = torch.zeros(num_q, dtype=torch.float64, device=scores.device).index_add_(0, rows, hits_so_far / positions)
    return QueryStats(first_rank=cols[starts] + 1, ap=ap / num_matches, inp=num_matches / positions[ends - 1])


def _chunked_stats(chunks: Iterable[Tensor], query_pids: Tensor, gallery_pids: Tensor) -> QueryStats:
    parts, start = [], 0
    for scores in chunks:
        parts.append(_stats(scores, query_pids[start : start + scores.shape[0]], gallery_pids))
        start += scores.shape[0]
    return QueryStats.cat(parts)


@torch.no_grad()
def per_query_stats(scores_chunk: Tensor, query_pids_chunk: Tensor, gallery_pids: Tensor) -> QueryStats:
    """First-match rank, AP and INP of each query from its row of scores: the one place that sorts a gallery."""
    _check_scores(scores_chunk)
    query_pids_chunk = query_pids_chunk.to(scores_chunk.device)
    gallery_pids = gallery_pids.to(scores_chunk.device)
    _check_pids(query_pids_chunk, gallery_pids, *scores_chunk.shape)
    return _stats(scores_chunk.float(), query_pids_chunk, gallery_pids)


@torch.no_grad()
def retrieval_metrics(
    query_feats: Tensor,
    gallery_feats: Tensor,
    query_pids: Tensor,
    gallery_pids: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """R@k for each k in `ks` (keys `R1`, `R5`, ...), `mAP` and `mINP`, all in percent.

    Scores are dot products of the (expected L2-normalised) features in float32; only `chunk_size`
    queries are scored and ranked at a time.
    """
    ks = _check_ks(ks)
    _check_chunk_size(chunk_size)
    _check_features(query_feats, gallery_feats)
    query_pids, gallery_pids = query_pids.to(query_feats.device), gallery_pids.to(query_feats.device)
    _check_pids(query_pids, gallery_pids, query_feats.shape[0], gallery_feats.shape[0])
    chunks = _feature_score_chunks(query_feats, gallery_feats, chunk_size)
    return _chunked_stats(chunks, query_pids, gallery_pids).summarise(ks)


@torch.no_grad()
def metrics_from_scores(
    scores: Tensor,
    query_pids: Tensor,
    gallery_pids: Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    chunk_size: int = 1024,
) -> dict[str, float]:
    """The metrics of `retrieval_metrics` for a given [Q, G] score matrix (higher is better), e.g. after re-ranking."""
    ks = _check_ks(ks)
    _check_chunk_size(chunk_size)
    _check_scores(scores)
    query_pids, gallery_pids = query_pids.to(scores.device), gallery_pids.to(scores.device)
    _check_pids(query_pids, gallery_pids, *scores.shape)
    return _chunked_stats(_row_chunks(scores, chunk_size), query_pids, gallery_pids).summarise(ks)


def _pid_groups(gallery_pids: Tensor) -> tuple[Tensor, Tensor]:
    """Gallery pids sorted, and the gallery indices in that order: lets `_match_pairs` binary-search a person."""
    sorted_pids, order = torch.sort(gallery_pids)
    return sorted_pids, order


def _match_pairs(query_pids: Tensor, groups: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """(query row, gallery index) of every same-person pair, found in O(matches) rather than by a Q × G comparison."""
    sorted_pids, order = groups
    query_pids = query_pids.to(sorted_pids.dtype)
    lo = torch.searchsorted(sorted_pids, query_pids)
    counts = torch.searchsorted(sorted_pids, query_pids, right=True) - lo
    rows = torch.repeat_interleave(torch.arange(query_pids.numel(), device=order.device), counts)
    within = torch.arange(rows.numel(), device=order.device) - (counts.cumsum(0) - counts)[rows]
    return rows, order[lo[rows] + within]


def _target_ranks(scores: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """Rank of the first match by counting, not sorting.

    With b the best matching score of a query, rank = 1 + #(scores > b) + #(scores == b at a gallery
    index before the first match scoring b), which is the first match's position in the stable
    descending sort of `_stats`.
    """
    num_q, num_g = scores.shape
    match_scores = scores[rows, cols]
    best = torch.full((num_q,), float("-inf"), device=scores.device).scatter_reduce(0, rows, match_scores, "amax")
    at_best = match_scores == best[rows]
    first = torch.full((num_q,), num_g, device=scores.device).scatter_reduce(0, rows[at_best], cols[at_best], "amin")
    higher = (scores > best[:, None]).sum(dim=1)
    tie_rows, tie_cols = (scores == best[:, None]).nonzero(as_tuple=True)
    tied_before = torch.bincount(tie_rows[tie_cols < first[tie_rows]], minlength=num_q)
    return higher + tied_before + 1


@torch.no_grad()
def target_ranks_from_scores(scores: Tensor, query_pids: Tensor, gallery_pids: Tensor) -> Tensor:
    """1-based rank of the best-ranked gallery item of each query's person, as a LongTensor[Q].

    Called every dialogue round, so it counts instead of sorting; the result is identical to the
    first-match rank of `per_query_stats`, ties included.
    """
    _check_scores(scores)
    query_pids, gallery_pids = query_pids.to(scores.device), gallery_pids.to(scores.device)
    _check_pids(query_pids, gallery_pids, *scores.shape)
    return _target_ranks(scores.float(), *_match_pairs(query_pids, _pid_groups(gallery_pids)))


@torch.no_grad()
def target_ranks(
    query_feats: Tensor,
    gallery_feats: Tensor,
    query_pids: Tensor,
    gallery_pids: Tensor,
    chunk_size: int = 1024,
) -> Tensor:
    """`target_ranks_from_scores` on dot-product scores, `chunk_size` queries at a time; LongTensor[Q]."""
    _check_chunk_size(chunk_size)
    _check_features(query_feats, gallery_feats)
    query_pids, gallery_pids = query_pids.to(query_feats.device), gallery_pids.to(query_feats.device)
    _check_pids(query_pids, gallery_pids, query_feats.shape[0], gallery_feats.shape[0])
    groups = _pid_groups(gallery_pids)
    ranks, start = [], 0
    for scores in _feature_score_chunks(query_feats, gallery_feats, chunk_size):
        ranks.append(_target_ranks(scores, *_match_pairs(query_pids[start : start + scores.shape[0]], groups)))
        start += scores.shape[0]
    return torch.cat(ranks)


def _round_ranks(ranks: Tensor | np.ndarray) -> Tensor:
    ranks = torch.as_tensor(ranks)
    if ranks.dim() != 2 or ranks.shape[1] < 2:
        raise ValueError(f"ranks must be [Q, R+1] with at least one dialogue round, got shape {list(ranks.shape)}")
    if ranks.is_floating_point() and not torch.isfinite(ranks).all():
        raise ValueError("ranks must be finite")
    if (ranks < 1).any():
        raise ValueError("ranks are 1-based: every rank must be at least 1")
    return ranks


def running_min_ranks(ranks: Tensor | np.ndarray) -> Tensor:
    """Best rank reached so far after each round: cumulative minimum over the R+1 columns of a [Q, R+1] array."""
    return torch.cummin(_round_ranks(ranks), dim=1).values


def _bri_per_query(ranks: Tensor | np.ndarray) -> Tensor:
    """(1/R) · Σ_i (ln m_i + ln m_{i+1}) / 2 for each query, m being the running minimum rank (float64)."""
    log_best = running_min_ranks(ranks).double().log()
    return ((log_best[:, :-1] + log_best[:, 1:]) / 2).mean(dim=1)


def best_rank_integral(ranks: Tensor | np.ndarray) -> float:
    """Best Rank Integral (LLaVA-ReID): trapezoid-rule area under ln(best rank so far), per round, mean over queries.

    `ranks` is [Q, R+1]: the 1-based rank of each query's target after the initial description
    (column 0) and after each of R dialogue rounds. Lower is better; 0 means rank 1 from the start.
    LLaVA-ReID's `interactive_metrics` takes the transpose ([R+1, Q]). PlugIR's form, ln(rank + 1)
    with 0-based ranks, is the same quantity.
    """
    per_query = _bri_per_query(ranks)
    if per_query.numel() == 0:
        raise ValueError("no queries: ranks has shape [0, R+1]")
    return per_query.mean().item()


def _state_tensor(state: list[Tensor] | Tensor, what: str) -> Tensor:
    if (isinstance(state, list) and not state) or (isinstance(state, Tensor) and state.numel() == 0):
        raise ValueError(f"RetrievalMetrics has no {what}")
    return dim_zero_cat(state)


class RetrievalMetrics(Metric):
    """`retrieval_metrics` over queries and a gallery accumulated across batches and processes.

    Queries come through `update(feats, pids)`, gallery items through `update_gallery(feats, pids)`
    (or `update(..., gallery=True)`, which is what it calls, so torchmetrics' bookkeeping applies).
    All states are concatenated across processes in rank order, and gallery order decides ties, so
    a sharded gallery ranks as if unsharded when rank r holds the r-th contiguous slice. Every
    process must contribute at least one query and one gallery item before `compute()`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ks: Sequence[int] = DEFAULT_KS, chunk_size: int = 1024, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ks = _check_ks(ks)
        self.chunk_size = chunk_size
        for name in ("query_feats", "query_pids", "gallery_feats", "gallery_pids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, feats: Tensor, pids: Tensor, gallery: bool = False) -> None:
        """Add queries, or gallery items with `gallery=True`; features are kept in their dtype (fp16 stays small)."""
        if feats.dim() != 2 or pids.dim() != 1 or feats.shape[0] != pids.shape[0]:
            raise ValueError(f"expected feats [N, D] and pids [N], got {list(feats.shape)} and {list(pids.shape)}")
        side = "gallery" if gallery else "query"
        getattr(self, f"{side}_feats").append(feats.detach())
        getattr(self, f"{side}_pids").append(pids.detach())

    def update_gallery(self, feats: Tensor, pids: Tensor) -> None:
        self.update(feats, pids, gallery=True)

    def compute(self) -> dict[str, float]:
        return retrieval_metrics(
            _state_tensor(self.query_feats, "queries: call update(feats, pids)"),
            _state_tensor(self.gallery_feats, "gallery: call update_gallery(feats, pids)"),
            _state_tensor(self.query_pids, "query pids"),
            _state_tensor(self.gallery_pids, "gallery pids"),
            ks=self.ks,
            chunk_size=self.chunk_size,
        )


class BestRankIntegral(Metric):
    """`best_rank_integral` over batches and processes; keeps only a sum and a count, so syncing is cheap."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("bri_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_queries", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, ranks: Tensor) -> None:
        """`ranks` is [Q, R+1]: the target's 1-based rank after the initial description and each round."""
        per_query = _bri_per_query(ranks)
        self.bri_sum += per_query.sum().to(self.bri_sum.device)
        self.num_queries += per_query.numel()

    def compute(self) -> float:
        if self.num_queries.item() == 0:
            raise ValueError("BestRankIntegral has no queries: call update(ranks) first")
        return (self.bri_sum / self.num_queries).item()

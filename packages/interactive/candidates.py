"""Which retrieved images a strategy looks at: `top-k`, `k-means` or `uniform` over the top of the ranking.

LLaVA-ReID (§5.4, Table 3) compares these: top-k takes the best-scored images; k-means clusters the
top-K pool and takes the member nearest each centroid (PlugIR's representatives); uniform draws at random
from the pool. The pool shrinks with the round: K = ceil(200 / t) in LLaVA-ReID, top_n · (1 − (t − 1)/10) in
PlugIR (`shrinking_pool`).
"""

from __future__ import annotations

import random
from typing import Literal

import torch
from torch import Tensor

CandidateMethod = Literal["top-k", "k-means", "uniform"]
CANDIDATE_METHODS: tuple[str, ...] = ("top-k", "k-means", "uniform")


def shrinking_pool(round_index: int, top_n: int, clusters: int) -> int:
    """PlugIR's pool at 1-based round t: top_n · (1 − (t − 1)/10), never fewer than the `clusters` it is split into."""
    return max(clusters, round(top_n * (1 - (round_index - 1) / 10)))


def spherical_kmeans(points: Tensor, clusters: int, rng: random.Random, iterations: int = 20) -> tuple[Tensor, Tensor]:
    """Cosine k-means with k-means++ seeding: (assignment [P], centroids [C, D]) for L2-normalised points.

    Deterministic for the generator's state; stops early when assignments no longer change.
    """
    n = points.shape[0]
    clusters = min(clusters, n)
    first = rng.randrange(n)
    chosen = [first]
    distance = 1 - points @ points[first]
    for _ in range(1, clusters):
        weights = distance.clamp_min(0).tolist()
        if sum(weights) <= 0:
            chosen.append(next(i for i in range(n) if i not in chosen))
        else:
            chosen.append(rng.choices(range(n), weights=weights)[0])
        distance = torch.minimum(distance, 1 - points @ points[chosen[-1]])
    centroids = points[chosen].clone()
    assignment = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iterations):
        new_assignment = (points @ centroids.T).argmax(dim=1)
        if torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
        for c in range(clusters):
            members = points[assignment == c]
            if members.numel():
                centroids[c] = torch.nn.functional.normalize(members.mean(dim=0), dim=0)
    return assignment, centroids


def select_candidates(
    method: CandidateMethod,
    scores: Tensor,
    embeddings: Tensor,
    count: int,
    pool: int,
    rng: random.Random,
) -> list[int]:
    """`count` gallery indices for one query from its score row [N], best-ranked first.

    The pool is the top `pool` of the ranking (at least `count`); k-means returns, for each cluster, the
    member nearest its centroid.
    """
    if method not in CANDIDATE_METHODS:
        raise ValueError(f"unknown candidate method {method!r}; expected one of {', '.join(CANDIDATE_METHODS)}")
    pool = min(max(pool, count), scores.numel())
    top = torch.topk(scores.float(), pool).indices  # best first
    if method == "top-k":
        return top[:count].tolist()
    if method == "uniform":
        return [top[i].item() for i in sorted(rng.sample(range(pool), min(count, pool)))]
    points = embeddings[top].float()
    assignment, centroids = spherical_kmeans(points, count, rng)
    picks = []
    for c in range(centroids.shape[0]):
        members = (assignment == c).nonzero().flatten()
        if members.numel():
            nearest = members[(points[members] @ centroids[c]).argmax()]
            picks.append(int(nearest))
    return [top[i].item() for i in sorted(picks)]

"""Interactive evaluation of one strategy over many searches: batched, resumable, summarised per round.

Each finished batch is written atomically to `<out>/batches/NNNNN.json` (its query keys, the settings it was
computed with, per-round stats and conversations); a rerun loads finished batches instead of redoing them, after
checking they hold the same queries and settings. When every batch is done, `metrics.json` and
`conversations.jsonl` are written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ireid.core.gallery import Gallery
from ireid.core.metrics import QueryStats, best_rank_integral
from ireid.core.protocols import Dialogue, TextImageRetriever, Witness
from ireid.core.records import Record
from ireid.core.rounds import QuestionStrategy
from ireid.core.shards import atomic_write_bytes, atomic_write_json
from ireid.interactive.session import BatchResult, Reranker, run_batch, witness_memory


@dataclass
class StrategyResult:
    """Metrics after each round (index 0 = initial description) and the BRI, plus the T-ReID re-ranked ones."""

    name: str
    uses_ground_truth: bool
    rounds: list[dict[str, float]]
    bri: float
    reranked_rounds: list[dict[str, float]] | None = None
    reranked_bri: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StrategyResult:
        return cls(**d)


def _stats_to_json(stats: QueryStats) -> dict[str, list]:
    return {"first_rank": stats.first_rank.tolist(), "ap": stats.ap.tolist(), "inp": stats.inp.tolist()}


def _stats_from_json(d: dict[str, list]) -> QueryStats:
    return QueryStats(
        first_rank=torch.tensor(d["first_rank"], dtype=torch.long),
        ap=torch.tensor(d["ap"], dtype=torch.float64),
        inp=torch.tensor(d["inp"], dtype=torch.float64),
    )


def _save_batch(path: Path, result: BatchResult, settings: Mapping[str, Any]) -> None:
    payload = {
        "keys": result.keys,
        "settings": settings,
        "rounds": [_stats_to_json(s) for s in result.rounds],
        "reranked": None if result.reranked is None else [_stats_to_json(s) for s in result.reranked],
        "conversations": result.conversations,
    }
    atomic_write_json(path, payload)


def _load_batch(path: Path, keys: list[str], settings: Mapping[str, Any]) -> BatchResult | None:
    """A finished batch, or None when it was written for other queries or with other settings (a changed config,
    a retrained checkpoint path): then it is redone."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if payload.get("keys") != keys or payload.get("settings") != json.loads(json.dumps(settings)):
        return None
    reranked = payload.get("reranked")
    return BatchResult(
        keys=keys,
        rounds=[_stats_from_json(s) for s in payload["rounds"]],
        reranked=None if reranked is None else [_stats_from_json(s) for s in reranked],
        conversations=payload["conversations"],
    )


def _summarise(per_batch_rounds: list[list[QueryStats]]) -> tuple[list[dict[str, float]], float]:
    rounds = [QueryStats.cat([b[r] for b in per_batch_rounds]) for r in range(len(per_batch_rounds[0]))]
    ranks = torch.stack([s.first_rank for s in rounds], dim=1)
    return [s.summarise() for s in rounds], best_rank_integral(ranks)


def evaluate_strategy(
    strategy: QuestionStrategy,
    queries: Sequence[Record],
    gallery: Gallery,
    retriever: TextImageRetriever,
    witness: Witness,
    out_dir: Path,
    *,
    rounds: int,
    batch_size: int,
    text_of: Callable[[Dialogue], str],
    seed: int = 0,
    reranker_for: Callable[[Sequence[Record]], Reranker] | None = None,
    settings: Mapping[str, Any] | None = None,
    memory_of: Callable[[Record], Any] = witness_memory,
) -> StrategyResult:
    """Run `strategy` over every query in batches, resuming from `out_dir`, and summarise.

    `settings` (JSON-able) name what the results depend on beyond the queries; finished batches computed with
    other settings are redone.
    """
    settings = dict(settings or {})
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    queries = list(queries)
    batches = [queries[i : i + batch_size] for i in range(0, len(queries), batch_size)]
    results: list[BatchResult] = []
    for index, batch in enumerate(tqdm(batches, desc=strategy.name, unit="batch", leave=False)):
        path = out_dir / "batches" / f"{index:05d}.json"
        keys = [q.key for q in batch]
        result = _load_batch(path, keys, settings) if path.exists() else None
        if result is None:
            reranker = reranker_for(batch) if reranker_for else None
            result = run_batch(strategy, batch, gallery, retriever, witness, rounds, text_of, seed, reranker, memory_of)
            _save_batch(path, result, settings)
        results.append(result)
    summary, bri = _summarise([r.rounds for r in results])
    outcome = StrategyResult(strategy.name, strategy.uses_ground_truth, summary, bri)
    if all(r.reranked is not None for r in results):
        outcome.reranked_rounds, outcome.reranked_bri = _summarise([r.reranked for r in results])  # type: ignore[misc]
    lines = "".join(json.dumps(c) + "\n" for r in results for c in r.conversations)
    atomic_write_bytes(out_dir / "conversations.jsonl", lines.encode())
    atomic_write_json(out_dir / "metrics.json", outcome.to_dict())
    return outcome

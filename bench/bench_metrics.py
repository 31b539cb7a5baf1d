"""Benchmark of `ireid.core.metrics` on a 10k-query × 100k-gallery, 512-d fp16 problem.

The chunked functions never hold the whole 10^9-entry score matrix, so the full-size run reports
their time and the process's peak memory. Agreement is checked on a smaller problem against a
brute-force full-matrix reference (IRRA-style: whole score matrix, full sort, cumulative sums),
which would not fit at full size.

    .venv/bin/python bench/bench_metrics.py --out bench/results/metrics.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ireid.core.metrics import retrieval_metrics, target_ranks

KS = (1, 5, 10)


def make_problem(num_q: int, num_g: int, dim: int, per_person: int, noise: float, seed: int):
    """Persons are random centres; images and descriptions are noisy copies, L2-normalised and stored as fp16."""
    gen = torch.Generator().manual_seed(seed)
    num_persons = max(1, num_g // per_person)
    centres = torch.randn(num_persons, dim, generator=gen)
    gallery_pids = (torch.arange(num_g) % num_persons)[torch.randperm(num_g, generator=gen)]
    query_pids = gallery_pids[torch.randint(0, num_g, (num_q,), generator=gen)]

    def embed(pids: torch.Tensor) -> torch.Tensor:
        feats = centres[pids] + noise * torch.randn(pids.numel(), dim, generator=gen)
        return F.normalize(feats, dim=1).half()

    return embed(query_pids), embed(gallery_pids), query_pids, gallery_pids


def full_matrix_reference(query_feats, gallery_feats, query_pids, gallery_pids, ks: Sequence[int]):
    """The whole Q × G matrix at once, sorted and cumulated: simple, and only affordable on small problems."""
    scores = query_feats.float() @ gallery_feats.float().T
    order = torch.argsort(scores, dim=1, descending=True, stable=True)
    matches = gallery_pids[order] == query_pids[:, None]
    hits = matches.cumsum(dim=1)
    num_rel = matches.sum(dim=1)
    positions = torch.arange(1, scores.shape[1] + 1, dtype=torch.float64)
    ap = (hits / positions * matches).sum(dim=1) / num_rel
    last = scores.shape[1] - matches.flip(1).int().argmax(dim=1)
    out = {f"R{k}": 100.0 * (hits[:, k - 1] > 0).double().mean().item() for k in ks}
    out["mAP"] = 100.0 * ap.mean().item()
    out["mINP"] = 100.0 * (num_rel.double() / last).mean().item()
    first = matches.int().argmax(dim=1) + 1
    return out, first


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def check_against_reference(args: argparse.Namespace) -> dict[str, Any]:
    """Chunked functions against the full-matrix reference on a problem small enough for the latter."""
    small = make_problem(args.ref_queries, args.ref_gallery, args.dim, args.per_person, args.noise, args.seed)
    (want, want_first), ref_s = timed(lambda: full_matrix_reference(*small, KS))
    got, chunked_s = timed(lambda: retrieval_metrics(*small, ks=KS, chunk_size=args.chunk_size))
    ranks = target_ranks(*small, chunk_size=args.chunk_size)
    return {
        "queries": args.ref_queries,
        "gallery": args.ref_gallery,
        "reference_s": round(ref_s, 2),
        "chunked_s": round(chunked_s, 2),
        "reference": want,
        "chunked": got,
        "max_abs_diff": max(abs(got[k] - want[k]) for k in want),
        "target_ranks_equal": bool(torch.equal(ranks, want_first)),
    }


def full_size_run(args: argparse.Namespace) -> dict[str, Any]:
    """Time and peak memory of the chunked functions at full size, where no reference fits."""
    big = make_problem(args.queries, args.gallery, args.dim, args.per_person, args.noise, args.seed + 1)
    rss_before = current_rss_mib()
    metrics, metrics_s = timed(lambda: retrieval_metrics(*big, ks=KS, chunk_size=args.chunk_size))
    ranks, ranks_s = timed(lambda: target_ranks(*big, chunk_size=args.chunk_size))
    return {
        "queries": args.queries,
        "gallery": args.gallery,
        "dim": args.dim,
        "dtype": "float16",
        "chunk_size": args.chunk_size,
        "retrieval_metrics_s": round(metrics_s, 2),
        "target_ranks_s": round(ranks_s, 2),
        "metrics": metrics,
        "r1_from_target_ranks": 100.0 * (ranks == 1).double().mean().item(),
        "rss_mib_with_data": round(rss_before),
        "peak_rss_mib": round(peak_rss_mib()),
        "full_matrix_would_need_mib": round(args.queries * args.gallery * 4 / 2**20),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--per-person", type=int, default=4, help="gallery images per person")
    parser.add_argument("--noise", type=float, default=2.5, help="noise scale relative to the person centre")
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--ref-queries", type=int, default=2_000)
    parser.add_argument("--ref-gallery", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "full": full_size_run(args),
        "reference_check": check_against_reference(args),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()

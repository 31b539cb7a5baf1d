"""Retrieval metrics and BRI: hand-worked values, a brute-force reference, ties, errors and 2-process sync."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ireid.core.metrics import (
    BestRankIntegral,
    RetrievalMetrics,
    best_rank_integral,
    metrics_from_scores,
    per_query_stats,
    retrieval_metrics,
    running_min_ranks,
    target_ranks,
    target_ranks_from_scores,
)

# Three queries, six gallery items. Gallery pids: [1, 2, 1, 3, 2, 1].
HAND_SCORES = torch.tensor(
    [
        [0.9, 0.8, 0.1, 0.7, 0.3, 0.5],  # pid 1
        [0.6, 0.2, 0.9, 0.8, 0.1, 0.7],  # pid 2
        [0.4, 0.9, 0.3, 0.5, 0.2, 0.6],  # pid 3
    ]
)
HAND_QUERY_PIDS = torch.tensor([1, 2, 3])
HAND_GALLERY_PIDS = torch.tensor([1, 2, 1, 3, 2, 1])
# Query 0 (pid 1): order 0,1,3,5,4,2 -> pids 1,2,3,1,2,1: matches at ranks 1,4,6.
#   AP = (1/1 + 2/4 + 3/6) / 3 = 2/3;  INP = 3 matches / rank 6 = 1/2;  first rank 1.
# Query 1 (pid 2): order 2,3,5,0,1,4 -> pids 1,3,1,1,2,2: matches at ranks 5,6.
#   AP = (1/5 + 2/6) / 2 = 4/15;  INP = 2 / 6 = 1/3;  first rank 5.
# Query 2 (pid 3): order 1,5,3,... -> pids 2,1,3: single match at rank 3.
#   AP = 1/3;  INP = 1/3;  first rank 3.
# R@1 = 1/3 (query 0), R@3 = 2/3 (queries 0, 2), R@5 = 3/3.
# mAP = (2/3 + 4/15 + 1/3) / 3 = 19/45;  mINP = (1/2 + 1/3 + 1/3) / 3 = 7/18.
HAND_EXPECTED = {"R1": 100 / 3, "R3": 200 / 3, "R5": 100.0, "mAP": 100 * 19 / 45, "mINP": 100 * 7 / 18}


def reference_metrics(scores: torch.Tensor, query_pids: torch.Tensor, gallery_pids: torch.Tensor, ks) -> dict:
    """Brute force: fully sort each row (ties by gallery index) and walk it, with exact fractions."""
    rows, qp, gp = scores.tolist(), query_pids.tolist(), gallery_pids.tolist()
    first, aps, inps = [], [], []
    for q, row in enumerate(rows):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        hit_ranks = [i + 1 for i, j in enumerate(order) if gp[j] == qp[q]]
        first.append(hit_ranks[0])
        aps.append(sum(Fraction(n, r) for n, r in enumerate(hit_ranks, start=1)) / len(hit_ranks))
        inps.append(Fraction(len(hit_ranks), hit_ranks[-1]))
    out = {f"R{k}": 100 * sum(r <= k for r in first) / len(first) for k in ks}
    out["mAP"] = float(100 * sum(aps) / len(aps))
    out["mINP"] = float(100 * sum(inps) / len(inps))
    return out


def reference_first_ranks(scores: torch.Tensor, query_pids: torch.Tensor, gallery_pids: torch.Tensor) -> list[int]:
    rows, qp, gp = scores.tolist(), query_pids.tolist(), gallery_pids.tolist()
    ranks = []
    for q, row in enumerate(rows):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))
        ranks.append(next(i + 1 for i, j in enumerate(order) if gp[j] == qp[q]))
    return ranks


def integer_problem(num_q: int, num_g: int, num_pids: int, dim: int = 6, seed: int = 0):
    """Small-integer features: dot products are exact in float32 (chunking cannot change them) and tie often."""
    gen = torch.Generator().manual_seed(seed)
    gallery_pids = torch.randint(0, num_pids, (num_g,), generator=gen)
    present = gallery_pids.unique()
    query_pids = present[torch.randint(0, present.numel(), (num_q,), generator=gen)]
    query_feats = torch.randint(-2, 3, (num_q, dim), generator=gen).float()
    gallery_feats = torch.randint(-2, 3, (num_g, dim), generator=gen).float()
    return query_feats, gallery_feats, query_pids, gallery_pids


def assert_metrics_equal(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), key


def test_hand_worked_example():
    got = metrics_from_scores(HAND_SCORES, HAND_QUERY_PIDS, HAND_GALLERY_PIDS, ks=(1, 3, 5))
    assert_metrics_equal(got, HAND_EXPECTED)
    stats = per_query_stats(HAND_SCORES, HAND_QUERY_PIDS, HAND_GALLERY_PIDS)
    assert stats.first_rank.tolist() == [1, 5, 3]
    assert stats.ap.tolist() == pytest.approx([2 / 3, 4 / 15, 1 / 3])
    assert stats.inp.tolist() == pytest.approx([1 / 2, 1 / 3, 1 / 3])
    assert target_ranks_from_scores(HAND_SCORES, HAND_QUERY_PIDS, HAND_GALLERY_PIDS).tolist() == [1, 5, 3]


def test_hand_worked_example_from_features():
    # One-hot gallery features make the score matrix equal to the query features.
    got = retrieval_metrics(HAND_SCORES, torch.eye(6), HAND_QUERY_PIDS, HAND_GALLERY_PIDS, ks=(1, 3, 5), chunk_size=2)
    assert_metrics_equal(got, HAND_EXPECTED)
    assert retrieval_metrics(HAND_SCORES, torch.eye(6), HAND_QUERY_PIDS, HAND_GALLERY_PIDS).keys() == {
        "R1",
        "R5",
        "R10",
        "mAP",
        "mINP",
    }


@pytest.mark.parametrize(
    ("num_q", "num_g", "num_pids", "chunk_size"),
    [(1, 1, 1, 1), (7, 13, 3, 3), (50, 200, 20, 7), (33, 64, 5, 1024), (64, 300, 60, 10)],
)
def test_features_agree_with_brute_force(num_q, num_g, num_pids, chunk_size):
    qf, gf, qp, gp = integer_problem(num_q, num_g, num_pids, seed=num_q)
    ks = (1, 5, 10)
    want = reference_metrics(qf @ gf.T, qp, gp, ks)
    assert_metrics_equal(retrieval_metrics(qf, gf, qp, gp, ks=ks, chunk_size=chunk_size), want)
    assert target_ranks(qf, gf, qp, gp, chunk_size=chunk_size).tolist() == reference_first_ranks(qf @ gf.T, qp, gp)


@pytest.mark.parametrize("seed", range(4))
def test_scores_agree_with_brute_force(seed):
    gen = torch.Generator().manual_seed(seed)
    num_q, num_g = 23, 97
    scores = torch.rand(num_q, num_g, generator=gen)
    if seed % 2:  # coarse scores: many ties, also between matches and non-matches
        scores = (scores * 4).floor()
    gallery_pids = torch.randint(0, 8, (num_g,), generator=gen)
    query_pids = gallery_pids[torch.randint(0, num_g, (num_q,), generator=gen)]
    ks = (1, 2, 5, 200)
    want = reference_metrics(scores, query_pids, gallery_pids, ks)
    assert_metrics_equal(metrics_from_scores(scores, query_pids, gallery_pids, ks=ks, chunk_size=5), want)


@pytest.mark.parametrize("seed", range(5))
def test_counting_ranks_equal_sorted_ranks(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    num_q, num_g = 40, 150
    scores = torch.randint(0, 6, (num_q, num_g), generator=gen).float()  # heavy ties
    scores[torch.rand(num_q, num_g, generator=gen) < 0.2] = float("-inf")  # re-rankers mask items out this way
    gallery_pids = torch.randint(0, 10, (num_g,), generator=gen)
    query_pids = gallery_pids[torch.randint(0, num_g, (num_q,), generator=gen)]
    counted = target_ranks_from_scores(scores, query_pids.int(), gallery_pids)  # pid dtypes may differ
    assert counted.dtype == torch.int64
    assert counted.tolist() == per_query_stats(scores, query_pids, gallery_pids).first_rank.tolist()
    assert counted.tolist() == reference_first_ranks(scores, query_pids, gallery_pids)


@pytest.mark.parametrize(
    ("gallery_pids", "expected_rank"),
    [
        ([5, 7, 5], 3),  # target (index 1) ties with index 0, which comes first in the gallery
        ([7, 5, 5], 2),  # target (index 0) ties with index 1 and wins the tie
    ],
)
def test_ties_follow_gallery_order(gallery_pids, expected_rank):
    scores = torch.tensor([[0.5, 0.5, 0.9]])
    query_pids, gallery_pids = torch.tensor([7]), torch.tensor(gallery_pids)
    assert target_ranks_from_scores(scores, query_pids, gallery_pids).item() == expected_rank
    stats = per_query_stats(scores, query_pids, gallery_pids)
    assert stats.first_rank.item() == expected_rank
    assert stats.ap.item() == pytest.approx(1 / expected_rank)
    feats = retrieval_metrics(torch.tensor([[1.0]]), scores.T, query_pids, gallery_pids, ks=(2,))
    assert feats["R2"] == (100.0 if expected_rank <= 2 else 0.0)


def test_ties_among_matches_and_non_matches_in_ap():
    # All four items tie: order is gallery order, pids 1,2,1,2 -> matches of pid 1 at ranks 1 and 3.
    stats = per_query_stats(torch.zeros(1, 4), torch.tensor([1]), torch.tensor([1, 2, 1, 2]))
    assert stats.first_rank.item() == 1
    assert stats.ap.item() == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert stats.inp.item() == pytest.approx(2 / 3)


def test_absent_person_raises_naming_the_query():
    qf, gf, qp, gp = integer_problem(9, 20, 4)
    qp[5] = 99
    with pytest.raises(ValueError, match=r"query 5 \(pid 99\)"):
        retrieval_metrics(qf, gf, qp, gp, chunk_size=2)
    with pytest.raises(ValueError, match=r"query 5 \(pid 99\)"):
        metrics_from_scores(qf @ gf.T, qp, gp)
    with pytest.raises(ValueError, match=r"query 5 \(pid 99\)"):
        target_ranks(qf, gf, qp, gp)
    qp[7] = 98
    with pytest.raises(ValueError, match=r"queries \[5, 7\] \(pids \[99, 98\]\)"):
        target_ranks_from_scores(qf @ gf.T, qp, gp)


def test_nan_scores_rejected():
    scores = HAND_SCORES.clone()
    scores[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        metrics_from_scores(scores, HAND_QUERY_PIDS, HAND_GALLERY_PIDS)
    with pytest.raises(ValueError, match="NaN"):
        target_ranks_from_scores(scores, HAND_QUERY_PIDS, HAND_GALLERY_PIDS)


def test_non_finite_features_rejected():
    qf, gf, qp, gp = integer_problem(4, 10, 3)
    gf[2, 1] = float("inf")
    with pytest.raises(ValueError, match="infinity"):
        retrieval_metrics(qf, gf, qp, gp)
    with pytest.raises(ValueError, match="infinity"):
        target_ranks(qf, gf, qp, gp)


def test_features_are_not_normalised():
    # Dot product prefers gallery item 1 (0.5 * 3 = 1.5 > 0.9); cosine similarity would prefer item 0.
    query, gallery = torch.tensor([[0.9, 0.5]]), torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert target_ranks(query, gallery, torch.tensor([0]), torch.tensor([0, 1])).item() == 2


def test_fp16_features_rank_like_fp32():
    # One-hot gallery: scores are the query entries, spaced by 1/15 — far beyond fp16 rounding.
    gen = torch.Generator().manual_seed(3)
    num_g = 16
    levels = torch.linspace(0, 1, num_g)
    queries = torch.stack([levels[torch.randperm(num_g, generator=gen)] for _ in range(12)])
    queries = torch.nn.functional.normalize(queries, dim=1)
    gallery = torch.eye(num_g)
    gallery_pids = torch.arange(num_g) % 5
    query_pids = torch.randint(0, 5, (12,), generator=gen)
    want_ranks = target_ranks(queries, gallery, query_pids, gallery_pids)
    want = retrieval_metrics(queries, gallery, query_pids, gallery_pids, chunk_size=5)
    assert target_ranks(queries.half(), gallery.half(), query_pids, gallery_pids).tolist() == want_ranks.tolist()
    assert_metrics_equal(
        retrieval_metrics(queries.half(), gallery.half(), query_pids, gallery_pids, chunk_size=5), want
    )


def test_fp16_features_are_scored_in_float32():
    # Both scores (4·200·200 = 160000 and 4·200·100 = 80000) overflow fp16 to inf, which would tie them.
    query = torch.full((1, 4), 200.0).half()
    gallery = torch.tensor([[100.0] * 4, [200.0] * 4]).half()
    assert target_ranks(query, gallery, torch.tensor([1]), torch.tensor([0, 1])).item() == 1


def test_bri_hand_worked():
    ranks = [[10, 5, 5, 2, 1, 1]]
    ln = math.log
    trapezoids = [(ln(10) + ln(5)) / 2, (ln(5) + ln(5)) / 2, (ln(5) + ln(2)) / 2, (ln(2) + ln(1)) / 2, 0.0]
    assert best_rank_integral(torch.tensor(ranks)) == pytest.approx(sum(trapezoids) / 5)
    assert best_rank_integral(np.array(ranks)) == pytest.approx(sum(trapezoids) / 5)


def test_bri_uses_running_minimum():
    ranks = torch.tensor([[4, 8, 2, 3, 1, 6]])  # the target falls back in rounds 1, 3 and 5
    assert running_min_ranks(ranks).tolist() == [[4, 4, 2, 2, 1, 1]]
    ln = math.log
    want = ((ln(4) + ln(4)) / 2 + (ln(4) + ln(2)) / 2 + (ln(2) + ln(2)) / 2 + (ln(2) + ln(1)) / 2 + 0.0) / 5
    assert best_rank_integral(ranks) == pytest.approx(want)


def test_bri_zero_at_rank_one_and_mean_over_queries():
    assert best_rank_integral(torch.ones(3, 6, dtype=torch.long)) == 0.0
    both = torch.tensor([[1, 1, 1, 1, 1, 1], [10, 5, 5, 2, 1, 1]])
    assert best_rank_integral(both) == pytest.approx(best_rank_integral(both[1:]) / 2)


def test_bri_matches_llava_reid_loop():
    # LLaVA-ReID's formulation on [rounds, queries]: running minimum round by round, mean per round, / R.
    ranks = torch.randint(1, 50, (30, 6), generator=torch.Generator().manual_seed(7))
    per_round = ranks.T.double()
    mins = [per_round[0]]
    for row in per_round[1:]:
        mins.append(torch.minimum(mins[-1], row))
    want = sum(((mins[i].log() + mins[i + 1].log()) / 2).mean().item() for i in range(5)) / 5
    assert best_rank_integral(ranks) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("bad", [[[0, 1, 1]], [[3]], [3, 2, 1]])
def test_bri_rejects_bad_ranks(bad):
    with pytest.raises(ValueError, match="rank"):
        best_rank_integral(torch.tensor(bad))


def test_metric_classes_accumulate_batches():
    qf, gf, qp, gp = integer_problem(40, 90, 12, seed=5)
    metric = RetrievalMetrics(ks=(1, 5), chunk_size=6)
    metric.update(qf[:15], qp[:15])
    with pytest.raises(ValueError, match="no gallery"):
        metric.compute()
    for start in range(0, 90, 25):
        metric.update_gallery(gf[start : start + 25], gp[start : start + 25])
    metric.update(qf[15:], qp[15:])
    assert_metrics_equal(metric.compute(), retrieval_metrics(qf, gf, qp, gp, ks=(1, 5)))

    ranks = torch.randint(1, 100, (20, 6), generator=torch.Generator().manual_seed(1))
    bri = BestRankIntegral()
    bri.update(ranks[:7])
    bri.update(ranks[7:])
    assert bri.compute() == pytest.approx(best_rank_integral(ranks), rel=1e-12)


WORLD = 2
DDP_DATA = {"num_q": 41, "num_g": 120, "num_pids": 15, "seed": 11}
DDP_Q_SPLIT = 17  # uneven on purpose: torchmetrics must gather unequal shards
DDP_G_SPLIT = 70


def ddp_problem():
    qf, gf, qp, gp = integer_problem(**DDP_DATA)
    ranks = torch.randint(1, 200, (DDP_DATA["num_q"], 6), generator=torch.Generator().manual_seed(2))
    return qf.half(), gf.half(), qp, gp, ranks


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        qf, gf, qp, gp, ranks = ddp_problem()
        q = slice(0, DDP_Q_SPLIT) if rank == 0 else slice(DDP_Q_SPLIT, None)
        g = slice(0, DDP_G_SPLIT) if rank == 0 else slice(DDP_G_SPLIT, None)  # contiguous slices in rank order
        metric, bri = RetrievalMetrics(chunk_size=8), BestRankIntegral()
        metric.update_gallery(gf[g], gp[g])
        metric.update(qf[q][:5], qp[q][:5])
        metric.update(qf[q][5:], qp[q][5:])
        bri.update(ranks[q])
        torch.save({"metrics": metric.compute(), "bri": bri.compute()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_sync_matches_single_process(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    qf, gf, qp, gp, ranks = ddp_problem()
    want_metrics = retrieval_metrics(qf, gf, qp, gp)
    want_bri = best_rank_integral(ranks)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert_metrics_equal(got["metrics"], want_metrics)
        assert got["bri"] == pytest.approx(want_bri, rel=1e-12)

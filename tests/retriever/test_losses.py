"""SDM and ID losses: hand-computed values, limiting cases, and the all-gathered version across 2 processes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from ireid.retriever.losses import gather_with_grad, gathered_sdm_loss, id_loss, make_id_classifier, sdm_loss

EPS = 1e-8


def kl_row(logits: list[float], q: list[float]) -> float:
    """Σ_j p_j (log p_j − log(q_j + eps)) with p = softmax(logits), written out with math only."""
    z = sum(math.exp(v) for v in logits)
    p = [math.exp(v) / z for v in logits]
    return sum(pj * (math.log(pj) - math.log(qj + EPS)) for pj, qj in zip(p, q, strict=True))


def test_sdm_2x2_by_hand():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[2.0, 0.0], [0.6, 0.8]])  # un-normalised on purpose: sdm normalises
    s = 2.0
    # cos(text_i, image_j): [[1, 0], [0.6, 0.8]]; distinct pids → q is the identity.
    t2i = kl_row([s * 1.0, s * 0.0], [1, 0]) + kl_row([s * 0.6, s * 0.8], [0, 1])
    i2t = kl_row([s * 1.0, s * 0.6], [1, 0]) + kl_row([s * 0.0, s * 0.8], [0, 1])
    expected = t2i / 2 + i2t / 2
    got = sdm_loss(image, text, torch.tensor([7, 3]), logit_scale=s)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_sdm_3x3_shared_pid_by_hand():
    image = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    text = torch.tensor([[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    pids = torch.tensor([4, 4, 9])  # rows 0 and 1 share an identity: q = [½, ½, 0] on those rows
    s = 3.0
    cos = [[0.6, 0.96, 0.8], [1.0, 0.8, 0.0], [0.0, 0.6, 1.0]]  # text_i · image_j
    q = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    t2i = sum(kl_row([s * c for c in cos[i]], q[i]) for i in range(3)) / 3
    i2t = sum(kl_row([s * cos[j][i] for j in range(3)], q[i]) for i in range(3)) / 3
    got = sdm_loss(image, text, pids, logit_scale=s)
    assert got.item() == pytest.approx(t2i + i2t, rel=1e-5)


def test_sdm_near_zero_for_perfect_alignment():
    feats = torch.eye(6, 16)
    assert sdm_loss(feats, feats.clone(), torch.arange(6), logit_scale=100.0).item() < 1e-6


def test_sdm_default_scale_and_penalises_mismatch():
    feats = torch.eye(4, 8)
    aligned = sdm_loss(feats, feats, torch.arange(4))
    shuffled = sdm_loss(feats, feats[[1, 0, 3, 2]], torch.arange(4))
    assert aligned.item() < 1e-6 < 10 < shuffled.item()


def test_sdm_symmetric_under_swapping_modalities():
    # Swapping image and text exchanges the i2t and t2i terms, so the sum is unchanged.
    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(8, 32, generator=g), torch.randn(8, 32, generator=g)
    pids = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4])
    assert torch.allclose(sdm_loss(image, text, pids), sdm_loss(text, image, pids))


def test_sdm_rejects_bad_shapes():
    with pytest.raises(ValueError, match="pids"):
        sdm_loss(torch.randn(3, 4), torch.randn(3, 4), torch.arange(4))
    with pytest.raises(ValueError, match="features"):
        sdm_loss(torch.randn(3, 4), torch.randn(2, 4), torch.arange(3))


def test_id_loss_by_hand():
    classifier = torch.nn.Linear(2, 3)
    with torch.no_grad():
        classifier.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        classifier.bias.copy_(torch.tensor([0.0, 0.5, -1.0]))
    image = torch.tensor([[2.0, 1.0]])
    text = torch.tensor([[0.0, 3.0]])
    pid = torch.tensor([1])

    def ce(logits: list[float], target: int) -> float:
        return -logits[target] + math.log(sum(math.exp(v) for v in logits))

    expected = (ce([2.0, 1.5, 2.0], 1) + ce([0.0, 3.5, 2.0], 1)) / 2
    assert id_loss(classifier, image, text, pid).item() == pytest.approx(expected, rel=1e-6)
    reference = (F.cross_entropy(classifier(image), pid) + F.cross_entropy(classifier(text), pid)) / 2
    assert id_loss(classifier, image, text, pid).item() == pytest.approx(reference.item())


def test_id_classifier_starts_near_uniform():
    classifier = make_id_classifier(512, 1000)
    feats = F.normalize(torch.randn(4, 512), dim=-1) * 10
    loss = id_loss(classifier, feats, feats, torch.arange(4))
    assert loss.item() == pytest.approx(math.log(1000), abs=0.05)


def test_gather_is_identity_without_distributed():
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x


# --- two processes (gloo on CPU) ------------------------------------------------------------------


def _global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images, texts = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    weight = torch.randn(5, 6, generator=g)  # a shared "encoder" Linear(6 → 5), as DDP would replicate
    pids = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4])
    return images, texts, weight, pids


def _rank_step(images, texts, weight, pids, rows: slice) -> dict[str, torch.Tensor]:
    """What one rank computes: local features, gathered SDM, gradients w.r.t. local feats and weights."""
    w = weight.clone().requires_grad_(True)
    img, txt = images[rows] @ w.t(), texts[rows] @ w.t()
    img.retain_grad()
    txt.retain_grad()
    loss = gathered_sdm_loss(img, txt, pids[rows], logit_scale=10.0)
    loss.backward()
    return {"loss": loss.detach(), "img_grad": img.grad, "txt_grad": txt.grad, "w_grad": w.grad}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        images, texts, weight, pids = _global_batch()
        results = {}
        for name, bounds in {"even": (0, 4, 8), "uneven": (0, 3, 8)}.items():
            rows = slice(bounds[rank], bounds[rank + 1])
            results[name] = _rank_step(images, texts, weight, pids, rows)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gathered_sdm_matches_single_process_over_two_ranks(tmp_path: Path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    images, texts, weight, pids = _global_batch()
    single = _rank_step(images, texts, weight, pids, slice(0, 8))
    for name, bounds in {"even": (0, 4, 8), "uneven": (0, 3, 8)}.items():
        for r in range(world):
            got = ranks[r][name]
            rows = slice(bounds[r], bounds[r + 1])
            # Every rank computes the same global loss, equal to the single-process loss on the whole batch.
            assert torch.allclose(got["loss"], single["loss"], atol=1e-6)
            # Gather's backward sums the gradient over ranks: each rank's local feature gradient is
            # world × the matching slice of the single-process gradient ...
            assert torch.allclose(got["img_grad"], world * single["img_grad"][rows], atol=1e-6)
            assert torch.allclose(got["txt_grad"], world * single["txt_grad"][rows], atol=1e-6)
        # ... so DDP's mean over ranks of the shared-parameter gradients is exactly the single-process one.
        ddp_mean = sum(ranks[r][name]["w_grad"] for r in range(world)) / world
        assert torch.allclose(ddp_mean, single["w_grad"], atol=1e-5)

"""IRRA's alignment objectives: Similarity Distribution Matching (SDM) and the shared-classifier ID loss.

Pure torch so that any training loop (Lightning or not) can call them. Under data parallelism SDM must
see the whole global batch: gather the features and pids with `gather_with_grad` first (or call
`gathered_sdm_loss`), otherwise each rank matches only its own slice and loses most negatives.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

LOGIT_SCALE = 50.0  # 1 / τ with τ = 0.02 (IRRA keeps it fixed, not learned)


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 (ranks may hold different sizes); gradients flow back to each local slice.

    Backward sums the incoming gradient over ranks and returns this rank's rows: every rank computes a
    loss on the same gathered tensor, and each of those losses depends on every rank's features.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        world = dist.get_world_size()
        size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
        sizes = [torch.zeros_like(size) for _ in range(world)]
        dist.all_gather(sizes, size)
        counts = [int(s.item()) for s in sizes]
        padded = x.new_zeros((max(counts), *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        rank = dist.get_rank()
        ctx.start, ctx.stop = sum(counts[:rank]), sum(counts[: rank + 1])
        return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate `x` from all ranks in rank order, keeping the autograd path to the local rows.

    The identity outside torch.distributed. The local gradient is the sum over ranks of each rank's loss
    gradient; when every rank computes the same global loss L, that is world_size · ∂L/∂x_local, and DDP's
    averaging over ranks then yields exactly the single-process gradient of L for shared parameters.
    """
    if not _is_distributed():
        return x
    return _GatherWithGrad.apply(x)


def sdm_loss(
    image_feats: Tensor, text_feats: Tensor, pids: Tensor, logit_scale: float | Tensor = LOGIT_SCALE, eps: float = 1e-8
) -> Tensor:
    """KL(softmax(s·cos) ‖ q) in both directions, q_ij = [pid_i == pid_j] row-normalised; batch means summed.

    Unlike InfoNCE it accepts several positives per row (images and captions of the same person in one batch).
    """
    if image_feats.shape != text_feats.shape or image_feats.ndim != 2:
        raise ValueError(f"image and text features must both be [B, D], got {image_feats.shape} and {text_feats.shape}")
    if pids.shape != (image_feats.shape[0],):
        raise ValueError(f"pids must be [B] = [{image_feats.shape[0]}], got {tuple(pids.shape)}")
    image = F.normalize(image_feats.float(), dim=-1)
    text = F.normalize(text_feats.float(), dim=-1)
    t2i_cos = text @ image.t()
    labels = (pids.view(-1, 1) == pids.view(1, -1)).float()
    log_q = torch.log(labels / labels.sum(dim=1, keepdim=True) + eps)

    def direction(logits: Tensor) -> Tensor:
        log_p = F.log_softmax(logits, dim=1)
        return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()

    return direction(logit_scale * t2i_cos.t()) + direction(logit_scale * t2i_cos)


def gathered_sdm_loss(
    image_feats: Tensor, text_feats: Tensor, pids: Tensor, logit_scale: float | Tensor = LOGIT_SCALE, eps: float = 1e-8
) -> Tensor:
    """`sdm_loss` over the global batch of all ranks (identical value on every rank)."""
    return sdm_loss(
        gather_with_grad(image_feats), gather_with_grad(text_feats), gather_with_grad(pids), logit_scale, eps
    )


def make_id_classifier(dim: int, num_ids: int) -> nn.Linear:
    """IRRA's classifier: weights N(0, 0.001²), bias 0, so initial logits are near uniform."""
    classifier = nn.Linear(dim, num_ids)
    nn.init.normal_(classifier.weight, std=0.001)
    nn.init.zeros_(classifier.bias)
    return classifier


def id_loss(classifier: nn.Linear, image_feats: Tensor, text_feats: Tensor, pids: Tensor) -> Tensor:
    """(CE(W·img, pid) + CE(W·txt, pid)) / 2 with one classifier shared by both modalities.

    Pass the projected, un-normalised features (CLS / EOT after the projection), as IRRA does: sharing W
    pulls the two modalities of one identity towards the same class region.
    """
    return (F.cross_entropy(classifier(image_feats), pids) + F.cross_entropy(classifier(text_feats), pids)) / 2

"""ICL's efficient re-ranking (§3.2, Eq. 6): the base similarity blended with the refined query's, anchor first.

S'(q, v) = λ·S(q, v) + (1 − λ)·S̄(q̂, v), where S̄ is the refined query q̂'s similarity and 1 at the anchor.
Queries without an anchor keep their base similarities.
"""

from __future__ import annotations

import torch
from torch import Tensor


def thi_scores(base: Tensor, refined: Tensor, anchors: Tensor, lam: float) -> Tensor:
    """`base` [B, N]; `refined` [M, N] for the M rows with an anchor; `anchors` [B] gallery indices, −1 for none."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"λ must lie in [0, 1], got {lam}")
    rows = (anchors >= 0).nonzero().flatten()
    if refined.shape != (len(rows), base.shape[1]):
        raise ValueError(f"refined similarities of shape {list(refined.shape)} for {len(rows)} anchored queries")
    out = base.float().clone()
    if len(rows):
        bar = refined.float().clone()
        bar[torch.arange(len(rows)), anchors[rows]] = 1.0
        out[rows] = lam * out[rows] + (1.0 - lam) * bar
    return out

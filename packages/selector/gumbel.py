"""Gumbel-top-k relaxed subset sampling (Xie & Ermon 2019), as LLaVA-ReID's selector trains through it.

Adding Gumbel(0, 1) noise to log-weights and taking the top c is an exact sample of c candidates without
replacement (LLaVA-ReID Eq. 7–8). The relaxation makes that sample differentiable: c rounds of a tempered
softmax, each round removing the mass already chosen, summed into a soft k-hot vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

TINY = torch.finfo(torch.float32).tiny  # keeps log(1 - p) finite once a candidate is fully chosen


def gumbel_noise(
    shape: torch.Size, generator: torch.Generator | None = None, device: torch.device | None = None
) -> Tensor:
    """Standard Gumbel samples, -log(-log U), in float32."""
    uniform = torch.rand(shape, generator=generator, device=device).clamp_min(TINY)
    return -torch.log(-torch.log(uniform))


def gumbel_topk(
    log_weights: Tensor,
    k: int,
    temperature: float = 1.0,
    mode: Literal["soft", "hard"] = "hard",
    mask: Tensor | None = None,
    generator: torch.Generator | None = None,
    hard_from: Literal["keys", "relaxed"] = "keys",
    noise: bool = True,
) -> Tensor:
    """A relaxed k-hot sample [B, K] of k candidates per row from `log_weights` [B, K].

    `mode="soft"` returns the accumulated relaxed k-hot (sums to k; an entry can exceed 1 when one weight
    dominates). `mode="hard"` returns an exact 0/1 k-hot in the forward pass whose gradient is the relaxed
    one (straight-through). `hard_from="keys"` takes the top k of the perturbed log-weights, an exact
    sample of Eq. 7–8 at every temperature; `"relaxed"` takes the top k of the relaxed vector, as the
    LLaVA-ReID code does (the same subsets at τ ≥ 0.5; at small τ the saturated softmax rounds make ties).
    `mask` [B, K] (True = real) keeps padded slots out of every sample. `noise=False` relaxes the plain
    top k of the weights instead of a sample (a deterministic soft top-k).
    """
    if log_weights.ndim != 2:
        raise ValueError(f"log_weights must be [B, K], got shape {tuple(log_weights.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if mode not in ("soft", "hard") or hard_from not in ("keys", "relaxed"):
        raise ValueError(
            f"mode must be 'soft' or 'hard' and hard_from 'keys' or 'relaxed', got {mode!r}, {hard_from!r}"
        )
    if mask is None:
        mask = torch.ones_like(log_weights, dtype=torch.bool)
    available = int(mask.sum(dim=1).min()) if len(mask) else k
    if not 1 <= k <= available:
        raise ValueError(f"cannot sample k={k} candidates from rows with as few as {available} real candidates")
    keys = log_weights.float().masked_fill(~mask, float("-inf"))
    if noise:
        keys = keys + gumbel_noise(keys.shape, generator, keys.device)
    scores, chosen, khot = keys, torch.zeros_like(keys), torch.zeros_like(keys)
    for _ in range(k):
        scores = scores + torch.log((1.0 - chosen).clamp_min(TINY))
        chosen = torch.softmax(scores / temperature, dim=1)
        khot = khot + chosen
    if mode == "hard":
        ranked = keys if hard_from == "keys" else khot.detach().masked_fill(~mask, float("-inf"))
        hard = torch.zeros_like(khot).scatter_(1, ranked.topk(k, dim=1).indices, 1.0)
        khot = hard - khot.detach() + khot
    return khot.to(log_weights.dtype)


@dataclass(frozen=True)
class TemperatureSchedule:
    """τ annealed linearly from `start` to `end` over `steps` optimiser steps, then held at `end`."""

    steps: int
    start: float = 1.0
    end: float = 0.1

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.start <= 0 or self.end <= 0:
            raise ValueError(f"steps, start and end must be positive, got {self.steps}, {self.start}, {self.end}")

    def __call__(self, step: int) -> float:
        progress = min(max(step, 0), self.steps) / self.steps
        return self.start + (self.end - self.start) * progress

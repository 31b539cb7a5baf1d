"""The LLaVA-ReID selector: a shallow Transformer over the dialogue and the retrieved candidates.

The dialogue embedding is prepended to the candidate image embeddings; a learnable modality embedding
tells text from image and there is no positional embedding, so the candidates are an unordered set
(permuting them permutes the scores). A bias-free linear head scores every candidate.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ireid.selector.gumbel import gumbel_topk

TEXT, IMAGE = 0, 1


def check_inputs(dialogue: Tensor, candidates: Tensor, mask: Tensor) -> None:
    if dialogue.ndim != 2 or candidates.ndim != 3 or mask.shape != candidates.shape[:2]:
        raise ValueError(
            "expected dialogue [B, D], candidates [B, K, D], mask [B, K]; got "
            f"{tuple(dialogue.shape)}, {tuple(candidates.shape)}, {tuple(mask.shape)}"
        )
    if len(dialogue) != len(candidates) or dialogue.shape[1] != candidates.shape[2]:
        raise ValueError(f"dialogue {tuple(dialogue.shape)} and candidates {tuple(candidates.shape)} disagree")
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool (True = real candidate), got {mask.dtype}")


class Selector(nn.Module):
    """Scores K retrieved candidates given the dialogue; `select` is the `CandidateSelector` protocol.

    Args:
        dim, layers, heads, ffn (default 4·dim), dropout: the encoder (GELU, batch first).
        input_dim: width of the retriever embeddings; projected to `dim` when it differs.
        keep_first: the retriever's rank-1 candidate is always selected and the model picks the other
            c − 1 among the rest, as the LLaVA-ReID code does; False picks all c.
        norm_first: pre-norm layers; False is the post-norm of the reference (`nn.TransformerEncoderLayer`).

    `config` holds these arguments: a checkpoint stores them so that the network rebuilds without the code
    that trained it (`ireid.selector.inference`).
    """

    def __init__(
        self,
        dim: int = 512,
        layers: int = 5,
        heads: int = 8,
        ffn: int | None = None,
        dropout: float = 0.0,
        input_dim: int | None = None,
        keep_first: bool = True,
        norm_first: bool = False,
    ):
        super().__init__()
        self._config = {
            "dim": dim,
            "layers": layers,
            "heads": heads,
            "ffn": ffn,
            "dropout": dropout,
            "input_dim": input_dim,
            "keep_first": keep_first,
            "norm_first": norm_first,
        }
        self.dim = dim
        self.keep_first = keep_first
        self.project = nn.Linear(input_dim, dim) if input_dim not in (None, dim) else nn.Identity()
        self.modality = nn.Embedding(2, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, ffn or 4 * dim, dropout, activation="gelu", batch_first=True, norm_first=norm_first
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.score = nn.Linear(dim, 1, bias=False)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (a copy): `Selector(**selector.config)` is the same architecture."""
        return dict(self._config)

    def forward(self, dialogue: Tensor, candidates: Tensor, mask: Tensor) -> Tensor:
        """Log-probabilities [B, K] over the real candidates of each row (-inf on padded slots)."""
        check_inputs(dialogue, candidates, mask)
        if not mask.any(dim=1).all():
            raise ValueError("every row needs at least one real candidate (mask all False)")
        dtype = self.score.weight.dtype
        tokens = torch.cat([dialogue.unsqueeze(1), candidates], dim=1).to(dtype)
        tokens = self.project(tokens) * math.sqrt(self.dim)
        modality = torch.full(tokens.shape[:2], IMAGE, dtype=torch.long, device=tokens.device)
        modality[:, 0] = TEXT
        padding = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], dim=1)
        hidden = self.encoder(tokens + self.modality(modality), src_key_padding_mask=padding)
        scores = self.score(hidden[:, 1:]).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.log_softmax(scores, dim=1)

    def _free_slots(self, mask: Tensor, num_select: int) -> int:
        """How many candidates the model chooses (c, or c − 1 next to the kept rank-1), after checking the rows."""
        if num_select < 1:
            raise ValueError(f"num_select must be at least 1, got {num_select}")
        fewest = int(mask.sum(dim=1).min()) if len(mask) else num_select
        if fewest < num_select:
            raise ValueError(f"cannot select {num_select} candidates from rows with as few as {fewest} real ones")
        if self.keep_first and len(mask) and not mask[:, 0].all():
            raise ValueError("keep_first needs the rank-1 slot (mask[:, 0]) to be a real candidate in every row")
        return num_select - int(self.keep_first)

    @torch.no_grad()
    def select(self, dialogue: Tensor, candidates: Tensor, mask: Tensor, num_select: int) -> Tensor:
        """Indices [B, num_select] of the plain top-c (rank-1 first when `keep_first`), for evaluation."""
        check_inputs(dialogue, candidates, mask)
        free = self._free_slots(mask, num_select)
        offset = int(self.keep_first)
        kept = torch.zeros(len(mask), offset, dtype=torch.long, device=mask.device)
        if free == 0:
            return kept
        log_probs = self(dialogue, candidates[:, offset:], mask[:, offset:])
        return torch.cat([kept, log_probs.topk(free, dim=1).indices + offset], dim=1)

    def sample(
        self,
        dialogue: Tensor,
        candidates: Tensor,
        mask: Tensor,
        num_select: int,
        temperature: float = 1.0,
        mode: Literal["soft", "hard"] = "hard",
        generator: torch.Generator | None = None,
        noise: bool = True,
    ) -> Tensor:
        """A differentiable k-hot [B, K] of num_select candidates drawn by Gumbel-top-k, for training.

        With `keep_first` the rank-1 slot is a constant 1 and c − 1 are sampled among the others;
        `noise=False` gives the relaxed plain top-c instead of a sample.
        """
        check_inputs(dialogue, candidates, mask)
        free = self._free_slots(mask, num_select)
        offset = int(self.keep_first)
        kept = torch.ones(len(mask), offset, dtype=self.score.weight.dtype, device=mask.device)
        if free == 0:
            return torch.cat([kept, torch.zeros_like(mask[:, 1:], dtype=kept.dtype)], dim=1)
        log_probs = self(dialogue, candidates[:, offset:], mask[:, offset:])
        khot = gumbel_topk(log_probs, free, temperature, mode, mask[:, offset:], generator, noise=noise)
        return torch.cat([kept, khot], dim=1)

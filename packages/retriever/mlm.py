"""IRRA's implicit relation reasoning (IRR): masked language modelling conditioned on the image.

The text encoder reads the masked caption; its token states attend to the image's token states through
one cross-attention and a small transformer, and an MLM head predicts the hidden words. Words can only be
recovered from what the image shows, which pushes fine-grained text–image relations into both encoders.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = -100  # labels of tokens that are not predicted (F.cross_entropy's default ignore_index)


def mask_tokens(
    input_ids: Tensor,
    attention_mask: Tensor,
    special_ids: Collection[int],
    mask_id: int,
    vocab_size: int,
    generator: torch.Generator,
    prob: float = 0.15,
) -> tuple[Tensor, Tensor]:
    """BERT-style masking of [B, L] ids: returns (masked_ids, labels), labels = IGNORE_INDEX where not chosen.

    Each real (attention_mask = 1), non-special token is chosen independently with probability `prob`; a
    chosen token becomes `mask_id` (80 %), a random non-special token (10 %) or stays (10 %). A row with
    nothing chosen gets one eligible position at random, replaced by `mask_id` (as IRRA forces one mask).
    Every draw has the full [B, L] shape, so the result depends only on the generator state and the shape.
    """
    if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
        raise ValueError(
            f"input_ids and attention_mask must both be [B, L], got {input_ids.shape}, {attention_mask.shape}"
        )
    excluded = torch.tensor(sorted({*special_ids, mask_id}), dtype=input_ids.dtype, device=input_ids.device)
    eligible = attention_mask.bool() & ~torch.isin(input_ids, excluded)
    empty = (~eligible.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"rows {empty} have no maskable token (only special or padding tokens)")
    allowed = torch.arange(vocab_size, dtype=input_ids.dtype)
    allowed = allowed[~torch.isin(allowed, excluded.cpu())]
    if len(allowed) == 0:
        raise ValueError("the vocabulary has no non-special token to use as a random replacement")

    def uniform() -> Tensor:
        return torch.rand(input_ids.shape, generator=generator, device=generator.device).to(input_ids.device)

    chosen = (uniform() < prob) & eligible
    fallback = torch.where(eligible, uniform(), -1.0).argmax(dim=1)
    forced = torch.zeros_like(chosen)
    forced[torch.arange(len(chosen)), fallback] = ~chosen.any(dim=1)
    chosen |= forced
    action = uniform()
    to_mask = chosen & ((action < 0.8) | forced)
    to_random = chosen & ~to_mask & (action < 0.9)
    picks = torch.randint(len(allowed), input_ids.shape, generator=generator, device=generator.device)
    random_ids = allowed.to(picks.device)[picks].to(input_ids.device)
    masked = torch.where(to_mask, mask_id, torch.where(to_random, random_ids, input_ids))
    return masked, torch.where(chosen, input_ids, IGNORE_INDEX)


class QuickGELU(nn.Module):
    """CLIP's GELU approximation x·σ(1.702x), used by IRRA's cross-modal blocks and MLM head."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class CrossModalMLM(nn.Module):
    """Text token states attend to image token states, then a transformer and an MLM head give vocab logits.

    As in IRRA: pre-LayerNorms on both inputs, one cross-attention without a residual (the output is made of
    image values selected by the text queries), `layers` pre-LN blocks of width `width` (heads = width / 64 by
    default, QuickGELU MLP ×4), a final LayerNorm, and Linear → QuickGELU → LayerNorm → Linear(vocab).
    Init follows CLIP/IRRA: attention in-projections N(0, width^-½), output projections and the MLP's second
    layer N(0, width^-½·(2·layers)^-½), MLP first layer and head dense N(0, (2·width)^-½), head output like an
    output projection, biases 0. Input projections (only when a hidden size differs from `width`) use
    N(0, in_dim^-½) like CLIP's projections.
    """

    def __init__(
        self,
        width: int,
        vocab_size: int,
        layers: int = 4,
        heads: int | None = None,
        text_dim: int | None = None,
        image_dim: int | None = None,
    ):
        super().__init__()
        heads = heads or max(1, width // 64)
        self.text_proj = self._input_proj(text_dim, width)
        self.image_proj = self._input_proj(image_dim, width)
        self.ln_pre_t = nn.LayerNorm(width)
        self.ln_pre_i = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        block = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, activation=QuickGELU(), batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.ln_post = nn.LayerNorm(width)
        self.head = nn.Sequential(
            OrderedDict(
                dense=nn.Linear(width, width), gelu=QuickGELU(), ln=nn.LayerNorm(width), fc=nn.Linear(width, vocab_size)
            )
        )
        self._init_weights(width, layers)

    @staticmethod
    def _input_proj(dim: int | None, width: int) -> nn.Module:
        if dim is None or dim == width:
            return nn.Identity()
        proj = nn.Linear(dim, width)
        nn.init.normal_(proj.weight, std=dim**-0.5)
        nn.init.zeros_(proj.bias)
        return proj

    def _init_weights(self, width: int, layers: int) -> None:
        attn_std = width**-0.5
        proj_std = attn_std * (2 * layers) ** -0.5
        fc_std = (2 * width) ** -0.5
        attentions = [self.cross_attn, *(b.self_attn for b in self.transformer.layers)]
        for attn in attentions:
            nn.init.normal_(attn.in_proj_weight, std=attn_std)
            nn.init.normal_(attn.out_proj.weight, std=proj_std)
            nn.init.zeros_(attn.in_proj_bias)
            nn.init.zeros_(attn.out_proj.bias)
        for block in self.transformer.layers:
            nn.init.normal_(block.linear1.weight, std=fc_std)
            nn.init.normal_(block.linear2.weight, std=proj_std)
            nn.init.zeros_(block.linear1.bias)
            nn.init.zeros_(block.linear2.bias)
        nn.init.normal_(self.head.dense.weight, std=fc_std)
        nn.init.normal_(self.head.fc.weight, std=proj_std)
        nn.init.zeros_(self.head.dense.bias)
        nn.init.zeros_(self.head.fc.bias)

    def forward(
        self,
        text_states: Tensor,
        image_states: Tensor,
        text_padding_mask: Tensor | None = None,
        positions: Tensor | None = None,
    ) -> Tensor:
        """Logits [B, L, V] for text states [B, L, Dt] and image states [B, P, Di].

        `text_padding_mask` [B, L] is True at padding (PyTorch's key_padding_mask convention); it keeps the
        blocks' self-attention off padding. `positions` [B, L] bool restricts the head to those tokens and
        returns [N, V] in row-major order (pass `labels != IGNORE_INDEX`): the vocab projection of every token
        would otherwise dominate memory (64 × 77 × 49408 floats ≈ 1 GB).
        """
        q = self.ln_pre_t(self.text_proj(text_states))
        kv = self.ln_pre_i(self.image_proj(image_states))
        x = self.cross_attn(q, kv, kv, need_weights=False)[0]
        x = self.ln_post(self.transformer(x, src_key_padding_mask=text_padding_mask))
        if positions is not None:
            x = x[positions]
        return self.head(x)


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over predicted tokens; IGNORE_INDEX labels (unchosen tokens, padding) are skipped."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE_INDEX)

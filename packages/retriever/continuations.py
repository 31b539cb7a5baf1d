"""Texts that share a beginning, encoded with the beginning's work done once.

CLIP's text tower is causal: a token attends only to itself and the tokens before it, so the hidden states of a
shared prefix are the same under every continuation, and the pooled end-of-text token reads nothing after itself.
The expected-gain rule (`ireid.core.expected_gain`) encodes the dialogue so far followed by each value's
statement: some 50 texts per dialogue that differ only in their last few tokens. Here each prefix runs through
the tower once, and every continuation runs only its own tokens, attending to the prefix's cached keys and values.
The embeddings equal `encode_text`'s up to float rounding (`tests/retriever/test_continuations.py`).

The prefix is found on the token ids, not the strings: it is the longest run of ids that all of a group's texts
share and that ends before the earliest pooled token, so tokenisation across the join needs no assumption.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ireid.retriever.model import RetrieverEncoding


@torch.no_grad()
def encode_continuations(
    encoding: RetrieverEncoding, prefixes: Sequence[str], endings: Sequence[Sequence[str]], batch_size: int = 256
) -> Tensor:
    """[T, E] normalised float32 embeddings of every `f"{prefix} {ending}"`, prefix by prefix, each prefix's
    endings in order: `encode_text` of those texts, with each prefix's tokens run once. Continuations run
    `batch_size` at a time."""
    if len(prefixes) != len(endings):
        raise ValueError(f"{len(prefixes)} prefixes but {len(endings)} lists of endings")
    texts = [f"{prefix} {ending}" for prefix, group in zip(prefixes, endings, strict=True) for ending in group]
    if not texts:
        raise ValueError("encode_continuations needs at least one ending")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    text = encoding.features.clip.text_model
    if encoding.tokenizer.padding_side != "right":  # positions count from the first token only with right padding
        return torch.cat([encoding.encode_text(texts[s : s + batch_size]) for s in range(0, len(texts), batch_size)])
    tokens = encoding.tokenize(texts)
    ids = tokens["input_ids"]
    owner = torch.tensor([g for g, group in enumerate(endings) for _ in group], device=ids.device)
    pooled = _pooled_positions(ids, text.eos_token_id)
    first = torch.full((len(prefixes),), len(ids) - 1, dtype=torch.long, device=ids.device)  # each group's first text
    first = first.scatter_reduce(0, owner, torch.arange(len(ids), device=ids.device), "amin")
    shared = _shared_lengths(ids, owner, first, pooled)
    keys, values = _prefix_cache(text, ids[first], shared)
    parts = []
    for start in range(0, len(texts), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(texts)), device=ids.device)
        group = owner[rows]
        parts.append(_continue(text, ids[rows], shared[group], pooled[rows], keys, values, group))
    projected = encoding.features.clip.text_projection(torch.cat(parts))
    return F.normalize(projected.float(), dim=-1)


def _pooled_positions(ids: Tensor, eos_token_id: int) -> Tensor:
    """[T] the token CLIP pools, by the text model's own rule: the first end-of-text id, or the highest id for
    configs from before that rule (eos_token_id 2)."""
    if eos_token_id == 2:
        return ids.to(torch.int).argmax(dim=-1)
    return (ids.to(torch.int) == eos_token_id).int().argmax(dim=-1)


def _shared_lengths(ids: Tensor, owner: Tensor, first: Tensor, pooled: Tensor) -> Tensor:
    """[G] per group, the tokens every member shares from the start, ending before the earliest pooled token
    (`owner` [T]: each text's group; `first` [G]: each group's first text)."""
    same = (ids == ids[first[owner]]).int().cumprod(dim=1).sum(dim=1)  # leading tokens equal to the group's first
    own = torch.minimum(same, pooled)  # the pooled token itself is always run with the continuation
    shared = torch.zeros(len(first), dtype=torch.long, device=ids.device)
    return shared.scatter_reduce(0, owner, own, "amin", include_self=False)


def _prefix_cache(text: nn.Module, ids: Tensor, shared: Tensor) -> tuple[Tensor, Tensor]:
    """Per layer, the keys and values of each group's shared tokens (`ids` [G, L]: a text of each group): two
    [G, layers, heads, S, head_dim] tensors (S = the longest shared prefix; places beyond a group's own length are
    never attended to)."""
    layers = text.encoder.layers
    attention = layers[0].self_attn
    width = int(shared.max())
    shape = (len(ids), len(layers), attention.num_heads, width, attention.head_dim)
    keys = torch.zeros(shape, dtype=text.final_layer_norm.weight.dtype, device=ids.device)
    values = torch.zeros_like(keys)
    if width == 0:
        return keys, values
    hidden = text.embeddings(input_ids=ids[:, :width])
    for depth, layer in enumerate(layers):
        q, k, v = _heads(layer, hidden)
        keys[:, depth], values[:, depth] = k, v
        if depth + 1 < len(layers):  # the last layer's outputs are never read: only its keys and values are
            hidden = _finish_layer(layer, hidden, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    return keys, values


def _continue(
    text: nn.Module, ids: Tensor, start: Tensor, pooled: Tensor, keys: Tensor, values: Tensor, group: Tensor
) -> Tensor:
    """[C, D] the final-LayerNorm hidden state at the pooled token of each continuation: its tokens from `start` to
    its pooled token, attending to its `group`'s cached prefix (`keys`, `values`: [G, layers, heads, S, head_dim],
    gathered a layer at a time, so that one layer's copy per continuation is held). Places after a continuation's
    pooled token are padding: causal attention keeps them out of every token that is read."""
    length = int((pooled - start).max()) + 1
    positions = (start[:, None] + torch.arange(length, device=ids.device)).clamp(max=ids.shape[1] - 1)
    hidden = text.embeddings(input_ids=ids.gather(1, positions), position_ids=positions)
    sees_prefix = torch.arange(keys.shape[3], device=ids.device)[None, :] < start[:, None]  # [C, S]
    causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()
    mask = torch.cat([sees_prefix[:, None, :].expand(-1, length, -1), causal[None].expand(len(ids), -1, -1)], dim=2)
    for depth, layer in enumerate(text.encoder.layers):
        q, k, v = _heads(layer, hidden)
        k = torch.cat([keys[group, depth], k], dim=2)
        v = torch.cat([values[group, depth], v], dim=2)
        hidden = _finish_layer(layer, hidden, F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None]))
    return text.final_layer_norm(hidden[torch.arange(len(ids), device=ids.device), pooled - start])


def _heads(layer: nn.Module, hidden: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Queries, keys and values of a CLIP encoder layer, [B, heads, L, head_dim] each."""
    attention = layer.self_attn
    normed = layer.layer_norm1(hidden)
    shape = (*hidden.shape[:2], attention.num_heads, attention.head_dim)
    projections = (attention.q_proj, attention.k_proj, attention.v_proj)
    q, k, v = (proj(normed).view(shape).transpose(1, 2) for proj in projections)
    return q, k, v


def _finish_layer(layer: nn.Module, hidden: Tensor, attended: Tensor) -> Tensor:
    """The rest of a CLIP encoder layer after attention: output projection, residual, MLP, residual."""
    hidden = hidden + layer.self_attn.out_proj(attended.transpose(1, 2).reshape(hidden.shape))
    return hidden + layer.mlp(layer.layer_norm2(hidden))

"""Prompt text to token ids: image placeholders expanded to each image's tokens, labels on the target only.

The embeddings are assembled by the model (image features scattered over the image-token positions), so the ids
only need the image token repeated as many times as one image yields tokens. Labels are -100 everywhere except the
target question and the end-of-turn token that closes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from ireid.questioner.prompt import IM_END, IMAGE

IGNORE = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]
    num_images: int


class PromptEncoder:
    """Tokenises prompts for a model whose images each become `tokens_per_image` embeddings."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, image_token_id: int, tokens_per_image: int):
        self.tokenizer = tokenizer
        self.image_token_id = image_token_id
        self.tokens_per_image = tokens_per_image
        end = tokenizer.convert_tokens_to_ids(IM_END)
        self.end_id: int = end if isinstance(end, int) and end != tokenizer.unk_token_id else tokenizer.eos_token_id
        self.pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.end_id

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode(self, prompt: str, target: str | None = None) -> Encoded:
        """Ids of `prompt` (each image placeholder expanded) and, when given, of `target` closed by end-of-turn."""
        pieces = [self._ids(piece) for piece in prompt.split(IMAGE)]
        if any(self.image_token_id in piece for piece in pieces):
            raise ValueError("prompt text outside the image placeholders tokenises to the image token")
        ids = pieces[0]
        for piece in pieces[1:]:
            ids = ids + [self.image_token_id] * self.tokens_per_image + piece
        labels = [IGNORE] * len(ids)
        if target is not None:
            answer = [*self._ids(target.strip()), self.end_id]
            ids, labels = ids + answer, labels + answer
        return Encoded(ids, labels, len(pieces) - 1)


def pad_batch(encoded: Sequence[Encoded], pad_id: int, side: str = "right") -> tuple[Tensor, Tensor, Tensor]:
    """input_ids, attention_mask and labels [B, L], padded on `side` ("left" for generation)."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    width = max(len(e.input_ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        n = len(e.input_ids)
        span = slice(width - n, width) if side == "left" else slice(0, n)
        ids[row, span] = torch.tensor(e.input_ids)
        labels[row, span] = torch.tensor(e.labels)
        mask[row, span] = 1
    return ids, mask, labels

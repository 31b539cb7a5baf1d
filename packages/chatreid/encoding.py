"""Conversations to Qwen2-VL inputs: the processor's chat template, image tokens, and labels on assistant tokens.

The assistant spans are found from the rendered text, not from `{% generation %}` markers, so any ChatML template
serves (the tiny models' and Qwen2-VL-Instruct's own, which has none): the text that the template renders for the
messages before an assistant turn, with the generation prompt, must be a prefix of the full rendering; the span
runs from there to the end of the turn's end-of-turn token. Token offsets from the processor, shifted past the
image placeholders it expands, map the spans to tokens. The labels are therefore the tokens a model would have to
generate after the prompt, which is exactly what inference asks of it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import Tensor
from transformers import ProcessorMixin

IGNORE_INDEX = -100


class EncodingError(ValueError):
    """A conversation that cannot become model input (too long, inconsistent template, image count)."""


@dataclass
class EncodedConversation:
    """One conversation's model inputs; `labels` are IGNORE_INDEX except on assistant tokens."""

    input_ids: Tensor  # [L] long
    labels: Tensor  # [L] long
    mm_token_type_ids: Tensor  # [L] long, 1 on image tokens
    pixel_values: Tensor | None  # [patches, D]
    image_grid_thw: Tensor | None  # [images, 3]


def template_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Content items as chat templates expect them: image items without their index, text items unchanged."""
    return [
        {
            "role": m["role"],
            "content": [{"type": "image"} if c["type"] == "image" else c for c in m["content"]],
        }
        for m in messages
    ]


def assistant_spans(processor: ProcessorMixin, messages: Sequence[dict[str, Any]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn (its text and end-of-turn token)."""
    rendered = template_messages(messages)
    full = processor.apply_chat_template(rendered, tokenize=False)
    eos = processor.tokenizer.eos_token
    spans = []
    for i, message in enumerate(rendered):
        if message["role"] != "assistant":
            continue
        prompt = processor.apply_chat_template(rendered[:i], tokenize=False, add_generation_prompt=True)
        through = processor.apply_chat_template(rendered[: i + 1], tokenize=False)
        if not (full.startswith(prompt) and full.startswith(through) and len(through) > len(prompt)):
            raise EncodingError(
                f"the chat template does not render message {i} as a continuation of the ones before it; "
                "assistant tokens cannot be located"
            )
        end = through.rfind(eos, len(prompt)) if eos else -1
        spans.append((len(prompt), end + len(eos) if end >= 0 else len(through)))
    return full, spans


def _token_mask(
    offsets: Tensor, replacements: Sequence[dict[str, Any]], spans: Sequence[tuple[int, int]], length: int
) -> Tensor:
    """Tokens overlapping a span; spans are shifted by what the image placeholders before them grew by."""
    placeholder_ends = [r["span"][1] for r in replacements]
    gained = [0] + [r["new_span"][1] - r["span"][1] for r in replacements]  # new_span is in the expanded text
    mask = torch.zeros(length, dtype=torch.bool)
    starts, ends = offsets[:, 0], offsets[:, 1]
    for start, end in spans:
        shifted_start = start + gained[bisect.bisect_right(placeholder_ends, start)]
        shifted_end = end + gained[bisect.bisect_right(placeholder_ends, end)]
        mask |= (starts < shifted_end) & (ends > shifted_start)
    return mask


def encode_conversation(
    processor: ProcessorMixin,
    messages: Sequence[dict[str, Any]],
    images: Sequence[Image.Image],
    max_length: int | None = None,
) -> EncodedConversation:
    """Model inputs for one conversation; `images` in the order their image items appear in `messages`."""
    wanted = sum(c["type"] == "image" for m in messages for c in m["content"])
    if wanted != len(images):
        raise EncodingError(f"the messages show {wanted} images but {len(images)} were given")
    text, spans = assistant_spans(processor, messages)
    out = processor(
        text=[text],
        images=list(images) or None,
        return_offsets_mapping=True,
        return_text_replacement_offsets=True,
        return_tensors="pt",
    )
    input_ids = out["input_ids"][0]
    if max_length is not None and input_ids.numel() > max_length:
        raise EncodingError(f"{input_ids.numel()} tokens exceed max_length {max_length}")
    replacements = (out.get("text_replacement_offsets") or [[]])[0]
    mask = _token_mask(out["offset_mapping"][0], replacements, spans, input_ids.numel())
    labels = torch.where(mask, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return EncodedConversation(
        input_ids=input_ids,
        labels=labels,
        mm_token_type_ids=out["mm_token_type_ids"][0].long(),
        pixel_values=out.get("pixel_values"),
        image_grid_thw=out.get("image_grid_thw"),
    )


def collate(samples: Sequence[EncodedConversation], pad_token_id: int) -> dict[str, Tensor]:
    """Right-padded batch: pad ids, IGNORE_INDEX labels, attention 0; image patches of all samples concatenated."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    length = max(s.input_ids.numel() for s in samples)
    batch = len(samples)
    input_ids = torch.full((batch, length), pad_token_id, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((batch, length), dtype=torch.long)
    token_types = torch.zeros((batch, length), dtype=torch.long)
    for row, sample in enumerate(samples):
        n = sample.input_ids.numel()
        input_ids[row, :n] = sample.input_ids
        labels[row, :n] = sample.labels
        attention[row, :n] = 1
        token_types[row, :n] = sample.mm_token_type_ids
    out = {"input_ids": input_ids, "attention_mask": attention, "labels": labels, "mm_token_type_ids": token_types}
    with_images = [s for s in samples if s.pixel_values is not None]
    if with_images:
        out["pixel_values"] = torch.cat([s.pixel_values for s in with_images])
        out["image_grid_thw"] = torch.cat([s.image_grid_thw for s in with_images])
    return out

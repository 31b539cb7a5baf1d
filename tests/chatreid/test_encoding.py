"""Conversations to model inputs: labels on assistant tokens only, whatever the chat template; batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ireid.chatreid.encoding import IGNORE_INDEX, EncodingError, collate, encode_conversation
from tests.chatreid.conversation_shards import conversation, image, text

# Qwen2-VL-Instruct's own template (no generation markers; a default system message).
QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def person(seed: int, hw: tuple[int, int] = (128, 64)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8))


def dialogue() -> list[dict]:
    """Two user turns with images (one in each), two assistant answers."""
    sample = conversation(
        3, "standard", ["q", "g"],
        [text("Is the person in "), image(0), text(" the one in "), image(1), text("?")], [text("Yes")],
        [text("Which colour is the top? Look at "), image(0)], [text("A red top.")],
    )  # fmt: skip
    return sample["messages"]


def labelled_text(processor, encoded) -> list[str]:
    """Decoded runs of consecutive labelled tokens."""
    runs, current = [], []
    for token, label in zip(encoded.input_ids.tolist(), encoded.labels.tolist(), strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            current.append(token)
        elif current:
            runs.append(processor.tokenizer.decode(current))
            current = []
    return runs + ([processor.tokenizer.decode(current)] if current else [])


@pytest.mark.parametrize("template", ["tiny", "qwen2-vl-instruct"])
def test_labels_cover_exactly_the_assistant_turns(processor, template):
    if template != "tiny":
        processor = type(processor)(processor.image_processor, processor.tokenizer, chat_template=QWEN2_VL_TEMPLATE)
    images = [person(0), person(1), person(0)]
    encoded = encode_conversation(processor, dialogue(), images)
    assert labelled_text(processor, encoded) == ["Yes<|im_end|>", "A red top.<|im_end|>"]
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    is_image = encoded.input_ids == image_id
    assert int(is_image.sum()) == 3 * (128 // 8) * (64 // 8) // 4 and torch.equal(encoded.mm_token_type_ids, is_image)
    assert encoded.image_grid_thw.tolist() == [[1, 16, 8]] * 3
    if template != "tiny":
        assert processor.tokenizer.decode(encoded.input_ids).startswith("<|im_start|>system\nYou are")


def test_too_long_or_miscounted_conversations_are_refused(processor):
    with pytest.raises(EncodingError, match="exceed max_length 50"):
        encode_conversation(processor, dialogue(), [person(0), person(1), person(0)], max_length=50)
    with pytest.raises(EncodingError, match="show 3 images but 2 were given"):
        encode_conversation(processor, dialogue(), [person(0), person(1)])


def test_collate_pads_right_and_concatenates_images(processor):
    long = encode_conversation(processor, dialogue(), [person(0), person(1), person(2)])
    short_messages = conversation(2, "t", [], [text("Hi")], [text("No")])["messages"]
    short = encode_conversation(processor, short_messages, [])
    batch = collate([short, long], pad_token_id=processor.tokenizer.pad_token_id)
    n_short, n_long = short.input_ids.numel(), long.input_ids.numel()
    assert batch["input_ids"].shape == (2, n_long)
    assert batch["attention_mask"][0].tolist() == [1] * n_short + [0] * (n_long - n_short)
    assert (batch["labels"][0, n_short:] == IGNORE_INDEX).all() and torch.equal(batch["labels"][1], long.labels)
    assert torch.equal(batch["pixel_values"], long.pixel_values) and batch["image_grid_thw"].shape == (3, 3)
    assert (batch["mm_token_type_ids"][0] == 0).all()

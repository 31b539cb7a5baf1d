"""Stage image size rules (paper §3.3): stage 1 standardises small crops up, stage 2 scales large ones down."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ireid.chatreid.conversations import Conversation
from ireid.chatreid.data import ConversationEncoder
from ireid.chatreid.image_sizes import SizeRule
from ireid.core.images import ImageStore
from tests.chatreid.conversation_shards import conversation, image, text

STAGE1 = SizeRule(min_hw=(256, 128))
STAGE2 = SizeRule(max_hw=(384, 192))


@pytest.mark.parametrize(
    ("hw", "stage1", "stage2"),
    [
        ((128, 64), (256, 128), (128, 64)),  # small: up to exactly 256×128 in stage 1, untouched in stage 2
        ((200, 150), (256, 128), (200, 150)),  # one side below the minimum is enough
        ((300, 150), (300, 150), (300, 150)),  # between the two sizes: untouched by both
        ((768, 384), (768, 384), (384, 192)),  # large: halved, aspect kept
        ((500, 100), (256, 128), (384, 77)),  # narrow: stage 1 standardises it; stage 2 scales by 384/500
        ((384, 192), (384, 192), (384, 192)),  # exactly the maximum
    ],
)
def test_stage_rules(hw, stage1, stage2):
    assert STAGE1.size(hw) == stage1 and STAGE2.size(hw) == stage2
    picture = Image.new("RGB", (hw[1], hw[0]))
    assert STAGE1(picture).size == (stage1[1], stage1[0]) and STAGE2(picture).size == (stage2[1], stage2[0])


def test_rules_refuse_impossible_sizes():
    with pytest.raises(ValueError, match="exceeds max_hw"):
        SizeRule(min_hw=(400, 200), max_hw=(384, 192))
    with pytest.raises(ValueError, match="positive integers"):
        SizeRule(max_hw=(0, 10))


def test_the_data_path_applies_the_rule_before_the_processor(processor):
    """A 128×64 crop under a 64×32 maximum reaches the model as 8×4 patches of 8 px instead of 16×8."""
    pixels = np.random.default_rng(0).integers(0, 256, (128, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    store = ImageStore({"k": buffer.getvalue()})
    sample = conversation(1, "caption", ["k"], [image(0), text("Describe.")], [text("A person.")])
    parsed = Conversation.from_dict(sample, "caption-0000000", "test")
    plain = ConversationEncoder(processor, store, SizeRule())(parsed)
    small = ConversationEncoder(processor, store, SizeRule(max_hw=(64, 32)))(parsed)
    assert plain.image_grid_thw.tolist() == [[1, 16, 8]] and small.image_grid_thw.tolist() == [[1, 8, 4]]


def test_an_exact_size_resizes_every_image_for_a_person_tower() -> None:
    rule = SizeRule(exact_hw=(128, 64))
    assert rule.size((300, 100)) == rule.size((32, 16)) == (128, 64)
    assert rule(Image.new("RGB", (100, 300))).size == (64, 128)
    with pytest.raises(ValueError, match="exact_hw"):
        SizeRule(exact_hw=(0, 64))

"""The conversation shard format: validation with named fields, reading, the validation hold-out, batches."""

from __future__ import annotations

import json

import pytest

from ireid.core.shards import ShardWriter
from ireid.vlm_reid.conversations import (
    Conversation,
    ConversationDataset,
    ConversationError,
    HoldoutFilter,
    conversation_shards,
)
from ireid.vlm_reid.data import ConversationData
from ireid.vlm_reid.encoding import IGNORE_INDEX
from tests.vlm_reid.conversation_shards import conversation, image, text


def valid() -> dict:
    return conversation(2, "i2i", ["a", "b"], [image(0), image(1), text("Same?")], [text("No")])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["messages"][0]["content"][1].update(index=2), r"content\[1\].index': 2 but the sample has 2"),
        (lambda d: d["messages"][1].update(role="system"), r"'messages\[1\].role': 'system'"),
        (lambda d: d["messages"].pop(), "no assistant message"),
        (lambda d: d.pop("images"), "missing field 'images'"),
        (lambda d: d.update(answer_positions=[0]), r"'answer_positions\[0\]': expected an integer >= 1"),
        (lambda d: d["messages"][0]["content"].append({"type": "video"}), "'video' is not 'image' or 'text'"),
    ],
)  # fmt: skip
def test_bad_samples_name_the_field(change, message):
    sample = valid()
    change(sample)
    with pytest.raises(ConversationError, match=message):
        Conversation.from_dict(sample, "k", "shard-0.tar: sample 'k'")


def test_image_order_follows_the_messages():
    sample = conversation(3, "t", ["q", "g1", "g2"], [image(2), image(0), image(2)], [text("x")])
    assert Conversation.from_dict(sample, "k", "w").image_order() == ["g2", "q", "g2"]


def test_holdout_splits_the_shards_disjointly_and_skips_bad_samples(tmp_path):
    with ShardWriter(tmp_path, "stage2", max_samples=30) as writer:
        for i in range(100):
            writer.write_sample(f"c{i:03d}", {"json": json.dumps(valid()).encode()})
        writer.write_sample("broken", {"json": b"{not json"})
    urls = conversation_shards(tmp_path, 2)
    train = ConversationDataset(urls, keep_key=HoldoutFilter(0.2, held_out=False))
    val = ConversationDataset(urls, keep_key=HoldoutFilter(0.2, held_out=True))
    train_keys, val_keys = {c.key for c in train}, {c.key for c in val}
    assert not train_keys & val_keys and len(train_keys | val_keys) == 100
    assert 5 <= len(val_keys) <= 40  # about 20 %
    assert train.skips.value + val.skips.value == 1, "the undecodable sample, counted by whichever side kept it"
    with pytest.raises(Exception, match="no manifest for split 'stage3'"):
        conversation_shards(tmp_path, 3)


def test_data_module_batches_a_stage(tiny_world, conversations, processor):
    data = ConversationData(str(conversations), str(tiny_world), stage=3, batch_size=3, val_fraction=0.25)
    data.processor = processor
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape[0] == 3 and batch["image_grid_thw"].shape == (12, 3), "4 images per sample"
    answers = [processor.tokenizer.decode(row[row != IGNORE_INDEX]) for row in batch["labels"]]
    assert all(a.startswith("Image ") and a.endswith(".<|im_end|>") for a in answers), answers
    assert next(iter(data.val_dataloader()))["input_ids"].shape[0] >= 1

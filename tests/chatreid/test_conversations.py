"""The conversation shard format: validation with named fields, reading, the validation hold-out, batches."""

from __future__ import annotations

import json

import pytest

from ireid.chatreid.conversations import (
    Conversation,
    ConversationDataset,
    ConversationError,
    HoldoutFilter,
    conversation_shards,
)
from ireid.chatreid.data import ConversationData
from ireid.chatreid.encoding import IGNORE_INDEX
from ireid.core.shards import ShardWriter
from tests.chatreid.conversation_shards import conversation, image, text


def valid() -> dict:
    return conversation(2, "i2i_one_to_one", ["a", "b"], [image(0), image(1), text("Same?")], [text("No")])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["messages"][0]["content"][1].update(index=2), r"content\[1\].index': 2 is not an index into 2"),
        (lambda d: d["messages"][0]["content"].reverse(), r"'messages': image parts use indices \[1, 0\]"),
        (lambda d: d["messages"][1].update(role="system"), r"'messages\[1\].role': 'system'"),
        (lambda d: d["messages"].pop(), "at least a user and an assistant turn"),
        (lambda d: d.pop("images"), r"missing field\(s\) \['images'\]"),
        (lambda d: d.update(task="i2i"), r"'task': 'i2i' is not a stage-2 task"),
        (lambda d: d.update(answer_positions=[1]), r"'answer_positions': \[1\] outside 1..0"),
        (lambda d: d["messages"][0]["content"].append({"type": "video"}), "'video' is not 'image' or 'text'"),
    ],
)  # fmt: skip
def test_bad_samples_name_the_field(change, message):
    sample = valid()
    change(sample)
    with pytest.raises(ConversationError, match=message):
        Conversation.from_dict(sample, "i2i_one_to_one-0000000", "shard-0.tar: sample 'k'")


def test_the_key_names_the_task():
    assert Conversation.from_dict(valid(), "i2i_one_to_one-0000007", "w").images == ("a", "b")
    with pytest.raises(ConversationError, match="does not match the key 'c007'"):
        Conversation.from_dict(valid(), "c007", "w")


def test_holdout_splits_the_shards_disjointly_and_skips_bad_samples(tmp_path):
    with ShardWriter(tmp_path, "stage2", max_samples=30) as writer:
        for i in range(100):
            writer.write_sample(f"i2i_one_to_one-{i:07d}", {"json": json.dumps(valid()).encode()})
        writer.write_sample("broken", {"json": b"{not json"})
        writer.write_sample("reid_standard-0000100", {"json": json.dumps(valid()).encode()})  # key of another task
    urls = conversation_shards(tmp_path, 2)
    train = ConversationDataset(urls, keep_key=HoldoutFilter(0.2, held_out=False))
    val = ConversationDataset(urls, keep_key=HoldoutFilter(0.2, held_out=True))
    train_keys, val_keys = {c.key for c in train}, {c.key for c in val}
    assert not train_keys & val_keys and len(train_keys | val_keys) == 100
    assert 5 <= len(val_keys) <= 40  # about 20 %
    assert train.skips.value + val.skips.value == 2, "the two bad samples, counted by whichever side kept them"
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

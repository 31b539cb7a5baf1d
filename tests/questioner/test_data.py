"""Look-forward shards joined with the data set's images: one example per (record, round), clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ireid.core.images import ImageStore
from ireid.core.loader import iter_samples, load_records
from ireid.core.shards import ShardWriter
from ireid.questioner.data import QuestionerData, QuestionerDataset, collate, read_rounds
from tests.questioner.conftest import EMBEDDING_DIM, POOL, ROUNDS, npy


def test_one_example_per_record_and_round_with_the_dialogue_so_far(tiny_world: Path, lookforward: Path) -> None:
    records = load_records(tiny_world, "train")
    examples = read_rounds(lookforward, "train")
    assert len(examples) == ROUNDS * len(records)
    first, second = examples[0], examples[1]
    record = records[0]
    assert (first.key, first.round, second.round) == (record.key, 1, 2)
    assert first.dialogue().turns == [] and first.question == record.qas[0].question
    assert [(t.question, t.answer) for t in second.dialogue().turns] == [(record.qas[0].question, record.qas[0].answer)]
    assert second.dialogue().initial == record.initial_description and first.candidates[0] == record.key


def test_max_records_keeps_whole_records_spread_over_the_split(lookforward: Path) -> None:
    everything = read_rounds(lookforward, "train")
    keys = list(dict.fromkeys(e.key for e in everything))
    kept = read_rounds(lookforward, "train", max_records=3)
    assert list(dict.fromkeys(e.key for e in kept)) == [keys[0], keys[len(keys) // 2], keys[-1]]
    assert len(kept) == 3 * ROUNDS


def test_warmup_items_carry_the_top_images_and_joint_items_every_candidate(tiny_world: Path, lookforward: Path) -> None:
    images = {s.key: s.image for s in iter_samples(tiny_world, "train", decode_images=False)}
    examples = read_rounds(lookforward, "train")
    bank = ImageStore.from_shards(tiny_world, "train")
    warm = QuestionerDataset(examples, bank, "warmup", num_images=4)[1]
    assert warm["images"] == [images[k] for k in examples[1].candidates[:4]]
    assert "candidate_embeddings" not in warm
    joint = collate([QuestionerDataset(examples, bank, "joint")[i] for i in range(3)])
    assert joint["candidates"].shape == (3, POOL, EMBEDDING_DIM) and joint["mask"].all()
    assert joint["dialogue"].shape == (3, EMBEDDING_DIM) and joint["candidates"].dtype == torch.float32
    assert len(joint["images"][0]) == POOL and joint["questions"][0] == examples[0].question


def test_collate_pads_shorter_candidate_lists() -> None:
    items = [
        {"dialogue": None, "question": "q", "images": [], "dialogue_embedding": torch.ones(2),
         "candidate_embeddings": torch.ones(n, 2)}
        for n in (3, 1)
    ]  # fmt: skip
    batch = collate(items)
    assert batch["mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["candidates"][1, 1:].abs().sum() == 0


def test_a_candidate_without_an_image_names_the_shard_and_field(tiny_world: Path, lookforward: Path) -> None:
    examples = read_rounds(lookforward, "train")
    with pytest.raises(KeyError, match=r"train-000000\.tar: record .* field 'candidates' names .* no image in .*val"):
        QuestionerDataset(examples, ImageStore.from_shards(tiny_world, "val"))


def test_array_shapes_that_disagree_with_the_candidates_are_errors(tiny_world: Path, tmp_path: Path) -> None:
    record = load_records(tiny_world, "train")[0]
    meta = {"key": record.key, "pid": 0, "initial": "x", "rounds": [
        {"round": 1, "dialogue": [], "question": "q?", "answer": "a", "candidates": [record.key] * 3}]}  # fmt: skip
    with ShardWriter(tmp_path, "train") as writer:
        writer.write_sample(
            record.key,
            {"json": json.dumps(meta).encode(), "dialogue.npy": npy(torch.zeros(1, 4).numpy()),
             "r1.npy": npy(torch.zeros(2, 4).numpy())},
        )  # fmt: skip
    dataset = QuestionerDataset(read_rounds(tmp_path, "train"), ImageStore.from_shards(tiny_world, "train"), "joint")
    with pytest.raises(ValueError, match=r"r1\.npy has shape \(2, 4\), expected \(3, 4\) for field 'candidates'"):
        dataset[0]


def test_missing_fields_name_the_shard_and_field(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, "train") as writer:
        writer.write_sample("k", {"json": json.dumps({"key": "k", "initial": "x", "rounds": [{"round": 1}]}).encode(),
                                  "dialogue.npy": npy(torch.zeros(1, 2).numpy())})  # fmt: skip
    with pytest.raises(
        ValueError, match=r"train-000000\.tar: sample 'k': field 'rounds\[0\]': missing field 'dialogue'"
    ):
        read_rounds(tmp_path, "train")


def test_without_a_val_split_whole_records_are_held_out(tiny_world: Path, lookforward: Path) -> None:
    data = QuestionerData(str(lookforward), str(tiny_world), val_split=None, holdout=0.25, batch_size=2)
    data.setup("fit")
    train_keys = {e.key for e in data.train_set.examples}
    val_keys = {e.key for e in data.val_set.examples}
    assert not train_keys & val_keys and len(val_keys) == round(0.25 * (len(train_keys) + len(val_keys)))
    batch = next(iter(data.train_dataloader()))
    assert len(batch["dialogues"]) == 2 and len(batch["images"][0]) == 4

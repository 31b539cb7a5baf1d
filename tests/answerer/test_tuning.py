"""The tuned witness: its training chats and labels, packing that changes nothing, exact resume, the saved witness."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ireid.answerer import build_witness, load_prompt, witness_conversation
from ireid.answerer.consistency import consistency, sample_questions
from ireid.answerer.tune_cli import main as tune_main
from ireid.answerer.tuned import WITNESS_FILE, read_witness_file
from ireid.answerer.tuning import WitnessTuner, WitnessTuningData, reply_loss, warmup_cosine
from ireid.answerer.tuning_data import (
    IGNORE,
    PackedBatches,
    collate,
    encode_example,
    pack,
    reply_end_id,
    witness_examples,
)
from ireid.core.lightning_cli import AtomicCheckpointIO
from ireid.core.llm import load_chat_llm
from ireid.core.loader import load_records
from ireid.core.records import QA
from ireid.core.synthetic import world
from ireid.core.tokenizer import train_bpe_tokenizer
from tests.helpers import quiet_trainer

RECORDS = world.world_records(0, world.plan_identities(0, 6, 0, 0), images_per_id=1)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dialogue = [text for r in RECORDS for qa in r.qas for text in (qa.question, qa.answer)]
    out = tmp_path_factory.mktemp("tuning-tok")
    train_bpe_tokenizer([load_prompt()] * 4 + [r.fine_description for r in RECORDS] + dialogue, out, vocab_size=600)
    return out


@pytest.fixture(scope="module")
def chat(tokenizer_dir: Path):
    return load_chat_llm("tiny", tokenizer_dir=tokenizer_dir)


def _chats(records) -> dict[str, tuple]:
    """Every chat the witness would be sent about the records, with its record and Q&A pair."""
    template = load_prompt()
    return {
        witness_conversation(template, qa.question, r.fine_description)[0]["content"]: (r, qa)
        for r in records
        for qa in r.qas
    }


def test_examples_are_the_witness_chats_answered_with_the_annotations() -> None:
    short = dataclasses.replace(RECORDS[0], qas=[QA("Hat?", "No.", "descriptive", attribute="hat"), *RECORDS[0].qas])
    records = [short, *RECORDS[1:]]
    groups = witness_examples(records, 20, seed=3)
    assert sum(len(g) for g in groups) == 20 and groups == witness_examples(records, 20, seed=3)
    chats = _chats(records)
    for group in groups:
        assert len({chats[e.conversation[0]["content"]][0].key for e in group}) == 1  # one memory per group
        for example in group:
            (message,) = example.conversation
            _, qa = chats[message["content"]]
            assert message["role"] == "user" and example.reply == qa.answer
            assert len(qa.question) >= 15  # "Hat?" never becomes an example
    assert [len(g) for g in witness_examples(records, 7, seed=3, pairs_per_record=2)] == [2, 2, 2, 1]


def test_labels_cover_exactly_the_reply_tokens_and_the_end_of_turn(chat) -> None:
    tokenizer = chat.tokenizer
    (group,) = witness_examples(RECORDS[:1], 3, seed=0)
    encoded = [encode_example(tokenizer, e) for e in group]
    for example, enc in zip(group, encoded, strict=True):
        assert enc.prompt == chat._prompt_ids(0, example.conversation, 1)  # what the witness sends at answer time
        assert tokenizer.decode(enc.reply[:-1]) == example.reply and enc.reply[-1] == reply_end_id(tokenizer)
        assert tokenizer.convert_ids_to_tokens(enc.reply[-1]) == "<|im_end|>"
    packed = pack(encoded)
    assert len(packed.input_ids) < sum(len(e.prompt) + len(e.reply) for e in encoded)  # the shared part once
    for k, enc in enumerate(encoded, start=1):
        rows = [i for i, s in enumerate(packed.segments) if s == k]
        scored = [packed.targets[i] for i in rows if packed.targets[i] != IGNORE]
        assert scored == enc.reply  # exactly the reply and its end, nothing of the prompt
        # the token before each target is the one the model reads: the example's own sequence, shifted by one
        alone = enc.prompt + enc.reply
        for i in rows:
            if packed.targets[i] != IGNORE:
                position = packed.positions[i]
                assert packed.input_ids[i] == alone[position] and packed.targets[i] == alone[position + 1]
    assert all(t == IGNORE for t, s in zip(packed.targets, packed.segments, strict=True) if s == 0)


def test_packed_loss_equals_the_loss_of_each_example_alone(chat) -> None:
    torch.manual_seed(0)
    model = chat.model.float()
    (group,) = witness_examples(RECORDS[1:2], 4, seed=0)
    encoded = [encode_example(chat.tokenizer, e) for e in group]
    pad = chat.tokenizer.pad_token_id
    packed = reply_loss(model, collate([pack(encoded[:3]), pack(encoded[3:])], pad))
    total, tokens = 0.0, 0
    for enc in encoded:  # the plain causal LM on the example alone, labels on the reply only
        ids = torch.tensor([enc.prompt + enc.reply])
        labels = torch.tensor([[IGNORE] * len(enc.prompt) + enc.reply])
        total += model(input_ids=ids, labels=labels).loss.item() * len(enc.reply)
        tokens += len(enc.reply)
    assert packed.item() == pytest.approx(total / tokens, rel=1e-4)


def test_the_training_stream_is_a_function_of_the_step(chat) -> None:
    groups = witness_examples(RECORDS, 30, seed=0)
    sequences = [pack([encode_example(chat.tokenizer, e) for e in g]) for g in groups]
    stream = PackedBatches(sequences, batch_size=2, pad_id=0, seed=5)
    first = [b for _, b in zip(range(6), stream, strict=False)]
    resumed = [b for _, b in zip(range(3), PackedBatches(sequences, 2, 0, seed=5, start=3), strict=False)]
    for a, b in zip(first[3:], resumed, strict=True):
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["targets"], b["targets"])
    one_pass = [row.tolist() for b in first[: stream.batches_per_pass] for row in b["input_ids"]]
    assert sorted(tuple(r[: len(s.input_ids)]) for r, s in zip(one_pass, sequences, strict=False)) == sorted(
        tuple(s.input_ids) for s in sequences
    )  # a pass visits every sequence once
    ranks = [PackedBatches(sequences, 2, 0, seed=5, reader=r, readers=2).batch(1) for r in (0, 1)]
    assert torch.equal(ranks[0]["input_ids"], stream.batch(2)["input_ids"])
    assert torch.equal(ranks[1]["input_ids"], stream.batch(3)["input_ids"])


def test_warm_up_then_cosine() -> None:
    assert [warmup_cosine(s, total=10, warmup=2) for s in (0, 1)] == [0.5, 1.0]
    assert warmup_cosine(2, 10, 2) == pytest.approx(1.0) and warmup_cosine(6, 10, 2) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 2) == pytest.approx(0.0)


def test_consistency_scores_answers_by_their_stated_values() -> None:
    items = sample_questions(RECORDS, 6, seed=0)
    assert [qa.qtype for _, qa in items].count("descriptive") == 3
    perfect = consistency([qa.answer for _, qa in items], items)
    assert perfect["consistent"] == 1.0 and perfect["strict"] == 1.0
    wrong = consistency(["I don't know."] * len(items), items)
    assert wrong["consistent"] == 0.0 and len(wrong["answers"]) == 6


def _module(tokenizer_dir: Path, **kw) -> WitnessTuner:
    return WitnessTuner("tiny", tokenizer=str(tokenizer_dir), lora={"r": 8, "alpha": 16, "dropout": 0.0}, **kw)


def _trainer(tmp: Path, max_steps: int, callbacks: list[Callback]) -> L.Trainer:
    return quiet_trainer(
        max_steps,
        enable_checkpointing=True,
        limit_val_batches=0,
        plugins=[AtomicCheckpointIO()],
        callbacks=callbacks,
        default_root_dir=tmp,
    )


class StopAfter(Callback):
    """Ends fit after `steps` optimiser steps, as an interrupted run ends (its schedule planned for more)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        trainer.should_stop = trainer.global_step >= self.steps


class OptimiserAtStart(Callback):
    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.step = trainer.global_step
        self.state = copy.deepcopy(trainer.optimizers[0].state_dict())  # later steps update it in place


def test_resume_continues_from_the_saved_step_with_the_same_optimiser(tokenizer_dir: Path, tiny_world: Path, tmp_path):
    def data(module: WitnessTuner) -> WitnessTuningData:
        return WitnessTuningData(
            str(tiny_world), module.tokenizer, pairs=6, pairs_per_record=2, batch_size=1, val_questions=0
        )

    def lora(module: WitnessTuner) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.named_parameters() if v.requires_grad}

    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_last=True)
    first = _module(tokenizer_dir, lr=5e-3)
    _trainer(tmp_path, 4, [checkpoints, StopAfter(2)]).fit(first, data(first))
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2 and set(saved["state_dict"]) == set(lora(first))  # the adapter only

    resumed, start = _module(tokenizer_dir, lr=5e-3), OptimiserAtStart()
    _trainer(tmp_path, 4, [start]).fit(resumed, data(resumed), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    assert start.step == 2
    for key, value in saved["optimizer_states"][0]["state"].items():
        assert torch.equal(start.state["state"][key]["exp_avg"], value["exp_avg"])
        assert start.state["state"][key]["step"] == value["step"] == 2

    straight = _module(tokenizer_dir, lr=5e-3)
    _trainer(tmp_path / "straight", 4, []).fit(straight, data(straight))
    for name, value in lora(straight).items():  # the same data, schedule and state: the same weights
        assert torch.allclose(lora(resumed)[name], value, atol=1e-6), name


def test_tuning_cli_teaches_the_tiny_model_an_answer_and_the_saved_witness_gives_it(
    tokenizer_dir: Path, tiny_world: Path, tmp_path
):
    out = tmp_path / "tuned"
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_steps": 60,
            "logger": False,
            "enable_progress_bar": False,
            "val_check_interval": 60,
            "check_val_every_n_epoch": None,
            "num_sanity_val_steps": 0,
            "default_root_dir": str(tmp_path),
        },
        "model": {
            "source": "tiny",
            "tokenizer": str(tokenizer_dir),
            "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
            "lr": 1e-2,
            "warmup_ratio": 0.05,
            "max_new_tokens": 24,
            "out_dir": str(out),
        },
        "data": {"data": str(tiny_world), "pairs": 3, "batch_size": 1, "val_questions": 4, "seed": 1},
    }
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config))
    assert tune_main(["--config", str(path)]) == 0

    meta = read_witness_file(out)
    assert meta["base"] == "tiny" and meta["training"]["steps"] == 60 and meta["training"]["data"]["pairs"] == 3
    assert 0.0 <= meta["training"]["validation"]["val/consistent"] <= 1.0
    train = load_records(tiny_world, "train")
    (group,) = witness_examples(train, 3, seed=1)
    record, qa = _chats(train)[group[0].conversation[0]["content"]]
    witness = build_witness(f"tuned:{out}", max_new_tokens=24)
    assert witness.answer([qa.question], [record.fine_description]) == [qa.answer]
    untuned = build_witness("tiny", tokenizer_dir=out / meta["tokenizer"], max_new_tokens=24)
    assert untuned.answer([qa.question], [record.fine_description]) != [qa.answer]  # the adapter made the difference


def test_a_folder_without_witness_json_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=f"{WITNESS_FILE} is missing"):
        build_witness(f"tuned:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="no such tuned witness folder"):
        build_witness(f"tuned:{tmp_path / 'absent'}")
    (tmp_path / WITNESS_FILE).write_text('{"format": "ireid-tuned-witness/1", "base": "smollm2"}')
    with pytest.raises(ValueError, match="field 'adapter'"):
        read_witness_file(tmp_path)
    with pytest.raises(ValueError, match="prompt it was tuned on"):
        build_witness(f"tuned:{tmp_path}", layout="system")

"""Fixtures of the questioner tests: a look-forward folder over the tiny world, a tokenizer, tiny models."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ireid.core.loader import load_records
from ireid.core.shards import ShardWriter
from ireid.questioner.model import QuestionerModel, build_questioner_model
from ireid.questioner.module import QuestionerModule
from ireid.questioner.tokenizer import questioner_tokenizer
from ireid.selector.data import SyntheticSelectorData
from ireid.selector.model import Selector
from ireid.selector.module import SelectorWarmup
from tests.helpers import quiet_trainer

EMBEDDING_DIM = 8
ROUNDS = 2
POOL = 6  # candidates per round

# A tiny LLaVA-OneVision: 32-px images in 8-px patches (a 4×4 grid, 4 tokens per image after pooling).
TINY = {
    "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1},
    "vision_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1},
}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_lookforward(data: Path, out: Path, split: str, rounds: int = ROUNDS, seed: int = 0) -> None:
    """Look-forward samples in `ireid lookforward`'s format over `data`'s split: the record's own Q&As as
    targets, the candidates its own key first and then the split's next keys, random embeddings."""
    records = load_records(data, split)
    keys = [r.key for r in records]
    rng = np.random.default_rng(seed)
    with ShardWriter(out, split, max_samples=5) as writer:
        for i, record in enumerate(records):
            candidates = [record.key, *[keys[(i + j) % len(keys)] for j in range(1, POOL)]]
            meta_rounds, members = [], {}
            for t in range(1, rounds + 1):
                meta_rounds.append(
                    {
                        "round": t,
                        "dialogue": [{"question": q.question, "answer": q.answer} for q in record.qas[: t - 1]],
                        "question": record.qas[t - 1].question,
                        "answer": record.qas[t - 1].answer,
                        "rank_before": 3,
                        "rank_after": 1,
                        "candidates": candidates,
                    }
                )
                members[f"r{t}.npy"] = npy(rng.standard_normal((POOL, EMBEDDING_DIM)).astype(np.float16))
            meta = {"key": record.key, "pid": record.pid, "initial": record.initial_description, "rounds": meta_rounds}
            dialogue = rng.standard_normal((rounds, EMBEDDING_DIM)).astype(np.float16)
            writer.write_sample(
                record.key, {"json": json.dumps(meta).encode(), "dialogue.npy": npy(dialogue), **members}
            )


@pytest.fixture(scope="session")
def lookforward(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lookforward")
    write_lookforward(tiny_world, out, "train")
    write_lookforward(tiny_world, out, "val")
    return out


@pytest.fixture(scope="session")
def tokenizer(tiny_world: Path):
    return questioner_tokenizer(tiny_world, vocab_size=600)


@pytest.fixture(scope="session")
def tiny_questioner(tokenizer) -> QuestionerModel:
    torch.set_num_threads(1)  # tiny tensors: on a busy 2-core machine a second thread only adds waiting
    return QuestionerModel(build_questioner_model("tiny", tokenizer, TINY), pool=2, system="You are a helper.")


@pytest.fixture(scope="session")
def selector_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `SelectorWarmup` checkpoint after one optimiser step, written by Lightning."""
    trainer = quiet_trainer(1)
    data = SyntheticSelectorData(num_train=16, num_val=8, num_candidates=6, dim=EMBEDDING_DIM, batch_size=8)
    trainer.fit(SelectorWarmup(Selector(dim=16, layers=1, heads=2, input_dim=EMBEDDING_DIM)), datamodule=data)
    path = tmp_path_factory.mktemp("selector") / "warmup.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def questioner(tiny_world: Path, tower_file: Path) -> QuestionerModule:
    """A tiny questioner seeing through `tower_file`'s frozen tower, pooled 4×4."""
    return QuestionerModule(
        tokenizer=str(tiny_world), tokenizer_vocab=600, overrides=TINY, vision_checkpoint=str(tower_file), pool=4
    ).eval()

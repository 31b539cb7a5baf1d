"""Fixtures of the ChatReID tests: a tiny processor, conversation shards, and the three stages trained briefly."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from transformers import ProcessorMixin

from ireid.chatreid.data import ConversationData
from ireid.chatreid.module import ChatReIDModule
from ireid.core.factory import build_model
from ireid.core.tokenizer import dataset_tokenizer
from tests.chatreid.conversation_shards import write_stages
from tests.helpers import quiet_trainer


@pytest.fixture(scope="session")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: on a busy 2-core machine a second thread only adds waiting
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def processor(tiny_world: Path) -> ProcessorMixin:
    return build_model("qwen2-vl", tokenizer=dataset_tokenizer(tiny_world, 2048)).processor


@pytest.fixture(scope="session")
def conversations(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_stages(tiny_world, tmp_path_factory.mktemp("conversations"), count=24)


def fit(module: ChatReIDModule, data: ConversationData, steps: int, ckpt: Path) -> Path:
    trainer = quiet_trainer(steps, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(ckpt)
    return ckpt


def stage_data(world: Path, conversations: Path, stage: int) -> ConversationData:
    return ConversationData(str(conversations), str(world), stage, batch_size=4, val_fraction=0.0, shuffle_buffer=8)


@dataclass
class Stages:
    world: Path
    conversations: Path
    starts: dict[int, dict[str, torch.Tensor]]  # each stage's weights as built, before its training
    ckpts: dict[int, Path]
    modules: dict[int, ChatReIDModule]


@pytest.fixture(scope="session")
def stages(single_thread, tiny_world: Path, conversations: Path, tmp_path_factory: pytest.TempPathFactory) -> Stages:
    """Stage 1 → 2 → 3, a few optimiser steps each (lr high enough that every trained weight moves)."""
    out = tmp_path_factory.mktemp("stages")
    ckpts: dict[int, Path] = {}
    modules: dict[int, ChatReIDModule] = {}
    starts: dict[int, dict[str, torch.Tensor]] = {}
    for stage in (1, 2, 3):
        module = ChatReIDModule(
            stage, data_dir=str(tiny_world), init_from=str(ckpts[stage - 1]) if stage > 1 else None, lr=1e-2,
            warmup_fraction=0.0,
        )  # fmt: skip
        starts[stage] = {k: v.clone() for k, v in module.model.state_dict().items()}
        modules[stage] = module
        ckpts[stage] = fit(module, stage_data(tiny_world, conversations, stage), 3, out / f"stage{stage}.ckpt")
    return Stages(tiny_world, conversations, starts, ckpts, modules)

"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from ireid.core.records import Record
from ireid.retriever.inference import export_vision_tower
from ireid.retriever.module import RetrieverModule
from tests.helpers import make_record


@pytest.fixture
def records() -> list[Record]:
    return [make_record(i) for i in range(10)]


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic world shared by the tests that train or index (12/4/6 ids × 2 images)."""
    from ireid.core.synthetic.world import build_world

    out = tmp_path_factory.mktemp("tiny_world")
    build_world(out, ids_train=12, ids_val=4, ids_test=6, images_per_id=2, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def tower_file(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny retriever's image encoder as a vision tower file, and its checkpoint beside it."""
    torch.manual_seed(0)
    module = RetrieverModule(str(tiny_world), losses="sdm", text_length=64)
    folder = tmp_path_factory.mktemp("tower")
    ckpt = folder / "retriever.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": L.__version__}, ckpt)  # fmt: skip
    return export_vision_tower(ckpt, folder / "tower.pt")

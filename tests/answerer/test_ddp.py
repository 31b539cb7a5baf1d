"""Witness tuning (LoRA on a tiny chat model) on two processes (gloo)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.answerer.test_tuning import tokenizer_dir  # noqa: F401 - the fixture
from tests.helpers import train_on_two_processes


def test_witness_tuning_trains_on_two_processes(tokenizer_dir: Path, tiny_world: Path, tmp_path: Path) -> None:  # noqa: F811
    config = {
        "seed_everything": 0,
        "trainer": {"max_steps": 2, "logger": False, "enable_progress_bar": False, "val_check_interval": 2,
                    "check_val_every_n_epoch": None, "num_sanity_val_steps": 0, "default_root_dir": str(tmp_path)},
        "model": {"source": "tiny", "tokenizer": str(tokenizer_dir), "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
                  "lr": 1e-2, "max_new_tokens": 8, "out_dir": str(tmp_path / "tuned")},
        "data": {"data": str(tiny_world), "pairs": 4, "batch_size": 1, "val_questions": 4, "seed": 1},
    }  # fmt: skip
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config))
    train_on_two_processes("ireid.answerer", ["tune", "--config", str(path)], tmp_path)
    assert (tmp_path / "tuned").is_dir()

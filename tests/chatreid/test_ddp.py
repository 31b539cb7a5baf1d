"""A ChatReID stage on two processes (gloo), its validation loss synced across the ranks."""

from __future__ import annotations

from pathlib import Path

from tests.chatreid.test_train_cli import stage_config
from tests.helpers import train_on_two_processes


def test_a_chatreid_stage_trains_on_two_processes(tiny_world: Path, conversations: Path, tmp_path: Path) -> None:
    config = stage_config(1, tmp_path, tiny_world, conversations)
    short = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
             "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip
    train_on_two_processes("ireid.chatreid", ["fit", "--config", str(config), *short], tmp_path)
    assert (tmp_path / "stage1" / "last.ckpt").is_file()

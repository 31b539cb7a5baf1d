"""The questioner's warm-up and joint stages on two processes (gloo), the validation loss synced across the ranks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import train_on_two_processes
from tests.questioner.conftest import TINY
from tests.questioner.test_module import CONFIGS


@pytest.mark.parametrize("stage", ["warmup", "joint"])
def test_the_questioner_trains_on_two_processes(
    stage: str, tiny_world: Path, lookforward: Path, tower_file: Path, selector_checkpoint: Path, tmp_path: Path
) -> None:
    """The warm-up, and the joint stage (LLaVA-ReID §4.3: the selector's hard top-k images in the questioner's
    prompt, both trained)."""
    args = [
        "fit", "--config", str(CONFIGS / f"{stage}-synthetic.yaml"), "--trainer.logger.init_args.save_dir",
        str(tmp_path), "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
        "--data.lookforward", str(lookforward), "--data.data", str(tiny_world), "--data.batch_size", "2",
        "--model.tokenizer", str(tiny_world), "--model.tokenizer_vocab", "600", "--model.overrides", json.dumps(TINY),
        "--model.vision_checkpoint", str(tower_file),
    ]  # fmt: skip
    if stage == "joint":
        args += ["--model.init_checkpoint", "null", "--model.selector_checkpoint", str(selector_checkpoint)]
    train_on_two_processes("ireid.questioner", args, tmp_path)
    assert {p.name for p in next(tmp_path.rglob("checkpoints")).iterdir()} >= {"last.ckpt"}

"""`python -m ireid.chatreid fit` with the three synthetic stage configs, chained through their checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ireid.chatreid.checkpoint import is_vision_parameter, read_checkpoint
from ireid.chatreid.inference import ChatReID
from ireid.chatreid.train_cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "chatreid"


def stage_config(stage: int, out: Path, world: Path, conversations: Path) -> Path:
    """The shipped config with this run's folders (a callback list cannot be overridden item by item)."""
    config = yaml.safe_load((CONFIGS / f"stage{stage}-synthetic.yaml").read_text())
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(out / "runs")
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(out / f"stage{stage}")
    config["data"].update(conversations_dir=str(conversations), data_dir=str(world), val_fraction=0.25)
    if stage > 1:
        config["model"]["init_from"] = str(out / f"stage{stage - 1}" / "best.ckpt")
    path = out / f"stage{stage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_three_configs_train_in_sequence(single_thread, tiny_world, conversations, tmp_path):
    short = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
             "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false"]  # fmt: skip
    for stage in (1, 2, 3):
        assert main(["fit", "--config", str(stage_config(stage, tmp_path, tiny_world, conversations)), *short]) == 0
        assert {p.name for p in (tmp_path / f"stage{stage}").iterdir()} == {"best.ckpt", "last.ckpt"}
        assert read_checkpoint(tmp_path / f"stage{stage}" / "best.ckpt").stage == stage
    events = EventAccumulator(str(next((tmp_path / "runs" / "stage3-synthetic").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert {"train/loss", "val/loss", "data/skipped_samples"} <= set(events.Tags()["scalars"])
    assert events.Scalars("data/skipped_samples")[-1].value == 0
    trained = ChatReID.from_checkpoint(tmp_path / "stage3" / "last.ckpt").model.state_dict()
    start = read_checkpoint(tmp_path / "stage2" / "best.ckpt").state
    vision = [k for k in start if is_vision_parameter(k, merger_in_encoder=True)]
    assert all(torch.equal(trained[k], start[k]) for k in vision), "stage 3 left the encoder as stage 2 made it"
    assert not torch.equal(trained["lm_head.weight"], start["lm_head.weight"])

"""`python -m ireid.chatreid fit` with the three synthetic stage configs, chained through their checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ireid.chatreid.checkpoint import is_vision_parameter, read_checkpoint
from ireid.chatreid.inference import ChatReID
from ireid.chatreid.module import ChatReIDModule
from ireid.chatreid.train_cli import main
from ireid.core.lightning_cli import compose_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "chatreid"


def stage_config(stage: int, out: Path, world: Path, conversations: Path) -> Path:
    """The shipped config with this run's folders (a callback list cannot be overridden item by item)."""
    config = compose_config(CONFIGS / f"stage{stage}-synthetic.yaml")  # its defaults composed in
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(out / "runs")
    config["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(out / f"stage{stage}")
    config["data"].update(conversations_dir=str(conversations), data_dir=str(world), val_fraction=0.25)
    if stage > 1:
        config["model"]["init_from"] = str(out / f"stage{stage - 1}" / "best.ckpt")
    path = out / f"stage{stage}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def trained(single_thread, tiny_world, conversations, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three synthetic configs run in sequence, 2 steps each; their folders."""
    out = tmp_path_factory.mktemp("configs")
    short = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1",
             "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
             "--trainer.enable_model_summary", "false"]  # fmt: skip
    for stage in (1, 2, 3):
        assert main(["fit", "--config", str(stage_config(stage, out, tiny_world, conversations)), *short]) == 0
    return out


def test_the_three_configs_train_in_sequence(trained):
    for stage in (1, 2, 3):
        assert {p.name for p in (trained / f"stage{stage}").iterdir()} == {"best.ckpt", "last.ckpt"}
        assert read_checkpoint(trained / f"stage{stage}" / "best.ckpt").stage == stage
    events = EventAccumulator(str(next((trained / "runs" / "stage3-synthetic").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    assert {"train/loss", "val/loss", "data/skipped_samples"} <= set(events.Tags()["scalars"])
    assert events.Scalars("data/skipped_samples")[-1].value == 0
    trained_state = ChatReID.from_checkpoint(trained / "stage3" / "last.ckpt").model.state_dict()
    start = read_checkpoint(trained / "stage2" / "best.ckpt").state
    vision = [k for k in start if is_vision_parameter(k, merger_in_encoder=True)]
    assert all(torch.equal(trained_state[k], start[k]) for k in vision), "stage 3 left the encoder as stage 2 made it"
    assert not torch.equal(trained_state["lm_head.weight"], start["lm_head.weight"])


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_inference_loads_a_config_checkpoint_as_the_module_does(trained, stage):
    """`inference.py` alone (no Lightning) gives the match confidences of the LightningModule's own network."""
    ckpt = trained / f"stage{stage}" / "best.ckpt"
    module = ChatReIDModule.load_from_checkpoint(ckpt, map_location="cpu")
    reference = ChatReID.from_network(module.network)
    loaded = ChatReID.from_checkpoint(ckpt)
    assert loaded.model.state_dict().keys() == module.model.state_dict().keys()
    assert all(torch.equal(v, module.model.state_dict()[k]) for k, v in loaded.model.state_dict().items())
    people = [
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (128, 64, 3), dtype=np.uint8)) for i in range(4)
    ]
    for task, query in (("standard", people[0]), ("text-to-image", "A man in a red jacket and black trousers.")):
        expected = reference.match_confidence(task, query, people[1:])
        assert expected.shape == (3,)
        torch.testing.assert_close(loaded.match_confidence(task, query, people[1:]), expected, rtol=0, atol=1e-6)

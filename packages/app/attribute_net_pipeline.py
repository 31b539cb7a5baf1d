"""An attribute net trained, resumably, and written as its weights-only file (`ireid attribute-net fit`, the learning
`eyes` part).

The run goes through `configs/attribute_net/synthetic.yaml` (LightningCLI: TensorBoard logs, `best.ckpt` by
validation accuracy, `last.ckpt`) under `<net file stem>-run/` beside the file: a rerun of a finished run only
exports it again, an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser

from ireid.app.stages import REPO_CONFIGS, fit_step
from ireid.core.attribute_net import accuracy, accuracy_summary, annotated_images
from ireid.core.attribute_net_training import AttributeImages, AttributeNetModule, net_from_checkpoint
from ireid.core.lightning_cli import IreidCLI
from ireid.core.loader import load_records
from ireid.core.shards import shard_paths

ATTRIBUTE_NET_CONFIG = REPO_CONFIGS / "attribute_net" / "synthetic.yaml"


class AttributeNetCLI(IreidCLI):
    """The network's heads are the training split's attributes and values, read once the data module exists."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments(
            "data", "model.vocabulary", compute_fn=lambda data: data.vocabulary, apply_on="instantiate"
        )


def run_dir(net_file: Path) -> Path:
    """Where the training run of `net_file` keeps its logs and checkpoints."""
    return net_file.with_name(f"{net_file.stem}-run")


def train_attribute_net(
    data_dir: Path,
    net_file: Path,
    config: Path = ATTRIBUTE_NET_CONFIG,
    steps: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    test_split: str = "val",
) -> dict[str, Any]:
    """Train (or resume, or reuse) the net on `data_dir`'s training split, score it per attribute on `test_split`
    and write it to `net_file` with those scores; returns the scores."""
    # a missing folder, or one without annotations, is one line here rather than an error inside the CLI's links
    if not any(record.attributes for record in load_records(data_dir, "train")):
        raise ValueError(f"{data_dir} (train): no record has annotated attributes to learn from")
    shard_paths(data_dir, test_split)
    overrides = ["--seed_everything", str(seed), "--data.data_dir", str(data_dir)]
    if steps is not None:
        overrides += ["--trainer.max_steps", str(steps)]
    out = run_dir(net_file)
    ckpt = fit_step("attribute net", out, AttributeNetCLI, AttributeNetModule, AttributeImages, config, overrides,
                    minutes=minutes)  # fmt: skip
    training = json.loads((out / "done.json").read_text())
    net = net_from_checkpoint(ckpt)
    result = accuracy_summary(accuracy(net, *annotated_images(data_dir, test_split)))
    details = {"data": str(data_dir), "seed": seed, "checkpoint": str(ckpt), "steps": training["steps"],
               "seconds": round(training["seconds"], 1), test_split: result}  # fmt: skip
    net.save(net_file, details)
    return {"steps": training["steps"], "seconds": training["seconds"], **result}


def ensure_attribute_net(
    data_dir: Path, net_file: Path, seed: int, steps: int | None = None, minutes: float | None = None
) -> Path:
    """`net_file`, trained on `data_dir`'s training split unless it is already written (a study's per-seed net)."""
    if not net_file.is_file():
        train_attribute_net(data_dir, net_file, steps=steps, minutes=minutes, seed=seed)
    return net_file

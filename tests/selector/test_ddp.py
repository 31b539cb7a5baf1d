"""The selector's warm-up on two processes (gloo), its validation recall synced across the ranks."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import train_on_two_processes
from tests.selector.test_module import fit_args


def test_the_selector_trains_on_two_processes(tmp_path: Path) -> None:
    data = ["--data.init_args.num_train", "256", "--data.init_args.num_val", "64", "--data.init_args.num_candidates",
            "12", "--data.init_args.min_candidates", "12"]  # fmt: skip
    args = fit_args(tmp_path, "--trainer.max_steps", "4", "--trainer.val_check_interval", "4", *data)
    train_on_two_processes("ireid.selector", args, tmp_path)
    assert list(tmp_path.rglob("events.out.tfevents.*"))

"""A run cut at max_steps inside an epoch is validated at its last step; last.ckpt is the latest state, not the
best; checkpoints carry the random state; a run still at chance stops once, at its check."""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ireid.core.callbacks import RandomState, ResumableCheckpoint, StopAtChance, ValidateAtLastStep
from ireid.core.lightning_cli import AtomicCheckpointIO
from tests.helpers import quiet_trainer


class Counting(L.LightningModule):
    """A linear model that records the global step of every validation."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.validated_at: list[int] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        pass

    def on_validation_epoch_end(self) -> None:
        self.validated_at.append(self.global_step)
        self.log("val/score", -float(self.global_step))  # best at the first validation, worse after

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("callbacks, last_validation", [([], 5), ([ValidateAtLastStep()], 7)])
def test_a_run_cut_inside_an_epoch_is_validated_at_its_last_step(callbacks: list, last_validation: int) -> None:
    """Epochs of 5 steps, max_steps 7: Lightning alone validates at step 5 only, so the last 2 steps'
    weights could never become the best checkpoint."""
    data = DataLoader(TensorDataset(torch.randn(10, 2)), batch_size=2)
    module = Counting()
    trainer = quiet_trainer(7, callbacks=callbacks)
    trainer.fit(module, data, data)
    assert trainer.global_step == 7
    assert module.validated_at[-1] == last_validation


def test_last_checkpoint_is_the_latest_state_even_when_the_best_is_older(tmp_path: Path) -> None:
    """Validated every 2 of 6 steps with a score that only gets worse: Lightning 2.6's ModelCheckpoint would leave
    last.ckpt at step 2 (a copy of the best), so a resumed run would repeat 4 steps."""
    data = DataLoader(TensorDataset(torch.randn(12, 2)), batch_size=2)
    checkpoints = ResumableCheckpoint(tmp_path, "best", monitor="val/score", mode="max", save_last=True)
    trainer = quiet_trainer(6, callbacks=[checkpoints], enable_checkpointing=True, val_check_interval=2,
                            plugins=[AtomicCheckpointIO()])  # fmt: skip
    trainer.fit(Counting(), data, data)
    step = {p.name: torch.load(p, weights_only=True)["global_step"] for p in tmp_path.glob("*.ckpt")}
    assert step == {"best.ckpt": 2, "last.ckpt": 6}
    assert not list(tmp_path.glob("*.tmp"))


def test_random_state_is_set_back_when_training_resumes() -> None:
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    saved = RandomState().state_dict()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    resumed = RandomState()
    resumed.load_state_dict(saved)
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    resumed.on_train_start(quiet_trainer(1), Counting())
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], expected[0]) and np.array_equal(drawn[1], expected[1]) and drawn[2] == expected[2]


class Judging(Counting):
    """Logs `accuracy(step)` as val/yes_no_accuracy, or nothing where it is None."""

    def __init__(self, accuracy) -> None:
        super().__init__()
        self.accuracy = accuracy

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        value = self.accuracy(self.global_step)
        if value is not None:
            self.log("val/yes_no_accuracy", value)


@pytest.mark.parametrize(
    "accuracy, stopped_at, steps",
    [
        (lambda step: 0.5, 4, 4),  # at chance at the check: stops there
        (lambda step: 0.9, None, 10),  # has left chance: runs on
        (lambda step: None if step < 6 else 0.5, 6, 6),  # not logged at the check: the next validation decides
        (lambda step: 0.9 if step < 6 else 0.5, None, 10),  # checked once: a later dip does not stop it
    ],
)
def test_a_run_still_at_chance_at_its_check_stops_there(accuracy, stopped_at, steps) -> None:
    data = DataLoader(TensorDataset(torch.randn(40, 2)), batch_size=2)
    stop = StopAtChance(by_step=3, above=0.58)
    trainer = quiet_trainer(10, callbacks=[stop], val_check_interval=2)
    trainer.fit(Judging(accuracy), data, data)
    assert (stop.stopped_at, trainer.global_step) == (stopped_at, steps)
    resumed = StopAtChance()
    resumed.load_state_dict(stop.state_dict())
    assert (resumed.checked, resumed.stopped_at) == (True, stopped_at)

"""Training budgets: the time share a schedule runs on, and the validation of a run cut at max_steps."""

from __future__ import annotations

import types

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Timer
from torch.utils.data import DataLoader, TensorDataset

from ireid.core import budget
from ireid.core.budget import ValidateAtLastStep, budget_step, time_fraction
from tests.helpers import started_timer


def test_budget_step_follows_the_later_of_steps_and_time(monkeypatch: pytest.MonkeyPatch) -> None:
    timer, clock = started_timer(monkeypatch, 200)
    trainer = types.SimpleNamespace(callbacks=[timer])
    assert time_fraction(trainer) == 0.0
    clock.now += 50  # a quarter of the time budget
    assert time_fraction(trainer) == pytest.approx(0.25)
    assert budget_step(100, 1000, trainer) == pytest.approx(250.0)  # time is ahead of the steps
    assert budget_step(400, 1000, trainer) == 400.0  # the steps are ahead of time
    clock.now += 500  # past the cap
    assert budget_step(10, 1000, trainer) == pytest.approx(1000.0)


def test_without_a_time_cap_the_schedule_runs_on_steps() -> None:
    assert budget_step(7, 100, types.SimpleNamespace(callbacks=[])) == 7.0
    assert budget_step(7, 100, None) == 7.0
    assert budget.time_fraction(types.SimpleNamespace(callbacks=[Timer(duration=None)])) == 0.0


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

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("callbacks, last_validation", [([], 5), ([ValidateAtLastStep()], 7)])
def test_a_run_cut_inside_an_epoch_is_validated_at_its_last_step(callbacks: list, last_validation: int) -> None:
    """Epochs of 5 steps, max_steps 7: Lightning alone validates at step 5 only, so the last 2 steps'
    weights could never become the best checkpoint."""
    data = DataLoader(TensorDataset(torch.randn(10, 2)), batch_size=2)
    module = Counting()
    trainer = L.Trainer(
        max_steps=7,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
    )
    trainer.fit(module, data, data)
    assert trainer.global_step == 7
    assert module.validated_at[-1] == last_validation

"""A run cut at max_steps inside an epoch is validated at its last step."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ireid.core.callbacks import ValidateAtLastStep
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

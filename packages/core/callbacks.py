"""Lightning callbacks the configs share: a step budget that ends inside an epoch still ends with a validation, and
`last.ckpt` always holds the latest state.

Lightning validates at the end of a run stopped through `should_stop` (as the `max_time` cap stops it), but not
at a `max_steps` that falls inside an epoch: the last steps' weights could then never become the best checkpoint.
`ValidateAtLastStep` stops through `should_stop` there.

Lightning 2.6's `ModelCheckpoint(save_last=True)` rewrites `last.ckpt` only when a top-k checkpoint is saved at the
same step, so with a monitor it is a copy of the best, and a run resumed from it after a kill loses every step
since the best. `ResumableCheckpoint` rewrites it at every save point.

A small model trained from scratch can sit at the prior of a Yes/No question for a whole run while its other
answers improve, and whether it leaves the prior depends on the run's seed. `StopAtChance` ends such a run early, at a
step where runs that learn have left it, so that a pipeline can begin again with another seed.

Lightning stores no random state, so a resumed run draws other data orders, masks and dropout than the run it
continues. `RandomState` stores the generators in each checkpoint and sets them back when training resumes: a run
killed at an epoch boundary then continues exactly.
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class ValidateAtLastStep(L.Callback):
    """Ends training at `max_steps` through `trainer.should_stop`, so the final validation runs."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class ResumableCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` whose `last.ckpt` is the latest state at every validation or epoch end it is asked about,
    whether or not that state is among the best."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def _keep_last_current(self, trainer: L.Trainer) -> None:
        # skipped when this step is saved already (the best was just written, and last with it)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


YES_NO_ACCURACY = "val/yes_no_accuracy"  # what a model with Yes/No questions logs (`ireid.chatreid.module`)
CHANCE_YES_NO = 0.58  # a Yes/No accuracy at most this is still at the prior (balanced held-out questions)


class StopAtChance(L.Callback):
    """Stops training at the first validation at or after `by_step` whose `monitor` is at most `above` (a run still
    at chance); `stopped_at` is then that step. Checked once per run, resumed runs included."""

    def __init__(self, monitor: str = YES_NO_ACCURACY, by_step: int = 2000, above: float = CHANCE_YES_NO) -> None:
        self.monitor, self.by_step, self.above = monitor, by_step, above
        self.checked = False
        self.stopped_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.checked or trainer.global_step < self.by_step:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return  # not logged at this validation (no Yes/No question in it): look again at the next one
        self.checked = True
        if float(value) <= self.above:
            self.stopped_at = trainer.global_step
            trainer.should_stop = True
            print(
                f"{self.monitor} is {float(value):.3f} at step {trainer.global_step}, still at chance (at most "
                f"{self.above}): training stops here; another seed (--seed_everything) may leave it"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "stopped_at": self.stopped_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.checked, self.stopped_at = state_dict["checked"], state_dict["stopped_at"]


class RandomState(L.Callback):
    """Torch's, NumPy's and Python's global generators saved with each checkpoint (as tensors and plain types, so
    the checkpoint stays weights-only) and set back when training resumes, after any sanity validation. On one
    process only: a checkpoint holds rank 0's state, which must not become every rank's."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        kind, keys, position, has_gauss, gauss = np.random.get_state()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._pending = self._pending, None
        if state is None or trainer.world_size > 1:
            return
        torch.set_rng_state(state["torch"])
        kind, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

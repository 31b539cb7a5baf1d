"""Training budgets of steps and time: a schedule that ends where the time cap ends training, and a last
validation where the step cap does.

A cosine schedule sized by `max_steps` never anneals when `max_time` stops training first: on a 2-core CPU
the demo's retriever stops near step 450 of 1000, still at two-thirds of its peak learning rate.
`budget_step` maps the elapsed share of the time budget to steps, so a schedule driven by it reaches its
end at whichever cap comes first, on any machine. Lightning validates at the end of a run stopped through
`should_stop` (the time cap), but not at a `max_steps` that falls inside an epoch; `ValidateAtLastStep`
stops through `should_stop` there, so the last (most annealed) weights are validated and can be the best
checkpoint.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Timer


def time_fraction(trainer: L.Trainer | None) -> float:
    """The elapsed share of the trainer's `max_time` (0 without one, or before training starts)."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None) if trainer is not None else None
    remaining = timer.time_remaining() if timer is not None else None
    if remaining is None:
        return 0.0
    elapsed = timer.time_elapsed()
    return min(1.0, elapsed / max(elapsed + remaining, 1e-9))


def budget_step(step: int, total: float, trainer: L.Trainer | None) -> float:
    """`step`, or the step that the elapsed share of the time budget corresponds to, whichever is later."""
    return max(float(step), time_fraction(trainer) * total)


class ValidateAtLastStep(L.Callback):
    """Ends training at `max_steps` through `trainer.should_stop`, so the final validation runs."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True

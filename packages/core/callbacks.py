"""Lightning callbacks the configs share: a step budget that ends inside an epoch still ends with a validation.

Lightning validates at the end of a run stopped through `should_stop` (as the `max_time` cap stops it), but not
at a `max_steps` that falls inside an epoch: the last steps' weights could then never become the best checkpoint.
`ValidateAtLastStep` stops through `should_stop` there.
"""

from __future__ import annotations

from typing import Any

import lightning as L


class ValidateAtLastStep(L.Callback):
    """Ends training at `max_steps` through `trainer.should_stop`, so the final validation runs."""

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True

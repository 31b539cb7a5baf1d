"""`ireid-answerer-tune` / `python -m ireid.answerer tune`: LightningCLI fit of the tuned witness.

`--config configs/answerer/tune-smollm2.yaml` trains; add `--ckpt_path last` to resume an interrupted run. The
data module gets the model's tokenizer, checkpoints are written atomically (`IreidCLI`), and progress shows as a
tqdm bar.
"""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.cli import LightningArgumentParser

from ireid.answerer.tuning import WitnessTuner, WitnessTuningData
from ireid.core.lightning_cli import IreidCLI, run_cli


class TuneCLI(IreidCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the chats are tokenized exactly as the model's chat LLM tokenizes them at answer time
        parser.link_arguments(
            "model", "data.tokenizer", compute_fn=lambda model: model.tokenizer, apply_on="instantiate"
        )

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        # a tqdm bar (readable in a log file too) unless the config names a progress bar or turns it off
        config = self._get(self.config_init, "trainer", default={})
        callbacks = config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if config.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
            kwargs["callbacks"] = [*callbacks, TQDMProgressBar()]
        return super().instantiate_trainer(**kwargs)


def main(args: list[str] | None = None) -> int:
    """Run `fit` with the given arguments (sys.argv[1:] when None)."""
    argv = ["fit", *(sys.argv[1:] if args is None else args)]
    return run_cli(TuneCLI, WitnessTuner, WitnessTuningData, argv)

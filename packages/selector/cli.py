"""`ireid-selector` / `python -m ireid.selector`: LightningCLI (fit/validate) for the selector warm-up."""

from __future__ import annotations

from lightning.pytorch.cli import LightningArgumentParser

from ireid.core.lightning_cli import IreidCLI, run_cli
from ireid.selector.data import SelectorData
from ireid.selector.module import SelectorWarmup


class SelectorCLI(IreidCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the selector's input width is the data's embedding width, read once the data module exists
        parser.link_arguments(
            "data", "model.net.init_args.input_dim", compute_fn=lambda data: data.feature_dim, apply_on="instantiate"
        )


def main(args: list[str] | None = None) -> int:
    return run_cli(SelectorCLI, SelectorWarmup, SelectorData, args, subclass_mode_data=True)

"""`ireid-questioner` / `python -m ireid.questioner`: LightningCLI (fit/validate) for the questioner's two stages."""

from __future__ import annotations

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ireid.questioner.data import QuestionerData
from ireid.questioner.module import QuestionerModule


class QuestionerCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the data serve the stage the model trains and show it as many images as it expects
        parser.link_arguments("model.stage", "data.stage")
        parser.link_arguments("model.num_images", "data.num_images")


def main(args: list[str] | None = None) -> int:
    QuestionerCLI(
        QuestionerModule,
        QuestionerData,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        args=args,
    )
    return 0

"""`ireid-questioner` / `python -m ireid.questioner`: LightningCLI (fit/validate) for the questioner's two stages."""

from __future__ import annotations

from ireid.core.lightning_cli import IreidCLI, run_cli
from ireid.questioner.data import QuestionerData
from ireid.questioner.module import QuestionerModule


class QuestionerCLI(IreidCLI):
    """The data serve the stage the model trains and show it as many images as it expects."""

    links = (("model.stage", "data.stage"), ("model.num_images", "data.num_images"))


def main(args: list[str] | None = None) -> int:
    return run_cli(QuestionerCLI, QuestionerModule, QuestionerData, args)

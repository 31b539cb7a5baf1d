"""`ireid-chatreid` / `python -m ireid.chatreid`: LightningCLI (fit/validate) for the three ChatReID stages."""

from __future__ import annotations

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ireid.chatreid.data import ConversationData
from ireid.chatreid.module import ChatReIDModule


class ChatReIDCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # one data set: the tiny tokenizer is trained on the same image data set the conversations point into
        parser.link_arguments("data.data_dir", "model.data_dir")
        parser.link_arguments("data.stage", "model.stage")


def main(args: list[str] | None = None) -> int:
    ChatReIDCLI(
        ChatReIDModule,
        ConversationData,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        args=args,
    )
    return 0

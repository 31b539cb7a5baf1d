"""`ireid-chatreid` / `python -m ireid.chatreid`: LightningCLI (fit/validate) for the three ChatReID stages."""

from __future__ import annotations

from ireid.chatreid.data import ConversationData
from ireid.chatreid.module import ChatReIDModule
from ireid.core.lightning_cli import IreidCLI, run_cli


class ChatReIDCLI(IreidCLI):
    """One data set: the tiny tokenizer is trained on the same image data set the conversations point into."""

    links = (("data.data_dir", "model.data_dir"), ("data.stage", "model.stage"))


def main(args: list[str] | None = None) -> int:
    return run_cli(ChatReIDCLI, ChatReIDModule, ConversationData, args)

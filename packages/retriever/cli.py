"""`ireid-retriever` / `python -m ireid.retriever`: LightningCLI (fit/validate/test) plus index and search."""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ireid.retriever.data import RetrievalDataModule
from ireid.retriever.module import RetrieverModule

INDEX_COMMANDS = ("index", "search")


class RetrieverCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.data_dir", "model.data_dir")
        parser.link_arguments("data.image_size", "model.image_size")
        parser.link_arguments("seed_everything", "model.seed")
        parser.link_arguments("seed_everything", "data.seed")


def main(args: list[str] | None = None) -> int:
    argv = sys.argv[1:] if args is None else args
    if argv and argv[0] in INDEX_COMMANDS:
        from ireid.retriever.index_cli import main as index_main

        return index_main(argv)
    RetrieverCLI(
        RetrieverModule,
        RetrievalDataModule,
        parser_kwargs={"parser_mode": "omegaconf"},
        save_config_kwargs={"overwrite": True},
        args=argv,
    )
    return 0

"""`ireid-retriever` (= `python -m ireid.retriever`): LightningCLI (fit/validate/test), index, search, import-irra."""

from __future__ import annotations

import sys

from ireid.core.lightning_cli import IreidCLI, run_cli
from ireid.core.user_errors import one_line_errors
from ireid.retriever.data import RetrievalDataModule
from ireid.retriever.module import RetrieverModule

INDEX_COMMANDS = ("index", "search")
IMPORT_IRRA = "import-irra"


class RetrieverCLI(IreidCLI):
    """The model reads the data set it trains on (ID count, tokenizer) and shares its image size and seed."""

    links = (
        ("data.data_dir", "model.data_dir"),
        ("data.image_size", "model.image_size"),
        ("seed_everything", "model.seed"),
        ("seed_everything", "data.seed"),
    )


@one_line_errors
def main(args: list[str] | None = None) -> int:
    argv = sys.argv[1:] if args is None else args
    if argv and argv[0] in INDEX_COMMANDS:
        from ireid.retriever.index_cli import main as index_main

        return index_main(argv)
    if argv and argv[0] == IMPORT_IRRA:
        from ireid.retriever.irra_cli import main as irra_main

        return irra_main(argv[1:])
    return run_cli(RetrieverCLI, RetrieverModule, RetrievalDataModule, argv)

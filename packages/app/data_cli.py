"""`ireid data ...`: building data sets (synthetic world, converters of real formats, Interactive-PEDES)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ireid.app import build_interactive_cli
from ireid.core.converters import cli as convert_cli
from ireid.core.synthetic import cli as synth_cli

Runner = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command group to the top-level CLI."""
    data = subparsers.add_parser("data", help="build data sets: synthetic world, converters, Interactive-PEDES")
    commands = data.add_subparsers(dest="data_command", required=True)
    for name, module, help_text in (
        ("synth", synth_cli, "generate the synthetic pedestrian world"),
        ("convert", convert_cli, "convert a real data set's annotations and images to shards"),
        (
            "build-interactive",
            build_interactive_cli,
            "LLaVA-ReID's Interactive-PEDES construction: captions, sub-captions and a dialogue for every record",
        ),
    ):
        parser = commands.add_parser(name, help=help_text, description=help_text)
        module.configure(parser)
        parser.set_defaults(run=module.run)

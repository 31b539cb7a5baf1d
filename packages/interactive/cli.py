"""The `ireid` command: everything that is not one package's training."""

from __future__ import annotations

import argparse
import sys

from ireid.core import data_cli
from ireid.interactive import demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ireid", description="Interactive person re-identification toolkit.")
    commands = parser.add_subparsers(dest="command", required=True)
    data_cli.register(commands)
    demo_parser = commands.add_parser("demo", help="run the main job end to end on the embedded defaults")
    demo.configure(demo_parser)
    demo_parser.set_defaults(run=demo.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

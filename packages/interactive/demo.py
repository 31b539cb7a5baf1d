"""`ireid demo`: the main job end to end on the embedded defaults.

Today: build the default synthetic world, print its statistics and write a contact sheet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ireid.core.synthetic import cli as synth_cli


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    data_dir = args.out / "data"
    sheet = args.out / "contact_sheet.png"
    synth_parser = argparse.ArgumentParser()
    synth_cli.configure(synth_parser)
    synth_args = synth_parser.parse_args(
        ["--out", str(data_dir), "--seed", str(args.seed), "--contact-sheet", str(sheet), "--resume"]
    )
    code = synth_cli.run(synth_args)
    if code == 0:
        print(f"\ndemo output: {args.out.resolve()}")
    return code

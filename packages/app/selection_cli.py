"""`ireid eval selection`: LLaVA-ReID Table 3, image and question selection compared in one command.

Runs the `llava-reid` strategy with each candidate rule (k-means, uniform, top-k, the trained selector) and with a
questioner trained on random instead of look-forward targets, through the interactive harness (each row resumes
from its own folder), then prints and writes the Table 3-shaped comparison. Rows share `out/strategies` with
`ireid eval interactive` (so `llava-reid` is not run twice); the report goes to `out/selection`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ireid.app import eval_cli
from ireid.core.shards import atomic_write_bytes
from ireid.interactive.report import SELECTION_ROWS, selection_table

configure = eval_cli.configure


def run(args: argparse.Namespace) -> int:
    config = eval_cli.resolve_config(args)
    rows = list(dict.fromkeys(name for _, _, name in SELECTION_ROWS))
    if not config.llava_reid.random_targets_ckpt:
        rows.remove("llava-reid:random-targets")
        print("llava_reid.random_targets_ckpt is not set: the question row 'random' is left out")
    config = dataclasses.replace(config, strategies=args.strategies or rows)
    report_dir = Path(config.out) / "selection"
    outcome = eval_cli.evaluate(config, report_dir)
    table = selection_table(outcome.results)
    path = report_dir / "selection.md"
    atomic_write_bytes(path, ("# Image and question selection (LLaVA-ReID Table 3 layout)\n\n" + table).encode())
    print(table)
    print(f"table: {path}")
    return 0

"""`ireid eval learning`: each learned part against its non-learned twin on several world seeds (`learning.py`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ireid.app.learning import PARTS, LearningConfig, run_learning
from ireid.core.settings import load_settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML settings (configs/learning/*.yaml); default: the demo budget")
    parser.add_argument("--seeds", type=int, nargs="+", help="world seeds (overrides the config's)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, help="which comparisons to run (default: the config's)")
    parser.add_argument("--out", help="output folder (overrides the config's)")


def run(args: argparse.Namespace) -> int:
    config = load_settings(LearningConfig, args.config)
    overrides = {name: getattr(args, name) for name in ("seeds", "parts", "out") if getattr(args, name) is not None}
    config = dataclasses.replace(config, **overrides)
    summary = run_learning(config)
    print(summary["markdown"])
    print(f"results: {Path(config.out) / 'learning.json'}, table: {Path(config.out) / 'learning.md'}")
    return 0

"""`ireid chatreid build-instructions`: one ChatReID stage's instruction conversations from a data set folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ireid.chatreid.instruction_pool import IMAGE_MATCH_RULES
from ireid.chatreid.instructions import (
    DEFAULT_GALLERY,
    MIXES,
    SAMPLES_PER_RECORD,
    SHARD_SIZE,
    build_instructions,
    format_counts,
    parse_mix,
)
from ireid.core.shards import ShardError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", type=int, choices=(1, 2, 3), required=True, help="tuning stage (1, 2 or 3)")
    parser.add_argument("--data", type=Path, required=True, help="data set folder (shards written by ireid data)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for stage{N}-*.tar and counts")
    parser.add_argument("--split", default="train", help="split of --data to draw from (default train)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives identical bytes (default 0)")
    parser.add_argument(
        "--samples",
        type=int,
        help="samples in the stage (default: per record of the split, "
        + ", ".join(f"stage {s}: {n}" for s, n in SAMPLES_PER_RECORD.items())
        + ")",
    )
    parser.add_argument(
        "--gallery-min", type=int, default=DEFAULT_GALLERY[0], help=f"smallest gallery (default {DEFAULT_GALLERY[0]})"
    )
    parser.add_argument(
        "--gallery-max", type=int, default=DEFAULT_GALLERY[1], help=f"largest gallery (default {DEFAULT_GALLERY[1]})"
    )
    parser.add_argument(
        "--mix",
        default="",
        help="task=weight,... overriding the stage's task shares (stage 2 default: "
        + ", ".join(f"{task}={weight:g}" for task, weight in MIXES[2].items())
        + ")",
    )
    parser.add_argument(
        "--image-match",
        choices=IMAGE_MATCH_RULES,
        default="person",
        help="image pairs (stage 2's, and the one-to-one question stage 3 may replay): 'person' (the paper: any "
        "outfit or modality) or 'appearance' (the same outfit and modality, another camera; a departure)",
    )
    parser.add_argument(
        "--look-alikes",
        type=Path,
        help="file from `ireid chatreid mine-look-alikes`: image distractors, and the wrong texts of one-to-one "
        "text-image pairs, are drawn among each image's look-alikes (a departure from the paper's random people)",
    )
    parser.add_argument(
        "--look-alike-share",
        type=float,
        default=0.5,
        help="share of those distractors drawn from the look-alikes (default 0.5)",
    )
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE, help=f"samples per shard (default {SHARD_SIZE})")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in the same --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    try:
        summary = build_instructions(
            args.data,
            args.out,
            args.stage,
            split=args.split,
            seed=args.seed,
            samples=args.samples,
            gallery=(args.gallery_min, args.gallery_max),
            mix=parse_mix(args.mix, args.stage),
            shard_size=args.shard_size,
            image_match=args.image_match,
            look_alikes=args.look_alikes,
            look_alike_share=args.look_alike_share,
            resume=args.resume,
            progress=not args.quiet,
        )
    except (ShardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = sum(summary["counts"].values())
    print(f"stage {args.stage}: {total} samples from {summary['records']} records in {summary['seconds']:.1f} s")
    print(format_counts(summary))
    print(f"counts: {args.out / f'stage{args.stage}.counts.json'}")
    return 0

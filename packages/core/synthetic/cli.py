"""`ireid data synth`: generate the synthetic world and report whether it is ambiguous enough to need questions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ireid.core.shards import ShardError
from ireid.core.synthetic.contact_sheet import write_contact_sheet
from ireid.core.synthetic.world import DEFAULTS, STATS_FILE, WorldOptions, build_world

INITIAL_TARGET = 5.0  # mean number of test identities an initial description fits, at least
FINE_TARGET = 0.99  # share of test records whose fine description fits one identity only, at least


def image_size(text: str) -> tuple[int, int]:
    """Parse "HxW" (e.g. 128x64) into (height, width)."""
    try:
        height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"image size {text!r} is not HxW, e.g. 128x64") from None
    if height < 16 or width < 16:
        raise argparse.ArgumentTypeError(f"image size {text!r}: both sides must be at least 16")
    return height, width


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder for shards and stats.json")
    for split in ("train", "val", "test"):
        key = f"ids_{split}"
        parser.add_argument(
            f"--ids-{split}", type=int, default=DEFAULTS[key], help=f"{split} identities (default {DEFAULTS[key]})"
        )
    parser.add_argument(
        "--images-per-id",
        type=int,
        default=DEFAULTS["images_per_id"],
        help=f"images (cameras) per identity (default {DEFAULTS['images_per_id']})",
    )
    parser.add_argument(
        "--outfits-per-id",
        type=int,
        default=1,
        help="outfits per identity, worn in blocks of its images (cloth-changing Re-ID; default 1)",
    )
    parser.add_argument(
        "--infrared-cameras",
        type=int,
        default=0,
        help="infrared cameras after the colour ones, each seeing every identity once (default 0)",
    )
    parser.add_argument(
        "--mark-occlusion",
        action="store_true",
        help="leave what an image does not show out of its texts and attributes "
        "(on by itself with --outfits-per-id > 1 or --infrared-cameras > 0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="world seed; the same seed gives identical bytes")
    parser.add_argument("--image-size", type=image_size, default=(128, 64), help="HxW in pixels (default 128x64)")
    parser.add_argument(
        "--shard-size",
        type=int,
        default=DEFAULTS["shard_size"],
        help=f"samples per shard (default {DEFAULTS['shard_size']})",
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in the same folder")
    parser.add_argument("--contact-sheet", type=Path, help="also write a PNG grid of sample identities here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--workers", type=int, help="rendering processes (default: one per available core; the bytes do not change)"
    )


def format_stats(stats: dict[str, Any]) -> str:
    splits = ", ".join(f"{name} {s['identities']} ids / {s['images']} images" for name, s in stats["splits"].items())
    speed = stats["images_per_second"]
    lines = [
        f"splits: {splits}",
        f"rendered {stats['rendered_images']} images in {stats['seconds']:.1f} s"
        + (f" ({speed:.0f} images/s)" if speed else ""),
    ]
    ambiguity = stats["ambiguity"]
    if ambiguity["identities"]:
        initial, fine = ambiguity["initial_consistent"], ambiguity["fine_unique_share"]
        lines += [
            f"initial description: fits {initial['mean']:.1f} of {ambiguity['identities']} test identities"
            + (f" ({ambiguity['outfits']} outfits)" if "outfits" in ambiguity else "")
            + " on "
            f"average (median {initial['median']:g}, min {initial['min']}) [target >= {INITIAL_TARGET:g}: "
            f"{'met' if initial['mean'] >= INITIAL_TARGET else 'NOT met'}]",
            f"fine description: identifies exactly one test identity for {100 * fine:.1f}% of test records "
            f"[target >= {100 * FINE_TARGET:g}%: {'met' if fine >= FINE_TARGET else 'NOT met'}]",
        ]
    if "views" in stats:
        views = stats["views"]
        modalities = ", ".join(f"{name} {count}" for name, count in views["modalities"].items())
        outfits = ", ".join(f"{name}: {count}" for name, count in views["outfits"].items())
        hidden = ", ".join(f"{name} {100 * share:.1f}%" for name, share in views["hidden_share"].items())
        lines += [
            f"images per modality: {modalities}; per outfit {outfits}",
            f"attributes hidden (occluded or infrared): {hidden or 'none'}",
        ]
    qa = stats["qa"]
    shares = ", ".join(f"{name} {100 * share:.1f}%" for name, share in qa["type_shares"].items())
    per_record = qa["per_record"]
    lines += [
        f"Q&A per record: mean {per_record['mean']:.1f} (min {per_record['min']}, max {per_record['max']})",
        f"Q&A types: {shares}; yes/no answered 'Yes' {100 * qa['yes_no_positive_share']:.1f}%",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        options = WorldOptions(args.outfits_per_id, args.infrared_cameras, args.mark_occlusion)
        stats = build_world(
            args.out,
            ids_train=args.ids_train,
            ids_val=args.ids_val,
            ids_test=args.ids_test,
            images_per_id=args.images_per_id,
            seed=args.seed,
            image_size=args.image_size,
            shard_size=args.shard_size,
            resume=args.resume,
            progress=not args.quiet,
            options=options,
            workers=args.workers,
        )
    except (ShardError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_stats(stats))
    print(f"stats: {args.out / STATS_FILE}")
    if args.contact_sheet:
        split = next(name for name in ("test", "train", "val") if stats["splits"].get(name, {}).get("images"))
        print(f"contact sheet: {write_contact_sheet(args.out, args.contact_sheet, split=split)}")
    return 0

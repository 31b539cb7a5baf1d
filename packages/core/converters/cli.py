"""`ireid data convert`: real annotation formats to ireid shards."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ireid.core.converters.common import ConversionError, ConversionReport, SourceItem, convert_items
from ireid.core.converters.cuhk03 import read_cuhk03
from ireid.core.converters.folder import read_folder
from ireid.core.converters.ltcc import read_ltcc
from ireid.core.converters.market1501 import read_market1501
from ireid.core.converters.msmt17 import read_msmt17
from ireid.core.converters.pedes import FORMATS, read_pedes
from ireid.core.converters.prcc import read_prcc
from ireid.core.converters.regdb import read_regdb
from ireid.core.converters.sysu_mm01 import read_sysu_mm01

Reader = Callable[[Path, Path | None], tuple[list[SourceItem], int]]


def _pedes_reader(name: str) -> Reader:
    def read(root: Path, images_dir: Path | None) -> tuple[list[SourceItem], int]:
        return read_pedes(FORMATS[name], root, images_dir), 0

    return read


# format name -> its reader: (data set folder, image folder or None) -> (items, junk images skipped)
READERS: dict[str, Reader] = {
    **{name: _pedes_reader(name) for name in FORMATS},
    "market1501": lambda root, _images: read_market1501(root),
    "msmt17": lambda root, _images: read_msmt17(root),
    "cuhk03-labeled": lambda root, _images: read_cuhk03(root, "labeled"),
    "cuhk03-detected": lambda root, _images: read_cuhk03(root, "detected"),
    "ltcc": lambda root, _images: read_ltcc(root),
    "prcc": lambda root, _images: read_prcc(root),
    "sysu-mm01": lambda root, _images: read_sysu_mm01(root),
    "regdb": lambda root, _images: read_regdb(root),
    "folder": lambda root, _images: read_folder(root),
}
FORMAT_CHOICES = list(READERS)


def convert(
    fmt: str,
    root: Path,
    out: Path,
    *,
    images_dir: Path | None = None,
    skip_missing: bool = False,
    shard_size: int = 1000,
    resume: bool = False,
    progress: bool = True,
) -> ConversionReport:
    """Convert one data set; see `convert_items` for what is checked before writing."""
    if not root.is_dir():
        raise ConversionError(f"{root}: data set folder not found")
    if fmt not in READERS:
        raise ConversionError(f"unknown format {fmt!r}; choose one of {FORMAT_CHOICES}")
    items, junk = READERS[fmt](root, images_dir)
    report = convert_items(
        items,
        source=fmt,
        root=root,
        out=out,
        skip_bad=skip_missing,
        shard_size=shard_size,
        resume=resume,
        progress=progress,
    )
    report.skipped_junk = junk
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMAT_CHOICES)
    parser.add_argument("--root", required=True, type=Path, help="the data set's folder, as distributed")
    parser.add_argument("--out", required=True, type=Path, help="folder for the shards")
    parser.add_argument(
        "--images", type=Path, default=None, help="image folder of a JSON format (default ROOT/imgs; ufine6926: ROOT)"
    )
    parser.add_argument("--skip-missing", action="store_true", help="skip missing or undecodable images (counted)")
    parser.add_argument("--shard-size", type=int, default=1000)
    parser.add_argument("--resume", action="store_true", help="continue an interrupted conversion in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    try:
        report = convert(
            args.format,
            args.root,
            args.out,
            images_dir=args.images,
            skip_missing=args.skip_missing,
            shard_size=args.shard_size,
            resume=args.resume,
            progress=not args.quiet,
        )
    except ConversionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for kind, bad in (("missing", report.missing), ("unreadable", report.unreadable)):
        if bad:
            print(f"{len(bad)} {kind} image(s):", file=sys.stderr)
            for line in bad[:20]:
                print(f"  {line}", file=sys.stderr)
            if len(bad) > 20:
                print(f"  ... and {len(bad) - 20} more", file=sys.stderr)
    if report.bad and not args.skip_missing:
        print("nothing written: fix the images or pass --skip-missing", file=sys.stderr)
        return 1
    for split, count in report.counts.items():
        print(f"{split}: {count} images, {report.ids.get(split, 0)} identities")
    if report.skipped_junk:
        print(f"junk images skipped: {report.skipped_junk}")
    if report.bad:
        print(f"skipped {len(report.bad)} missing/unreadable image(s)")
    print(f"shards written to {args.out}")
    return 0

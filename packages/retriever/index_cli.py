"""`ireid-retriever index` and `ireid-retriever search`: a trained retriever over a gallery, from the shell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ireid.core.loader import SkipCounter
from ireid.retriever.gallery_processes import encoded_batches, folder_loader, shard_loader
from ireid.retriever.index import BACKENDS, GalleryIndex, GalleryIndexError
from ireid.retriever.inference import image_embedder, load_retriever


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ireid-retriever", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="encode a gallery (shards or an image folder) into an index")
    index.add_argument("--ckpt", type=Path, required=True, help="retriever checkpoint (.ckpt)")
    source = index.add_mutually_exclusive_group(required=True)
    source.add_argument("--shards", type=Path, help="shard folder written by ireid")
    source.add_argument("--images", type=Path, help="a folder of .jpg/.png images (searched recursively)")
    index.add_argument("--split", default="test", help="split of --shards to index")
    index.add_argument("--out", type=Path, required=True)
    index.add_argument("--backend", choices=BACKENDS, default="torch")
    index.add_argument("--batch-size", type=int, default=128)
    index.add_argument(
        "--processes", type=int, default=1, help="share the encoding among this many processes of one thread each"
    )
    search = commands.add_parser("search", help="rank an index's gallery for a description")
    search.add_argument("--index", type=Path, required=True)
    search.add_argument("--ckpt", type=Path, required=True)
    search.add_argument("--text", required=True, help="the description to search for")
    search.add_argument("--k", type=int, default=10)
    return parser


def run_index(args: argparse.Namespace) -> int:
    """Encode the gallery of `--shards`/`--images` with the checkpoint into the index folder `--out`."""
    module = load_retriever(args.ckpt)
    skips = SkipCounter()
    load, count = shard_loader(args.shards, args.split, skips) if args.shards else folder_loader(args.images, skips)
    if count == 0:
        raise ValueError(f"{args.images}: no .jpg, .jpeg or .png images to index")
    batches = encoded_batches(image_embedder(module), load, count, args.batch_size, args.processes)
    index = GalleryIndex.from_encoded(batches, args.out, total=count, backend=args.backend)
    print(
        f"indexed {len(index)} images into {args.out}" + (f" ({skips.value} unreadable skipped)" if skips.value else "")
    )
    return 0


def run_search(args: argparse.Namespace) -> int:
    """Print the top `--k` gallery items of the index for `--text`: rank, score, key and (if known) pid."""
    if not args.text.strip():
        print("error: --text is empty", file=sys.stderr)
        return 2
    if args.k < 1:
        print(f"error: --k must be at least 1, got {args.k}", file=sys.stderr)
        return 2
    module = load_retriever(args.ckpt)
    index = GalleryIndex.load(args.index)
    with torch.no_grad():
        query = module.encode_text([args.text])
    scores, rows = index.search(query, args.k)
    for rank, (score, row) in enumerate(zip(scores[0].tolist(), rows[0].tolist(), strict=True), start=1):
        pid = f"  pid {int(index.pids[row])}" if index.pids is not None else ""
        print(f"{rank:3d}  {score:.4f}  {index.keys[row]}{pid}")
    return 0


def main(argv: list[str]) -> int:
    """`index` or `search`; a missing checkpoint or a broken gallery folder is a one-line error (exit 2)."""
    args = build_parser().parse_args(argv)
    try:
        return run_index(args) if args.command == "index" else run_search(args)
    except (FileNotFoundError, GalleryIndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

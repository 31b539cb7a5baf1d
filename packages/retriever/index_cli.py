"""`ireid-retriever index` and `ireid-retriever search`: a trained retriever over a gallery, from the shell."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from PIL import Image

from ireid.core.loader import SkipCounter, iter_samples
from ireid.retriever.index import GalleryIndex, GalleryIndexError, iter_image_folder
from ireid.retriever.module import RetrieverModule
from ireid.retriever.transforms import ImageTransform


def load_retriever(ckpt: Path) -> RetrieverModule:
    """A trained retriever in eval mode on CPU (safe loading: tensors and plain types only)."""
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: checkpoint not found")
    module = RetrieverModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    return module.eval()


def image_embedder(module: RetrieverModule) -> Callable[[list[Image.Image]], torch.Tensor]:
    transform = ImageTransform(tuple(module.hparams.image_size), train=False)

    @torch.no_grad()
    def embed(images: list[Image.Image]) -> torch.Tensor:
        return module.encode_images(torch.stack([transform(im) for im in images]))

    return embed


def _shard_items(root: Path, split: str) -> Iterator[tuple[str, Image.Image, int]]:
    for sample in iter_samples(root, split):
        yield sample.key, sample.image, sample.record.pid


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
    index.add_argument("--backend", choices=("faiss", "faiss-ivf", "torch"), default="torch")
    index.add_argument("--batch-size", type=int, default=128)
    search = commands.add_parser("search", help="rank an index's gallery for a description")
    search.add_argument("--index", type=Path, required=True)
    search.add_argument("--ckpt", type=Path, required=True)
    search.add_argument("--text", required=True, help="the description to search for")
    search.add_argument("--k", type=int, default=10)
    return parser


def run_index(args: argparse.Namespace) -> int:
    module = load_retriever(args.ckpt)
    skips = SkipCounter()
    items = _shard_items(args.shards, args.split) if args.shards else iter_image_folder(args.images, skips)
    index = GalleryIndex.build(
        image_embedder(module), items, args.out, batch_size=args.batch_size, backend=args.backend
    )
    print(
        f"indexed {len(index)} images into {args.out}" + (f" ({skips.value} unreadable skipped)" if skips.value else "")
    )
    return 0


def run_search(args: argparse.Namespace) -> int:
    if not args.text.strip():
        print("error: --text is empty", file=sys.stderr)
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
    args = build_parser().parse_args(argv)
    try:
        return run_index(args) if args.command == "index" else run_search(args)
    except (FileNotFoundError, GalleryIndexError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

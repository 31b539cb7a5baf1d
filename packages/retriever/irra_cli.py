"""`ireid-retriever import-irra`: IRRA's released `best.pth` as an ireid retriever checkpoint."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from ireid.retriever.irra_import import IRRA_IMAGE_SIZE, import_irra

TOKENIZER_NOTE = (
    "IRRA tokenizes with CLIP's BPE (49408 ids, context 77; its copy gives id 49405, CLIP's last merge, to <|mask|>). "
    "ireid tokenizes a real-weights retriever with the tokenizer of the CLIP directory its checkpoint names, so "
    "--clip must hold CLIP's tokenizer as well as the architecture IRRA fine-tuned: for the released models "
    "openai/clip-vit-base-patch16 (a local copy, or the hub id in the local Hugging Face cache). The written "
    "checkpoint names that directory, which must stay where it is."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ireid-retriever import-irra", description=__doc__, epilog=TOKENIZER_NOTE)
    parser.add_argument("--checkpoint", type=Path, required=True, help="IRRA's best.pth (read weights-only)")
    parser.add_argument(
        "--clip", required=True, help="Hugging Face CLIP directory (or cached hub id) IRRA started from"
    )
    parser.add_argument("--out", type=Path, required=True, help="the retriever checkpoint to write (.ckpt)")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=IRRA_IMAGE_SIZE,
        help="IRRA's --img_size (default %(default)s)",
    )
    parser.add_argument(
        "--no-heads",
        action="store_true",
        help="leave out IRRA's ID classifier and MLM head: image and text features only",
    )
    return parser


def main(argv: list[str]) -> int:
    """Convert, write, and say what was written and what was left out."""
    args = build_parser().parse_args(argv)
    result = import_irra(args.checkpoint, args.clip, args.out, tuple(args.image_size), heads=not args.no_heads)
    arch, settings = result.architecture, result.net.settings
    print(
        f"wrote {result.out}: ViT width {arch.vision_width}, {arch.vision_layers} layers, patch {arch.patch_size}, "
        f"{settings.image_size[0]}x{settings.image_size[1]}; text width {arch.text_width}, {arch.text_layers} layers, "
        f"{arch.context_length} tokens; embedding {arch.embed_dim}; losses {settings.losses}"
    )
    if result.unused:
        groups = Counter(key.removeprefix("base_model.").split(".")[0] for key in result.unused)
        print("unused tensors: " + ", ".join(f"{name} ({count})" for name, count in sorted(groups.items())))
    return 0

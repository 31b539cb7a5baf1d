"""`ireid lookforward`: write the questioner's look-forward targets for a split with a trained retriever."""

from __future__ import annotations

import argparse
from pathlib import Path

from ireid.core.gallery import encode_split
from ireid.core.loader import load_records
from ireid.core.records import evenly_spaced
from ireid.questioner.lookforward import TARGETS, build_targets, selector_tensors
from ireid.retriever.inference import ModuleRetriever, export_vision_tower
from ireid.selector.data import save_selector_tensors


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retriever-ckpt", type=Path, required=True, help="trained retriever checkpoint (.ckpt)")
    parser.add_argument("--data", type=Path, required=True, help="shard folder with annotated Q&A")
    parser.add_argument("--out", type=Path, required=True, help="output shard folder (resumed when it exists)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-rounds", type=int, default=10)
    parser.add_argument("--max-records", type=int, help="this many records spread evenly over the split (default all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--processes", type=int, default=1, help="share the batches among this many processes of one thread each"
    )
    parser.add_argument("--budget", type=int, default=200, help="candidates kept at round t: ceil(budget / t)")
    parser.add_argument(
        "--targets",
        choices=TARGETS,
        default="lookforward",
        help="best pair per round, one drawn ∝ 1/rank (soft), a random one (Table 3), or the pair about the "
        "attribute the annotated expected-gain rule asks (expected)",
    )
    parser.add_argument(
        "--gallery-ids",
        type=int,
        help="look forward against galleries of this many identities (default: the whole split)",
    )
    parser.add_argument(
        "--explore",
        type=float,
        default=0.0,
        help="share of rounds whose dialogue goes on with a random tried pair instead of the target",
    )
    parser.add_argument("--seed", type=int, default=0, help="for --targets random and --explore")
    parser.add_argument("--selector-file", type=Path, help="also write the selector's warm-up data file (.pt) here")
    parser.add_argument(
        "--vision-tower", type=Path, help="also write the retriever's image encoder here, as the questioner's tower"
    )


def run(args: argparse.Namespace) -> int:
    retriever = ModuleRetriever.from_checkpoint(args.retriever_ckpt)
    gallery = encode_split(retriever, args.data, args.split)
    records = evenly_spaced(load_records(args.data, args.split), args.max_records)
    summary = build_targets(
        retriever,
        gallery,
        records,
        args.out,
        args.split,
        args.max_rounds,
        args.batch_size,
        args.budget,
        targets=args.targets,
        seed=args.seed,
        explore=args.explore,
        gallery_ids=args.gallery_ids,
        processes=args.processes,
    )
    print("round  dialogues  mean target rank before -> after")
    for t, row in summary["rounds"].items():
        print(f"{t:>5}  {row['dialogues']:>9}  {row['mean_rank_before']:>10.1f} -> {row['mean_rank_after']:.1f}")
    print(f"targets: {args.out}")
    if args.selector_file:
        save_selector_tensors(args.selector_file, selector_tensors(args.out, args.split))
        print(f"selector data: {args.selector_file}")
    if args.vision_tower:
        print(f"vision tower: {export_vision_tower(args.retriever_ckpt, args.vision_tower)}")
    return 0

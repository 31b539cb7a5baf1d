"""`ireid witness`: the visual witness's SFT data, and how often any witness's answers agree with the truth.

ireid witness build-sft --data D --out O [--split train] [--samples 8000] [--seed 0]
ireid witness fit-attributes --data D --vision-tower T --out F [--steps 400] [--val-split val]
ireid witness consistency --data D --witness SPEC [--witness SPEC ...] [--split test] [--questions 200] [--out F]

`build-sft` writes ChatReID stage-3 conversation shards (`ireid.answerer.visual_sft`); tune a ChatReID model on
them with `python -m ireid.chatreid fit --config configs/answerer/visual-witness-synthetic.yaml`, then ask it as
`visual:chatreid:<best.ckpt>`. `fit-attributes` fits the attribute-reading witness's heads on a retriever's frozen
image encoder (`ireid.answerer.attribute_witness`), asked as `visual:attributes:<file>`. `consistency` asks every
witness the same sampled Q&A questions of a split: a text witness remembers the record's fine description, a visual
one sees another gallery image of the person (`ireid.interactive.witness_views`). A `chance` row is the rule-based
witness remembering a random other person of the split: answers at the population's rates, which a witness that sees
must beat.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ireid.answerer import build_witness, is_visual
from ireid.answerer.attribute_witness import fit_attribute_reader
from ireid.answerer.consistency import SCORING, consistency, sample_questions
from ireid.answerer.visual_sft import TASK, visual_witness_conversations
from ireid.app.strategies import server_options
from ireid.app.vision_models import vision_model
from ireid.chatreid.conversations import check_conversation, stage_prefix
from ireid.core.answers import UNKNOWN
from ireid.core.images import ImageStore
from ireid.core.llm import ServerSettings
from ireid.core.loader import load_records
from ireid.core.person_vision import VisionTowerFile
from ireid.core.records import QA, Record
from ireid.core.shards import ShardWriter, atomic_write_bytes, atomic_write_json
from ireid.interactive.witness_views import witness_views

CHANCE = "chance"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `witness` command group to the top-level CLI."""
    group = subparsers.add_parser("witness", help="the visual witness's SFT data; witnesses' answers against the truth")
    commands = group.add_subparsers(dest="witness_command", required=True)
    sft = commands.add_parser("build-sft", help="Q&A pairs asked about the person's image, as ChatReID stage-3 data")
    sft.add_argument("--data", required=True, type=Path, help="data set with Q&A pairs (shard folder)")
    sft.add_argument("--split", default="train")
    sft.add_argument("--out", required=True, type=Path)
    sft.add_argument("--samples", type=int, default=8000)
    sft.add_argument("--seed", type=int, default=0)
    sft.set_defaults(run=run_build_sft)
    heads = commands.add_parser("fit-attributes", help="the attribute-reading witness: heads on a frozen encoder")
    heads.add_argument("--data", required=True, type=Path, help="data set with annotated attributes")
    heads.add_argument("--vision-tower", required=True, type=Path, help="a retriever's image encoder (tower file)")
    heads.add_argument("--out", required=True, type=Path, help="the witness file")
    heads.add_argument("--split", default="train")
    heads.add_argument("--val-split", default="val", help="split scored per attribute after fitting")
    heads.add_argument("--steps", type=int, default=400)
    heads.add_argument("--min-confidence", type=float, default=0.5, help="below it the witness answers I don't know")
    heads.add_argument("--seed", type=int, default=0)
    heads.set_defaults(run=run_fit_attributes)
    check = commands.add_parser("consistency", help="the share of each witness's answers that agree with the truth")
    check.add_argument("--data", required=True, type=Path, help="data set with attributes and Q&A pairs")
    check.add_argument("--split", default="test")
    check.add_argument("--witness", action="append", required=True, help="a witness spec; repeat for several")
    check.add_argument("--questions", type=int, default=200)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--tokenizer-dir", help="the tokenizer of a `tiny` witness")
    check.add_argument("--timeout-s", type=float, default=60.0, help="openai: seconds per request")
    check.add_argument("--max-retries", type=int, default=3, help="openai: attempts per request")
    check.add_argument("--out", type=Path, help="JSON file (a Markdown table is written beside it)")
    check.set_defaults(run=run_consistency)


def run_build_sft(args: argparse.Namespace) -> int:
    records = load_records(args.data, args.split)
    prefix = stage_prefix(3)
    counts: Counter[str] = Counter()
    with ShardWriter(args.out, prefix) as writer:
        for key, sample in tqdm(
            visual_witness_conversations(records, args.samples, args.seed),
            total=args.samples, desc="visual witness conversations", unit="sample",
        ):  # fmt: skip
            check_conversation(sample, key, f"{args.out}: sample {key!r}")
            writer.write_sample(key, {"json": json.dumps(sample, sort_keys=True).encode()})
            answer = sample["messages"][-1]["content"][0]["text"]
            counts["I don't know" if answer == "I don't know." else "answered"] += 1
    settings = {"data": str(args.data), "split": args.split, "samples": args.samples, "seed": args.seed, "task": TASK}
    atomic_write_json(args.out / f"{prefix}.counts.json", settings | {"counts": dict(counts)})
    print(", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + f" -> {args.out}")
    return 0


def run_fit_attributes(args: argparse.Namespace) -> int:
    tower = VisionTowerFile.load(args.vision_tower)

    def annotated(split: str) -> tuple[list[bytes], list[dict[str, str]]]:
        store = ImageStore.from_shards(args.data, split)
        records = [r for r in load_records(args.data, split) if r.attributes]
        if not records:
            raise ValueError(f"{args.data} ({split}): no record has annotated attributes to fit the heads on")
        return [store.encoded(r.key) for r in records], [r.attributes for r in records]

    reader = fit_attribute_reader(tower, *annotated(args.split), steps=args.steps, seed=args.seed)
    reader.min_confidence = args.min_confidence
    images, truth = annotated(args.val_split)
    readings = reader.read(images)
    accuracy = {
        name: sum(reading[name][0] == t[name] for reading, t in zip(readings, truth, strict=True) if name in t)
        / max(1, sum(name in t for t in truth))
        for name in reader.heads.vocabulary
    }
    details = {"data": str(args.data), "split": args.split, "vision_tower": str(args.vision_tower),
               "steps": args.steps, "seed": args.seed, f"{args.val_split}_accuracy": accuracy}  # fmt: skip
    reader.save(args.out, details)
    print(f"{args.val_split} accuracy: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in accuracy.items()))
    print(f"-> {args.out}")
    return 0


def witness_consistency(
    data: Path, split: str, specs: list[str], questions: int, seed: int, server: ServerSettings,
    tokenizer_dir: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Every witness (and `chance`) on the same questions; a visual witness on those whose person has another
    gallery image (the others are counted)."""
    records = load_records(data, split)
    items = sample_questions(records, questions, seed)
    visual = any(is_visual(spec) for spec in specs)
    views = witness_views([r for r, _ in items], records, ImageStore.from_shards(data, split)) if visual else None
    seen = [(r, qa) for r, qa in items if views is None or r.key in views.chosen]
    rng = random.Random(seed)
    others = [rng.choice([o for o in records if o.pid != r.pid]).fine_description for r, _ in seen]
    rows: dict[str, Any] = {
        CHANCE: _scored(build_witness("rule").answer([qa.question for _, qa in seen], others), seen)
    }
    for spec in specs:
        witness = build_witness(spec, tokenizer_dir=tokenizer_dir,
                                vision_model=lambda source: vision_model(source, server),
                                **server_options(spec, server))  # fmt: skip
        memories = [views.memory(r) if views and is_visual(spec) else r.fine_description for r, _ in seen]
        rows[spec] = _scored(witness.answer([qa.question for _, qa in seen], memories), seen)
    skipped = views.skipped if views is not None else {}
    return {"data": str(data), "split": split, "questions": len(seen), "seed": seed, "scoring": SCORING,
            "skipped": {reason: len(keys) for reason, keys in skipped.items()}, "witnesses": rows}  # fmt: skip


def _scored(answers: list[str], items: list[tuple[Record, QA]]) -> dict[str, Any]:
    """`consistency`, plus the share of "I don't know." answers and the consistent share of the others."""
    scored = consistency(answers, items)
    known = [a for a in scored["answers"] if a["answer"] != UNKNOWN]
    scored["unknown"] = 1 - len(known) / len(answers)
    scored["consistent_when_answered"] = sum(a["consistent"] for a in known) / len(known) if known else 0.0
    return scored


def markdown_table(result: dict[str, Any]) -> str:
    qtypes = sorted({t for row in result["witnesses"].values() for t in row["consistent_by_type"]})
    lines = [
        "| witness | consistent | " + " | ".join(qtypes) + " | strict | I don't know | consistent when answered |",
        "|---|---:|" + "---:|" * len(qtypes) + "---:|---:|---:|",
    ]
    for name, row in result["witnesses"].items():
        by_type = " | ".join(f"{100 * row['consistent_by_type'].get(t, float('nan')):.1f}" for t in qtypes)
        lines.append(f"| {name} | {100 * row['consistent']:.1f} | {by_type} | {100 * row['strict']:.1f} | "
                     f"{100 * row['unknown']:.1f} | {100 * row['consistent_when_answered']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def run_consistency(args: argparse.Namespace) -> int:
    server = ServerSettings(timeout_s=args.timeout_s, max_retries=args.max_retries)
    result = witness_consistency(args.data, args.split, args.witness, args.questions, args.seed, server,
                                 args.tokenizer_dir)  # fmt: skip
    table = markdown_table(result)
    print(f"{result['questions']} questions of {args.data} ({args.split}); consistent answers, %:\n{table}")
    if args.out:
        atomic_write_json(args.out, result)
        atomic_write_bytes(args.out.with_suffix(".md"), table.encode())
    return 0

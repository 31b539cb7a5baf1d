"""Does the ChatReID model tell people apart? Its match confidence against the retriever's, pair by pair.

On the test split of ChatReID's world (or `--split train`), each visible query image is paired with one image of
each kind:

- `same outfit`: the same person in the same outfit, seen by another camera (a standard Re-ID match);
- `other outfit`: the same person in the other outfit, visible (a cloth-changing match);
- `infrared`: the same person through an infrared camera;
- `other person`: a visible image of someone else.

For each kind the table gives the mean P(Yes) of the one-to-one matching question (the confidence §4.1 ranks by)
and the AUC of telling that kind from `other person`, beside the AUC of the retriever's image-image cosine
similarity on the same pairs. An AUC near 0.5 means the confidence does not see identity; re-ranking with it
then only shuffles what the retriever ordered.

Writes `bench/results/diagnose_chatreid.json` and prints a Markdown table.

    python bench/diagnose_chatreid.py --data runs/learning-chatreid/seed-1/chatreid/data \\
        --retriever-ckpt RETRIEVER.ckpt --model-ckpt "1+2+3"=STAGE3.ckpt "tower"=OTHER.ckpt
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from benchlib import RESULTS, write_result

from ireid.chatreid.eval_tasks import INFRARED, VISIBLE, TaskDataError, record_modality, record_outfit
from ireid.chatreid.inference import ChatReID, pair_conversation, task_prompt
from ireid.core.images import ImageStore
from ireid.core.loader import load_records
from ireid.core.records import Record
from ireid.retriever.inference import ModuleRetriever

KINDS = ("same outfit", "other outfit", "infrared")
NEGATIVE = "other person"
QUERIES = 100


def pairs(records: list[Record], count: int, seed: int = 0) -> list[tuple[Record, Record, str]]:
    """Up to `count` visible queries, each with one partner of every kind its person has (module docstring)."""
    rng = random.Random(seed)
    modality = {r.key: record_modality(r) for r in records}
    visible = [r for r in records if modality[r.key] == VISIBLE]
    by_pid: dict[int, list[Record]] = defaultdict(list)
    for r in records:
        by_pid[r.pid].append(r)
    out = []
    for query in rng.sample(visible, min(count, len(visible))):
        mates = [r for r in by_pid[query.pid] if r.key != query.key]
        kinds = {
            "same outfit": [
                r
                for r in mates
                if modality[r.key] == VISIBLE and record_outfit(r) == record_outfit(query) and r.camid != query.camid
            ],
            "other outfit": [
                r for r in mates if modality[r.key] == VISIBLE and record_outfit(r) != record_outfit(query)
            ],
            "infrared": [r for r in mates if modality[r.key] == INFRARED],
            NEGATIVE: [r for r in visible if r.pid != query.pid],
        }
        out += [(query, rng.choice(found), kind) for kind, found in kinds.items() if found]
    return out


def auc(positive: torch.Tensor, negative: torch.Tensor) -> float:
    """P(a positive pair scores above a negative one), ties counting half (the Mann-Whitney form of ROC AUC)."""
    diff = positive[:, None] - negative[None, :]
    return float((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean())


def summary(scores: torch.Tensor, kinds: list[str]) -> dict[str, dict[str, float]]:
    """Per kind: mean score and the AUC against `other person` pairs."""
    negative = scores[[k == NEGATIVE for k in kinds]]
    out = {NEGATIVE: {"pairs": len(negative), "mean": float(negative.mean())}}
    for kind in KINDS:
        positive = scores[[k == kind for k in kinds]]
        if len(positive):
            out[kind] = {"pairs": len(positive), "mean": float(positive.mean()), "auc": auc(positive, negative)}
    return out


@torch.no_grad()
def diagnose(data: Path, retriever_ckpt: Path, models: dict[str, Path], queries: int, split: str) -> dict[str, Any]:
    records = load_records(data, split)
    store = ImageStore.from_shards(data, split)
    chosen = pairs(records, queries)
    kinds = [kind for _, _, kind in chosen]
    queries_img = store.load([q.key for q, _, _ in chosen])
    partners = store.load([p.key for _, p, _ in chosen])
    retriever = ModuleRetriever.from_checkpoint(retriever_ckpt)
    a, b = retriever.encode_images(queries_img), retriever.encode_images(partners)
    rows = {"retriever cosine": summary((a * b).sum(-1), kinds)}
    for name, ckpt in models.items():
        model = ChatReID.from_checkpoint(ckpt)
        prompt = task_prompt("standard")
        confidences = model.yes_probability(
            [pair_conversation(prompt, q, p) for q, p in zip(queries_img, partners, strict=True)]
        )
        rows[f"ChatReID {name} P(Yes)"] = summary(confidences, kinds)
    named = {k: str(v) for k, v in models.items()}
    return {"data": str(data), "split": split, "retriever_ckpt": str(retriever_ckpt), "models": named, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    head = "| score | " + " | ".join(f"{k} mean / AUC" for k in KINDS) + f" | {NEGATIVE} mean |"
    lines = [head, "|---" + "|---:" * (len(KINDS) + 1) + "|"]
    for name, row in result["rows"].items():
        cells = [f"{row[k]['mean']:.3f} / {row[k]['auc']:.3f}" if k in row else "-" for k in KINDS]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {row[NEGATIVE]['mean']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="ChatReID's world (an `ireid data` folder)")
    parser.add_argument("--retriever-ckpt", type=Path, required=True)
    parser.add_argument("--model-ckpt", nargs="+", required=True, help="NAME=CHECKPOINT, one per ChatReID model")
    parser.add_argument("--queries", type=int, default=QUERIES)
    parser.add_argument("--split", default="test", help="`train` asks whether the pairs it was taught are told apart")
    parser.add_argument("--out", type=Path, default=RESULTS / "diagnose_chatreid.json")
    args = parser.parse_args(argv)
    models = {}
    for item in args.model_ckpt:
        name, sep, path = item.partition("=")
        if not sep or not name:
            print(f"error: --model-ckpt {item!r}: expected NAME=CHECKPOINT", file=sys.stderr)
            return 2
        models[name] = Path(path)
    try:
        result = diagnose(args.data, args.retriever_ckpt, models, args.queries, args.split)
    except (OSError, KeyError, ValueError, TaskDataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = markdown(result)
    write_result("diagnose_chatreid", {**result, "markdown": table}, args.out)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

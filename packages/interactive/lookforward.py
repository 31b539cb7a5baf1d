"""`ireid lookforward`: the questioner's training targets by one-step looking-forward (LLaVA-ReID Eq. 9).

The training gallery is encoded once. For each training dialogue, round after round, every unused annotated
answer is appended in turn and the target's best rank is taken; the question whose answer ranks the target
best is that round's target, its answer is appended, and the next round starts. A dialogue stops when fewer
than two unused pairs remain (as the reference does) or after `max_rounds`.

One shard sample per record: `json` (per round: the dialogue so far, the target Q&A, the target's rank before
and after, the candidate keys), `dialogue.npy` ([T, D] fp16 dialogue embeddings before each round's question)
and `r{t}.npy` ([k_t, D] fp16 embeddings of round t's top k_t = ceil(budget / t) candidates). Records already
written are skipped on resume; `<split>.lookforward.json` holds the mean target rank per round.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ireid.core.loader import load_records
from ireid.core.metrics import target_ranks_from_scores
from ireid.core.protocols import Dialogue, TextImageRetriever
from ireid.core.records import Record, evenly_spaced
from ireid.core.shards import ShardWriter, atomic_write_json, shard_paths
from ireid.interactive.candidates import pool_size
from ireid.interactive.gallery import Gallery, encode_split
from ireid.interactive.retrieval import ModuleRetriever
from ireid.interactive.session import retrieval_text_reader
from ireid.interactive.strategies.annotated import LookAhead, look_forward_ranks
from ireid.interactive.strategies.base import RoundContext
from ireid.selector.data import save_selector_tensors

MIN_UNUSED = 2
TARGETS = ("lookforward", "random")


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@torch.no_grad()
def look_forward_batch(
    records: Sequence[Record],
    gallery: Gallery,
    retriever: TextImageRetriever,
    max_rounds: int,
    budget: int = 200,
    targets: str = "lookforward",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Targets for a batch of records: per record its rounds and the arrays to store with them.

    `targets="random"` takes a random pair among those looking-forward tries instead of the best one: the
    "random" question-target row of LLaVA-ReID Table 3.
    """
    if targets not in TARGETS:
        raise ValueError(f"unknown targets {targets!r}; expected one of {', '.join(TARGETS)}")
    text_of = retrieval_text_reader()
    records = list(records)
    dialogues = [Dialogue(r.initial_description) for r in records]
    pids = torch.tensor([r.pid for r in records], dtype=torch.long)
    rounds: list[list[dict[str, Any]]] = [[] for _ in records]
    arrays: list[dict[str, np.ndarray]] = [{} for _ in records]
    embeddings: list[list[np.ndarray]] = [[] for _ in records]
    active = [i for i, r in enumerate(records) if len(r.qas) >= MIN_UNUSED]
    for t in range(1, max_rounds + 1):
        if not active:
            break
        embedded = retriever.encode_text([text_of(dialogues[i]) for i in active])
        scores = gallery.scores(embedded)
        before = target_ranks_from_scores(scores, pids[active], gallery.pids)
        ctx = RoundContext(
            t, [records[i] for i in active], [dialogues[i] for i in active], scores, gallery, retriever, text_of
        )
        top = torch.topk(scores, min(pool_size(t, budget), len(gallery)), dim=1).indices
        still = []
        for row, (i, ranks) in enumerate(zip(active, look_forward_ranks(ctx), strict=True)):
            if not ranks:
                continue
            choice = _choose(ranks, targets, random.Random(f"{seed}:{records[i].key}:{t}"))
            qa = records[i].qas[choice.qa_index]
            rounds[i].append(
                {
                    "round": t,
                    "dialogue": [{"question": turn.question, "answer": turn.answer} for turn in dialogues[i].turns],
                    "question": qa.question,
                    "answer": qa.answer,
                    "rank_before": int(before[row]),
                    "rank_after": choice.rank,
                    "candidates": [gallery.keys[j] for j in top[row].tolist()],
                }
            )
            arrays[i][f"r{t}.npy"] = gallery.embeddings[top[row]].numpy().astype(np.float16)
            embeddings[i].append(embedded[row].numpy().astype(np.float16))
            dialogues[i].ask(qa.question, qa.answer)
            if len(records[i].qas) - len(dialogues[i].turns) >= MIN_UNUSED:
                still.append(i)
        active = still
    return [
        {"key": r.key, "rounds": rounds[i], "dialogue": np.stack(embeddings[i]) if embeddings[i] else None, **arrays[i]}
        for i, r in enumerate(records)
    ]


def _choose(ranks: dict[int, int], targets: str, rng: random.Random) -> LookAhead:
    if targets == "random":
        index = rng.choice(list(ranks))
        return LookAhead(index, ranks[index])
    return LookAhead(*min(ranks.items(), key=lambda item: item[1]))


def _members(target: dict[str, Any], record: Record) -> dict[str, bytes]:
    meta = {"key": record.key, "pid": record.pid, "initial": record.initial_description, "rounds": target["rounds"]}
    members = {"json": json.dumps(meta, sort_keys=True).encode()}
    if target["dialogue"] is not None:
        members["dialogue.npy"] = _npy(target["dialogue"])
    members.update(
        {name: _npy(array) for name, array in target.items() if name.endswith(".npy") and name != "dialogue"}
    )
    return members


def summarise(out: Path, split: str) -> dict[str, Any]:
    """Mean target rank before and after each round's target question, over every record written."""
    by_round: dict[int, list[tuple[int, int]]] = {}
    for meta, _ in _iter_targets(out, split):
        for r in meta["rounds"]:
            by_round.setdefault(r["round"], []).append((r["rank_before"], r["rank_after"]))
    return {
        str(t): {
            "dialogues": len(pairs),
            "mean_rank_before": float(np.mean([b for b, _ in pairs])),
            "mean_rank_after": float(np.mean([a for _, a in pairs])),
        }
        for t, pairs in sorted(by_round.items())
    }


def _iter_targets(out: Path, split: str):
    """(meta, arrays) per written record; arrays by member name ("dialogue.npy", "r1.npy", ...)."""
    for path in shard_paths(out, split):
        with tarfile.open(path) as tar:
            members: dict[str, dict[str, bytes]] = {}
            for member in tar.getmembers():
                key, _, extension = member.name.partition(".")
                members.setdefault(key, {})[extension] = tar.extractfile(member).read()  # type: ignore[union-attr]
        for parts in members.values():
            meta = json.loads(parts.pop("json"))
            yield meta, {name: np.load(io.BytesIO(data), allow_pickle=False) for name, data in parts.items()}


def selector_tensors(out: Path, split: str) -> dict[str, torch.Tensor]:
    """One selector training row per (record, round): dialogue embedding, candidates in rank order, padding mask.

    The layout of `ireid.selector`'s data files, so the selector warms up on the retriever's own rankings.
    """
    rows = [(arrays["dialogue.npy"][i], arrays[f"r{r['round']}.npy"]) for meta, arrays in _iter_targets(out, split)
            for i, r in enumerate(meta["rounds"])]  # fmt: skip
    if not rows:
        raise ValueError(f"{out}: no look-forward rounds in split {split!r}")
    width = max(len(candidates) for _, candidates in rows)
    dim = rows[0][0].shape[0]
    dialogue = torch.zeros(len(rows), dim)
    candidates = torch.zeros(len(rows), width, dim)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (state, pool) in enumerate(rows):
        dialogue[i] = torch.from_numpy(state.astype(np.float32))
        candidates[i, : len(pool)] = torch.from_numpy(pool.astype(np.float32))
        mask[i, : len(pool)] = True
    return {"dialogue": dialogue, "candidates": candidates, "mask": mask}


def _check_settings(out: Path, split: str, settings: dict[str, Any]) -> None:
    """A folder is resumed only with the settings it was started with: mixed targets would train on both."""
    path = out / f"{split}.settings.json"
    if path.exists():
        written = json.loads(path.read_text())
        if written != settings:
            raise ValueError(f"{path}: targets were built with {written}, not {settings}; use another --out")
    else:
        atomic_write_json(path, settings)


def build_targets(
    retriever: TextImageRetriever,
    gallery: Gallery,
    records: Sequence[Record],
    out: Path,
    split: str = "train",
    max_rounds: int = 10,
    batch_size: int = 64,
    budget: int = 200,
    shard_size: int = 1000,
    targets: str = "lookforward",
    seed: int = 0,
) -> dict[str, Any]:
    """Write the look-forward targets of `records` against `gallery` (resuming), then the per-round summary."""
    settings = {"targets": targets, "seed": seed, "budget": budget, "max_rounds": max_rounds}
    _check_settings(Path(out), split, settings)
    with ShardWriter(out, split, max_samples=shard_size, resume=True) as writer:
        todo = [r for r in records if r.key not in writer.written_keys]
        for start in tqdm(range(0, len(todo), batch_size), desc="look forward", unit="batch"):
            batch = todo[start : start + batch_size]
            chosen = look_forward_batch(batch, gallery, retriever, max_rounds, budget, targets, seed)
            for record, target in zip(batch, chosen, strict=True):
                writer.write_sample(record.key, _members(target, record))
    summary = {"split": split, "records": len(records), **settings, "rounds": summarise(out, split)}
    atomic_write_json(out / f"{split}.lookforward.json", summary)
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retriever-ckpt", type=Path, required=True, help="trained retriever checkpoint (.ckpt)")
    parser.add_argument("--data", type=Path, required=True, help="shard folder with annotated Q&A")
    parser.add_argument("--out", type=Path, required=True, help="output shard folder (resumed when it exists)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-rounds", type=int, default=10)
    parser.add_argument("--max-records", type=int, help="this many records spread evenly over the split (default all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--budget", type=int, default=200, help="candidates kept at round t: ceil(budget / t)")
    parser.add_argument(
        "--targets", choices=TARGETS, default="lookforward", help="best pair per round, or a random one (Table 3)"
    )
    parser.add_argument("--seed", type=int, default=0, help="for --targets random")
    parser.add_argument("--selector-file", type=Path, help="also write the selector's warm-up data file (.pt) here")


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
    )
    print("round  dialogues  mean target rank before -> after")
    for t, row in summary["rounds"].items():
        print(f"{t:>5}  {row['dialogues']:>9}  {row['mean_rank_before']:>10.1f} -> {row['mean_rank_after']:.1f}")
    print(f"targets: {args.out}")
    if args.selector_file:
        save_selector_tensors(args.selector_file, selector_tensors(args.out, args.split))
        print(f"selector data: {args.selector_file}")
    return 0

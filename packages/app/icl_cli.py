"""`ireid icl`: ICL's test-time human-centred interaction (THI) over a trained retriever, and its SFT data.

ireid icl rerank --config configs/icl/synthetic.yaml [--data D] [--retriever-ckpt R] [--mllm SOURCE] [--xi X] ...
ireid icl build-sft --data D --retriever-ckpt R --out O [--samples N] [--vqa-share S] [--negatives K]

SOURCE names the MLLM: `annotated` (the images' annotations, uses ground truth: THI's upper bound),
`chatreid:<checkpoint>` (a ChatReID model) or `openai:<base_url>#<model>` (a vision server such as vLLM or SGLang).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import Counter
from pathlib import Path

import torch
from tqdm import tqdm

from ireid.app.thi_pipeline import build_thi, text_negatives
from ireid.chatreid.conversations import check_conversation, stage_prefix
from ireid.core.gallery import encode_split
from ireid.core.images import ImageStore
from ireid.core.loader import load_records
from ireid.core.records import evenly_spaced
from ireid.core.shards import ShardWriter, atomic_write_bytes, atomic_write_json
from ireid.icl.config import RerankConfig, load_config
from ireid.icl.evaluation import calls_per_query, evaluate_thi, markdown_table, plot_sweep, query_texts
from ireid.icl.sft import STAGE, VQA_TASK, sft_conversations
from ireid.retriever.inference import ModuleRetriever


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `icl` command group to the top-level CLI."""
    group = subparsers.add_parser("icl", help="ICL: test-time human-centred interaction (THI) over a retriever")
    commands = group.add_subparsers(dest="icl_command", required=True)
    rerank = commands.add_parser("rerank", help="re-rank a text-to-image evaluation with THI (ICL Tables 1, 5; Fig. 5)")
    rerank.add_argument("--config", type=Path, help="YAML settings (configs/icl/*.yaml)")
    rerank.add_argument("--data", dest="data_dir")
    rerank.add_argument("--split")
    rerank.add_argument("--retriever-ckpt", dest="retriever_ckpt")
    rerank.add_argument("--mllm", help="annotated | chatreid:<ckpt> | openai:<base_url>#<model>")
    rerank.add_argument("--query", choices=("caption", "initial"))
    rerank.add_argument("--max-queries", dest="max_queries", type=int)
    rerank.add_argument("--out")
    rerank.add_argument("--xi", type=float, help="similarity threshold ξ")
    rerank.add_argument("--lam", type=float, help="weight λ of the raw query's similarity")
    rerank.add_argument("--rounds", type=int, help="candidates checked for the anchor (K)")
    rerank.add_argument("--aggregation", choices=("mllm", "join"))
    rerank.add_argument("--timeout-s", dest="timeout_s", type=float, help="openai: seconds per request")
    rerank.add_argument("--max-retries", dest="max_retries", type=int, help="openai: attempts per request")
    rerank.add_argument("--anchor-pairs", dest="anchor_pairs", type=int, help="queries scored for anchor accuracy")
    rerank.set_defaults(run=run_rerank)
    sft = commands.add_parser("build-sft", help="Eq. 3's SFT conversations: Yes/No anchor pairs and VQA pairs")
    sft.add_argument("--data", required=True, help="image data set (shard folder)")
    sft.add_argument("--retriever-ckpt", required=True, help="mines each text's hard negatives")
    sft.add_argument("--out", required=True, help="conversation folder (stage3-*.tar, read by ireid-chatreid fit)")
    sft.add_argument("--split", default="train")
    sft.add_argument("--samples", type=int, default=8000)
    sft.add_argument("--vqa-share", type=float, default=0.3, help="share of VQA pairs (0: anchor pairs only)")
    sft.add_argument("--negatives", type=int, default=10, help="each text's negatives: its top-K other people")
    sft.add_argument("--seed", type=int, default=0)
    sft.set_defaults(run=run_build_sft)


def resolve_config(args: argparse.Namespace) -> RerankConfig:
    config = load_config(args.config)
    top = ("data_dir", "split", "retriever_ckpt", "mllm", "query", "max_queries", "out", "anchor_pairs")
    config = dataclasses.replace(config, **{k: getattr(args, k) for k in top if getattr(args, k) is not None})
    thi = {k: getattr(args, k) for k in ("xi", "lam", "rounds", "aggregation") if getattr(args, k) is not None}
    server = {k: getattr(args, k) for k in ("timeout_s", "max_retries") if getattr(args, k) is not None}
    return dataclasses.replace(
        config, thi=dataclasses.replace(config.thi, **thi), server=dataclasses.replace(config.server, **server)
    )


def run_build_sft(args: argparse.Namespace) -> int:
    out = Path(args.out)
    retriever = ModuleRetriever.from_checkpoint(args.retriever_ckpt)
    records, negatives = text_negatives(retriever, args.data, args.split, args.negatives)
    counts: Counter[str] = Counter()
    prefix = stage_prefix(STAGE)
    with ShardWriter(out, prefix) as writer:
        for key, sample in tqdm(
            sft_conversations(records, negatives, args.samples, args.vqa_share, args.seed),
            total=args.samples, desc="ICL SFT conversations", unit="sample",
        ):  # fmt: skip
            check_conversation(sample, key, f"{out}: sample {key!r}")
            writer.write_sample(key, {"json": json.dumps(sample, sort_keys=True).encode()})
            answer = sample["messages"][-1]["content"][0]["text"]
            counts[sample["task"] if sample["task"] == VQA_TASK else f"{sample['task']} {answer}"] += 1
    settings = ("data", "split", "retriever_ckpt", "samples", "vqa_share", "negatives", "seed")
    summary = {name: getattr(args, name) for name in settings} | {"counts": dict(counts)}
    atomic_write_json(out / f"{prefix}.counts.json", summary)
    print(", ".join(f"{task}: {n}" for task, n in sorted(counts.items())) + f" -> {out}")
    return 0


def run_rerank(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    out = Path(config.out)
    records = load_records(config.data_dir, config.split)
    queries = evenly_spaced(records, config.max_queries)
    texts = query_texts(queries, config.query)
    images = None if config.mllm == "annotated" else ImageStore.from_shards(config.data_dir, config.split)
    retriever = ModuleRetriever.from_checkpoint(config.retriever_ckpt)
    thi = build_thi(config.mllm, config.thi, retriever, {r.key: r for r in records}, images, config.server)
    gallery = encode_split(retriever, config.data_dir, config.split)
    pids = torch.tensor([q.pid for q in queries], dtype=torch.long)
    report = evaluate_thi(thi, texts, pids, gallery, config.sweep_xi, config.sweep_lam, config.anchor_pairs)
    questions = len(getattr(thi.perception.inner, "questions", ()))  # type: ignore[attr-defined]
    report["calls_per_query"] = round(calls_per_query(report["counts"], questions), 3)
    report["uses_ground_truth"] = thi.perception.uses_ground_truth
    report["config"] = config.to_dict()
    atomic_write_json(out / "thi.json", report)
    table = markdown_table(report, thi.perception.name)
    atomic_write_bytes(out / "thi.md", table.encode())
    plot_sweep(report, config.thi.xi, config.thi.lam, out / "thi_sweep.png")
    c = report["counts"]
    print(table)
    print(
        f"{c['interacted']} of {c['queries']} queries interacted "
        f"(anchor shows the person: {report['anchor_is_match']} %), "
        f"{report['calls_per_query']} model calls per query; fallbacks: {c['unreadable_replies']} unreadable replies, "
        f"{c['empty_merged_queries']} empty and {c['overlong_merged_queries']} overlong merged queries"
    )
    if report["anchor_accuracy"] is not None:
        a = report["anchor_accuracy"]
        print(f"anchor localisation on {a['pairs']} balanced pairs: {a['accuracy']} % right (Yes on a match "
              f"{a['yes_on_match']} %, No on another person {a['no_on_other_person']} %)")  # fmt: skip
    for name in ("thi.json", "thi.md", "thi_sweep.png"):
        print(f"{name}: {out / name}")
    return 0

"""`ireid icl`: ICL's test-time human-centred interaction (THI) over a trained retriever, and its SFT data.

ireid icl rerank --config configs/icl/synthetic.yaml [--data D] [--retriever-ckpt R] [--mllm SOURCE] [--xi X] ...
ireid icl build-sft --data D --retriever-ckpt R --out O [--samples N] [--vqa-share S] [--negatives K]
ireid icl rda --data D --out O [--llm smollm2] [--mllm annotated] [--rewrites 3] [--max-records N]

SOURCE names the MLLM: `annotated` (the images' annotations, uses ground truth: THI's upper bound),
`attribute-net:<file>` (no language model: an attribute net's readings of the images), `chatreid:<checkpoint>` (a
ChatReID model) or `openai:<base_url>#<model>` (a vision server such as vLLM or SGLang).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from ireid.app.thi_pipeline import build_perception, thi_report, write_sft
from ireid.app.vision_models import ANNOTATED
from ireid.core.converters.common import PNG_MAGIC
from ireid.core.images import ImageStore
from ireid.core.llm import OPENAI_PREFIX, ServerSettings, load_chat_llm
from ireid.core.loader import undecoded_samples
from ireid.core.records import Record
from ireid.core.reply_cache import ReplyCache
from ireid.core.shards import MANIFEST_SUFFIX, ShardWriter, atomic_write_bytes, atomic_write_json
from ireid.core.tokenizer import dataset_tokenizer
from ireid.icl.config import THIEvalConfig, load_config
from ireid.icl.evaluation import markdown_table, plot_sweep
from ireid.icl.rda import RDAGenerator, RDASettings, consistency


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `icl` command group to the top-level CLI."""
    group = subparsers.add_parser("icl", help="ICL: test-time interaction (THI) over a retriever, its SFT data, RDA")
    commands = group.add_subparsers(dest="icl_command", required=True)
    rerank = commands.add_parser("rerank", help="re-rank a text-to-image evaluation with THI (ICL Tables 1, 5; Fig. 5)")
    rerank.add_argument("--config", type=Path, help="YAML settings (configs/icl/*.yaml)")
    rerank.add_argument("--data", dest="data_dir")
    rerank.add_argument("--split")
    rerank.add_argument("--retriever-ckpt", dest="retriever_ckpt")
    rerank.add_argument("--mllm", help="annotated | attribute-net:<file> | chatreid:<ckpt> | openai:<base_url>#<model>")
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
    rda = commands.add_parser("rda", help="§3.3: a copy of a data set whose records carry RDA groups from an LLM")
    rda.add_argument("--data", required=True, help="the data set (shard folder)")
    rda.add_argument("--out", required=True, help="the copy (its other splits copied as they are); resumes")
    rda.add_argument("--split", default="train")
    rda.add_argument(
        "--llm", default="smollm2", help="decomposition and rewriting: smollm2 | tiny | openai:URL#MODEL | dir"
    )
    sources = "annotated | attribute-net:<file> | chatreid:<ckpt> | openai:URL#MODEL"
    rda.add_argument("--mllm", help=f"enrichment by VQA on each image: {sources}")
    rda.add_argument("--rewrites", type=int, default=3)
    rda.add_argument("--max-records", type=int, help="only the first N records get new groups; the others are copied")
    rda.add_argument("--batch-size", type=int, default=32, help="records per batch of model calls")
    rda.add_argument("--timeout-s", type=float, default=60.0, help="openai: seconds per request")
    rda.add_argument("--max-retries", type=int, default=3, help="openai: attempts per request")
    rda.set_defaults(run=run_rda)


def resolve_config(args: argparse.Namespace) -> THIEvalConfig:
    config = load_config(args.config)
    top = ("data_dir", "split", "retriever_ckpt", "mllm", "query", "max_queries", "out", "anchor_pairs")
    config = dataclasses.replace(config, **{k: getattr(args, k) for k in top if getattr(args, k) is not None})
    thi = {k: getattr(args, k) for k in ("xi", "lam", "rounds", "aggregation") if getattr(args, k) is not None}
    server = {k: getattr(args, k) for k in ("timeout_s", "max_retries") if getattr(args, k) is not None}
    return dataclasses.replace(
        config, thi=dataclasses.replace(config.thi, **thi), server=dataclasses.replace(config.server, **server)
    )


def run_build_sft(args: argparse.Namespace) -> int:
    counts = write_sft(
        Path(args.out), Path(args.data), Path(args.retriever_ckpt), args.split, args.samples, args.vqa_share,
        args.negatives, args.seed,
    )  # fmt: skip
    print(", ".join(f"{task}: {n}" for task, n in sorted(counts.items())) + f" -> {args.out}")
    return 0


def run_rerank(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    out = Path(config.out)
    report = thi_report(config) | {"config": config.to_dict()}
    atomic_write_json(out / "thi.json", report)
    table = markdown_table(report, report["perception"])
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


def _copy_other_splits(data: Path, out: Path, split: str) -> None:
    """Everything of the data set but the split's shards and manifest, copied once."""
    for path in data.iterdir():
        shard = path.name.startswith(f"{split}-") and path.suffix == ".tar"
        if shard or path.name == f"{split}{MANIFEST_SUFFIX}":
            continue
        target = out / path.name
        if not target.exists():
            shutil.copytree(path, target) if path.is_dir() else shutil.copy2(path, target)


def _write(writer: ShardWriter, record: Record, image: bytes) -> None:
    """A record with its image bytes as they were encoded."""
    writer.write(record, image, "png" if image.startswith(PNG_MAGIC) else "jpg")


def run_rda(args: argparse.Namespace) -> int:
    data, out = Path(args.data), Path(args.out)
    if args.batch_size < 1 or (args.max_records is not None and args.max_records < 0):
        raise ValueError("--batch-size must be at least 1 and --max-records at least 0")
    samples = undecoded_samples(data, args.split)
    out.mkdir(parents=True, exist_ok=True)
    _copy_other_splits(data, out, args.split)
    server = ServerSettings(timeout_s=args.timeout_s, max_retries=args.max_retries)
    options = dataclasses.asdict(server) if args.llm.startswith(OPENAI_PREFIX) else {}
    tokenizer_dir = Path(dataset_tokenizer(data).name_or_path) if args.llm == "tiny" else None  # a tiny LLM's words
    llm = load_chat_llm(args.llm, tokenizer_dir=tokenizer_dir, **options)
    perception = None
    if args.mllm:
        records = {s.record.key: s.record for s in samples}
        images = None if args.mllm == ANNOTATED else ImageStore.from_shards(data, args.split)
        perception = build_perception(args.mllm, records, images, server)
    generator = RDAGenerator(llm, ReplyCache(out / "rda.cache.jsonl", args.llm), RDASettings(rewrites=args.rewrites),
                             perception)  # fmt: skip
    chosen = samples if args.max_records is None else samples[: args.max_records]
    truth: Counter[str] = Counter()
    start = time.perf_counter()
    with ShardWriter(out, args.split, resume=True) as writer:
        for begin in tqdm(range(0, len(chosen), args.batch_size), desc="RDA groups", unit="batch"):
            batch = [s for s in chosen[begin : begin + args.batch_size] if s.record.key not in writer.written_keys]
            if not batch:
                continue
            for sample, groups in zip(batch, generator.groups([s.record for s in batch]), strict=True):
                if sample.record.attributes:
                    truth.update(consistency(groups, sample.record.attributes))
                _write(writer, dataclasses.replace(sample.record, rda_groups=groups), sample.image)  # type: ignore[arg-type]
        for sample in samples[len(chosen) :]:
            _write(writer, sample.record, sample.image)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    made = generator.counts["records"]
    summary = {
        "data": str(data), "split": args.split, "llm": args.llm, "mllm": args.mllm, "rewrites": args.rewrites,
        "records_with_new_groups": len(chosen), "model_calls": generator.cache.asked, "counts": dict(generator.counts),
        "seconds": round(seconds, 1), "records_per_minute": round(60 * made / max(seconds, 1e-9), 1),
    }  # fmt: skip
    if truth:
        summary["consistency"] = {
            kind: {"stating_an_attribute": round(100 * truth[f"{kind}_stating"] / max(truth[kind], 1), 1),
                   "only_true_values": round(100 * truth[f"{kind}_true"] / max(truth[f"{kind}_stating"], 1), 1)}
            for kind in ("sub_sentences", "rewrites")
        }  # fmt: skip
    atomic_write_json(out / "rda.summary.json", summary)
    print(json.dumps(summary, indent=1))
    return 0

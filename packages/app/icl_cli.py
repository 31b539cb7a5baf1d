"""`ireid icl`: ICL's test-time human-centred interaction (THI) over a trained retriever.

ireid icl rerank --config configs/icl/synthetic.yaml [--data D] [--retriever-ckpt R] [--mllm SOURCE] [--xi X] ...

SOURCE names the MLLM: `annotated` (the images' annotations, uses ground truth: THI's upper bound),
`chatreid:<checkpoint>` (a ChatReID model) or `openai:<base_url>#<model>` (a vision server such as vLLM or SGLang).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from ireid.chatreid.inference import ChatReID
from ireid.core.gallery import encode_split
from ireid.core.images import ImageStore
from ireid.core.llm import OPENAI_PREFIX, OpenAIVisionLLM
from ireid.core.loader import load_records
from ireid.core.protocols import VisionLanguageModel
from ireid.core.records import evenly_spaced
from ireid.core.shards import atomic_write_bytes, atomic_write_json
from ireid.icl.config import RerankConfig, load_config
from ireid.icl.evaluation import calls_per_query, evaluate_thi, markdown_table, plot_sweep, query_texts
from ireid.icl.perception import AnnotatedPerception, CachedPerception, MLLMPerception, Perception
from ireid.icl.thi import THI, MLLMAggregator
from ireid.retriever.inference import ModuleRetriever

CHATREID_PREFIX = "chatreid:"


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
    rerank.set_defaults(run=run_rerank)


def resolve_config(args: argparse.Namespace) -> RerankConfig:
    config = load_config(args.config)
    top = ("data_dir", "split", "retriever_ckpt", "mllm", "query", "max_queries", "out")
    config = dataclasses.replace(config, **{k: getattr(args, k) for k in top if getattr(args, k) is not None})
    thi = {k: getattr(args, k) for k in ("xi", "lam", "rounds", "aggregation") if getattr(args, k) is not None}
    server = {k: getattr(args, k) for k in ("timeout_s", "max_retries") if getattr(args, k) is not None}
    return dataclasses.replace(
        config, thi=dataclasses.replace(config.thi, **thi), server=dataclasses.replace(config.server, **server)
    )


def vision_model(source: str, config: RerankConfig) -> VisionLanguageModel:
    """The MLLM a source string names (not `annotated`, which is no model)."""
    if source.startswith(CHATREID_PREFIX):
        return ChatReID.from_checkpoint(source.removeprefix(CHATREID_PREFIX))
    if source.startswith(OPENAI_PREFIX):
        base_url, _, model = source.removeprefix(OPENAI_PREFIX).partition("#")
        if not base_url or not model:
            raise ValueError(f"MLLM source {source!r}: expected openai:<base_url>#<model>")
        return OpenAIVisionLLM(base_url, model, **dataclasses.asdict(config.server))
    raise ValueError(f"MLLM source {source!r}: expected annotated, chatreid:<ckpt> or openai:<base_url>#<model>")


def build_thi(config: RerankConfig, retriever: ModuleRetriever, records: dict, images: ImageStore | None) -> THI:
    perception: Perception
    aggregator = None
    if config.mllm == "annotated":
        if config.thi.aggregation == "mllm":
            raise ValueError("config field 'thi.aggregation': 'mllm' needs an MLLM; with --mllm annotated use join")
        perception = AnnotatedPerception(records)
    else:
        model = vision_model(config.mllm, config)
        perception = MLLMPerception(model, images, name=config.mllm.partition(":")[0])  # type: ignore[arg-type]
        if config.thi.aggregation == "mllm":
            aggregator = MLLMAggregator(model, config.thi.max_words, config.thi.max_new_tokens)
    return THI(CachedPerception(perception), retriever.encode_text, config.thi, aggregator)


def run_rerank(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    out = Path(config.out)
    records = load_records(config.data_dir, config.split)
    queries = evenly_spaced(records, config.max_queries)
    texts = query_texts(queries, config.query)
    images = None if config.mllm == "annotated" else ImageStore.from_shards(config.data_dir, config.split)
    retriever = ModuleRetriever.from_checkpoint(config.retriever_ckpt)
    thi = build_thi(config, retriever, {r.key: r for r in records}, images)
    gallery = encode_split(retriever, config.data_dir, config.split)
    pids = torch.tensor([q.pid for q in queries], dtype=torch.long)
    report = evaluate_thi(thi, texts, pids, gallery, config.sweep_xi, config.sweep_lam)
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
    for name in ("thi.json", "thi.md", "thi_sweep.png"):
        print(f"{name}: {out / name}")
    return 0

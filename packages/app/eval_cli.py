"""`ireid eval interactive`: run question strategies against a witness over a split, write the report."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ireid.answerer import build_witness
from ireid.app.strategies import build_strategy, server_options, strategy_settings
from ireid.app.thi_pipeline import build_thi, thi_settings
from ireid.app.vision_models import ANNOTATED
from ireid.core.gallery import Gallery, encode_split
from ireid.core.images import ImageStore
from ireid.core.loader import check_complete, load_records
from ireid.core.records import Record, evenly_spaced
from ireid.core.rounds import retrieval_text_reader
from ireid.core.shards import atomic_write_json
from ireid.icl.thi import THIReranker
from ireid.interactive.config import EvalConfig, RerankConfig, load_config
from ireid.interactive.harness import StrategyResult, evaluate_strategy
from ireid.interactive.reference import retriever_reference
from ireid.interactive.report import markdown_report, write_report
from ireid.interactive.session import BaseModelAveraging, Reranker
from ireid.retriever.inference import ModuleRetriever

# Config keys that a command-line flag of the same name overrides.
OVERRIDABLE = (
    "out", "data_dir", "split", "retriever_ckpt", "witness", "strategies", "rounds", "batch_size", "max_queries",
    "seed", "allow_partial",
)  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML settings (configs/interactive/*.yaml)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--data", dest="data_dir", help="shard folder")
    parser.add_argument("--split")
    parser.add_argument("--retriever-ckpt", dest="retriever_ckpt")
    parser.add_argument("--witness", help="rule | rule-absent | tiny | smollm2 | openai:<url>#<model> | model dir")
    parser.add_argument("--strategies", type=lambda s: [x.strip() for x in s.split(",") if x.strip()])
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--batch-size", dest="batch_size", type=int)
    parser.add_argument("--max-queries", dest="max_queries", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--timeout-s", type=float, help="openai: sources: seconds per request (config server.timeout_s)"
    )
    parser.add_argument("--max-retries", type=int, help="openai: sources: attempts per request (server.max_retries)")
    parser.add_argument(
        "--allow-partial",
        action="store_const",
        const=True,
        help="evaluate even when the split reads fewer samples than its manifest lists (the report says so)",
    )
    parser.add_argument("--rerank-ckpt", help="T-ReID re-ranking: base retriever checkpoint (weight 0.5)")
    parser.add_argument(
        "--thi", metavar="MLLM", help="ICL★ rows: THI re-ranks every round (annotated | chatreid:<ckpt> | openai:...)"
    )


def resolve_config(args: argparse.Namespace) -> EvalConfig:
    config = load_config(args.config)
    overrides = {name: getattr(args, name) for name in OVERRIDABLE if getattr(args, name, None) is not None}
    config = dataclasses.replace(config, **overrides)
    server = {
        name: getattr(args, name) for name in ("timeout_s", "max_retries") if getattr(args, name, None) is not None
    }
    if server:
        config = dataclasses.replace(config, server=dataclasses.replace(config.server, **server))
    if getattr(args, "rerank_ckpt", None):
        config.rerank = RerankConfig(base_ckpt=args.rerank_ckpt)
    if getattr(args, "thi", None):
        config.thi = {**(config.thi or {}), "mllm": args.thi}
    if config.thi is not None and config.rerank is not None:
        raise ValueError("--thi and --rerank-ckpt (or config fields 'thi' and 'rerank'): one re-ranking at a time")
    return config


def _reranker_factory(config: EvalConfig, gallery_dir: Path, retriever: ModuleRetriever, gallery: Gallery):
    """T-ReID: base-model similarities of each batch's initial descriptions against the base model's own gallery.
    ICL's THI: one re-ranker (its answers cached) for every batch, each round's dialogue text as the query."""
    if config.thi is not None:
        mllm, settings, server = thi_settings(config.thi)
        images = None if mllm == ANNOTATED else ImageStore.from_shards(gallery_dir, config.split)
        records = {r.key: r for r in gallery.records}
        thi = build_thi(mllm, settings, retriever, records, images, server)
        reranker = THIReranker(thi, gallery.keys, gallery.embeddings)
        return lambda batch: reranker
    if config.rerank is None or not config.rerank.base_ckpt:
        return None
    base = ModuleRetriever.from_checkpoint(config.rerank.base_ckpt)
    base_gallery = encode_split(base, gallery_dir, config.split)
    weight = config.rerank.weight

    def reranker_for(batch: Sequence[Record]) -> Reranker:
        with torch.no_grad():
            scores = base_gallery.scores(base.encode_text([q.initial_description for q in batch]))
        return BaseModelAveraging(scores, weight)

    return reranker_for


@dataclass
class EvalOutcome:
    results: list[StrategyResult]
    context: dict[str, object]
    paths: dict[str, Path]


def evaluate(config: EvalConfig, report_dir: Path | None = None) -> EvalOutcome:
    """Every configured strategy over the split (each resumable under `out/strategies`), then the report files
    (in `report_dir`, default `out`)."""
    out = Path(config.out)
    report_dir = report_dir or out
    atomic_write_json(report_dir / "config.json", config.to_dict())
    retriever = ModuleRetriever.from_checkpoint(config.retriever_ckpt)
    gallery: Gallery = encode_split(retriever, config.data_dir, config.split)
    partial = check_complete(config.data_dir, config.split, len(gallery), config.allow_partial)
    queries = evenly_spaced(load_records(config.data_dir, config.split), config.max_queries)
    witness = build_witness(
        config.witness, tokenizer_dir=config.tokenizer_dir, **server_options(config.witness, config.server)
    )
    text_of = retrieval_text_reader(with_questions=config.text == "questions+answers")
    reranker_for = _reranker_factory(config, Path(config.data_dir), retriever, gallery)
    results = []
    for name in config.strategies:
        strategy = build_strategy(name, config)
        results.append(
            evaluate_strategy(
                strategy,
                queries,
                gallery,
                retriever,
                witness,
                out / "strategies" / name,
                rounds=config.rounds,
                batch_size=config.batch_size,
                text_of=text_of,
                seed=config.seed,
                reranker_for=reranker_for,
                settings=strategy_settings(name, config),
            )
        )
        counts = getattr(strategy, "counts", None)  # the LLM strategies count their model calls and fallbacks
        if counts:
            print(f"{name}, this run: " + ", ".join(f"{key} {value}" for key, value in sorted(counts.items())))
    reference = retriever_reference(retriever, gallery, queries, text_of)
    context = {
        "data": f"{config.data_dir} ({config.split}: {len(queries)} queries, gallery {len(gallery)} images)",
        "retriever": config.retriever_ckpt,
        "retriever alone, R@1 on these queries": ", ".join(f"{k} {v:.1f}" for k, v in reference.items()),
        "witness": config.witness,
        "retriever reads": config.text,
        "rounds": config.rounds,
    }
    if partial:
        context["partial data"] = f"{partial} (--allow-partial)"
    if config.thi is not None:
        mllm, settings, _ = thi_settings(config.thi)
        uses = " (uses ground truth)" if mllm == ANNOTATED else ""
        context["re-ranking"] = (
            f"ICL★ THI on each round's dialogue text, MLLM {mllm}{uses}, K {settings.rounds}, ξ {settings.xi} "
            f"({settings.xi_from}), λ {settings.lam}, aggregation {settings.aggregation}"
        )
    elif config.rerank is not None and config.rerank.base_ckpt:
        context["re-ranking"] = "T-ReID, the base model's initial-description similarity averaged in (LLaVA-ReID §5.3)"
    return EvalOutcome(results, context, write_report(results, report_dir, context))


def run(args: argparse.Namespace) -> int:
    outcome = evaluate(resolve_config(args))
    print(markdown_report(outcome.results, outcome.context))
    for kind, path in outcome.paths.items():
        print(f"{kind}: {path}")
    return 0

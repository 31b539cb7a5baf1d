"""`ireid eval interactive`: run question strategies against a witness over a split, write the report."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ireid.answerer import build_witness, is_visual
from ireid.app.strategies import build_strategy, server_options, strategy_settings
from ireid.app.thi_pipeline import build_thi, thi_settings
from ireid.app.vision_models import ANNOTATED, vision_model
from ireid.core.gallery import Gallery, encode_split
from ireid.core.images import ImageStore
from ireid.core.llm import ChatServerError
from ireid.core.loader import check_complete, load_records
from ireid.core.protocols import Witness
from ireid.core.records import Record, evenly_spaced
from ireid.core.rounds import retrieval_text_reader
from ireid.core.shards import atomic_write_json
from ireid.icl.thi import THIReranker
from ireid.interactive.config import EvalConfig, RerankConfig, load_config
from ireid.interactive.harness import StrategyResult, evaluate_strategy
from ireid.interactive.reference import retriever_reference
from ireid.interactive.report import markdown_report, write_report
from ireid.interactive.session import NO_FINE_DESCRIPTION, BaseModelAveraging, Reranker, witness_memory
from ireid.interactive.similarity_file import SimilarityFile, save_similarity
from ireid.interactive.witness_views import witness_views
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
    parser.add_argument(
        "--witness",
        help="rule | rule-absent | tiny | smollm2 | openai:<url>#<model> | model dir | tuned:<dir> (from the fine "
        "description) | visual:chatreid:<ckpt> | visual:qwen2-vl:<dir> | visual:openai:<url>#<model> | "
        "visual:attributes:<file> (from another image of the target)",
    )
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
        "--rerank-scores",
        help="T-ReID re-ranking: a base model's saved similarity file (.npz; `ireid eval similarity`)",
    )
    parser.add_argument(
        "--thi",
        metavar="MLLM",
        help="ICL★ rows: THI re-ranks every round (annotated | attribute-net:<file> | chatreid:<ckpt> | openai:...)",
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
    if getattr(args, "rerank_ckpt", None) or getattr(args, "rerank_scores", None):
        config.rerank = RerankConfig(base_ckpt=args.rerank_ckpt or "", base_scores=args.rerank_scores or "")
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
    if config.rerank is None:
        return None
    weight = config.rerank.weight
    if config.rerank.base_scores:
        saved = SimilarityFile(config.rerank.base_scores)
        saved.lookup([], gallery.keys)  # every gallery image has its column, checked before the first batch
        return lambda batch: BaseModelAveraging(saved.lookup([q.key for q in batch], gallery.keys), weight)
    base = ModuleRetriever.from_checkpoint(config.rerank.base_ckpt)
    base_gallery = encode_split(base, gallery_dir, config.split)

    def reranker_for(batch: Sequence[Record]) -> Reranker:
        with torch.no_grad():
            scores = base_gallery.scores(base.encode_text([q.initial_description for q in batch]))
        return BaseModelAveraging(scores, weight)

    return reranker_for


# Asked once before the first batch, so a vision server that rejects images stops the run at its start.
PROBE_QUESTION = "What was the person wearing?"


@dataclass
class WitnessSetup:
    """The witness, what it remembers of each query, the queries it can answer for, and a line on those it cannot."""

    witness: Witness
    memory_of: Callable[[Record], Any]
    queries: list[Record]
    skipped: str = ""


def _witness(config: EvalConfig) -> Witness:
    return build_witness(
        config.witness,
        tokenizer_dir=config.tokenizer_dir,
        vision_model=lambda source: vision_model(source, config.server),
        **server_options(config.witness, config.server),
    )


def setup_witness(config: EvalConfig, queries: list[Record], gallery: Sequence[Record]) -> WitnessSetup:
    """A text witness needs every query's fine description; a visual one (`visual:...`) another gallery image of each
    query's person (queries without one are skipped and counted). Both are checked before the first batch."""
    where = f"{config.data_dir} ({config.split})"
    if not is_visual(config.witness):
        missing = [q.key for q in queries if not q.fine_description]
        if missing:
            raise ValueError(f"{where}: {len(missing)} of {len(queries)} queries (first: {missing[0]}) have "
                             f"{NO_FINE_DESCRIPTION}")  # fmt: skip
        return WitnessSetup(_witness(config), witness_memory, queries)
    views = witness_views(queries, gallery, ImageStore.from_shards(config.data_dir, config.split))
    kept = [q for q in queries if q.key in views.chosen]
    if not kept:
        raise ValueError(f"{where}: no query can have a visual witness: {views.summary()}")
    if views.skipped:
        print(f"visual witness, {where}: {len(kept)} of {len(queries)} queries kept; {views.summary()}")
    witness = _witness(config)
    try:
        witness.answer([PROBE_QUESTION], [views.memory(kept[0])])
    except ChatServerError as error:
        raise ChatServerError(
            f"witness {config.witness}: asked about an image before the first batch: {error}"
        ) from None
    return WitnessSetup(witness, views.memory, kept, views.summary())


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
    records = load_records(config.data_dir, config.split)
    witness = setup_witness(config, evenly_spaced(records, config.max_queries), records)
    queries = witness.queries
    retriever = ModuleRetriever.from_checkpoint(config.retriever_ckpt)
    gallery: Gallery = encode_split(retriever, config.data_dir, config.split)
    partial = check_complete(config.data_dir, config.split, len(gallery), config.allow_partial)
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
                witness.witness,
                out / "strategies" / name,
                rounds=config.rounds,
                batch_size=config.batch_size,
                text_of=text_of,
                seed=config.seed,
                reranker_for=reranker_for,
                settings=strategy_settings(name, config),
                memory_of=witness.memory_of,
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
        "witness": config.witness
        + (" (answers from another gallery image of the target)" if is_visual(config.witness) else ""),
        "retriever reads": config.text,
        "rounds": config.rounds,
    }
    if witness.skipped:
        context["skipped queries"] = witness.skipped
    if partial:
        context["partial data"] = f"{partial} (--allow-partial)"
    if config.thi is not None:
        mllm, settings, _ = thi_settings(config.thi)
        uses = " (uses ground truth)" if mllm == ANNOTATED else ""
        context["re-ranking"] = (
            f"ICL★ THI on each round's dialogue text, MLLM {mllm}{uses}, K {settings.rounds}, ξ {settings.xi} "
            f"({settings.xi_from}), λ {settings.lam}, aggregation {settings.aggregation}"
        )
    elif config.rerank is not None:
        base = config.rerank.base_ckpt or f"saved similarities {config.rerank.base_scores}"
        context["re-ranking"] = (
            f"T-ReID, the base model's initial-description similarity averaged in (LLaVA-ReID §5.3): {base}"
        )
    return EvalOutcome(results, context, write_report(results, report_dir, context))


def configure_similarity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retriever-ckpt", required=True, help="the base T-ReID model (a retriever checkpoint)")
    parser.add_argument("--data", required=True, type=Path, help="shard folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", required=True, type=Path, help=".npz file for --rerank-scores")


def run_similarity(args: argparse.Namespace) -> int:
    """Every record's initial description (its caption on converted T-ReID sets) against the split's images."""
    retriever = ModuleRetriever.from_checkpoint(args.retriever_ckpt)
    gallery = encode_split(retriever, args.data, args.split)
    records = load_records(args.data, args.split)
    empty = [r.key for r in records if not r.initial_description]
    if empty:
        raise ValueError(f"{args.data} ({args.split}): record {empty[0]!r} has no initial description to score")
    scores = []
    with torch.no_grad():
        for start in range(0, len(records), 256):
            chunk = records[start : start + 256]
            scores.append(gallery.scores(retriever.encode_text([r.initial_description for r in chunk])).float())
    save_similarity(args.out, torch.cat(scores).numpy(), [r.key for r in records], gallery.keys)
    print(f"{len(records)} queries × {len(gallery.keys)} images -> {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    outcome = evaluate(resolve_config(args))
    print(markdown_report(outcome.results, outcome.context))
    for kind, path in outcome.paths.items():
        print(f"{kind}: {path}")
    return 0

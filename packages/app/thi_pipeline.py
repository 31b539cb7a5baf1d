"""ICL put together from its parts: the perception and THI (the MLLM from `vision_models`), the SFT data with the
retriever's hard negatives, and Table 6's THI rows on one world. Used by `ireid icl`, by `ireid eval interactive`'s
THI re-ranking and by `ireid eval learning`.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ireid.app.stages import REPO_CONFIGS, fit_step, restart_runs
from ireid.app.vision_models import ANNOTATED, ATTRIBUTE_NET_PREFIX, CHATREID_PREFIX, vision_model
from ireid.chatreid.conversations import check_conversation, stage_prefix
from ireid.chatreid.data import ConversationData
from ireid.chatreid.module import ChatReIDModule
from ireid.chatreid.train_cli import ChatReIDCLI
from ireid.core.attribute_net import AttributeNet
from ireid.core.gallery import closest_other_people, encode_split
from ireid.core.images import ImageStore
from ireid.core.llm import ServerSettings
from ireid.core.loader import load_records
from ireid.core.protocols import TextImageRetriever
from ireid.core.records import Record, evenly_spaced
from ireid.core.settings import from_mapping
from ireid.core.shards import ShardWriter, atomic_write_json
from ireid.icl.config import THIEvalConfig, load_config
from ireid.icl.evaluation import calls_per_query, evaluate_thi, query_texts
from ireid.icl.perception import AnnotatedPerception, CachedPerception, MLLMPerception, NetPerception
from ireid.icl.sft import STAGE, VQA_TASK, sft_conversations
from ireid.icl.thi import THI, MLLMAggregator, THISettings
from ireid.retriever.inference import ModuleRetriever, ensure_vision_tower


def build_perception(
    mllm: str, records: Mapping[str, Record], images: ImageStore | None, server: ServerSettings | None = None
) -> MLLMPerception | AnnotatedPerception | NetPerception:
    """What answers about images by key: `mllm` asked with the images, ("attribute-net:<file>") an attribute net
    reading them, or ("annotated") the records' annotations, which uses ground truth."""
    if mllm == ANNOTATED:
        return AnnotatedPerception(records)
    if images is None:
        raise ValueError(f"MLLM {mllm!r} needs the images")
    if mllm.startswith(ATTRIBUTE_NET_PREFIX):
        return NetPerception(AttributeNet.load(mllm.removeprefix(ATTRIBUTE_NET_PREFIX)), images)
    return MLLMPerception(vision_model(mllm, server), images, name=mllm.partition(":")[0])


def build_thi(
    mllm: str,
    settings: THISettings,
    retriever: TextImageRetriever,
    records: Mapping[str, Record],
    images: ImageStore | None,
    server: ServerSettings | None = None,
) -> THI:
    """THI over `retriever` asking `mllm` about the images by key (`build_perception`); every answer is cached, so
    sweeps and repeated rounds ask each pair once."""
    perception = build_perception(mllm, records, images, server)
    if not isinstance(perception, MLLMPerception) and settings.aggregation == "mllm":
        raise ValueError(
            f"THI setting 'aggregation': 'mllm' needs an MLLM; with the {perception.name} perception use join"
        )
    aggregator = None
    if isinstance(perception, MLLMPerception) and settings.aggregation == "mllm":
        aggregator = MLLMAggregator(perception.model, settings.max_words, settings.max_new_tokens)
    return THI(CachedPerception(perception), retriever.encode_text, settings, aggregator)


def thi_settings(options: Mapping[str, Any]) -> tuple[str, THISettings, ServerSettings]:
    """The MLLM source, THI settings and server settings of a config mapping: {"mllm": ..., "server": {timeout_s,
    max_retries, max_workers}, and any THISettings field}."""
    options = dict(options)
    mllm = options.pop("mllm", ANNOTATED)
    server = from_mapping(ServerSettings, options.pop("server", {}), "config field 'thi.server'")
    if mllm == ANNOTATED or mllm.startswith(ATTRIBUTE_NET_PREFIX):
        options.setdefault("aggregation", "join")  # no language model to write the merged query
    known = {f.name for f in dataclasses.fields(THISettings)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"config field 'thi': unknown key(s) {unknown}; expected mllm, server or one of {sorted(known)}"
        )
    return mllm, THISettings(**options), server


def text_negatives(
    retriever: ModuleRetriever, data_dir: str, split: str, k: int, records: list[Record] | None = None
) -> tuple[list[Record], dict[str, list[str]]]:
    """Each captioned record's `k` hard negatives: the split's images of other people its caption ranks highest."""
    records = records if records is not None else load_records(data_dir, split)
    gallery = encode_split(retriever, data_dir, split)
    queries = [r for r in records if r.captions]
    negatives: dict[str, list[str]] = {}
    for start in range(0, len(queries), 512):
        chunk = queries[start : start + 512]
        with torch.no_grad():
            scores = gallery.scores(retriever.encode_text([r.captions[0] for r in chunk]))
        pids = torch.tensor([r.pid for r in chunk], dtype=torch.long)
        for record, row in zip(chunk, closest_other_people(scores, pids, gallery.pids, k), strict=True):
            negatives[record.key] = [gallery.keys[j] for j in row]
    return records, negatives


def write_sft(
    out: Path, data: Path, retriever_ckpt: Path, split: str, samples: int, vqa_share: float, negatives: int, seed: int
) -> dict[str, int]:
    """Eq. 3's SFT conversations (`ireid.icl.sft`) as ChatReID stage-3 shards in `out`, with `stage3.counts.json`;
    returns the count per task and answer."""
    retriever = ModuleRetriever.from_checkpoint(retriever_ckpt)
    records, hard = text_negatives(retriever, str(data), split, negatives)
    counts: Counter[str] = Counter()
    prefix = stage_prefix(STAGE)
    with ShardWriter(out, prefix) as writer:
        for key, sample in tqdm(
            sft_conversations(records, hard, samples, vqa_share, seed),
            total=samples, desc="ICL SFT conversations", unit="sample",
        ):  # fmt: skip
            check_conversation(sample, key, f"{out}: sample {key!r}")
            writer.write_sample(key, {"json": json.dumps(sample, sort_keys=True).encode()})
            answer = sample["messages"][-1]["content"][0]["text"]
            counts[sample["task"] if sample["task"] == VQA_TASK else f"{sample['task']} {answer}"] += 1
    settings = {"data": str(data), "split": split, "retriever_ckpt": str(retriever_ckpt), "samples": samples,
                "vqa_share": vqa_share, "negatives": negatives, "seed": seed}  # fmt: skip
    atomic_write_json(out / f"{prefix}.counts.json", settings | {"counts": dict(counts)})
    return dict(counts)


@dataclass
class ICLBudget:
    """`ireid eval learning`'s ICL rows: the SFT data and steps of the tiny MLLM, and THI's settings."""

    sft_samples: int = 8000
    vqa_share: float = 0.3
    negatives: int = 10
    sft_steps: int = 1500
    sft_config: str = str(REPO_CONFIGS / "icl" / "sft-synthetic.yaml")
    rerank_config: str = str(REPO_CONFIGS / "icl" / "synthetic.yaml")
    overrides: list[str] = field(default_factory=list)  # LightningCLI arguments for the SFT
    eyes: str = "retriever"  # the MLLM's frozen eyes: "retriever" (its image encoder) or "attribute-net" (the seed's)
    restarts: int = 0  # runs begun again with another training seed when the SFT config stops one at chance

    def __post_init__(self) -> None:
        if self.eyes not in ("retriever", "attribute-net"):
            raise ValueError(f"config field 'icl.eyes' must be 'retriever' or 'attribute-net', got {self.eyes!r}")
        if self.restarts < 0:
            raise ValueError(f"config field 'icl.restarts' must be 0 or more, got {self.restarts}")


def thi_report(config: THIEvalConfig) -> dict[str, Any]:
    """THI over `config`'s text-to-image evaluation (`evaluate_thi`: the retriever alone and with THI, the sweep,
    anchor accuracy), plus the model calls per query, the perception's name and whether it uses ground truth."""
    records = load_records(config.data_dir, config.split)
    queries = evenly_spaced(records, config.max_queries)
    images = None if config.mllm == ANNOTATED else ImageStore.from_shards(config.data_dir, config.split)
    retriever = ModuleRetriever.from_checkpoint(config.retriever_ckpt)
    thi = build_thi(config.mllm, config.thi, retriever, {r.key: r for r in records}, images, config.server)
    gallery = encode_split(retriever, config.data_dir, config.split)
    pids = torch.tensor([q.pid for q in queries], dtype=torch.long)
    texts = query_texts(queries, config.query)
    report = evaluate_thi(thi, texts, pids, gallery, config.sweep_xi, config.sweep_lam, config.anchor_pairs)
    perception = thi.perception.inner  # type: ignore[attr-defined]
    questions = len(perception.questions) if isinstance(perception, MLLMPerception) else 0
    report["calls_per_query"] = round(calls_per_query(report["counts"], questions), 3)
    report["perception"] = perception.name
    report["uses_ground_truth"] = perception.uses_ground_truth
    return report


THI_LEARNED = "retriever + THI★ (SFT'd MLLM)"
THI_NET = "retriever + THI★ (attribute net)"
THI_ANNOTATED = "retriever + THI★ (perfect eyes)"
RETRIEVER_ALONE = "retriever alone (captions)"


def icl_rows(
    out: Path, data_dir: Path, retriever_ckpt: Path, budget: ICLBudget, seed: int, net: Path | None = None
) -> dict[str, dict[str, float]]:
    """ICL Table 6's THI rows on one world: the retriever alone, THI with the tiny MLLM tuned on Eq. 3's data, and
    THI with perfect eyes (uses ground truth), on the test captions; each step resumes. The MLLM's frozen eyes are
    `net` (an attribute net file) where `budget.eyes` is "attribute-net", else the retriever's image encoder."""
    sft_dir = out / "sft-data"
    if not (sft_dir / f"{stage_prefix(STAGE)}.counts.json").exists():
        write_sft(sft_dir, data_dir, retriever_ckpt, "train", budget.sft_samples, budget.vqa_share, budget.negatives,
                  seed)  # fmt: skip
    if budget.eyes == "attribute-net":
        if net is None:
            raise ValueError("icl.eyes 'attribute-net' needs the seed's attribute net")
        eyes = net
    else:
        eyes = ensure_vision_tower(retriever_ckpt, out / "vision-tower.pt")
    model = _sft(out, sft_dir, data_dir, eyes, budget, seed)
    perceptions = [(THI_LEARNED, f"{CHATREID_PREFIX}{model}"), (THI_ANNOTATED, ANNOTATED)]
    return thi_rows(Path(budget.rerank_config), data_dir, retriever_ckpt, perceptions)


def _sft(out: Path, sft_dir: Path, data_dir: Path, eyes: Path, budget: ICLBudget, seed: int) -> Path:
    """The tuned MLLM's checkpoint. A run its config stops at chance (`ireid.core.callbacks.StopAtChance`) begins
    again with another training seed, up to `budget.restarts` times; each run keeps its own folder and resumes."""
    for run, run_seed in restart_runs(out / "sft", seed, budget.restarts):
        overrides = [
            "--data.conversations_dir", str(sft_dir), "--data.data_dir", str(data_dir), "--seed_everything",
            str(run_seed), "--trainer.max_steps", str(budget.sft_steps), "--model.vision_checkpoint", str(eyes),
            *budget.overrides,
        ]  # fmt: skip
        model = fit_step("ICL SFT", run, ChatReIDCLI, ChatReIDModule, ConversationData, Path(budget.sft_config),
                         overrides, checkpoints=run / "checkpoints")  # fmt: skip
        steps = json.loads((run / "done.json").read_text())["steps"]
        if steps >= budget.sft_steps:
            break
        print(f"ICL SFT: the run with training seed {run_seed} stopped at step {steps} of {budget.sft_steps}")
    return model


def thi_rows(
    rerank_config: Path, data_dir: Path, retriever_ckpt: Path, perceptions: Sequence[tuple[str, str]]
) -> dict[str, dict[str, float]]:
    """The retriever alone on the test captions, and one THI row per (row name, MLLM source) with `rerank_config`'s
    settings (no sweep; `join` for every row, so that the rows differ only in their eyes)."""
    config = load_config(rerank_config)
    config = dataclasses.replace(
        config, data_dir=str(data_dir), retriever_ckpt=str(retriever_ckpt), max_queries=None, sweep_xi=[],
        sweep_lam=[], thi=dataclasses.replace(config.thi, aggregation="join"),
    )  # fmt: skip
    rows: dict[str, dict[str, float]] = {}
    for name, mllm in perceptions:
        report = thi_report(dataclasses.replace(config, mllm=mllm))
        rows[RETRIEVER_ALONE] = {"caption R@1": report["retriever"]["R1"], "caption mAP": report["retriever"]["mAP"]}
        rows[name] = {
            "caption R@1": report["thi"]["R1"],
            "caption mAP": report["thi"]["mAP"],
            "anchor accuracy": report["anchor_accuracy"]["accuracy"],
            "interacted": float(report["counts"]["interacted"]),
        }
    return rows

"""ICL's THI put together from its parts: the MLLM a source string names, the perception and the re-ranker, and the
retriever's hard negatives for the SFT data. Used by `ireid icl` and by `ireid eval interactive`'s THI re-ranking.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from ireid.chatreid.inference import ChatReID
from ireid.core.gallery import encode_split
from ireid.core.images import ImageStore
from ireid.core.llm import OPENAI_PREFIX, OpenAIVisionLLM
from ireid.core.loader import load_records
from ireid.core.protocols import TextImageRetriever, VisionLanguageModel
from ireid.core.records import Record
from ireid.core.settings import from_mapping
from ireid.icl.config import ServerSettings
from ireid.icl.perception import AnnotatedPerception, CachedPerception, MLLMPerception
from ireid.icl.sft import hard_negatives
from ireid.icl.thi import THI, MLLMAggregator, THISettings
from ireid.retriever.inference import ModuleRetriever

CHATREID_PREFIX = "chatreid:"
ANNOTATED = "annotated"


def vision_model(source: str, server: ServerSettings | None = None) -> VisionLanguageModel:
    """The MLLM a source string names: chatreid:<checkpoint> or openai:<base_url>#<model>."""
    if source.startswith(CHATREID_PREFIX):
        return ChatReID.from_checkpoint(source.removeprefix(CHATREID_PREFIX))
    if source.startswith(OPENAI_PREFIX):
        base_url, _, model = source.removeprefix(OPENAI_PREFIX).partition("#")
        if not base_url or not model:
            raise ValueError(f"MLLM source {source!r}: expected openai:<base_url>#<model>")
        return OpenAIVisionLLM(base_url, model, **dataclasses.asdict(server or ServerSettings()))
    raise ValueError(f"MLLM source {source!r}: expected annotated, chatreid:<ckpt> or openai:<base_url>#<model>")


def build_perception(
    mllm: str, records: Mapping[str, Record], images: ImageStore | None, server: ServerSettings | None = None
) -> MLLMPerception | AnnotatedPerception:
    """What answers about images by key: `mllm` asked with the images, or ("annotated") the records' annotations,
    which uses ground truth."""
    if mllm == ANNOTATED:
        return AnnotatedPerception(records)
    if images is None:
        raise ValueError(f"MLLM {mllm!r} needs the images")
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
    if mllm == ANNOTATED and settings.aggregation == "mllm":
        raise ValueError("THI setting 'aggregation': 'mllm' needs an MLLM; with the annotated perception use join")
    perception = build_perception(mllm, records, images, server)
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
    if mllm == ANNOTATED:
        options.setdefault("aggregation", "join")  # no model to write the merged query
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
        for record, row in zip(chunk, hard_negatives(scores, pids, gallery.pids, k), strict=True):
            negatives[record.key] = [gallery.keys[j] for j in row]
    return records, negatives

"""`ireid icl rerank`'s settings: a YAML file (configs/icl/*.yaml), with command-line flags overriding single keys."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ireid.core.llm import ServerSettings
from ireid.core.settings import load_settings
from ireid.icl.thi import THISettings


@dataclass
class THIEvalConfig:
    """`ireid icl rerank`: THI over a text-to-image evaluation (not the harness's T-ReID `RerankConfig`)."""

    data_dir: str = "runs/demo/data"
    split: str = "test"
    retriever_ckpt: str = "runs/demo/retriever/last.ckpt"
    mllm: str = "annotated"  # annotated (uses ground truth) | chatreid:<ckpt> | openai:<base_url>#<model>
    query: str = "caption"  # caption | initial: what each record asks with
    max_queries: int | None = None
    anchor_pairs: int = 200  # queries whose Yes/No answers on a match and a hard negative are scored (0: none)
    out: str = "runs/icl"
    thi: THISettings = field(default_factory=THISettings)
    sweep_xi: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])  # on thi.xi_from's scale
    sweep_lam: list[float] = field(default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    server: ServerSettings = field(default_factory=ServerSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: Path | str | None) -> THIEvalConfig:
    return load_settings(THIEvalConfig, path)

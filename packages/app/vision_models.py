"""One string names a vision-language model, for every command that asks one about images: ICL's THI and its RDA,
the Interactive-PEDES construction, PlugIR's captioner and the investigator's strategies.

- `chatreid:<checkpoint>`: a ChatReID model (tiny, or real Qwen2-VL weights);
- `qwen2-vl:<directory>`: real Qwen2-VL weights at a path, as released (local files only);
- `openai:<base_url>#<model>`: a vision server such as vLLM or SGLang, with the run's `ServerSettings`;
- `annotated` (`ANNOTATED`): no model; each caller reads the data's annotations instead, and says that it uses
  ground truth;
- `attribute-net:<file>` (`ATTRIBUTE_NET_PREFIX`, THI only): no language model; an attribute net (`ireid attribute-net
  fit`) reads the images, and its readings answer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ireid.chatreid.inference import ChatReID
from ireid.chatreid.model import build_source
from ireid.core.llm import OPENAI_PREFIX, OpenAIVisionLLM, ServerSettings
from ireid.core.protocols import VisionLanguageModel

CHATREID_PREFIX = "chatreid:"
QWEN2_VL_PREFIX = "qwen2-vl:"
ANNOTATED = "annotated"
ATTRIBUTE_NET_PREFIX = "attribute-net:"


def vision_model(source: str, server: ServerSettings | None = None) -> VisionLanguageModel:
    """The MLLM a source string names: chatreid:<checkpoint>, qwen2-vl:<directory> or openai:<base_url>#<model>."""
    if source.startswith(CHATREID_PREFIX):
        return ChatReID.from_checkpoint(source.removeprefix(CHATREID_PREFIX))
    if source.startswith(QWEN2_VL_PREFIX):
        folder = source.removeprefix(QWEN2_VL_PREFIX)
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: no Qwen2-VL weights folder (MLLM source {source!r})")
        return ChatReID(*build_source(folder))
    if source.startswith(OPENAI_PREFIX):
        base_url, _, model = source.removeprefix(OPENAI_PREFIX).partition("#")
        if not base_url or not model:
            raise ValueError(f"MLLM source {source!r}: expected openai:<base_url>#<model>")
        return OpenAIVisionLLM(base_url, model, **dataclasses.asdict(server or ServerSettings()))
    raise ValueError(
        f"MLLM source {source!r}: expected annotated, chatreid:<ckpt>, qwen2-vl:<dir> or openai:<base_url>#<model>"
    )

"""One string names a witness, in configs and on command lines alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ireid.answerer.attribute_witness import AttributeReader, AttributeWitness, NetReader
from ireid.answerer.llm_witness import Layout, LLMWitness
from ireid.answerer.rule_based import RuleBasedWitness
from ireid.answerer.tuned import load_tuned_llm
from ireid.answerer.visual_witness import VisualWitness
from ireid.core.attribute_net import AttributeNet
from ireid.core.llm import load_chat_llm
from ireid.core.protocols import VisionLanguageModel, Witness

RULE_SPECS = {"rule": "unknown", "rule-absent": "absent"}
TUNED_PREFIX = "tuned:"
VISUAL_PREFIX = "visual:"
ATTRIBUTES_PREFIX = "attributes:"
ATTRIBUTE_NET_PREFIX = "attribute-net:"


def is_visual(spec: str) -> bool:
    """Whether `spec` names a witness that looks at the target's image (its memories are images, not texts)."""
    return spec.startswith(VISUAL_PREFIX)


def build_witness(
    spec: str,
    *,
    tokenizer_dir: str | Path | None = None,
    seed: int = 0,
    max_new_tokens: int = 40,
    prompt: str | None = None,
    layout: Layout = "user",
    vision_model: Callable[[str], VisionLanguageModel] | None = None,
    **llm_options: Any,
) -> Witness:
    """The witness `spec` names.

    "rule" / "rule-absent": `RuleBasedWitness` (missing attributes answered "I don't know." / as absent; `seed`).
    Anything else is a chat LLM source for `ireid.core.llm.load_chat_llm` ("tiny" with `tokenizer_dir`, "smollm2",
    "openai:<base_url>#<model>", a local model directory) wrapped in `LLMWitness` (`max_new_tokens`, `prompt`,
    `layout`); `llm_options` (batch_size, server options) go to `load_chat_llm`.
    "tuned:<dir>": a witness tuned by `python -m ireid.answerer tune`: its base with the adapter merged in, asked with
    the prompt it was tuned on (leave `prompt` and `layout` at their defaults); `llm_options` may give batch_size.
    "visual:<vision model>": `VisualWitness`, answering from an image of the target (`prompt` may replace its
    instruction); `vision_model` builds the model the rest names (`ireid.app.vision_models.vision_model`:
    chatreid:<ckpt> or openai:<url>#<model>). "visual:attributes:<file>": `AttributeWitness`, reading attributes
    off the image with a trained encoder and heads (`ireid witness fit-attributes`); "visual:attribute-net:<file>"
    the same with an attribute net as its eyes (`ireid attribute-net fit`).
    """
    if is_visual(spec):
        source = spec.removeprefix(VISUAL_PREFIX)
        if source.startswith(ATTRIBUTE_NET_PREFIX):
            return AttributeWitness(NetReader(AttributeNet.load(source.removeprefix(ATTRIBUTE_NET_PREFIX))), seed=seed)
        if source.startswith(ATTRIBUTES_PREFIX):
            reader = AttributeReader.load(source.removeprefix(ATTRIBUTES_PREFIX))
            return AttributeWitness(reader, seed=seed)
        if vision_model is None:
            raise ValueError(f"witness {spec!r}: no vision-model factory was given to build {source!r}")
        return VisualWitness(vision_model(source), max_new_tokens=max_new_tokens, prompt=prompt)
    if spec in RULE_SPECS:
        return RuleBasedWitness(missing=RULE_SPECS[spec], seed=seed)
    if spec.startswith(TUNED_PREFIX):
        if prompt is not None or layout != "user":
            raise ValueError(f"{spec!r} answers the prompt it was tuned on: leave prompt and layout unset")
        return LLMWitness(load_tuned_llm(spec.removeprefix(TUNED_PREFIX), **llm_options), max_new_tokens=max_new_tokens)
    llm = load_chat_llm(spec, tokenizer_dir=tokenizer_dir, **llm_options)
    return LLMWitness(llm, max_new_tokens=max_new_tokens, prompt=prompt, layout=layout)
